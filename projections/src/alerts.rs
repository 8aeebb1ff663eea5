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
use dealreg_domain::ids::AnnouncementId;
use dealreg_domain::program::Announcement;
use dealreg_domain::values::{
    ConflictParty, ConflictSla, ContactOnRecord, NoteVisibility, QuietHours,
};
use dealreg_domain::{Event, PartnerId, PartnerState, RegistrationId};
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

impl Tracked {
    /// The registration a `registration_submitted` event records, pending (`None` for any
    /// other event).
    fn submitted(event: &Event) -> Option<(RegistrationId, Tracked)> {
        let Event::RegistrationSubmitted {
            account,
            registration_id,
            partner_id,
            customer,
            product_line,
            estimated_amount,
            approval_due_at,
            ..
        } = event
        else {
            return None;
        };
        Some((
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
        ))
    }
}

/// The notifier's fold.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    registrations: BTreeMap<RegistrationId, Tracked>,
    partners: BTreeMap<PartnerId, PartnerState>,
    announcements: BTreeMap<AnnouncementId, Announcement>,
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
            Event::RegistrationSubmitted { .. } => {
                if let Some((id, registration)) = Tracked::submitted(event) {
                    self.registrations.insert(id, registration);
                }
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
            Event::AnnouncementPublished { .. } => {
                if let Some(announcement) = Announcement::published(event) {
                    self.announcements.insert(announcement.id, announcement);
                }
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
        let at = event.at();
        let alert = |kind: &str,
                     audience: AlertAudience,
                     fields: BTreeMap<String, String>,
                     offers: Vec<Offered>,
                     registration: Option<(String, RegistrationId)>| {
            let whom = match &audience {
                AlertAudience::ChannelManagers => "vendor".to_string(),
                AlertAudience::Partner(id) => format!("partner.{id}"),
            };
            Alert {
                id: format!("{event_id}/{kind}/{whom}"),
                kind: kind.to_string(),
                audience,
                fields,
                offers,
                registration,
                at,
            }
        };
        if let Some(about) = about_registration(event) {
            let Some(r) = self.registrations.get(&about.id) else {
                return Vec::new();
            };
            let mut fields = registration_fields(r, about.id);
            fields.extend(about.fields.into_iter().map(|(k, v)| (k.to_string(), v)));
            let offers: Vec<Offered> = about.offers.iter().map(|a| offer(a, r, about.id)).collect();
            let mut audiences = Vec::new();
            if about.to.vendor {
                audiences.push(AlertAudience::ChannelManagers);
            }
            if about.to.partner {
                audiences.push(AlertAudience::Partner(r.partner_id));
            }
            return audiences
                .into_iter()
                .map(|audience| {
                    let mut fields = fields.clone();
                    // The channel team reads which partner; the partner knows itself.
                    if audience == AlertAudience::ChannelManagers {
                        fields.insert("partner".into(), self.partner_name(r.partner_id));
                    }
                    alert(
                        about.kind,
                        audience,
                        fields,
                        offers.clone(),
                        Some((r.account.clone(), about.id)),
                    )
                })
                .collect();
        }
        let mut out = Vec::new();
        match event {
            Event::RegistrationSubmitted { .. } => {
                // Folded after its alerts: the registration is described from the event.
                let Some((registration_id, r)) = Tracked::submitted(event) else {
                    return out;
                };
                let mut fields = registration_fields(&r, registration_id);
                fields.insert("partner".into(), self.partner_name(r.partner_id));
                fields.insert("decision_due".into(), r.approval_due_at.to_rfc3339());
                let offers = decision_offers(&r, registration_id);
                out.push(alert(
                    "registration_submitted",
                    AlertAudience::ChannelManagers,
                    fields,
                    offers,
                    Some((r.account, registration_id)),
                ));
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
                let fields = BTreeMap::from([
                    ("company".to_string(), account.to_string()),
                    ("product_line".to_string(), product_line.clone()),
                    ("conflict_kind".to_string(), format!("{kind:?}")),
                    ("acknowledge_by".to_string(), acknowledge_by.to_rfc3339()),
                    ("conflict_id".to_string(), conflict_id.to_string()),
                ]);
                out.push(alert(
                    "conflict_raised",
                    AlertAudience::ChannelManagers,
                    fields.clone(),
                    vec![],
                    None,
                ));
                // Each partner party hears that its own claim is in a conflict: never who
                // else is in it, nor what kind (the kind names the other side).
                for partner in partner_parties(parties) {
                    let mut mine = fields.clone();
                    mine.insert(
                        "conflict_kind".into(),
                        "a claim on the same customer and product line".into(),
                    );
                    out.push(alert(
                        "conflict_raised",
                        AlertAudience::Partner(partner),
                        mine,
                        vec![],
                        None,
                    ));
                }
            }
            Event::ConflictSlaBreached {
                account,
                conflict_id,
                sla: ConflictSla::Acknowledgement,
                due_at,
                ..
            } => {
                let fields = BTreeMap::from([
                    ("company".to_string(), account.to_string()),
                    ("conflict_id".to_string(), conflict_id.to_string()),
                    ("acknowledge_by".to_string(), due_at.to_rfc3339()),
                ]);
                out.push(alert(
                    "conflict_acknowledgement_due",
                    AlertAudience::ChannelManagers,
                    fields,
                    vec![],
                    None,
                ));
            }
            Event::ConflictResolved {
                account,
                conflict_id,
                winner,
                ..
            } => {
                let mut fields = BTreeMap::from([
                    ("company".to_string(), account.to_string()),
                    ("conflict_id".to_string(), conflict_id.to_string()),
                ]);
                let outcome = winner.map_or("no registration won".into(), |w| {
                    format!("registration {w} keeps the deal")
                });
                fields.insert("outcome".into(), outcome);
                out.push(alert(
                    "conflict_resolved",
                    AlertAudience::ChannelManagers,
                    fields.clone(),
                    vec![],
                    None,
                ));
                if let Some((w, r)) =
                    winner.and_then(|w| self.registrations.get(&w).map(|r| (w, r)))
                {
                    fields.insert(
                        "outcome".into(),
                        format!("your registration {w} keeps the deal"),
                    );
                    out.push(alert(
                        "conflict_resolved",
                        AlertAudience::Partner(r.partner_id),
                        fields,
                        vec![],
                        None,
                    ));
                }
            }
            Event::CommissionPaidOut {
                partner_id,
                amount,
                reference,
                ..
            } => {
                let fields = BTreeMap::from([
                    ("amount".to_string(), amount.to_string()),
                    ("reference".to_string(), reference.clone()),
                ]);
                out.push(alert(
                    "payout_recorded",
                    AlertAudience::Partner(*partner_id),
                    fields,
                    vec![],
                    None,
                ));
            }
            Event::AnnouncementPublished {
                announcement_id,
                title,
                text,
                audience,
                acknowledge_by,
                ..
            } => {
                let reached = self
                    .partners
                    .iter()
                    .filter(|(_, p)| p.is_active() && reaches_partner(audience, p));
                for (partner_id, _) in reached {
                    let fields = announcement_fields(title, text, *acknowledge_by);
                    let offers = acknowledge_by
                        .map(|_| announcement_offer(*partner_id, &announcement_id.to_string()))
                        .into_iter()
                        .collect();
                    out.push(alert(
                        "announcement_published",
                        AlertAudience::Partner(*partner_id),
                        fields,
                        offers,
                        None,
                    ));
                }
            }
            Event::AnnouncementChased {
                partner_id,
                announcement_id,
                acknowledge_by,
                ..
            } => {
                if let Some(a) = self.announcements.get(announcement_id) {
                    let fields = announcement_fields(&a.title, "", Some(*acknowledge_by));
                    let offers = vec![announcement_offer(
                        *partner_id,
                        &announcement_id.to_string(),
                    )];
                    out.push(alert(
                        "announcement_acknowledgement_due",
                        AlertAudience::Partner(*partner_id),
                        fields,
                        offers,
                        None,
                    ));
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
}

/// Who an alert about a registration is for.
#[derive(Debug, Clone, Copy)]
struct To {
    vendor: bool,
    partner: bool,
}

const VENDOR: To = To {
    vendor: true,
    partner: false,
};
const PARTNER: To = To {
    vendor: false,
    partner: true,
};
const BOTH: To = To {
    vendor: true,
    partner: true,
};

/// An alert about one registration, as data: the kind, for whom, the values the event adds
/// to the registration's own, and the actions it offers. What [`Alerts::alerts_of`] makes
/// of most events; the registration's facts come from the fold.
struct AboutRegistration {
    id: RegistrationId,
    kind: &'static str,
    to: To,
    fields: Vec<(&'static str, String)>,
    offers: &'static [&'static str],
}

/// The alert an event about a registration makes, if it makes one. Internal notes make
/// none; a partner's note goes to the channel team, the vendor's to the partner.
fn about_registration(event: &Event) -> Option<AboutRegistration> {
    let about = |id: &RegistrationId, kind, to, fields, offers| {
        Some(AboutRegistration {
            id: *id,
            kind,
            to,
            fields,
            offers,
        })
    };
    const DECIDE: &[&str] = &["approve_registration", "decline_registration"];
    match event {
        Event::ApprovalSlaBreached {
            registration_id,
            due_at,
            ..
        } => about(
            registration_id,
            "approval_sla_breached",
            VENDOR,
            vec![("decision_due", due_at.to_rfc3339())],
            DECIDE,
        ),
        Event::ExtensionRequested {
            registration_id,
            reason,
            ..
        } => about(
            registration_id,
            "extension_requested",
            VENDOR,
            vec![("reason", reason.clone())],
            &[],
        ),
        Event::RegistrationApproved {
            registration_id,
            expires_at,
            ..
        } => about(
            registration_id,
            "registration_approved",
            PARTNER,
            vec![("protected_until", expires_at.to_rfc3339())],
            &["set_next_step"],
        ),
        Event::RegistrationDeclined {
            registration_id,
            reason_code,
            rationale,
            ..
        } => about(
            registration_id,
            "registration_declined",
            PARTNER,
            vec![("reason", format!("{reason_code}: {rationale}"))],
            &[],
        ),
        Event::MoreInformationRequested {
            registration_id,
            question,
            ..
        } => about(
            registration_id,
            "more_information_requested",
            PARTNER,
            vec![("question", question.clone())],
            &[],
        ),
        Event::ExpiryReminderSent {
            registration_id,
            expires_at,
            ..
        } => about(
            registration_id,
            "protection_expiring",
            PARTNER,
            vec![("protected_until", expires_at.to_rfc3339())],
            &["request_extension"],
        ),
        Event::ProtectionExpired {
            registration_id, ..
        } => about(registration_id, "protection_expired", PARTNER, vec![], &[]),
        Event::ProtectionExtended {
            registration_id,
            expires_at,
            ..
        } => about(
            registration_id,
            "extension_granted",
            PARTNER,
            vec![("protected_until", expires_at.to_rfc3339())],
            &[],
        ),
        Event::StageAdvanced {
            registration_id,
            to_stage,
            ..
        } => about(
            registration_id,
            "stage_changed",
            BOTH,
            vec![("stage", to_stage.clone())],
            &[],
        ),
        Event::NextStepOverdue {
            registration_id,
            due_on,
            ..
        } => about(
            registration_id,
            "next_step_overdue",
            PARTNER,
            vec![("due", due_on.to_string())],
            &["set_next_step"],
        ),
        Event::NoteAdded {
            registration_id,
            text,
            visibility: NoteVisibility::Partner,
            from_partner,
            ..
        } => about(
            registration_id,
            "note_added",
            if *from_partner { VENDOR } else { PARTNER },
            vec![("note", text.clone())],
            &[],
        ),
        _ => None,
    }
}

fn announcement_fields(
    title: &str,
    text: &str,
    acknowledge_by: Option<DateTime<Utc>>,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("title".to_string(), title.to_string()),
        ("text".to_string(), text.to_string()),
        (
            "acknowledge_by".to_string(),
            acknowledge_by.map(|d| d.to_rfc3339()).unwrap_or_default(),
        ),
    ])
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use dealreg_domain::ids::NoteId;
    use dealreg_domain::values::{ConflictKind, Contact, RegisteredCustomer};
    use dealreg_domain::{AccountKey, ConflictId, DealKind, Money, Motion};

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn submitted(id: RegistrationId, partner: PartnerId) -> Event {
        let customer = RegisteredCustomer {
            company: "Acme".into(),
            domain: "acme.com".into(),
            contact: ContactOnRecord::Clear(Contact {
                name: "Dana".into(),
                email: "dana@acme.com".into(),
                phone: None,
            }),
            region: None,
            vertical: None,
        };
        Event::RegistrationSubmitted {
            account: AccountKey("acme.com".into()),
            registration_id: id,
            partner_id: partner,
            customer,
            product_line: "analytics".into(),
            motion: Motion::Reseller,
            kind: DealKind::NewBusiness,
            estimated_amount: Money::new(100, "EUR").unwrap_or_else(|e| panic!("{e}")),
            expected_close: at().date_naive(),
            proof_of_work: "workshop".into(),
            certified: true,
            incumbent: false,
            approval_due_at: at() + Duration::hours(48),
            intro_due_at: None,
            policy_version: 1,
            at: at(),
        }
    }

    fn note(
        id: RegistrationId,
        partner: PartnerId,
        visibility: NoteVisibility,
        from_partner: bool,
    ) -> Event {
        Event::NoteAdded {
            account: AccountKey("acme.com".into()),
            registration_id: id,
            partner_id: partner,
            note_id: NoteId(uuid::Uuid::now_v7()),
            text: "a note".into(),
            visibility,
            by: "someone".into(),
            from_partner,
            at: at(),
        }
    }

    #[test]
    fn a_note_goes_to_the_other_side_and_an_internal_one_nowhere() {
        let (id, partner) = (
            RegistrationId(uuid::Uuid::now_v7()),
            PartnerId(uuid::Uuid::now_v7()),
        );
        let mut fold = Alerts::new(Duration::hours(12));
        fold.apply("e1", &submitted(id, partner));
        let to = |alerts: Vec<Alert>| alerts.into_iter().map(|a| a.audience).collect::<Vec<_>>();
        assert_eq!(
            to(fold.apply("e2", &note(id, partner, NoteVisibility::Partner, true))),
            vec![AlertAudience::ChannelManagers]
        );
        assert_eq!(
            to(fold.apply("e3", &note(id, partner, NoteVisibility::Partner, false))),
            vec![AlertAudience::Partner(partner)]
        );
        assert!(fold
            .apply("e4", &note(id, partner, NoteVisibility::Internal, false))
            .is_empty());
    }

    #[test]
    fn a_partner_in_a_conflict_is_told_of_its_own_claim_only() {
        let (a, b) = (
            PartnerId(uuid::Uuid::now_v7()),
            PartnerId(uuid::Uuid::now_v7()),
        );
        let (ra, rb) = (
            RegistrationId(uuid::Uuid::now_v7()),
            RegistrationId(uuid::Uuid::now_v7()),
        );
        let mut fold = Alerts::new(Duration::hours(12));
        let conflict = Event::ConflictDetected {
            account: AccountKey("acme.com".into()),
            conflict_id: ConflictId("acme.com/analytics/1".into()),
            kind: ConflictKind::Horizontal,
            product_line: "analytics".into(),
            parties: vec![
                ConflictParty::Registration {
                    registration_id: ra,
                    partner_id: a,
                },
                ConflictParty::Registration {
                    registration_id: rb,
                    partner_id: b,
                },
            ],
            reasons: vec![format!("{a} and {b} both registered")],
            acknowledge_by: at() + Duration::hours(24),
            resolution_plan_by: None,
            policy_version: 1,
            at: at(),
        };
        let alerts = fold.apply("e1", &conflict);
        assert_eq!(alerts.len(), 3, "the channel team and each partner");
        for alert in alerts
            .iter()
            .filter(|x| x.audience != AlertAudience::ChannelManagers)
        {
            let text = serde_json::to_string(&alert.fields).unwrap_or_default();
            assert!(
                !text.contains(&a.to_string()) && !text.contains(&b.to_string()),
                "{text}"
            );
            assert!(
                !text.contains(&ra.to_string()) && !text.contains(&rb.to_string()),
                "{text}"
            );
        }
        // Ids are stable: the same event read again makes the same alerts.
        let again = Alerts::new(Duration::hours(12)).apply("e1", &conflict);
        assert_eq!(
            alerts.iter().map(|a| &a.id).collect::<Vec<_>>(),
            again.iter().map(|a| &a.id).collect::<Vec<_>>()
        );
    }
}
