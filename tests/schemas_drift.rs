//! The published JSON Schemas under `schemas/` are generated from the Rust types that
//! serde reads and writes, and this test fails when the committed files differ from what
//! the types say now.
//!
//! Why generated and checked rather than written by hand: a hand-written schema drifts
//! from the code the first time a field is added, and a client validating against it then
//! refuses (or accepts) the wrong messages. Here the types are the one source; a change to
//! a wire type shows up as a schema diff in review.
//!
//! `DEALREG_WRITE_SCHEMAS=1 cargo test --test schemas_drift` writes the files instead of
//! comparing. Real values (an envelope, the replies of an engine run, a feed message, a
//! query) are validated against the generated schemas by `scripts/validate-schemas` with
//! Python's `jsonschema`; this test writes them to `target/schema-examples/` for it, so the
//! examples come from the types' own serialisation and not from hand-written JSON.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use dealreg_clock::ControlledClock;
use dealreg_domain::Event;
use dealreg_engine::{CommandEnvelope, Engine, PartnerEvent, RefusalBody, ReplyLine};
use dealreg_events::memory::MemoryStore;
use dealreg_nats::feed::FeedMessage;
use dealreg_nats::query::{
    ConflictsAnswer, HistoryLine, LedgerAnswer, QueryReply, QueryRequest, RegistrationAnswer,
};
use dealreg_projections::conflicts::ConflictFlag;
use dealreg_projections::ledger::{Balances, Entry};
use dealreg_projections::metrics::MetricsReport;
use dealreg_projections::pipeline::{Grouped, PartnerRow, VendorRow};
use dealreg_projections::program::ProgramReport;
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

/// Where every `$id` lives; the file name follows.
const ID_BASE: &str = "https://dealreg.example/schemas/";
const WRITE_VAR: &str = "DEALREG_WRITE_SCHEMAS";

/// One published schema file.
struct Document {
    /// Path under `schemas/` (other scripts depend on these exact names).
    file: &'static str,
    title: &'static str,
    schema: Value,
}

/// The schema of `T` as a standalone JSON Schema 2020-12 document.
fn schema_of<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    generator.into_root_schema_for::<T>().to_value()
}

/// The schema of `T` as the file `file` with the title `title`.
fn document<T: JsonSchema>(file: &'static str, title: &'static str) -> Document {
    Document {
        file,
        title,
        schema: schema_of::<T>(),
    }
}

/// The body of a NATS command: the envelope where `actor` and `command.type` may be left
/// out, because the subject says who sends and which command it is
/// (`CommandEnvelope::parse_addressed`).
///
/// Why a transformation of the envelope schema and not a Rust type of its own: the body is
/// read by exactly the envelope's types after the subject's actor and command name are
/// filled in, so deriving it from the envelope's schema keeps the two from drifting. Each
/// command variant keeps its `type` constant but no longer requires it; because variants
/// without their tag can look alike (many share `account` + `registration_id`), the
/// variants become `anyOf` instead of `oneOf` (the subject, not the body, picks one).
fn nats_command_body() -> Document {
    let mut schema = schema_of::<CommandEnvelope>();
    let root = schema
        .as_object_mut()
        .expect("the envelope schema is an object");
    if let Some(Value::Array(required)) = root.get_mut("required") {
        required.retain(|field| field != "actor");
    }
    root.insert(
        "description".into(),
        Value::String(
            "The body of a command sent on a NATS command subject \
             (`dealreg.<partner.<id>|vendor.<role>|system.<component>>.cmd.<command>`). \
             Like the command envelope of `dealreg apply`, except that `actor` may be left \
             out (the subject says who sends; when given it must be the subject's) and \
             `command.type` may be left out (the subject names the command; when given it \
             must be that one). The `Nats-Msg-Id` header stands in for a missing \
             `idempotency_key`."
                .into(),
        ),
    );
    let command = root
        .get_mut("$defs")
        .and_then(|defs| defs.get_mut("Command"))
        .and_then(Value::as_object_mut)
        .expect("the envelope schema defines Command");
    let variants = command
        .remove("oneOf")
        .expect("Command is a oneOf of its variants");
    let Value::Array(mut variants) = variants else {
        panic!("Command.oneOf is an array")
    };
    for variant in &mut variants {
        if let Some(Value::Array(required)) = variant.get_mut("required") {
            required.retain(|field| field != "type");
        }
    }
    command.insert("anyOf".into(), Value::Array(variants));
    Document {
        file: "nats-command-body.schema.json",
        title: "NATS command body",
        schema,
    }
}

/// Every published schema, in file order.
fn documents() -> Vec<Document> {
    vec![
        document::<CommandEnvelope>("command-envelope.schema.json", "Command envelope"),
        nats_command_body(),
        document::<ReplyLine>("reply.schema.json", "Command reply"),
        document::<RefusalBody>("error.schema.json", "Refusal"),
        document::<Event>("event.schema.json", "Event"),
        document::<PartnerEvent>("partner-event.schema.json", "Partner event"),
        document::<QueryRequest>("query-request.schema.json", "Query request"),
        document::<QueryReply>("query-reply.schema.json", "Query reply"),
        document::<HistoryLine>("history-line.schema.json", "Registration history line"),
        document::<FeedMessage>("feed-message.schema.json", "Feed message"),
        // The pipeline's stored registration row is private to the projection; what leaves
        // it is one of two forms. The vendor's (`VendorRow`) is the row of the vendor's feed
        // messages and the CRM's input (the feed hands over the stored row, which
        // serialises as it) and, grouped, the vendor's pipeline answer; the partner's
        // (`PartnerRow`) is the row of a partner's feed messages and its pipeline answer.
        document::<VendorRow>(
            "rows/pipeline-registration.schema.json",
            "Pipeline registration row (vendor)",
        ),
        document::<PartnerRow>(
            "rows/pipeline-registration-partner.schema.json",
            "Pipeline registration row (partner)",
        ),
        document::<Entry>("rows/ledger-entry.schema.json", "Ledger entry row"),
        document::<Balances>("rows/ledger-balance.schema.json", "Ledger balance row"),
        document::<BTreeMap<String, ConflictFlag>>(
            "rows/conflicts-account.schema.json",
            "Conflict flags of one account (by conflict id)",
        ),
        document::<MetricsReport>("metrics-report.schema.json", "Program metrics report"),
        document::<ProgramReport>(
            "program-report.schema.json",
            "Program report (credit by share, open pipeline, per partner)",
        ),
        document::<Grouped<VendorRow>>(
            "answers/pipeline.schema.json",
            "Pipeline query answer (vendor): rows by motion, then stage",
        ),
        document::<Grouped<PartnerRow>>(
            "answers/pipeline-partner.schema.json",
            "Pipeline query answer (partner): its own rows by motion, then stage",
        ),
        document::<LedgerAnswer>("answers/ledger.schema.json", "Ledger query answer"),
        document::<ConflictsAnswer>("answers/conflicts.schema.json", "Conflicts query answer"),
        document::<RegistrationAnswer>(
            "answers/registration.schema.json",
            "Registration history query answer",
        ),
    ]
}

/// Sorts every object's keys, so the output does not depend on serde_json's map order.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(fields) => {
            let mut keys: Vec<_> = fields.into_iter().collect();
            keys.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(keys.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// The file's bytes: `$schema`, `$id`, `title` set, keys sorted, pretty, newline-terminated.
fn rendered(doc: &Document) -> String {
    let mut schema = doc.schema.clone();
    let root = schema.as_object_mut().expect("a root schema is an object");
    root.insert(
        "$schema".into(),
        "https://json-schema.org/draft/2020-12/schema".into(),
    );
    root.insert("$id".into(), format!("{ID_BASE}{}", doc.file).into());
    root.insert("title".into(), doc.title.into());
    let mut text = serde_json::to_string_pretty(&sorted(schema)).expect("a schema serialises");
    text.push('\n');
    text
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_schemas_match_the_rust_types() {
    let dir = repo().join("schemas");
    let write = std::env::var(WRITE_VAR).is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for doc in documents() {
        let path = dir.join(doc.file);
        let want = rendered(&doc);
        if write {
            std::fs::create_dir_all(path.parent().expect("a schema file has a folder"))
                .expect("create the schemas folder");
            std::fs::write(&path, &want).expect("write a schema");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(have) if have == want => {}
            Ok(_) => stale.push(format!("{} differs from the Rust types", doc.file)),
            Err(e) => stale.push(format!("{} cannot be read ({e})", doc.file)),
        }
    }
    assert!(
        stale.is_empty(),
        "the committed JSON Schemas are out of date:\n  {}\nrun `{WRITE_VAR}=1 cargo test --test schemas_drift` and commit schemas/",
        stale.join("\n  ")
    );
}

/// Every generated document is a 2020-12 document whose `$ref`s all resolve inside it.
/// (Full meta-schema validation is `scripts/validate-schemas`' job.)
#[test]
fn every_schema_is_self_contained() {
    fn refs(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(fields) => {
                if let Some(Value::String(r)) = fields.get("$ref") {
                    found.push(r.clone());
                }
                fields.values().for_each(|v| refs(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }
    for doc in documents() {
        let schema: Value = serde_json::from_str(&rendered(&doc)).expect("rendered is JSON");
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        let mut found = Vec::new();
        refs(&schema, &mut found);
        for r in found {
            let name = r
                .strip_prefix("#/$defs/")
                .unwrap_or_else(|| panic!("{}: `{r}` is not a local $ref", doc.file));
            assert!(
                schema["$defs"].get(name).is_some(),
                "{}: `{r}` does not resolve",
                doc.file
            );
        }
    }
}

/// Writes `values` as one JSON document a line to `target/schema-examples/<name>.jsonl`,
/// for `scripts/validate-schemas` to check against `schemas/<schema>`.
fn write_examples(name: &str, values: &[Value]) {
    let dir = repo().join("target").join("schema-examples");
    std::fs::create_dir_all(&dir).expect("create target/schema-examples");
    let mut text = String::new();
    for value in values {
        text.push_str(&serde_json::to_string(value).expect("an example serialises"));
        text.push('\n');
    }
    std::fs::write(dir.join(format!("{name}.jsonl")), text).expect("write examples");
}

fn as_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("a wire value serialises")
}

/// Runs a small program on the engine and writes what it answered (every reply shape:
/// vendor, partner, refused) and the values of the other schemas as examples.
#[tokio::test]
async fn real_values_are_written_for_validation() {
    let store = MemoryStore::new();
    let engine = Engine::open(store.clone(), ControlledClock::starting_at(start()), None)
        .await
        .expect("engine opens");
    let partner = Uuid::now_v7();
    let registration = Uuid::now_v7();
    let envelopes = vec![
        json!({ "actor": channel_manager(), "command": onboard(partner, "Contoso", &["reseller"], "gold", 5) }),
        json!({ "actor": channel_manager(), "command": certify(partner, "analytics", "2027-01-31") }),
        json!({ "idempotency_key": "reg-1", "actor": partner_actor(partner),
                "command": submit(registration, partner, "globex.com", "analytics", "reseller") }),
        json!({ "actor": channel_manager(), "command": approve(registration, "globex.com") }),
        json!({ "actor": partner_actor(partner), "command": approve(registration, "globex.com") }),
    ];
    let mut replies = Vec::new();
    let mut envelope_values = Vec::new();
    for body in &envelopes {
        let envelope = CommandEnvelope::parse(body.to_string().as_bytes()).expect("parses");
        envelope_values.push(as_json(&envelope));
        let line = engine.answer(Ok(envelope)).await;
        replies.push(as_json(&line));
    }
    // A line that cannot be read, and an unknown command: the refused shape.
    replies.push(as_json(&engine.execute_line(b"{not json").await));
    replies.push(as_json(
        &engine
            .execute_line(
                json!({ "actor": channel_manager(), "command": { "type": "resell" } })
                    .to_string()
                    .as_bytes(),
            )
            .await,
    ));
    let mut events = Vec::new();
    let mut partner_events = Vec::new();
    for reply in &replies {
        for line in reply["events"].as_array().into_iter().flatten() {
            let event = line["event"].clone();
            // A partner's reply carries partner events; every other reply full events.
            if line.get("stream").is_some() {
                events.push(event);
            } else {
                partner_events.push(event);
            }
        }
    }
    assert!(!events.is_empty() && !partner_events.is_empty());
    assert!(replies.iter().any(|r| r.get("replayed").is_none()));

    let feed = FeedMessage {
        view: "pipeline".into(),
        table: "registration".into(),
        key: format!("registration/{registration}"),
        position: dealreg_events::Position::at(3),
        row: Some(json!({ "registration_id": registration })),
        deleted: false,
    };
    let query = QueryRequest {
        min_position: Some(dealreg_events::Position::at(3)),
        timeout_ms: Some(1000),
        ..QueryRequest::default()
    };
    write_examples("command-envelope.schema.json", &envelope_values);
    write_examples(
        "nats-command-body.schema.json",
        &[
            json!({ "command": { "partner_id": partner, "capacity": 3 } }),
            json!({ "idempotency_key": "k-1", "command": { "type": "set_capacity", "partner_id": partner, "capacity": 3 } }),
        ],
    );
    write_examples("reply.schema.json", &replies);
    write_examples("event.schema.json", &events);
    write_examples("partner-event.schema.json", &partner_events);
    write_examples("feed-message.schema.json", &[as_json(&feed)]);
    write_examples("query-request.schema.json", &[as_json(&query), json!({})]);
    write_examples(
        "error.schema.json",
        &[json!({ "code": "view_timeout", "message": "ask again" })],
    );
}
