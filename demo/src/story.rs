//! The demo's story: eight partners across all five motions over 120 simulated days.
//!
//! Every day the real timekeeper issues what fell due (reminders, expiries, SLA breaches,
//! inactivity, renewal reviews) from the deadlines projection; the channel manager decides
//! pending registrations (some late, on purpose); partners register deals (some on
//! accounts another partner already works); deals move through their motion's stages, some
//! are extended, won with attribution, or lost; direct sales records opportunities on
//! partner accounts; one partner is offboarded.
//!
//! What the actors know is what a client knows: the ids they chose and the replies they
//! got. Everything else (a registration's status, stage, expiry, conflicts) is read through
//! the engine, and every number (SLA hours, lead times) comes from the policy in force.
//! Ids and choices come from the seed, so every run with the same seed tells the same
//! story, byte for byte.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use dealreg_clock::{Clock, ControlledClock, IdSource, SeededIds};
use dealreg_domain::account::ConflictStatus;
use dealreg_domain::stages::{closing_stage, stage_name};
use dealreg_domain::{
    AccountKey, AccountState, Boundary, Motion, Policy, Registration, RegistrationId,
    RegistrationStatus, State,
};
use dealreg_engine::{Engine, ReplyLine};
use dealreg_events::EventStore;
use dealreg_host::runner::{self, CatchUp};
use dealreg_host::{reactor, timekeeper};
use dealreg_projections::deadlines::Deadlines;
use dealreg_views::CheckpointStore;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::commands as cmd;
use crate::DemoError;

pub const DAYS: i64 = 120;

/// What the story did, as counted by the driver (the summary itself comes from the log).
#[derive(Debug, Default, Clone)]
pub struct StoryReport {
    pub commands: usize,
    pub accepted: usize,
    pub rejected: usize,
    /// Commands the timekeeper issued for deadlines that fell due.
    pub timekeeper_commands: usize,
    pub days: i64,
}

struct Cast {
    id: Uuid,
    name: &'static str,
    motions: &'static [&'static str],
    tier: &'static str,
    region: &'static str,
    /// Product lines with the date their certification runs out.
    certified: &'static [(&'static str, &'static str)],
    active: bool,
}

/// What a partner knows of a registration it submitted: the ids it chose.
#[derive(Debug, Clone)]
struct Submitted {
    id: RegistrationId,
    partner: usize,
    account: AccountKey,
    line: &'static str,
}

const CUSTOMERS: &[(&str, &str)] = &[
    ("Acme Robotics Inc.", "acme-robotics.com"),
    ("Globex Corporation", "globex.com"),
    ("Initech GmbH", "initech.de"),
    ("Umbrella Health", "umbrella-health.com"),
    ("Stark Logistics", "stark-logistics.com"),
    ("Wayne Manufacturing", "wayne-mfg.com"),
    ("Soylent Foods", "soylent.co.uk"),
    ("Hooli", "hooli.com"),
    ("Pied Piper", "piedpiper.io"),
    ("Vandelay Industries", "vandelay.com"),
    ("Cyberdyne Systems", "cyberdyne.ai"),
    ("Tyrell Corp", "tyrell.com"),
    ("Wonka Confections", "wonka.ch"),
    ("Gringotts Banking", "gringotts.co.uk"),
    ("Oceanic Airlines", "oceanic-air.com"),
    ("Monarch Insurance", "monarch-ins.com"),
    ("Duff Beverages", "duff.com.au"),
    ("Nakatomi Trading", "nakatomi.co.jp"),
    ("Massive Dynamic", "massivedynamic.com"),
    ("Blue Sun Energy", "bluesun.energy"),
    ("Aperture Labs", "aperture.science"),
    ("Black Mesa Research", "blackmesa.org"),
    ("Virtucon", "virtucon.com"),
    ("Prestige Worldwide", "prestige-ww.com"),
    ("Bluth Company", "bluth.com"),
    ("Dunder Mifflin", "dundermifflin.com"),
    ("Sterling Cooper", "sterlingcooper.com"),
    ("Los Pollos Hermanos", "lospollos.mx"),
    ("Kramerica", "kramerica.com"),
    ("Genco Olive Oil", "genco.it"),
    ("Rekall", "rekall.com"),
    ("Weyland-Yutani", "weyland-yutani.com"),
    // The same customers again under other domains and legal names: likely duplicates.
    ("Acme Robotics GmbH", "acme-robotics.de"),
    ("Globex Corp.", "globex.co.uk"),
];

/// A tiny fixed-seed generator (xorshift64*) for the story's choices.
struct Dice(u64);

impl Dice {
    fn new(seed: u64) -> Dice {
        Dice(seed | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Sees every reply a client of the demo got, with the actor that sent the command.
pub type Observer<'o> = &'o mut (dyn FnMut(&Value, &ReplyLine) + Send);

pub struct Story<'e, S, K> {
    engine: &'e Engine<S, ControlledClock>,
    observer: Observer<'e>,
    clock: &'e ControlledClock,
    store: &'e S,
    checkpoints: &'e K,
    policy: Policy,
    /// The ids the demo's clients choose (partners, registrations, opportunities, keys).
    ids: SeededIds,
    dice: Dice,
    cast: Vec<Cast>,
    submitted: Vec<Submitted>,
    /// Partner choices remembered so that each is made once: whether to appeal a decline
    /// (and whether too late), whether to ask for an extension after the reminder.
    appeal_considered: BTreeSet<RegistrationId>,
    late_appellants: BTreeSet<RegistrationId>,
    extension_considered: BTreeSet<RegistrationId>,
    reassignment_considered: BTreeSet<RegistrationId>,
    /// Wins RevOps recorded (from the replies): registration -> (account, won at, amount).
    wins: BTreeMap<RegistrationId, (AccountKey, DateTime<Utc>, i64)>,
    refunds_considered: BTreeSet<RegistrationId>,
    report: StoryReport,
}

pub async fn play<'e, S: EventStore + Clone, K: CheckpointStore>(
    engine: &'e Engine<S, ControlledClock>,
    clock: &'e ControlledClock,
    checkpoints: &'e K,
    seed: u64,
    start: DateTime<Utc>,
    observer: Observer<'e>,
) -> Result<StoryReport, DemoError> {
    let ids = SeededIds::new(seed.wrapping_add(1));
    let mut story = Story {
        engine,
        observer,
        clock,
        store: engine.store(),
        checkpoints,
        policy: engine.policy().await?,
        cast: cast(&ids, clock.now()),
        ids,
        dice: Dice::new(seed),
        submitted: Vec::new(),
        appeal_considered: BTreeSet::new(),
        late_appellants: BTreeSet::new(),
        extension_considered: BTreeSet::new(),
        reassignment_considered: BTreeSet::new(),
        wins: BTreeMap::new(),
        refunds_considered: BTreeSet::new(),
        report: StoryReport::default(),
    };
    story.onboard_partners().await?;
    for day in 0..=DAYS {
        clock.set(start + Duration::days(day) + Duration::hours((day % 3) * 2));
        story.timekeeper().await?;
        story.channel_manager_decides().await?;
        story.reassignments().await?;
        story.appeals().await?;
        story.deals_progress().await?;
        story.partners_register(day).await?;
        story.program_events(day).await?;
        story.follow_ups().await?;
        story.conflict_desk().await?;
        story.revenue_desk().await?;
        story.report.days = day;
    }
    Ok(story.report)
}

fn cast(ids: &SeededIds, now: DateTime<Utc>) -> Vec<Cast> {
    let c = |name, motions, tier, region, certified| Cast {
        id: ids.next_id(now),
        name,
        motions,
        tier,
        region,
        certified,
        active: true,
    };
    vec![
        c(
            "Northwind Referrals",
            &["referral"],
            "silver",
            "emea",
            &[("analytics", "2027-06-30"), ("security", "2027-06-30")],
        ),
        c(
            "Contoso Resale",
            &["reseller"],
            "gold",
            "na",
            &[
                ("analytics", "2027-06-30"),
                ("platform", "2027-06-30"),
                ("security", "2027-06-30"),
            ],
        ),
        c(
            "Fabrikam Solutions",
            &["reseller", "services"],
            "platinum",
            "na",
            &[("analytics", "2027-06-30"), ("platform", "2027-06-30")],
        ),
        c(
            "CloudBazaar Marketplace",
            &["marketplace"],
            "silver",
            "global",
            &[("platform", "2027-06-30"), ("analytics", "2027-06-30")],
        ),
        c(
            "Adatum Managed Services",
            &["services"],
            "gold",
            "emea",
            &[("security", "2027-06-30"), ("platform", "2027-06-30")],
        ),
        c(
            "Tailspin Integrations",
            &["tech_isv"],
            "silver",
            "global",
            &[("analytics", "2027-06-30"), ("platform", "2027-06-30")],
        ),
        c(
            "Litware Channel",
            &["reseller"],
            "registered",
            "apac",
            &[("security", "2026-02-20"), ("analytics", "2027-06-30")],
        ),
        c(
            "Proseware Advisors",
            &["referral"],
            "gold",
            "apac",
            &[("platform", "2027-06-30"), ("security", "2027-06-30")],
        ),
    ]
}

impl<S: EventStore + Clone, K: CheckpointStore> Story<'_, S, K> {
    /// Sends a command the way any client does (bytes in, a reply line out: partner-safe
    /// for a partner actor) and shows the reply to the observer.
    async fn send(&mut self, actor: Value, command: Value) -> Result<ReplyLine, DemoError> {
        let key = self.ids.next_id(self.now());
        let body =
            json!({ "idempotency_key": key.to_string(), "actor": actor, "command": command });
        let line = self.engine.execute_line(body.to_string().as_bytes()).await;
        if let ReplyLine::Refused { error, .. } = &line {
            return Err(DemoError::Unreadable(format!(
                "{}: {} ({body})",
                error.code, error.message
            )));
        }
        (self.observer)(&actor, &line);
        self.report.commands += 1;
        if line.ok() {
            self.report.accepted += 1;
        } else {
            self.report.rejected += 1;
            tracing::debug!(refusal = ?line.refusal(), "demo command rejected");
        }
        Ok(line)
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Every account a registration was submitted on, as the engine folds it now.
    async fn accounts(&self) -> Result<BTreeMap<AccountKey, AccountState>, DemoError> {
        let keys: BTreeSet<&AccountKey> = self.submitted.iter().map(|s| &s.account).collect();
        let mut accounts = BTreeMap::new();
        for key in keys {
            let loaded = self.engine.load(&Boundary::Account(key.clone())).await?;
            if let State::Account(state) = &loaded.state {
                accounts.insert(key.clone(), state.clone());
            }
        }
        Ok(accounts)
    }

    /// The submitted registrations with their state now, in submission order.
    async fn registrations(&self) -> Result<Vec<(Submitted, Registration)>, DemoError> {
        let accounts = self.accounts().await?;
        Ok(self
            .submitted
            .iter()
            .filter_map(|s| {
                let r = accounts.get(&s.account)?.registrations.get(&s.id)?;
                Some((s.clone(), r.clone()))
            })
            .collect())
    }

    async fn onboard_partners(&mut self) -> Result<(), DemoError> {
        for i in 0..self.cast.len() {
            let (id, name, motions, tier, region, certified) = {
                let c = &self.cast[i];
                (c.id, c.name, c.motions, c.tier, c.region, c.certified)
            };
            let capacity = if name.starts_with("Litware") { 6 } else { 40 };
            let reply = self
                .send(
                    cmd::channel_manager(),
                    cmd::onboard(id, name, motions, tier, region, capacity),
                )
                .await?;
            expect_ok(&reply, "onboarding")?;
            for (line, expires_on) in certified {
                let reply = self
                    .send(cmd::channel_manager(), cmd::certify(id, line, expires_on))
                    .await?;
                expect_ok(&reply, "certification")?;
            }
        }
        Ok(())
    }

    /// What recorded facts imply (an offboarded partner's releases), from the reactor.
    async fn follow_ups(&mut self) -> Result<(), DemoError> {
        let reacted = reactor::catch_up(self.engine, self.checkpoints).await?;
        self.report.commands += reacted.issued.len();
        self.report.accepted += reacted.issued.iter().filter(|e| e.reply.ok).count();
        self.report.rejected += reacted.issued.iter().filter(|e| !e.reply.ok).count();
        Ok(())
    }

    /// The real timekeeper, once a day, on the deadlines projection brought up to date.
    async fn timekeeper(&mut self) -> Result<(), DemoError> {
        let deadlines = runner::catch_up::<Deadlines, S, K>(
            self.store,
            self.checkpoints,
            CatchUp::default(),
            |_| {},
        )
        .await?;
        let tick = timekeeper::tick(self.engine, &deadlines.state).await?;
        for (_, executed) in &tick.issued {
            self.report.timekeeper_commands += 1;
            self.report.commands += 1;
            if executed.reply.ok {
                self.report.accepted += 1;
            } else {
                self.report.rejected += 1;
            }
        }
        Ok(())
    }

    async fn channel_manager_decides(&mut self) -> Result<(), DemoError> {
        let now = self.now();
        for (s, r) in self.registrations().await? {
            // A pending registration is in review since its submission or reinstatement.
            if r.status != RegistrationStatus::Pending || now < r.last_touch + Duration::hours(20) {
                continue;
            }
            // One registration in seven waits three days: the approval SLA is breached.
            let sla = Duration::hours(i64::from(self.policy.sla.approval_hours));
            if r.id.0.as_u128().is_multiple_of(7) && now < r.last_touch + sla + Duration::days(1) {
                continue;
            }
            let account = s.account.0.as_str();
            if self.dice.chance(8) {
                self.send(
                    cmd::channel_manager(),
                    cmd::decline(
                        account,
                        r.id.0,
                        "insufficient_proof_of_work",
                        "No evidence of a customer meeting; resubmit with meeting notes",
                    ),
                )
                .await?;
                continue;
            }
            let reply = self
                .send(cmd::channel_manager(), cmd::approve(account, r.id.0))
                .await?;
            if !reply.ok() {
                let why = reply
                    .refusal()
                    .map(|(_, message)| message)
                    .unwrap_or_default();
                self.send(
                    cmd::channel_manager(),
                    cmd::decline(
                        account,
                        r.id.0,
                        "channel_conflict",
                        &format!("Conflict hierarchy: {why}"),
                    ),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// The channel manager moves one in three registrations flagged inactive to another
    /// partner of the same motion, once.
    async fn reassignments(&mut self) -> Result<(), DemoError> {
        for (s, r) in self.registrations().await? {
            let flagged = r.inactive_flagged_at.is_some_and(|t| t >= r.last_touch);
            if !r.status.is_open() || !flagged || !self.reassignment_considered.insert(r.id) {
                continue;
            }
            if !self.dice.chance(33) {
                continue;
            }
            let motion = r.motion.as_str();
            let others: Vec<Uuid> = self
                .cast
                .iter()
                .enumerate()
                .filter(|(i, c)| *i != s.partner && c.active && c.motions.contains(&motion))
                .map(|(_, c)| c.id)
                .collect();
            if let Some(to) = others.get(self.dice.below(others.len().max(1))) {
                self.send(
                    cmd::channel_manager(),
                    cmd::reassign(&s.account.0, r.id.0, *to),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn appeals(&mut self) -> Result<(), DemoError> {
        let now = self.now();
        for (s, r) in self.registrations().await? {
            if r.status != RegistrationStatus::Declined {
                continue;
            }
            let (account, partner) = (s.account.0.clone(), self.cast[s.partner].id);
            if r.appeal_filed && !r.appeal_decided {
                // The channel manager decides an open appeal on one day or another.
                if self.dice.chance(50) {
                    let upheld = self.dice.chance(40);
                    self.send(
                        cmd::channel_manager(),
                        cmd::decide_appeal(&account, r.id.0, upheld),
                    )
                    .await?;
                }
                continue;
            }
            if r.appeal_filed {
                continue;
            }
            let Some(until) = r.appeal_until else {
                continue;
            };
            if self.late_appellants.contains(&r.id) {
                // The late appellant tries after the window: recorded and refused.
                if now > until + Duration::days(1) {
                    self.late_appellants.remove(&r.id);
                    self.send(cmd::partner(partner), cmd::appeal(&account, r.id.0))
                        .await?;
                }
                continue;
            }
            if self.appeal_considered.insert(r.id) && self.dice.chance(35) {
                // One appeal in five comes too late, after the window closed.
                if self.dice.chance(20) {
                    self.late_appellants.insert(r.id);
                } else {
                    self.send(cmd::partner(partner), cmd::appeal(&account, r.id.0))
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn deals_progress(&mut self) -> Result<(), DemoError> {
        let now = self.now();
        let tailspin = self.cast[5].id;
        for (s, r) in self.registrations().await? {
            if !self.cast[s.partner].active {
                continue;
            }
            let (account, id, partner) = (s.account.0.clone(), r.id.0, self.cast[s.partner].id);
            // After the win, now and then the partner records the post-sale stages:
            // who delivers and who owns the renewal.
            if r.status == RegistrationStatus::Won {
                let next = r.stage.max(closing_stage(r.motion)) + 1;
                if next < 5 && self.dice.chance(30) {
                    let evidence = json!({
                        "note": format!("{} delivers; renewal owned by the partner", self.cast[s.partner].name),
                    });
                    self.send(
                        cmd::partner(partner),
                        cmd::advance(&account, id, stage_name(r.motion, next), evidence),
                    )
                    .await?;
                }
                continue;
            }
            if r.status != RegistrationStatus::Protected {
                continue;
            }
            // After the expiry reminder, the partner asks and the channel manager extends
            // (six times in ten), once.
            let reminded = r.expires_at.is_some() && r.reminded_for == r.expires_at;
            if reminded && r.extensions == 0 && self.extension_considered.insert(r.id) {
                if self.dice.chance(60) {
                    self.send(cmd::channel_manager(), cmd::extend(&account, id))
                        .await?;
                }
                continue;
            }
            // Some deals go quiet: no touch, so inactivity and expiry catch them.
            if id.as_u128() % 5 == 1 || now < r.last_touch + Duration::days(9) {
                continue;
            }
            if self.dice.chance(3) {
                self.send(cmd::partner(partner), cmd::withdraw(&account, id))
                    .await?;
                continue;
            }
            if r.attribution.is_empty() {
                if r.motion == Motion::TechIsv {
                    self.send(
                        cmd::channel_manager(),
                        cmd::add_influencer(&account, id, partner, 30),
                    )
                    .await?;
                } else {
                    self.send(
                        cmd::channel_manager(),
                        cmd::set_sourcing(&account, id, partner),
                    )
                    .await?;
                    if self.dice.chance(35) && partner != tailspin {
                        self.send(
                            cmd::channel_manager(),
                            cmd::add_influencer(&account, id, tailspin, 20),
                        )
                        .await?;
                    }
                }
            }
            // Won at the motion's closing stage (its exit is the win).
            if r.stage >= closing_stage(r.motion) {
                let roll = self.dice.below(100);
                if roll < 65 {
                    let estimate = r.estimated_amount.amount_minor;
                    let amount =
                        (estimate + (self.dice.below(20) as i64 - 5) * 100_000).max(100_000);
                    // A reseller's Transact closes on its order; a marketplace deal on the
                    // transaction its Procurement recorded.
                    let order = (r.motion == Motion::Reseller)
                        .then(|| format!("PO-{:05}", self.dice.below(100_000)));
                    let reply = self
                        .send(
                            cmd::channel_manager(),
                            cmd::won(&account, id, amount, order.as_deref()),
                        )
                        .await?;
                    if reply.ok() {
                        self.wins.insert(r.id, (s.account.clone(), now, amount));
                    }
                } else if roll < 85 {
                    self.send(cmd::channel_manager(), cmd::lost(&account, id))
                        .await?;
                }
                continue;
            }
            let (current, next) = (
                stage_name(r.motion, r.stage),
                stage_name(r.motion, r.stage + 1),
            );
            let mut evidence = json!({
                "note": format!("Exit criteria of {current} met"),
                "discount_percent": 8 + self.dice.below(6),
                "next_step": format!("Prepare {next}"),
            });
            // The fact each exit checks where the brief names one.
            let fact = match (r.motion, r.stage) {
                (Motion::Referral, 0) => Some(("vendor_owner", "ae.north@vendor.example".into())),
                (Motion::Marketplace, 1) => Some((
                    "offer_reference",
                    format!("offer-{:06}", self.dice.below(1_000_000)),
                )),
                (Motion::Marketplace, 2) => Some((
                    "transaction_reference",
                    format!("mp-txn-{:08}", self.dice.below(100_000_000)),
                )),
                (Motion::Services, 0) => Some((
                    "success_criteria",
                    "Go-live in one quarter with two workloads migrated".into(),
                )),
                (Motion::TechIsv, 0) => Some(("integration", "Warehouse connector".into())),
                _ => None,
            };
            if let (Some((field, value)), Some(fields)) = (fact, evidence.as_object_mut()) {
                fields.insert(field.into(), Value::String(value));
            }
            self.send(
                cmd::partner(partner),
                cmd::advance(&account, id, next, evidence),
            )
            .await?;
        }
        Ok(())
    }

    async fn partners_register(&mut self, day: i64) -> Result<(), DemoError> {
        let now = self.now();
        let known = self.registrations().await?;
        let count = 2 + self.dice.below(2);
        for _ in 0..count {
            let active: Vec<usize> = (0..self.cast.len())
                .filter(|i| self.cast[*i].active)
                .collect();
            let who = active[self.dice.below(active.len())];
            let motion = self.cast[who].motions[self.dice.below(self.cast[who].motions.len())];
            let lines = self.cast[who].certified;
            // Mostly a certified line; now and then one it is not certified for.
            let line = if self.dice.chance(6) {
                "payments"
            } else {
                lines[self.dice.below(lines.len())].0
            };
            // Rivals mostly chase deals still pending (a race the hierarchy settles); now
            // and then one tries a deal already protected (the uniqueness test says no).
            let others = |status: RegistrationStatus| -> Vec<&Submitted> {
                known
                    .iter()
                    .filter(|(s, r)| r.status == status && s.partner != who)
                    .map(|(s, _)| s)
                    .collect()
            };
            let pending = others(RegistrationStatus::Pending);
            let open = if !pending.is_empty() && self.dice.chance(85) {
                pending
            } else {
                others(RegistrationStatus::Protected)
            };
            // Three registrations in ten land on a deal another partner already works,
            // spelled as partners spell it (sometimes with `www.`): still one account.
            let (company, domain, line) = if !open.is_empty() && self.dice.chance(30) {
                let other = open[self.dice.below(open.len())];
                let (company, domain) = CUSTOMERS
                    .iter()
                    .find(|(_, d)| other.account.0 == *d)
                    .copied()
                    .unwrap_or(CUSTOMERS[0]);
                let spelled = if self.dice.chance(50) {
                    format!("www.{domain}")
                } else {
                    domain.to_string()
                };
                (company, spelled, other.line)
            } else {
                let (company, domain) = CUSTOMERS[self.dice.below(CUSTOMERS.len())];
                (company, domain.to_string(), line)
            };
            let account = AccountKey(domain.trim_start_matches("www.").to_string());
            // A partner does not register a deal it already has open.
            if known.iter().any(|(s, r)| {
                s.partner == who && s.account == account && s.line == line && r.status.is_open()
            }) {
                continue;
            }
            let id = self.ids.next_id(now);
            let amount_minor = (20 + self.dice.below(180) as i64) * 100_000;
            let close = (now + Duration::days(60 + self.dice.below(60) as i64))
                .format("%Y-%m-%d")
                .to_string();
            let kind = if day > 60 && self.dice.chance(5) {
                "renewal"
            } else {
                "new_business"
            };
            let partner = self.cast[who].id;
            // Mostly a customer in the partner's own region; now and then one outside it.
            let region = if self.dice.chance(5) {
                ["emea", "na", "apac"][self.dice.below(3)]
            } else {
                self.cast[who].region
            };
            let reply = self
                .send(
                    cmd::partner(partner),
                    cmd::submit(
                        id,
                        partner,
                        company,
                        &domain,
                        line,
                        motion,
                        amount_minor,
                        &close,
                        kind,
                        region,
                    ),
                )
                .await?;
            if reply.ok() {
                self.submitted.push(Submitted {
                    id: RegistrationId(id),
                    partner: who,
                    account,
                    line,
                });
            }
        }
        Ok(())
    }

    /// The channel manager acknowledges conflicts (one in six after the SLA), records a
    /// resolution plan a day after detection, and resolves them three days after it.
    async fn conflict_desk(&mut self) -> Result<(), DemoError> {
        let now = self.now();
        let late_by = Duration::hours(i64::from(self.policy.sla.conflict_ack_hours) + 6);
        for (account, state) in self.accounts().await? {
            for conflict in state.conflicts.values() {
                match conflict.status {
                    ConflictStatus::Open => {
                        if self.dice.chance(16) && now < conflict.detected_at + late_by {
                            continue;
                        }
                        self.send(
                            cmd::channel_manager(),
                            cmd::acknowledge_conflict(&account.0, &conflict.id.0),
                        )
                        .await?;
                    }
                    ConflictStatus::Acknowledged
                        if conflict.plan.is_none()
                            && now >= conflict.detected_at + Duration::days(1)
                            && now < conflict.detected_at + Duration::days(3) =>
                    {
                        let resolve_by = (conflict.detected_at + Duration::days(3)).date_naive();
                        self.send(
                            cmd::channel_manager(),
                            cmd::resolution_plan(&account.0, &conflict.id.0, resolve_by),
                        )
                        .await?;
                    }
                    ConflictStatus::Acknowledged
                        if now >= conflict.detected_at + Duration::days(3) =>
                    {
                        self.send(
                            cmd::channel_manager(),
                            cmd::resolve_conflict(&account.0, &conflict.id.0),
                        )
                        .await?;
                    }
                    ConflictStatus::Acknowledged
                    | ConflictStatus::Resolved
                    | ConflictStatus::Closed => {}
                }
            }
        }
        Ok(())
    }

    /// RevOps records refunds on about one win in eight, within the clawback window.
    async fn revenue_desk(&mut self) -> Result<(), DemoError> {
        let now = self.now();
        let due: Vec<(RegistrationId, AccountKey, i64)> = self
            .wins
            .iter()
            .filter(|(id, (_, won_at, _))| {
                now >= *won_at + Duration::days(20) && !self.refunds_considered.contains(id)
            })
            .map(|(id, (account, _, amount))| (*id, account.clone(), *amount))
            .collect();
        for (id, account, amount) in due {
            self.refunds_considered.insert(id);
            if self.dice.chance(12) {
                self.send(
                    cmd::revops(),
                    cmd::revenue_reversal(&account.0, id.0, amount / 4),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn program_events(&mut self, day: i64) -> Result<(), DemoError> {
        match day {
            20 | 50 | 85 => {
                // Direct sales starts working an account a partner has protected: vertical conflict.
                let protected: Vec<Submitted> = self
                    .registrations()
                    .await?
                    .into_iter()
                    .filter(|(_, r)| r.status == RegistrationStatus::Protected)
                    .map(|(s, _)| s)
                    .collect();
                if let Some(s) = protected.get(self.dice.below(protected.len().max(1))) {
                    let opportunity = self.ids.next_id(self.now());
                    self.send(
                        cmd::direct_sales(),
                        cmd::direct_opportunity(&s.account.0, opportunity, s.line, 9_000_000),
                    )
                    .await?;
                }
            }
            10 => {
                // Hooli is Contoso's exclusive named account; Globex is shared with Fabrikam.
                let (contoso, fabrikam) = (self.cast[1].id, self.cast[2].id);
                self.send(
                    cmd::channel_manager(),
                    cmd::named_account("hooli.com", contoso, true),
                )
                .await?;
                self.send(
                    cmd::channel_manager(),
                    cmd::named_account("globex.com", fabrikam, false),
                )
                .await?;
            }
            30 => {
                let id = self.cast[0].id;
                self.send(cmd::channel_manager(), cmd::change_tier(id, "gold"))
                    .await?;
            }
            75 => {
                let litware = 6;
                let id = self.cast[litware].id;
                let reply = self
                    .send(
                        cmd::channel_manager(),
                        cmd::offboard(id, "Partner agreement ended by mutual consent"),
                    )
                    .await?;
                if reply.ok() {
                    self.cast[litware].active = false;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn expect_ok(reply: &ReplyLine, what: &str) -> Result<(), DemoError> {
    if reply.ok() {
        Ok(())
    } else {
        Err(DemoError::Refused(format!("{what}: {:?}", reply.refusal())))
    }
}
