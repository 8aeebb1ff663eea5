//! The demo's story: eight partners across all five motions over 120 simulated days.
//!
//! Every day the timekeeper sends what fell due (reminders, expiries, SLA breaches,
//! inactivity), the channel manager decides pending registrations (some late, on purpose),
//! partners register deals (some on accounts another partner already works), deals move
//! through their motion's stages, some are extended, won with attribution, or lost; direct
//! sales records opportunities on partner accounts; one partner is offboarded.
//! The randomness is a fixed-seed generator, so every run tells the same story.

use chrono::{DateTime, Duration, Utc};
use dealreg_clock::ControlledClock;
use dealreg_store::EventStore;
use serde_json::{json, Value};
use uuid::Uuid;

use super::commands as cmd;
use crate::engine::Engine;
use crate::envelope::CommandEnvelope;
use crate::reply::Reply;

pub const DAYS: i64 = 120;

/// What the story did, as counted by the driver (the summary itself is folded from the log).
#[derive(Debug, Default, Clone)]
pub struct StoryReport {
    pub commands: usize,
    pub accepted: usize,
    pub rejected: usize,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Pending,
    Protected,
    Declined,
    Closed,
}

struct Deal {
    id: Uuid,
    partner: usize,
    account: String,
    line: &'static str,
    motion: &'static str,
    status: Status,
    submitted_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_touch: DateTime<Utc>,
    stage: usize,
    reminded: bool,
    sla_flagged: bool,
    inactive_flagged: bool,
    extensions: u32,
    declined_at: Option<DateTime<Utc>>,
    appealed: bool,
    appeal_filed_at: Option<DateTime<Utc>>,
    sourcing_set: bool,
    amount_minor: i64,
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

const STAGES: &[(&str, [&str; 5])] = &[
    (
        "referral",
        [
            "intro_logged",
            "validate",
            "prove_value",
            "commercials",
            "closed_and_credit",
        ],
    ),
    (
        "reseller",
        [
            "deal_registration",
            "qualification",
            "configure_and_quote",
            "transact",
            "launch_and_enable",
        ],
    ),
    (
        "marketplace",
        [
            "listing_ready",
            "private_offer",
            "procurement",
            "close_and_disburse",
            "adopt_and_expand",
        ],
    ),
    (
        "services",
        [
            "solution_design",
            "proof_workshop",
            "commercials",
            "delivery",
            "handoff",
        ],
    ),
    (
        "tech_isv",
        [
            "integration_fit",
            "field_readiness",
            "pipeline_activation",
            "validation",
            "commercials_and_close",
        ],
    ),
];

fn stage_name(motion: &str, index: usize) -> &'static str {
    STAGES
        .iter()
        .find(|(m, _)| *m == motion)
        .and_then(|(_, stages)| stages.get(index).copied())
        .unwrap_or("unknown")
}

/// A tiny fixed-seed generator (xorshift64*): the demo must tell the same story every run.
struct Dice(u64);

impl Dice {
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

struct Story<'e, S, C> {
    engine: &'e Engine<S, C>,
    clock: &'e ControlledClock,
    cast: Vec<Cast>,
    deals: Vec<Deal>,
    dice: Dice,
    report: StoryReport,
    /// Conflicts seen in replies: (account, conflict id, detected at, acknowledged).
    conflicts: Vec<(String, String, DateTime<Utc>, bool)>,
    /// Won deals: (account, registration, won at, amount, reversed already).
    wins: Vec<(String, Uuid, DateTime<Utc>, i64, bool)>,
}

pub async fn play<S: EventStore + Clone>(
    engine: &Engine<S, ControlledClock>,
    clock: &ControlledClock,
    start: DateTime<Utc>,
) -> Result<StoryReport, String> {
    let mut story = Story {
        engine,
        clock,
        cast: cast(),
        deals: Vec::new(),
        dice: Dice(0x5EED_DEA1_2026_0105),
        report: StoryReport::default(),
        conflicts: Vec::new(),
        wins: Vec::new(),
    };
    story.onboard_partners().await?;
    for day in 0..=DAYS {
        clock.set(start + Duration::days(day) + Duration::hours((day % 3) * 2));
        story.timekeeper().await?;
        story.channel_manager_decides().await?;
        story.appeals().await?;
        story.deals_progress().await?;
        story.partners_register(day).await?;
        story.program_events(day).await?;
        story.conflict_desk().await?;
        story.revenue_desk().await?;
        story.report.days = day;
    }
    Ok(story.report)
}

fn cast() -> Vec<Cast> {
    let c = |name, motions, tier, region, certified| Cast {
        id: Uuid::now_v7(),
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

impl<S: EventStore + Clone> Story<'_, S, ControlledClock> {
    async fn send(&mut self, actor: Value, command: Value) -> Result<Reply, String> {
        let body = json!({ "idempotency_key": Uuid::now_v7().to_string(), "actor": actor, "command": command });
        let envelope = CommandEnvelope::parse(body.to_string().as_bytes()).map_err(|e| {
            format!("the demo built a command the engine cannot read ({e}): {body}")
        })?;
        let executed = self
            .engine
            .execute(envelope)
            .await
            .map_err(|e| e.to_string())?;
        self.report.commands += 1;
        for e in &executed.reply.events {
            if let dealreg_domain::Event::ConflictDetected {
                account,
                conflict_id,
                at,
                ..
            } = &e.event
            {
                self.conflicts
                    .push((account.0.clone(), conflict_id.0.clone(), *at, false));
            }
        }
        if executed.reply.ok {
            self.report.accepted += 1;
        } else {
            self.report.rejected += 1;
            let error = executed.reply.error.as_ref();
            tracing::debug!(command = %executed.reply.command, code = ?error.map(|e| e.code.to_string()), "demo command rejected");
        }
        Ok(executed.reply)
    }

    fn now(&self) -> DateTime<Utc> {
        use dealreg_clock::Clock;
        self.clock.now()
    }

    async fn onboard_partners(&mut self) -> Result<(), String> {
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

    /// The system's deadlines, as a timekeeper would send them.
    async fn timekeeper(&mut self) -> Result<(), String> {
        let now = self.now();
        for i in 0..self.deals.len() {
            let (status, account, id) = (
                self.deals[i].status,
                self.deals[i].account.clone(),
                self.deals[i].id,
            );
            match status {
                Status::Pending
                    if !self.deals[i].sla_flagged
                        && now >= self.deals[i].submitted_at + Duration::hours(48) =>
                {
                    self.deals[i].sla_flagged = true;
                    self.send(cmd::timekeeper(), cmd::flag_sla(&account, id))
                        .await?;
                }
                Status::Protected => {
                    let Some(expires_at) = self.deals[i].expires_at else {
                        continue;
                    };
                    if now >= expires_at {
                        let reply = self
                            .send(cmd::timekeeper(), cmd::expire(&account, id))
                            .await?;
                        if reply.ok {
                            self.deals[i].status = Status::Closed;
                        }
                    } else if !self.deals[i].reminded && now >= expires_at - Duration::days(7) {
                        self.deals[i].reminded = true;
                        self.send(cmd::timekeeper(), cmd::remind(&account, id))
                            .await?;
                    } else if !self.deals[i].inactive_flagged
                        && now >= self.deals[i].last_touch + Duration::days(30)
                    {
                        self.deals[i].inactive_flagged = true;
                        self.send(cmd::timekeeper(), cmd::flag_inactive(&account, id))
                            .await?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn channel_manager_decides(&mut self) -> Result<(), String> {
        let now = self.now();
        for i in 0..self.deals.len() {
            if self.deals[i].status != Status::Pending
                || now < self.deals[i].submitted_at + Duration::hours(20)
            {
                continue;
            }
            // One registration in seven waits three days: the approval SLA is breached.
            if self.deals[i].id.as_u128().is_multiple_of(7)
                && now < self.deals[i].submitted_at + Duration::hours(72)
            {
                continue;
            }
            let (account, id) = (self.deals[i].account.clone(), self.deals[i].id);
            if self.dice.chance(8) {
                let reply = self
                    .send(
                        cmd::channel_manager(),
                        cmd::decline(
                            &account,
                            id,
                            "insufficient_proof_of_work",
                            "No evidence of a customer meeting; resubmit with meeting notes",
                        ),
                    )
                    .await?;
                if reply.ok {
                    self.deals[i].status = Status::Declined;
                    self.deals[i].declined_at = Some(now);
                }
                continue;
            }
            let reply = self
                .send(cmd::channel_manager(), cmd::approve(&account, id))
                .await?;
            if reply.ok {
                self.deals[i].status = Status::Protected;
                self.deals[i].last_touch = now;
                self.deals[i].expires_at = field(&reply, "registration_approved", "expires_at")
                    .and_then(|v| serde_json::from_value::<DateTime<Utc>>(v).ok());
            } else {
                let why = reply
                    .error
                    .as_ref()
                    .map(|e| e.message.clone())
                    .unwrap_or_default();
                let reply = self
                    .send(
                        cmd::channel_manager(),
                        cmd::decline(
                            &account,
                            id,
                            "channel_conflict",
                            &format!("Conflict hierarchy: {why}"),
                        ),
                    )
                    .await?;
                if reply.ok {
                    self.deals[i].status = Status::Declined;
                    self.deals[i].declined_at = Some(now);
                }
            }
        }
        Ok(())
    }

    async fn appeals(&mut self) -> Result<(), String> {
        let now = self.now();
        for i in 0..self.deals.len() {
            let d = &self.deals[i];
            let (account, id, partner) = (d.account.clone(), d.id, self.cast[d.partner].id);
            if d.status != Status::Declined {
                continue;
            }
            if let Some(filed) = d.appeal_filed_at {
                if now >= filed + Duration::days(2) {
                    let upheld = self.dice.chance(40);
                    let reply = self
                        .send(
                            cmd::channel_manager(),
                            cmd::decide_appeal(&account, id, upheld),
                        )
                        .await?;
                    self.deals[i].appeal_filed_at = None;
                    if reply.ok && upheld {
                        self.deals[i].status = Status::Pending;
                        self.deals[i].submitted_at = now;
                    } else {
                        self.deals[i].status = Status::Closed;
                    }
                }
                continue;
            }
            let Some(declined_at) = d.declined_at else {
                continue;
            };
            if !d.appealed && now >= declined_at + Duration::days(1) && self.dice.chance(35) {
                self.deals[i].appealed = true;
                // One appeal in five comes too late, after the window closed.
                let late = self.dice.chance(20);
                if late {
                    continue;
                }
                let reply = self
                    .send(cmd::partner(partner), cmd::appeal(&account, id))
                    .await?;
                if reply.ok {
                    self.deals[i].appeal_filed_at = Some(now);
                }
            } else if d.appealed && now >= declined_at + Duration::days(12) {
                // The late appellant tries after the 10-day window: recorded and refused.
                self.deals[i].status = Status::Closed;
                self.send(cmd::partner(partner), cmd::appeal(&account, id))
                    .await?;
            }
        }
        Ok(())
    }

    async fn deals_progress(&mut self) -> Result<(), String> {
        let now = self.now();
        let tailspin = self.cast[5].id;
        for i in 0..self.deals.len() {
            if self.deals[i].status != Status::Protected || !self.cast[self.deals[i].partner].active
            {
                continue;
            }
            let (account, id, motion, partner) = {
                let d = &self.deals[i];
                (d.account.clone(), d.id, d.motion, self.cast[d.partner].id)
            };
            let expires_at = self.deals[i].expires_at.unwrap_or(now);
            if expires_at - now <= Duration::days(10)
                && self.deals[i].extensions == 0
                && self.dice.chance(60)
            {
                let reply = self
                    .send(cmd::channel_manager(), cmd::extend(&account, id))
                    .await?;
                if reply.ok {
                    self.deals[i].extensions += 1;
                    self.deals[i].reminded = false;
                    self.deals[i].expires_at = field(&reply, "protection_extended", "expires_at")
                        .and_then(|v| serde_json::from_value::<DateTime<Utc>>(v).ok())
                        .or(self.deals[i].expires_at);
                }
                continue;
            }
            // Some deals go quiet: no touch, so inactivity and expiry catch them.
            if id.as_u128() % 5 == 1 || now < self.deals[i].last_touch + Duration::days(9) {
                continue;
            }
            if self.dice.chance(3) {
                let reply = self
                    .send(cmd::partner(partner), cmd::withdraw(&account, id))
                    .await?;
                if reply.ok {
                    self.deals[i].status = Status::Closed;
                }
                continue;
            }
            if !self.deals[i].sourcing_set {
                self.deals[i].sourcing_set = true;
                if motion == "tech_isv" {
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
            let stage = self.deals[i].stage;
            if stage >= 3 {
                let roll = self.dice.below(100);
                if roll < 65 {
                    let amount =
                        self.deals[i].amount_minor + (self.dice.below(20) as i64 - 5) * 100_000;
                    let reply = self
                        .send(
                            cmd::channel_manager(),
                            cmd::won(&account, id, amount.max(100_000)),
                        )
                        .await?;
                    if reply.ok {
                        self.deals[i].status = Status::Closed;
                        self.wins
                            .push((account.clone(), id, now, amount.max(100_000), false));
                    }
                } else if roll < 85 {
                    let reply = self
                        .send(cmd::channel_manager(), cmd::lost(&account, id))
                        .await?;
                    if reply.ok {
                        self.deals[i].status = Status::Closed;
                    }
                }
                continue;
            }
            let next = stage_name(motion, stage + 1);
            let evidence = json!({
                "note": format!("Exit criteria of {} met", stage_name(motion, stage)),
                "discount_percent": 8 + self.dice.below(6),
                "next_step": format!("Prepare {next}"),
            });
            let reply = self
                .send(
                    cmd::partner(partner),
                    cmd::advance(&account, id, next, evidence),
                )
                .await?;
            if reply.ok {
                self.deals[i].stage += 1;
                self.deals[i].last_touch = now;
                self.deals[i].inactive_flagged = false;
            }
        }
        Ok(())
    }

    async fn partners_register(&mut self, day: i64) -> Result<(), String> {
        let now = self.now();
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
            // One registration in five lands on an account another partner already works.
            // Rivals mostly chase deals still pending (a race the hierarchy settles); now
            // and then one tries a deal already protected (the uniqueness test says no).
            let pending: Vec<usize> = (0..self.deals.len())
                .filter(|i| {
                    self.deals[*i].status == Status::Pending && self.deals[*i].partner != who
                })
                .collect();
            let protected: Vec<usize> = (0..self.deals.len())
                .filter(|i| {
                    self.deals[*i].status == Status::Protected && self.deals[*i].partner != who
                })
                .collect();
            let open = if !pending.is_empty() && self.dice.chance(85) {
                pending
            } else {
                protected
            };
            // One registration in four lands on a deal another partner already works,
            // spelled as partners spell it (sometimes with `www.`): still one account.
            let (company, domain, line) = if !open.is_empty() && self.dice.chance(30) {
                let other = &self.deals[open[self.dice.below(open.len())]];
                let (company, domain) = CUSTOMERS
                    .iter()
                    .find(|(_, d)| other.account == *d)
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
            let account = domain.trim_start_matches("www.").to_string();
            // A partner does not register a deal it already has open.
            if self.deals.iter().any(|d| {
                d.partner == who
                    && d.account == account
                    && d.line == line
                    && matches!(d.status, Status::Pending | Status::Protected)
            }) {
                continue;
            }
            let id = Uuid::now_v7();
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
                    ),
                )
                .await?;
            if reply.ok {
                self.deals.push(Deal {
                    id,
                    partner: who,
                    account,
                    line,
                    motion,
                    status: Status::Pending,
                    submitted_at: now,
                    expires_at: None,
                    last_touch: now,
                    stage: 0,
                    reminded: false,
                    sla_flagged: false,
                    inactive_flagged: false,
                    extensions: 0,
                    declined_at: None,
                    appealed: false,
                    appeal_filed_at: None,
                    sourcing_set: false,
                    amount_minor,
                });
            }
        }
        Ok(())
    }

    /// The channel manager acknowledges conflicts (one in six after the 24 h SLA) and
    /// resolves them three days after detection.
    async fn conflict_desk(&mut self) -> Result<(), String> {
        let now = self.now();
        for i in 0..self.conflicts.len() {
            let (account, id, detected, acknowledged) = self.conflicts[i].clone();
            if !acknowledged && now >= detected {
                let late = self.dice.chance(16);
                if late && now < detected + Duration::hours(30) {
                    continue;
                }
                self.conflicts[i].3 = true;
                self.send(
                    cmd::channel_manager(),
                    cmd::acknowledge_conflict(&account, &id),
                )
                .await?;
            } else if acknowledged && now >= detected + Duration::days(3) && !id.is_empty() {
                self.conflicts[i].1 = String::new();
                self.send(cmd::channel_manager(), cmd::resolve_conflict(&account, &id))
                    .await?;
            }
        }
        Ok(())
    }

    /// RevOps records refunds on about one win in eight, within the clawback window.
    async fn revenue_desk(&mut self) -> Result<(), String> {
        let now = self.now();
        for i in 0..self.wins.len() {
            let (account, id, won_at, amount, reversed) = self.wins[i].clone();
            if reversed || now < won_at + Duration::days(20) {
                continue;
            }
            self.wins[i].4 = true;
            if self.dice.chance(12) {
                let refund = amount / 4;
                self.send(cmd::revops(), cmd::revenue_reversal(&account, id, refund))
                    .await?;
            }
        }
        Ok(())
    }

    async fn program_events(&mut self, day: i64) -> Result<(), String> {
        match day {
            20 | 50 | 85 => {
                // Direct sales starts working an account a partner has protected: vertical conflict.
                let protected: Vec<usize> = (0..self.deals.len())
                    .filter(|i| self.deals[*i].status == Status::Protected)
                    .collect();
                if let Some(&i) = protected.get(self.dice.below(protected.len().max(1))) {
                    let (account, line) = (self.deals[i].account.clone(), self.deals[i].line);
                    self.send(
                        cmd::direct_sales(),
                        cmd::direct_opportunity(&account, line, 9_000_000),
                    )
                    .await?;
                }
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
                if reply.ok {
                    self.cast[litware].active = false;
                    for deal in self.deals.iter_mut().filter(|d| d.partner == litware) {
                        if matches!(deal.status, Status::Pending | Status::Protected) {
                            deal.status = Status::Closed;
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn expect_ok(reply: &Reply, what: &str) -> Result<(), String> {
    if reply.ok {
        Ok(())
    } else {
        Err(format!("{what} was refused: {:?}", reply.error))
    }
}

/// A field of the first event of `event_type` in a reply, as JSON.
fn field(reply: &Reply, event_type: &str, name: &str) -> Option<Value> {
    reply
        .events
        .iter()
        .find(|e| e.event.event_type() == event_type)
        .and_then(|e| serde_json::to_value(&e.event).ok())
        .and_then(|v| v.get(name).cloned())
}
