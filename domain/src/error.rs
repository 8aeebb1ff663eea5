//! Why a command was refused: a stable code, a message that says what to do next, and
//! details a program can read.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Stable refusal codes. Clients switch on these; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectionCode {
    NotAuthorised,
    MissingField,
    InvalidField,
    WrongBoundary,
    UnknownPartner,
    PartnerExists,
    PartnerNotActive,
    MotionNotInAgreement,
    NotCertified,
    CapacityReached,
    UnknownRegistration,
    RegistrationExists,
    DuplicateRegistration,
    AlreadyProtected,
    Outranked,
    InvalidTransition,
    ExitCriteriaNotMet,
    AttributionOver100,
    AttributionLocked,
    SourcingTaken,
    SourcingNotAllowed,
    ExtensionLimit,
    NotDue,
    AlreadyRecorded,
    AppealWindowClosed,
    RenewalOwnedByIncumbent,
    NoIncumbent,
    RenewalConfirmationTooLate,
    UnknownConflict,
    PolicyVersionNotNewer,
    InvalidPolicy,
}

impl RejectionCode {
    pub fn as_str(self) -> &'static str {
        use RejectionCode::*;
        match self {
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
            AttributionOver100 => "attribution_over_100",
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
        }
    }
}

impl fmt::Display for RejectionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused command.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
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
