//! `GET /partner`: a partner's own page, from partner-safe data only: its `PartnerRow`s
//! (never another partner's ids, names or notes), its own commission balance, and the
//! announcements that reach it (acknowledged through the engine, POST with CSRF).

use chrono::Utc;
use dealreg_clock::Clock;
use dealreg_domain::announcement::reaches_partner;
use dealreg_domain::command::AcknowledgeAnnouncement;
use dealreg_domain::decision::State;
use dealreg_domain::ids::AnnouncementId;
use dealreg_domain::{Boundary, Command, PartnerId};
use dealreg_engine::{CommandEnvelope, PartnerError};
use dealreg_events::EventStore;
use dealreg_projections::ledger::Ledger;
use dealreg_projections::pipeline::{PartnerRole, Pipeline};
use hyper::StatusCode;

use super::dashboard::{section, table};
use super::layout::{self, attr, escape, figure, money, when, Page};
use super::server::Seen;
use super::Pages;
use crate::cli::view::{state, AsOf};

/// The partner the session acts for (a partner session always has one).
pub(super) fn me(seen: &Seen) -> Option<PartnerId> {
    seen.session.partner_id.map(PartnerId)
}

pub(super) async fn page<S: EventStore, C: Clock>(pages: &Pages<S, C>, seen: &Seen) -> Page {
    let Some(me) = me(seen) else {
        return super::server::not_found();
    };
    match build(pages, seen, me).await {
        Ok(body) => layout::page(
            StatusCode::OK,
            "Your deals",
            Some((&seen.session.user, &seen.session.csrf)),
            &body,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "a partner page could not be built");
            layout::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Your page is not available",
                "Your deals could not be read now; try again in a minute.",
            )
        }
    }
}

async fn build<S: EventStore, C: Clock>(
    pages: &Pages<S, C>,
    seen: &Seen,
    me: PartnerId,
) -> Result<String, String> {
    let (pipeline, _) = state::<Pipeline>(&pages.spec, AsOf::Now).await?;
    let (ledger, _) = state::<Ledger>(&pages.spec, AsOf::Now).await?;
    let rows: Vec<_> = pipeline.partner_rows(me).collect();
    let now = Utc::now();
    let mut out = String::from("<p><a href=\"/partner/register\">Register a deal</a></p>");
    let list: String = rows
        .iter()
        .map(|r| {
            let link = if r.role == PartnerRole::Owner {
                format!(
                    "<a href=\"/partner/registrations/{0}\">{1}</a>",
                    r.registration_id.0,
                    escape(&r.company)
                )
            } else {
                escape(&r.company)
            };
            format!(
                "<tr data-registration=\"{}\"><td>{link}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                r.registration_id.0,
                escape(&r.product_line),
                escape(r.motion.as_str()),
                escape(&r.stage),
                escape(&r.status),
                if r.role == PartnerRole::Owner { "owner" } else { "influencer" },
                r.protection_expires_at.map(when).unwrap_or_default(),
            )
        })
        .collect();
    out.push_str(&section(
        "pipeline",
        "Your pipeline",
        &format!(
            "<p><span data-figure=\"pipeline-count\" data-value=\"{n}\">{n}</span> registrations</p>{}",
            table(&["Customer", "Product line", "Motion", "Stage", "Status", "Role", "Protected until"], &list, "No registration yet."),
            n = rows.len()
        ),
    ));
    let mut expiring: Vec<_> = rows
        .iter()
        .filter(|r| r.protection_expires_at.is_some_and(|e| e >= now))
        .collect();
    expiring.sort_by_key(|r| r.protection_expires_at);
    let list: String = expiring
        .iter()
        .map(|r| {
            format!(
                "<tr data-registration=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{} days</td></tr>",
                r.registration_id.0,
                escape(&r.company),
                escape(&r.product_line),
                r.protection_expires_at.map(when).unwrap_or_default(),
                r.protection_expires_at.map(|e| (e - now).num_days()).unwrap_or_default(),
            )
        })
        .collect();
    out.push_str(&section(
        "expiring",
        "Protection expiries",
        &table(
            &["Customer", "Product line", "Expires", "Left"],
            &list,
            "No protection running.",
        ),
    ));
    let list: String = rows
        .iter()
        .filter_map(|r| r.next_step.as_ref().map(|s| (r, s)))
        .map(|(r, step)| {
            format!(
                "<tr data-registration=\"{}\"><td>{}</td><td>{}</td><td>{}</td></tr>",
                r.registration_id.0,
                escape(&r.company),
                escape(&r.product_line),
                escape(step)
            )
        })
        .collect();
    out.push_str(&section(
        "next-steps",
        "Next steps",
        &table(
            &["Customer", "Product line", "Next step"],
            &list,
            "No next step set.",
        ),
    ));
    out.push_str(&announcements(pages, seen, me).await?);
    let mut list = String::new();
    for e in ledger.balances().filter(|(p, _)| **p == me) {
        for (currency, balance) in e.1 {
            list.push_str(&format!(
                "<tr><td>{}</td>{}</tr>",
                escape(currency.as_str()),
                figure(
                    "balance",
                    balance,
                    &format!(
                        "{}{}",
                        attr("partner", &me.0.to_string()),
                        attr("currency", currency.as_str())
                    ),
                    &money(*balance, currency)
                )
            ));
        }
    }
    out.push_str(&section(
        "commission",
        "Your commission balance",
        &table(&["Currency", "Balance"], &list, "No commission posted yet."),
    ));
    Ok(out)
}

async fn announcements<S: EventStore, C: Clock>(
    pages: &Pages<S, C>,
    seen: &Seen,
    me: PartnerId,
) -> Result<String, String> {
    let program = pages
        .engine
        .load(&Boundary::Program)
        .await
        .map_err(|e| e.to_string())?;
    let partner = pages
        .engine
        .load(&Boundary::Partner(me))
        .await
        .map_err(|e| e.to_string())?;
    let (State::Program(program), State::Partner(partner)) = (&program.state, &partner.state)
    else {
        return Err("the program's or the partner's state has an unexpected shape".into());
    };
    let mut list = String::new();
    for a in program.announcements().values().rev() {
        if !reaches_partner(&a.audience, partner) {
            continue;
        }
        let acknowledged = partner.receipts.acknowledged.contains(&a.id);
        let action = if acknowledged {
            "acknowledged".to_string()
        } else {
            format!(
                "<form method=\"post\" action=\"/partner/announcements/{}/acknowledge\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Acknowledge</button></form>",
                a.id.0,
                escape(&seen.session.csrf)
            )
        };
        list.push_str(&format!(
            "<tr data-announcement=\"{}\" data-acknowledged=\"{acknowledged}\"><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
            a.id.0,
            when(a.published_at),
            escape(&a.title),
            a.acknowledge_by.map(when).unwrap_or_default(),
        ));
    }
    Ok(section(
        "announcements",
        "Announcements",
        &table(
            &["Published", "Title", "Acknowledge by", ""],
            &list,
            "No announcement for you.",
        ),
    ))
}

/// `POST /partner/announcements/<id>/acknowledge`: through the engine, as the partner.
pub(super) async fn acknowledge<S: EventStore, C: Clock>(
    pages: &Pages<S, C>,
    seen: &Seen,
    id: &str,
) -> Page {
    let (Some(me), Some(actor), Ok(announcement_id)) =
        (me(seen), seen.actor(), id.parse::<AnnouncementId>())
    else {
        return super::server::not_found();
    };
    let executed = pages
        .engine
        .execute(CommandEnvelope {
            idempotency_key: Some(format!("page-acknowledge-{id}")),
            actor,
            command: Command::AcknowledgeAnnouncement(AcknowledgeAnnouncement {
                partner_id: me,
                announcement_id,
            }),
        })
        .await;
    match executed {
        Ok(done) => match done.reply.error {
            None => {
                tracing::info!(user = %seen.session.user, announcement = %id, "announcement acknowledged from the partner page");
                layout::see_other("/partner", &[])
            }
            Some(error) => layout::message(
                StatusCode::CONFLICT,
                "Not acknowledged",
                &PartnerError::of(&error).message,
            ),
        },
        Err(e) => {
            tracing::warn!(error = %e, "acknowledging an announcement failed");
            layout::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not acknowledged: try again in a minute",
                "The program's log could not take it now. Nothing was changed.",
            )
        }
    }
}
