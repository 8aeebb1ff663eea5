//! A mirror of [`Event`]'s variants and fields, externally tagged, for the decoder in
//! [`super::tag_first`]: `Event` is internally tagged (`"type"` inside the object), and
//! serde's derive for that buffers every field of an event into its private `Content`
//! before it decodes the variant. The stored payload always has `"type"` first, so the
//! decoder reads the tag, then hands the rest of the same JSON object to this mirror's
//! variant, which reads its fields in place. `EventFields::deserialize` returns an
//! [`Event`] (serde's `remote`).
//!
//! Generated from `domain/src/event.rs` (the enum's body with its doc comments left out);
//! the serde attributes are the same. It cannot drift: the derived `Serialize` matches on
//! every variant of `Event` and names every field, and the derived `Deserialize` builds
//! each variant with every field, so a variant or field added to `Event` and not here
//! is a compile error in this file. Add it here the same way (same type, same serde
//! attributes).

use chrono::{DateTime, NaiveDate, Utc};
use dealreg_domain::attribution::Attribution;
use dealreg_domain::boundary::Boundary;
use dealreg_domain::error::RejectionCode;
use dealreg_domain::ids::{
    AccountKey, AnnouncementId, ConflictId, NoteId, OpportunityId, PartnerId, RegistrationId,
};
use dealreg_domain::money::Money;
use dealreg_domain::motion::{DealKind, Motion, Tier};
use dealreg_domain::policy::Policy;
use dealreg_domain::values::{
    Audience, ConflictKind, ConflictParty, ConflictSla, ContactOnRecord, NoteVisibility, OpenSlot,
    QuietHours, RegisteredCustomer, StageEvidence, Territory,
};
use dealreg_domain::Event;
use serde::{Deserialize, Serialize};

/// [`Event`] externally tagged: see the module's comment. Its `Serialize` is never
/// called (events are written as `Event`); it is derived for the exhaustive match.
#[derive(Serialize, Deserialize)]
#[serde(remote = "Event", rename_all = "snake_case")]
#[allow(dead_code)]
pub(super) enum EventFields {
    PolicyAdopted {
        policy: Policy,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },

    PartnerOnboarded {
        partner_id: PartnerId,
        name: String,
        motions: Vec<Motion>,
        tier: Tier,
        territories: Vec<Territory>,
        capacity: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    PartnerTierChanged {
        partner_id: PartnerId,
        from: Tier,
        to: Tier,
        reason: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    PartnerCertified {
        partner_id: PartnerId,
        product_line: String,
        expires_on: NaiveDate,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    PartnerTerritoriesSet {
        partner_id: PartnerId,
        territories: Vec<Territory>,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    PartnerCapacitySet {
        partner_id: PartnerId,
        capacity: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    PartnerOffboarded {
        partner_id: PartnerId,
        reason: String,
        open_registrations: Vec<OpenSlot>,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    CommissionPaidOut {
        partner_id: PartnerId,
        amount: Money,
        reference: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    CapacitySlotTaken {
        partner_id: PartnerId,
        registration_id: RegistrationId,
        account: AccountKey,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    CapacitySlotReleased {
        partner_id: PartnerId,
        registration_id: RegistrationId,
        account: AccountKey,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot: Option<u64>,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    CapacitySlotLapsed {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        slot: u64,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },

    RegistrationSubmitted {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        customer: RegisteredCustomer,
        product_line: String,
        motion: Motion,
        kind: DealKind,
        estimated_amount: Money,
        expected_close: NaiveDate,
        proof_of_work: String,
        certified: bool,
        incumbent: bool,
        #[serde(deserialize_with = "super::time::utc")]
        approval_due_at: DateTime<Utc>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "super::time::utc_opt"
        )]
        intro_due_at: Option<DateTime<Utc>>,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    ConflictDetected {
        account: AccountKey,
        conflict_id: ConflictId,
        kind: ConflictKind,
        product_line: String,
        parties: Vec<ConflictParty>,
        reasons: Vec<String>,
        #[serde(deserialize_with = "super::time::utc")]
        acknowledge_by: DateTime<Utc>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "super::time::utc_opt"
        )]
        resolution_plan_by: Option<DateTime<Utc>>,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    RegistrationApproved {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        rationale: String,
        protection_days: u32,
        #[serde(deserialize_with = "super::time::utc")]
        expires_at: DateTime<Utc>,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    RegistrationDeclined {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        reason_code: String,
        rationale: String,
        #[serde(deserialize_with = "super::time::utc")]
        appeal_until: DateTime<Utc>,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    ProtectionExtended {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        extension_number: u32,
        days: u32,
        #[serde(deserialize_with = "super::time::utc")]
        expires_at: DateTime<Utc>,
        reason: String,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    RegistrationWithdrawn {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        reason: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    ProtectionExpired {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        #[serde(deserialize_with = "super::time::utc")]
        expired_at: DateTime<Utc>,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    ExpiryReminderSent {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        #[serde(deserialize_with = "super::time::utc")]
        expires_at: DateTime<Utc>,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    RegistrationFlaggedInactive {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        #[serde(deserialize_with = "super::time::utc")]
        last_touch: DateTime<Utc>,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    ApprovalSlaBreached {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        #[serde(deserialize_with = "super::time::utc")]
        due_at: DateTime<Utc>,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    ReferralSlaBreached {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        #[serde(deserialize_with = "super::time::utc")]
        due_at: DateTime<Utc>,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    AppealFiled {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        evidence: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    AppealDecided {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        upheld: bool,
        rationale: String,
        #[serde(default, deserialize_with = "super::time::utc_opt")]
        approval_due_at: Option<DateTime<Utc>>,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    StageAdvanced {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        from_stage: String,
        to_stage: String,
        evidence: StageEvidence,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    SourcingPartnerSet {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        previous: Option<PartnerId>,
        actor: String,
        reason: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    InfluencerAdded {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        percent: u32,
        actor: String,
        reason: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    InfluencerRemoved {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        actor: String,
        reason: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    DealWon {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        motion: Motion,
        product_line: String,
        amount: Money,
        attribution: Attribution,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        renewal_date: Option<NaiveDate>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order_reference: Option<String>,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    RenewalOwnershipReviewDue {
        account: AccountKey,
        product_line: String,
        owner: Option<PartnerId>,
        renewal_date: NaiveDate,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    DealLost {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        reason: String,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    RevenueReversed {
        account: AccountKey,
        registration_id: RegistrationId,
        amount: Money,
        reason: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    RegistrationReleased {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        reason: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    DirectOpportunityRecorded {
        account: AccountKey,
        opportunity_id: OpportunityId,
        owner: String,
        product_line: String,
        amount: Money,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    ConflictAcknowledged {
        account: AccountKey,
        conflict_id: ConflictId,
        by: String,
        note: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    ConflictSlaBreached {
        account: AccountKey,
        conflict_id: ConflictId,
        sla: ConflictSla,
        #[serde(deserialize_with = "super::time::utc")]
        due_at: DateTime<Utc>,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    ConflictResolutionPlanRecorded {
        account: AccountKey,
        conflict_id: ConflictId,
        owner: String,
        steps: Vec<String>,
        resolve_by: NaiveDate,
        by: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    ConflictResolved {
        account: AccountKey,
        conflict_id: ConflictId,
        winner: Option<RegistrationId>,
        rationale: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    RenewalOwnershipConfirmed {
        account: AccountKey,
        product_line: String,
        partner_id: PartnerId,
        renewal_date: NaiveDate,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    RenewalOwnershipReassigned {
        account: AccountKey,
        product_line: String,
        from: Option<PartnerId>,
        to: PartnerId,
        reason: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    ConflictClosed {
        account: AccountKey,
        conflict_id: ConflictId,
        reason: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    NamedAccountAssigned {
        account: AccountKey,
        partner_id: PartnerId,
        previous: Option<PartnerId>,
        exclusive: bool,
        reason: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    RegistrationReassigned {
        account: AccountKey,
        registration_id: RegistrationId,
        from: PartnerId,
        to: PartnerId,
        reason: String,
        policy_version: u32,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },

    NoteAdded {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        note_id: NoteId,
        text: String,
        visibility: NoteVisibility,
        by: String,
        from_partner: bool,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    NextStepSet {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        text: String,
        due_on: NaiveDate,
        by: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    NextStepOverdue {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        due_on: NaiveDate,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    ExtensionRequested {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        reason: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    MoreInformationRequested {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        question: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },

    AnnouncementPublished {
        announcement_id: AnnouncementId,
        title: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy_version: Option<u32>,
        audience: Audience,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "super::time::utc_opt"
        )]
        acknowledge_by: Option<DateTime<Utc>>,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    AnnouncementRead {
        partner_id: PartnerId,
        announcement_id: AnnouncementId,
        by: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    AnnouncementAcknowledged {
        partner_id: PartnerId,
        announcement_id: AnnouncementId,
        by: String,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    AnnouncementChased {
        partner_id: PartnerId,
        announcement_id: AnnouncementId,
        #[serde(deserialize_with = "super::time::utc")]
        acknowledge_by: DateTime<Utc>,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
    AlertSubscriptionSet {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partner_id: Option<PartnerId>,
        user: String,
        recipient: ContactOnRecord,
        by_email: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slack_channel: Option<String>,
        alerts: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quiet_hours: Option<QuietHours>,
        digest: bool,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },

    CommandRejected {
        boundary: Boundary,
        command: String,
        code: RejectionCode,
        message: String,
        details: serde_json::Value,
        #[serde(deserialize_with = "super::time::utc")]
        at: DateTime<Utc>,
    },
}
