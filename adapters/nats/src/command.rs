//! The command endpoints: one NATS micro endpoint per command, every sender's subject.
//!
//! Why each request runs in its own task: the engine commits concurrent appends together
//! (group commit), so commands in flight must reach it concurrently; the endpoint loop
//! only reads requests and hands them on. The reply is the `dealreg apply` line, so a
//! service and a file of commands see the same JSON.

use std::sync::Arc;
use std::time::Instant;

use async_nats::service::Request;
use async_nats::{Client, HeaderMap, Message};
use bytes::Bytes;
use dealreg_clock::Clock;
use dealreg_engine::{CommandEnvelope, Engine, InputError, InputErrorCode, ReplyLine};
use dealreg_events::EventStore;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::subject;

/// The micro protocol's error headers.
pub const ERROR_HEADER: &str = "Nats-Service-Error";
pub const ERROR_CODE_HEADER: &str = "Nats-Service-Error-Code";

/// The status a refusal carries in `Nats-Service-Error-Code`, HTTP-like: 400 the input
/// cannot be read, 403 it names someone else, 404 it names what is not there (for you), 413
/// one item of an answer is larger than a message may be, 409 the account is contended (retry), 422
/// the domain refused it (recorded), 503 the store cannot take it now (retry with the same
/// key), 500 a defect.
pub fn status_of(code: &str) -> u16 {
    match code {
        "malformed_json" | "invalid_command" | "unknown_command" | "payload_too_large"
        | "command_mismatch" | "invalid_query" | "unknown_view" => 400,
        "actor_mismatch" | "not_permitted" => 403,
        "unknown_registration" => 404,
        "answer_too_large" => 413,
        "idempotency_key_reused" | "contention" => 409,
        "view_timeout" => 504,
        "store_unavailable" | "store_failed" | "view_unavailable" => 503,
        "internal" | "undecodable_event" => 500,
        _ => 422,
    }
}

/// The error headers for a line that is not `ok`.
pub fn error_headers(code: &str, message: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    // A header value is one line, and bounded: the message may quote the input.
    let message: String = dealreg_engine::bounded_message(message)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    headers.insert(ERROR_HEADER, format!("{code}: {message}").as_str());
    headers.insert(ERROR_CODE_HEADER, status_of(code).to_string().as_str());
    headers
}

/// A header's value. Why the name is typed: the client parses well-known names (such as
/// `Nats-Msg-Id`) to constants that a plain string never equals.
fn header(message: &Message, name: impl async_nats::header::IntoHeaderName) -> Option<&str> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str())
}

/// What the endpoint for unknown command names answers.
pub fn unknown_command(subject: &str) -> InputError {
    let name = subject.rsplit('.').next().unwrap_or_default();
    InputError {
        code: InputErrorCode::UnknownCommand,
        message: format!(
            "`{name}` is not a dealreg command; the commands are {}; see schemas/ or docs/NATS.md",
            dealreg_domain::Command::NAMES.join(", ")
        ),
        details: serde_json::json!({ "command": name }),
    }
}

/// Reads, executes and answers one command message.
pub async fn answer<S, C>(
    engine: &Engine<S, C>,
    client: &Client,
    metrics: &Metrics,
    request: Request,
    known: bool,
) where
    S: EventStore + Clone,
    C: Clock,
{
    let started = Instant::now();
    let message = &request.message;
    let subject = message.subject.as_str();
    let parsed = if known {
        subject::command_address(
            subject,
            header(message, subject::USER_HEADER),
            header(message, async_nats::header::NATS_MESSAGE_ID),
        )
        .and_then(|address| CommandEnvelope::parse_addressed(&message.payload, &address))
    } else {
        Err(unknown_command(subject))
    };
    let command = parsed
        .as_ref()
        .map(|e| e.command.name())
        .unwrap_or("unreadable");
    let span = tracing::info_span!(
        "command",
        command,
        command_id = tracing::field::Empty,
        idempotency_key = parsed
            .as_ref()
            .ok()
            .and_then(|e| e.idempotency_key.as_deref())
            .unwrap_or(""),
        subject
    );
    let line = engine.answer(parsed).instrument(span.clone()).await;
    let outcome = match line.refusal() {
        None => "ok".to_string(),
        Some((code, _)) => code,
    };
    metrics.command_done(command, &outcome, started.elapsed());
    send(client, &request, &line).instrument(span).await;
}

/// Publishes the reply line to the message's reply subject, with the error headers when it
/// is a refusal. A message without a reply subject was executed and is answered nowhere.
/// Why refusals are published here and not by `Request::respond`: the micro protocol's
/// error reply has an empty body, and callers need the coded JSON error too (the
/// endpoint's `num_errors` in `$SRV.STATS` therefore stays 0; the Prometheus metrics
/// count every outcome).
pub async fn send(client: &Client, request: &Request, line: &ReplyLine) {
    let message = &request.message;
    let Some(reply) = message.reply.clone() else {
        tracing::warn!(subject = %message.subject, "a command came without a reply subject; it was executed, its reply is in the log");
        return;
    };
    let body = match serde_json::to_vec(line) {
        Ok(body) => Bytes::from(body),
        Err(e) => {
            tracing::error!(error = %e, "a reply could not be encoded");
            Bytes::from_static(br#"{"ok":false,"error":{"code":"internal","message":"the reply could not be encoded; the command's events are in the log"}}"#)
        }
    };
    let published = match line.refusal() {
        None => request.respond(Ok(body)).await,
        Some((code, message)) => {
            client
                .publish_with_headers(reply, error_headers(&code, &message), body)
                .await
        }
    };
    if let Err(e) = published {
        tracing::warn!(error = %e, "a reply could not be published; the caller may retry with the same idempotency key");
    }
}

/// Runs `answer` for a message on its own task, keeping the engine shared.
pub fn spawn_answer<S, C>(
    tasks: &mut tokio::task::JoinSet<()>,
    engine: Arc<Engine<S, C>>,
    client: Client,
    metrics: Arc<Metrics>,
    request: Request,
    known: bool,
) where
    S: EventStore + Clone,
    C: Clock,
{
    tasks.spawn(async move { answer(&engine, &client, &metrics, request, known).await });
}
