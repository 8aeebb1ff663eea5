//! Commands: what actors ask for. Each names its boundary; the decision may refuse it.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::boundary::Boundary;
use crate::error::DomainError;
use crate::event::ConflictSla;
use crate::ids::{AccountKey, ConflictId, OpportunityId, PartnerId, RegistrationId};
use crate::money::Money;
use crate::motion::{DealKind, Motion, Tier};
use crate::partner::Territory;
use crate::policy::Policy;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    pub email: String,
}

/// The end customer as the partner registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub company: String,
    pub domain: String,
    pub contact: Contact,
}

/// Evidence that a stage's exit criteria are met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StageEvidence {
    #[serde(default)]
    pub note: String,
    /// The quoted discount, whole percent (Configure & Quote).
    #[serde(default)]
    pub discount_percent: Option<u32>,
    #[serde(default)]
    pub next_step: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    // ---- program ----
    AdoptPolicy {
        policy: Policy,
    },

    // ---- partners ----
    OnboardPartner {
        partner_id: PartnerId,
        name: String,
        motions: Vec<Motion>,
        tier: Tier,
        territories: Vec<Territory>,
        capacity: u32,
    },
    ChangePartnerTier {
        partner_id: PartnerId,
        tier: Tier,
        reason: String,
    },
    CertifyPartner {
        partner_id: PartnerId,
        product_line: String,
        expires_on: NaiveDate,
    },
    SetTerritories {
        partner_id: PartnerId,
        territories: Vec<Territory>,
    },
    SetCapacity {
        partner_id: PartnerId,
        capacity: u32,
    },
    OffboardPartner {
        partner_id: PartnerId,
        reason: String,
    },
    /// Finance paid a partner from its commission balance (`reference`: the payment's id).
    RecordCommissionPayout {
        partner_id: PartnerId,
        amount: Money,
        reference: String,
    },

    // ---- registrations on an account ----
    SubmitRegistration {
        registration_id: RegistrationId,
        partner_id: PartnerId,
        customer: Customer,
        product_line: String,
        motion: Motion,
        estimated_amount: Money,
        expected_close: NaiveDate,
        proof_of_work: String,
        #[serde(default)]
        kind: DealKind,
    },
    ApproveRegistration {
        account: String,
        registration_id: RegistrationId,
        rationale: String,
    },
    DeclineRegistration {
        account: String,
        registration_id: RegistrationId,
        reason_code: String,
        rationale: String,
    },
    ExtendProtection {
        account: String,
        registration_id: RegistrationId,
        reason: String,
    },
    WithdrawRegistration {
        account: String,
        registration_id: RegistrationId,
        reason: String,
    },
    ExpireProtection {
        account: String,
        registration_id: RegistrationId,
    },
    SendExpiryReminder {
        account: String,
        registration_id: RegistrationId,
    },
    FlagInactive {
        account: String,
        registration_id: RegistrationId,
    },
    FlagApprovalSlaBreached {
        account: String,
        registration_id: RegistrationId,
    },
    AppealDecision {
        account: String,
        registration_id: RegistrationId,
        evidence: String,
    },
    DecideAppeal {
        account: String,
        registration_id: RegistrationId,
        upheld: bool,
        rationale: String,
    },
    AdvanceStage {
        account: String,
        registration_id: RegistrationId,
        to_stage: String,
        #[serde(default)]
        evidence: StageEvidence,
    },
    SetSourcingPartner {
        account: String,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        reason: String,
    },
    AddInfluencer {
        account: String,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        percent: u32,
        reason: String,
    },
    RemoveInfluencer {
        account: String,
        registration_id: RegistrationId,
        partner_id: PartnerId,
        reason: String,
    },
    MarkWon {
        account: String,
        registration_id: RegistrationId,
        amount: Money,
    },
    MarkLost {
        account: String,
        registration_id: RegistrationId,
        reason: String,
    },
    RecordRevenueReversal {
        account: String,
        registration_id: RegistrationId,
        amount: Money,
        reason: String,
    },
    ReleaseRegistration {
        account: String,
        registration_id: RegistrationId,
        reason: String,
    },
    RecordDirectOpportunity {
        account: String,
        opportunity_id: OpportunityId,
        owner: String,
        product_line: String,
        amount: Money,
    },
    AcknowledgeConflict {
        account: String,
        conflict_id: ConflictId,
        #[serde(default)]
        note: String,
    },
    /// The timekeeper's: a product line's renewal is within the confirmation lead time.
    FlagRenewalOwnershipDue {
        account: String,
        product_line: String,
    },
    /// The timekeeper's: a conflict SLA fell due unmet.
    FlagConflictSlaBreached {
        account: String,
        conflict_id: ConflictId,
        sla: ConflictSla,
    },
    ResolveConflict {
        account: String,
        conflict_id: ConflictId,
        #[serde(default)]
        winner: Option<RegistrationId>,
        rationale: String,
    },
    ConfirmRenewalOwnership {
        account: String,
        product_line: String,
        renewal_date: NaiveDate,
    },
    ReassignRenewalOwnership {
        account: String,
        product_line: String,
        to_partner: PartnerId,
        reason: String,
    },
}

impl Command {
    /// The boundary (stream) this command is decided in.
    pub fn boundary(&self) -> Result<Boundary, DomainError> {
        use Command::*;
        let account = |raw: &str| AccountKey::from_domain(raw).map(Boundary::Account);
        match self {
            AdoptPolicy { .. } => Ok(Boundary::Program),
            OnboardPartner { partner_id, .. }
            | ChangePartnerTier { partner_id, .. }
            | CertifyPartner { partner_id, .. }
            | SetTerritories { partner_id, .. }
            | SetCapacity { partner_id, .. }
            | OffboardPartner { partner_id, .. }
            | RecordCommissionPayout { partner_id, .. } => Ok(Boundary::Partner(*partner_id)),
            SubmitRegistration { customer, .. } => account(&customer.domain),
            ApproveRegistration { account: a, .. }
            | DeclineRegistration { account: a, .. }
            | ExtendProtection { account: a, .. }
            | WithdrawRegistration { account: a, .. }
            | ExpireProtection { account: a, .. }
            | SendExpiryReminder { account: a, .. }
            | FlagInactive { account: a, .. }
            | FlagApprovalSlaBreached { account: a, .. }
            | AppealDecision { account: a, .. }
            | DecideAppeal { account: a, .. }
            | AdvanceStage { account: a, .. }
            | SetSourcingPartner { account: a, .. }
            | AddInfluencer { account: a, .. }
            | RemoveInfluencer { account: a, .. }
            | MarkWon { account: a, .. }
            | MarkLost { account: a, .. }
            | RecordRevenueReversal { account: a, .. }
            | ReleaseRegistration { account: a, .. }
            | RecordDirectOpportunity { account: a, .. }
            | AcknowledgeConflict { account: a, .. }
            | FlagConflictSlaBreached { account: a, .. }
            | FlagRenewalOwnershipDue { account: a, .. }
            | ResolveConflict { account: a, .. }
            | ConfirmRenewalOwnership { account: a, .. }
            | ReassignRenewalOwnership { account: a, .. } => account(a),
        }
    }

    /// The command's wire name (its `type` tag).
    pub fn name(&self) -> &'static str {
        use Command::*;
        match self {
            AdoptPolicy { .. } => "adopt_policy",
            OnboardPartner { .. } => "onboard_partner",
            ChangePartnerTier { .. } => "change_partner_tier",
            CertifyPartner { .. } => "certify_partner",
            SetTerritories { .. } => "set_territories",
            SetCapacity { .. } => "set_capacity",
            OffboardPartner { .. } => "offboard_partner",
            RecordCommissionPayout { .. } => "record_commission_payout",
            SubmitRegistration { .. } => "submit_registration",
            ApproveRegistration { .. } => "approve_registration",
            DeclineRegistration { .. } => "decline_registration",
            ExtendProtection { .. } => "extend_protection",
            WithdrawRegistration { .. } => "withdraw_registration",
            ExpireProtection { .. } => "expire_protection",
            SendExpiryReminder { .. } => "send_expiry_reminder",
            FlagInactive { .. } => "flag_inactive",
            FlagApprovalSlaBreached { .. } => "flag_approval_sla_breached",
            AppealDecision { .. } => "appeal_decision",
            DecideAppeal { .. } => "decide_appeal",
            AdvanceStage { .. } => "advance_stage",
            SetSourcingPartner { .. } => "set_sourcing_partner",
            AddInfluencer { .. } => "add_influencer",
            RemoveInfluencer { .. } => "remove_influencer",
            MarkWon { .. } => "mark_won",
            MarkLost { .. } => "mark_lost",
            RecordRevenueReversal { .. } => "record_revenue_reversal",
            ReleaseRegistration { .. } => "release_registration",
            RecordDirectOpportunity { .. } => "record_direct_opportunity",
            AcknowledgeConflict { .. } => "acknowledge_conflict",
            ResolveConflict { .. } => "resolve_conflict",
            FlagConflictSlaBreached { .. } => "flag_conflict_sla_breached",
            FlagRenewalOwnershipDue { .. } => "flag_renewal_ownership_due",
            ConfirmRenewalOwnership { .. } => "confirm_renewal_ownership",
            ReassignRenewalOwnership { .. } => "reassign_renewal_ownership",
        }
    }

    /// The registration the command is about, if any.
    pub fn registration_id(&self) -> Option<RegistrationId> {
        use Command::*;
        match self {
            SubmitRegistration {
                registration_id, ..
            }
            | ApproveRegistration {
                registration_id, ..
            }
            | DeclineRegistration {
                registration_id, ..
            }
            | ExtendProtection {
                registration_id, ..
            }
            | WithdrawRegistration {
                registration_id, ..
            }
            | ExpireProtection {
                registration_id, ..
            }
            | SendExpiryReminder {
                registration_id, ..
            }
            | FlagInactive {
                registration_id, ..
            }
            | FlagApprovalSlaBreached {
                registration_id, ..
            }
            | AppealDecision {
                registration_id, ..
            }
            | DecideAppeal {
                registration_id, ..
            }
            | AdvanceStage {
                registration_id, ..
            }
            | SetSourcingPartner {
                registration_id, ..
            }
            | AddInfluencer {
                registration_id, ..
            }
            | RemoveInfluencer {
                registration_id, ..
            }
            | MarkWon {
                registration_id, ..
            }
            | MarkLost {
                registration_id, ..
            }
            | RecordRevenueReversal {
                registration_id, ..
            }
            | ReleaseRegistration {
                registration_id, ..
            } => Some(*registration_id),
            _ => None,
        }
    }
}
