//! The HTTP server for action links: `GET /a/<token>` shows what the link does and a form,
//! `POST /a/<token>` does it.
//!
//! GET never acts: mail scanners and link previewers fetch every URL of a message before a
//! person sees it, so an action on GET would be taken by a machine. The person confirms with
//! a POST from the page instead. Tokens sit in the URL, so responses carry
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-store`, and nothing here logs a
//! token: only a link's id.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::links::{Link, LinkKey, LinkRefused};
use crate::BoxFuture;

/// The largest form body accepted; a reason is a few sentences, not a document.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 256;

/// The longest a client may take to send its request headers (slow-loris defence).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest reason or next-step text accepted, in characters.
const MAX_TEXT_CHARS: usize = 4000;

/// What a link's page says about its action, from the binary that knows the domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Described {
    /// The page's heading, e.g. "Approve registration R-1042 for Acme".
    pub title: String,
    /// A sentence or two on what happens when the person confirms.
    pub text: String,
    /// The reason codes offered beside a decline's reason (empty: no select).
    pub reason_codes: Vec<String>,
}

/// The action was done (or had been done before, under the same link id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionDone {
    /// The result page's heading.
    pub title: String,
    /// What was done.
    pub text: String,
    /// True when the link had been used before: nothing changed this time.
    pub already_done: bool,
}

/// The action was refused by the engine (a rule, a state that changed, an outage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionFailed {
    /// The HTTP status of the result page (4xx or 5xx; anything else is shown as 500).
    pub status: u16,
    /// The result page's heading.
    pub title: String,
    /// Why, and what to do next.
    pub text: String,
}

/// The binary's side: it knows what a link's action means in the domain.
pub trait ActionRunner: Send + Sync + 'static {
    /// Title, text and choices of the page a good link shows.
    fn describe<'a>(&'a self, link: &'a Link) -> BoxFuture<'a, Described>;
    /// The link was opened (a read receipt; mail scanners open links too). An error is
    /// logged, never shown.
    fn opened<'a>(&'a self, link: &'a Link) -> BoxFuture<'a, Result<(), String>>;
    /// Does the action, with `link.id` as the idempotency key, and the validated form
    /// fields the action needs (trimmed).
    fn run<'a>(
        &'a self,
        link: &'a Link,
        form: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<ActionDone, ActionFailed>>;
}

/// The clock the server checks expiry with (a function, so tests can move time).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

struct State {
    key: Arc<LinkKey>,
    runner: Arc<dyn ActionRunner>,
    clock: Clock,
}

/// Serves link pages on `listener` until `shutdown` completes; then stops accepting and
/// lets the connections in flight finish their current request.
pub async fn serve_links(
    listener: TcpListener,
    key: Arc<LinkKey>,
    runner: Arc<dyn ActionRunner>,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
) {
    let state = Arc::new(State { key, runner, clock });
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %e, "accepting a link connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let state = state.clone();
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop_rx.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "link connection ended with an error");
            }
        });
    }
    let _ = stop_tx.send(true);
    tracing::info!("link server stopped accepting");
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(token) = req.uri().path().strip_prefix("/a/") else {
        return not_found();
    };
    if token.is_empty() || token.contains('/') {
        return not_found();
    }
    let token = token.to_string();
    match *req.method() {
        Method::GET | Method::HEAD => show(state, &token, *req.method() == Method::GET).await,
        Method::POST => act(state, &token, req).await,
        _ => {
            let mut resp = page(
                StatusCode::METHOD_NOT_ALLOWED,
                "Not allowed",
                "<p>This address only answers GET and POST.</p>",
            );
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, POST"));
            resp
        }
    }
}

/// Verifies the token against the server's clock.
fn verified(state: &State, token: &str) -> Result<Link, LinkRefused> {
    state
        .key
        .verify(token, (state.clock)())
        .inspect_err(|refused| {
            tracing::info!(reason = refused_kind(refused), "refused an action link");
        })
}

/// The page of a refused link: what happened and what to do next.
fn refused_page(refused: &LinkRefused) -> Response<Full<Bytes>> {
    let (status, title) = match refused {
        LinkRefused::Expired { .. } => (StatusCode::GONE, "This link has expired"),
        _ => (StatusCode::BAD_REQUEST, "This link cannot be used"),
    };
    page(
        status,
        title,
        &format!("<p>{}</p>", escape_html(&refused.to_string())),
    )
}

fn refused_kind(refused: &LinkRefused) -> &'static str {
    match refused {
        LinkRefused::Malformed => "malformed",
        LinkRefused::Tampered => "tampered",
        LinkRefused::Expired { .. } => "expired",
    }
}

async fn show(state: &State, token: &str, record_open: bool) -> Response<Full<Bytes>> {
    let link = match verified(state, token) {
        Ok(link) => link,
        Err(refused) => return refused_page(&refused),
    };
    if !served_over_http(&link) {
        return not_found();
    }
    if record_open {
        if let Err(e) = state.runner.opened(&link).await {
            tracing::warn!(link = %link.id, error = %e, "recording that a link was opened failed");
        }
    }
    tracing::info!(link = %link.id, action = %link.action, "action link shown");
    let described = state.runner.describe(&link).await;
    form_page(
        StatusCode::OK,
        token,
        &link,
        &described,
        &BTreeMap::new(),
        &BTreeMap::new(),
    )
}

async fn act(state: &State, token: &str, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_FORM_BYTES as u64) {
        return too_large();
    }
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
        .unwrap_or(false);
    let body = match Limited::new(req.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => {
            tracing::debug!(error = %e, "reading a form body failed");
            return page(
                StatusCode::BAD_REQUEST,
                "The form did not arrive",
                "<p>The form did not arrive whole. Go back and send it again.</p>",
            );
        }
    };
    let link = match verified(state, token) {
        Ok(link) => link,
        Err(refused) => return refused_page(&refused),
    };
    if !served_over_http(&link) {
        return not_found();
    }
    if !is_form && !body.is_empty() {
        return page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unexpected form",
            "<p>Send the form from the link's page.</p>",
        );
    }
    let raw = parse_form(&body);
    let described = state.runner.describe(&link).await;
    let (clean, errors) = validate(&link.action, &raw, &described);
    if !errors.is_empty() {
        tracing::info!(link = %link.id, "action form incomplete");
        return form_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            token,
            &link,
            &described,
            &raw,
            &errors,
        );
    }
    let result = state.runner.run(&link, &clean).await;
    match result {
        Ok(done) => {
            tracing::info!(link = %link.id, action = %link.action, already_done = done.already_done, "action done");
            let mut body = format!("<p>{}</p>", escape_html(&done.text));
            if done.already_done {
                body.push_str(
                    "<p><strong>This link had already been used: it was done then, and \
                     nothing changed this time.</strong></p>",
                );
            }
            page(StatusCode::OK, &done.title, &body)
        }
        Err(failed) => {
            tracing::warn!(link = %link.id, action = %link.action, status = failed.status, "action failed");
            let status = StatusCode::from_u16(failed.status)
                .ok()
                .filter(|s| s.is_client_error() || s.is_server_error())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            page(
                status,
                &failed.title,
                &format!("<p>{}</p>", escape_html(&failed.text)),
            )
        }
    }
}

/// Replies to notes come by e-mail only: a reply link has no page.
fn served_over_http(link: &Link) -> bool {
    link.action != "reply_note"
}

/// Parses an `application/x-www-form-urlencoded` body (percent-decoding, `+` as a space);
/// when a name repeats, the first value wins.
pub fn parse_form(body: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(body) {
        out.entry(name.into_owned()).or_insert(value.into_owned());
    }
    out
}

/// Checks the inputs the action needs; returns the trimmed values to run with, and the
/// errors by field name.
fn validate(
    action: &str,
    raw: &BTreeMap<String, String>,
    described: &Described,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut clean = BTreeMap::new();
    let mut errors = BTreeMap::new();
    let get = |name: &str| {
        raw.get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let mut text_field = |name: &str, required: bool, missing: &str| {
        let v = get(name);
        if v.is_empty() {
            if required {
                errors.insert(name.to_string(), missing.to_string());
            }
        } else if v.chars().count() > MAX_TEXT_CHARS {
            errors.insert(
                name.to_string(),
                format!("Please keep this under {MAX_TEXT_CHARS} characters."),
            );
        } else {
            clean.insert(name.to_string(), v);
        }
    };
    match action {
        "decline_registration" => {
            text_field("reason", true, "Please give a reason for declining.");
            if !described.reason_codes.is_empty() {
                let code = get("reason_code");
                if described.reason_codes.contains(&code) {
                    clean.insert("reason_code".to_string(), code);
                } else {
                    errors.insert(
                        "reason_code".to_string(),
                        "Please choose one of the listed reasons.".to_string(),
                    );
                }
            }
        }
        "set_next_step" => {
            text_field("text", true, "Please describe the next step.");
            let due = get("due");
            if NaiveDate::parse_from_str(&due, "%Y-%m-%d").is_ok() {
                clean.insert("due".to_string(), due);
            } else {
                errors.insert(
                    "due".to_string(),
                    "Please give a due date (year-month-day).".to_string(),
                );
            }
        }
        "request_extension" => text_field("reason", false, ""),
        _ => {}
    }
    (clean, errors)
}

fn form_page(
    status: StatusCode,
    token: &str,
    link: &Link,
    described: &Described,
    values: &BTreeMap<String, String>,
    errors: &BTreeMap<String, String>,
) -> Response<Full<Bytes>> {
    let value = |name: &str| escape_html(values.get(name).map(String::as_str).unwrap_or(""));
    let error = |name: &str| match errors.get(name) {
        Some(e) => format!(
            "<p class=\"error\" id=\"{name}-error\" role=\"alert\">{}</p>",
            escape_html(e)
        ),
        None => String::new(),
    };
    let described_by = |name: &str| {
        if errors.contains_key(name) {
            format!(" aria-invalid=\"true\" aria-describedby=\"{name}-error\"")
        } else {
            String::new()
        }
    };
    let mut inputs = String::new();
    match link.action.as_str() {
        "decline_registration" => {
            if !described.reason_codes.is_empty() {
                let chosen = values.get("reason_code");
                inputs.push_str("<p><label for=\"reason_code\">Reason</label><br>");
                inputs.push_str(&format!(
                    "<select id=\"reason_code\" name=\"reason_code\" required{}>",
                    described_by("reason_code")
                ));
                for code in &described.reason_codes {
                    let selected = if chosen == Some(code) {
                        " selected"
                    } else {
                        ""
                    };
                    let code = escape_html(code);
                    inputs.push_str(&format!(
                        "<option value=\"{code}\"{selected}>{code}</option>"
                    ));
                }
                inputs.push_str("</select></p>");
                inputs.push_str(&error("reason_code"));
            }
            inputs.push_str(&format!(
                "<p><label for=\"reason\">Why is it declined? (required)</label><br>\
                 <textarea id=\"reason\" name=\"reason\" rows=\"5\" cols=\"60\" required{}>{}</textarea></p>{}",
                described_by("reason"),
                value("reason"),
                error("reason")
            ));
        }
        "set_next_step" => {
            inputs.push_str(&format!(
                "<p><label for=\"text\">Next step (required)</label><br>\
                 <input type=\"text\" id=\"text\" name=\"text\" size=\"60\" required value=\"{}\"{}></p>{}",
                value("text"),
                described_by("text"),
                error("text")
            ));
            inputs.push_str(&format!(
                "<p><label for=\"due\">Due date (required)</label><br>\
                 <input type=\"date\" id=\"due\" name=\"due\" required value=\"{}\"{}></p>{}",
                value("due"),
                described_by("due"),
                error("due")
            ));
        }
        "request_extension" => {
            inputs.push_str(&format!(
                "<p><label for=\"reason\">Reason (optional)</label><br>\
                 <textarea id=\"reason\" name=\"reason\" rows=\"4\" cols=\"60\"{}>{}</textarea></p>{}",
                described_by("reason"),
                value("reason"),
                error("reason")
            ));
        }
        _ => {}
    }
    let body = format!(
        "<p>{}</p>\
         <form method=\"post\" action=\"/a/{}\">{}\
         <p><button type=\"submit\">Confirm</button></p></form>\
         <p class=\"note\">Nothing happens until you confirm. This link expires on {} UTC.</p>",
        escape_html(&described.text),
        escape_html(token),
        inputs,
        link.expires_at.format("%Y-%m-%d %H:%M"),
    );
    page(status, &described.title, &body)
}

fn not_found() -> Response<Full<Bytes>> {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        "<p>There is nothing at this address. Open the link from your e-mail again.</p>",
    )
}

fn too_large() -> Response<Full<Bytes>> {
    page(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Too much text",
        &format!(
            "<p>The form was larger than {} KiB. Go back, shorten the text and send it again.</p>",
            MAX_FORM_BYTES / 1024
        ),
    )
}

/// A whole page: small, no script, inline style only, with the headers that keep the
/// token in the URL from leaking (referrer, caches) and the page from being framed.
fn page(status: StatusCode, title: &str, body_html: &str) -> Response<Full<Bytes>> {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font-family:sans-serif;max-width:40em;margin:2em auto;\
         padding:0 1em;line-height:1.5}}.error{{color:#a00;font-weight:bold}}\
         .note{{color:#555;font-size:.9em}}</style></head>\
         <body><main><h1>{title}</h1>{body_html}</main></body></html>\n",
        title = escape_html(title),
    );
    let mut resp = Response::new(Full::new(Bytes::from(html)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape_html("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn parses_forms() {
        let form = parse_form(b"reason=too+late%21&reason_code=dup&reason=second&x=%E2%82%AC");
        assert_eq!(form["reason"], "too late!");
        assert_eq!(form["reason_code"], "dup");
        assert_eq!(form["x"], "\u{20ac}");
        assert!(parse_form(b"").is_empty());
        // Broken escapes are kept as they are, never a panic.
        assert_eq!(parse_form(b"a=%zz%")["a"], "%zz%");
    }
}
