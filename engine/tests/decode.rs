//! Issue 36: the tag-first decoder (`decode_current`) gives the same events as serde's
//! buffered decoder of the internally tagged `Event` (`decode_buffered`), on every stored
//! payload of the replay fixtures and of the demo's log, and refuses what it refused.

use dealreg_domain::Event;
use dealreg_engine::{decode_buffered, decode_current, decode_event, EVENT_SCHEMA_VERSION};
use dealreg_events::{EventStore, Position};

/// Both decoders on one payload: the same event or both an error; an event re-encodes to
/// the payload's bytes (the encoder writes what it read, `"type"` first).
fn same_by_both(data: &[u8], current_schema: bool, at: &str) -> Option<Event> {
    let new = decode_current(data);
    let old = decode_buffered(data);
    match (new, old) {
        (Ok(new), Ok(old)) => {
            assert_eq!(new, old, "{at}: the decoders disagree");
            if current_schema {
                let bytes = serde_json::to_vec(&new).expect("encode");
                assert_eq!(
                    String::from_utf8_lossy(&bytes),
                    String::from_utf8_lossy(data),
                    "{at}: re-encoded bytes differ"
                );
            }
            Some(new)
        }
        (Err(_), Err(_)) if !current_schema => None,
        (new, old) => panic!("{at}: new {new:?}, old {old:?}"),
    }
}

fn schema_of(metadata: &[u8]) -> u32 {
    let meta: serde_json::Value = serde_json::from_slice(metadata).expect("metadata");
    meta["schema"].as_u64().expect("schema") as u32
}

#[test]
fn every_fixture_event_decodes_the_same_by_both_decoders() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../replay-fixtures");
    let mut logs = 0;
    let mut decoded = 0;
    let mut current = 0;
    let mut events = 0;
    for entry in std::fs::read_dir(&root).expect("fixtures") {
        let log = entry.expect("entry").path().join("log.jsonl");
        if !log.exists() {
            continue;
        }
        logs += 1;
        let text = std::fs::read_to_string(&log).expect("log");
        for (n, line) in text.lines().enumerate() {
            let line: serde_json::Value = serde_json::from_str(line).expect("line");
            if line["kind"] != "event" {
                continue;
            }
            let data = line["data"].as_str().expect("data");
            let metadata = line["metadata"].as_str().expect("metadata");
            assert!(data.starts_with("{\"type\":\""), "{}:{n}", log.display());
            let is_current = schema_of(metadata.as_bytes()) == EVENT_SCHEMA_VERSION;
            let at = format!("{}:{}", log.display(), n + 1);
            if same_by_both(data.as_bytes(), is_current, &at).is_some() {
                decoded += 1;
            }
            current += usize::from(is_current);
            events += 1;
        }
    }
    eprintln!(
        "{logs} logs, {events} events, {current} of the current schema, {decoded} decoded by both"
    );
    assert!(logs >= 8, "{logs} fixture logs");
    assert!(events >= 3_000, "{events} events");
    assert!(current >= 1_500, "{current} current-schema events");
    assert!(decoded >= current, "{decoded} decoded");
}

#[test]
fn every_event_of_the_demo_decodes_the_same_by_both_decoders() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let store = dealreg_events::memory::MemoryStore::new();
    let checkpoints = dealreg_views::MemoryCheckpoints::new();
    runtime
        .block_on(dealreg_demo::run(
            store.clone(),
            &checkpoints,
            dealreg_demo::DEFAULT_SEED,
        ))
        .expect("demo");
    let mut after = Position::ORIGIN;
    let mut seen = 0;
    loop {
        let page = runtime
            .block_on(store.read_all(after, 1_000))
            .expect("read");
        let Some(last) = page.last() else { break };
        after = last.position;
        for recorded in &page {
            let at = format!("{} @ {:?}", recorded.stream, recorded.position);
            assert_eq!(schema_of(&recorded.metadata), EVENT_SCHEMA_VERSION, "{at}");
            let event = same_by_both(&recorded.data, true, &at).expect("decodes");
            assert_eq!(decode_event(recorded).expect("decode_event"), event, "{at}");
            assert_eq!(event.event_type(), recorded.event_type, "{at}");
            seen += 1;
        }
    }
    assert!(seen > 1_000, "{seen} events in the demo");
}

const WITHDRAWN: &str = r#"{"type":"registration_withdrawn","account":"acme.com","registration_id":"019b8d62-7a80-7918-bbdb-86c9a2bb53b3","partner_id":"019b8d62-7a80-7918-bbdb-86c9a2bb53b4","reason":"lost interest","at":"2026-01-05T09:00:00Z"}"#;

fn withdrawn() -> Event {
    decode_buffered(WITHDRAWN.as_bytes()).expect("the sample decodes")
}

#[test]
fn a_payload_with_its_tag_elsewhere_decodes_through_the_buffered_decoder() {
    let expected = withdrawn();
    let tag_last = r#"{"account":"acme.com","registration_id":"019b8d62-7a80-7918-bbdb-86c9a2bb53b3","partner_id":"019b8d62-7a80-7918-bbdb-86c9a2bb53b4","reason":"lost interest","at":"2026-01-05T09:00:00Z","type":"registration_withdrawn"}"#;
    assert_eq!(
        decode_current(tag_last.as_bytes()).expect("tag last"),
        expected
    );
    let spaced = WITHDRAWN.replacen("{\"type\":", "{ \"type\" : ", 1);
    assert_eq!(decode_current(spaced.as_bytes()).expect("spaced"), expected);
    let leading = format!("  {WITHDRAWN}");
    assert_eq!(
        decode_current(leading.as_bytes()).expect("leading space"),
        expected
    );
    let trailing = format!("{WITHDRAWN}\n");
    assert_eq!(
        decode_current(trailing.as_bytes()).expect("trailing newline"),
        expected
    );
}

#[test]
fn an_escaped_tag_decodes_owned() {
    let escaped = WITHDRAWN.replacen("registration_withdrawn", "registration\\u005fwithdrawn", 1);
    assert_eq!(
        decode_current(escaped.as_bytes()).expect("escaped"),
        withdrawn()
    );
}

#[test]
fn an_unknown_field_is_skipped_as_before() {
    let extra = WITHDRAWN.replacen(
        "\"reason\"",
        "\"later\":{\"nested\":[1,2,{\"type\":\"x\"}]},\"reason\"",
        1,
    );
    assert_eq!(
        decode_current(extra.as_bytes()).expect("extra"),
        withdrawn()
    );
    assert_eq!(
        decode_buffered(extra.as_bytes()).expect("extra"),
        withdrawn()
    );
}

#[test]
fn what_the_buffered_decoder_refuses_is_refused() {
    let cases = [
        (
            "unknown type",
            WITHDRAWN.replacen("registration_withdrawn", "registration_vanished", 1),
            "unknown variant",
        ),
        (
            "missing field",
            WITHDRAWN.replacen("\"reason\":\"lost interest\",", "", 1),
            "missing field `reason`",
        ),
        (
            "mistyped field",
            WITHDRAWN.replacen("\"lost interest\"", "42", 1),
            "invalid type",
        ),
        (
            "second type",
            WITHDRAWN.replacen("\"reason\"", "\"type\":\"deal_lost\",\"reason\"", 1),
            "duplicate field `type`",
        ),
        (
            "trailing characters",
            format!("{WITHDRAWN}x"),
            "trailing characters",
        ),
        (
            "type not a string",
            WITHDRAWN.replacen("\"registration_withdrawn\"", "7", 1),
            "",
        ),
        ("truncated", WITHDRAWN[..60].to_string(), "EOF"),
    ];
    for (what, payload, says) in cases {
        let new = decode_current(payload.as_bytes());
        let old = decode_buffered(payload.as_bytes());
        assert!(old.is_err(), "{what}: the buffered decoder accepted it");
        let err = new.expect_err(what).to_string();
        assert!(err.contains(says), "{what}: {err}");
    }
}
