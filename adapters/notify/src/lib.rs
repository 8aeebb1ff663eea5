//! Alerts carried to people: e-mail over SMTP, Slack messages (bot or incoming webhook),
//! and the templates both are written from. Domain-free: it knows alert kinds only as
//! names and placeholder values, so the notifier that decides *who* gets *what* lives
//! elsewhere and this crate only carries.
//!
//! A carrier reports, it does not retry: every failure is a [`CarrierError`] that says
//! whether trying again later can help ([`CarrierError::Transient`], with Slack's
//! `Retry-After` when given) or not ([`CarrierError::Permanent`], for a dead-letter list a
//! person reads). Secrets (SMTP password, Slack token, webhook URL) are held in
//! [`Secret`], which never prints, and are scrubbed from error texts.
//!
//! What was verified, plainly:
//! - SMTP: against a real SMTP server, Python's aiosmtpd on loopback: plain SMTP, AUTH
//!   required or not, a refused login, a closed port, a frozen server, and STARTTLS
//!   (required by the server, certificate from a throwaway CA made with `openssl`).
//!   Implicit TLS (port 465) was not tested; no live mail provider was used.
//! - Slack: only against `dealreg-notify-fake`'s double, written from Slack's
//!   documentation. Nothing was verified against live Slack unless `SLACK_BOT_TOKEN` and
//!   `SLACK_CHANNEL` are set for the `live_slack_post` test, which was not run here.

mod error;
mod secret;
mod slack;
mod smtp;
mod templates;

pub use error::CarrierError;
pub use secret::Secret;
pub use slack::{SlackCarrier, SlackMessage, SlackTarget, DEFAULT_SLACK_API_BASE};
pub use smtp::{Email, Mailbox, Security, SmtpCarrier, SmtpSettings};
pub use templates::{
    Rendered, TemplateError, TemplateSpec, Templates, BUILTIN_SPECS, COMMON_PLACEHOLDERS,
};
