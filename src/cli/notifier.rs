//! The notifier: alerts from the log to people, by e-mail and Slack, a duty of `dealreg
//! serve` (`--notify-config`), run by the process that holds the deployment's duties.
//!
//! How each alert is sent once per event and recipient (docs/NOTIFICATIONS.md):
//! - the fold ([`dealreg_projections::alerts`]) turns each event into alerts; each alert
//!   and recipient (and channel) is one *message* with an id derived from them, so the
//!   same event read again makes the same message;
//! - messages enter the state file's outbox together with the log position they were
//!   made at, in one transaction (`INSERT OR IGNORE`, and never if the id is in `sent`);
//! - a message leaves the outbox for `sent` in one transaction right after its carrier
//!   took it. A process killed between the two sends that one message again, with the
//!   same `Message-ID` (the only window; it is milliseconds wide).
//!
//! Personal data: the state file holds ids, alert kinds and business values, never a
//! recipient's name or address; those are opened from the sealed subscription at send
//! time, so after `dealreg forget` nothing can be opened and nothing is sent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use dealreg_actions::{Link, LinkKey};
use dealreg_domain::values::{ContactOnRecord, QuietHours};
use dealreg_domain::{Actor, PartnerId, VendorRole};
use dealreg_events::{EventStore, Position};
use dealreg_notify::{
    CarrierError, Email, Mailbox, Secret, Security, SlackCarrier, SlackMessage, SlackTarget,
    SmtpCarrier, SmtpSettings, Templates,
};
use dealreg_projections::alerts::{Alert, AlertAudience, Alerts, Subscriber};
use dealreg_vault::KeyVault;
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Messages sent per round at most.
const SEND_BATCH: usize = 200;

/// Attempts after which a message that keeps failing transiently (an untrusted
/// certificate, a server down for good) goes to the dead letters: with the backoff
/// doubling from 5 s to an hour, about 21 hours.
const GIVE_UP_AFTER: i64 = 30;

/// The notifier's settings (a TOML file; docs/NOTIFICATIONS.md). Secrets are named by the
/// environment variable that holds them, never written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The program's name in every alert.
    #[serde(default = "default_program")]
    pub program: String,
    pub from_name: String,
    pub from_address: String,
    /// Replies to partner alerts go to `reply+<token>@<reply_domain>` (the inbound
    /// listener of `serve --smtp-inbound`); none: no reply address.
    #[serde(default)]
    pub reply_domain: Option<String>,
    /// Where `serve --http` is reached, e.g. `https://deals.example.com`; none: no links.
    #[serde(default)]
    pub links_base: Option<String>,
    /// The link signing key (created when missing); default beside the state file.
    #[serde(default)]
    pub link_key: Option<PathBuf>,
    #[serde(default = "default_link_days")]
    pub link_days: u32,
    /// The state file (outbox, sent list, reply addresses); default beside the store.
    #[serde(default)]
    pub state: Option<PathBuf>,
    /// A directory of templates overriding the built-in ones.
    #[serde(default)]
    pub templates: Option<PathBuf>,
    /// Hours before a pending registration's decision is due that channel managers hear.
    #[serde(default = "default_approval_lead")]
    pub approval_lead_hours: u32,
    /// The UTC hour a daily digest goes out.
    #[serde(default = "default_digest_hour")]
    pub digest_hour: u8,
    /// A new state file starts at the log's beginning instead of its head, and the
    /// subscriptions recorded anywhere in the log receive the alerts of all of it: to send
    /// a program's history to the people subscribed now (a backfill). Off by default.
    #[serde(default)]
    pub backfill: bool,
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    #[serde(default)]
    pub slack: Option<SlackConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// `starttls` (default), `tls`, or `none` (loopback only).
    #[serde(default = "default_security")]
    pub security: String,
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A PEM certificate to trust besides the public roots (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The environment variable holding an incoming webhook's URL.
    #[serde(default)]
    pub webhook_url_env: Option<String>,
    /// The environment variable holding a bot token (chat.postMessage).
    #[serde(default)]
    pub bot_token_env: Option<String>,
    #[serde(default)]
    pub api_base: Option<String>,
}

fn default_program() -> String {
    "the partner program".into()
}
fn default_link_days() -> u32 {
    7
}
fn default_approval_lead() -> u32 {
    12
}
fn default_digest_hour() -> u8 {
    8
}
fn default_security() -> String {
    "starttls".into()
}

impl NotifyConfig {
    pub fn read(path: &Path) -> Result<NotifyConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The state file: as configured, else `<store>.notify.db` beside a SQLite store.
    pub fn state_path(&self, store: Option<&Path>) -> Result<PathBuf, String> {
        match (&self.state, store) {
            (Some(path), _) => Ok(path.clone()),
            (None, Some(store)) => {
                let mut name = store.as_os_str().to_owned();
                name.push(".notify.db");
                Ok(PathBuf::from(name))
            }
            (None, None) => Err(
                "a store that is not a SQLite file has no default notifier state file; set `state` in the notifier settings".into(),
            ),
        }
    }

    /// The link signing key: as configured, else beside the state file.
    pub fn key_path(&self, state: &Path) -> PathBuf {
        self.link_key.clone().unwrap_or_else(|| {
            let mut name = state.as_os_str().to_owned();
            name.push(".link-key");
            PathBuf::from(name)
        })
    }
}

fn env_secret(var: &str, what: &str) -> Result<Secret, String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Ok(Secret::new(value)),
        _ => Err(format!(
            "{what}: the environment variable {var} is not set (the notifier settings name it; put the secret there)"
        )),
    }
}

/// What the notifier sends with.
pub struct Carriers {
    pub smtp: Option<SmtpCarrier>,
    pub slack: Option<SlackCarrier>,
}

impl Carriers {
    pub fn from_config(config: &NotifyConfig) -> Result<Carriers, String> {
        let smtp = match &config.smtp {
            None => None,
            Some(s) => {
                let security = match s.security.as_str() {
                    "none" => Security::None,
                    "starttls" => Security::StartTls,
                    "tls" => Security::Tls,
                    other => {
                        return Err(format!(
                            "smtp.security {other:?}: use starttls, tls or none"
                        ))
                    }
                };
                let credentials = match (&s.username, &s.password_env) {
                    (Some(user), Some(var)) => {
                        Some((user.clone(), env_secret(var, "smtp.password_env")?))
                    }
                    (None, None) => None,
                    _ => return Err("smtp: give both username and password_env, or neither".into()),
                };
                Some(
                    SmtpCarrier::new(SmtpSettings {
                        host: s.host.clone(),
                        port: s.port,
                        security,
                        credentials,
                        timeout: Duration::from_secs(10),
                        extra_root_pem: match &s.ca_file {
                            Some(path) => Some(
                                std::fs::read(path)
                                    .map_err(|e| format!("smtp.ca_file {}: {e}", path.display()))?,
                            ),
                            None => None,
                        },
                    })
                    .map_err(|e| format!("smtp: {e}"))?,
                )
            }
        };
        let slack = match &config.slack {
            None => None,
            Some(s) => {
                let target = match (&s.webhook_url_env, &s.bot_token_env) {
                    (Some(var), None) => {
                        SlackTarget::Webhook(env_secret(var, "slack.webhook_url_env")?)
                    }
                    (None, Some(var)) => SlackTarget::Bot {
                        token: env_secret(var, "slack.bot_token_env")?,
                        api_base: s
                            .api_base
                            .clone()
                            .unwrap_or_else(|| dealreg_notify::DEFAULT_SLACK_API_BASE.into()),
                    },
                    _ => {
                        return Err(
                            "slack: name exactly one of webhook_url_env and bot_token_env".into(),
                        )
                    }
                };
                Some(SlackCarrier::new(target).map_err(|e| format!("slack: {e}"))?)
            }
        };
        Ok(Carriers { smtp, slack })
    }
}

/// The notifier's state file: progress, outbox, sent list, dead letters, reply addresses.
pub struct NotifierState {
    db: Mutex<Connection>,
}

/// A message waiting in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiting {
    alert: Alert,
    partner_id: Option<PartnerId>,
    user: String,
    channel: Channel,
    digest: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Channel {
    Email,
    Slack,
}

/// Where a reply to an alert e-mail goes: the registration, the person who may reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplyTarget {
    pub account: String,
    pub registration_id: String,
    pub partner_id: PartnerId,
    pub user: String,
    /// The sealed subscription contact: the reply's sender must be that address.
    pub recipient: ContactOnRecord,
}

impl NotifierState {
    pub fn open(path: &Path) -> Result<NotifierState, String> {
        let db = Connection::open(path)
            .map_err(|e| format!("cannot open the notifier state {}: {e}", path.display()))?;
        db.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS progress (one INTEGER PRIMARY KEY CHECK (one = 1), position TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, body TEXT NOT NULL, due_at INTEGER NOT NULL, next_try INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS sent (id TEXT PRIMARY KEY, at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS dead (id TEXT PRIMARY KEY, kind TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS replies (id TEXT PRIMARY KEY, target TEXT NOT NULL);",
        )
        .map_err(|e| format!("cannot set up the notifier state {}: {e}", path.display()))?;
        Ok(NotifierState { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn progress(&self) -> Result<Option<Position>, String> {
        let text: Option<String> = self
            .db()
            .query_row("SELECT position FROM progress WHERE one = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| e.to_string())?;
        text.map(|t| {
            t.parse()
                .map_err(|_| format!("the notifier state names an unreadable position {t:?}"))
        })
        .transpose()
    }

    /// Queues `messages` and records `position` as done, in one transaction.
    fn queue(
        &self,
        messages: &[(String, Waiting, i64)],
        position: Option<Position>,
    ) -> Result<(), String> {
        let mut db = self.db();
        let tx = db.transaction().map_err(|e| e.to_string())?;
        for (id, waiting, due) in messages {
            let body = serde_json::to_string(waiting).map_err(|e| e.to_string())?;
            tx.execute(
                "INSERT OR IGNORE INTO outbox (id, body, due_at, next_try) SELECT ?1, ?2, ?3, ?3 WHERE NOT EXISTS (SELECT 1 FROM sent WHERE id = ?1)",
                params![id, body, due],
            )
            .map_err(|e| e.to_string())?;
        }
        if let Some(position) = position {
            tx.execute(
                "INSERT INTO progress (one, position) VALUES (1, ?1) ON CONFLICT(one) DO UPDATE SET position = excluded.position",
                params![position.to_string()],
            )
            .map_err(|e| e.to_string())?;
        }
        tx.commit().map_err(|e| e.to_string())
    }

    fn due(&self, now: i64, limit: usize) -> Result<Vec<(String, Waiting, i64, i64)>, String> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT id, body, due_at, attempts FROM outbox WHERE next_try <= ?1 AND due_at <= ?1 ORDER BY due_at, id LIMIT ?2")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(params![now, limit as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body, due, attempts) = row.map_err(|e| e.to_string())?;
            match serde_json::from_str(&body) {
                Ok(waiting) => out.push((id, waiting, due, attempts)),
                Err(e) => {
                    tracing::warn!(message = %id, error = %e, "an outbox entry is unreadable; left for a person")
                }
            }
        }
        Ok(out)
    }

    fn mark_sent(&self, ids: &[String], now: i64) -> Result<(), String> {
        let mut db = self.db();
        let tx = db.transaction().map_err(|e| e.to_string())?;
        for id in ids {
            tx.execute("DELETE FROM outbox WHERE id = ?1", params![id])
                .map_err(|e| e.to_string())?;
            tx.execute(
                "INSERT OR IGNORE INTO sent (id, at) VALUES (?1, ?2)",
                params![id, now],
            )
            .map_err(|e| e.to_string())?;
        }
        tx.commit().map_err(|e| e.to_string())
    }

    fn retry_later(&self, id: &str, next_try: i64) -> Result<(), String> {
        self.db()
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, next_try = ?2 WHERE id = ?1",
                params![id, next_try],
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn dead_letter(&self, id: &str, kind: &str, reason: &str, now: i64) -> Result<(), String> {
        let mut db = self.db();
        let tx = db.transaction().map_err(|e| e.to_string())?;
        tx.execute("DELETE FROM outbox WHERE id = ?1", params![id])
            .map_err(|e| e.to_string())?;
        tx.execute(
            "INSERT OR REPLACE INTO dead (id, kind, reason, at) VALUES (?1, ?2, ?3, ?4)",
            params![id, kind, reason, now],
        )
        .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())
    }

    fn remember_reply(&self, id: Uuid, target: &ReplyTarget) -> Result<(), String> {
        let body = serde_json::to_string(target).map_err(|e| e.to_string())?;
        self.db()
            .execute(
                "INSERT OR IGNORE INTO replies (id, target) VALUES (?1, ?2)",
                params![id.to_string(), body],
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Where a reply with reply id `id` goes, if the notifier sent one.
    pub fn reply_target(&self, id: Uuid) -> Result<Option<ReplyTarget>, String> {
        let body: Option<String> = self
            .db()
            .query_row(
                "SELECT target FROM replies WHERE id = ?1",
                params![id.to_string()],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| e.to_string())?;
        body.map(|b| serde_json::from_str(&b).map_err(|e| e.to_string()))
            .transpose()
    }

    /// The outbox, sent list and dead letters as an operator reads them.
    pub fn report(&self) -> Result<serde_json::Value, String> {
        let db = self.db();
        let count = |table: &str| -> Result<i64, String> {
            db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
                .map_err(|e| e.to_string())
        };
        let mut stmt = db
            .prepare("SELECT id, kind, reason, at FROM dead ORDER BY at, id")
            .map_err(|e| e.to_string())?;
        let dead = stmt
            .query_map([], |r| {
                Ok(serde_json::json!({
                    "message": r.get::<_, String>(0)?,
                    "kind": r.get::<_, String>(1)?,
                    "reason": r.get::<_, String>(2)?,
                    "at": DateTime::from_timestamp(r.get::<_, i64>(3)?, 0),
                }))
            })
            .map_err(|e| e.to_string())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(serde_json::json!({
            "waiting": count("outbox")?,
            "sent": count("sent")?,
            "dead_letters": dead,
        }))
    }
}

/// A stable id from parts (hex of SHA-256, 32 characters).
fn stable_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// A UUID made from a stable id (the link's idempotency key, the reply address's id): the
/// same message gets the same link however often it is rendered.
fn uuid_of(id: &str, what: &str) -> Uuid {
    derived_uuid(what.as_bytes(), id.as_bytes())
}

/// A UUID derived from `prefix` and `bytes` (the first 16 bytes of their SHA-256): the same
/// input, the same id, for ids that must survive a retry (links, reply addresses, the note
/// an e-mail reply becomes).
pub fn derived_uuid(prefix: &[u8], bytes: &[u8]) -> Uuid {
    let mut h = Sha256::new();
    h.update(prefix);
    h.update(bytes);
    let digest = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(id).into_uuid()
}

/// When a message for `subscriber` made at `at` may go: after quiet hours, or at the next
/// digest hour.
fn release_time(subscriber: &Subscriber, at: DateTime<Utc>, digest_hour: u8) -> DateTime<Utc> {
    let next_hour = |hour: u8| {
        let today = at
            .date_naive()
            .and_hms_opt(u32::from(hour), 0, 0)
            .map(|t| t.and_utc())
            .unwrap_or(at);
        if today > at {
            today
        } else {
            today + chrono::Duration::days(1)
        }
    };
    if subscriber.digest {
        return next_hour(digest_hour);
    }
    match subscriber.quiet_hours {
        Some(QuietHours {
            start_hour,
            end_hour,
        }) => {
            let hour = at.hour() as u8;
            let quiet = if start_hour < end_hour {
                hour >= start_hour && hour < end_hour
            } else {
                hour >= start_hour || hour < end_hour
            };
            if quiet {
                next_hour(end_hour)
            } else {
                at
            }
        }
        None => at,
    }
}

/// Whose digest a message joins: the partner (none for the vendor), the user, and
/// whether it goes by e-mail (else Slack).
type DigestOf = (Option<PartnerId>, String, bool);

/// The notifier: the fold, the state, the carriers.
pub struct Notifier<S> {
    store: S,
    vault: Arc<dyn KeyVault>,
    config: NotifyConfig,
    carriers: Carriers,
    templates: Templates,
    key: Arc<LinkKey>,
    pub state: Arc<NotifierState>,
    fold: Alerts,
    position: Position,
    /// Whether the fold caught up with the saved progress (it is rebuilt at start).
    caught_up_to: Position,
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Round {
    pub events: usize,
    pub queued: usize,
    pub sent: usize,
}

impl<S: EventStore> Notifier<S> {
    /// Opens the notifier. A new state file starts at the log's head: a notifier added to
    /// a running program does not send its whole history (the fold still reads it all).
    pub async fn new(
        store: S,
        vault: Arc<dyn KeyVault>,
        config: NotifyConfig,
        state_path: &Path,
    ) -> Result<Notifier<S>, String> {
        let carriers = Carriers::from_config(&config)?;
        let templates = match &config.templates {
            Some(dir) => Templates::load(dir, dealreg_notify::BUILTIN_SPECS),
            None => Templates::builtin(),
        }
        .map_err(|e| format!("templates: {e}"))?;
        let key = LinkKey::load_or_create(&config.key_path(state_path))
            .map_err(|e| format!("the link key: {e}"))?;
        let state = Arc::new(NotifierState::open(state_path)?);
        let mut fold = Alerts::new(chrono::Duration::hours(i64::from(
            config.approval_lead_hours,
        )));
        let caught_up_to = match state.progress()? {
            Some(position) => position,
            None if config.backfill => {
                subscriptions_of(&store, &mut fold).await?;
                Position::ORIGIN
            }
            None => {
                let head = store.last_position().await.map_err(|e| e.to_string())?;
                state.queue(&[], Some(head))?;
                head
            }
        };
        Ok(Notifier {
            store,
            vault,
            config,
            carriers,
            templates,
            key: Arc::new(key),
            state,
            fold,
            position: Position::ORIGIN,
            caught_up_to,
        })
    }

    /// Takes up the duty: another process of the deployment may have sent since this one
    /// last held it, so the progress is read again (what it queued is not queued twice;
    /// what it sent is in the sent list either way).
    pub fn resume(&mut self) -> Result<(), String> {
        if let Some(progress) = self.state.progress()? {
            self.caught_up_to = self.caught_up_to.max(progress);
        }
        Ok(())
    }

    /// The domain of reply addresses, if replies are taken.
    pub fn reply_domain(&self) -> Option<String> {
        self.config.reply_domain.clone()
    }

    /// The link key (shared with the link pages and the inbound listener).
    pub fn link_key(&self) -> Arc<LinkKey> {
        Arc::clone(&self.key)
    }

    /// Reads what the log has after the fold's position, queues the messages its events
    /// make (past the saved progress only), queues approvals coming due, and sends what is
    /// due. Returns what it did.
    pub async fn round(&mut self, now: DateTime<Utc>) -> Result<Round, String> {
        let mut round = Round::default();
        loop {
            let page = self
                .store
                .read_all(self.position, 512)
                .await
                .map_err(|e| e.to_string())?;
            let Some(last) = page.last().map(|r| r.position) else {
                break;
            };
            let mut messages = Vec::new();
            for recorded in &page {
                let event = dealreg_engine::decode_event(recorded)
                    .map_err(|e| format!("position {}: {e}", recorded.position))?;
                let alerts = self.fold.apply(&recorded.event_id.to_string(), &event);
                if recorded.position > self.caught_up_to {
                    for alert in alerts {
                        messages.extend(self.messages_of(&alert));
                    }
                }
            }
            round.events += page.len();
            round.queued += messages.len();
            let newer = (last > self.caught_up_to).then_some(last);
            self.state.queue(&messages, newer)?;
            self.position = last;
            if let Some(last) = newer {
                self.caught_up_to = last;
            }
            if page.len() < 512 {
                break;
            }
        }
        let due: Vec<_> = self
            .fold
            .due_at(now)
            .iter()
            .flat_map(|a| self.messages_of(a))
            .collect();
        self.state.queue(&due, None)?;
        round.sent = self.send_due(now).await?;
        Ok(round)
    }

    /// The messages of one alert: per subscribed person, per channel they chose.
    fn messages_of(&self, alert: &Alert) -> Vec<(String, Waiting, i64)> {
        let mut out = Vec::new();
        for subscriber in self.fold.recipients(alert) {
            let mut channels = Vec::new();
            if subscriber.by_email && self.carriers.smtp.is_some() {
                channels.push(Channel::Email);
            }
            if subscriber.slack_channel.is_some() && self.carriers.slack.is_some() {
                channels.push(Channel::Slack);
            }
            let partner = subscriber
                .partner_id
                .map(|p| p.to_string())
                .unwrap_or_default();
            for channel in channels {
                let channel_name = match channel {
                    Channel::Email => "email",
                    Channel::Slack => "slack",
                };
                let id = stable_id(&[&alert.id, &partner, &subscriber.user, channel_name]);
                let due = release_time(subscriber, alert.at, self.config.digest_hour);
                out.push((
                    id,
                    Waiting {
                        alert: alert.clone(),
                        partner_id: subscriber.partner_id,
                        user: subscriber.user.clone(),
                        channel,
                        digest: subscriber.digest,
                    },
                    due.timestamp(),
                ));
            }
        }
        out
    }

    /// Sends what is due; a daily digest's messages go as one per person and channel.
    async fn send_due(&self, now: DateTime<Utc>) -> Result<usize, String> {
        let due = self.state.due(now.timestamp(), SEND_BATCH)?;
        let mut sent = 0;
        let mut digests: BTreeMap<DigestOf, Vec<(String, Waiting)>> = BTreeMap::new();
        // A carrier that failed transiently (a server down or frozen, Slack's 429) is not
        // tried again this round: one timeout a round, not one a message.
        let mut resting: Vec<Channel> = Vec::new();
        for (id, waiting, _, attempts) in due {
            if resting.contains(&waiting.channel) {
                continue;
            }
            if waiting.digest {
                digests
                    .entry((
                        waiting.partner_id,
                        waiting.user.clone(),
                        waiting.channel == Channel::Email,
                    ))
                    .or_default()
                    .push((id, waiting));
                continue;
            }
            match self.deliver(&id, &waiting, now).await {
                Ok(true) => {
                    self.state
                        .mark_sent(std::slice::from_ref(&id), now.timestamp())?;
                    sent += 1;
                }
                Ok(false) => self
                    .state
                    .mark_sent(std::slice::from_ref(&id), now.timestamp())?,
                Err(error) => {
                    if error.is_transient() {
                        resting.push(waiting.channel);
                    }
                    self.failed(&id, &waiting.alert.kind, error, attempts, now)?
                }
            }
        }
        for ((partner, user, _), items) in digests {
            let ids: Vec<String> = items.iter().map(|(id, _)| id.clone()).collect();
            let digest_id = stable_id(&ids.iter().map(String::as_str).collect::<Vec<_>>());
            // Slack refuses a section over 3,000 characters: a long day is cut, saying so.
            let mut list = String::new();
            for (n, (_, w)) in items.iter().enumerate() {
                let line = self.summary(&w.alert);
                if list.len() + line.len() > 2_800 {
                    list.push_str(&format!("\n- and {} more", items.len() - n));
                    break;
                }
                if !list.is_empty() {
                    list.push('\n');
                }
                list.push_str(&line);
            }
            let mut alert = items[0].1.alert.clone();
            alert.kind = "digest".into();
            alert.fields = BTreeMap::from([("items".to_string(), list)]);
            alert.offers.clear();
            alert.registration = None;
            let waiting = Waiting {
                alert,
                partner_id: partner,
                user,
                channel: items[0].1.channel,
                digest: true,
            };
            match self.deliver(&digest_id, &waiting, now).await {
                Ok(_) => {
                    self.state.mark_sent(&ids, now.timestamp())?;
                    sent += 1;
                }
                Err(error) => {
                    for id in &ids {
                        self.failed(id, "digest", error.clone(), 0, now)?;
                    }
                }
            }
        }
        Ok(sent)
    }

    fn failed(
        &self,
        id: &str,
        kind: &str,
        error: CarrierError,
        attempts: i64,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        match error {
            // Tried for about a day (backoff doubling to an hour): a person must look.
            CarrierError::Transient { reason, .. } if attempts + 1 >= GIVE_UP_AFTER => {
                tracing::warn!(message = %id, kind, %reason, attempts = attempts + 1, "an alert could not be sent for a day; kept in the dead letters");
                self.state.dead_letter(
                    id,
                    kind,
                    &format!("gave up after {} attempts: {reason}", attempts + 1),
                    now.timestamp(),
                )
            }
            CarrierError::Transient {
                reason,
                retry_after,
            } => {
                let wait = retry_after
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or_else(|| (5_i64 << attempts.clamp(0, 10)).min(3600));
                tracing::warn!(message = %id, kind, %reason, wait_secs = wait, "an alert could not be sent; trying again");
                self.state.retry_later(id, now.timestamp() + wait.max(1))
            }
            CarrierError::Permanent { reason } => {
                tracing::warn!(message = %id, kind, %reason, "an alert can never be sent as it is; kept in the dead letters");
                self.state.dead_letter(id, kind, &reason, now.timestamp())
            }
        }
    }

    /// One line of a digest: the alert's subject.
    fn summary(&self, alert: &Alert) -> String {
        let values = self.values(alert, Vec::new(), "");
        match self.templates.render(&alert.kind, &values) {
            Ok(r) => format!("- {}", r.subject),
            Err(_) => format!("- {}", alert.kind),
        }
    }

    /// The template values of `alert` for a person named `name`, with the offered actions'
    /// links (the first as `action_url`, a decline as `decline_url`).
    fn values(&self, alert: &Alert, links: Vec<String>, name: &str) -> BTreeMap<String, String> {
        let mut values = BTreeMap::new();
        if let Some(spec) = dealreg_notify::BUILTIN_SPECS
            .iter()
            .find(|s| s.kind == alert.kind)
        {
            for placeholder in spec.placeholders {
                values.insert((*placeholder).to_string(), String::new());
            }
        }
        values.extend(alert.fields.clone());
        values.insert("recipient_name".into(), name.to_string());
        values.insert("program".into(), self.config.program.clone());
        let mut links = links.into_iter();
        values.insert("action_url".into(), links.next().unwrap_or_default());
        if let Some(decline) = links.next() {
            values.insert("decline_url".into(), decline);
        }
        values
    }

    /// The signed links of the alert's offered actions for this person.
    fn links(&self, id: &str, waiting: &Waiting, now: DateTime<Utc>) -> Vec<String> {
        waiting
            .alert
            .offers
            .iter()
            .filter_map(|offer| self.link(id, waiting, offer, now))
            .collect()
    }

    /// The signed link of one offered action for this person.
    fn link(
        &self,
        id: &str,
        waiting: &Waiting,
        offer: &dealreg_projections::alerts::Offered,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let base = self.config.links_base.as_deref()?;
        let actor = match (&waiting.alert.audience, waiting.partner_id) {
            (AlertAudience::Partner(p), Some(_)) => Actor::Partner {
                partner_id: *p,
                user: waiting.user.clone(),
            },
            _ => Actor::Vendor {
                role: VendorRole::ChannelManager,
                user: waiting.user.clone(),
            },
        };
        let link = Link {
            id: uuid_of(id, &offer.action),
            action: offer.action.clone(),
            fields: offer
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
            actor: serde_json::to_value(&actor).ok()?,
            expires_at: now + chrono::Duration::days(i64::from(self.config.link_days)),
        };
        Some(format!(
            "{}/a/{}",
            base.trim_end_matches('/'),
            self.key.sign(&link)
        ))
    }

    /// Sends one message. `Ok(false)`: nobody to send to any more (erased, unsubscribed).
    async fn deliver(
        &self,
        id: &str,
        waiting: &Waiting,
        now: DateTime<Utc>,
    ) -> Result<bool, CarrierError> {
        let Some(subscriber) = self.fold.subscriber(waiting.partner_id, &waiting.user) else {
            return Ok(false);
        };
        let Some(contact) = self.open(&subscriber.recipient).await else {
            return Ok(false);
        };
        let links = self.links(id, waiting, now);
        let values = self.values(&waiting.alert, links, &contact.name);
        let rendered = self
            .templates
            .render(&waiting.alert.kind, &values)
            .map_err(|e| CarrierError::Permanent {
                reason: e.to_string(),
            })?;
        match waiting.channel {
            Channel::Email => {
                let Some(smtp) = &self.carriers.smtp else {
                    return Ok(false);
                };
                let reply_to = self.reply_address(id, waiting, subscriber, now);
                let email = Email {
                    message_id: format!(
                        "{id}@{}",
                        self.config
                            .reply_domain
                            .as_deref()
                            .unwrap_or("dealreg.invalid")
                    ),
                    from: Mailbox::new(
                        self.config.from_name.clone(),
                        self.config.from_address.clone(),
                    ),
                    to: Mailbox::new(contact.name.clone(), contact.email.clone()),
                    reply_to,
                    subject: rendered.subject,
                    text: rendered.text,
                    html: Some(rendered.html),
                    headers: vec![("X-Dealreg-Alert".into(), waiting.alert.kind.clone())],
                };
                smtp.send(&email).await.map(|()| true)
            }
            Channel::Slack => {
                let Some(slack) = &self.carriers.slack else {
                    return Ok(false);
                };
                let mut message: SlackMessage = rendered.slack;
                message.channel = subscriber.slack_channel.clone();
                slack.post(&message).await.map(|()| true)
            }
        }
    }

    /// A partner's alert about a registration gets a reply address that turns a reply
    /// into a note on it.
    fn reply_address(
        &self,
        id: &str,
        waiting: &Waiting,
        subscriber: &Subscriber,
        now: DateTime<Utc>,
    ) -> Option<Mailbox> {
        let domain = self.config.reply_domain.as_deref()?;
        let partner = waiting.partner_id?;
        let (account, registration) = waiting.alert.registration.clone()?;
        let reply_id = uuid_of(id, "reply");
        let target = ReplyTarget {
            account,
            registration_id: registration.to_string(),
            partner_id: partner,
            user: waiting.user.clone(),
            recipient: subscriber.recipient.clone(),
        };
        if let Err(e) = self.state.remember_reply(reply_id, &target) {
            tracing::warn!(error = %e, "a reply address could not be recorded; the alert goes without one");
            return None;
        }
        let expires = now + chrono::Duration::days(i64::from(self.config.link_days) * 4);
        let token = self.key.sign_reply(reply_id, expires);
        Some(Mailbox {
            name: Some(self.config.from_name.clone()),
            address: format!("reply+{token}@{domain}"),
        })
    }

    /// Opens a sealed contact with its person's key; `None` when erased or unreadable.
    async fn open(&self, recipient: &ContactOnRecord) -> Option<dealreg_domain::values::Contact> {
        open_contact(self.vault.as_ref(), recipient).await
    }
}

/// Folds every subscription of the log into `fold` (a backfill's recipients).
async fn subscriptions_of<S: EventStore>(store: &S, fold: &mut Alerts) -> Result<(), String> {
    let mut after = Position::ORIGIN;
    loop {
        let page = store
            .read_all(after, 1024)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = page.last().map(|r| r.position) else {
            return Ok(());
        };
        for recorded in page
            .iter()
            .filter(|r| r.event_type == "alert_subscription_set")
        {
            let event = dealreg_engine::decode_event(recorded)
                .map_err(|e| format!("position {}: {e}", recorded.position))?;
            fold.apply(&recorded.event_id.to_string(), &event);
        }
        after = last;
    }
}

/// Opens a subscription's sealed contact; `None` when the person was erased.
pub async fn open_contact(
    vault: &dyn KeyVault,
    recipient: &ContactOnRecord,
) -> Option<dealreg_domain::values::Contact> {
    match recipient {
        ContactOnRecord::Clear(c) => Some(c.clone()),
        ContactOnRecord::Erased(_) => None,
        ContactOnRecord::Sealed(sealed) => {
            let key = vault.key_of(sealed.person).await.ok().flatten()?;
            dealreg_engine::personal::open(sealed, &key).ok()
        }
    }
}

/// `dealreg alerts --config PATH`: the notifier's state as JSON.
pub fn status(
    spec: &super::store::StoreSpec,
    config: &Path,
) -> Result<std::process::ExitCode, String> {
    let config = NotifyConfig::read(config)?;
    let path = config.state_path(spec.sqlite_path())?;
    if !path.exists() {
        return Err(format!(
            "no notifier state at {}: the notifier has not run with these settings",
            path.display()
        ));
    }
    let state = NotifierState::open(&path)?;
    println!("{}", state.report()?);
    Ok(std::process::ExitCode::SUCCESS)
}

/// Runs the notifier until `stop`: a round every `every`.
pub async fn run<S: EventStore>(
    notifier: Arc<tokio::sync::Mutex<Notifier<S>>>,
    every: Duration,
    mut stop: dealreg_host::host::DutyStop,
) {
    if let Err(e) = notifier.lock().await.resume() {
        tracing::warn!(error = %e, "the notifier's progress could not be read; going on from its own");
    }
    loop {
        let result = notifier.lock().await.round(Utc::now()).await;
        let busy = match result {
            Ok(round) if round.queued > 0 || round.sent > 0 => {
                tracing::info!(
                    events = round.events,
                    queued = round.queued,
                    sent = round.sent,
                    "alerts"
                );
                // A full batch sent: more may be due now; go on without waiting.
                round.sent >= SEND_BATCH
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(error = %e, "the notifier's round failed; trying again next round");
                false
            }
        };
        if busy {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::task::yield_now() => continue,
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every alert a person can subscribe to has built-in templates, and the fold makes
    /// no alert a person could not subscribe to.
    #[test]
    fn every_alert_kind_has_templates() {
        let templates = Templates::builtin().expect("the built-in templates load");
        let kinds: Vec<&str> = templates.kinds().collect();
        for kind in dealreg_domain::subscription::ALERT_KINDS {
            assert!(kinds.contains(kind), "no templates for {kind}");
        }
        for kind in kinds.iter().filter(|k| **k != "digest") {
            assert!(
                dealreg_domain::subscription::ALERT_KINDS.contains(kind),
                "{kind} has templates but nobody can subscribe to it"
            );
        }
    }

    #[test]
    fn quiet_hours_and_digests_hold_a_message_until_they_end() {
        let subscriber = |quiet_hours, digest| Subscriber {
            partner_id: None,
            user: "casey".into(),
            recipient: ContactOnRecord::Clear(dealreg_domain::values::Contact {
                name: "Casey".into(),
                email: "casey@vendor.example".into(),
                phone: None,
            }),
            by_email: true,
            slack_channel: None,
            alerts: Vec::new(),
            quiet_hours,
            digest,
        };
        let at = |h: u32| {
            chrono::NaiveDate::from_ymd_opt(2026, 12, 7)
                .and_then(|d| d.and_hms_opt(h, 30, 0))
                .map(|t| t.and_utc())
                .expect("a time")
        };
        let night = Some(QuietHours {
            start_hour: 20,
            end_hour: 7,
        });
        // Outside quiet hours: at once.
        assert_eq!(release_time(&subscriber(night, false), at(12), 8), at(12));
        // Late evening: the next morning at 07:00.
        let next_morning = at(7) + chrono::Duration::days(1) - chrono::Duration::minutes(30);
        assert_eq!(
            release_time(&subscriber(night, false), at(22), 8),
            next_morning
        );
        // Early morning: 07:00 the same day.
        assert_eq!(
            release_time(&subscriber(night, false), at(3), 8),
            at(7) - chrono::Duration::minutes(30)
        );
        // A digest: the next digest hour.
        assert_eq!(
            release_time(&subscriber(None, true), at(9), 8),
            at(8) + chrono::Duration::days(1) - chrono::Duration::minutes(30)
        );
    }

    #[test]
    fn a_message_id_is_stable_and_a_link_id_follows_it() {
        assert_eq!(stable_id(&["a", "b"]), stable_id(&["a", "b"]));
        assert_ne!(stable_id(&["a", "b"]), stable_id(&["ab", ""]));
        assert_eq!(uuid_of("m1", "approve"), uuid_of("m1", "approve"));
        assert_ne!(uuid_of("m1", "approve"), uuid_of("m1", "decline"));
    }
}
