//! `dealreg audit history`: the story of one registration, account or partner, as a person
//! reads it: when, who, under which role, what they asked for, what happened (refusals
//! included, with their reasons), the reason they gave, and the policy version applied.
//!
//! Why from the log and not from a view: a view keeps the present; an auditor asks how it
//! came to be, and only the log holds every attempt.

use std::io::Write;
use std::process::ExitCode;

use dealreg_domain::AccountKey;
use dealreg_engine::{decode_event, EventMetadata};
use dealreg_events::{LogPages, Position};
use serde::Serialize;

/// Whose history.
pub enum Subject {
    Registration(uuid::Uuid),
    Account(AccountKey),
    Partner(uuid::Uuid),
}

/// One line of a history.
#[derive(Debug, Serialize)]
pub struct HistoryLine {
    pub position: dealreg_events::Position,
    pub at: String,
    pub stream: String,
    pub actor: serde_json::Value,
    pub who: String,
    pub command: String,
    pub happened: String,
    /// The refusal's code, for a command the rules refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The reason the actor gave (rationale, reason) or the refusal's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub policy_version: u32,
    pub event: serde_json::Value,
}

fn names(value: &serde_json::Value, id: &str) -> bool {
    match value {
        serde_json::Value::String(s) => s == id,
        serde_json::Value::Array(items) => items.iter().any(|v| names(v, id)),
        serde_json::Value::Object(fields) => fields.values().any(|v| names(v, id)),
        _ => false,
    }
}

fn text_field(event: &serde_json::Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| event.get(*k).and_then(|v| v.as_str()))
        .map(str::to_string)
}

pub async fn run(
    spec: &super::store::StoreSpec,
    subject: Subject,
    json: bool,
) -> Result<ExitCode, String> {
    let store = super::store::open_read(spec).await?;
    let (stream_of, id) = match &subject {
        Subject::Registration(id) => (None, Some(id.to_string())),
        Subject::Account(key) => (
            Some(dealreg_domain::Boundary::Account(key.clone()).stream_name()),
            None,
        ),
        Subject::Partner(id) => (Some(format!("partner-{id}")), Some(id.to_string())),
    };
    let mut lines = Vec::new();
    let mut pages = LogPages::new(&store, Position::ORIGIN)
        .await
        .map_err(|e| e.to_string())?;
    while let Some(page) = pages.next_page().await.map_err(|e| e.to_string())? {
        for recorded in &page {
            let in_stream = stream_of.as_deref() == Some(recorded.stream.as_str());
            let event: serde_json::Value = serde_json::to_value(
                decode_event(recorded)
                    .map_err(|e| format!("position {}: {e}", recorded.position))?,
            )
            .map_err(|e| e.to_string())?;
            let named = id.as_deref().is_some_and(|id| names(&event, id));
            if !in_stream && !named {
                continue;
            }
            let metadata: EventMetadata = serde_json::from_slice(&recorded.metadata)
                .map_err(|e| format!("position {}: unreadable metadata: {e}", recorded.position))?;
            let happened = recorded.event_type.clone();
            let refused = (happened == "command_rejected" || happened == "command_refused")
                .then(|| text_field(&event, &["code"]))
                .flatten();
            let reason = if refused.is_some() {
                text_field(&event, &["message"])
            } else {
                text_field(
                    &event,
                    &["rationale", "reason", "note", "text", "question", "title"],
                )
            };
            lines.push(HistoryLine {
                position: recorded.position,
                at: text_field(&event, &["at"]).unwrap_or_else(|| metadata.decided_at.to_rfc3339()),
                stream: recorded.stream.clone(),
                actor: serde_json::to_value(&metadata.actor).map_err(|e| e.to_string())?,
                who: metadata.actor.label(),
                command: metadata.command.clone(),
                happened,
                refused,
                reason,
                policy_version: metadata.policy_version,
                event,
            });
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = if json {
        serde_json::to_writer_pretty(&mut out, &lines)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        let mut result = Ok(());
        for line in &lines {
            let outcome = match &line.refused {
                Some(code) => format!("REFUSED {code}"),
                None => line.happened.clone(),
            };
            let reason = line
                .reason
                .as_ref()
                .map(|r| format!("  \u{2014} {r}"))
                .unwrap_or_default();
            result = writeln!(
                out,
                "{}  #{:<6} {:<48} {} \u{2192} {}  (policy v{}){}",
                line.at,
                line.position,
                line.who,
                line.command,
                outcome,
                line.policy_version,
                reason
            );
            if result.is_err() {
                break;
            }
        }
        if lines.is_empty() {
            eprintln!("nothing in the log names it; check the id or the domain");
        }
        result
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}
