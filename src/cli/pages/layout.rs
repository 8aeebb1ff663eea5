//! Page chrome shared by every page: the inline stylesheet, the header with the signed-in
//! person and the logout form, HTML escaping, money for display, and the response headers.
//!
//! Why everything is inline and there is no script: the pages must work without
//! JavaScript, and a Content-Security-Policy of `default-src 'none'` (styles inline only)
//! leaves an injected tag nothing to load or run.

use bytes::Bytes;
use dealreg_domain::money::{format_amount, Currency};
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION, SET_COOKIE};
use hyper::{Response, StatusCode};

pub use dealreg_actions::escape_html as escape;

/// A response of the pages.
pub type Page = Response<Full<Bytes>>;

/// The shared stylesheet: small, readable, printable.
const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}\
header{background:#1d2430;color:#fff;padding:.6em 1.2em;display:flex;gap:1em;align-items:center}\
header a{color:#fff}header form{margin-left:auto}main{max-width:72em;margin:1em auto;padding:0 1em}\
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:.8em 1.2em;margin:1em 0}\
h1{font-size:1.5em}h2{font-size:1.15em;margin:.2em 0 .6em}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid #eef0f3;vertical-align:top}\
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}.error{color:#a00;font-weight:bold}\
.note{color:#555;font-size:.9em}.late{color:#a00}label{display:block;font-weight:600;margin-top:.6em}\
input,select,textarea{font:inherit;padding:.3em;min-width:18em}button{font:inherit;padding:.35em 1em}\
svg{max-width:100%;height:auto}svg text{font-size:11px;fill:#333}";

/// A whole page with the header; `who` is the signed-in person's label and `csrf` their
/// session's token for the logout form (`None`: nobody signed in).
pub fn page(status: StatusCode, title: &str, who: Option<(&str, &str)>, body: &str) -> Page {
    let header = match who {
        Some((label, csrf)) => format!(
            "<header><strong>dealreg</strong><span>{}</span>\
             <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Log out</button></form></header>",
            escape(label),
            escape(csrf)
        ),
        None => "<header><strong>dealreg</strong></header>".to_string(),
    };
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>{STYLE}</style></head><body>{header}<main><h1>{t}</h1>{body}</main></body></html>\n",
        t = escape(title),
    );
    with_headers(status, Bytes::from(html))
}

/// A short page that says what happened (errors, refusals).
pub fn message(status: StatusCode, title: &str, text: &str) -> Page {
    page(status, title, None, &format!("<p>{}</p>", escape(text)))
}

/// 303 See Other to `to`, optionally setting cookies.
pub fn see_other(to: &str, cookies: &[String]) -> Page {
    let mut resp = with_headers(StatusCode::SEE_OTHER, Bytes::new());
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(LOCATION, v);
    }
    for cookie in cookies {
        if let Ok(v) = HeaderValue::from_str(cookie) {
            resp.headers_mut().append(SET_COOKIE, v);
        }
    }
    resp
}

/// Adds a `Set-Cookie` header.
pub fn set_cookie(mut resp: Page, cookie: &str) -> Page {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
    resp
}

fn with_headers(status: StatusCode, body: Bytes) -> Page {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// Money for display (`12,345.67 USD`); the raw minor units go in `data-value`.
pub fn money(minor: impl Into<i128>, currency: &Currency) -> String {
    escape(&format_amount(minor, currency))
}

/// A figure cell: the display text with the view's raw value and its name, as the DOM
/// contract (docs/PAGES.md) says; `attrs` are further `data-*` attributes (already
/// escaped by the caller through [`attr`]).
pub fn figure(name: &str, value: impl std::fmt::Display, attrs: &str, shown: &str) -> String {
    format!(
        "<td class=\"num\" data-figure=\"{}\" data-value=\"{value}\"{attrs}>{shown}</td>",
        escape(name)
    )
}

/// ` data-NAME="VALUE"`, escaped.
pub fn attr(name: &str, value: &str) -> String {
    format!(" data-{name}=\"{}\"", escape(value))
}

/// A date-time for people: `2026-03-02 09:00 UTC`.
pub fn when(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}
