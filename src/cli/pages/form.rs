//! The registration form (`GET`/`POST /partner/register`) and a registration's status page
//! (`GET /partner/registrations/<id>`).
//!
//! The engine validates: the page only turns text into the command's types (an amount in
//! minor units, a date, a motion) and shows the engine's refusal beside the field it names
//! (`details.field`), or at the top when no field fits. The registration id is made when
//! the form is shown (UUID v7, in a hidden field) and the idempotency key is built from
//! it, so a double submit is one registration. The partner id is always the session's:
//! a `partner_id` field in the form is ignored.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use dealreg_clock::Clock;
use dealreg_domain::command::SubmitRegistration;
use dealreg_domain::money::{Currency, Money};
use dealreg_domain::motion::DealKind;
use dealreg_domain::values::{Contact, Customer};
use dealreg_domain::{Command, Motion, RegistrationId};
use dealreg_engine::{CommandEnvelope, PartnerError};
use dealreg_events::EventStore;
use dealreg_projections::pipeline::Pipeline;
use hyper::StatusCode;

use super::layout::{self, escape, when, Page};
use super::partner::me;
use super::server::{not_found, Seen};
use super::Pages;
use crate::cli::view::{state, AsOf};

/// Errors by form field (`form`: the general one).
type Errors = BTreeMap<String, String>;

pub(super) async fn show<S: EventStore, C: Clock>(_pages: &Pages<S, C>, seen: &Seen) -> Page {
    let mut values = BTreeMap::new();
    values.insert(
        "registration_id".to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    values.insert("currency".to_string(), "USD".to_string());
    render(seen, StatusCode::OK, &values, &Errors::new())
}

pub(super) async fn submit<S: EventStore, C: Clock>(pages: &Pages<S, C>, seen: &Seen) -> Page {
    let (Some(me), Some(actor)) = (me(seen), seen.actor()) else {
        return not_found();
    };
    let form = &seen.form;
    let (command, mut errors) = command_of(form, me);
    let Some(command) = command.filter(|_| errors.is_empty()) else {
        return render(seen, StatusCode::UNPROCESSABLE_ENTITY, form, &errors);
    };
    let id = command.registration_id;
    let executed = pages
        .engine
        .execute(CommandEnvelope {
            idempotency_key: Some(format!("page-register-{}", id.0)),
            actor,
            command: Command::SubmitRegistration(command),
        })
        .await;
    match executed {
        Ok(done) => match done.reply.error {
            None => {
                tracing::info!(user = %seen.session.user, registration = %id.0, replayed = done.replayed, "registration submitted from the form");
                layout::see_other(&format!("/partner/registrations/{}", id.0), &[])
            }
            Some(error) => {
                let refusal = PartnerError::of(&error);
                let field = refusal
                    .details
                    .get("field")
                    .and_then(|f| f.as_str())
                    .and_then(form_field)
                    .or(match refusal.code {
                        dealreg_domain::error::RejectionCode::MotionNotInAgreement => {
                            Some("motion")
                        }
                        dealreg_domain::error::RejectionCode::NotCertified => Some("product_line"),
                        _ => None,
                    })
                    .unwrap_or("form");
                tracing::info!(user = %seen.session.user, code = %refusal.code, field, "registration refused");
                errors.insert(field.to_string(), refusal.message);
                render(seen, StatusCode::UNPROCESSABLE_ENTITY, form, &errors)
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "a registration from the form could not be executed");
            errors.insert(
                "form".into(),
                "The program's log could not take it now; nothing was recorded. Send the form again in a minute.".into(),
            );
            render(seen, StatusCode::SERVICE_UNAVAILABLE, form, &errors)
        }
    }
}

/// The form field of a command field the engine names.
fn form_field(field: &str) -> Option<&'static str> {
    Some(match field {
        "customer.company" => "customer_name",
        "customer.domain" => "customer_domain",
        "customer.contact.name" => "contact_name",
        "customer.contact.email" => "contact_email",
        "customer.contact.phone" => "contact_phone",
        "customer.region" => "region",
        "customer.vertical" => "vertical",
        "product_line" => "product_line",
        "motion" => "motion",
        "estimated_amount" | "estimated_amount.amount_minor" => "amount",
        "estimated_amount.currency" => "currency",
        "expected_close" => "expected_close",
        "proof_of_work" => "proof_of_work",
        "kind" => "kind",
        _ => return None,
    })
}

/// The form's fields and their labels, as the form shows them.
const LABELS: &[(&str, &str)] = &[
    ("customer_name", "Customer company"),
    ("customer_domain", "Customer web domain (e.g. acme.com)"),
    ("contact_name", "Customer contact's name"),
    ("contact_email", "Customer contact's e-mail"),
    ("contact_phone", "Customer contact's phone (optional)"),
    ("region", "Customer region (optional)"),
    ("vertical", "Customer vertical (optional)"),
    ("product_line", "Product line"),
    ("motion", "Motion"),
    ("amount", "Estimated amount"),
    ("currency", "Currency"),
    ("expected_close", "Expected close"),
    ("proof_of_work", "Proof of work"),
    ("kind", "Kind"),
];

/// The label of form field `name` as the form shows it.
fn label(name: &str) -> &'static str {
    LABELS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, l)| l)
}

/// An engine message in the form's words: each backticked command field it quotes
/// (`` `expected_close` is in the past ``) becomes the label of the form field it is read
/// from, without the label's hint in parentheses ("Expected close is in the past").
/// Anything else in backticks (a product line, an unknown field) is left as it is.
fn in_words(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find('`') {
        let quoted = &rest[open + 1..];
        let Some(close) = quoted.find('`') else {
            break;
        };
        let name = &quoted[..close];
        out.push_str(&rest[..open]);
        match form_field(name.strip_prefix("command.").unwrap_or(name)) {
            Some(field) => out.push_str(label(field).split(" (").next().unwrap_or_default()),
            None => out.push_str(&rest[open..open + close + 2]),
        }
        rest = &quoted[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The command the form stands for, and what could not be read (by field).
fn command_of(
    form: &BTreeMap<String, String>,
    me: dealreg_domain::PartnerId,
) -> (Option<SubmitRegistration>, Errors) {
    let mut errors = Errors::new();
    let text = |name: &str| {
        form.get(name)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let optional = |name: &str| Some(text(name)).filter(|v| !v.is_empty());
    let registration_id = text("registration_id").parse::<RegistrationId>().ok();
    if registration_id.is_none() {
        errors.insert("form".into(), "The form was damaged; open it again.".into());
    }
    let motion: Option<Motion> = serde_json::from_value(serde_json::json!(text("motion"))).ok();
    if motion.is_none() {
        errors.insert("motion".into(), "Choose a motion.".into());
    }
    let kind: Option<DealKind> = serde_json::from_value(serde_json::json!(text("kind"))).ok();
    if kind.is_none() {
        errors.insert("kind".into(), "Choose the kind of deal.".into());
    }
    let currency = Currency::try_from(text("currency").to_uppercase()).ok();
    if currency.is_none() {
        errors.insert(
            "currency".into(),
            "Give an ISO currency code, e.g. USD or EUR.".into(),
        );
    }
    // Read even when the currency is not: the person sees every field's problem at once
    // (two decimals, the usual case, until the currency says otherwise).
    let exponent = currency.as_ref().map(|c| c.exponent()).unwrap_or(2);
    let amount = minor_units(&text("amount"), exponent);
    if amount.is_none() {
        errors.insert(
            "amount".into(),
            format!("Give the amount as a number with at most {exponent} decimals, e.g. 48000.00."),
        );
    }
    let expected_close = NaiveDate::parse_from_str(&text("expected_close"), "%Y-%m-%d").ok();
    if expected_close.is_none() {
        errors.insert(
            "expected_close".into(),
            "Give a date (year-month-day).".into(),
        );
    }
    let (
        Some(registration_id),
        Some(motion),
        Some(kind),
        Some(currency),
        Some(amount_minor),
        Some(expected_close),
    ) = (
        registration_id,
        motion,
        kind,
        currency,
        amount,
        expected_close,
    )
    else {
        return (None, errors);
    };
    let command = SubmitRegistration {
        registration_id,
        partner_id: me,
        customer: Customer {
            company: text("customer_name"),
            domain: text("customer_domain"),
            contact: Contact {
                name: text("contact_name"),
                email: text("contact_email"),
                phone: optional("contact_phone"),
            },
            region: optional("region"),
            vertical: optional("vertical"),
        },
        product_line: text("product_line"),
        motion,
        estimated_amount: Money {
            amount_minor,
            currency,
        },
        expected_close,
        proof_of_work: text("proof_of_work"),
        kind,
    };
    (Some(command), errors)
}

/// `"48000.5"` with exponent 2 as 4800050; `None` for anything else (signs are left to
/// the engine: a negative amount is its refusal to give).
fn minor_units(text: &str, exponent: u32) -> Option<i64> {
    let text = text.replace([',', ' ', '_'], "");
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, text),
    };
    let (units, fraction) = text.split_once('.').unwrap_or((&text, ""));
    if units.is_empty() && fraction.is_empty() {
        return None;
    }
    if !units.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if fraction.len() > exponent as usize {
        return None;
    }
    let units: i64 = if units.is_empty() {
        0
    } else {
        units.parse().ok()?
    };
    let padded = format!("{fraction:0<width$}", width = exponent as usize);
    let fraction: i64 = if padded.is_empty() {
        0
    } else {
        padded.parse().ok()?
    };
    let minor = units
        .checked_mul(10i64.checked_pow(exponent)?)?
        .checked_add(fraction)?;
    Some(if negative { -minor } else { minor })
}

fn render(
    seen: &Seen,
    status: StatusCode,
    values: &BTreeMap<String, String>,
    errors: &Errors,
) -> Page {
    let value = |name: &str| escape(values.get(name).map(String::as_str).unwrap_or(""));
    let error = |name: &str| match errors.get(name) {
        Some(message) => format!(
            "<p class=\"error\" id=\"error-{name}\" data-error-for=\"{name}\">{}</p>",
            escape(&in_words(message))
        ),
        None => String::new(),
    };
    let input = |name: &str, kind: &str, required: bool| {
        format!(
            "<label for=\"{name}\">{}</label><input id=\"{name}\" name=\"{name}\" type=\"{kind}\" value=\"{}\"{}>{}",
            escape(label(name)),
            value(name),
            if required { " required" } else { "" },
            error(name)
        )
    };
    let select = |name: &str, options: &[&str]| {
        let chosen = values.get(name).map(String::as_str).unwrap_or("");
        let opts: String = options
            .iter()
            .map(|o| {
                format!(
                    "<option value=\"{o}\"{}>{}</option>",
                    if *o == chosen { " selected" } else { "" },
                    o.replace('_', " ")
                )
            })
            .collect();
        format!(
            "<label for=\"{name}\">{}</label><select id=\"{name}\" name=\"{name}\" required>{opts}</select>{}",
            escape(label(name)),
            error(name)
        )
    };
    let motions: Vec<&str> = Motion::ALL.iter().map(|m| m.as_str()).collect();
    let body = format!(
        "{}<form method=\"post\" action=\"/partner/register\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <input type=\"hidden\" name=\"registration_id\" value=\"{}\">\
         {}{}{}{}{}{}{}{}{}{}{}{}{}\
         <label for=\"proof_of_work\">{}</label><textarea id=\"proof_of_work\" name=\"proof_of_work\" rows=\"4\" cols=\"60\" required>{}</textarea>{}\
         {}<p><button type=\"submit\">Register</button></p></form>",
        error("form"),
        escape(&seen.session.csrf),
        value("registration_id"),
        input("customer_name", "text", true),
        input("customer_domain", "text", true),
        input("contact_name", "text", true),
        input("contact_email", "email", true),
        input("contact_phone", "tel", false),
        input("region", "text", false),
        input("vertical", "text", false),
        input("product_line", "text", true),
        select("motion", &motions),
        input("amount", "text", true),
        input("currency", "text", true),
        input("expected_close", "date", true),
        "",
        escape(label("proof_of_work")),
        value("proof_of_work"),
        error("proof_of_work"),
        select("kind", &["new_business", "renewal", "expansion"]),
    );
    layout::page(
        status,
        "Register a deal",
        Some((&seen.session.user, &seen.session.csrf)),
        &body,
    )
}

/// `GET /partner/registrations/<id>`: the registration as the partner's pipeline shows
/// it; 404 for any id that is not in this partner's pipeline.
pub(super) async fn status<S: EventStore, C: Clock>(
    pages: &Pages<S, C>,
    seen: &Seen,
    id: &str,
) -> Page {
    let (Some(me), Ok(id)) = (me(seen), id.parse::<RegistrationId>()) else {
        return not_found();
    };
    let pipeline = match state::<Pipeline>(&pages.spec, AsOf::Now).await {
        Ok((p, _)) => p,
        Err(e) => {
            tracing::warn!(error = %e, "the pipeline view could not be read");
            return layout::message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not available",
                "Try again in a minute.",
            );
        }
    };
    let Some(row) = pipeline.partner_rows(me).find(|r| r.registration_id == id) else {
        return not_found();
    };
    let decision = match row.status.as_str() {
        "pending" => "Waiting for the channel team's decision.".to_string(),
        "protected" => format!(
            "Approved: protected until {}.",
            row.protection_expires_at.map(when).unwrap_or_default()
        ),
        "declined" => match appeal_until(pages, &row.account, id, me).await {
            Some(until) => format!(
                "Declined. You may appeal until {} (ask your channel manager); notes on the deal are below.",
                when(until)
            ),
            None => "Declined. Notes on the deal are below.".to_string(),
        },
        other => format!("Status: {other}."),
    };
    let notes: String = row
        .notes
        .iter()
        .map(|n| format!("<li>{}</li>", escape(n)))
        .collect();
    let body = format!(
        "<p id=\"status\" data-status=\"{}\">{}</p>\
         <table><tr><th>Customer</th><td>{}</td></tr><tr><th>Account</th><td>{}</td></tr>\
         <tr><th>Product line</th><td>{}</td></tr><tr><th>Motion</th><td>{}</td></tr>\
         <tr><th>Stage</th><td>{}</td></tr><tr><th>Registration</th><td>{}</td></tr></table>{}\
         <p><a href=\"/partner\">Back to your deals</a></p>",
        escape(&row.status),
        escape(&decision),
        escape(&row.company),
        escape(&row.account.0),
        escape(&row.product_line),
        escape(row.motion.as_str()),
        escape(&row.stage),
        row.registration_id.0,
        if notes.is_empty() {
            String::new()
        } else {
            format!("<h2>Notes</h2><ul>{notes}</ul>")
        },
    );
    layout::page(
        StatusCode::OK,
        "Your registration",
        Some((&seen.session.user, &seen.session.csrf)),
        &body,
    )
}

/// Until when the partner may appeal its declined registration: the account's state, read
/// through the engine, for a registration of this partner only. (The decline's reason is
/// not partner-safe in the engine's partner reply, which carries only the appeal window.)
async fn appeal_until<S: EventStore, C: Clock>(
    pages: &Pages<S, C>,
    account: &dealreg_domain::AccountKey,
    id: RegistrationId,
    me: dealreg_domain::PartnerId,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let loaded = pages
        .engine
        .load(&dealreg_domain::Boundary::Account(account.clone()))
        .await
        .ok()?;
    let dealreg_domain::decision::State::Account(state) = &loaded.state else {
        return None;
    };
    state
        .registrations
        .get(&id)
        .filter(|r| r.partner_id == me)
        .and_then(|r| r.appeal_until)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_become_minor_units() {
        assert_eq!(minor_units("48000.5", 2), Some(4_800_050));
        assert_eq!(minor_units("1,448.40", 2), Some(144_840));
        assert_eq!(minor_units("12", 0), Some(12));
        assert_eq!(minor_units("1.234", 2), None);
        assert_eq!(minor_units("abc", 2), None);
        assert_eq!(minor_units("", 2), None);
    }

    #[test]
    fn refusals_name_the_fields_as_the_form_labels_them() {
        assert_eq!(
            in_words("`expected_close` is in the past"),
            "Expected close is in the past"
        );
        assert_eq!(
            in_words("`estimated_amount` must be a positive amount, not 0.00"),
            "Estimated amount must be a positive amount, not 0.00"
        );
        assert_eq!(
            in_words("`customer.contact.email` is not an e-mail address"),
            "Customer contact's e-mail is not an e-mail address"
        );
        // The label's hint in parentheses is left out; a decoding error's path is read too.
        assert_eq!(
            in_words("`customer.domain` is required"),
            "Customer web domain is required"
        );
        assert_eq!(
            in_words("`command.estimated_amount.amount_minor`: invalid type"),
            "Estimated amount: invalid type"
        );
        // Not a field: a product line the engine quotes, and an unclosed backtick.
        assert_eq!(
            in_words("`security` renews on 2026-09-01"),
            "`security` renews on 2026-09-01"
        );
        assert_eq!(in_words("odd ` mark"), "odd ` mark");
        assert_eq!(in_words("no field"), "no field");
    }
}
