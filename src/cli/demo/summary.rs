//! What a channel manager wants to see after the demo, folded from the recorded log only.

use std::collections::BTreeMap;
use std::path::Path;

use dealreg_store::{EventStore, GlobalPosition, LogPages};
use serde_json::Value;

use super::story::StoryReport;
use crate::cli::verify::ChainReport;

#[derive(Debug, Default)]
pub struct Summary {
    pub events: u64,
    pub partners: BTreeMap<String, String>,
    /// registration id -> (motion, status, partner id, account, product line)
    pub registrations: BTreeMap<String, Registration>,
    pub conflicts: BTreeMap<String, usize>,
    pub conflict_examples: Vec<String>,
    pub rejections: BTreeMap<String, usize>,
    pub expired: Vec<String>,
    pub reminders: usize,
    pub sla_breaches: usize,
    pub inactive: usize,
    pub extensions: usize,
    pub appeals: usize,
    pub appeals_upheld: usize,
    pub won_minor: BTreeMap<String, i64>,
    pub released: usize,
    pub offboarded: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Registration {
    pub motion: String,
    pub status: String,
    pub partner: String,
    pub account: String,
    pub product_line: String,
}

fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) if !other.is_null() => other.to_string(),
        _ => String::new(),
    }
}

pub async fn fold<S: EventStore>(store: &S) -> Result<Summary, crate::EngineError> {
    let mut summary = Summary::default();
    let mut pages = LogPages::new(store, GlobalPosition::ORIGIN, 2048);
    while let Some(page) = pages.next_page().await? {
        for recorded in &page {
            summary.events += 1;
            let Ok(event) = serde_json::from_slice::<Value>(&recorded.data) else {
                continue;
            };
            apply(&mut summary, recorded.event_type.as_str(), &event);
        }
    }
    Ok(summary)
}

fn apply(s: &mut Summary, event_type: &str, e: &Value) {
    let registration = text(e, "registration_id");
    let set_status = |s: &mut Summary, status: &str| {
        if let Some(r) = s.registrations.get_mut(&registration) {
            r.status = status.to_string();
        }
    };
    match event_type {
        "partner_onboarded" => {
            s.partners.insert(text(e, "partner_id"), text(e, "name"));
        }
        "partner_offboarded" => {
            let id = text(e, "partner_id");
            s.offboarded
                .push(s.partners.get(&id).cloned().unwrap_or(id));
        }
        "registration_submitted" => {
            let account = text(e, "account");
            s.registrations.insert(
                registration.clone(),
                Registration {
                    motion: text(e, "motion"),
                    status: "pending".into(),
                    partner: text(e, "partner_id"),
                    account,
                    product_line: text(e, "product_line"),
                },
            );
        }
        "registration_approved" => set_status(s, "protected"),
        "registration_declined" => set_status(s, "declined"),
        "registration_withdrawn" => set_status(s, "withdrawn"),
        "registration_released" => {
            s.released += 1;
            set_status(s, "released");
        }
        "protection_expired" => {
            set_status(s, "expired");
            if let Some(r) = s.registrations.get(&registration) {
                let partner = s.partners.get(&r.partner).cloned().unwrap_or_default();
                s.expired.push(format!(
                    "{} · {} · {} · expired {}",
                    r.account,
                    r.product_line,
                    partner,
                    text(e, "at").get(..10).unwrap_or_default()
                ));
            }
        }
        "deal_won" => {
            set_status(s, "won");
            if let Some(r) = s.registrations.get(&registration) {
                let amount = e
                    .get("amount")
                    .and_then(|a| a.get("amount_minor"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                *s.won_minor.entry(r.motion.clone()).or_default() += amount;
            }
        }
        "deal_lost" => set_status(s, "lost"),
        "appeal_filed" => s.appeals += 1,
        "appeal_decided" if e.get("upheld").and_then(Value::as_bool) == Some(true) => {
            s.appeals_upheld += 1;
            set_status(s, "pending");
        }
        "protection_extended" => s.extensions += 1,
        "expiry_reminder_sent" => s.reminders += 1,
        "approval_sla_breached" => s.sla_breaches += 1,
        "registration_flagged_inactive" => s.inactive += 1,
        "conflict_detected" => {
            let kind = text(e, "kind");
            *s.conflicts.entry(kind.clone()).or_default() += 1;
            if s.conflict_examples.len() < 6 {
                let reasons = e.get("reasons").map(|r| r.to_string()).unwrap_or_default();
                s.conflict_examples
                    .push(format!("{kind:<22} {} {}", text(e, "account"), reasons));
            }
        }
        "command_rejected" => {
            *s.rejections.entry(text(e, "code")).or_default() += 1;
        }
        _ => {}
    }
}

pub(super) fn money(minor: i64) -> String {
    let units = minor / 100;
    let mut digits = units.to_string();
    let mut out = String::new();
    while digits.len() > 3 {
        let tail = digits.split_off(digits.len() - 3);
        out = format!(",{tail}{out}");
    }
    format!("{digits}{out}.{:02}", (minor % 100).abs())
}

pub fn print(s: &Summary, report: &StoryReport, chains: &ChainReport, path: &Path) {
    const MOTIONS: [&str; 5] = [
        "referral",
        "reseller",
        "marketplace",
        "services",
        "tech_isv",
    ];
    const STATUSES: [&str; 9] = [
        "pending",
        "protected",
        "won",
        "lost",
        "declined",
        "expired",
        "withdrawn",
        "released",
        "total",
    ];
    println!("dealreg demo: {} simulated days, {} partners, {} commands ({} accepted, {} refused by the rules), {} events", report.days, s.partners.len(), report.commands, report.accepted, report.rejected, s.events);
    println!();
    println!("Registrations by status and motion");
    print!("  {:<12}", "motion");
    for status in STATUSES {
        print!("{status:>10}");
    }
    println!();
    let mut column_totals = [0usize; 9];
    for motion in MOTIONS {
        print!("  {motion:<12}");
        let mut row_total = 0;
        for (i, status) in STATUSES.iter().enumerate() {
            let n = if *status == "total" {
                row_total
            } else {
                let n = s
                    .registrations
                    .values()
                    .filter(|r| r.motion == motion && r.status == *status)
                    .count();
                row_total += n;
                n
            };
            column_totals[i] += n;
            print!("{n:>10}");
        }
        println!();
    }
    print!("  {:<12}", "all");
    for n in column_totals {
        print!("{n:>10}");
    }
    println!();
    println!();
    println!("Won (sourced and influenced deals, exact amounts)");
    for motion in MOTIONS {
        if let Some(minor) = s.won_minor.get(motion) {
            println!("  {motion:<12} USD {:>16}", money(*minor));
        }
    }
    println!();
    println!("Conflicts caught: {}", s.conflicts.values().sum::<usize>());
    for (kind, n) in &s.conflicts {
        println!("  {kind:<24}{n:>6}");
    }
    for example in &s.conflict_examples {
        println!("    e.g. {example}");
    }
    println!();
    println!(
        "Protection windows: {} expired, {} reminders sent 7 days ahead, {} extended",
        s.expired.len(),
        s.reminders,
        s.extensions
    );
    for line in s.expired.iter().take(10) {
        println!("  expired: {line}");
    }
    if s.expired.len() > 10 {
        println!("  ... and {} more", s.expired.len() - 10);
    }
    println!();
    println!("SLAs and follow-up: {} approval SLA breaches (48 h), {} registrations flagged inactive (30 days)", s.sla_breaches, s.inactive);
    println!("Appeals: {} filed, {} upheld", s.appeals, s.appeals_upheld);
    println!(
        "Offboarded: {} ({} open registrations released)",
        if s.offboarded.is_empty() {
            "none".to_string()
        } else {
            s.offboarded.join(", ")
        },
        s.released
    );
    println!();
    println!("Refused by the rules (every attempt is recorded as command_rejected):");
    for (code, n) in &s.rejections {
        println!("  {code:<32}{n:>6}");
    }
    println!();
    println!(
        "Hash chains: {} events in {} streams, {}",
        chains.events,
        chains.streams,
        if chains.breaks.is_empty() {
            "all intact".to_string()
        } else {
            format!("{} BREAKS", chains.breaks.len())
        }
    );
    println!(
        "Store: {} (open it with `sqlite3`, or `dealreg --store {} events`)",
        path.display(),
        path.display()
    );
}
