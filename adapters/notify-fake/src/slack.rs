//! A Slack receiver as strict as Slack's documentation: `chat.postMessage` and one
//! incoming webhook.
//!
//! Pages the rules come from:
//! - chat.postMessage: <https://api.slack.com/methods/chat.postMessage>
//! - Using JSON with the Web API: <https://api.slack.com/web#posting_json>
//! - Incoming webhooks and their errors: <https://api.slack.com/messaging/webhooks>
//! - Rate limits: <https://api.slack.com/apis/rate-limits>
//! - Block Kit blocks and their limits: <https://api.slack.com/reference/block-kit/blocks>

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

/// The bot token the double accepts unless started with another.
pub const DEFAULT_TOKEN: &str = "xoxb-0000-double-token";
/// The incoming webhook path the double serves unless started with another.
pub const DEFAULT_WEBHOOK_PATH: &str = "/services/T000/B000/XXXX";

/// Block types the double knows (Block Kit reference); anything else is `invalid_blocks`.
const KNOWN_BLOCKS: &[&str] = &["section", "header", "divider", "context", "actions"];
/// "You can include up to 50 blocks in each message" (Block Kit reference).
const MAX_BLOCKS: usize = 50;
/// Section `text`: "Maximum length for the text in this field is 3000 characters."
const MAX_SECTION_TEXT: usize = 3000;
/// Section `fields`: "Maximum number of items is 10", each at most 2000 characters.
const MAX_SECTION_FIELDS: usize = 10;
const MAX_FIELD_TEXT: usize = 2000;
/// Header `text`: "Maximum length for the text in this field is 150 characters."
const MAX_HEADER_TEXT: usize = 150;
/// chat.postMessage: text longer than 40,000 characters is refused with `msg_too_long`.
const MAX_MESSAGE_TEXT: usize = 40_000;

#[derive(Default)]
struct World {
    token: String,
    webhook_path: String,
    rate_limited: u32,
    retry_after_secs: u64,
    failures: VecDeque<Fault>,
    posts: Vec<Value>,
    seq: u64,
}

enum Fault {
    Named(String),
    Http(u16),
}

/// A running Slack double on 127.0.0.1. Dropping it stops the server.
pub struct SlackDouble {
    addr: SocketAddr,
    world: Arc<Mutex<World>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SlackDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackDouble")
            .field("addr", &self.addr)
            .finish()
    }
}

impl SlackDouble {
    /// Starts the double with [`DEFAULT_TOKEN`] and [`DEFAULT_WEBHOOK_PATH`].
    pub async fn start() -> std::io::Result<SlackDouble> {
        Self::start_with(DEFAULT_TOKEN, DEFAULT_WEBHOOK_PATH).await
    }

    /// Starts the double accepting this bot token and serving this webhook path.
    pub async fn start_with(token: &str, webhook_path: &str) -> std::io::Result<SlackDouble> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let world = Arc::new(Mutex::new(World {
            token: token.to_owned(),
            webhook_path: webhook_path.to_owned(),
            ..World::default()
        }));
        let served = Arc::clone(&world);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let world = Arc::clone(&served);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let world = Arc::clone(&world);
                        async move { Ok::<_, std::convert::Infallible>(answer(&world, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(SlackDouble { addr, world, task })
    }

    fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    /// The Web API base to give a bot carrier, e.g. `http://127.0.0.1:PORT/api`.
    pub fn api_base(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// The full incoming webhook URL.
    pub fn webhook_url(&self) -> String {
        format!("http://{}{}", self.addr, self.world().webhook_path)
    }

    /// The bot token the double accepts.
    pub fn token(&self) -> String {
        self.world().token.clone()
    }

    /// The next `n` requests (either endpoint) are answered 429 with
    /// `Retry-After: retry_after_secs`.
    pub fn rate_limit_next(&self, n: u32, retry_after_secs: u64) {
        let mut world = self.world();
        world.rate_limited = n;
        world.retry_after_secs = retry_after_secs;
    }

    /// The next request fails with this Slack error name: `{"ok":false,"error":name}` on
    /// chat.postMessage, the name as plain text with its documented status on the webhook.
    pub fn fail_next(&self, error_name: &str) {
        self.world()
            .failures
            .push_back(Fault::Named(error_name.to_owned()));
    }

    /// The next request is answered with this bare HTTP status (e.g. 503), as when
    /// Slack's edge is failing.
    pub fn fail_next_http(&self, status: u16) {
        self.world().failures.push_back(Fault::Http(status));
    }

    /// Every accepted post's JSON body, in order.
    pub fn posts(&self) -> Vec<Value> {
        self.world().posts.clone()
    }
}

impl Drop for SlackDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(world: &Mutex<World>) -> MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|e| e.into_inner())
}

type Answer = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &str, body: String) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// Web API failures are HTTP 200 with `ok: false` (chat.postMessage page, "Errors").
fn api_error(error: &str) -> Answer {
    respond(
        StatusCode::OK,
        "application/json; charset=utf-8",
        json!({"ok": false, "error": error}).to_string(),
    )
}

/// Webhook failures are plain-text error names with an HTTP status (webhooks page,
/// "Handling errors").
fn webhook_error(error: &str) -> Answer {
    let status = match error {
        "invalid_payload" | "no_text" | "too_many_attachments" | "no_service_id" | "no_team" => {
            StatusCode::BAD_REQUEST
        }
        "action_prohibited"
        | "posting_to_general_channel_denied"
        | "invalid_token"
        | "team_disabled" => StatusCode::FORBIDDEN,
        "channel_not_found" | "user_not_found" | "no_service" => StatusCode::NOT_FOUND,
        "channel_is_archived" => StatusCode::GONE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    respond(status, "text/plain", error.to_owned())
}

async fn answer(world: &Mutex<World>, request: Request<Incoming>) -> Answer {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return respond(StatusCode::BAD_REQUEST, "text/plain", "bad body".into()),
    };
    let path = parts.uri.path().to_owned();
    let webhook = {
        let world = lock(world);
        path == world.webhook_path
    };
    let is_api = path == "/api/chat.postMessage";
    if !is_api && !webhook {
        // An unknown hook URL: webhooks page lists `no_service` (404) for a disabled or
        // invalid webhook.
        if path.starts_with("/services/") {
            return webhook_error("no_service");
        }
        return respond(StatusCode::NOT_FOUND, "text/plain", "not found".into());
    }
    if parts.method != Method::POST {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "POST only".into(),
        );
    }
    // Faults injected by the test come before any validation, as Slack's rate limiter and
    // edge answer before the method runs.
    {
        let mut w = lock(world);
        if w.rate_limited > 0 {
            w.rate_limited -= 1;
            // Rate limits page: "HTTP 429 Too Many Requests ... a Retry-After HTTP header
            // containing the number of seconds until you can retry".
            let mut response = if is_api {
                api_error("ratelimited")
            } else {
                respond(StatusCode::OK, "text/plain", "rate_limited".into())
            };
            *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            if let Ok(value) = hyper::header::HeaderValue::from_str(&w.retry_after_secs.to_string())
            {
                response
                    .headers_mut()
                    .insert(hyper::header::RETRY_AFTER, value);
            }
            return response;
        }
        if let Some(fault) = w.failures.pop_front() {
            return match fault {
                Fault::Http(code) => respond(
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    "text/plain",
                    String::new(),
                ),
                Fault::Named(name) if is_api => api_error(&name),
                Fault::Named(name) => webhook_error(&name),
            };
        }
    }
    let content_type = parts
        .headers
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if is_api {
        post_message(world, &parts.headers, &content_type, &body)
    } else {
        post_webhook(world, &content_type, &body)
    }
}

fn post_message(
    world: &Mutex<World>,
    headers: &hyper::HeaderMap,
    content_type: &str,
    body: &Bytes,
) -> Answer {
    // Using JSON page: with a JSON body the token must be sent as
    // `Authorization: Bearer`; it is not read from the JSON. Absent: `not_authed`;
    // wrong: `invalid_auth` (chat.postMessage errors).
    let token = lock(world).token.clone();
    match headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => return api_error("not_authed"),
        Some(value) => match value.strip_prefix("Bearer ") {
            Some(given) if given == token => {}
            Some(_) => return api_error("invalid_auth"),
            None => return api_error("not_authed"),
        },
    }
    // Using JSON page: JSON bodies must be sent as `Content-type: application/json`;
    // otherwise Slack reads the body as a form, which this is not (`invalid_form_data`).
    if !content_type.starts_with("application/json") {
        return api_error("invalid_form_data");
    }
    // Web API common errors: `invalid_json`, `json_not_object`.
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return api_error("invalid_json");
    };
    let Some(object) = value.as_object() else {
        return api_error("json_not_object");
    };
    // chat.postMessage: `channel` is required; an unknown or missing one is
    // `channel_not_found`.
    let channel = match object.get("channel").and_then(Value::as_str) {
        Some(channel) if !channel.trim().is_empty() => channel.to_owned(),
        _ => return api_error("channel_not_found"),
    };
    if let Err(error) = check_content(object) {
        return api_error(error);
    }
    let mut w = lock(world);
    w.seq += 1;
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ts = format!("{epoch}.{:06}", w.seq);
    w.posts.push(value.clone());
    let mut message = Map::new();
    message.insert("type".into(), json!("message"));
    message.insert("bot_id".into(), json!("B0DOUBLE"));
    message.insert("ts".into(), json!(ts));
    for key in ["text", "blocks"] {
        if let Some(v) = object.get(key) {
            message.insert(key.into(), v.clone());
        }
    }
    respond(
        StatusCode::OK,
        "application/json; charset=utf-8",
        json!({"ok": true, "channel": channel, "ts": ts, "message": message}).to_string(),
    )
}

fn post_webhook(world: &Mutex<World>, content_type: &str, body: &Bytes) -> Answer {
    // Webhooks page: "send a HTTP POST request ... with a JSON payload" using
    // `Content-type: application/json`; a body Slack cannot read is `invalid_payload`.
    if !content_type.starts_with("application/json") {
        return webhook_error("invalid_payload");
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return webhook_error("invalid_payload");
    };
    let Some(object) = value.as_object() else {
        return webhook_error("invalid_payload");
    };
    match check_content(object) {
        Ok(()) => {}
        Err("no_text") => return webhook_error("no_text"),
        // Webhooks have no `invalid_blocks`: a malformed payload is `invalid_payload`.
        Err(_) => return webhook_error("invalid_payload"),
    }
    lock(world).posts.push(value);
    // Webhooks page: success is HTTP 200 with the body `ok`.
    respond(StatusCode::OK, "text/plain", "ok".into())
}

/// The message content rules both endpoints share.
fn check_content(object: &Map<String, Value>) -> Result<(), &'static str> {
    let text = object.get("text").and_then(Value::as_str).unwrap_or("");
    let blocks = object.get("blocks");
    // chat.postMessage: "text" is required unless "blocks" (or attachments) are given;
    // neither is `no_text`.
    let has_blocks = matches!(blocks, Some(Value::Array(list)) if !list.is_empty());
    if text.trim().is_empty() && !has_blocks {
        if blocks.is_some_and(|b| !b.is_array()) {
            return Err("invalid_blocks");
        }
        return Err("no_text");
    }
    if text.chars().count() > MAX_MESSAGE_TEXT {
        return Err("msg_too_long");
    }
    if let Some(blocks) = blocks {
        check_blocks(blocks)?;
    }
    Ok(())
}

/// Block Kit reference: an array of at most 50 block objects, each of a known type with
/// its own limits. Anything else is `invalid_blocks` (chat.postMessage errors).
fn check_blocks(blocks: &Value) -> Result<(), &'static str> {
    let Some(list) = blocks.as_array() else {
        return Err("invalid_blocks");
    };
    if list.len() > MAX_BLOCKS {
        return Err("invalid_blocks");
    }
    for block in list {
        let Some(block) = block.as_object() else {
            return Err("invalid_blocks");
        };
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        if !KNOWN_BLOCKS.contains(&kind) {
            return Err("invalid_blocks");
        }
        match kind {
            "section" => {
                let text = block.get("text");
                let fields = block.get("fields");
                // "Preferred: text. Required if no fields are provided."
                if text.is_none() && fields.is_none() {
                    return Err("invalid_blocks");
                }
                if let Some(text) = text {
                    text_object(text, MAX_SECTION_TEXT)?;
                }
                if let Some(fields) = fields {
                    let list = fields.as_array().ok_or("invalid_blocks")?;
                    if list.is_empty() || list.len() > MAX_SECTION_FIELDS {
                        return Err("invalid_blocks");
                    }
                    for field in list {
                        text_object(field, MAX_FIELD_TEXT)?;
                    }
                }
            }
            "header" => {
                // Header text must be plain_text, at most 150 characters.
                let text = block.get("text").ok_or("invalid_blocks")?;
                if text.get("type").and_then(Value::as_str) != Some("plain_text") {
                    return Err("invalid_blocks");
                }
                text_object(text, MAX_HEADER_TEXT)?;
            }
            "context" | "actions" => {
                let elements = block.get("elements").and_then(Value::as_array);
                if elements.is_none_or(|e| e.is_empty()) {
                    return Err("invalid_blocks");
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A text object: `type` plain_text or mrkdwn, a non-empty `text` within `max` characters.
fn text_object(value: &Value, max: usize) -> Result<(), &'static str> {
    let kind = value.get("type").and_then(Value::as_str);
    if !matches!(kind, Some("plain_text" | "mrkdwn")) {
        return Err("invalid_blocks");
    }
    match value.get("text").and_then(Value::as_str) {
        Some(text) if !text.is_empty() && text.chars().count() <= max => Ok(()),
        _ => Err("invalid_blocks"),
    }
}
