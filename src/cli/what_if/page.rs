//! The what-if report for people: plain text for a terminal, and one self-contained HTML
//! page (no script, no outside resource) to open in a browser or attach to a proposal.

use std::fmt::Write;

use dealreg_actions::escape_html as escape;
use dealreg_domain::money::{format_minor, Currency};

use super::Report;

/// `minor` units of `currency` as people write them (`USD 1,448.40`).
fn money(minor: i128, currency: &Currency) -> String {
    format!("{currency} {}", format_minor(minor, currency.exponent()))
}

fn signed(minor: i128, currency: &Currency) -> String {
    if minor > 0 {
        format!("+{}", money(minor, currency))
    } else {
        money(minor, currency)
    }
}

/// One section of the report: its title, its column heads, its rows.
type Section = (&'static str, Vec<&'static str>, Vec<Vec<String>>);

/// Every section, in the order people read them.
fn sections(report: &Report) -> Vec<Section> {
    let d = &report.differences;
    let registration = |list: &[super::outcome::RegistrationChange]| -> Vec<Vec<String>> {
        list.iter()
            .map(|c| {
                vec![
                    c.registration_id.to_string(),
                    c.partner.clone(),
                    c.account.clone(),
                    c.was.clone(),
                    c.now.clone(),
                ]
            })
            .collect()
    };
    let heads = vec![
        "registration",
        "partner",
        "account",
        "was",
        "under the draft",
    ];
    vec![
        (
            "Commands answered otherwise",
            vec![
                "at",
                "command",
                "by",
                "registration",
                "was",
                "under the draft",
            ],
            report
                .decided_otherwise
                .iter()
                .map(|c| {
                    vec![
                        c.at.format("%Y-%m-%d %H:%M UTC").to_string(),
                        c.command.clone(),
                        c.actor.clone(),
                        c.registration_id.clone().unwrap_or_default(),
                        c.was.clone(),
                        c.now.clone(),
                    ]
                })
                .collect(),
        ),
        (
            "Protected otherwise",
            heads.clone(),
            registration(&d.protected_otherwise),
        ),
        (
            "Declined otherwise",
            heads.clone(),
            registration(&d.declined_otherwise),
        ),
        (
            "Final status otherwise",
            heads,
            registration(&d.status_otherwise),
        ),
        (
            "Protection ends on another day",
            vec![
                "registration",
                "partner",
                "account",
                "was",
                "under the draft",
                "days",
            ],
            d.protection_expiry
                .iter()
                .map(|c| {
                    vec![
                        c.registration_id.to_string(),
                        c.partner.clone(),
                        c.account.clone(),
                        c.was.date_naive().to_string(),
                        c.now.date_naive().to_string(),
                        format!("{:+}", c.days),
                    ]
                })
                .collect(),
        ),
        (
            "Commission per partner",
            vec![
                "partner",
                "currency",
                "earned",
                "under the draft",
                "difference",
                "balance under the draft",
            ],
            d.commission
                .iter()
                .map(|c| {
                    vec![
                        c.partner.clone(),
                        c.currency.to_string(),
                        money(c.was_earned_minor, &c.currency),
                        money(c.now_earned_minor, &c.currency),
                        signed(c.earned_difference_minor, &c.currency),
                        money(c.now_balance_minor, &c.currency),
                    ]
                })
                .collect(),
        ),
        (
            "Conflicts raised under the draft",
            vec!["account", "product line", "kind", "parties"],
            conflict_rows(&d.conflicts_raised),
        ),
        (
            "Conflicts avoided under the draft",
            vec!["account", "product line", "kind", "parties"],
            conflict_rows(&d.conflicts_avoided),
        ),
        (
            "SLA breaches under the draft only",
            vec!["SLA", "about"],
            d.sla_breaches_raised
                .iter()
                .map(|b| vec![b.sla.clone(), b.subject.clone()])
                .collect(),
        ),
        (
            "SLA breaches avoided under the draft",
            vec!["SLA", "about"],
            d.sla_breaches_avoided
                .iter()
                .map(|b| vec![b.sla.clone(), b.subject.clone()])
                .collect(),
        ),
    ]
}

fn conflict_rows(list: &[super::outcome::ConflictSeen]) -> Vec<Vec<String>> {
    list.iter()
        .map(|c| {
            vec![
                c.account.clone(),
                c.product_line.clone(),
                c.kind.clone(),
                c.parties.len().to_string(),
            ]
        })
        .collect()
}

/// What the run covered, in sentences.
fn coverage_lines(report: &Report) -> Vec<String> {
    let c = &report.coverage;
    let mut lines = vec![
        format!(
            "History: {} events, {} commands, from {} to {}.",
            report.history.events,
            report.history.commands,
            report.history.first_at.to_rfc3339(),
            report.history.until.to_rfc3339()
        ),
        format!(
            "Draft \"{}\" in force {} (adopted as version {}).",
            report.draft.name,
            match report.draft.from {
                Some(t) => format!("from {}", t.to_rfc3339()),
                None => "from the start".to_string(),
            },
            report.draft.adopted_as_version
        ),
        format!(
            "Decided again: {} commands; derived again from the scratch log: {} recorded timekeeper and offboarding commands ({} issued under the draft); replaced by the draft: {} policy adoptions.",
            c.decided_again, c.derived_recorded, c.derived_issued, c.replaced_by_draft
        ),
    ];
    if c.not_replayable.is_empty() {
        lines.push("Every recorded command could be decided again.".into());
    } else {
        for (name, n) in &c.not_replayable {
            lines.push(format!(
                "NOT decided again: {} × {name} (first at {}): {}. What they did is missing from the draft's run, so the differences below are not the draft's alone.",
                n.count,
                n.first_at.to_rfc3339(),
                n.why
            ));
        }
    }
    lines
}

/// The report as text.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for line in coverage_lines(report) {
        let _ = writeln!(out, "{line}");
    }
    if report.differences.is_empty() && report.decided_otherwise.is_empty() {
        let _ = writeln!(out, "\nNothing would have come out otherwise.");
        return out;
    }
    for (title, heads, rows) in sections(report) {
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title} ({})", rows.len());
        let mut widths: Vec<usize> = heads.iter().map(|h| h.chars().count()).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: Vec<String>| -> String {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let _ = writeln!(
            out,
            "  {}",
            line(heads.iter().map(|h| h.to_string()).collect())
        );
        for row in rows {
            let _ = writeln!(out, "  {}", line(row));
        }
    }
    out
}

/// The report as one HTML page. Each section is `<section data-section="...">` with a
/// count, so a test (and a reader's tool) can find it.
pub fn html(report: &Report) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>What if: ",
    );
    out.push_str(&escape(&report.draft.name));
    out.push_str(
        "</title><style>\
         body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2430;max-width:72rem}\
         h1{font-size:1.5rem}h2{font-size:1.1rem;margin-top:2rem}\
         table{border-collapse:collapse;width:100%;font-size:.9rem}\
         th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #d8dde6}\
         th{background:#f2f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}\
         .summary li{margin:.2rem 0}.none{color:#5b6473}.warn{color:#8a1c1c;font-weight:600}\
         </style></head><body>\n",
    );
    let _ = writeln!(
        out,
        "<h1>What if the program had run under \u{201c}{}\u{201d}</h1>",
        escape(&report.draft.name)
    );
    out.push_str("<ul class=\"summary\">\n");
    for line in coverage_lines(report) {
        let class = if line.starts_with("NOT") {
            " class=\"warn\""
        } else {
            ""
        };
        let _ = writeln!(out, "<li{class}>{}</li>", escape(&line));
    }
    out.push_str("</ul>\n");
    for (n, (title, heads, rows)) in sections(report).into_iter().enumerate() {
        let _ = writeln!(
            out,
            "<section data-section=\"{n}\" data-count=\"{}\"><h2>{} ({})</h2>",
            rows.len(),
            escape(title),
            rows.len()
        );
        if rows.is_empty() {
            out.push_str("<p class=\"none\">None.</p></section>\n");
            continue;
        }
        out.push_str("<table><thead><tr>");
        for h in &heads {
            let _ = write!(out, "<th>{}</th>", escape(h));
        }
        out.push_str("</tr></thead><tbody>\n");
        for row in rows {
            out.push_str("<tr>");
            for cell in row {
                let _ = write!(out, "<td>{}</td>", escape(&cell));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table></section>\n");
    }
    out.push_str("</body></html>\n");
    out
}
