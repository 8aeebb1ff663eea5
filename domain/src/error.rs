//! Why a command was refused: a stable code, a message that says what to do next, and
//! details a program can read.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares [`RejectionCode`] with its wire names: one list, so the enum, its serde names,
/// `as_str` and `ALL` cannot disagree (a test pins `docs/API.md` to `ALL`).
macro_rules! rejection_codes {
    ($($variant:ident => $name:literal $(| $old:literal)?,)*) => {
        /// Stable refusal codes. Clients switch on these; never rename one (an old
        /// spelling stays readable as an alias).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        pub enum RejectionCode {
            $(
                #[serde(rename = $name $(, alias = $old)?)]
                $variant,
            )*
        }

        impl RejectionCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [RejectionCode] = &[$(RejectionCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(RejectionCode::$variant => $name,)*
                }
            }
        }
    };
}

rejection_codes! {
    NotAuthorised => "not_authorised",
    MissingField => "missing_field",
    InvalidField => "invalid_field",
    WrongBoundary => "wrong_boundary",
    UnknownPartner => "unknown_partner",
    PartnerExists => "partner_exists",
    PartnerNotActive => "partner_not_active",
    MotionNotInAgreement => "motion_not_in_agreement",
    NotCertified => "not_certified",
    CapacityReached => "capacity_reached",
    UnknownRegistration => "unknown_registration",
    RegistrationExists => "registration_exists",
    DuplicateRegistration => "duplicate_registration",
    AlreadyProtected => "already_protected",
    Outranked => "outranked",
    InvalidTransition => "invalid_transition",
    ExitCriteriaNotMet => "exit_criteria_not_met",
    // Written `attribution_over100` by builds before the name was fixed.
    AttributionOver100 => "attribution_over_100" | "attribution_over100",
    AttributionLocked => "attribution_locked",
    SourcingTaken => "sourcing_taken",
    SourcingNotAllowed => "sourcing_not_allowed",
    ExtensionLimit => "extension_limit",
    NotDue => "not_due",
    AlreadyRecorded => "already_recorded",
    AppealWindowClosed => "appeal_window_closed",
    RenewalOwnedByIncumbent => "renewal_owned_by_incumbent",
    NoIncumbent => "no_incumbent",
    RenewalConfirmationTooLate => "renewal_confirmation_too_late",
    UnknownConflict => "unknown_conflict",
    PolicyVersionNotNewer => "policy_version_not_newer",
    InvalidPolicy => "invalid_policy",
    OutsideTerritory => "outside_territory",
    NamedAccountOfAnotherPartner => "named_account_of_another_partner",
    NotInactive => "not_inactive",
    UnknownAnnouncement => "unknown_announcement",
    AnnouncementNotAcknowledged => "announcement_not_acknowledged",
    NotProtected => "not_protected",
}

impl fmt::Display for RejectionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused command.
#[derive(
    Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize, schemars::JsonSchema,
)]
#[error("{code}: {message}")]
pub struct DomainError {
    pub code: RejectionCode,
    pub message: String,
    #[serde(default)]
    pub details: serde_json::Value,
}

impl DomainError {
    pub fn new(code: RejectionCode, message: impl Into<String>) -> Self {
        DomainError {
            code,
            message: message.into(),
            details: serde_json::Value::Null,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Shorthand for `Err(DomainError::new(code, message))`.
pub(crate) fn refuse<T>(code: RejectionCode, message: impl Into<String>) -> Result<T, DomainError> {
    Err(DomainError::new(code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_serialises_as_its_name_and_reads_back() {
        for code in RejectionCode::ALL {
            let json = serde_json::to_value(code).unwrap_or_default();
            assert_eq!(json, code.as_str());
            assert_eq!(
                serde_json::from_value::<RejectionCode>(json).ok(),
                Some(*code)
            );
        }
        let old: Result<RejectionCode, _> = serde_json::from_str("\"attribution_over100\"");
        assert_eq!(old.ok(), Some(RejectionCode::AttributionOver100));
    }
}
