//! Inbound from Salesforce: Opportunities polled by `SystemModstamp` with a stored
//! watermark, and turned into commands.
//!
//! Why polling and not Change Data Capture: polling needs only the REST API and the
//! connected app the outbound sync already uses (no Pub/Sub API gRPC client, no CDC
//! entitlement), an adapter that was down longer than CDC's 72-hour retention still sees
//! every change, and the watermark lives in the same state file as the cursor.
//!
//! What becomes a command: an Opportunity that carries a registration id and is closed won
//! (`mark_won`, with its `Amount`, the Opportunity as the order reference) or closed lost (`mark_lost`); an Opportunity without one
//! (direct sales entered it) becomes `record_direct_opportunity`. Keys:
//! `salesforce:opportunity:<Id>:<SystemModstamp>` for wins and losses (a change polled again
//! is one effect), `salesforce:opportunity:<Id>:created` for direct opportunities (recorded
//! once, however often the record changes after). Bad records (no amount, no account) are
//! recorded for `dealreg crm status` and change nothing.

use std::sync::Arc;

use dealreg_clock::Clock;
use serde_json::{json, Value};

use crate::client::CrmError;
use crate::mapping::{
    CrmConfig, Target, DECISION_ERROR_FIELD, DECISION_FIELD, DECISION_REASON_FIELD,
};
use crate::salesforce::SalesforceClient;
use crate::state::{StateError, SyncState};
use crate::webhook::{execute_fact, minor_units, CommandSink, Fact};

/// The watermark's name in the state file.
pub const WATERMARK: &str = "salesforce/inbound";

/// The polled records' source in the state file (their modstamps and accepted facts).
const POLLED: &str = "salesforce/opportunity";

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Crm(#[from] CrmError),
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    pub records: u64,
    /// Records read again in the overlap window with the modstamp already seen, and
    /// records whose command the engine already accepted with the same facts: dropped.
    pub skipped: u64,
    pub commands: u64,
    pub refused: u64,
    pub errors: u64,
    pub watermark: Option<String>,
    /// Salesforce's daily API limit is spent: what `crm status` says (nothing was read).
    pub paused: Option<String>,
}

/// The Salesforce side of inbound.
pub struct SalesforcePoll<S: CommandSink> {
    pub config: CrmConfig,
    pub client: SalesforceClient,
    pub state: Arc<SyncState>,
    pub clock: Arc<dyn Clock>,
    pub commands: S,
}

impl<S: CommandSink> SalesforcePoll<S> {
    fn registration_field(&self) -> String {
        self.config
            .objects
            .iter()
            .find(|o| o.view == "pipeline" && o.table == "registration")
            .and_then(|o| o.target(Target::Salesforce))
            .map_or_else(
                || "Dealreg_Registration_Id__c".into(),
                |t| t.external_id.clone(),
            )
    }

    /// The SOQL of one poll from `since` (a SOQL datetime literal): only fields docs/CRM.md's
    /// setup creates on Opportunity (the standard ones, the registration id, account and
    /// product line; `CurrencyIsoCode` where configured, multi-currency orgs only).
    pub fn query(&self, since: &str) -> String {
        let inbound = &self.config.inbound;
        // SystemModstamp literals are unquoted in SOQL; `>=` with the keys below makes a
        // record polled twice one effect, and none modified in the same millisecond as the
        // watermark is missed.
        let currency = if inbound.salesforce_currency_field.is_empty() {
            String::new()
        } else {
            format!("{}, ", inbound.salesforce_currency_field)
        };
        format!(
            "SELECT Id, IsClosed, IsWon, Amount, {currency}SystemModstamp, OwnerId, {registration}, {account}, {product_line} \
             FROM Opportunity WHERE SystemModstamp >= {since} ORDER BY SystemModstamp ASC",
            registration = self.registration_field(),
            account = inbound.salesforce_account_field,
            product_line = inbound.salesforce_product_line_field,
        )
    }

    /// Reads the Opportunities changed since the watermark and executes what they mean;
    /// moves the watermark to the last one read.
    pub async fn poll_once(&self) -> Result<PollReport, PollError> {
        let inbound = &self.config.inbound;
        let registration = self.registration_field();
        let since = self
            .state
            .cursor(WATERMARK)?
            .unwrap_or_else(|| inbound.salesforce_since.clone());
        // The overlap: a change committed after the last poll with a SystemModstamp before
        // its watermark (a long transaction) is read now; what was seen is dropped below.
        let soql = self.query(&overlap(&since, inbound.salesforce_overlap_seconds));
        let paused = || crate::sync::paused(&self.state, Target::Salesforce, self.clock.now());
        if let Some(paused) = paused()? {
            return Ok(PollReport {
                paused: Some(paused),
                ..PollReport::default()
            });
        }
        let records = match self.client.query(&soql).await {
            Ok(records) => records,
            Err(CrmError::Throttled(wait)) if wait >= crate::sync::LONG_PAUSE => {
                crate::sync::note_pause(&self.state, Target::Salesforce, self.clock.now(), wait)?;
                return Ok(PollReport {
                    paused: paused()?,
                    ..PollReport::default()
                });
            }
            Err(CrmError::Refused(message)) if message.contains("INVALID_FIELD") => {
                return Err(PollError::Crm(CrmError::Refused(format!(
                    "{message}; the poll reads the fields docs/CRM.md's setup creates (step 2): create it on Opportunity (and map the Lead's field to it), or name another field in [inbound] of crm.toml"
                ))));
            }
            Err(e) => return Err(e.into()),
        };
        let mut report = PollReport {
            records: records.len() as u64,
            ..PollReport::default()
        };
        for record in &records {
            let id = record.get("Id").and_then(Value::as_str).unwrap_or_default();
            let stamp = record
                .get("SystemModstamp")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(seen) = stamp.get(..).filter(|s| !s.is_empty()) {
                report.watermark = Some(soql_datetime(seen));
            }
            let before = if id.is_empty() {
                None
            } else {
                self.state.polled(POLLED, id)?
            };
            if before.as_ref().is_some_and(|(s, _)| s == stamp) {
                // Read again in the overlap window: seen, same id and modstamp.
                report.skipped += 1;
                continue;
            }
            let mut facts = before.and_then(|(_, f)| f);
            match self.command_of(record, &registration) {
                Ok(None) => {}
                Ok(Some((key, role, command))) => {
                    let now = facts_of(&command);
                    if facts.as_deref() == Some(now.as_str()) {
                        // A closed Opportunity edited in what the engine does not own:
                        // the same command again would change nothing (or be refused).
                        report.skipped += 1;
                    } else {
                        report.commands += 1;
                        if self.execute(&key, role, command).await {
                            facts = Some(now);
                        } else {
                            report.refused += 1;
                        }
                    }
                }
                Err((code, message)) => {
                    report.errors += 1;
                    let at = self.clock.now().to_rfc3339();
                    self.state.inbound_error(
                        "salesforce",
                        &at,
                        &code,
                        &message,
                        record.to_string().as_bytes(),
                    )?;
                }
            }
            if !id.is_empty() {
                self.state.set_polled(POLLED, id, stamp, facts.as_deref())?;
            }
        }
        // The watermark only moves forward (records read in the overlap are older).
        match &report.watermark {
            Some(watermark) if *watermark > since => {
                self.state.set_cursor(WATERMARK, watermark)?;
            }
            _ => report.watermark = None,
        }
        Ok(report)
    }

    /// The command a polled Opportunity means, if any: (key, role, command).
    #[allow(clippy::type_complexity)]
    fn command_of(
        &self,
        record: &Value,
        registration_field: &str,
    ) -> Result<Option<(String, &'static str, Value)>, (String, String)> {
        let inbound = &self.config.inbound;
        let text = |name: &str| {
            record
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
        };
        let id = text("Id").ok_or_else(|| {
            (
                "missing_field".to_string(),
                "an Opportunity without Id".to_string(),
            )
        })?;
        let stamp = text("SystemModstamp").unwrap_or_default();
        let closed = record.get("IsClosed").and_then(Value::as_bool) == Some(true);
        let won = record.get("IsWon").and_then(Value::as_bool) == Some(true);
        let amount = || -> Result<Value, (String, String)> {
            let currency = Some(inbound.salesforce_currency_field.as_str())
                .filter(|f| !f.is_empty())
                .and_then(text)
                .unwrap_or_else(|| inbound.salesforce_default_currency.clone());
            let exponent = dealreg_domain::money::Currency::try_from(currency.clone())
                .map_err(|e| {
                    (
                        "invalid_field".to_string(),
                        format!("Opportunity {id}: {e}"),
                    )
                })?
                .exponent();
            // Salesforce answers currency fields as doubles (`1250000.0` for JPY): the
            // zeros after the point are no precision, so a zero-decimal amount reads back
            // exactly; a digit that is not zero beyond the currency's exponent is refused.
            let amount = match record.get("Amount") {
                Some(Value::Number(n)) => trim_fraction(&n.to_string()),
                Some(Value::String(s)) => trim_fraction(s),
                _ => {
                    return Err((
                        "no_amount".to_string(),
                        format!("Opportunity {id} has no Amount"),
                    ))
                }
            };
            let minor = minor_units(&amount, exponent).ok_or_else(|| {
                (
                    "invalid_field".to_string(),
                    format!("Opportunity {id} has Amount {amount}, not an amount in {currency}"),
                )
            })?;
            Ok(json!({ "amount_minor": minor, "currency": currency }))
        };
        let account = || {
            text(&inbound.salesforce_account_field).ok_or_else(|| {
                (
                    "missing_field".to_string(),
                    format!(
                        "Opportunity {id} has no {} (the customer's domain)",
                        inbound.salesforce_account_field
                    ),
                )
            })
        };
        match text(registration_field) {
            Some(registration) if closed && won => Ok(Some((
                format!("salesforce:opportunity:{id}:{stamp}"),
                "rev_ops",
                json!({ "type": "mark_won", "account": account()?, "registration_id": registration, "amount": amount()?,
                        "order_reference": format!("salesforce:opportunity:{id}") }),
            ))),
            Some(registration) if closed => Ok(Some((
                format!("salesforce:opportunity:{id}:{stamp}"),
                "channel_manager",
                json!({ "type": "mark_lost", "account": account()?, "registration_id": registration,
                        "reason": format!("closed lost in Salesforce (Opportunity {id})") }),
            ))),
            Some(_) => Ok(None),
            None => {
                let product_line =
                    text(&inbound.salesforce_product_line_field).ok_or_else(|| {
                        (
                            "missing_field".to_string(),
                            format!(
                                "Opportunity {id} has no {}",
                                inbound.salesforce_product_line_field
                            ),
                        )
                    })?;
                let owner = text("OwnerId").map_or_else(
                    || "salesforce".to_string(),
                    |o| format!("salesforce-owner-{o}"),
                );
                Ok(Some((
                    format!("salesforce:opportunity:{id}:created"),
                    "direct_sales",
                    json!({ "type": "record_direct_opportunity", "account": account()?,
                            "opportunity_id": format!("salesforce-{id}"), "owner": owner,
                            "product_line": product_line, "amount": amount()? }),
                )))
            }
        }
    }

    /// Executes one command; `false` when the engine refused it (recorded).
    async fn execute(&self, key: &str, role: &str, command: Value) -> bool {
        let fact = Fact {
            source: "salesforce",
            key,
            role,
            command,
        };
        let reply = execute_fact(&self.commands, &self.state, &*self.clock, fact).await;
        reply.get("ok").and_then(Value::as_bool) == Some(true)
    }
}

/// What of a command the engine owns: the command without its reason text (the same
/// facts give the same command).
fn facts_of(command: &Value) -> String {
    let mut facts = command.clone();
    if let Some(map) = facts.as_object_mut() {
        map.remove("reason");
    }
    facts.to_string()
}

/// A SOQL datetime literal `seconds` earlier (a literal that is not RFC 3339 as it is).
fn overlap(since: &str, seconds: u64) -> String {
    match chrono::DateTime::parse_from_rfc3339(since) {
        Ok(t) => (t.with_timezone(&chrono::Utc)
            - chrono::Duration::seconds(i64::try_from(seconds).unwrap_or(i64::MAX / 1000)))
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string(),
        Err(_) => since.to_string(),
    }
}

/// `1250000.0` as `1250000`, `4200.50` as `4200.5`: trailing zeros of the fraction dropped.
fn trim_fraction(amount: &str) -> String {
    match amount.split_once('.') {
        Some((whole, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                whole.to_string()
            } else {
                format!("{whole}.{fraction}")
            }
        }
        None => amount.to_string(),
    }
}

/// A `SystemModstamp` as Salesforce returns it (`2026-12-05T08:00:00.000+0000`) as a SOQL
/// datetime literal (`2026-12-05T08:00:00.000Z`).
pub fn soql_datetime(stamp: &str) -> String {
    match stamp.strip_suffix("+0000") {
        Some(utc) => format!("{utc}Z"),
        None => stamp.to_string(),
    }
}

/// The approvals' watermark and their records in the state file.
pub const DECISIONS_WATERMARK: &str = "salesforce/decisions";
const DECIDED: &str = "salesforce/decision";

/// What one poll of approvals did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionReport {
    /// Records read (changed since the watermark, with or without a decision).
    pub records: u64,
    /// Decisions sent to the engine.
    pub commands: u64,
    /// Decisions the engine refused (its reason written back to the record).
    pub refused: u64,
    /// Decisions not sent: a user with no role in `[salesforce.approvers]`, a record
    /// without an account or a decision that is neither Approve nor Decline.
    pub errors: u64,
}

impl<S: CommandSink> SalesforcePoll<S> {
    /// The object registrations are written to (Lead by default).
    fn registration_object(&self) -> String {
        self.config
            .objects
            .iter()
            .find(|o| o.view == "pipeline" && o.table == "registration" && !o.portal)
            .and_then(|o| o.target(Target::Salesforce))
            .map_or_else(|| "Lead".into(), |t| t.object.clone())
    }

    /// The SOQL of one poll of approvals from `since`: the fields setup creates on the
    /// registration's object.
    pub fn decisions_query(&self, since: &str) -> String {
        format!(
            "SELECT Id, {registration}, {account}, {DECISION_FIELD}, {DECISION_REASON_FIELD}, LastModifiedById, SystemModstamp \
             FROM {object} WHERE SystemModstamp >= {since} ORDER BY SystemModstamp ASC",
            registration = self.registration_field(),
            account = self.config.inbound.salesforce_account_field,
            object = self.registration_object(),
        )
    }

    /// Approvals made in Salesforce: each record whose `Dealreg_Decision__c` changed
    /// becomes approve_registration / decline_registration, made as the role
    /// `[salesforce.approvers]` gives its `LastModifiedById` (a user not listed is refused
    /// and recorded, never guessed); the engine's refusal is written to
    /// `Dealreg_Decision_Error__c` and an accepted decision clears it. A decision is sent
    /// once: the same decision and reason read again (the adapter's own writes change
    /// the record too) send nothing; to try again, change the decision or the reason.
    pub async fn poll_decisions(&self) -> Result<DecisionReport, PollError> {
        let mut report = DecisionReport::default();
        if !self.config.salesforce.approvals {
            return Ok(report);
        }
        if crate::sync::paused(&self.state, Target::Salesforce, self.clock.now())?.is_some() {
            return Ok(report);
        }
        let inbound = &self.config.inbound;
        let since = self
            .state
            .cursor(DECISIONS_WATERMARK)?
            .unwrap_or_else(|| inbound.salesforce_since.clone());
        let soql = self.decisions_query(&overlap(&since, inbound.salesforce_overlap_seconds));
        let records = match self.client.query(&soql).await {
            Ok(records) => records,
            Err(CrmError::Throttled(wait)) if wait >= crate::sync::LONG_PAUSE => {
                crate::sync::note_pause(&self.state, Target::Salesforce, self.clock.now(), wait)?;
                return Ok(report);
            }
            Err(e) => return Err(e.into()),
        };
        report.records = records.len() as u64;
        let object = self.registration_object();
        let registration_field = self.registration_field();
        let mut watermark: Option<String> = None;
        let mut write_back: Vec<(String, serde_json::Map<String, Value>)> = Vec::new();
        for record in &records {
            let text = |name: &str| {
                record
                    .get(name)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
            };
            let (Some(id), Some(stamp)) = (text("Id"), text("SystemModstamp")) else {
                continue;
            };
            watermark = Some(soql_datetime(&stamp));
            let before = self.state.polled(DECIDED, &id)?;
            if before.as_ref().is_some_and(|(s, _)| *s == stamp) {
                continue;
            }
            let decision = text(DECISION_FIELD);
            let reason = text(DECISION_REASON_FIELD).unwrap_or_default();
            let facts = decision
                .as_ref()
                .map(|d| format!("{d}|{reason}"))
                .unwrap_or_default();
            if before
                .as_ref()
                .and_then(|(_, f)| f.as_deref())
                .unwrap_or("")
                == facts
            {
                // Nothing decided, or the same decision read again.
                self.state.set_polled(DECIDED, &id, &stamp, Some(&facts))?;
                continue;
            }
            let Some(decision) = decision else {
                self.state.set_polled(DECIDED, &id, &stamp, Some(&facts))?;
                continue;
            };
            let user = text("LastModifiedById").unwrap_or_default();
            let outcome = self
                .decide(
                    record,
                    &registration_field,
                    &decision,
                    &reason,
                    &user,
                    &id,
                    &stamp,
                )
                .await?;
            match &outcome {
                Decided::Accepted => report.commands += 1,
                Decided::Refused(_) => {
                    report.commands += 1;
                    report.refused += 1;
                }
                Decided::NotSent(_) => report.errors += 1,
            }
            let error = match outcome {
                Decided::Accepted => Value::Null,
                Decided::Refused(text) | Decided::NotSent(text) => {
                    Value::String(text.chars().take(255).collect())
                }
            };
            let mut fields = serde_json::Map::new();
            fields.insert(DECISION_ERROR_FIELD.into(), error);
            write_back.push((id.clone(), fields));
            self.state.set_polled(DECIDED, &id, &stamp, Some(&facts))?;
        }
        if !write_back.is_empty() {
            for (outcome, (id, _)) in self
                .client
                .update_by_id(&object, &write_back)
                .await?
                .iter()
                .zip(&write_back)
            {
                if let crate::client::RecordOutcome::Failed { code, message, .. } = outcome {
                    tracing::warn!(%id, %code, %message, "the decision's outcome could not be written back to Salesforce");
                }
            }
        }
        if let Some(watermark) = watermark.filter(|w| *w > since) {
            self.state.set_cursor(DECISIONS_WATERMARK, &watermark)?;
        }
        Ok(report)
    }

    #[allow(clippy::too_many_arguments)]
    async fn decide(
        &self,
        record: &Value,
        registration_field: &str,
        decision: &str,
        reason: &str,
        user: &str,
        id: &str,
        stamp: &str,
    ) -> Result<Decided, PollError> {
        let text = |name: &str| {
            record
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .map(str::to_string)
        };
        let at = self.clock.now().to_rfc3339();
        let not_sent = |code: &str, message: String| -> Result<Decided, PollError> {
            self.state.inbound_error(
                "salesforce",
                &at,
                code,
                &message,
                record.to_string().as_bytes(),
            )?;
            Ok(Decided::NotSent(format!("dealreg: {message}")))
        };
        let Some(role) = self.config.salesforce.approvers.get(user) else {
            return not_sent(
                "unmapped_user",
                format!("the Salesforce user {user:?} who set {DECISION_FIELD} on {id} has no dealreg role in [salesforce.approvers] of crm.toml; the decision was not sent"),
            );
        };
        let (Some(registration), Some(account)) = (
            text(registration_field),
            text(&self.config.inbound.salesforce_account_field),
        ) else {
            return not_sent(
                "missing_field",
                format!("{id} has no {registration_field} or account: not a dealreg registration"),
            );
        };
        let rationale = if reason.is_empty() {
            format!("{decision} in Salesforce by {user}")
        } else {
            reason.to_string()
        };
        let command = match decision {
            "Approve" => json!({ "type": "approve_registration", "account": account,
                                 "registration_id": registration, "rationale": rationale }),
            "Decline" => json!({ "type": "decline_registration", "account": account,
                                 "registration_id": registration, "reason_code": "declined_in_salesforce",
                                 "rationale": rationale }),
            other => {
                return not_sent(
                    "invalid_field",
                    format!("{DECISION_FIELD} on {id} is {other:?}, neither Approve nor Decline"),
                );
            }
        };
        let envelope = json!({
            "idempotency_key": format!("salesforce:decision:{id}:{stamp}"),
            "actor": { "kind": "vendor", "role": role, "user": format!("salesforce:{user}") },
            "command": command,
        });
        let reply = self
            .commands
            .execute(envelope.to_string().into_bytes())
            .await;
        if reply.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(Decided::Accepted);
        }
        let code = reply
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("refused")
            .to_string();
        let message = reply
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("the command was refused")
            .to_string();
        self.state.inbound_error(
            "salesforce",
            &at,
            &code,
            &message,
            envelope.to_string().as_bytes(),
        )?;
        Ok(Decided::Refused(format!("{code}: {message}")))
    }
}

enum Decided {
    Accepted,
    /// The engine refused it: its code and message.
    Refused(String),
    /// Not sent: why.
    NotSent(String),
}
