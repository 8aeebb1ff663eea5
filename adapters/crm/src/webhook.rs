//! Inbound from HubSpot: webhook deliveries checked by their v3 signature and turned into
//! commands.
//!
//! The signature (`X-HubSpot-Signature-v3`) is base64 of HMAC-SHA256, keyed with the app's
//! client secret, over `method + URI + body + timestamp`, where the URI is the one HubSpot
//! called (the public URL: this endpoint behind a proxy sees another host, so the public
//! base is configured) and the timestamp is `X-HubSpot-Request-Timestamp` in milliseconds.
//! A delivery older than five minutes, or with a signature that does not match, is refused
//! with 401 and changes nothing.
//!
//! What becomes a command: a deal whose `dealstage` changed to a won stage (`mark_won`,
//! with the deal's amount and the deal as the order reference) or a lost stage (`mark_lost`), and a deal created in HubSpot
//! that dealreg did not create (`record_direct_opportunity`: direct sales entered it).
//! Each command's idempotency key is the record id and the change's time
//! (`hubspot:<subscription>:<object id>:<occurredAt>`), so a delivery HubSpot repeats has
//! one effect. The developer platform's generic subscriptions (`object.propertyChange`,
//! `object.creation` with `objectTypeId` `0-3`) are read as the legacy `deal.*` ones, under
//! the same key.
//!
//! A delivery is answered at once: its events are kept in the state file
//! ([`SyncState::received_events`]) and processed afterwards
//! ([`HubspotInbound::process_pending`], run by [`serve`]'s worker), so a large batch is
//! not delivered again for a slow answer. A body that is not JSON is answered 400; bad
//! events (a deal with no amount, an unknown stage, a deal that matches no registration)
//! are recorded for `dealreg crm status` when processed, and change nothing.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use dealreg_clock::Clock;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use crate::client::CrmError;
use crate::hubspot::HubspotClient;
use crate::mapping::{CrmConfig, Target};
use crate::state::SyncState;

/// Deliveries older than this are refused (HubSpot's own rule for v3 signatures).
pub const MAX_AGE_MS: i64 = 5 * 60 * 1000;
/// HubSpot's object type id of deals (`0-1` contacts, `0-2` companies, `0-3` deals).
pub const DEALS_OBJECT_TYPE_ID: &str = "0-3";
/// The largest delivery read (HubSpot sends at most 100 events a request).
pub const MAX_BODY: usize = 1024 * 1024;

/// What executes a command: the engine, in the `dealreg` binary.
pub trait CommandSink: Send + Sync + 'static {
    /// Executes one command envelope (JSON) and answers the engine's reply line.
    fn execute(&self, envelope: Vec<u8>) -> impl Future<Output = Value> + Send;
}

/// Checks a v3 signature. `uri` is the full URI HubSpot called.
pub fn signature_matches(
    secret: &[u8],
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp: &str,
    signature: &str,
) -> bool {
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut message = Vec::with_capacity(method.len() + uri.len() + body.len() + timestamp.len());
    message.extend_from_slice(method.as_bytes());
    message.extend_from_slice(uri.as_bytes());
    message.extend_from_slice(body);
    message.extend_from_slice(timestamp.as_bytes());
    ring::hmac::verify(&key, &message, &given).is_ok()
}

/// Signs as HubSpot does (for tests and for checking a setup by hand).
pub fn sign(secret: &[u8], method: &str, uri: &str, body: &[u8], timestamp: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut message = Vec::new();
    message.extend_from_slice(method.as_bytes());
    message.extend_from_slice(uri.as_bytes());
    message.extend_from_slice(body);
    message.extend_from_slice(timestamp.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, &message).as_ref())
}

/// `"12500.5"` in a currency of `exponent` decimals as minor units; `None` when it is not
/// a plain decimal or has more decimals than the currency.
pub fn minor_units(text: &str, exponent: u32) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > exponent as usize
    {
        return None;
    }
    let scale = 10i64.checked_pow(exponent)?;
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let padded = format!("{fraction:0<width$}", width = exponent as usize);
    let fraction: i64 = if padded.is_empty() {
        0
    } else {
        padded.parse().ok()?
    };
    let value = whole.checked_mul(scale)?.checked_add(fraction)?;
    Some(if negative { -value } else { value })
}

/// The HubSpot side of inbound.
pub struct HubspotInbound<S: CommandSink> {
    pub config: CrmConfig,
    pub app_secret: Vec<u8>,
    /// `https://hooks.example.com`: what HubSpot calls, without the path.
    pub public_base: String,
    pub client: HubspotClient,
    pub state: Arc<SyncState>,
    pub clock: Arc<dyn Clock>,
    pub commands: S,
}

/// An answer to a delivery: status and JSON body.
pub type Answer = (StatusCode, Value);

impl<S: CommandSink> HubspotInbound<S> {
    /// Answers one delivery.
    pub async fn deliver(
        &self,
        method: &str,
        path_and_query: &str,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
    ) -> Answer {
        let refused = |why: &str| {
            tracing::warn!(why, "a HubSpot webhook delivery was refused");
            (
                StatusCode::UNAUTHORIZED,
                json!({ "error": { "code": "bad_signature", "message": why } }),
            )
        };
        let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
            return refused("X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp are required");
        };
        let Ok(sent_ms) = timestamp.trim().parse::<i64>() else {
            return refused("X-HubSpot-Request-Timestamp is not a number of milliseconds");
        };
        let now_ms = self.clock.now().timestamp_millis();
        if (now_ms - sent_ms).abs() > MAX_AGE_MS {
            return refused("the delivery is more than 5 minutes old (or from the future)");
        }
        let uri = format!(
            "{}{}",
            self.public_base.trim_end_matches('/'),
            path_and_query
        );
        if !signature_matches(&self.app_secret, method, &uri, body, timestamp, signature) {
            return refused(
                "the signature does not match; check the app secret and the public URL",
            );
        }
        let events: Vec<Value> = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(events)) => events,
            Ok(Value::Object(event)) => vec![Value::Object(event)],
            Ok(_) | Err(_) => {
                let error = "the body is not a JSON array of webhook events";
                self.record("not_json", error, body);
                return (
                    StatusCode::BAD_REQUEST,
                    json!({ "error": { "code": "not_json", "message": error } }),
                );
            }
        };
        // Answered at once, processed from the state file afterwards
        // ([`HubspotInbound::process_pending`]): HubSpot counts a delivery not answered in
        // time as failed and delivers it again, so a large batch processed inline (each
        // won deal read back from HubSpot) would come again and again. Each event's
        // command carries its idempotency key, so an event processed twice (a repeated
        // delivery, a crash between the command and its removal from the file) has one
        // effect.
        let kept: Vec<String> = events.iter().map(Value::to_string).collect();
        let at = self.clock.now().to_rfc3339();
        if let Err(e) = self.state.received_events("hubspot", &at, &kept) {
            // Not kept: HubSpot delivers again on a 5xx.
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "error": { "code": "state_unavailable", "message": e.to_string() } }),
            );
        }
        (StatusCode::OK, json!({ "received": kept.len() }))
    }

    /// Processes the events received and not processed yet, oldest first: each becomes
    /// its command (or its bad input is recorded) and leaves the state file. Answers what
    /// each gave. When HubSpot cannot be asked (a deal's amount could not be read), the
    /// event stays and the error is answered: the next call takes it up again.
    pub async fn process_pending(&self) -> Result<Vec<Value>, CrmError> {
        let mut results = Vec::new();
        loop {
            let pending = self
                .state
                .pending_events("hubspot", 100)
                .map_err(|e| CrmError::Transient(e.to_string()))?;
            if pending.is_empty() {
                return Ok(results);
            }
            for (id, text) in pending {
                let event: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let result = match self.event(&event).await {
                    Ok(result) => result,
                    Err(Fault::Crm(e)) => return Err(e),
                    Err(Fault::Input(code, message)) => {
                        self.record(&code, &message, text.as_bytes());
                        json!({ "error": { "code": code, "message": message } })
                    }
                };
                self.state
                    .event_processed(id)
                    .map_err(|e| CrmError::Transient(e.to_string()))?;
                results.push(result);
            }
        }
    }

    fn record(&self, code: &str, error: &str, body: &[u8]) {
        let at = self.clock.now().to_rfc3339();
        if let Err(e) = self.state.inbound_error("hubspot", &at, code, error, body) {
            tracing::error!(%e, "an inbound error could not be recorded");
        }
    }

    async fn event(&self, event: &Value) -> Result<Value, Fault> {
        let kind = event
            .get("subscriptionType")
            .and_then(Value::as_str)
            .ok_or_else(|| Fault::input("missing_field", "an event has no subscriptionType"))?;
        let object_id = match event.get("objectId") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            _ => return Err(Fault::input("missing_field", "an event has no objectId")),
        };
        let occurred = event
            .get("occurredAt")
            .and_then(Value::as_i64)
            .ok_or_else(|| Fault::input("missing_field", "an event has no occurredAt"))?;
        // The developer platform's generic subscriptions (`object.propertyChange`,
        // `object.creation`, ...) name the object by `objectTypeId` (`0-3`: deals) where the
        // legacy ones say `deal.propertyChange`: "Public Beta: Generic Webhook
        // Subscriptions", https://developers.hubspot.com/changelog/public-beta-generic-webhook-subscriptions
        // ("objectTypeId in the response payload in raw ID format (e.g., 0-1 for
        // contacts)"); otherwise the same fields. Both shapes of one change make one key,
        // so an app subscribed both ways acts once.
        let generic;
        let kind = match kind.strip_prefix("object.") {
            None => kind,
            Some(action) => {
                let object_type = event.get("objectTypeId").and_then(Value::as_str);
                if object_type != Some(DEALS_OBJECT_TYPE_ID) {
                    return Ok(json!({ "ignored": format!(
                        "{kind} of object type {} is not a deal (0-3)",
                        object_type.unwrap_or("(none)")
                    ) }));
                }
                generic = format!("deal.{action}");
                generic.as_str()
            }
        };
        let key = format!("hubspot:{kind}:{object_id}:{occurred}");
        let inbound = &self.config.inbound;
        match kind {
            "deal.propertyChange" => {
                if event.get("propertyName").and_then(Value::as_str) != Some("dealstage") {
                    return Ok(json!({ "ignored": "not a deal stage change" }));
                }
                let stage = event
                    .get("propertyValue")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        Fault::input("missing_field", "a stage change has no propertyValue")
                    })?;
                let won = inbound.hubspot_won_stages.iter().any(|s| s == stage);
                let lost = inbound.hubspot_lost_stages.iter().any(|s| s == stage);
                if !won && !lost {
                    if inbound.hubspot_open_stages.iter().any(|s| s == stage) {
                        return Ok(json!({ "ignored": format!("{stage} is an open stage") }));
                    }
                    return Err(Fault::Input(
                        "unknown_stage".into(),
                        format!(
                            "deal {object_id} moved to stage {stage:?}, which crm.toml names neither won ({}), lost ({}) nor open; add it to [inbound]",
                            inbound.hubspot_won_stages.join(", "),
                            inbound.hubspot_lost_stages.join(", ")
                        ),
                    ));
                }
                let (registration, account) = self.registration_of(&object_id)?;
                let command = if won {
                    let amount = self.deal_amount(&object_id).await?;
                    json!({ "type": "mark_won", "account": account, "registration_id": registration, "amount": amount,
                            "order_reference": format!("hubspot:deal:{object_id}") })
                } else {
                    json!({ "type": "mark_lost", "account": account, "registration_id": registration,
                            "reason": format!("closed lost in HubSpot (deal {object_id})") })
                };
                let role = if won { "rev_ops" } else { "channel_manager" };
                Ok(self.execute(&key, role, command).await)
            }
            "deal.creation" => {
                let external_id = self.registration_id_property();
                let properties = [
                    external_id.as_str(),
                    "amount",
                    "deal_currency_code",
                    inbound.hubspot_account_property.as_str(),
                    inbound.hubspot_product_line_property.as_str(),
                    inbound.hubspot_owner_property.as_str(),
                ];
                let deal = self.deal(&object_id, &properties).await?;
                let property = |name: &str| {
                    deal.pointer(&format!("/properties/{name}"))
                        .and_then(Value::as_str)
                        .filter(|s| !s.trim().is_empty())
                        .map(str::to_string)
                };
                if property(&external_id).is_some() {
                    return Ok(json!({ "ignored": "a deal dealreg created" }));
                }
                let account = property(&inbound.hubspot_account_property).ok_or_else(|| {
                    Fault::Input(
                        "missing_field".into(),
                        format!(
                            "deal {object_id} has no {} (the customer's domain)",
                            inbound.hubspot_account_property
                        ),
                    )
                })?;
                let product_line =
                    property(&inbound.hubspot_product_line_property).ok_or_else(|| {
                        Fault::Input(
                            "missing_field".into(),
                            format!(
                                "deal {object_id} has no {}",
                                inbound.hubspot_product_line_property
                            ),
                        )
                    })?;
                let amount = amount_of(&deal, &object_id)?;
                let owner = property(&inbound.hubspot_owner_property)
                    .map_or_else(|| "hubspot".to_string(), |o| format!("hubspot-owner-{o}"));
                let command = json!({ "type": "record_direct_opportunity", "account": account,
                    "opportunity_id": format!("hubspot-{object_id}"), "owner": owner,
                    "product_line": product_line, "amount": amount });
                Ok(self.execute(&key, "direct_sales", command).await)
            }
            other => {
                Ok(json!({ "ignored": format!("{other} is not a subscription dealreg acts on") }))
            }
        }
    }

    fn registration_mapping(&self) -> Option<&str> {
        self.config
            .objects
            .iter()
            .find(|o| o.view == "pipeline" && o.table == "registration")
            .map(|o| o.name.as_str())
    }

    fn registration_id_property(&self) -> String {
        self.config
            .objects
            .iter()
            .find(|o| o.view == "pipeline" && o.table == "registration")
            .and_then(|o| o.target(Target::Hubspot))
            .map_or_else(
                || "dealreg_registration_id".into(),
                |t| t.external_id.clone(),
            )
    }

    fn deals_object(&self) -> String {
        self.config
            .objects
            .iter()
            .find(|o| o.view == "pipeline" && o.table == "registration")
            .and_then(|o| o.target(Target::Hubspot))
            .map_or_else(|| "deals".into(), |t| t.object.clone())
    }

    /// The registration (and its account) a HubSpot deal mirrors, from what the outbound
    /// sync wrote.
    fn registration_of(&self, deal_id: &str) -> Result<(String, String), Fault> {
        let known = self
            .state
            .record_by_crm_id(Target::Hubspot.name(), &self.deals_object(), deal_id)
            .map_err(|e| Fault::Input("state".into(), e.to_string()))?
            .filter(|r| Some(r.mapping.as_str()) == self.registration_mapping());
        let Some(known) = known else {
            return Err(Fault::Input(
                "unknown_record".into(),
                format!("HubSpot deal {deal_id} matches no registration dealreg synced"),
            ));
        };
        let account = known
            .fields
            .get("dealreg_account")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Fault::Input(
                    "unknown_record".into(),
                    format!("HubSpot deal {deal_id} was synced without dealreg_account; map the account field"),
                )
            })?;
        Ok((known.external_id, account.to_string()))
    }

    async fn deal(&self, id: &str, properties: &[&str]) -> Result<Value, Fault> {
        match self
            .client
            .get_object(&self.deals_object(), id, properties)
            .await
        {
            Ok(Some(deal)) => Ok(deal),
            Ok(None) => Err(Fault::Input(
                "unknown_record".into(),
                format!("HubSpot has no deal {id}"),
            )),
            Err(e) => Err(Fault::Crm(e)),
        }
    }

    async fn deal_amount(&self, id: &str) -> Result<Value, Fault> {
        let deal = self.deal(id, &["amount", "deal_currency_code"]).await?;
        amount_of(&deal, id)
    }

    async fn execute(&self, key: &str, role: &str, command: Value) -> Value {
        let fact = Fact {
            source: "hubspot",
            key,
            role,
            command,
        };
        execute_fact(&self.commands, &self.state, &*self.clock, fact).await
    }
}

/// A CRM fact as a command: who says it and under which idempotency key.
pub(crate) struct Fact<'a> {
    /// `hubspot` or `salesforce`: the actor's user, and where a refusal is recorded.
    pub source: &'a str,
    pub key: &'a str,
    pub role: &'a str,
    pub command: Value,
}

/// Executes a CRM fact as the vendor role it names; a refusal is recorded for `dealreg
/// crm status` (the engine has recorded it in the log too). Answers the engine's reply.
pub(crate) async fn execute_fact<S: CommandSink>(
    commands: &S,
    state: &SyncState,
    clock: &dyn Clock,
    fact: Fact<'_>,
) -> Value {
    let envelope = json!({
        "idempotency_key": fact.key,
        "actor": { "kind": "vendor", "role": fact.role, "user": fact.source },
        "command": fact.command,
    });
    let reply = commands.execute(envelope.to_string().into_bytes()).await;
    if reply.get("ok").and_then(Value::as_bool) != Some(true) {
        let code = reply
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("refused");
        let message = reply
            .pointer("/error/message")
            .and_then(Value::as_str)
            .unwrap_or("the command was refused");
        let at = clock.now().to_rfc3339();
        if let Err(e) = state.inbound_error(
            fact.source,
            &at,
            code,
            message,
            envelope.to_string().as_bytes(),
        ) {
            tracing::error!(%e, "an inbound error could not be recorded");
        }
    }
    reply
}

fn amount_of(deal: &Value, id: &str) -> Result<Value, Fault> {
    let text = deal
        .pointer("/properties/amount")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            Fault::Input(
                "no_amount".into(),
                format!("HubSpot deal {id} has no amount"),
            )
        })?;
    let currency = deal
        .pointer("/properties/deal_currency_code")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            Fault::Input(
                "no_amount".into(),
                format!("HubSpot deal {id} has no deal_currency_code"),
            )
        })?;
    let exponent = dealreg_domain::money::Currency::try_from(currency.to_string())
        .map_err(|e| Fault::Input("invalid_field".into(), format!("deal {id}: {e}")))?
        .exponent();
    let minor = minor_units(text, exponent).ok_or_else(|| {
        Fault::Input(
            "invalid_field".into(),
            format!("HubSpot deal {id} has amount {text:?}, not an amount in {currency}"),
        )
    })?;
    Ok(json!({ "amount_minor": minor, "currency": currency }))
}

enum Fault {
    /// Bad input from the CRM: answered, recorded, nothing changed.
    Input(String, String),
    /// The CRM could not be asked: HubSpot should deliver again.
    Crm(CrmError),
}

impl Fault {
    fn input(code: &str, message: &str) -> Fault {
        Fault::Input(code.into(), message.into())
    }
}

/// Serves the webhook endpoint on `listener` until `shutdown` resolves: `POST` of any
/// path, answered by [`HubspotInbound::deliver`].
pub async fn serve<S: CommandSink>(
    listener: tokio::net::TcpListener,
    inbound: Arc<HubspotInbound<S>>,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    // The worker that processes what deliveries kept: woken by each delivery, and every
    // 30 s (events kept before a restart, events whose deal could not be read).
    let received = Arc::new(tokio::sync::Notify::new());
    let worker = {
        let inbound = Arc::clone(&inbound);
        let received = Arc::clone(&received);
        tokio::spawn(async move {
            loop {
                let wait = match inbound.process_pending().await {
                    Ok(_) => std::time::Duration::from_secs(30),
                    Err(CrmError::Throttled(wait)) => wait.min(std::time::Duration::from_secs(300)),
                    Err(e) => {
                        tracing::warn!(%e, "webhook events wait: HubSpot could not be asked");
                        std::time::Duration::from_secs(5)
                    }
                };
                let _ = tokio::time::timeout(wait, received.notified()).await;
            }
        })
    };
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => {
                worker.abort();
                return;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(%e, "a webhook connection could not be accepted");
                continue;
            }
        };
        let inbound = Arc::clone(&inbound);
        let received = Arc::clone(&received);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let inbound = Arc::clone(&inbound);
                let received = Arc::clone(&received);
                async move {
                    let response = answer(&inbound, request).await;
                    if response.status() == StatusCode::OK {
                        received.notify_one();
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%e, %peer, "a webhook connection ended with an error");
            }
        });
    }
}

async fn answer<S: CommandSink>(
    inbound: &HubspotInbound<S>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let reply = |status: StatusCode, body: Value| {
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        response
    };
    if parts.method != hyper::Method::POST {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({ "error": { "code": "method_not_allowed", "message": "deliver webhooks with POST" } }),
        );
    }
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "error": { "code": "too_large", "message": format!("a delivery is at most {MAX_BODY} bytes") } }),
            );
        }
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let (status, body) = inbound
        .deliver(
            parts.method.as_str(),
            &path,
            header("X-HubSpot-Signature-v3"),
            header("X-HubSpot-Request-Timestamp"),
            &body,
        )
        .await;
    reply(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_parse_exactly() {
        assert_eq!(minor_units("12500", 2), Some(1_250_000));
        assert_eq!(minor_units("12500.5", 2), Some(1_250_050));
        assert_eq!(minor_units("0.05", 2), Some(5));
        assert_eq!(minor_units("-3.10", 2), Some(-310));
        assert_eq!(minor_units("7", 0), Some(7));
        assert_eq!(minor_units("1.234", 2), None);
        assert_eq!(minor_units("1e3", 2), None);
        assert_eq!(minor_units("", 2), None);
        assert_eq!(minor_units("99999999999999999999", 2), None);
    }

    #[test]
    fn a_signature_matches_only_its_own_request() {
        let secret = b"app-secret";
        let signature = sign(
            secret,
            "POST",
            "https://hooks.example.com/hubspot",
            b"[]",
            "1700000000000",
        );
        assert!(signature_matches(
            secret,
            "POST",
            "https://hooks.example.com/hubspot",
            b"[]",
            "1700000000000",
            &signature
        ));
        assert!(!signature_matches(
            secret,
            "POST",
            "https://hooks.example.com/hubspot",
            b"[1]",
            "1700000000000",
            &signature
        ));
        assert!(!signature_matches(
            secret,
            "POST",
            "https://hooks.example.com/hubspot",
            b"[]",
            "1700000000001",
            &signature
        ));
        assert!(!signature_matches(
            b"other",
            "POST",
            "https://hooks.example.com/hubspot",
            b"[]",
            "1700000000000",
            &signature
        ));
        assert!(!signature_matches(
            secret,
            "POST",
            "https://hooks.example.com/hubspot",
            b"[]",
            "1700000000000",
            "not base64!"
        ));
    }
}
