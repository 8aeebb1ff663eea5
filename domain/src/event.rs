//! Events: the immutable facts. Every variant carries `at`, the time it was decided (the
//! clock adapter's time passed in the context), and every decision records the policy
//! version it applied.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::attribution::Attribution;
use crate::boundary::Boundary;
use crate::error::RejectionCode;
use crate::ids::{
    AccountKey, AnnouncementId, ConflictId, NoteId, OpportunityId, PartnerId, RegistrationId,
};
use crate::money::Money;
use crate::motion::{DealKind, Motion, Tier};
use crate::policy::Policy;
use crate::values::{
    Audience, ConflictKind, ConflictParty, ConflictSla, ContactOnRecord, NoteVisibility, OpenSlot,
    QuietHours, RegisteredCustomer, StageEvidence, Territory,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    PolicyAdopted {
        policy: Policy,
        at: DateTime<Utc>,
    },

    PartnerOnboarded {
        partner_id: PartnerId,
        name: String,
        motions: Vec<Motion>,
        tier: Tier,
        territories: Vec<Territory>,
        capacity: u32,
        at: DateTime<Utc>,
    },
    PartnerTierChanged {
        partner_id: PartnerId,
        from: Tier,
        to: Tier,
        reason: String,
        at: DateTime<Utc>,
    },
    PartnerCertified {
        partner_id: PartnerId,
        product_line: String,
        expires_on: NaiveDate,
        at: DateTime<Utc>,
    },
    PartnerTerritoriesSet {
        partner_id: PartnerId,
        territories: Vec<Territory>,
        at: DateTime<Utc>,
    },
    PartnerCapacitySet {
        partner_id: PartnerId,
        capacity: u32,
        at: DateTime<Utc>,
    },
    /// The partner leaves; `open_registrations` are released on their accounts next.
    PartnerOffboarded {
        partner_id: PartnerId,
        reason: String,
        open_registrations: Vec<OpenSlot>,
        at: DateTime<Utc>,
    },
    /// Commission paid out to the partner; settles part of its ledger balance.
    CommissionPaidOut {
        partner_id: PartnerId,
        amount: Money,
        reference: String,
        at: DateTime<Utc>,
    },
    /// A registration counts against the partner's capacity. Taken on the partner's stream
    /// before the account records the registration (a reservation: the engine takes it at
    /// the partner stream's exact version, so capacity is never exceeded); the partner's
    /// n-th slot taken is slot n ([`crate::PartnerState::slot_of`]).
    CapacitySlotTaken {
        partner_id: PartnerId,
        registration_id: RegistrationId,
        account: AccountKey,
        at: DateTime<Utc>,
    },
    /// The slot is given back. `slot` names which one (absent in logs written before slots
    /// were numbered: whichever the registration held).
    CapacitySlotReleased {
        partner_id: PartnerId,
        registration_id: RegistrationId,
        account: AccountKey,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot: Option<u64>,
        at: DateTime<Utc>,
    },
    /// A slot taken for this registration was never used by the account (its command was
    /// interrupted between the reservation and the account's write) or is no longer backed
    /// by it: recorded on the account, at its exact version, before the slot is released, so
    /// the account can never use it afterwards.
    CapacitySlotLapsed {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        slot: u64,
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
        /// The partner's certification in the product line was valid at submission.
        certified: bool,
        /// The partner was the account's incumbent for the product line.
        incumbent: bool,
        approval_due_at: DateTime<Utc>,
        /// A referral's separate clock: the vendor creates and accepts the opportunity
        /// (the Intro Logged exit) by then. Absent for other motions and in events written
        /// before the clock existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        intro_due_at: Option<DateTime<Utc>>,
        policy_version: u32,
        at: DateTime<Utc>,
    },
    ConflictDetected {
        account: AccountKey,
        conflict_id: ConflictId,
        kind: ConflictKind,
        product_line: String,
        parties: Vec<ConflictParty>,
        reasons: Vec<String>,
        acknowledge_by: DateTime<Utc>,
        /// When the resolution plan is due (absent in events written before it was recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resolution_plan_by: Option<DateTime<Utc>>,
        policy_version: u32,
        at: DateTime<Utc>,
    },
    RegistrationApproved {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        rationale: String,
        protection_days: u32,
        expires_at: DateTime<Utc>,
        policy_version: u32,
        at: DateTime<Utc>,
    },
    RegistrationDeclined {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        reason_code: String,
        rationale: String,
        appeal_until: DateTime<Utc>,
        policy_version: u32,
        at: DateTime<Utc>,
    },
    ProtectionExtended {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        extension_number: u32,
        days: u32,
        expires_at: DateTime<Utc>,
        reason: String,
        policy_version: u32,
        at: DateTime<Utc>,
    },
    RegistrationWithdrawn {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// Protection ended: the registered partner is cleared and the product line is free.
    ProtectionExpired {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        expired_at: DateTime<Utc>,
        policy_version: u32,
        at: DateTime<Utc>,
    },
    ExpiryReminderSent {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        expires_at: DateTime<Utc>,
        policy_version: u32,
        at: DateTime<Utc>,
    },
    RegistrationFlaggedInactive {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        last_touch: DateTime<Utc>,
        policy_version: u32,
        at: DateTime<Utc>,
    },
    ApprovalSlaBreached {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        due_at: DateTime<Utc>,
        policy_version: u32,
        at: DateTime<Utc>,
    },
    /// A referral was not made an opportunity accepted by the vendor (Intro Logged left)
    /// within the referral SLA (24 h).
    ReferralSlaBreached {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        due_at: DateTime<Utc>,
        policy_version: u32,
        at: DateTime<Utc>,
    },
    AppealFiled {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        evidence: String,
        at: DateTime<Utc>,
    },
    /// An upheld appeal reinstates the registration as pending, due for a decision by `approval_due_at`.
    AppealDecided {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        upheld: bool,
        rationale: String,
        approval_due_at: Option<DateTime<Utc>>,
        policy_version: u32,
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
        at: DateTime<Utc>,
    },
    SourcingPartnerSet {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        previous: Option<PartnerId>,
        actor: String,
        reason: String,
        at: DateTime<Utc>,
    },
    InfluencerAdded {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        percent: u32,
        actor: String,
        reason: String,
        at: DateTime<Utc>,
    },
    InfluencerRemoved {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        actor: String,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The deal is won; the attribution recorded here is locked.
    DealWon {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        motion: Motion,
        product_line: String,
        amount: Money,
        attribution: Attribution,
        /// When the contract renews (win + the policy's term); absent in older events.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        renewal_date: Option<NaiveDate>,
        /// The order (reseller) or marketplace transaction the win closed with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order_reference: Option<String>,
        policy_version: u32,
        at: DateTime<Utc>,
    },
    /// Renewal ownership must be confirmed now: the renewal is 90 days (policy) away.
    RenewalOwnershipReviewDue {
        account: AccountKey,
        product_line: String,
        owner: Option<PartnerId>,
        renewal_date: NaiveDate,
        policy_version: u32,
        at: DateTime<Utc>,
    },
    DealLost {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        reason: String,
        policy_version: u32,
        at: DateTime<Utc>,
    },
    RevenueReversed {
        account: AccountKey,
        registration_id: RegistrationId,
        amount: Money,
        reason: String,
        at: DateTime<Utc>,
    },
    RegistrationReleased {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        reason: String,
        at: DateTime<Utc>,
    },
    DirectOpportunityRecorded {
        account: AccountKey,
        opportunity_id: OpportunityId,
        owner: String,
        product_line: String,
        amount: Money,
        at: DateTime<Utc>,
    },
    ConflictAcknowledged {
        account: AccountKey,
        conflict_id: ConflictId,
        by: String,
        note: String,
        at: DateTime<Utc>,
    },
    /// A conflict SLA passed without the acknowledgement or resolution plan.
    ConflictSlaBreached {
        account: AccountKey,
        conflict_id: ConflictId,
        sla: ConflictSla,
        due_at: DateTime<Utc>,
        policy_version: u32,
        at: DateTime<Utc>,
    },
    /// The conflict desk's plan: who resolves it, how, and by when. Meets the
    /// resolution-plan SLA (5 business days); the resolution itself is tracked apart.
    ConflictResolutionPlanRecorded {
        account: AccountKey,
        conflict_id: ConflictId,
        owner: String,
        steps: Vec<String>,
        resolve_by: NaiveDate,
        by: String,
        at: DateTime<Utc>,
    },
    ConflictResolved {
        account: AccountKey,
        conflict_id: ConflictId,
        winner: Option<RegistrationId>,
        rationale: String,
        at: DateTime<Utc>,
    },
    RenewalOwnershipConfirmed {
        account: AccountKey,
        product_line: String,
        partner_id: PartnerId,
        renewal_date: NaiveDate,
        policy_version: u32,
        at: DateTime<Utc>,
    },
    RenewalOwnershipReassigned {
        account: AccountKey,
        product_line: String,
        from: Option<PartnerId>,
        to: PartnerId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// A conflict ended by itself: fewer than two of its parties are still live (the
    /// others expired, were won, lost, withdrawn, declined or released). `reason` says
    /// which registration's close settled it.
    ConflictClosed {
        account: AccountKey,
        conflict_id: ConflictId,
        reason: String,
        at: DateTime<Utc>,
    },
    /// The customer is a named account of `partner_id`; `exclusive` means no other
    /// partner may register deals on it.
    NamedAccountAssigned {
        account: AccountKey,
        partner_id: PartnerId,
        previous: Option<PartnerId>,
        exclusive: bool,
        reason: String,
        at: DateTime<Utc>,
    },
    /// A registration moved to another partner (after inactivity, or an offboarding's
    /// transfer): the new owner works the deal and holds its capacity slot.
    RegistrationReassigned {
        account: AccountKey,
        registration_id: RegistrationId,
        from: PartnerId,
        to: PartnerId,
        reason: String,
        policy_version: u32,
        at: DateTime<Utc>,
    },

    /// A note on a registration; `internal` ones are the vendor's only.
    NoteAdded {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        note_id: NoteId,
        text: String,
        visibility: NoteVisibility,
        by: String,
        /// Written by a user of the owning partner (else by the vendor).
        from_partner: bool,
        at: DateTime<Utc>,
    },
    NextStepSet {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        text: String,
        due_on: NaiveDate,
        by: String,
        at: DateTime<Utc>,
    },
    /// The next step's day passed without a new one (well before the inactivity rule).
    NextStepOverdue {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        due_on: NaiveDate,
        at: DateTime<Utc>,
    },
    ExtensionRequested {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        reason: String,
        at: DateTime<Utc>,
    },
    MoreInformationRequested {
        account: AccountKey,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        question: String,
        at: DateTime<Utc>,
    },

    AnnouncementPublished {
        announcement_id: AnnouncementId,
        title: String,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy_version: Option<u32>,
        audience: Audience,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        acknowledge_by: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    AnnouncementRead {
        partner_id: PartnerId,
        announcement_id: AnnouncementId,
        by: String,
        at: DateTime<Utc>,
    },
    AnnouncementAcknowledged {
        partner_id: PartnerId,
        announcement_id: AnnouncementId,
        by: String,
        at: DateTime<Utc>,
    },
    AnnouncementChased {
        partner_id: PartnerId,
        announcement_id: AnnouncementId,
        acknowledge_by: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// A person's alert subscription; `recipient` is sealed like a registration's contact.
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
        at: DateTime<Utc>,
    },

    /// A refused command, recorded by the engine so every attempt is in the log.
    CommandRejected {
        boundary: Boundary,
        command: String,
        code: RejectionCode,
        message: String,
        details: serde_json::Value,
        at: DateTime<Utc>,
    },
}

impl Event {
    /// When the event was decided (the clock adapter's time of its command).
    pub fn at(&self) -> DateTime<Utc> {
        use Event::*;
        match self {
            PolicyAdopted { at, .. }
            | PartnerOnboarded { at, .. }
            | PartnerTierChanged { at, .. }
            | PartnerCertified { at, .. }
            | PartnerTerritoriesSet { at, .. }
            | PartnerCapacitySet { at, .. }
            | PartnerOffboarded { at, .. }
            | CommissionPaidOut { at, .. }
            | CapacitySlotTaken { at, .. }
            | CapacitySlotReleased { at, .. }
            | CapacitySlotLapsed { at, .. }
            | RegistrationSubmitted { at, .. }
            | ConflictDetected { at, .. }
            | RegistrationApproved { at, .. }
            | RegistrationDeclined { at, .. }
            | ProtectionExtended { at, .. }
            | RegistrationWithdrawn { at, .. }
            | ProtectionExpired { at, .. }
            | ExpiryReminderSent { at, .. }
            | RegistrationFlaggedInactive { at, .. }
            | ApprovalSlaBreached { at, .. }
            | ReferralSlaBreached { at, .. }
            | AppealFiled { at, .. }
            | AppealDecided { at, .. }
            | StageAdvanced { at, .. }
            | SourcingPartnerSet { at, .. }
            | InfluencerAdded { at, .. }
            | InfluencerRemoved { at, .. }
            | DealWon { at, .. }
            | RenewalOwnershipReviewDue { at, .. }
            | DealLost { at, .. }
            | RevenueReversed { at, .. }
            | RegistrationReleased { at, .. }
            | DirectOpportunityRecorded { at, .. }
            | ConflictAcknowledged { at, .. }
            | ConflictSlaBreached { at, .. }
            | ConflictResolved { at, .. }
            | ConflictResolutionPlanRecorded { at, .. }
            | RenewalOwnershipConfirmed { at, .. }
            | RenewalOwnershipReassigned { at, .. }
            | ConflictClosed { at, .. }
            | NamedAccountAssigned { at, .. }
            | RegistrationReassigned { at, .. }
            | NoteAdded { at, .. }
            | NextStepSet { at, .. }
            | NextStepOverdue { at, .. }
            | ExtensionRequested { at, .. }
            | MoreInformationRequested { at, .. }
            | AnnouncementPublished { at, .. }
            | AnnouncementRead { at, .. }
            | AnnouncementAcknowledged { at, .. }
            | AnnouncementChased { at, .. }
            | AlertSubscriptionSet { at, .. }
            | CommandRejected { at, .. } => *at,
        }
    }
    /// The stream this event belongs to.
    pub fn boundary(&self) -> Boundary {
        use Event::*;
        match self {
            PolicyAdopted { .. } | AnnouncementPublished { .. } => Boundary::Program,
            AlertSubscriptionSet { partner_id, .. } => match partner_id {
                Some(id) => Boundary::Partner(*id),
                None => Boundary::Program,
            },
            AnnouncementRead { partner_id, .. }
            | AnnouncementAcknowledged { partner_id, .. }
            | AnnouncementChased { partner_id, .. } => Boundary::Partner(*partner_id),
            PartnerOnboarded { partner_id, .. }
            | PartnerTierChanged { partner_id, .. }
            | PartnerCertified { partner_id, .. }
            | PartnerTerritoriesSet { partner_id, .. }
            | PartnerCapacitySet { partner_id, .. }
            | PartnerOffboarded { partner_id, .. }
            | CommissionPaidOut { partner_id, .. }
            | CapacitySlotTaken { partner_id, .. }
            | CapacitySlotReleased { partner_id, .. } => Boundary::Partner(*partner_id),
            RegistrationSubmitted { account, .. }
            | CapacitySlotLapsed { account, .. }
            | ConflictDetected { account, .. }
            | RegistrationApproved { account, .. }
            | RegistrationDeclined { account, .. }
            | ProtectionExtended { account, .. }
            | RegistrationWithdrawn { account, .. }
            | ProtectionExpired { account, .. }
            | ExpiryReminderSent { account, .. }
            | RegistrationFlaggedInactive { account, .. }
            | ApprovalSlaBreached { account, .. }
            | ReferralSlaBreached { account, .. }
            | AppealFiled { account, .. }
            | AppealDecided { account, .. }
            | StageAdvanced { account, .. }
            | SourcingPartnerSet { account, .. }
            | InfluencerAdded { account, .. }
            | InfluencerRemoved { account, .. }
            | DealWon { account, .. }
            | DealLost { account, .. }
            | RevenueReversed { account, .. }
            | RegistrationReleased { account, .. }
            | DirectOpportunityRecorded { account, .. }
            | ConflictAcknowledged { account, .. }
            | ConflictResolved { account, .. }
            | ConflictResolutionPlanRecorded { account, .. }
            | ConflictSlaBreached { account, .. }
            | RenewalOwnershipConfirmed { account, .. }
            | RenewalOwnershipReassigned { account, .. }
            | RenewalOwnershipReviewDue { account, .. }
            | ConflictClosed { account, .. }
            | NamedAccountAssigned { account, .. }
            | RegistrationReassigned { account, .. }
            | NoteAdded { account, .. }
            | NextStepSet { account, .. }
            | NextStepOverdue { account, .. }
            | ExtensionRequested { account, .. }
            | MoreInformationRequested { account, .. } => Boundary::Account(account.clone()),
            CommandRejected { boundary, .. } => boundary.clone(),
        }
    }

    /// The event's wire name (its `type` tag).
    pub fn event_type(&self) -> &'static str {
        use Event::*;
        match self {
            PolicyAdopted { .. } => "policy_adopted",
            PartnerOnboarded { .. } => "partner_onboarded",
            PartnerTierChanged { .. } => "partner_tier_changed",
            PartnerCertified { .. } => "partner_certified",
            PartnerTerritoriesSet { .. } => "partner_territories_set",
            PartnerCapacitySet { .. } => "partner_capacity_set",
            PartnerOffboarded { .. } => "partner_offboarded",
            CommissionPaidOut { .. } => "commission_paid_out",
            CapacitySlotTaken { .. } => "capacity_slot_taken",
            CapacitySlotReleased { .. } => "capacity_slot_released",
            CapacitySlotLapsed { .. } => "capacity_slot_lapsed",
            RegistrationSubmitted { .. } => "registration_submitted",
            ConflictDetected { .. } => "conflict_detected",
            RegistrationApproved { .. } => "registration_approved",
            RegistrationDeclined { .. } => "registration_declined",
            ProtectionExtended { .. } => "protection_extended",
            RegistrationWithdrawn { .. } => "registration_withdrawn",
            ProtectionExpired { .. } => "protection_expired",
            ExpiryReminderSent { .. } => "expiry_reminder_sent",
            RegistrationFlaggedInactive { .. } => "registration_flagged_inactive",
            ApprovalSlaBreached { .. } => "approval_sla_breached",
            ReferralSlaBreached { .. } => "referral_sla_breached",
            AppealFiled { .. } => "appeal_filed",
            AppealDecided { .. } => "appeal_decided",
            StageAdvanced { .. } => "stage_advanced",
            SourcingPartnerSet { .. } => "sourcing_partner_set",
            InfluencerAdded { .. } => "influencer_added",
            InfluencerRemoved { .. } => "influencer_removed",
            DealWon { .. } => "deal_won",
            DealLost { .. } => "deal_lost",
            RenewalOwnershipReviewDue { .. } => "renewal_ownership_review_due",
            RevenueReversed { .. } => "revenue_reversed",
            RegistrationReleased { .. } => "registration_released",
            DirectOpportunityRecorded { .. } => "direct_opportunity_recorded",
            ConflictAcknowledged { .. } => "conflict_acknowledged",
            ConflictResolved { .. } => "conflict_resolved",
            ConflictResolutionPlanRecorded { .. } => "conflict_resolution_plan_recorded",
            ConflictSlaBreached { .. } => "conflict_sla_breached",
            RenewalOwnershipConfirmed { .. } => "renewal_ownership_confirmed",
            RenewalOwnershipReassigned { .. } => "renewal_ownership_reassigned",
            ConflictClosed { .. } => "conflict_closed",
            NamedAccountAssigned { .. } => "named_account_assigned",
            RegistrationReassigned { .. } => "registration_reassigned",
            NoteAdded { .. } => "note_added",
            NextStepSet { .. } => "next_step_set",
            NextStepOverdue { .. } => "next_step_overdue",
            ExtensionRequested { .. } => "extension_requested",
            MoreInformationRequested { .. } => "more_information_requested",
            AnnouncementPublished { .. } => "announcement_published",
            AnnouncementRead { .. } => "announcement_read",
            AnnouncementAcknowledged { .. } => "announcement_acknowledged",
            AnnouncementChased { .. } => "announcement_chased",
            AlertSubscriptionSet { .. } => "alert_subscription_set",
            CommandRejected { .. } => "command_rejected",
        }
    }
}

impl Event {
    /// The personal contact the event records, if any: a registration's customer contact,
    /// an alert subscription's recipient. What the engine seals, `forget` erases and a
    /// reader reveals.
    pub fn contact(&self) -> Option<&ContactOnRecord> {
        match self {
            Event::RegistrationSubmitted { customer, .. } => Some(&customer.contact),
            Event::AlertSubscriptionSet { recipient, .. } => Some(recipient),
            _ => None,
        }
    }

    /// [`Event::contact`], to seal, reveal or erase it in place.
    pub fn contact_mut(&mut self) -> Option<&mut ContactOnRecord> {
        match self {
            Event::RegistrationSubmitted { customer, .. } => Some(&mut customer.contact),
            Event::AlertSubscriptionSet { recipient, .. } => Some(recipient),
            _ => None,
        }
    }
}
