//! Decoding a current-schema payload without serde's buffering (issue 36).
//!
//! `Event` is internally tagged, and serde's derive for that reads the whole object into
//! its private `Content` (every string copied, every nested object a vector of pairs)
//! before it looks at the tag, then decodes the variant from the copy. This build writes
//! `"type"` first in every payload, so [`decode_current`] reads the tag in place and
//! hands the rest of the same object to the variant's fields
//! ([`super::fields::EventFields`]), which decode straight from the bytes. A payload that
//! does not start with `{"type":"` (written by hand, or by another tool) goes to
//! [`decode_buffered`], the derive's decoder, as before.
//!
//! Same events, same refusals: an unknown type, a missing or mistyped field are errors;
//! an unknown field is skipped; a second `"type"` key is refused as the buffered decoder
//! refuses it (duplicate field), checked on each key the variant reads.

use std::borrow::Cow;
use std::fmt;

use dealreg_domain::Event;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, VariantAccess,
    Visitor,
};

use super::fields::EventFields;

/// How every payload this build writes begins.
const TAG_FIRST: &[u8] = b"{\"type\":\"";

/// Decodes a payload of the current schema: in place when its tag comes first, else
/// through [`decode_buffered`]. The same [`Event`] as [`decode_buffered`] for every payload.
pub fn decode_current(data: &[u8]) -> Result<Event, serde_json::Error> {
    if !data.starts_with(TAG_FIRST) {
        return decode_buffered(data);
    }
    // The payload checked as UTF-8 once, whole (a fast scan of ASCII text), so each string
    // inside it is not checked again on its own, as a slice reader does. Not UTF-8: the
    // buffered decoder says why, as it always did.
    let Ok(text) = std::str::from_utf8(data) else {
        return decode_buffered(data);
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let event = (&mut de).deserialize_map(TagThenFields)?;
    de.end()?;
    Ok(event)
}

/// serde's derived decoder for the internally tagged [`Event`], which buffers the object
/// first: the fallback of [`decode_current`], and the bench's reference.
pub fn decode_buffered(data: &[u8]) -> Result<Event, serde_json::Error> {
    serde_json::from_slice::<Event>(data)
}

/// Reads the object's first entry, the tag, and the variant's fields from the rest.
struct TagThenFields;

impl<'de> Visitor<'de> for TagThenFields {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event: an object with \"type\" first")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
        match map.next_key_seed(KeyIsType)? {
            Some(true) => {}
            Some(false) | None => return Err(de::Error::missing_field("type")),
        }
        let tag = map.next_value_seed(TagValue)?;
        EventFields::deserialize(Rest { tag, map })
    }
}

/// A key: whether it is `type`.
struct KeyIsType;

impl<'de> DeserializeSeed<'de> for KeyIsType {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIsType {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == "type")
    }
}

/// The tag's value, borrowed from the payload unless it has escapes.
struct TagValue;

impl<'de> DeserializeSeed<'de> for TagValue {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for TagValue {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event type")
    }

    fn visit_borrowed_str<E: de::Error>(self, tag: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(tag))
    }

    fn visit_str<E: de::Error>(self, tag: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(tag.to_owned()))
    }
}

/// The object after its tag, seen by [`EventFields`] as an externally tagged enum: the
/// tag names the variant and the rest of the object's entries are its fields.
struct Rest<'de, A> {
    tag: Cow<'de, str>,
    map: A,
}

impl<'de, A: MapAccess<'de>> Deserializer<'de> for Rest<'de, A> {
    type Error = A::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, A::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

impl<'de, A: MapAccess<'de>> EnumAccess<'de> for Rest<'de, A> {
    type Error = A::Error;
    type Variant = Fields<A>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Fields<A>), A::Error> {
        let variant = match self.tag {
            Cow::Borrowed(tag) => seed.deserialize(de::value::BorrowedStrDeserializer::new(tag)),
            Cow::Owned(tag) => seed.deserialize(tag.into_deserializer()),
        }?;
        Ok((variant, Fields { map: self.map }))
    }
}

/// The variant's fields: the rest of the object.
struct Fields<A> {
    map: A,
}

impl<'de, A: MapAccess<'de>> VariantAccess<'de> for Fields<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        Err(de::Error::invalid_type(
            de::Unexpected::StructVariant,
            &"a unit variant",
        ))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _: T) -> Result<T::Value, A::Error> {
        Err(de::Error::invalid_type(
            de::Unexpected::StructVariant,
            &"a newtype variant",
        ))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, A::Error> {
        Err(de::Error::invalid_type(
            de::Unexpected::StructVariant,
            &"a tuple variant",
        ))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        visitor.visit_map(NoSecondTag(self.map))
    }
}

/// The object's entries after the tag, refusing another `type` key (the buffered decoder
/// refuses it as a duplicate field; the variant's fields would skip it as unknown).
struct NoSecondTag<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for NoSecondTag<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(NotTypeSeed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

/// A key seed that refuses `type` and passes every other key to the variant's seed.
struct NotTypeSeed<K>(K);

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for NotTypeSeed<K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<K::Value, D::Error> {
        self.0.deserialize(NotTypeKey(d))
    }
}

/// A key's deserializer whose visitors are checked by [`NotType`].
struct NotTypeKey<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for NotTypeKey<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_any(NotType(visitor))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_identifier(NotType(visitor))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_str(NotType(visitor))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_string(NotType(visitor))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        ignored_any
    }
}

/// A key visitor that refuses `type` and hands every other key on.
struct NotType<V>(V);

impl<V> NotType<V> {
    fn check<E: de::Error>(key: &str) -> Result<(), E> {
        if key == "type" {
            Err(E::duplicate_field("type"))
        } else {
            Ok(())
        }
    }
}

impl<'de, V: Visitor<'de>> Visitor<'de> for NotType<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<V::Value, E> {
        Self::check(key)?;
        self.0.visit_str(key)
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<V::Value, E> {
        Self::check(key)?;
        self.0.visit_borrowed_str(key)
    }

    fn visit_string<E: de::Error>(self, key: String) -> Result<V::Value, E> {
        Self::check(&key)?;
        self.0.visit_string(key)
    }

    fn visit_bytes<E: de::Error>(self, key: &[u8]) -> Result<V::Value, E> {
        if key == b"type" {
            return Err(E::duplicate_field("type"));
        }
        self.0.visit_bytes(key)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, key: &'de [u8]) -> Result<V::Value, E> {
        if key == b"type" {
            return Err(E::duplicate_field("type"));
        }
        self.0.visit_borrowed_bytes(key)
    }

    fn visit_u64<E: de::Error>(self, index: u64) -> Result<V::Value, E> {
        self.0.visit_u64(index)
    }
}
