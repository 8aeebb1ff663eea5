//! Acting without a portal: signed action links served over HTTP, and e-mail replies
//! received over SMTP.
//!
//! An alert e-mail carries links ("approve", "decline with a reason", "acknowledge",
//! "request an extension", "set a next step") and a reply-to address. This crate is
//! domain-free: it signs and verifies links ([`links`]), serves their pages ([`pages`]) and
//! receives replies ([`inbound`]); the binary maps the generic values (action name, fields,
//! actor JSON, reply id) to engine commands through [`ActionRunner`] and [`ReplyReceiver`].
//!
//! # Why GET never acts
//! Mail scanners, link previewers and security gateways fetch every URL in a message before
//! the person sees it. An action taken on GET would be taken by a machine. `GET /a/<token>`
//! only verifies the link, records a read receipt (`opened`) and shows a page with a form;
//! the person's POST from that page acts. The link id is the idempotency key: a second POST
//! (double click, back button) reaches the runner with the same id and reports
//! `already_done`.
//!
//! # Token formats
//! - Link token (in URLs): `v1.` + base64url(JSON of [`Link`]) + `.` + base64url(HMAC-SHA256
//!   over everything before the last dot), no padding. At most 4 KiB. A token shaped right
//!   but failing the MAC is `Tampered` (also when signed with another key: same answer);
//!   anything not shaped like a token is `Malformed`.
//! - Reply token (in `reply+<token>@<domain>`): lowercase base32 (RFC 4648, no padding) of
//!   16 bytes link id + 4 bytes expiry (minutes since the epoch, big-endian, rounded up) +
//!   the first 10 bytes of HMAC-SHA256 over a domain-separation prefix and those 20 bytes:
//!   48 characters, so the local part stays within RFC 5321's 64 octets and survives case
//!   changes. The binary keeps which registration and person each reply id stands for.
//!
//! Secrets (the key, tokens) never appear in errors, `Debug` output or logs; logs name a
//! link by its id only.
//!
//! # Not done
//! - No TLS (STARTTLS) or AUTH on the SMTP side, no HTTPS: run behind a proxy / MTA that
//!   terminates TLS. No SPF/DKIM/DMARC checking of the sender: the receiver decides whom
//!   it trusts (the `from` address against the reply id's person).
//! - No key rotation yet: the `v1.` prefix leaves room for a second key.
//! - One reply recipient per SMTP transaction (others get 452 and are sent again by the
//!   client); no PIPELINING, CHUNKING or SMTPUTF8.
//! - Quote stripping covers the common Gmail, Apple Mail, Outlook and `-- ` signature
//!   shapes in English; other languages' attribution lines are kept as text.

use std::future::Future;
use std::pin::Pin;

pub mod inbound;
pub mod links;
pub mod pages;

pub use inbound::{
    serve_inbound, strip_quoted, Aside, InboundSettings, Refusal, Reply, ReplyReceiver,
};
pub use links::{Link, LinkError, LinkKey, LinkRefused, MAX_TOKEN_LEN};
pub use pages::{
    escape_html, parse_form, serve_links, ActionDone, ActionFailed, ActionRunner, Clock, Described,
    MAX_FORM_BYTES,
};

/// A boxed, sendable future: the runner and receiver traits stay object-safe without the
/// `futures` crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
