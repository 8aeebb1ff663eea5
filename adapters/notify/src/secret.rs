//! A value that must never be printed.

/// A secret (SMTP password, Slack bot token, Slack webhook URL). Its `Debug` and
/// `Display` print `<redacted>`, so a secret inside settings, errors or `tracing` fields
/// cannot leak by formatting; the value is reachable only through [`Secret::expose`],
/// which makes each use visible in review.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the secret replaced by `<redacted>`: errors from
    /// libraries (an HTTP client naming the URL, a server echoing a command) are scrubbed
    /// before they leave the carrier.
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_owned()
        } else {
            text.replace(&self.0, "<redacted>")
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(
            format!("{:?}", Some(("user", secret.clone()))),
            "Some((\"user\", <redacted>))"
        );
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn scrub_removes_every_occurrence() {
        let secret = Secret::new("xoxb-1");
        assert_eq!(
            secret.scrub("a xoxb-1 b xoxb-1"),
            "a <redacted> b <redacted>"
        );
        assert_eq!(Secret::new("").scrub("text"), "text");
    }
}
