//! Link tokens and reply tokens: round trips and every way of being refused.

use chrono::{Duration, TimeZone, Utc};
use dealreg_actions::{Link, LinkKey, LinkRefused, MAX_TOKEN_LEN};
use serde_json::json;

fn link() -> Link {
    let mut fields = serde_json::Map::new();
    fields.insert("account".into(), json!("acme"));
    fields.insert("registration_id".into(), json!("R-1042"));
    Link::new(
        "approve_registration",
        fields,
        json!({"kind": "manager", "id": "m-7"}),
        Utc.with_ymd_and_hms(2026, 12, 10, 12, 0, 0).unwrap(),
    )
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap()
}

#[test]
fn sign_verify_round_trip() {
    let key = LinkKey::generate();
    let link = link();
    let token = key.sign(&link);
    assert!(token.starts_with("v1."));
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
    assert_eq!(key.verify(&token, now()).unwrap(), link);
}

#[test]
fn a_changed_character_anywhere_after_the_version_is_tampered() {
    let key = LinkKey::generate();
    let token = key.sign(&link());
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for i in 3..token.len() {
        if token.as_bytes()[i] == b'.' {
            continue;
        }
        for replacement in [b'A', b'q', b'_'] {
            let mut bytes = token.clone().into_bytes();
            if bytes[i] == replacement {
                continue;
            }
            bytes[i] = replacement;
            assert!(alphabet.contains(&replacement));
            let changed = String::from_utf8(bytes).unwrap();
            assert_eq!(
                key.verify(&changed, now()),
                Err(LinkRefused::Tampered),
                "position {i}"
            );
        }
    }
}

#[test]
fn another_key_is_tampered() {
    let token = LinkKey::generate().sign(&link());
    assert_eq!(
        LinkKey::generate().verify(&token, now()),
        Err(LinkRefused::Tampered)
    );
}

#[test]
fn expired_link_says_when() {
    let key = LinkKey::generate();
    let link = link();
    let token = key.sign(&link);
    let refused = key
        .verify(&token, link.expires_at + Duration::seconds(1))
        .unwrap_err();
    assert_eq!(
        refused,
        LinkRefused::Expired {
            expired_at: link.expires_at
        }
    );
    let text = refused.to_string();
    assert!(text.contains("2026-12-10 12:00"), "{text}");
    assert!(text.contains("new link"), "{text}");
    assert_eq!(
        key.verify(&token, link.expires_at),
        Err(LinkRefused::Expired {
            expired_at: link.expires_at
        })
    );
}

#[test]
fn oversized_and_shapeless_tokens_are_malformed() {
    let key = LinkKey::generate();
    let mut big = link();
    big.fields
        .insert("padding".into(), json!("x".repeat(MAX_TOKEN_LEN)));
    let token = key.sign(&big);
    assert!(token.len() > MAX_TOKEN_LEN);
    assert_eq!(key.verify(&token, now()), Err(LinkRefused::Malformed));
    for bad in [
        "",
        "v1.",
        "v1.abc",
        "v2.abc.def",
        "hello",
        "v1..x",
        "v1.a.b.c",
    ] {
        assert_eq!(key.verify(bad, now()), Err(LinkRefused::Malformed), "{bad}");
    }
}

#[test]
fn secrets_stay_out_of_debug_and_errors() {
    let key = LinkKey::from_bytes(&[7u8; 32]);
    assert_eq!(format!("{key:?}"), "LinkKey(<redacted>)");
    for refused in [LinkRefused::Malformed, LinkRefused::Tampered] {
        assert!(refused.to_string().contains("Nothing was done"));
    }
}

#[test]
fn key_file_is_created_once_then_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys").join("links.key");
    let first = LinkKey::load_or_create(&path).unwrap();
    let second = LinkKey::load_or_create(&path).unwrap();
    let token = first.sign(&link());
    assert!(second.verify(&token, now()).is_ok());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    std::fs::write(&path, "not a key").unwrap();
    let err = LinkKey::load_or_create(&path).unwrap_err().to_string();
    assert!(err.contains("does not hold"), "{err}");
    assert!(!err.contains("not a key"), "{err}");
}

#[test]
fn reply_tokens_fit_a_local_part_and_verify() {
    let key = LinkKey::generate();
    let id = uuid::Uuid::now_v7();
    let expires = Utc.with_ymd_and_hms(2026, 12, 20, 8, 30, 20).unwrap();
    let token = key.sign_reply(id, expires);
    assert_eq!(token.len(), 48);
    assert!(format!("reply+{token}").len() <= 64);
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    let (got, until) = key.verify_reply(&token, now()).unwrap();
    assert_eq!(got, id);
    // Rounded up to the minute: never shorter than asked.
    assert_eq!(until, Utc.with_ymd_and_hms(2026, 12, 20, 8, 31, 0).unwrap());
    assert_eq!(
        key.verify_reply(&token.to_uppercase(), now()).unwrap().0,
        id
    );
    assert!(matches!(
        key.verify_reply(&token, until),
        Err(LinkRefused::Expired { .. })
    ));
    assert_eq!(
        LinkKey::generate().verify_reply(&token, now()),
        Err(LinkRefused::Tampered)
    );
    for i in 0..token.len() {
        let mut bytes = token.clone().into_bytes();
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let changed = String::from_utf8(bytes).unwrap();
        let refused = key.verify_reply(&changed, now()).unwrap_err();
        // The last character carries padding bits: changing them is not a spelling of
        // the same token.
        assert!(
            matches!(refused, LinkRefused::Tampered | LinkRefused::Malformed),
            "position {i}: {refused:?}"
        );
        if i < token.len() - 1 {
            assert_eq!(refused, LinkRefused::Tampered, "position {i}");
        }
    }
    assert_eq!(
        key.verify_reply("short", now()),
        Err(LinkRefused::Malformed)
    );
    assert_eq!(
        key.verify_reply(&"!".repeat(48), now()),
        Err(LinkRefused::Malformed)
    );
}
