//! A command as the log keeps it for deciding again (`dealreg what-if`): its personal data
//! replaced by placeholders of the same shape.
//!
//! Why placeholders and not the sealed contact: the body is kept so that a command can be
//! decided again under another policy, and the rules read a contact only for its presence
//! and its shape (a plausible e-mail address, a phone number of 5 to 20 digits). A
//! placeholder that passes or fails exactly where the original did decides the same, and
//! leaves nothing for `forget` to reach: the person's data stays only where it already
//! was, sealed in the event with the person's key.

use crate::command::{Command, SetAlertSubscription, SubmitRegistration};
use crate::registration::{is_email, is_phone};
use crate::subscription::is_recipient_email;
use crate::values::Contact;

/// What a redacted name reads.
pub const NAME: &str = "(redacted)";
/// A redacted address that passes every address check.
pub const EMAIL: &str = "person@redacted.invalid";
/// A redacted phone number that passes the phone check.
pub const PHONE: &str = "+00 0000 0000";
/// A redacted value that failed its check, and fails it again.
pub const NOT_VALID: &str = "(redacted, not valid)";

/// `value` replaced by `placeholder` when it passes `valid`, by [`NOT_VALID`] when it
/// does not; an empty value stays empty (a missing field is refused as missing).
fn same_shape(value: &str, valid: bool, placeholder: &str) -> String {
    if value.trim().is_empty() {
        value.to_string()
    } else if valid {
        placeholder.to_string()
    } else {
        NOT_VALID.to_string()
    }
}

impl Contact {
    /// The contact with its name, address and phone replaced by placeholders that the
    /// submission's checks answer as they answered the original.
    pub fn redacted(&self) -> Contact {
        Contact {
            name: same_shape(&self.name, true, NAME),
            email: same_shape(&self.email, is_email(&self.email), EMAIL),
            phone: self
                .phone
                .as_ref()
                .map(|p| same_shape(p, is_phone(p), PHONE)),
        }
    }
}

impl Command {
    /// The command without personal data, as `dealreg what-if` decides it again: the
    /// same decision under the same policy, by construction of the placeholders.
    pub fn redacted(&self) -> Command {
        match self {
            Command::SubmitRegistration(c) => {
                let mut c: SubmitRegistration = c.clone();
                c.customer.contact = c.customer.contact.redacted();
                Command::SubmitRegistration(c)
            }
            Command::SetAlertSubscription(c) => {
                let mut c: SetAlertSubscription = c.clone();
                c.name = same_shape(&c.name, true, NAME);
                c.email = same_shape(&c.email, is_recipient_email(&c.email), EMAIL);
                Command::SetAlertSubscription(c)
            }
            other => other.clone(),
        }
    }

    /// Whether [`Command::redacted`] changes this command (it holds personal data).
    pub fn holds_personal_data(&self) -> bool {
        matches!(
            self,
            Command::SubmitRegistration(_) | Command::SetAlertSubscription(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(name: &str, email: &str, phone: Option<&str>) -> Contact {
        Contact {
            name: name.into(),
            email: email.into(),
            phone: phone.map(str::to_string),
        }
    }

    #[test]
    fn a_redacted_contact_keeps_each_fields_verdict_and_nothing_else() {
        let r = contact("Ana Silva", "ana@acme.example", Some("+351 912 345 678")).redacted();
        assert_eq!(r, contact(NAME, EMAIL, Some(PHONE)));
        assert!(is_email(&r.email) && is_phone(r.phone.as_deref().unwrap_or("")));
        let bad = contact("Ana", "ana at acme", Some("call me")).redacted();
        assert_eq!(bad.email, NOT_VALID);
        assert!(!is_email(&bad.email));
        assert!(!is_phone(bad.phone.as_deref().unwrap_or("")));
        let empty = contact("", " ", None).redacted();
        assert_eq!(empty, contact("", " ", None));
    }

    #[test]
    fn the_placeholder_address_passes_the_subscriptions_check_too() {
        assert!(is_recipient_email(EMAIL));
        assert!(!is_recipient_email(NOT_VALID));
    }
}
