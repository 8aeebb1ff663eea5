//! The views as text a person reads: pipeline tables, the ledger, conflict flags, program
//! metrics. Pure formatting (a `String` out), shared by `dealreg view` and the demo.
//!
//! Why every word goes through [`word`]: the text and the JSON of a view must say the same
//! thing, so enum values print as their JSON (snake_case) names, never as Rust names.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, Utc};
use dealreg_domain::{AccountKey, Currency, PartnerId};
use serde::Serialize;

use crate::conflicts::{ConflictFlag, DuplicateFlag};
use crate::ledger::Ledger;
use crate::metrics::ProgramMetrics;
use crate::pipeline::{Grouped, PartnerRow, ProtectionStatus, VendorRow};

/// A value's JSON name (`multi_channel`, `awaiting_decision`...), for enums that serialise
/// as strings; anything else prints as its JSON text.
pub fn word<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}

fn date(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "-".into())
}

/// The expiry a person should see: only while protection is running.
fn expiry(protection: ProtectionStatus, at: Option<DateTime<Utc>>) -> String {
    match protection {
        ProtectionStatus::Protected | ProtectionStatus::ExpiringSoon => date(at),
        _ => "-".into(),
    }
}

use dealreg_domain::money::format_amount as money;

/// Rows grouped by motion, then stage, one line per row.
fn grouped<R>(view: &Grouped<R>, line: impl Fn(&R) -> String) -> String {
    let mut out = String::new();
    for (motion, stages) in view {
        let _ = writeln!(out, "{}", motion.as_str());
        for (stage, rows) in stages {
            let _ = writeln!(out, "  {stage} ({})", rows.len());
            for row in rows {
                let _ = writeln!(out, "    {}", line(row));
            }
        }
    }
    out
}

/// A partner's own pipeline (safe fields only, as the view holds them).
pub fn partner_pipeline(view: &Grouped<PartnerRow>) -> String {
    grouped(view, |r| {
        // After a win: when it renews and whether the renewal is the viewer's.
        let renewal = match (r.renewal_date, r.renewal_owner) {
            (Some(on), Some(owner)) => format!("  renews {on} ({})", word(&owner)),
            (Some(on), None) => format!("  renews {on}"),
            _ => String::new(),
        };
        format!(
            "{:<28} {:<10} {:<10} {:<10} {:<18} expires {:<10}  next: {}{renewal}",
            r.company,
            r.product_line,
            word(&r.role),
            r.status,
            word(&r.protection),
            expiry(r.protection, r.protection_expires_at),
            r.next_step.as_deref().unwrap_or("-")
        )
    })
}

/// The vendor's full pipeline.
pub fn vendor_pipeline(view: &Grouped<VendorRow>) -> String {
    grouped(view, |r| {
        format!(
            "{:<24} {:<26} {:<10} {:<10} {:>16} expires {:<10}",
            r.partner,
            r.company,
            r.product_line,
            r.status,
            r.won_amount
                .as_ref()
                .unwrap_or(&r.estimated_amount)
                .to_string(),
            expiry(r.protection, r.protection_expires_at),
        )
    })
}

/// The ledger: balances, then entries, in exact currency units.
pub fn ledger(ledger: &Ledger, partner: Option<PartnerId>) -> String {
    let mut out = String::from("balances\n");
    for (p, by_currency) in ledger.balances() {
        if partner.is_some_and(|q| q != *p) {
            continue;
        }
        for (currency, minor) in by_currency {
            let _ = writeln!(out, "  {p}  {:>18}", money(*minor, currency));
        }
    }
    out.push_str("entries\n");
    for e in ledger
        .entries()
        .filter(|e| partner.is_none_or(|p| p == e.partner_id))
    {
        let _ = writeln!(
            out,
            "  {}  {:<8} {:<10} {:>5} bps  {:>16}  {}  policy v{}",
            e.at.format("%Y-%m-%d"),
            word(&e.kind),
            e.credit.map_or("-".to_string(), |c| word(&c)),
            e.rate_bps,
            money(e.amount_minor, &e.currency),
            e.registration_id
                .map_or("payout".to_string(), |r| r.to_string()),
            e.policy_version
        );
    }
    out
}

/// Conflict flags and likely duplicates.
pub fn conflicts(
    conflicts: &[(&AccountKey, &ConflictFlag)],
    duplicates: &[&DuplicateFlag],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "conflicts ({})", conflicts.len());
    for (account, f) in conflicts {
        let _ = writeln!(
            out,
            "  {:<22} {:<24} {:<10} {:<7} ack by {} {}  plan by {}  {}",
            account.0,
            word(&f.kind),
            f.product_line,
            word(&f.status),
            f.acknowledge_by.format("%Y-%m-%d %H:%M"),
            if f.acknowledged_at.is_some() {
                "(done)"
            } else {
                "      "
            },
            f.resolution_plan_by.format("%Y-%m-%d"),
            f.reasons.join("; ")
        );
    }
    let _ = writeln!(out, "likely duplicate accounts ({})", duplicates.len());
    for d in duplicates {
        let _ = writeln!(
            out,
            "  {} ~ {}  {}",
            d.accounts[0],
            d.accounts[1],
            d.reasons.join("; ")
        );
    }
    out
}

/// Program metrics by motion, SLA compliance and conflicts.
pub fn metrics(m: &ProgramMetrics) -> String {
    let pct =
        |bps: Option<u64>| bps.map_or("-".to_string(), |b| format!("{}.{:02} %", b / 100, b % 100));
    let amounts = |by: &BTreeMap<Currency, i128>| {
        if by.is_empty() {
            return "-".to_string();
        }
        by.iter()
            .map(|(c, minor)| money(*minor, c))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>9} {:>5} {:>5} {:>9} {:>10} {:>20} {:>20}",
        "motion", "submitted", "won", "lost", "win rate", "cycle", "sourced", "influenced"
    );
    for (motion, x) in &m.motions {
        let _ = writeln!(
            out,
            "{:<12} {:>9} {:>5} {:>5} {:>9} {:>10} {:>20} {:>20}",
            motion.as_str(),
            x.submitted,
            x.won,
            x.lost,
            pct(x.win_rate_bps()),
            x.average_cycle_days()
                .map_or("-".to_string(), |d| format!("{d} days")),
            amounts(&x.sourced_minor),
            amounts(&x.influenced_minor)
        );
    }
    let _ = writeln!(
        out,
        "approval SLA compliance: {} of {} decisions on time ({})",
        m.decisions_on_time,
        m.decisions,
        pct(m.sla_compliance_bps())
    );
    for (kind, c) in &m.conflicts {
        let hours = if c.resolved > 0 {
            format!(
                "{} h average to resolve",
                c.resolution_hours_total / c.resolved as i64
            )
        } else {
            "none resolved".into()
        };
        let _ = writeln!(
            out,
            "conflicts {:<24} {:>4} detected, {:>4} resolved, {:>4} closed by themselves, {hours}",
            word(kind),
            c.detected,
            c.resolved,
            c.closed
        );
    }
    out
}
