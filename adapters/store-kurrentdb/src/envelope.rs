//! The dealreg envelope: what a KurrentDB event carries in its custom metadata.
//!
//! ```json
//! {"dealreg":1,"prev_hash":"<64 hex>","hash":"<64 hex>","metadata":{"command_key":"…"}}
//! ```
//!
//! Why JSON with the metadata embedded raw: the envelope stays readable wherever KurrentDB
//! shows custom metadata (its UI, projections, other clients), and
//! [`serde_json::value::RawValue`] writes and reads the dealreg metadata as the exact bytes
//! the engine gave, which the hash chain covers. Metadata that is not exactly one JSON value
//! (surrounding whitespace, not UTF-8, not JSON) or is the JSON `null` (which an optional
//! field cannot tell from "absent") goes in `metadata_hex` instead, so every byte string
//! round-trips.
//!
//! The `dealreg` field is the envelope's version: a reader refuses a version it does not
//! know rather than guess at its fields.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use dealreg_events::hex;

/// The envelope version this build writes and reads.
pub(crate) const VERSION: u32 = 1;

#[derive(Serialize)]
struct Out<'a> {
    dealreg: u32,
    prev_hash: &'a str,
    hash: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata_hex: Option<String>,
}

#[derive(Deserialize)]
struct In<'a> {
    dealreg: u32,
    prev_hash: String,
    hash: String,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(default)]
    metadata_hex: Option<String>,
}

/// What an envelope carries besides the event's own fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) prev_hash: String,
    pub(crate) hash: String,
    pub(crate) metadata: Vec<u8>,
}

/// `bytes` as one JSON value that writes back as exactly `bytes`, if they are one.
pub(crate) fn exact_json(bytes: &[u8]) -> Option<&RawValue> {
    let raw: &RawValue = serde_json::from_slice(bytes).ok()?;
    (raw.get().as_bytes() == bytes).then_some(raw)
}

/// The envelope of an event with these hashes and dealreg metadata.
pub(crate) fn encode(prev_hash: &str, hash: &str, metadata: &[u8]) -> Result<Vec<u8>, String> {
    let raw = exact_json(metadata).filter(|raw| raw.get() != "null");
    let out = Out {
        dealreg: VERSION,
        prev_hash,
        hash,
        metadata: raw,
        metadata_hex: raw.is_none().then(|| hex::encode(metadata)),
    };
    serde_json::to_vec(&out).map_err(|e| format!("the envelope could not be written: {e}"))
}

/// The envelope in an event's custom metadata; the error says why there is none.
pub(crate) fn decode(custom_metadata: &[u8]) -> Result<Envelope, String> {
    if custom_metadata.is_empty() {
        return Err("it has no custom metadata, so no dealreg envelope".into());
    }
    let envelope: In = serde_json::from_slice(custom_metadata)
        .map_err(|e| format!("its custom metadata is not a dealreg envelope ({e})"))?;
    if envelope.dealreg != VERSION {
        return Err(format!(
            "its envelope has version {}, and this build reads version {VERSION} only: upgrade dealreg",
            envelope.dealreg
        ));
    }
    for (name, value) in [("prev_hash", &envelope.prev_hash), ("hash", &envelope.hash)] {
        if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "its envelope's {name} `{}` is not a sha256 in hex",
                value.chars().take(80).collect::<String>()
            ));
        }
    }
    let metadata = match (envelope.metadata, envelope.metadata_hex) {
        (Some(raw), None) => raw.get().as_bytes().to_vec(),
        (None, Some(text)) => hex::decode(&text)
            .ok_or_else(|| "its envelope's metadata_hex is not hex".to_string())?,
        (None, None) => return Err("its envelope holds no metadata".into()),
        (Some(_), Some(_)) => {
            return Err("its envelope holds both metadata and metadata_hex".into());
        }
    };
    Ok(Envelope {
        prev_hash: envelope.prev_hash,
        hash: envelope.hash,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const H2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn every_metadata_round_trips_exactly() {
        let cases: [&[u8]; 9] = [
            b"{}",
            b"{\"command_key\":\"k-1\",\"n\":[1,2]}",
            b"{ \"spaced\" : true }",
            b" {}",
            b"{}\n",
            b"null",
            b"",
            b"not json",
            &[0xff, 0x00, 0x7b],
        ];
        for metadata in cases {
            let bytes = encode(H1, H2, metadata).expect("encode");
            let back = decode(&bytes).expect("decode");
            assert_eq!(back.metadata, metadata, "{metadata:?}");
            assert_eq!((back.prev_hash.as_str(), back.hash.as_str()), (H1, H2));
        }
    }

    #[test]
    fn json_metadata_is_embedded_raw() {
        let bytes = encode(H1, H2, b"{ \"a\" : 1 }").expect("encode");
        let text = String::from_utf8(bytes).expect("utf-8");
        assert_eq!(
            text,
            format!("{{\"dealreg\":1,\"prev_hash\":\"{H1}\",\"hash\":\"{H2}\",\"metadata\":{{ \"a\" : 1 }}}}")
        );
        let hexed = String::from_utf8(encode(H1, H2, b"null").expect("encode")).expect("utf-8");
        assert!(hexed.ends_with("\"metadata_hex\":\"6e756c6c\"}"), "{hexed}");
    }

    #[test]
    fn foreign_metadata_is_refused_with_the_reason() {
        assert!(decode(b"").unwrap_err().contains("no custom metadata"));
        assert!(decode(b"{\"causation\":\"x\"}")
            .unwrap_err()
            .contains("not a dealreg envelope"));
        let future =
            format!("{{\"dealreg\":2,\"prev_hash\":\"{H1}\",\"hash\":\"{H2}\",\"metadata\":{{}}}}");
        assert!(decode(future.as_bytes()).unwrap_err().contains("upgrade"));
        let short =
            format!("{{\"dealreg\":1,\"prev_hash\":\"ab\",\"hash\":\"{H2}\",\"metadata\":{{}}}}");
        assert!(decode(short.as_bytes()).unwrap_err().contains("prev_hash"));
    }
}
