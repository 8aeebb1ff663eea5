//! Slack messages through `chat.postMessage` (a bot token) or an incoming webhook.
//!
//! Documentation the mapping follows:
//! - <https://api.slack.com/methods/chat.postMessage>: HTTP 200 with `{"ok":false,
//!   "error":"..."}` on failure; JSON bodies with `Authorization: Bearer`.
//! - <https://api.slack.com/messaging/webhooks>: 200 `ok`, errors as plain-text names
//!   with 400/403/404/410.
//! - <https://api.slack.com/apis/rate-limits>: 429 with `Retry-After` in seconds.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::{CarrierError, Secret};

/// Slack's Web API base.
pub const DEFAULT_SLACK_API_BASE: &str = "https://slack.com/api";

/// How long one post may take before it is reported Transient.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One Slack message.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackMessage {
    /// The channel id or name: chat.postMessage requires it; a webhook posts to the
    /// channel it was made for and ignores this.
    pub channel: Option<String>,
    /// Fallback text (notifications, screen readers); always sent.
    pub text: String,
    /// A Block Kit array, or `null` for a text-only message.
    pub blocks: Value,
}

/// Where Slack messages go.
#[derive(Debug, Clone)]
pub enum SlackTarget {
    /// An incoming webhook: the full `https://hooks.slack.com/services/...` URL, itself a
    /// secret since anyone holding it can post.
    Webhook(Secret),
    /// A bot token for chat.postMessage, and the API base (normally
    /// [`DEFAULT_SLACK_API_BASE`]; a double's in tests).
    Bot { token: Secret, api_base: String },
}

/// Posts [`SlackMessage`]s to one [`SlackTarget`].
pub struct SlackCarrier {
    target: SlackTarget,
    client: reqwest::Client,
}

impl std::fmt::Debug for SlackCarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackCarrier")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl SlackCarrier {
    /// A carrier with a 10 s timeout per post.
    pub fn new(target: SlackTarget) -> Result<Self, CarrierError> {
        Self::with_timeout(target, DEFAULT_TIMEOUT)
    }

    pub fn with_timeout(target: SlackTarget, timeout: Duration) -> Result<Self, CarrierError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| CarrierError::permanent(format!("HTTP client: {}", e.without_url())))?;
        Ok(SlackCarrier { target, client })
    }

    /// Posts one message; reports, never retries.
    pub async fn post(&self, message: &SlackMessage) -> Result<(), CarrierError> {
        let result = match &self.target {
            SlackTarget::Webhook(url) => self.post_webhook(url, message).await,
            SlackTarget::Bot { token, api_base } => self.post_bot(token, api_base, message).await,
        };
        match &result {
            Ok(()) => tracing::debug!(channel = ?message.channel, "Slack message posted"),
            Err(error) => {
                tracing::warn!(channel = ?message.channel, %error, "Slack message not posted")
            }
        }
        result
    }

    fn scrub(&self, text: &str) -> String {
        match &self.target {
            SlackTarget::Webhook(url) => url.scrub(text),
            SlackTarget::Bot { token, .. } => token.scrub(text),
        }
    }

    fn body(message: &SlackMessage, channel: Option<&str>) -> Value {
        let mut body = Map::new();
        if let Some(channel) = channel {
            body.insert("channel".into(), Value::String(channel.to_owned()));
        }
        body.insert("text".into(), Value::String(message.text.clone()));
        if !message.blocks.is_null() {
            body.insert("blocks".into(), message.blocks.clone());
        }
        Value::Object(body)
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, Option<Duration>, String), CarrierError> {
        let response = request.send().await.map_err(|e| {
            // reqwest names the URL in its errors; the webhook URL is a secret.
            let reason = self.scrub(&format!("request to Slack failed: {}", error_chain(e)));
            CarrierError::transient(reason)
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response.text().await.map_err(|e| {
            CarrierError::transient(
                self.scrub(&format!("reading Slack's answer: {}", error_chain(e))),
            )
        })?;
        // Rate limits page: 429 with Retry-After, from either endpoint.
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(CarrierError::Transient {
                reason: format!(
                    "Slack rate limited the post (429 {})",
                    short(&self.scrub(&text))
                ),
                retry_after,
            });
        }
        if status.is_server_error() {
            return Err(CarrierError::Transient {
                reason: format!("Slack answered {status}"),
                retry_after,
            });
        }
        Ok((status, retry_after, text))
    }

    async fn post_webhook(&self, url: &Secret, message: &SlackMessage) -> Result<(), CarrierError> {
        let request = self
            .client
            .post(url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(Self::body(message, None).to_string());
        let (status, _, text) = self.send(request).await?;
        if status.is_success() {
            return Ok(());
        }
        // Webhooks page, "Handling errors": plain-text names with 400 (invalid_payload,
        // no_text, ...), 403 (action_prohibited, invalid_token, ...), 404
        // (channel_not_found, no_service, ...), 410 (channel_is_archived): all need a
        // person to fix the payload or the hook.
        Err(CarrierError::permanent(format!(
            "Slack webhook refused the post ({status}): {}",
            short(&self.scrub(&text))
        )))
    }

    async fn post_bot(
        &self,
        token: &Secret,
        api_base: &str,
        message: &SlackMessage,
    ) -> Result<(), CarrierError> {
        let Some(channel) = message.channel.as_deref() else {
            return Err(CarrierError::permanent(
                "chat.postMessage needs a channel and the message has none",
            ));
        };
        let url = format!("{}/chat.postMessage", api_base.trim_end_matches('/'));
        let request = self
            .client
            .post(url)
            .bearer_auth(token.expose())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(Self::body(message, Some(channel)).to_string());
        let (status, retry_after, text) = self.send(request).await?;
        if !status.is_success() {
            return Err(CarrierError::permanent(format!(
                "chat.postMessage answered {status}: {}",
                short(&self.scrub(&text))
            )));
        }
        let Ok(answer) = serde_json::from_str::<Value>(&text) else {
            return Err(CarrierError::transient(format!(
                "chat.postMessage answered 200 without JSON: {}",
                short(&self.scrub(&text))
            )));
        };
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(());
        }
        let error = answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown_error");
        let reason = format!("chat.postMessage failed: {}", self.scrub(error));
        // chat.postMessage errors: these say Slack is busy or broken, not the message.
        // Everything else (channel_not_found, invalid_auth, not_authed, invalid_blocks,
        // msg_too_long, is_archived, ...) needs a person.
        match error {
            "ratelimited"
            | "rate_limited"
            | "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout" => Err(CarrierError::Transient {
                reason,
                retry_after,
            }),
            _ => Err(CarrierError::permanent(reason)),
        }
    }
}

/// An error with its sources, without the URL reqwest would print.
fn error_chain(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// At most 200 characters of an answer body, for an error reason.
fn short(text: &str) -> String {
    let trimmed = text.trim();
    match trimmed.char_indices().nth(200) {
        Some((at, _)) => format!("{}...", &trimmed[..at]),
        None => trimmed.to_owned(),
    }
}
