//! What a carrier reports when it could not deliver.

use std::time::Duration;

/// Why a message was not delivered, split by what the caller should do about it. The
/// carrier never retries itself: the notifier that called it schedules the next attempt
/// (Transient) or files the message for a person (Permanent). Reasons never contain a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    /// Trying again later may work: connection refused or timed out, an SMTP 4xx, Slack
    /// 429 (with its `Retry-After`), an HTTP 5xx.
    #[error("temporary failure, try again later: {reason}")]
    Transient {
        reason: String,
        /// How long the receiver asked us to wait, when it said (Slack's `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Will never succeed as is: an SMTP 5xx, a refused login, Slack `ok:false` errors
    /// such as `channel_not_found`, `invalid_auth`, `invalid_blocks`, webhook 400/403/404/410.
    #[error("permanent failure: {reason}")]
    Permanent { reason: String },
}

impl CarrierError {
    pub(crate) fn transient(reason: impl Into<String>) -> Self {
        CarrierError::Transient {
            reason: reason.into(),
            retry_after: None,
        }
    }

    pub(crate) fn permanent(reason: impl Into<String>) -> Self {
        CarrierError::Permanent {
            reason: reason.into(),
        }
    }

    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        matches!(self, CarrierError::Transient { .. })
    }

    /// The same error with each of `words` (a recipient's address and name: personal
    /// data, which an SMTP server's answer often quotes) replaced by `<recipient>`, so
    /// that neither logs nor dead letters keep them.
    pub fn without(self, words: &[&str]) -> Self {
        let scrub = |mut reason: String| {
            for word in words.iter().filter(|w| !w.trim().is_empty()) {
                reason = reason.replace(word, "<recipient>");
            }
            reason
        };
        match self {
            CarrierError::Transient {
                reason,
                retry_after,
            } => CarrierError::Transient {
                reason: scrub(reason),
                retry_after,
            },
            CarrierError::Permanent { reason } => CarrierError::Permanent {
                reason: scrub(reason),
            },
        }
    }
}
