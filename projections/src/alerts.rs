//! Which alerts an event makes, and for whom: the pure half of the notifier.
//!
//! Why a fold of its own and not a view: an alert is about one event (or one deadline
//! coming close), sent once per recipient, while views mirror rows. The fold keeps only what
//! alerts name (registrations' company and line, partners' names and facts for an
//! announcement's audience, the subscriptions) and never a recipient's address in clear:
//! subscriptions keep the sealed contact, opened by the notifier at send time, so an
//! erased person (`dealreg forget`) is never written to again.
//!
//! Partner-safe by construction: an alert for a partner carries its own registration's
//! facts only; a conflict alert names neither the other party nor its partner; internal
//! notes make no alert at all.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use dealreg_domain::announcement::reaches_partner;
use dealreg_domain::values::{
    Audience, ConflictParty, ConflictSla, ContactOnRecord, NoteVisibility, QuietHours,
};
use dealreg_domain::{Event, Motion, PartnerId, PartnerState, RegistrationId, Tier};
use serde::{Deserialize, Serialize};

/// Who an alert is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertAudience {
    /// The vendor's channel team (vendor users subscribed to the alert).
    ChannelManagers,
    /// The people of one partner subscribed to the alert.
    Partner(PartnerId),
}

/// The action an alert offers as a signed link, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offered {
    /// `approve_registration`, `decline_registration`, `acknowledge_announcement`,
    /// `request_extension`, `set_next_step`.
    pub action: String,
    /// What the link fixes (account, registration_id, partner_id, announcement_id).
    pub fields: BTreeMap<String, String>,
}

/// One alert: a kind (its templates), whom it is for, the values its templates fill in
/// (no personal data), the actions it offers and, for a registration's alerts, which one
/// (an e-mail reply to it becomes a note there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable: `<event id>/<kind>/<audience>` or, for a deadline coming close,
    /// `<kind>/<what>/<deadline>`. With the recipient it names one message for ever.
    pub id: String,
    pub kind: String,
    pub audience: AlertAudience,
    pub fields: BTreeMap<String, String>,
    pub offers: Vec<Offered>,
    /// `(account, registration)` when the alert is about a registration.
    pub registration: Option<(String, RegistrationId)>,
    pub at: DateTime<Utc>,
}

/// A person's subscription as the fold keeps it: the contact stays sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriber {
    pub partner_id: Option<PartnerId>,
    pub user: String,
    pub recipient: ContactOnRecord,
    pub by_email: bool,
    pub slack_channel: Option<String>,
    /// Empty: every alert of their audience.
    pub alerts: Vec<String>,
    pub quiet_hours: Option<QuietHours>,
    pub digest: bool,
}

impl Subscriber {
    /// Whether this person wants alerts of `kind`.
    pub fn wants(&self, kind: &str) -> bool {
        self.alerts.is_empty() || self.alerts.iter().any(|a| a == kind)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Tracked {
    account: String,
    partner_id: PartnerId,
    company: String,
    product_line: String,
    amount: String,
    approval_due_at: DateTime<Utc>,
    pending: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Announced {
    title: String,
    acknowledge_by: Option<DateTime<Utc>>,
    audience: Audience,
}

/// The notifier's fold.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    registrations: BTreeMap<RegistrationId, Tracked>,
    partners: BTreeMap<PartnerId, PartnerState>,
    announcements: BTreeMap<String, Announced>,
    subscribers: BTreeMap<(Option<PartnerId>, String), Subscriber>,
    /// How long before its approval is due a pending registration is announced as due.
    approval_lead: Duration,
}

impl Alerts {
    pub fn new(approval_lead: Duration) -> Alerts {
        Alerts {
            approval_lead,
            ..Alerts::default()
        }
    }

    /// The people subscribed to `alert`'s kind in its audience.
    pub fn recipients(&self, alert: &Alert) -> Vec<&Subscriber> {
        let partner = match &alert.audience {
            AlertAudience::ChannelManagers => None,
            AlertAudience::Partner(id) => Some(*id),
        };
        self.subscribers
            .values()
            .filter(|s| s.partner_id == partner && s.wants(&alert.kind))
            .collect()
    }

    /// The subscriber `(partner, user)`.
    pub fn subscriber(&self, partner: Option<PartnerId>, user: &str) -> Option<&Subscriber> {
        self.subscribers.get(&(partner, user.to_string()))
    }

    /// Every subscriber (the notifier opens their contacts to check a reply's sender).
    pub fn subscribers(&self) -> impl Iterator<Item = &Subscriber> {
        self.subscribers.values()
    }

    /// Approvals coming due within the lead time at `now`: one alert per registration and
    /// decision deadline (the notifier's sent list keeps it to one message per person).
    pub fn due_at(&self, now: DateTime<Utc>) -> Vec<Alert> {
        self.registrations
            .iter()
            .filter(|(_, r)| {
                r.pending
                    && r.approval_due_at - self.approval_lead <= now
                    && now < r.approval_due_at
            })
            .map(|(id, r)| {
                let hours_left = (r.approval_due_at - now).num_hours().max(0);
                let mut fields = registration_fields(r, *id);
                fields.insert("decision_due".into(), r.approval_due_at.to_rfc3339());
                fields.insert("hours_left".into(), hours_left.to_string());
                Alert {
                    id: format!("approval_due/{id}/{}", r.approval_due_at.timestamp()),
                    kind: "approval_due".into(),
                    audience: AlertAudience::ChannelManagers,
                    fields,
                    offers: decision_offers(r, *id),
                    registration: Some((r.account.clone(), *id)),
                    at: now,
                }
            })
            .collect()
    }

    /// Folds `event` (the event with id `event_id`) and returns the alerts it makes.
    pub fn apply(&mut self, event_id: &str, event: &Event) -> Vec<Alert> {
        let alerts = self.alerts_of(event_id, event);
        self.fold(event);
        alerts
    }

    fn fold(&mut self, event: &Event) {
        match event {
            Event::PartnerOnboarded { partner_id, .. }
            | Event::PartnerTierChanged { partner_id, .. } => {
                self.partners.entry(*partner_id).or_default().evolve(event);
            }
            Event::RegistrationSubmitted {
                account,
                registration_id,
                partner_id,
                customer,
                product_line,
                estimated_amount,
                approval_due_at,
                ..
            } => {
                self.registrations.insert(
                    *registration_id,
                    Tracked {
                        account: account.to_string(),
                        partner_id: *partner_id,
                        company: customer.company.clone(),
                        product_line: product_line.clone(),
                        amount: estimated_amount.to_string(),
                        approval_due_at: *approval_due_at,
                        pending: true,
                    },
                );
            }
            Event::RegistrationApproved {
                registration_id, ..
            }
            | Event::RegistrationDeclined {
                registration_id, ..
            }
            | Event::RegistrationWithdrawn {
                registration_id, ..
            } => {
                if let Some(r) = self.registrations.get_mut(registration_id) {
                    r.pending = false;
                }
            }
            Event::AppealDecided {
                registration_id,
                upheld: true,
                approval_due_at,
                ..
            } => {
                if let Some(r) = self.registrations.get_mut(registration_id) {
                    r.pending = true;
                    if let Some(due) = approval_due_at {
                        r.approval_due_at = *due;
                    }
                }
            }
            Event::RegistrationReassigned {
                registration_id,
                to,
                ..
            } => {
                if let Some(r) = self.registrations.get_mut(registration_id) {
                    r.partner_id = *to;
                }
            }
            Event::AnnouncementPublished {
                announcement_id,
                title,
                acknowledge_by,
                audience,
                ..
            } => {
                self.announcements.insert(
                    announcement_id.to_string(),
                    Announced {
                        title: title.clone(),
                        acknowledge_by: *acknowledge_by,
                        audience: audience.clone(),
                    },
                );
            }
            Event::AlertSubscriptionSet {
                partner_id,
                user,
                recipient,
                by_email,
                slack_channel,
                alerts,
                quiet_hours,
                digest,
                ..
            } => {
                self.subscribers.insert(
                    (*partner_id, user.clone()),
                    Subscriber {
                        partner_id: *partner_id,
                        user: user.clone(),
                        recipient: recipient.clone(),
                        by_email: *by_email,
                        slack_channel: slack_channel.clone(),
                        alerts: alerts.clone(),
                        quiet_hours: *quiet_hours,
                        digest: *digest,
                    },
                );
            }
            _ => {}
        }
    }

    fn alerts_of(&self, event_id: &str, event: &Event) -> Vec<Alert> {
        let mut out = Vec::new();
        let at = event.at();
        let mut push = |kind: &str,
                        audience: AlertAudience,
                        fields: BTreeMap<String, String>,
                        offers: Vec<Offered>,
                        registration: Option<(String, RegistrationId)>| {
            let whom = match &audience {
                AlertAudience::ChannelManagers => "vendor".to_string(),
                AlertAudience::Partner(id) => format!("partner.{id}"),
            };
            out.push(Alert {
                id: format!("{event_id}/{kind}/{whom}"),
                kind: kind.to_string(),
                audience,
                fields,
                offers,
                registration,
                at,
            });
        };
        let tracked = |id: &RegistrationId| self.registrations.get(id).map(|r| (r, *id));
        use AlertAudience::{ChannelManagers as Vendor, Partner};
        match event {
            Event::RegistrationSubmitted {
                account,
                registration_id,
                partner_id,
                customer,
                product_line,
                estimated_amount,
                approval_due_at,
                ..
            } => {
                let r = Tracked {
                    account: account.to_string(),
                    partner_id: *partner_id,
                    company: customer.company.clone(),
                    product_line: product_line.clone(),
                    amount: estimated_amount.to_string(),
                    approval_due_at: *approval_due_at,
                    pending: true,
                };
                let mut fields = registration_fields(&r, *registration_id);
                fields.insert("partner".into(), self.partner_name(*partner_id));
                fields.insert("decision_due".into(), approval_due_at.to_rfc3339());
                let offers = decision_offers(&r, *registration_id);
                push(
                    "registration_submitted",
                    Vendor,
                    fields,
                    offers,
                    Some((r.account, *registration_id)),
                );
            }
            Event::ApprovalSlaBreached {
                registration_id, ..
            } => {
                if let Some((r, id)) = tracked(registration_id) {
                    let mut fields = registration_fields(r, id);
                    fields.insert("partner".into(), self.partner_name(r.partner_id));
                    fields.insert("decision_due".into(), r.approval_due_at.to_rfc3339());
                    push(
                        "approval_sla_breached",
                        Vendor,
                        fields,
                        decision_offers(r, id),
                        Some((r.account.clone(), id)),
                    );
                }
            }
            Event::ExtensionRequested {
                registration_id,
                reason,
                ..
            } => {
                if let Some((r, id)) = tracked(registration_id) {
                    let mut fields = registration_fields(r, id);
                    fields.insert("partner".into(), self.partner_name(r.partner_id));
                    fields.insert("reason".into(), reason.clone());
                    push(
                        "extension_requested",
                        Vendor,
                        fields,
                        vec![],
                        Some((r.account.clone(), id)),
                    );
                }
            }
            Event::RegistrationApproved {
                registration_id,
                expires_at,
                ..
            } => {
                if let Some((r, id)) = tracked(registration_id) {
                    let mut fields = registration_fields(r, id);
                    fields.insert("protected_until".into(), expires_at.to_rfc3339());
                    let offers = vec![offer("set_next_step", r, id)];
                    push(
                        "registration_approved",
                        Partner(r.partner_id),
                        fields,
                        offers,
                        Some((r.account.clone(), id)),
                    );
                }
            }
            Event::RegistrationDeclined {
                registration_id,
                reason_code,
                rationale,
                ..
            } => {
                if let Some((r, id)) = tracked(registration_id) {
                    let mut fields = registration_fields(r, id);
                    fields.insert("reason".into(), format!("{reason_code}: {rationale}"));
                    push(
                        "registration_declined",
                        Partner(r.partner_id),
                        fields,
                        vec![],
                        Some((r.account.clone(), id)),
                    );
                }
            }
            Event::MoreInformationRequested {
                registration_id,
                question,
                ..
            } => {
                if let Some((r, id)) = tracked(registration_id) {
                    let mut fields = registration_fields(r, id);
                    fields.insert("question".into(), question.clone());
                    push(
                        "more_information_requested",
                        Partner(r.partner_id),
                        fields,
                        vec![],
                        Some((r.account.clone(), id)),
                    );
                }
            }
            Event::ExpiryReminderSent {
                registration_id,
                expires_at,
                ..
            } => {
                if let Some((r, id)) = tracked(registration_id) {
                    let mut fields = registration_fields(r, id);
                    fields.insert("protected_until".into(), expires_at.to_rfc3339());
                    let offers = vec![offer("request_extension", r, id)];
                    push(
                        "protection_expiring",
                        Partner(r.partner_id),
                        fields,
                        offers,
                        Some((r.account.clone(), id)),
                    );
                }
            }
            Event::ProtectionExpired {
                registration_id, ..
            } => {
                if let Some((r, id)) = tracked(registration_id) {
                    push(
                        "protection_expired",
                        Partner(r.partner_id),
                        registration_fields(r, id),
                        vec![],
                        Some((r.account.clone(), id)),
                    );
                }
            }
            Event::ProtectionExtended {
                registration_id,
                expires_at,
                ..
            } => {
                if let Some((r, id)) = tracked(registration_id) {
                    let mut fields = registration_fields(r, id);
                    fields.insert("protected_until".into(), expires_at.to_rfc3339());
                    push(
                        "extension_granted",
                        Partner(r.partner_id),
                        fields,
                        vec![],
                        Some((r.account.clone(), id)),
                    );
                }
            }
            Event::ConflictDetected {
                account,
                conflict_id,
                kind,
                product_line,
                parties,
                acknowledge_by,
                ..
            } => {
                let mut fields = BTreeMap::new();
                fields.insert("company".into(), account.to_string());
                fields.insert("product_line".into(), product_line.clone());
                fields.insert("conflict_kind".into(), format!("{kind:?}"));
                fields.insert("acknowledge_by".into(), acknowledge_by.to_rfc3339());
                fields.insert("conflict_id".into(), conflict_id.to_string());
                push("conflict_raised", Vendor, fields.clone(), vec![], None);
                // Each partner party hears that its own claim is in a conflict: never who
                // else is in it.
                for partner in partner_parties(parties) {
                    let mut mine = fields.clone();
                    mine.insert(
                        "conflict_kind".into(),
                        "a claim on the same customer and product line".into(),
                    );
                    push("conflict_raised", Partner(partner), mine, vec![], None);
                }
            }
            Event::ConflictSlaBreached {
                account,
                conflict_id,
                sla: ConflictSla::Acknowledgement,
                due_at,
                ..
            } => {
                let mut fields = BTreeMap::new();
                fields.insert("company".into(), account.to_string());
                fields.insert("conflict_id".into(), conflict_id.to_string());
                fields.insert("acknowledge_by".into(), due_at.to_rfc3339());
                push("conflict_acknowledgement_due", Vendor, fields, vec![], None);
            }
            Event::ConflictResolved {
                account,
                conflict_id,
                winner,
                ..
            } => {
                let mut fields = BTreeMap::new();
                fields.insert("company".into(), account.to_string());
                fields.insert("conflict_id".into(), conflict_id.to_string());
                fields.insert(
                    "outcome".into(),
                    winner.map_or("no registration won".into(), |w| {
                        format!("registration {w} keeps the deal")
                    }),
                );
                push("conflict_resolved", Vendor, fields.clone(), vec![], None);
                if let Some((r, id)) = winner.as_ref().and_then(tracked) {
                    let mut mine = fields;
                    mine.insert(
                        "outcome".into(),
                        format!("your registration {id} keeps the deal"),
                    );
                    push(
                        "conflict_resolved",
                        Partner(r.partner_id),
                        mine,
                        vec![],
                        None,
                    );
                }
            }
            Event::StageAdvanced {
                registration_id,
                to_stage,
                ..
            } => {
                if let Some((r, id)) = tracked(registration_id) {
                    let mut fields = registration_fields(r, id);
                    fields.insert("stage".into(), to_stage.clone());
                    fields.insert("partner".into(), self.partner_name(r.partner_id));
                    push(
                        "stage_changed",
                        Vendor,
                        fields.clone(),
                        vec![],
                        Some((r.account.clone(), id)),
                    );
                    fields.remove("partner");
                    push(
                        "stage_changed",
                        Partner(r.partner_id),
                        fields,
                        vec![],
                        Some((r.account.clone(), id)),
                    );
                }
            }
            Event::NextStepOverdue {
                registration_id,
                due_on,
                ..
            } => {
                if let Some((r, id)) = tracked(registration_id) {
                    let mut fields = registration_fields(r, id);
                    fields.insert("due".into(), due_on.to_string());
                    fields.insert("next_step".into(), String::new());
                    let offers = vec![offer("set_next_step", r, id)];
                    push(
                        "next_step_overdue",
                        Partner(r.partner_id),
                        fields,
                        offers,
                        Some((r.account.clone(), id)),
                    );
                }
            }
            Event::NoteAdded {
                registration_id,
                text,
                visibility: NoteVisibility::Partner,
                from_partner,
                ..
            } => {
                if let Some((r, id)) = tracked(registration_id) {
                    let mut fields = registration_fields(r, id);
                    fields.insert("note".into(), text.clone());
                    // A partner's note tells the channel team; the vendor's tells the partner.
                    if *from_partner {
                        fields.insert("partner".into(), self.partner_name(r.partner_id));
                        push(
                            "note_added",
                            Vendor,
                            fields,
                            vec![],
                            Some((r.account.clone(), id)),
                        );
                    } else {
                        push(
                            "note_added",
                            Partner(r.partner_id),
                            fields,
                            vec![],
                            Some((r.account.clone(), id)),
                        );
                    }
                }
            }
            Event::CommissionPaidOut {
                partner_id,
                amount,
                reference,
                ..
            } => {
                let mut fields = BTreeMap::new();
                fields.insert("amount".into(), amount.to_string());
                fields.insert("reference".into(), reference.clone());
                push(
                    "payout_recorded",
                    Partner(*partner_id),
                    fields,
                    vec![],
                    None,
                );
            }
            Event::AnnouncementPublished {
                announcement_id,
                title,
                text,
                audience,
                acknowledge_by,
                ..
            } => {
                for (partner_id, _) in self
                    .partners
                    .iter()
                    .filter(|(_, p)| p.is_active() && reaches_partner(audience, p))
                {
                    let mut fields = BTreeMap::new();
                    fields.insert("title".into(), title.clone());
                    fields.insert("text".into(), text.clone());
                    fields.insert(
                        "acknowledge_by".into(),
                        acknowledge_by.map(|d| d.to_rfc3339()).unwrap_or_default(),
                    );
                    let offers = acknowledge_by
                        .map(|_| announcement_offer(*partner_id, &announcement_id.to_string()))
                        .into_iter()
                        .collect();
                    push(
                        "announcement_published",
                        Partner(*partner_id),
                        fields,
                        offers,
                        None,
                    );
                }
            }
            Event::AnnouncementChased {
                partner_id,
                announcement_id,
                acknowledge_by,
                ..
            } => {
                if let Some(a) = self.announcements.get(&announcement_id.to_string()) {
                    let mut fields = BTreeMap::new();
                    fields.insert("title".into(), a.title.clone());
                    fields.insert("text".into(), String::new());
                    fields.insert("acknowledge_by".into(), acknowledge_by.to_rfc3339());
                    let offers = vec![announcement_offer(
                        *partner_id,
                        &announcement_id.to_string(),
                    )];
                    push(
                        "announcement_acknowledgement_due",
                        Partner(*partner_id),
                        fields,
                        offers,
                        None,
                    );
                }
            }
            _ => {}
        }
        out
    }

    fn partner_name(&self, id: PartnerId) -> String {
        self.partners
            .get(&id)
            .map(|p| p.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("partner {id}"))
    }

    /// Test support: the partner facts the fold keeps (tier and motions decide the
    /// audience of an announcement).
    pub fn partner_facts(&self, id: PartnerId) -> Option<(Tier, Vec<Motion>)> {
        self.partners
            .get(&id)
            .map(|p| (p.tier(), p.motions.clone()))
    }
}

fn registration_fields(r: &Tracked, id: RegistrationId) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    fields.insert("company".into(), r.company.clone());
    fields.insert("product_line".into(), r.product_line.clone());
    fields.insert("amount".into(), r.amount.clone());
    fields.insert("registration_id".into(), id.to_string());
    fields.insert("account".into(), r.account.clone());
    fields
}

fn offer(action: &str, r: &Tracked, id: RegistrationId) -> Offered {
    let mut fields = BTreeMap::new();
    fields.insert("account".into(), r.account.clone());
    fields.insert("registration_id".into(), id.to_string());
    fields.insert("partner_id".into(), r.partner_id.to_string());
    Offered {
        action: action.into(),
        fields,
    }
}

fn decision_offers(r: &Tracked, id: RegistrationId) -> Vec<Offered> {
    vec![
        offer("approve_registration", r, id),
        offer("decline_registration", r, id),
    ]
}

fn announcement_offer(partner: PartnerId, announcement: &str) -> Offered {
    let mut fields = BTreeMap::new();
    fields.insert("partner_id".into(), partner.to_string());
    fields.insert("announcement_id".into(), announcement.to_string());
    Offered {
        action: "acknowledge_announcement".into(),
        fields,
    }
}

fn partner_parties(parties: &[ConflictParty]) -> Vec<PartnerId> {
    let mut out: Vec<PartnerId> = parties
        .iter()
        .filter_map(|p| match p {
            ConflictParty::Registration { partner_id, .. }
            | ConflictParty::NamedPartner { partner_id }
            | ConflictParty::RenewalOwner { partner_id, .. } => Some(*partner_id),
            ConflictParty::DirectSales { .. } => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}
