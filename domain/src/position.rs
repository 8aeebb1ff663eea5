//! Where an event sits in the log: an opaque, ordered token.
//!
//! Why a token and not a number: each event store orders its log its own way. SQLite
//! numbers rows, JetStream numbers the messages of a stream, and KurrentDB gives every
//! event a (commit, prepare) pair of byte offsets that are neither dense nor one number.
//! Readers only ever compare positions and hand them back ("views at least as new as
//! this"), so a position is two unsigned numbers compared in order, and written as one
//! string: `"42"` when both parts are equal (every one-number backend, and most KurrentDB
//! events), `"1234/1180"` otherwise. Nothing may subtract positions or count events with
//! them: they are not dense.
//!
//! The domain never decides on a position; it lives here because projections (pure folds)
//! and the wire types carry it, and this crate is the pure vocabulary they share.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A position in the log. [`Position::ORIGIN`] is "before every event": reading or
/// subscribing after it yields the whole log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    commit: u64,
    prepare: u64,
}

impl Position {
    /// Before every event.
    pub const ORIGIN: Position = Position {
        commit: 0,
        prepare: 0,
    };

    /// The position of a backend that numbers its log with one number (SQLite's row id,
    /// JetStream's stream sequence).
    pub const fn at(sequence: u64) -> Position {
        Position {
            commit: sequence,
            prepare: sequence,
        }
    }

    /// A KurrentDB position: the commit and prepare offsets of the event in `$all`.
    pub const fn pair(commit: u64, prepare: u64) -> Position {
        Position { commit, prepare }
    }

    /// The first part: the row id or stream sequence of a one-number backend, KurrentDB's
    /// commit position.
    pub const fn commit(&self) -> u64 {
        self.commit
    }

    /// The second part: KurrentDB's prepare position; equal to [`Position::commit`] on a
    /// one-number backend.
    pub const fn prepare(&self) -> u64 {
        self.prepare
    }

    /// The one number of a one-number backend's position, `None` for a pair.
    pub const fn sequence(&self) -> Option<u64> {
        if self.commit == self.prepare {
            Some(self.commit)
        } else {
            None
        }
    }

    pub fn is_origin(&self) -> bool {
        *self == Position::ORIGIN
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sequence() {
            Some(n) => write!(f, "{n}"),
            None => write!(f, "{}/{}", self.commit, self.prepare),
        }
    }
}

/// Why a position could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a log position: a position is a string of digits (\"42\") or two joined by a slash (\"1234/1180\"), as a reply or a feed gave it")]
pub struct BadPosition(pub String);

impl FromStr for Position {
    type Err = BadPosition;

    fn from_str(text: &str) -> Result<Position, BadPosition> {
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse::<u64>().ok()
        };
        let parsed = match text.split_once('/') {
            None => number(text).map(Position::at),
            Some((commit, prepare)) => number(commit)
                .zip(number(prepare))
                .map(|(c, p)| Position::pair(c, p)),
        };
        parsed.ok_or_else(|| BadPosition(text.chars().take(64).collect()))
    }
}

impl Serialize for Position {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Position {
    /// A string token; also a plain non-negative number, which is what logs, exports and
    /// clients written before positions became tokens hold.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Position, D::Error> {
        struct Token;
        impl serde::de::Visitor<'_> for Token {
            type Value = Position;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a log position: a string such as \"42\" or \"1234/1180\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Position, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Position, E> {
                Ok(Position::at(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Position, E> {
                u64::try_from(v)
                    .map(Position::at)
                    .map_err(|_| E::custom("a log position is never negative"))
            }
        }
        deserializer.deserialize_any(Token)
    }
}

impl JsonSchema for Position {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Position".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A position in the log: an opaque, ordered token. Compare it only by handing it back (min_position); it is not a count of events.",
            "type": "string",
            "pattern": "^[0-9]{1,20}(/[0-9]{1,20})?$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_reads_back_what_it_writes() {
        for p in [
            Position::ORIGIN,
            Position::at(42),
            Position::pair(1234, 1180),
            Position::at(u64::MAX),
        ] {
            let text = p.to_string();
            assert_eq!(text.parse::<Position>(), Ok(p));
            let json = serde_json::to_string(&p).expect("serialise");
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Position>(&json).ok(), Some(p));
        }
        assert_eq!(Position::pair(7, 7).to_string(), "7");
    }

    #[test]
    fn positions_order_by_commit_then_prepare() {
        assert!(Position::ORIGIN < Position::at(1));
        assert!(Position::pair(10, 3) < Position::pair(10, 4));
        assert!(Position::pair(10, 99) < Position::pair(11, 0));
    }

    #[test]
    fn a_number_is_read_as_a_position_and_garbage_is_refused() {
        assert_eq!(
            serde_json::from_str::<Position>("29").ok(),
            Some(Position::at(29))
        );
        for bad in [
            "\"\"",
            "\"-1\"",
            "\"1/\"",
            "\"/2\"",
            "\"1/2/3\"",
            "\"x\"",
            "-3",
            "1.5",
            "\"+4\"",
        ] {
            assert!(
                serde_json::from_str::<Position>(bad).is_err(),
                "{bad} is not a position"
            );
        }
    }
}
