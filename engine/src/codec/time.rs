//! Times as the engine writes them (`2026-03-02T09:00:00Z`: chrono's RFC 3339 form of a
//! whole second in UTC), read without chrono's general parser; any other form (a fraction
//! of a second, an offset) goes to that parser, so the value is the same either way.
//!
//! Why: a decoded event holds one to four times, and chrono's `FromStr` (which its serde
//! support calls) accepts many forms; it took about a tenth of the read + decode floor's
//! samples once the event's fields were read in place (benches/README.md, "decoder").

use std::fmt;

use chrono::{DateTime, NaiveDate, Utc};
use serde::de::{self, Deserializer, Visitor};

/// `YYYY-MM-DDTHH:MM:SSZ`, or `None` where the text is anything else (or no such time).
fn whole_second(text: &[u8]) -> Option<DateTime<Utc>> {
    if text.len() != 20
        || text[4] != b'-'
        || text[7] != b'-'
        || text[10] != b'T'
        || text[13] != b':'
        || text[16] != b':'
        || text[19] != b'Z'
    {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<u32> {
        text[from..to].iter().try_fold(0u32, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let year = i32::try_from(number(0, 4)?).ok()?;
    NaiveDate::from_ymd_opt(year, number(5, 7)?, number(8, 10)?)?
        .and_hms_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?)
        .map(|t| t.and_utc())
}

fn parse<E: de::Error>(text: &str) -> Result<DateTime<Utc>, E> {
    match whole_second(text.as_bytes()) {
        Some(time) => Ok(time),
        None => text.parse::<DateTime<Utc>>().map_err(E::custom),
    }
}

struct Time;

impl<'de> Visitor<'de> for Time {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an RFC 3339 time")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        parse(text)
    }
}

struct MaybeTime;

impl<'de> Visitor<'de> for MaybeTime {
    type Value = Option<DateTime<Utc>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an RFC 3339 time or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(Time).map(Some)
    }
}

/// A `DateTime<Utc>` field.
pub(super) fn utc<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    d.deserialize_str(Time)
}

/// An `Option<DateTime<Utc>>` field (null or absent: `None`, with `#[serde(default)]`).
pub(super) fn utc_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    d.deserialize_option(MaybeTime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_form_reads_as_chrono_reads_it_and_other_forms_go_to_chrono() {
        for text in [
            "2026-03-02T09:00:00Z",
            "1999-12-31T23:59:59Z",
            "2024-02-29T00:00:00Z",
            "2026-03-02T09:00:00.123456789Z",
            "2026-03-02T10:00:00+01:00",
        ] {
            let fast: DateTime<Utc> = parse::<de::value::Error>(text).expect(text);
            assert_eq!(fast, text.parse::<DateTime<Utc>>().expect(text), "{text}");
        }
        for bad in [
            "2026-02-30T09:00:00Z",
            "2026-13-02T09:00:00Z",
            "2026-03-02T24:00:00Z",
            "2026-03-02 09:00:00Z",
            "x026-03-02T09:00:00Z",
            "",
        ] {
            assert_eq!(
                parse::<de::value::Error>(bad).is_ok(),
                bad.parse::<DateTime<Utc>>().is_ok(),
                "{bad}"
            );
        }
    }
}
