//! docs/API.md promises codes; these tests pin each list to what the engine sends, so the
//! two can never drift apart again (an `attribution_over100` went out while the document
//! said `attribution_over_100`).

use std::collections::BTreeSet;

use dealreg_domain::RejectionCode;
use dealreg_engine::InputErrorCode;

fn api() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md"))
        .expect("docs/API.md")
}

/// The codes in backticks between `start` and the next full stop after a backtick.
fn listed_after(text: &str, start: &str) -> BTreeSet<String> {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("docs/API.md has no `{start}`"))
        + start.len();
    let rest = &text[from..];
    let end = rest.find("`.").map_or(rest.len(), |i| i + 1);
    rest[..end]
        .replace('`', "")
        .split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

#[test]
fn every_business_refusal_code_in_the_api_document_is_the_one_the_engine_sends() {
    let documented = listed_after(&api(), "Business refusal codes (stable):");
    let sent: BTreeSet<String> = RejectionCode::ALL
        .iter()
        .map(|c| {
            serde_json::to_value(c)
                .expect("json")
                .as_str()
                .expect("a string")
                .to_string()
        })
        .collect();
    assert_eq!(documented, sent, "docs/API.md and the engine disagree");
    for code in RejectionCode::ALL {
        assert_eq!(serde_json::to_value(code).expect("json"), code.as_str());
    }
}

#[test]
fn every_input_and_engine_code_has_a_row_in_the_api_document() {
    let text = api();
    let rows: BTreeSet<String> = text
        .lines()
        .filter(|l| l.starts_with("| `"))
        .flat_map(|l| {
            l.split('|')
                .nth(1)
                .unwrap_or_default()
                .split(',')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let input = [
        InputErrorCode::MalformedJson,
        InputErrorCode::InvalidCommand,
        InputErrorCode::UnknownCommand,
        InputErrorCode::PayloadTooLarge,
    ];
    for code in input {
        assert!(rows.contains(&code.to_string()), "no row for `{code}`");
    }
    // What `EngineError::code` can answer (engine/src/engine.rs).
    for code in [
        "idempotency_key_reused",
        "store_unavailable",
        "store_failed",
        "undecodable_event",
        "contention",
        "internal",
        "no_policy",
        "time_before_log",
    ] {
        assert!(rows.contains(code), "no row for `{code}`");
    }
}
