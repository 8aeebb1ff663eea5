//! Test support for dealreg's alert carriers (`dealreg-notify`): a real SMTP server and a
//! Slack receiver, both on 127.0.0.1, both started and stopped by a test.
//!
//! - [`SmtpServer`] runs Python's aiosmtpd (the real thing, not a Rust imitation) as a
//!   child process through one small script (`python/smtp_server.py`), delivering into a
//!   Maildir in a temporary directory, optionally requiring AUTH with one user and
//!   password, or requiring STARTTLS with a certificate from a throwaway CA (made with the
//!   `openssl` command). Python 3 and aiosmtpd are installed by `scripts/setup`; the
//!   STARTTLS mode also needs `openssl` on PATH.
//! - [`SlackDouble`] is a hyper HTTP/1 server playing `chat.postMessage` and one incoming
//!   webhook, as strict as Slack's documentation on the points the carrier depends on
//!   (authentication, content type, required fields, Block Kit limits, rate limiting).
//!   Each rule names its documentation page. It was written from the documentation, not
//!   recorded from Slack: nothing here was verified against the live service.

mod slack;
mod smtp;

pub use slack::SlackDouble;
pub use smtp::{Received, SmtpServer, SmtpServerError};
