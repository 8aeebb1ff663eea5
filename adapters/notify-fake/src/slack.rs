//! A Slack receiver as strict as Slack's documentation: `chat.postMessage` and one
//! incoming webhook.
//!
//! Pages the rules come from (each rule below names its own):
//! - [M] chat.postMessage: <https://docs.slack.dev/reference/methods/chat.postMessage>
//!   (also <https://api.slack.com/methods/chat.postMessage>). Its arguments, errors and
//!   response example were read from the machine-readable copy of that reference,
//!   `methods/chat/chat.postMessage.json` in <https://github.com/slack-ruby/slack-api-ref>
//!   (commit f4837c0cb6dba1b1122ce66a5b69195ce47213f8).
//! - [W] Web API basics (content types, POST bodies): <https://docs.slack.dev/apis/web-api>
//! - [J] JSON bodies and the `Authorization: Bearer` header:
//!   <https://api.slack.com/changelog/2017-10-keeping-up-with-the-jsons>
//! - [T] Truncation at 40,000 characters:
//!   <https://api.slack.com/changelog/2018-04-truncating-really-long-messages>
//! - [R] Rate limits: <https://docs.slack.dev/apis/web-api/rate-limits>, and Slack's own
//!   earlier rate-limit page <https://github.com/slackhq/slack-api-docs/blob/master/page_rate_limits.md>
//!   (429, `Retry-After` in seconds, incoming webhooks included).
//! - [H] Incoming webhooks: <https://api.slack.com/messaging/webhooks>; their error names and
//!   statuses: <https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks>
//! - [B] Blocks (50 per message): <https://docs.slack.dev/reference/block-kit/blocks>;
//!   header block: <https://docs.slack.dev/reference/block-kit/blocks/header-block>;
//!   section block: <https://docs.slack.dev/reference/block-kit/blocks/section-block>.
//!
//! "Assumption" in a comment marks a behaviour those pages do not settle; the double then
//! takes the stricter choice.

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

/// Block types named in the table of [B]. The types the double knows rules for are checked
/// below; the others are accepted as they stand. Assumption: a type not in that table is
/// `invalid_blocks` ([M], "Blocks submitted with this message are not valid").
const DOCUMENTED_BLOCKS: &[&str] = &[
    "actions",
    "alert",
    "card",
    "carousel",
    "container",
    "context",
    "context_actions",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "markdown",
    "rich_text",
    "section",
    "table",
    "video",
];
/// [B]: "You can include up to 50 blocks in each message".
const MAX_BLOCKS: usize = 50;
/// Section block `text`: at most 3000 characters; `fields`: at most 10 items of at most
/// 2000 characters each. The section-block page of [B] was not readable in this review;
/// these numbers are the ones that page is quoted with by client libraries.
const MAX_SECTION_TEXT: usize = 3000;
const MAX_SECTION_FIELDS: usize = 10;
const MAX_FIELD_TEXT: usize = 2000;
/// Header block [B]: "The text for the block, in the form of a plain_text text object.
/// Maximum length for the text in this field is 150 characters."
const MAX_HEADER_TEXT: usize = 150;
/// [T]: `text` longer than 40,000 characters is truncated and still posted, with the
/// warning `message_truncated`; it is not refused ([M] lists no error for it).
const MAX_MESSAGE_TEXT: usize = 40_000;
/// [M], `too_many_attachments`: "A maximum of 100 attachments are allowed on a message."
const MAX_ATTACHMENTS: usize = 100;

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

/// [W]: every Web API answer is a JSON object with a boolean `ok`; a failure carries the
/// error name in `error`. [M] shows it as HTTP 200 (`{"ok": false, "error": ...}`).
fn api_error(error: &str) -> Answer {
    respond(
        StatusCode::OK,
        "application/json; charset=utf-8",
        json!({"ok": false, "error": error}).to_string(),
    )
}

/// Webhook failures are the error name as plain text with an HTTP status. From [H]
/// (2016 changelog): 400 `invalid_payload`, `user_not_found`; 403 `action_prohibited`;
/// 404 `channel_not_found`; 410 `channel_is_archived`; 500 `rollup_error`.
/// Assumption (names client libraries list, statuses not confirmed on Slack's pages in this
/// review): 400 `no_text`, `too_many_attachments`, `no_service_id`, `no_team`; 403
/// `posting_to_general_channel_denied`, `invalid_token`, `team_disabled`; 404
/// `no_service`, `no_active_hooks`; anything else 500.
fn webhook_error(error: &str) -> Answer {
    let status = match error {
        "invalid_payload" | "user_not_found" => StatusCode::BAD_REQUEST,
        "no_text" | "too_many_attachments" | "no_service_id" | "no_team" => StatusCode::BAD_REQUEST,
        "action_prohibited" => StatusCode::FORBIDDEN,
        "posting_to_general_channel_denied" | "invalid_token" | "team_disabled" => {
            StatusCode::FORBIDDEN
        }
        "channel_not_found" => StatusCode::NOT_FOUND,
        "no_service" | "no_active_hooks" => StatusCode::NOT_FOUND,
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
        // Assumption: an unknown hook URL is `no_service` (404), the name client libraries
        // give for a removed or invalid webhook.
        if path.starts_with("/services/") {
            return webhook_error("no_service");
        }
        return respond(StatusCode::NOT_FOUND, "text/plain", "not found".into());
    }
    // [M] "Method Access: POST"; [H] "send a HTTP POST". Assumption: other methods get a
    // bare 405 (the Web API also reads GET query strings [W]; the double does not).
    if parts.method != Method::POST {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "POST only".into(),
        );
    }
    // Faults injected by the test come before any validation, as Slack's rate limiter and
    // edge answer before the method runs (assumption: the order is not documented).
    {
        let mut w = lock(world);
        if w.rate_limited > 0 {
            w.rate_limited -= 1;
            // [R]: HTTP 429 Too Many Requests with a `Retry-After` header giving the seconds
            // to wait, for the Web API and incoming webhooks alike. [M] names the Web API
            // body's error `ratelimited` ("Refer to the Retry-After header"). Assumption: the
            // webhook body is the plain text `rate_limited` (not documented).
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
        .map(str::to_ascii_lowercase);
    if is_api {
        post_message(world, &parts.headers, content_type.as_deref(), &body)
    } else {
        post_webhook(world, content_type.as_deref().unwrap_or(""), &body)
    }
}

/// The media type of a Content-Type value and its charset parameter, if any.
fn media_type(content_type: &str) -> (&str, Option<&str>) {
    let mut pieces = content_type.split(';');
    let media = pieces.next().unwrap_or("").trim();
    let charset = pieces.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        (name.trim() == "charset").then(|| value.trim().trim_matches('"'))
    });
    (media, charset)
}

fn post_message(
    world: &Mutex<World>,
    headers: &hyper::HeaderMap,
    content_type: Option<&str>,
    body: &Bytes,
) -> Answer {
    // [M] `missing_post_type`: "called via a POST request and included a data payload, but
    // the request did not include a Content-Type header."
    let Some(content_type) = content_type else {
        return api_error("missing_post_type");
    };
    let (media, charset) = media_type(content_type);
    // [M] `invalid_charset`: "Valid charset names are: utf-8 iso-8859-1."
    if charset.is_some_and(|c| c != "utf-8" && c != "iso-8859-1") {
        return api_error("invalid_charset");
    }
    // [M] "Content types: application/x-www-form-urlencoded, application/json". Anything
    // else is `invalid_post_type` ("the specified Content-Type was invalid"). Assumption:
    // that error's text also names multipart/form-data and text/plain as valid Web API
    // types, but the method page does not list them, so the double refuses them too.
    let (object, form_token) = match media {
        "application/json" => {
            // [W]/[M] `invalid_json`, `json_not_object` are Web API errors for bodies that
            // are not JSON or not a JSON object. Assumption: [M]'s list does not repeat them.
            let Ok(value) = serde_json::from_slice::<Value>(body) else {
                return api_error("invalid_json");
            };
            let Value::Object(object) = value else {
                return api_error("json_not_object");
            };
            // [J]: "To make use of sending JSON on write operations, you must provide your
            // token value using an Authorization HTTP header": a `token` in the JSON is not
            // read.
            (object, None)
        }
        "application/x-www-form-urlencoded" => {
            // [M] `invalid_form_data`: form data "missing or syntactically invalid".
            let Some(mut object) = parse_form(body) else {
                return api_error("invalid_form_data");
            };
            // [M] `blocks`/`attachments`: "A JSON-based array ..., presented as a
            // URL-encoded string"; `invalid_blocks_format`: "The `blocks` is not a valid
            // JSON object or doesn't match the Block Kit syntax." Assumption: unreadable
            // attachments are `invalid_form_data` (no error is documented for them).
            for (key, error) in [
                ("blocks", "invalid_blocks_format"),
                ("attachments", "invalid_form_data"),
            ] {
                if let Some(Value::String(raw)) = object.get(key) {
                    match serde_json::from_str::<Value>(raw) {
                        Ok(parsed) => {
                            object.insert(key.into(), parsed);
                        }
                        Err(_) => return api_error(error),
                    }
                }
            }
            let token = object
                .remove("token")
                .and_then(|t| t.as_str().map(str::to_owned));
            (object, token)
        }
        _ => return api_error("invalid_post_type"),
    };
    // [M] `token`: "Tokens should be passed as an HTTP Authorization header or
    // alternatively, as a POST parameter." Absent: `not_authed` ("No authentication token
    // provided."); wrong: `invalid_auth`. Assumption: an Authorization header without the
    // `Bearer ` prefix ([J]: "you must pre-pend Bearer") counts as no token.
    let token = lock(world).token.clone();
    let given = match headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(value) => value.strip_prefix("Bearer ").map(str::to_owned),
        None => form_token,
    };
    match given {
        None => return api_error("not_authed"),
        Some(given) if given != token => return api_error("invalid_auth"),
        Some(_) => {}
    }
    // [M]: `channel` is required; `channel_not_found`: "Value passed for `channel` was
    // invalid." Assumption: a missing or blank channel gets the same error.
    let channel = match object.get("channel").and_then(Value::as_str) {
        Some(channel) if !channel.trim().is_empty() => channel.to_owned(),
        _ => return api_error("channel_not_found"),
    };
    if let Err(error) = check_content(&object) {
        return api_error(error);
    }
    let mut w = lock(world);
    w.seq += 1;
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let ts = format!("{epoch}.{:06}", w.seq);
    w.posts.push(Value::Object(object.clone()));
    // [M] response example: `ok`, `channel`, `ts`, and `message` with `text`, `bot_id`,
    // `attachments`, `type` "message", `subtype` "bot_message", `ts`.
    let mut message = Map::new();
    message.insert("type".into(), json!("message"));
    message.insert("subtype".into(), json!("bot_message"));
    message.insert("bot_id".into(), json!("B0DOUBLE"));
    message.insert("ts".into(), json!(ts));
    for key in ["text", "blocks", "attachments"] {
        if let Some(v) = object.get(key) {
            message.insert(key.into(), v.clone());
        }
    }
    let mut answer = json!({"ok": true, "channel": channel, "ts": ts});
    // [T]: longer text is cut to 40,000 characters, still posted, and answered with the
    // warning `message_truncated` in `response_metadata`.
    if let Some(text) = object.get("text").and_then(Value::as_str) {
        if text.chars().count() > MAX_MESSAGE_TEXT {
            let cut: String = text.chars().take(MAX_MESSAGE_TEXT).collect();
            message.insert("text".into(), json!(cut));
            answer["response_metadata"] = json!({
                "messages": ["[WARN] Your message was truncated but still posted. The `text` field accepts up to 40,000 characters."],
                "warnings": ["message_truncated"],
            });
        }
    }
    answer["message"] = Value::Object(message);
    respond(
        StatusCode::OK,
        "application/json; charset=utf-8",
        answer.to_string(),
    )
}

/// An `application/x-www-form-urlencoded` body as string fields; `None` when it is not
/// UTF-8 or has a broken percent escape.
fn parse_form(body: &[u8]) -> Option<Map<String, Value>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut fields = Map::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        fields.insert(percent_decode(name)?, Value::String(percent_decode(value)?));
    }
    Some(fields)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn post_webhook(world: &Mutex<World>, content_type: &str, body: &Bytes) -> Answer {
    // [H]: "send a HTTP POST request ... with a JSON payload" (`Content-type:
    // application/json`); `invalid_payload`: "the data sent in your request cannot be
    // understood as presented; verify your content body matches your content type and is
    // structurally valid." Assumption: other content types (Slack's old `payload=` form)
    // are refused as `invalid_payload`.
    if media_type(content_type).0 != "application/json" {
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
        Err(name @ ("no_text" | "too_many_attachments")) => return webhook_error(name),
        // Assumption: the webhook pages name no block error; bad blocks are a payload
        // Slack cannot understand, `invalid_payload`.
        Err(_) => return webhook_error("invalid_payload"),
    }
    lock(world).posts.push(value);
    // [H]: success is HTTP 200 with the body `ok`. [T]: long text is truncated here too;
    // a webhook answer has no room for the warning.
    respond(StatusCode::OK, "text/plain", "ok".into())
}

/// The message content rules both endpoints share.
fn check_content(object: &Map<String, Value>) -> Result<(), &'static str> {
    let filled = |key: &str| {
        object
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|t| !t.trim().is_empty())
    };
    let non_empty_array =
        |key: &str| matches!(object.get(key), Some(Value::Array(list)) if !list.is_empty());
    let blocks = object.get("blocks");
    // [M] arg_groups: "Use either text or markdown_text, but not both";
    // `markdown_text_conflict`: "Markdown text cannot be used in conjunction with `blocks`
    // or `text` argument."
    if object.contains_key("markdown_text") && (object.contains_key("text") || blocks.is_some()) {
        return Err("markdown_text_conflict");
    }
    // [M]: one of attachments, blocks, text, markdown_text is required; none is `no_text`
    // ("No message text provided.").
    if !filled("text")
        && !filled("markdown_text")
        && !non_empty_array("blocks")
        && !non_empty_array("attachments")
    {
        if blocks.is_some_and(|b| !b.is_array()) {
            return Err("invalid_blocks");
        }
        return Err("no_text");
    }
    // [M] `too_many_attachments`: at most 100.
    if let Some(Value::Array(list)) = object.get("attachments") {
        if list.len() > MAX_ATTACHMENTS {
            return Err("too_many_attachments");
        }
    }
    if let Some(blocks) = blocks {
        check_blocks(blocks)?;
    }
    Ok(())
}

/// [B]: an array of at most 50 block objects, each of a documented type with its own
/// limits. Anything else is `invalid_blocks` ([M]: "Blocks submitted with this message are
/// not valid.").
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
        if !DOCUMENTED_BLOCKS.contains(&kind) {
            return Err("invalid_blocks");
        }
        match kind {
            "section" => {
                let text = block.get("text");
                let fields = block.get("fields");
                // Section block: `text` is required unless `fields` are given.
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
                // Header block [B]: `text` required, a plain_text object, at most 150.
                let text = block.get("text").ok_or("invalid_blocks")?;
                if text.get("type").and_then(Value::as_str) != Some("plain_text") {
                    return Err("invalid_blocks");
                }
                text_object(text, MAX_HEADER_TEXT)?;
            }
            "context" | "actions" => {
                // Assumption: `elements` required and non-empty (per-block limits on the
                // number of elements are not checked).
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

/// A text object: `type` plain_text or mrkdwn, a `text` within `max` characters.
/// Assumption: an empty `text` is refused.
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
