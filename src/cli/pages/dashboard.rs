//! `GET /`: the channel team's dashboard, from the stored views (pipeline, conflicts,
//! metrics, program, ledger) brought up to date from their checkpoints.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use dealreg_clock::Clock;
use dealreg_domain::money::{format_minor, Currency};
use dealreg_events::EventStore;
use dealreg_projections::conflicts::{ConflictFlags, FlagStatus};
use dealreg_projections::ledger::Ledger;
use dealreg_projections::metrics::ProgramMetrics;
use dealreg_projections::pipeline::{Pipeline, ProtectionStatus};
use dealreg_projections::program::Program;
use hyper::StatusCode;

use super::layout::{self, attr, escape, figure, money, when, Page};
use super::server::Seen;
use super::svg::{self, Datum};
use super::Pages;
use crate::cli::view::{state, AsOf};

pub(super) async fn page<S: EventStore, C: Clock>(pages: &Pages<S, C>, seen: &Seen) -> Page {
    match build(pages, seen).await {
        Ok(body) => layout::page(
            StatusCode::OK,
            "Partner program",
            Some((
                &format!("{} ({})", seen.session.user, seen.session.role.label()),
                &seen.session.csrf,
            )),
            &body,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "the dashboard could not be built");
            layout::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "The dashboard is not available",
                "The views could not be read now; try again in a minute.",
            )
        }
    }
}

async fn build<S: EventStore, C: Clock>(
    pages: &Pages<S, C>,
    _seen: &Seen,
) -> Result<String, String> {
    let spec = &pages.spec;
    let (pipeline, _) = state::<Pipeline>(spec, AsOf::Now).await?;
    let (flags, _) = state::<ConflictFlags>(spec, AsOf::Now).await?;
    let (metrics, _) = state::<ProgramMetrics>(spec, AsOf::Now).await?;
    let (program, _) = state::<Program>(spec, AsOf::Now).await?;
    let (ledger, _) = state::<Ledger>(spec, AsOf::Now).await?;
    let weeks = {
        let mut weekly = pages.sla.lock().await;
        weekly.update(spec).await?;
        weekly.weeks.clone()
    };
    let names: BTreeMap<_, _> = pipeline
        .partners()
        .map(|(id, n)| (*id, n.clone()))
        .collect();
    let decision_hours = pages
        .engine
        .policy()
        .await
        .map(|p| i64::from(p.decision_hours()))
        .unwrap_or(48);
    let mut out = String::new();
    out.push_str(&pipeline_section(&pipeline));
    out.push_str(&conflicts_section(&flags));
    out.push_str(&sla_section(&metrics, &weeks));
    out.push_str(&revenue_section(&metrics, &program));
    out.push_str(&commissions_section(&ledger, &names));
    out.push_str(&expiring_section(&pipeline));
    out.push_str(&waiting_section(&pipeline, decision_hours));
    Ok(out)
}

fn pipeline_section(pipeline: &Pipeline) -> String {
    let mut rows = String::new();
    for (motion, stages) in pipeline.vendor_view() {
        for (stage, regs) in stages {
            let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
            for r in &regs {
                *sums.entry(r.estimated_amount.currency.clone()).or_default() +=
                    i128::from(r.estimated_amount.amount_minor);
            }
            for (currency, sum) in sums {
                let count = regs
                    .iter()
                    .filter(|r| r.estimated_amount.currency == currency)
                    .count();
                let at = format!(
                    "{}{}{}",
                    attr("motion", motion.as_str()),
                    attr("stage", &stage),
                    attr("currency", currency.as_str())
                );
                rows.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td>{}{}</tr>",
                    escape(motion.as_str()),
                    escape(&stage),
                    figure("pipeline-count", count, &at, &count.to_string()),
                    figure("pipeline-amount", sum, &at, &money(sum, &currency)),
                ));
            }
        }
    }
    section(
        "pipeline",
        "Pipeline by motion and stage",
        &table(
            &["Motion", "Stage", "Registrations", "Estimated amount"],
            &rows,
            "No registrations yet.",
        ),
    )
}

fn conflicts_section(flags: &ConflictFlags) -> String {
    let now = Utc::now();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut rows = String::new();
    for (account, flag) in flags.all() {
        let status = match (flag.status, flag.resolved_at, &flag.closed) {
            (_, Some(_), _) => "resolved",
            (_, _, Some(_)) => "closed",
            (FlagStatus::Active, ..) => "active",
            (FlagStatus::Risk, ..) => "risk",
            (FlagStatus::None, ..) => "none",
        };
        *counts.entry(status).or_default() += 1;
        if matches!(status, "resolved" | "closed" | "none") {
            continue;
        }
        let clock = |due: chrono::DateTime<Utc>, done: bool| {
            if done {
                "done".to_string()
            } else if due < now {
                format!("<span class=\"late\">overdue since {}</span>", when(due))
            } else {
                format!("due in {} h ({})", (due - now).num_hours(), when(due))
            }
        };
        rows.push_str(&format!(
            "<tr data-conflict=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&flag.conflict_id.0),
            escape(&account.0),
            escape(&flag.product_line),
            escape(&format!("{:?}", flag.kind)),
            status,
            clock(flag.acknowledge_by, flag.acknowledged_at.is_some()),
            clock(flag.resolution_plan_by, flag.plan.is_some()),
        ));
    }
    let mut summary =
        String::from("<table><tr><th>Status</th><th class=\"num\">Conflicts</th></tr>");
    for (status, n) in &counts {
        summary.push_str(&format!(
            "<tr><td>{status}</td>{}</tr>",
            figure("conflicts", n, &attr("status", status), &n.to_string())
        ));
    }
    summary.push_str("</table>");
    section(
        "conflicts",
        "Conflicts by status, with their SLA clocks",
        &format!(
            "{summary}<h3>Open conflicts</h3>{}",
            table(
                &[
                    "Account",
                    "Product line",
                    "Kind",
                    "Status",
                    "Acknowledge (24 h)",
                    "Resolution plan"
                ],
                &rows,
                "No open conflict."
            )
        ),
    )
}

fn sla_section(
    metrics: &ProgramMetrics,
    weeks: &BTreeMap<chrono::NaiveDate, (u64, u64)>,
) -> String {
    let data: Vec<Datum> = weeks
        .iter()
        .map(|(monday, (decided, on_time))| {
            let bps = i128::from(on_time * 10_000 / (*decided).max(1));
            Datum {
                label: monday.format("%Y-%m-%d").to_string(),
                value: bps,
                shown: format!("{:.1} % of {decided} decisions", bps as f64 / 100.0),
            }
        })
        .collect();
    let overall = metrics
        .sla_compliance_bps()
        .map(|b| format!("{:.1} %", b as f64 / 100.0))
        .unwrap_or_else(|| "no decision yet".into());
    let value = metrics
        .sla_compliance_bps()
        .map(|b| b.to_string())
        .unwrap_or_default();
    section(
        "sla",
        "Approval SLA compliance",
        &format!(
            "<table><tr><th>Decisions</th><th>On time</th><th>Compliance</th></tr><tr>{}{}{}</tr></table>\
             <p class=\"note\">Per week (Monday, UTC) of the decision, in basis points; from the metrics view's fold.</p>{}",
            figure("sla-decisions", metrics.decisions, "", &metrics.decisions.to_string()),
            figure("sla-on-time", metrics.decisions_on_time, "", &metrics.decisions_on_time.to_string()),
            figure("sla-compliance-bps", value, "", &overall),
            svg::line("sla-weekly", "Approval SLA compliance per week", &data, 10_000, percent),
        ),
    )
}

fn revenue_section(metrics: &ProgramMetrics, program: &Program) -> String {
    let report = metrics.report();
    let mut rows = String::new();
    let mut by_motion = Vec::new();
    let mut motion_currencies = Vec::new();
    for (motion, m) in &report.motions {
        for (credit, sums) in [
            ("sourced", &m.sourced_minor),
            ("influenced", &m.influenced_minor),
        ] {
            for (currency, sum) in sums {
                let at = format!(
                    "{}{}",
                    attr("motion", motion.as_str()),
                    attr("currency", currency.as_str())
                );
                rows.push_str(&format!(
                    "<tr><td>{}</td><td>{credit}</td>{}</tr>",
                    escape(motion.as_str()),
                    figure(credit, sum, &at, &money(*sum, currency))
                ));
                motion_currencies.push((*sum, currency.clone()));
                by_motion.push(Datum {
                    label: format!("{} {credit} {currency}", motion.as_str()),
                    value: *sum,
                    shown: layout::money(*sum, currency),
                });
            }
        }
    }
    let mut by_partner = Vec::new();
    let mut partner_currencies = Vec::new();
    let mut partner_rows = String::new();
    for (id, figures) in program.report().partners {
        for (currency, sum) in &figures.won_minor {
            partner_rows.push_str(&format!(
                "<tr><td>{}</td>{}</tr>",
                escape(&figures.name),
                figure(
                    "won",
                    sum,
                    &format!(
                        "{}{}",
                        attr("partner", &id.0.to_string()),
                        attr("currency", currency.as_str())
                    ),
                    &money(*sum, currency)
                )
            ));
            partner_currencies.push((*sum, currency.clone()));
            by_partner.push(Datum {
                label: format!("{} {currency}", figures.name),
                value: *sum,
                shown: layout::money(*sum, currency),
            });
        }
    }
    section(
        "revenue",
        "Sourced and influenced revenue",
        &format!(
            "<h3>By motion</h3>{}{}<h3>Won revenue by partner</h3>{}{}\
             <p class=\"note\">The views split sourced and influenced shares by motion; per partner they hold the won revenue of its registrations.</p>",
            svg::bars("revenue-by-motion", "Sourced and influenced revenue by motion", &by_motion, |max| amount_axis(max, &motion_currencies)),
            table(&["Motion", "Credit", "Amount"], &rows, "No won deal yet."),
            svg::bars("revenue-by-partner", "Won revenue by partner", &by_partner, |max| amount_axis(max, &partner_currencies)),
            table(&["Partner", "Won"], &partner_rows, "No won deal yet."),
        ),
    )
}

/// The top of an amount chart's scale (`max` minor units) in whole units of the currency
/// of its largest bar: `2,138,000 USD`. (`bars` is the chart's values with their
/// currencies.)
fn amount_axis(max: i128, bars: &[(i128, Currency)]) -> String {
    let Some((_, currency)) = bars.iter().max_by_key(|(v, _)| *v) else {
        return max.to_string();
    };
    let scale = 10i128.pow(currency.exponent());
    let whole = (max + scale / 2) / scale;
    format!("{} {currency}", format_minor(whole, 0))
}

/// The top of a basis-point scale in percent: `100 %`, `37.5 %`.
fn percent(bps: i128) -> String {
    if bps % 100 == 0 {
        format!("{} %", bps / 100)
    } else {
        format!("{:.1} %", bps as f64 / 100.0)
    }
}

fn commissions_section(
    ledger: &Ledger,
    names: &BTreeMap<dealreg_domain::PartnerId, String>,
) -> String {
    let mut rows = String::new();
    for (partner, balances) in ledger.balances() {
        for (currency, balance) in balances {
            let name = names
                .get(partner)
                .cloned()
                .unwrap_or_else(|| partner.0.to_string());
            rows.push_str(&format!(
                "<tr><td>{}</td>{}</tr>",
                escape(&name),
                figure(
                    "balance",
                    balance,
                    &format!(
                        "{}{}",
                        attr("partner", &partner.0.to_string()),
                        attr("currency", currency.as_str())
                    ),
                    &money(*balance, currency)
                )
            ));
        }
    }
    section(
        "commissions",
        "Commission balances",
        &table(&["Partner", "Balance"], &rows, "No commission posted yet."),
    )
}

fn expiring_section(pipeline: &Pipeline) -> String {
    let now = Utc::now();
    let mut soon: Vec<_> = pipeline
        .rows()
        .filter(|r| {
            matches!(
                r.protection,
                ProtectionStatus::Protected | ProtectionStatus::ExpiringSoon
            )
        })
        .filter(|r| {
            r.protection_expires_at
                .is_some_and(|e| e >= now && e <= now + Duration::days(7))
        })
        .collect();
    soon.sort_by_key(|r| r.protection_expires_at);
    let rows: String = soon
        .iter()
        .map(|r| {
            format!(
                "<tr data-registration=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                r.registration_id.0,
                escape(&r.partner),
                escape(&r.company),
                escape(&r.product_line),
                r.protection_expires_at.map(when).unwrap_or_default()
            )
        })
        .collect();
    section(
        "expiring",
        "Protections expiring in the next 7 days",
        &format!(
            "<p>{}</p>{}",
            figure_span("expiring", soon.len()),
            table(
                &["Partner", "Customer", "Product line", "Expires"],
                &rows,
                "None in the next 7 days."
            )
        ),
    )
}

fn waiting_section(pipeline: &Pipeline, decision_hours: i64) -> String {
    let now = Utc::now();
    let mut waiting: Vec<_> = pipeline
        .rows()
        .filter(|r| r.protection == ProtectionStatus::AwaitingDecision)
        .collect();
    waiting.sort_by_key(|r| r.submitted_at);
    let rows: String = waiting
        .iter()
        .map(|r| {
            let due = r.submitted_at + Duration::hours(decision_hours);
            let clock = if due < now {
                format!("<span class=\"late\">overdue since {}</span>", when(due))
            } else {
                format!("due {}", when(due))
            };
            format!(
                "<tr data-registration=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{clock}</td></tr>",
                r.registration_id.0,
                when(r.submitted_at),
                escape(&r.partner),
                escape(&r.company),
                escape(&r.product_line),
                escape(r.motion.as_str()),
                escape(&r.estimated_amount.to_string()),
            )
        })
        .collect();
    section(
        "waiting",
        "Registrations waiting for a decision, oldest first",
        &format!(
            "<p>{}</p>{}",
            figure_span("waiting", waiting.len()),
            table(
                &[
                    "Submitted",
                    "Partner",
                    "Customer",
                    "Product line",
                    "Motion",
                    "Estimated",
                    "Decision"
                ],
                &rows,
                "Nothing waiting."
            )
        ),
    )
}

fn figure_span(name: &str, n: usize) -> String {
    format!("<span data-figure=\"{name}\" data-value=\"{n}\">{n}</span> registrations")
}

pub(super) fn section(id: &str, title: &str, body: &str) -> String {
    format!(
        "<section id=\"{id}\"><h2>{}</h2>{body}</section>",
        escape(title)
    )
}

pub(super) fn table(headers: &[&str], rows: &str, empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"note\">{}</p>", escape(empty));
    }
    let head: String = headers
        .iter()
        .map(|h| format!("<th>{}</th>", escape(h)))
        .collect();
    format!("<table><tr>{head}</tr>{rows}</table>")
}
