//! One subject per dealreg stream: `<prefix>.<token>`, where the token spells the stream
//! name reversibly.
//!
//! Why an encoding: a subject token may not hold `.` (the separator), `*` and `>`
//! (wildcards) or whitespace, yet stream names hold dots (`account-acme.co.uk`) and may
//! hold anything. Keeping `[A-Za-z0-9_-]` and writing every other byte as `~XX` (uppercase
//! hex, `~` itself included) gives a token that is a single valid subject token, reads back
//! to the exact name, and is the same for a name every time (the expected-sequence check
//! is per subject, so one name must never have two subjects). Decoding is strict: a token
//! that this encoder would not have written (lowercase hex, a kept byte written as `~XX`)
//! is not a stream's token, so no two names share one.

/// The longest subject an event may be published on. Why a limit: the subject travels in
/// the protocol's control line (4 KiB by default, with the reply subject and sizes beside
/// it); a name that encodes longer is refused before anything is sent.
pub const MAX_SUBJECT_BYTES: usize = 1024;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn kept(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

/// The subject token of a stream name.
pub fn encode_stream_name(name: &str) -> String {
    let mut token = String::with_capacity(name.len());
    for &byte in name.as_bytes() {
        if kept(byte) {
            token.push(char::from(byte));
        } else {
            token.push('~');
            token.push(char::from(HEX[usize::from(byte >> 4)]));
            token.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    token
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The stream name a token spells, or `None` when [`encode_stream_name`] would never have
/// written this token (so it names no dealreg stream).
pub fn decode_token(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut name = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if kept(byte) {
            name.push(byte);
            i += 1;
        } else if byte == b'~' {
            let high = hex_value(*bytes.get(i + 1)?)?;
            let low = hex_value(*bytes.get(i + 2)?)?;
            let decoded = (high << 4) | low;
            if kept(decoded) {
                // Not canonical: the encoder keeps this byte as it is.
                return None;
            }
            name.push(decoded);
            i += 3;
        } else {
            return None;
        }
    }
    String::from_utf8(name).ok()
}

/// Subjects of one store: its prefix, and the subject of each stream.
#[derive(Debug, Clone)]
pub(crate) struct Subjects {
    prefix: String,
}

impl Subjects {
    pub(crate) fn new(prefix: &str) -> Subjects {
        Subjects {
            prefix: prefix.to_string(),
        }
    }

    /// The subject of `stream`, or `None` when the name cannot be a subject (empty, or so
    /// long that its subject passes [`MAX_SUBJECT_BYTES`]).
    pub(crate) fn of(&self, stream: &str) -> Option<String> {
        if stream.is_empty() {
            return None;
        }
        let subject = format!("{}.{}", self.prefix, encode_stream_name(stream));
        (subject.len() <= MAX_SUBJECT_BYTES).then_some(subject)
    }

    /// Every event subject, for reading the whole log.
    pub(crate) fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The stream name of an event subject, `None` for a subject that is not one.
    pub(crate) fn stream_of(&self, subject: &str) -> Option<String> {
        let token = subject
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('.')?;
        if token.is_empty() {
            return None;
        }
        decode_token(token)
    }
}

/// Checks a subject prefix: one or more non-empty tokens without wildcards or whitespace.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("the subject prefix is empty; use e.g. `dealreg.ev`".into());
    }
    if prefix.split('.').any(str::is_empty) {
        return Err(format!(
            "the subject prefix `{prefix}` has an empty token; write tokens separated by single dots, e.g. `dealreg.ev`"
        ));
    }
    if prefix
        .chars()
        .any(|c| c == '*' || c == '>' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "the subject prefix `{prefix}` holds a wildcard or whitespace; use plain tokens such as `dealreg.ev`"
        ));
    }
    if prefix.len() > MAX_SUBJECT_BYTES / 2 {
        return Err(format!(
            "the subject prefix is {} bytes long; keep it under {}",
            prefix.len(),
            MAX_SUBJECT_BYTES / 2
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const NAMES: &[&str] = &[
        "account-acme.co.uk",
        "account-acme-co.uk",
        "account-acme_co_uk",
        "account-acme~2Eco~2Euk",
        "account-xn--bcher-kva.example",
        "partner-0191a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "program",
        "odd-*.>~2E%20 name",
        "odd-~",
        "~",
        "~7E",
        ".",
        "..",
        "a.b",
        "a~2Eb",
        "bücher.example",
        "名前",
        "tab\there",
        "line\nbreak",
        "emoji-🦀",
        "A",
        "a",
    ];

    #[test]
    fn names_round_trip() {
        for name in NAMES {
            let token = encode_stream_name(name);
            assert_eq!(decode_token(&token).as_deref(), Some(*name), "{token}");
        }
    }

    #[test]
    fn tokens_are_single_plain_subject_tokens() {
        for name in NAMES {
            let token = encode_stream_name(name);
            assert!(!token.is_empty());
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'~'),
                "{name:?} -> {token}"
            );
        }
        assert_eq!(encode_stream_name("acme.co.uk"), "acme~2Eco~2Euk");
        assert_eq!(encode_stream_name("a*>~ b"), "a~2A~3E~7E~20b");
        assert_eq!(encode_stream_name("ü"), "~C3~BC");
    }

    #[test]
    fn no_two_names_share_a_token() {
        let mut seen: HashMap<String, &str> = HashMap::new();
        for name in NAMES {
            if let Some(other) = seen.insert(encode_stream_name(name), name) {
                panic!("{name:?} and {other:?} share a token");
            }
        }
        // Exhaustively over short names of the interesting bytes.
        let alphabet = ['a', 'A', '~', '.', '2', 'E', '7', '-', '_', ' ', 'ü'];
        let mut tokens: HashMap<String, String> = HashMap::new();
        for x in alphabet {
            for y in alphabet {
                for z in alphabet {
                    let name: String = [x, y, z].iter().collect();
                    let token = encode_stream_name(&name);
                    assert_eq!(decode_token(&token).as_deref(), Some(name.as_str()));
                    if let Some(other) = tokens.insert(token.clone(), name.clone()) {
                        assert_eq!(other, name, "two names share {token}");
                    }
                }
            }
        }
    }

    #[test]
    fn tokens_the_encoder_never_writes_are_refused() {
        for token in [
            "~2e", "~41", "~", "~2", "~ZZ", "a.b", "a b", "a*", ">", "~FF",
        ] {
            assert_eq!(decode_token(token), None, "{token}");
        }
    }

    #[test]
    fn subjects_name_their_streams() {
        let subjects = Subjects::new("dealreg.ev");
        let subject = subjects.of("account-acme.co.uk").expect("a subject");
        assert_eq!(subject, "dealreg.ev.account-acme~2Eco~2Euk");
        assert_eq!(
            subjects.stream_of(&subject).as_deref(),
            Some("account-acme.co.uk")
        );
        assert_eq!(subjects.stream_of("dealreg.evx.a"), None);
        assert_eq!(subjects.stream_of("dealreg.ev."), None);
        assert_eq!(subjects.stream_of("dealreg.ev.a.b"), None);
        assert_eq!(subjects.of(""), None);
        assert_eq!(subjects.of(&"é".repeat(400)), None, "too long");
        assert_eq!(subjects.all(), "dealreg.ev.>");
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(check_prefix("dealreg.ev").is_ok());
        assert!(check_prefix("ev").is_ok());
        for bad in ["", ".ev", "ev.", "a..b", "ev.*", "ev.>", "e v"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }
}
