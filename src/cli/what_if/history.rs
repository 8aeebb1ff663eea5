//! The recorded history as `what-if` needs it: the commands in the order the log took
//! them (each with who, when, its key, its body and how it was answered), the policies
//! adopted, and what the history came to ([`Outcome`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use dealreg_domain::command::AdoptPolicy;
use dealreg_domain::{Actor, Command, Event, Policy};
use dealreg_engine::{decode_event, EventMetadata};
use dealreg_events::{LogPages, Position};
use uuid::Uuid;

use super::outcome::Outcome;

/// How the recorded history answered a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Refused, with the rejection's code.
    Refused(String),
}

impl Verdict {
    pub fn word(&self) -> String {
        match self {
            Verdict::Accepted => "accepted".into(),
            Verdict::Refused(code) => format!("refused ({code})"),
        }
    }
}

/// One command of the log.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub name: String,
    pub actor: Actor,
    pub idempotency_key: Option<String>,
    pub decided_at: DateTime<Utc>,
    /// The command's body as recorded (JSON), or rebuilt from its event where the event
    /// holds all of it (a policy adoption); `None` in logs written before bodies were kept.
    pub body: Option<Box<str>>,
    pub verdict: Verdict,
}

/// The whole history.
pub struct History {
    pub commands: Vec<Recorded>,
    pub outcome: Outcome,
    /// The first policy the log adopted (the program's bootstrap).
    pub first_policy: Option<Policy>,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    /// Events whose metadata could not be read (no command can be rebuilt from them).
    pub unreadable_metadata: u64,
}

/// Reads the log of `store` once.
pub async fn read(store: &super::super::store::Log) -> Result<History, String> {
    let mut pages = LogPages::new(store, Position::ORIGIN)
        .await
        .map_err(|e| e.to_string())?;
    let mut history = History {
        commands: Vec::new(),
        outcome: Outcome::default(),
        first_policy: None,
        first_at: None,
        last_at: None,
        unreadable_metadata: 0,
    };
    let mut index: HashMap<Uuid, usize> = HashMap::new();
    while let Some(page) = pages.next_page().await.map_err(|e| e.to_string())? {
        for recorded in &page {
            let event = decode_event(recorded).map_err(|e| e.to_string())?;
            history.outcome.apply(recorded.position, &event);
            let at = event.at();
            history.first_at.get_or_insert(at);
            history.last_at = Some(at);
            if let Event::PolicyAdopted { policy, .. } = &event {
                history.first_policy.get_or_insert_with(|| policy.clone());
            }
            let Ok(meta) = serde_json::from_slice::<EventMetadata>(&recorded.metadata) else {
                history.unreadable_metadata += 1;
                continue;
            };
            let n = *index.entry(meta.command_id).or_insert_with(|| {
                history.commands.push(Recorded {
                    name: meta.command.clone(),
                    actor: meta.actor.clone(),
                    idempotency_key: None,
                    decided_at: meta.decided_at,
                    body: None,
                    verdict: Verdict::Accepted,
                });
                history.commands.len() - 1
            });
            let command = &mut history.commands[n];
            // Slot events carry no key; the boundary's own events do.
            if meta.idempotency_key.is_some() {
                command.idempotency_key = meta.idempotency_key.clone();
            }
            if let Some(body) = &meta.command_body {
                command.body = Some(body.to_string().into_boxed_str());
            }
            match &event {
                Event::CommandRejected { code, .. } => {
                    command.verdict = Verdict::Refused(code.to_string());
                }
                Event::PolicyAdopted { policy, .. } if command.body.is_none() => {
                    let rebuilt = Command::AdoptPolicy(AdoptPolicy {
                        policy: policy.clone(),
                    });
                    command.body = serde_json::to_string(&rebuilt)
                        .ok()
                        .map(String::into_boxed_str);
                }
                _ => {}
            }
        }
    }
    Ok(history)
}
