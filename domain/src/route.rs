//! Where each command is decided: its boundary, and on the account its concern.
//!
//! Why one routing table: [`Command::route`] is the only match over every command. Each
//! decider then matches *its own* concern's enum exhaustively, so a new command cannot
//! compile until it is routed, and a decider cannot forget one of its commands.

use crate::boundary::Boundary;
use crate::command::*;
use crate::error::DomainError;
use crate::ids::{AccountKey, PartnerId, RegistrationId};

/// A command with the boundary it belongs to.
#[derive(Debug, Clone, Copy)]
pub enum Route<'c> {
    Program(ProgramCommand<'c>),
    Partner(PartnerId, PartnerCommand<'c>),
    /// The account as the caller spelled it (a domain, URL or e-mail address).
    Account(&'c str, AccountCommand<'c>),
}

#[derive(Debug, Clone, Copy)]
pub enum ProgramCommand<'c> {
    AdoptPolicy(&'c AdoptPolicy),
    PublishAnnouncement(&'c PublishAnnouncement),
    /// A vendor user's alert subscription.
    SetAlertSubscription(&'c SetAlertSubscription),
}

#[derive(Debug, Clone, Copy)]
pub enum PartnerCommand<'c> {
    Onboard(&'c OnboardPartner),
    ChangeTier(&'c ChangePartnerTier),
    Certify(&'c CertifyPartner),
    SetTerritories(&'c SetTerritories),
    SetCapacity(&'c SetCapacity),
    Offboard(&'c OffboardPartner),
    RecordPayout(&'c RecordCommissionPayout),
    AcknowledgeAnnouncement(&'c AcknowledgeAnnouncement),
    RecordAnnouncementRead(&'c RecordAnnouncementRead),
    ChaseAnnouncement(&'c ChaseAnnouncement),
    /// A partner user's alert subscription.
    SetAlertSubscription(&'c SetAlertSubscription),
}

/// The account boundary's commands, by concern.
#[derive(Debug, Clone, Copy)]
pub enum AccountCommand<'c> {
    Submission(&'c SubmitRegistration),
    Review(ReviewCommand<'c>),
    Protection(ProtectionCommand<'c>),
    Deal(DealCommand<'c>),
    Attribution(AttributionCommand<'c>),
    Conflict(ConflictCommand<'c>),
    Renewal(RenewalCommand<'c>),
    Engagement(EngagementCommand<'c>),
    /// Capacity slots the account does not back.
    LapseSlot(&'c LapseCapacitySlot),
}

/// The vendor's decision on a registration, and the appeal against it.
#[derive(Debug, Clone, Copy)]
pub enum ReviewCommand<'c> {
    Approve(&'c ApproveRegistration),
    Decline(&'c DeclineRegistration),
    FlagSlaBreached(&'c FlagApprovalSlaBreached),
    /// The referral's own clock: referral to an accepted opportunity (Intro Logged).
    FlagReferralSlaBreached(&'c FlagReferralSlaBreached),
    Appeal(&'c AppealDecision),
    DecideAppeal(&'c DecideAppeal),
}

/// The protection window: extensions, the reminder, expiry, inactivity.
#[derive(Debug, Clone, Copy)]
pub enum ProtectionCommand<'c> {
    Extend(&'c ExtendProtection),
    Expire(&'c ExpireProtection),
    Remind(&'c SendExpiryReminder),
    FlagInactive(&'c FlagInactive),
    /// Inactive registrations "may be reassigned" (docs/RULES.md 7).
    Reassign(&'c ReassignRegistration),
}

/// The deal's stages and how it ends.
#[derive(Debug, Clone, Copy)]
pub enum DealCommand<'c> {
    AdvanceStage(&'c AdvanceStage),
    Won(&'c MarkWon),
    Lost(&'c MarkLost),
    RevenueReversal(&'c RecordRevenueReversal),
    Withdraw(&'c WithdrawRegistration),
    Release(&'c ReleaseRegistration),
}

/// Who gets credit: the sourcing partner and influencers.
#[derive(Debug, Clone, Copy)]
pub enum AttributionCommand<'c> {
    SetSourcing(&'c SetSourcingPartner),
    AddInfluencer(&'c AddInfluencer),
    RemoveInfluencer(&'c RemoveInfluencer),
}

/// Channel conflicts: direct sales on the account, and the conflict desk's work.
#[derive(Debug, Clone, Copy)]
pub enum ConflictCommand<'c> {
    RecordDirectOpportunity(&'c RecordDirectOpportunity),
    Acknowledge(&'c AcknowledgeConflict),
    FlagSlaBreached(&'c FlagConflictSlaBreached),
    RecordPlan(&'c RecordResolutionPlan),
    Resolve(&'c ResolveConflict),
    AssignNamedAccount(&'c AssignNamedAccount),
}

/// The work on a deal between partner and vendor: notes, next steps, requests.
#[derive(Debug, Clone, Copy)]
pub enum EngagementCommand<'c> {
    AddNote(&'c AddNote),
    SetNextStep(&'c SetNextStep),
    FlagNextStepOverdue(&'c FlagNextStepOverdue),
    RequestExtension(&'c RequestExtension),
    RequestMoreInformation(&'c RequestMoreInformation),
}

/// Who owns a product line's renewal.
#[derive(Debug, Clone, Copy)]
pub enum RenewalCommand<'c> {
    FlagReviewDue(&'c FlagRenewalOwnershipDue),
    Confirm(&'c ConfirmRenewalOwnership),
    Reassign(&'c ReassignRenewalOwnership),
}

impl Command {
    /// The one routing table: the boundary and concern of every command.
    pub fn route(&self) -> Route<'_> {
        use AccountCommand as A;
        use Command as C;
        match self {
            C::AdoptPolicy(c) => Route::Program(ProgramCommand::AdoptPolicy(c)),
            C::PublishAnnouncement(c) => Route::Program(ProgramCommand::PublishAnnouncement(c)),
            C::SetAlertSubscription(c) => match c.partner_id {
                Some(id) => Route::Partner(id, PartnerCommand::SetAlertSubscription(c)),
                None => Route::Program(ProgramCommand::SetAlertSubscription(c)),
            },
            C::AcknowledgeAnnouncement(c) => {
                Route::Partner(c.partner_id, PartnerCommand::AcknowledgeAnnouncement(c))
            }
            C::RecordAnnouncementRead(c) => {
                Route::Partner(c.partner_id, PartnerCommand::RecordAnnouncementRead(c))
            }
            C::ChaseAnnouncement(c) => {
                Route::Partner(c.partner_id, PartnerCommand::ChaseAnnouncement(c))
            }
            C::AddNote(c) => {
                Route::Account(&c.account, A::Engagement(EngagementCommand::AddNote(c)))
            }
            C::SetNextStep(c) => {
                Route::Account(&c.account, A::Engagement(EngagementCommand::SetNextStep(c)))
            }
            C::FlagNextStepOverdue(c) => Route::Account(
                &c.account,
                A::Engagement(EngagementCommand::FlagNextStepOverdue(c)),
            ),
            C::RequestExtension(c) => Route::Account(
                &c.account,
                A::Engagement(EngagementCommand::RequestExtension(c)),
            ),
            C::RequestMoreInformation(c) => Route::Account(
                &c.account,
                A::Engagement(EngagementCommand::RequestMoreInformation(c)),
            ),

            C::OnboardPartner(c) => Route::Partner(c.partner_id, PartnerCommand::Onboard(c)),
            C::ChangePartnerTier(c) => Route::Partner(c.partner_id, PartnerCommand::ChangeTier(c)),
            C::CertifyPartner(c) => Route::Partner(c.partner_id, PartnerCommand::Certify(c)),
            C::SetTerritories(c) => Route::Partner(c.partner_id, PartnerCommand::SetTerritories(c)),
            C::SetCapacity(c) => Route::Partner(c.partner_id, PartnerCommand::SetCapacity(c)),
            C::OffboardPartner(c) => Route::Partner(c.partner_id, PartnerCommand::Offboard(c)),
            C::RecordCommissionPayout(c) => {
                Route::Partner(c.partner_id, PartnerCommand::RecordPayout(c))
            }

            C::SubmitRegistration(c) => Route::Account(&c.customer.domain, A::Submission(c)),

            C::ApproveRegistration(c) => {
                Route::Account(&c.account, A::Review(ReviewCommand::Approve(c)))
            }
            C::DeclineRegistration(c) => {
                Route::Account(&c.account, A::Review(ReviewCommand::Decline(c)))
            }
            C::FlagApprovalSlaBreached(c) => {
                Route::Account(&c.account, A::Review(ReviewCommand::FlagSlaBreached(c)))
            }
            C::FlagReferralSlaBreached(c) => Route::Account(
                &c.account,
                A::Review(ReviewCommand::FlagReferralSlaBreached(c)),
            ),
            C::AppealDecision(c) => Route::Account(&c.account, A::Review(ReviewCommand::Appeal(c))),
            C::DecideAppeal(c) => {
                Route::Account(&c.account, A::Review(ReviewCommand::DecideAppeal(c)))
            }

            C::ExtendProtection(c) => {
                Route::Account(&c.account, A::Protection(ProtectionCommand::Extend(c)))
            }
            C::ExpireProtection(c) => {
                Route::Account(&c.account, A::Protection(ProtectionCommand::Expire(c)))
            }
            C::SendExpiryReminder(c) => {
                Route::Account(&c.account, A::Protection(ProtectionCommand::Remind(c)))
            }
            C::FlagInactive(c) => Route::Account(
                &c.account,
                A::Protection(ProtectionCommand::FlagInactive(c)),
            ),

            C::AdvanceStage(c) => Route::Account(&c.account, A::Deal(DealCommand::AdvanceStage(c))),
            C::MarkWon(c) => Route::Account(&c.account, A::Deal(DealCommand::Won(c))),
            C::MarkLost(c) => Route::Account(&c.account, A::Deal(DealCommand::Lost(c))),
            C::RecordRevenueReversal(c) => {
                Route::Account(&c.account, A::Deal(DealCommand::RevenueReversal(c)))
            }
            C::WithdrawRegistration(c) => {
                Route::Account(&c.account, A::Deal(DealCommand::Withdraw(c)))
            }
            C::ReleaseRegistration(c) => {
                Route::Account(&c.account, A::Deal(DealCommand::Release(c)))
            }

            C::SetSourcingPartner(c) => Route::Account(
                &c.account,
                A::Attribution(AttributionCommand::SetSourcing(c)),
            ),
            C::AddInfluencer(c) => Route::Account(
                &c.account,
                A::Attribution(AttributionCommand::AddInfluencer(c)),
            ),
            C::RemoveInfluencer(c) => Route::Account(
                &c.account,
                A::Attribution(AttributionCommand::RemoveInfluencer(c)),
            ),

            C::RecordDirectOpportunity(c) => Route::Account(
                &c.account,
                A::Conflict(ConflictCommand::RecordDirectOpportunity(c)),
            ),
            C::AcknowledgeConflict(c) => {
                Route::Account(&c.account, A::Conflict(ConflictCommand::Acknowledge(c)))
            }
            C::FlagConflictSlaBreached(c) => {
                Route::Account(&c.account, A::Conflict(ConflictCommand::FlagSlaBreached(c)))
            }
            C::RecordResolutionPlan(c) => {
                Route::Account(&c.account, A::Conflict(ConflictCommand::RecordPlan(c)))
            }
            C::ResolveConflict(c) => {
                Route::Account(&c.account, A::Conflict(ConflictCommand::Resolve(c)))
            }
            C::AssignNamedAccount(c) => Route::Account(
                &c.account,
                A::Conflict(ConflictCommand::AssignNamedAccount(c)),
            ),
            C::ReassignRegistration(c) => {
                Route::Account(&c.account, A::Protection(ProtectionCommand::Reassign(c)))
            }
            C::LapseCapacitySlot(c) => Route::Account(&c.account, A::LapseSlot(c)),

            C::FlagRenewalOwnershipDue(c) => {
                Route::Account(&c.account, A::Renewal(RenewalCommand::FlagReviewDue(c)))
            }
            C::ConfirmRenewalOwnership(c) => {
                Route::Account(&c.account, A::Renewal(RenewalCommand::Confirm(c)))
            }
            C::ReassignRenewalOwnership(c) => {
                Route::Account(&c.account, A::Renewal(RenewalCommand::Reassign(c)))
            }
        }
    }

    /// The boundary (stream) this command is decided in. Fails when the account the
    /// command names is not a valid customer domain.
    pub fn boundary(&self) -> Result<Boundary, DomainError> {
        match self.route() {
            Route::Program(_) => Ok(Boundary::Program),
            Route::Partner(id, _) => Ok(Boundary::Partner(id)),
            Route::Account(raw, _) => AccountKey::from_domain(raw).map(Boundary::Account),
        }
    }

    /// The registration the command is about, if any.
    pub fn registration_id(&self) -> Option<RegistrationId> {
        match self.route() {
            Route::Account(_, command) => command.registration_id(),
            Route::Program(_) | Route::Partner(..) => None,
        }
    }
}

impl AccountCommand<'_> {
    /// The registration the command is about (none for conflict-desk and renewal commands).
    pub fn registration_id(&self) -> Option<RegistrationId> {
        match *self {
            AccountCommand::Submission(c) => Some(c.registration_id),
            AccountCommand::Review(r) => Some(match r {
                ReviewCommand::Approve(c) => c.registration_id,
                ReviewCommand::Decline(c) => c.registration_id,
                ReviewCommand::FlagSlaBreached(c) => c.registration_id,
                ReviewCommand::FlagReferralSlaBreached(c) => c.registration_id,
                ReviewCommand::Appeal(c) => c.registration_id,
                ReviewCommand::DecideAppeal(c) => c.registration_id,
            }),
            AccountCommand::Protection(p) => Some(match p {
                ProtectionCommand::Extend(c) => c.registration_id,
                ProtectionCommand::Expire(c) => c.registration_id,
                ProtectionCommand::Remind(c) => c.registration_id,
                ProtectionCommand::FlagInactive(c) => c.registration_id,
                ProtectionCommand::Reassign(c) => c.registration_id,
            }),
            AccountCommand::Deal(d) => Some(match d {
                DealCommand::AdvanceStage(c) => c.registration_id,
                DealCommand::Won(c) => c.registration_id,
                DealCommand::Lost(c) => c.registration_id,
                DealCommand::RevenueReversal(c) => c.registration_id,
                DealCommand::Withdraw(c) => c.registration_id,
                DealCommand::Release(c) => c.registration_id,
            }),
            AccountCommand::Attribution(a) => Some(match a {
                AttributionCommand::SetSourcing(c) => c.registration_id,
                AttributionCommand::AddInfluencer(c) => c.registration_id,
                AttributionCommand::RemoveInfluencer(c) => c.registration_id,
            }),
            AccountCommand::LapseSlot(c) => Some(c.registration_id),
            AccountCommand::Engagement(e) => Some(match e {
                EngagementCommand::AddNote(c) => c.registration_id,
                EngagementCommand::SetNextStep(c) => c.registration_id,
                EngagementCommand::FlagNextStepOverdue(c) => c.registration_id,
                EngagementCommand::RequestExtension(c) => c.registration_id,
                EngagementCommand::RequestMoreInformation(c) => c.registration_id,
            }),
            AccountCommand::Conflict(_) | AccountCommand::Renewal(_) => None,
        }
    }
}
