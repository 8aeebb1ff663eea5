//! Commands: what actors ask for. Each command is a struct of its own; [`Command`] is the
//! wire form (JSON tagged by `type`) and [`crate::route`] sends each command to the one
//! decider that owns it.
//!
//! Why one struct per command: a decider takes exactly the command it decides (no
//! "cannot happen" arms), the input parser can name the exact type it is reading, and the
//! JSON Schema of each command is generated from its own type.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{AnnouncementId, ConflictId, NoteId, OpportunityId, PartnerId, RegistrationId};
use crate::money::Money;
use crate::motion::{DealKind, Motion, Tier};
use crate::policy::Policy;
use crate::values::{
    strict_date, Audience, ConflictSla, Customer, NoteVisibility, QuietHours, StageEvidence,
    Territory,
};

// ------------------------------------------------------------------------------ program

/// RevOps adopts a new version of the program policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdoptPolicy {
    pub policy: Policy,
}

// ----------------------------------------------------------------------------- partners

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OnboardPartner {
    pub partner_id: PartnerId,
    pub name: String,
    pub motions: Vec<Motion>,
    pub tier: Tier,
    pub territories: Vec<Territory>,
    pub capacity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePartnerTier {
    pub partner_id: PartnerId,
    pub tier: Tier,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertifyPartner {
    pub partner_id: PartnerId,
    pub product_line: String,
    #[serde(deserialize_with = "strict_date")]
    pub expires_on: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetTerritories {
    pub partner_id: PartnerId,
    pub territories: Vec<Territory>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetCapacity {
    pub partner_id: PartnerId,
    pub capacity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OffboardPartner {
    pub partner_id: PartnerId,
    pub reason: String,
}

/// Finance paid a partner from its commission balance (`reference`: the payment's id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordCommissionPayout {
    pub partner_id: PartnerId,
    pub amount: Money,
    pub reference: String,
}

// ----------------------------------------------------------------- registrations: review

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRegistration {
    pub registration_id: RegistrationId,
    pub partner_id: PartnerId,
    pub customer: Customer,
    pub product_line: String,
    pub motion: Motion,
    pub estimated_amount: Money,
    #[serde(deserialize_with = "strict_date")]
    pub expected_close: NaiveDate,
    pub proof_of_work: String,
    #[serde(default)]
    pub kind: DealKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRegistration {
    pub account: String,
    pub registration_id: RegistrationId,
    pub rationale: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclineRegistration {
    pub account: String,
    pub registration_id: RegistrationId,
    pub reason_code: String,
    pub rationale: String,
}

/// The timekeeper's: the approval decision is overdue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagApprovalSlaBreached {
    pub account: String,
    pub registration_id: RegistrationId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppealDecision {
    pub account: String,
    pub registration_id: RegistrationId,
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideAppeal {
    pub account: String,
    pub registration_id: RegistrationId,
    pub upheld: bool,
    pub rationale: String,
}

// ---------------------------------------------------- registrations: protection windows

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendProtection {
    pub account: String,
    pub registration_id: RegistrationId,
    pub reason: String,
}

/// The timekeeper's: the protection window ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpireProtection {
    pub account: String,
    pub registration_id: RegistrationId,
}

/// The timekeeper's: protection ends within the reminder lead time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendExpiryReminder {
    pub account: String,
    pub registration_id: RegistrationId,
}

/// The timekeeper's: nobody touched the registration for the inactivity threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagInactive {
    pub account: String,
    pub registration_id: RegistrationId,
}

/// A channel manager moves a registration nobody worked for the inactivity threshold
/// (flagged inactive since its last touch) to another partner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReassignRegistration {
    pub account: String,
    pub registration_id: RegistrationId,
    pub to_partner: PartnerId,
    pub reason: String,
}

// ------------------------------------------------------- deals: stages and outcomes

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvanceStage {
    pub account: String,
    pub registration_id: RegistrationId,
    pub to_stage: String,
    #[serde(default)]
    pub evidence: StageEvidence,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkWon {
    pub account: String,
    pub registration_id: RegistrationId,
    pub amount: Money,
    /// The order the deal closed with: required for a reseller's Transact, and for a
    /// marketplace deal whose Procurement recorded no transaction reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_reference: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkLost {
    pub account: String,
    pub registration_id: RegistrationId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordRevenueReversal {
    pub account: String,
    pub registration_id: RegistrationId,
    pub amount: Money,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRegistration {
    pub account: String,
    pub registration_id: RegistrationId,
    pub reason: String,
}

/// The timekeeper gives up a capacity slot the account does not back: taken for a command
/// that was interrupted before the account recorded it, or still held after the
/// registration closed. Slot `slot` of `partner_id` for `registration_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LapseCapacitySlot {
    pub account: String,
    pub registration_id: RegistrationId,
    pub partner_id: PartnerId,
    pub slot: u64,
}

/// Offboarding (or a channel manager) frees the registration's customer and product line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRegistration {
    pub account: String,
    pub registration_id: RegistrationId,
    pub reason: String,
}

// --------------------------------------------------------------------------- attribution

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSourcingPartner {
    pub account: String,
    pub registration_id: RegistrationId,
    pub partner_id: PartnerId,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddInfluencer {
    pub account: String,
    pub registration_id: RegistrationId,
    pub partner_id: PartnerId,
    pub percent: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveInfluencer {
    pub account: String,
    pub registration_id: RegistrationId,
    pub partner_id: PartnerId,
    pub reason: String,
}

// ----------------------------------------------------------------------------- conflicts

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordDirectOpportunity {
    pub account: String,
    pub opportunity_id: OpportunityId,
    pub owner: String,
    pub product_line: String,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeConflict {
    pub account: String,
    pub conflict_id: ConflictId,
    #[serde(default)]
    pub note: String,
}

/// The timekeeper's: a referral was not made an accepted opportunity in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagReferralSlaBreached {
    pub account: String,
    pub registration_id: RegistrationId,
}

/// A channel manager records how a conflict will be resolved: the owner of the work, its
/// steps, and the date it is to be resolved by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordResolutionPlan {
    pub account: String,
    pub conflict_id: ConflictId,
    pub owner: String,
    pub steps: Vec<String>,
    #[serde(deserialize_with = "strict_date")]
    pub resolve_by: NaiveDate,
}

/// The timekeeper's: a conflict SLA fell due unmet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagConflictSlaBreached {
    pub account: String,
    pub conflict_id: ConflictId,
    pub sla: ConflictSla,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveConflict {
    pub account: String,
    pub conflict_id: ConflictId,
    #[serde(default)]
    pub winner: Option<RegistrationId>,
    pub rationale: String,
}

/// A channel manager makes the customer a named account of a partner; `exclusive` keeps
/// every other partner from registering deals on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignNamedAccount {
    pub account: String,
    pub partner_id: PartnerId,
    #[serde(default)]
    pub exclusive: bool,
    pub reason: String,
}

// ------------------------------------------------------------------------------ renewals

/// The timekeeper's: a product line's renewal is within the confirmation lead time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagRenewalOwnershipDue {
    pub account: String,
    pub product_line: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRenewalOwnership {
    pub account: String,
    pub product_line: String,
    #[serde(deserialize_with = "strict_date")]
    pub renewal_date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReassignRenewalOwnership {
    pub account: String,
    pub product_line: String,
    pub to_partner: PartnerId,
    pub reason: String,
}

// ---------------------------------------------------------- registrations: engagement

/// A note on a registration (a partner's update, a channel manager's remark, an e-mail
/// reply to an alert).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddNote {
    pub account: String,
    pub registration_id: RegistrationId,
    pub note_id: NoteId,
    pub text: String,
    #[serde(default)]
    pub visibility: NoteVisibility,
}

/// The deal's next step and the day it is due: the weekly action cycle of a partner deal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetNextStep {
    pub account: String,
    pub registration_id: RegistrationId,
    pub text: String,
    #[serde(deserialize_with = "strict_date")]
    pub due_on: NaiveDate,
}

/// The timekeeper's: the next step's day passed without a new one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagNextStepOverdue {
    pub account: String,
    pub registration_id: RegistrationId,
}

/// The owning partner asks its channel manager for more protection time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestExtension {
    pub account: String,
    pub registration_id: RegistrationId,
    #[serde(default)]
    pub reason: String,
}

/// A channel manager needs more from the partner before deciding a pending registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestMoreInformation {
    pub account: String,
    pub registration_id: RegistrationId,
    pub question: String,
}

// -------------------------------------------------------------------------- announcements

/// RevOps tells partners of a change: the policy version it concerns, who it is for, and
/// by when they must acknowledge it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishAnnouncement {
    pub announcement_id: AnnouncementId,
    pub title: String,
    pub text: String,
    #[serde(default)]
    pub policy_version: Option<u32>,
    #[serde(default)]
    pub audience: Audience,
    #[serde(default)]
    pub acknowledge_by: Option<DateTime<Utc>>,
}

/// A partner user acknowledges an announcement for its partner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeAnnouncement {
    pub partner_id: PartnerId,
    pub announcement_id: AnnouncementId,
}

/// A partner user opened the announcement: its first opening is the read receipt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordAnnouncementRead {
    pub partner_id: PartnerId,
    pub announcement_id: AnnouncementId,
}

/// The timekeeper's: a partner's acknowledgement is due soon and missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChaseAnnouncement {
    pub partner_id: PartnerId,
    pub announcement_id: AnnouncementId,
}

// --------------------------------------------------------------------------------- alerts

/// Who hears of what: a person (a partner's user when `partner_id` is given, else a vendor
/// user) subscribes to alerts. `alerts` empty: every alert meant for them. Setting it
/// again replaces the earlier subscription of the same user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAlertSubscription {
    #[serde(default)]
    pub partner_id: Option<PartnerId>,
    pub user: String,
    pub name: String,
    pub email: String,
    #[serde(default = "yes")]
    pub by_email: bool,
    #[serde(default)]
    pub slack_channel: Option<String>,
    #[serde(default)]
    pub alerts: Vec<String>,
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    #[serde(default)]
    pub digest: bool,
}

fn yes() -> bool {
    true
}

// ---------------------------------------------------------------------------- the wire

/// Declares [`Command`] with one variant per command struct, its wire names, and the
/// reader that decodes a named command's fields: one list, so they cannot disagree.
macro_rules! wire_commands {
    ($($variant:ident => $name:literal,)*) => {
        /// Every command, as it travels: a JSON object whose `type` names the command and
        /// whose other fields are the command's own.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum Command {
            $($variant($variant),)*
        }

        impl Command {
            /// Every command's wire name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($name,)*];

            /// The command's wire name (its `type` tag).
            pub fn name(&self) -> &'static str {
                match self {
                    $(Command::$variant(_) => $name,)*
                }
            }

            /// Reads the fields (everything but `type`) of the command called `name`.
            /// Input parsers use it with a path-tracking deserializer, so an error names
            /// the exact field; `None` when no command has that name.
            pub fn from_fields<'de, D: serde::Deserializer<'de>>(
                name: &str,
                fields: D,
            ) -> Option<Result<Command, D::Error>> {
                match name {
                    $($name => Some($variant::deserialize(fields).map(Command::$variant)),)*
                    _ => None,
                }
            }
        }
    };
}

wire_commands! {
    AdoptPolicy => "adopt_policy",
    OnboardPartner => "onboard_partner",
    ChangePartnerTier => "change_partner_tier",
    CertifyPartner => "certify_partner",
    SetTerritories => "set_territories",
    SetCapacity => "set_capacity",
    OffboardPartner => "offboard_partner",
    RecordCommissionPayout => "record_commission_payout",
    SubmitRegistration => "submit_registration",
    ApproveRegistration => "approve_registration",
    DeclineRegistration => "decline_registration",
    ExtendProtection => "extend_protection",
    WithdrawRegistration => "withdraw_registration",
    ExpireProtection => "expire_protection",
    SendExpiryReminder => "send_expiry_reminder",
    FlagInactive => "flag_inactive",
    FlagApprovalSlaBreached => "flag_approval_sla_breached",
    FlagReferralSlaBreached => "flag_referral_sla_breached",
    AppealDecision => "appeal_decision",
    DecideAppeal => "decide_appeal",
    AdvanceStage => "advance_stage",
    SetSourcingPartner => "set_sourcing_partner",
    AddInfluencer => "add_influencer",
    RemoveInfluencer => "remove_influencer",
    MarkWon => "mark_won",
    MarkLost => "mark_lost",
    RecordRevenueReversal => "record_revenue_reversal",
    ReleaseRegistration => "release_registration",
    RecordDirectOpportunity => "record_direct_opportunity",
    AcknowledgeConflict => "acknowledge_conflict",
    FlagRenewalOwnershipDue => "flag_renewal_ownership_due",
    FlagConflictSlaBreached => "flag_conflict_sla_breached",
    RecordResolutionPlan => "record_resolution_plan",
    ResolveConflict => "resolve_conflict",
    ConfirmRenewalOwnership => "confirm_renewal_ownership",
    ReassignRenewalOwnership => "reassign_renewal_ownership",
    ReassignRegistration => "reassign_registration",
    AssignNamedAccount => "assign_named_account",
    LapseCapacitySlot => "lapse_capacity_slot",
    AddNote => "add_note",
    SetNextStep => "set_next_step",
    FlagNextStepOverdue => "flag_next_step_overdue",
    RequestExtension => "request_extension",
    RequestMoreInformation => "request_more_information",
    PublishAnnouncement => "publish_announcement",
    AcknowledgeAnnouncement => "acknowledge_announcement",
    RecordAnnouncementRead => "record_announcement_read",
    ChaseAnnouncement => "chase_announcement",
    SetAlertSubscription => "set_alert_subscription",
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `NAMES` lists exactly the wire names serde knows (the derive's snake_case of each
    /// variant), so the input parser can tell an unknown command from a known one with a
    /// bad field, and `from_fields` reads each name as serde would.
    #[test]
    fn names_are_the_serde_tags() {
        for name in Command::NAMES {
            let error = serde_json::from_value::<Command>(serde_json::json!({ "type": name }))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(error.contains("missing field"), "{name}: {error}");
        }
        let unknown = serde_json::from_value::<Command>(serde_json::json!({ "type": "resale" }));
        assert!(unknown.is_err_and(|e| e.to_string().contains("unknown variant")));
        let sample = Command::SetCapacity(SetCapacity {
            partner_id: PartnerId(uuid::Uuid::nil()),
            capacity: 1,
        });
        let mut json = serde_json::to_value(&sample).unwrap_or_default();
        assert_eq!(json["type"], sample.name());
        if let Some(fields) = json.as_object_mut() {
            fields.remove("type");
        }
        let read = Command::from_fields(sample.name(), json).and_then(Result::ok);
        assert_eq!(read, Some(sample.clone()));
        assert!(Command::from_fields("resale", serde_json::json!({})).is_none());
        let mut sorted = Command::NAMES.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), Command::NAMES.len(), "a name is listed twice");
    }
}
