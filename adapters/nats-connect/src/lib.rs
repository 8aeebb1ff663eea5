//! Every NATS connection a dealreg process opens: the service's, the JetStream store's, the
//! key vault's and the CRM feed reader's, with one set of credentials and one watch for a
//! server that stops answering.
//!
//! Why one place: the store and the vault connect as the same user as the service (the
//! example configuration gives that user the log's subjects), so credentials given once
//! must reach every connection, and a secret must never reach a message: every URL shown
//! goes through [`redact`].
//!
//! Why a liveness probe of our own: the client sends a PING only after a ping interval
//! without traffic, and every command it sends resets that interval, so a busy process
//! never notices a server that froze without closing its connections (SIGSTOP, a hung VM,
//! a partition). The probe sends a message to itself through the server every
//! [`Liveness::every`]; when none comes back within [`Liveness::silence`], the connection
//! is dropped and the client reconnects to another server of the list.
//!
//! Why [`Refusals`]: a publish the user may not make is dropped by the server, which says
//! so only on the connection (`-ERR 'Permissions Violation for Publish to ...'`); the
//! publisher waiting for a JetStream acknowledgement would otherwise report a time-out
//! ("may or may not have been written") instead of the real cause.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

/// How to authenticate and encrypt. The secrets are never printed: `Debug` shows `***`.
#[derive(Clone, Default)]
pub struct Access {
    /// A credentials file (JWT and nkey seed), for servers in operator mode.
    pub creds: Option<PathBuf>,
    /// A file holding an nkey seed (`SU...`).
    pub nkey: Option<PathBuf>,
    /// User name and password, for servers with user/password authorisation.
    pub user: Option<(String, String)>,
    /// A bearer token.
    pub token: Option<String>,
    /// Require TLS.
    pub tls: bool,
    /// A CA certificate (PEM) to trust.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and key (PEM) for mutual TLS.
    pub tls_client: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("creds", &self.creds)
            .field("nkey", &self.nkey)
            .field("user", &self.user.as_ref().map(|(user, _)| (user, "***")))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// How a silent server is found.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    /// How often a probe goes out.
    pub every: Duration,
    /// How long without a probe coming back before the connection is dropped. Also the
    /// deadline on connecting to one server and on a request.
    pub silence: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            every: Duration::from_secs(1),
            silence: Duration::from_secs(3),
        }
    }
}

/// Why a connection could not be made; the URLs in it are redacted.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("a NATS URL is invalid ({url}): {reason}; give nats://host:port, several separated by commas")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot read {what} {path}: {reason}")]
    Unreadable {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("cannot connect to NATS at {urls}: {reason}; check the URLs, that the server runs and the credentials (--nats-user with DEALREG_NATS_PASSWORD, --nats-creds, --nats-nkey, DEALREG_NATS_TOKEN)")]
    Connect { urls: String, reason: String },
}

/// The refusals a server sent on one connection (permission violations), newest last, so
/// that a caller that got no answer can tell a refused publish from a slow server.
#[derive(Debug, Clone, Default)]
pub struct Refusals {
    seen: Arc<Mutex<VecDeque<(Instant, String)>>>,
}

/// How many refusals a connection remembers.
const REFUSALS_KEPT: usize = 64;

impl Refusals {
    fn record(&self, message: String) {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() == REFUSALS_KEPT {
                seen.pop_front();
            }
            seen.push_back((Instant::now(), message));
        }
    }

    /// The server's message refusing a publish to `subject` (or to a subject it names
    /// with a wildcard) since `since`, if one came.
    pub fn publish_denied(&self, subject: &str, since: Instant) -> Option<String> {
        self.refusal(subject, since, "permissions violation for publish")
    }

    /// Whether the server refused anything on `subject` (a publish or a subscription)
    /// since `since`.
    pub fn refused_on(&self, subject: &str, since: Instant) -> bool {
        self.refusal(subject, since, "permissions violation")
            .is_some()
    }

    /// The newest refusal since `since` whose message starts with `kind` (any case) and
    /// names `subject`, or a wildcard subject over it.
    fn refusal(&self, subject: &str, since: Instant, kind: &str) -> Option<String> {
        let seen = self.seen.lock().ok()?;
        seen.iter()
            .rev()
            .take_while(|(at, _)| *at >= since)
            .find(|(_, message)| {
                message.to_ascii_lowercase().contains(kind)
                    && denied_subject(message)
                        .is_some_and(|denied| subject_matches(&denied, subject))
            })
            .map(|(_, message)| message.clone())
    }

    /// Every refusal seen since `since`, oldest first.
    pub fn since(&self, since: Instant) -> Vec<String> {
        self.seen.lock().map_or_else(
            |_| Vec::new(),
            |seen| {
                seen.iter()
                    .filter(|(at, _)| *at >= since)
                    .map(|(_, message)| message.clone())
                    .collect()
            },
        )
    }
}

/// The subject in `Permissions Violation for Publish to "SUBJECT"`.
fn denied_subject(message: &str) -> Option<String> {
    let start = message.find('"')? + 1;
    let end = start + message[start..].find('"')?;
    Some(message[start..end].to_string())
}

/// Whether `subject` is `denied` or falls under it (`*` one token, `>` the rest).
fn subject_matches(denied: &str, subject: &str) -> bool {
    let mut pattern = denied.split('.');
    let mut tokens = subject.split('.');
    loop {
        match (pattern.next(), tokens.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(t)) if p == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A connection and the refusals its server sent.
#[derive(Debug, Clone)]
pub struct Connection {
    pub client: async_nats::Client,
    pub refusals: Refusals,
}

/// One URL cut where its user part is: the scheme (`nats`), the user part (`user:password`,
/// a token) if any, and the rest from the host on.
struct Parts<'a> {
    scheme: Option<&'a str>,
    userinfo: Option<&'a str>,
    rest: &'a str,
}

fn parts(url: &str) -> Parts<'_> {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => Parts {
            scheme,
            userinfo: Some(&rest[..at]),
            rest: &rest[at + 1..],
        },
        None => Parts {
            scheme,
            userinfo: None,
            rest,
        },
    }
}

/// The user part of `url` (`user:password` in `nats://user:password@host`), if it has one.
pub fn userinfo(url: &str) -> Option<&str> {
    parts(url.trim()).userinfo
}

/// `url` (several comma-separated allowed) with any user, password or token replaced by
/// `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let Parts {
                scheme,
                userinfo,
                rest,
            } = parts(one.trim());
            let hidden = if userinfo.is_some() { "***@" } else { "" };
            match scheme {
                Some(scheme) => format!("{scheme}://{hidden}{rest}"),
                None => format!("{hidden}{rest}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// `text` with every secret of `access` and of `urls` replaced by `***`: the last guard on
/// an error message a library built from what it was given.
pub fn scrub(text: &str, access: &Access, urls: &[String]) -> String {
    let mut secrets: Vec<String> = Vec::new();
    if let Some((_, password)) = &access.user {
        secrets.push(password.clone());
    }
    if let Some(token) = &access.token {
        secrets.push(token.clone());
    }
    for userinfo in urls.iter().flat_map(|u| u.split(',')).filter_map(userinfo) {
        secrets.push(userinfo.to_string());
        if let Some((_, password)) = userinfo.split_once(':') {
            secrets.push(password.to_string());
        }
    }
    secrets.retain(|s| !s.is_empty());
    // Longest first, so a password inside a user:password pair goes with the pair.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = text.to_string();
    for secret in secrets {
        text = text.replace(&secret, "***");
    }
    text
}

/// Connects to the servers in `urls` (tried in turn, kept for reconnects) as `name`, with
/// `access`, and starts the liveness probe. Returns once connected.
pub async fn connect(
    urls: &[String],
    access: &Access,
    name: &str,
    liveness: Liveness,
) -> Result<Connection, ConnectError> {
    connect_with(urls, access, name, liveness, false).await
}

/// As [`connect`], but returns at once and connects in the background (the first request
/// waits): for a service that must start while its server is still coming up.
pub async fn connect_retrying(
    urls: &[String],
    access: &Access,
    name: &str,
    liveness: Liveness,
) -> Result<Connection, ConnectError> {
    connect_with(urls, access, name, liveness, true).await
}

async fn connect_with(
    urls: &[String],
    access: &Access,
    name: &str,
    liveness: Liveness,
    in_background: bool,
) -> Result<Connection, ConnectError> {
    let servers = addresses(urls)?;
    let refusals = Refusals::default();
    let mut options = options(access, name, liveness, &refusals).await?;
    if in_background {
        options = options.retry_on_initial_connect();
    }
    let client = options
        .connect(servers)
        .await
        .map_err(|e| ConnectError::Connect {
            urls: redact(&urls.join(",")),
            reason: scrub(&e.to_string(), access, urls),
        })?;
    tokio::spawn(probe(client.clone(), liveness, refusals.clone()));
    Ok(Connection { client, refusals })
}

/// The servers of `urls`, each parsed (several may be given in one comma-separated entry).
fn addresses(urls: &[String]) -> Result<Vec<async_nats::ServerAddr>, ConnectError> {
    let mut servers = Vec::new();
    for url in urls.iter().flat_map(|u| u.split(',')) {
        let url = url.trim();
        if url.is_empty() {
            continue;
        }
        servers.push(url.parse::<async_nats::ServerAddr>().map_err(|e| {
            ConnectError::InvalidUrl {
                url: redact(url),
                reason: e.to_string(),
            }
        })?);
    }
    if servers.is_empty() {
        return Err(ConnectError::InvalidUrl {
            url: String::new(),
            reason: "no server was given".into(),
        });
    }
    Ok(servers)
}

async fn options(
    access: &Access,
    name: &str,
    liveness: Liveness,
    refusals: &Refusals,
) -> Result<async_nats::ConnectOptions, ConnectError> {
    let refusals = refusals.clone();
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .ping_interval(liveness.silence)
        .connection_timeout(liveness.silence)
        .request_timeout(Some(liveness.silence.max(Duration::from_secs(5))))
        // A connection that dropped (or that the probe dropped because its server went
        // silent) goes to another server of the list first: the one it left may be frozen,
        // and an attempt on a frozen server costs the whole connection timeout.
        .reconnect_to_server_callback(|servers, left| async move { next_server(&servers, &left) })
        .event_callback(move |event| {
            let refusals = refusals.clone();
            async move {
            match event {
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                async_nats::Event::Disconnected => {
                    tracing::warn!("disconnected from NATS; reconnecting to a server of the list")
                }
                async_nats::Event::ServerError(e) => {
                    let message = e.to_string();
                    if message.to_ascii_lowercase().contains("permissions violation") {
                        tracing::error!(refusal = %message, "the NATS server refused this user a subject; grant it in the server's configuration (adapters/nats/deploy/nats-server.conf lists what dealreg needs)");
                    } else {
                        tracing::warn!(error = %message, "NATS server error");
                    }
                    refusals.record(message);
                }
                async_nats::Event::ClientError(e) => tracing::warn!(error = %e, "NATS client error"),
                other => tracing::info!(event = %other, "NATS connection"),
            }
            }
        });
    if let Some(path) = &access.creds {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| ConnectError::Unreadable {
                what: "the credentials file",
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
    }
    if let Some(path) = &access.nkey {
        let seed = std::fs::read_to_string(path).map_err(|e| ConnectError::Unreadable {
            what: "the nkey seed",
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        options = options.nkey(seed.trim().to_string());
    }
    if let Some((user, password)) = &access.user {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &access.token {
        options = options.token(token.clone());
    }
    if access.tls {
        options = options.require_tls(true);
    }
    if let Some(ca) = &access.tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &access.tls_client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options)
}

/// The server to reconnect to: the one with the fewest failed attempts, the one just left
/// counting two more (so it is tried again once the others keep failing), at once on a
/// first attempt; `None` (the client's own choice) when there is no other.
fn next_server(
    servers: &[async_nats::Server],
    left: &async_nats::ServerInfo,
) -> Option<async_nats::ReconnectToServer> {
    if left.port == 0 {
        // Not connected yet: the first connection tries every server in turn.
        return None;
    }
    let unspecified = left.host.is_empty() || left.host == "0.0.0.0" || left.host == "::";
    let is_left = |server: &async_nats::Server| {
        server.addr.port() == left.port && (unspecified || server.addr.host() == left.host)
    };
    if servers.iter().all(is_left) {
        return None;
    }
    let next = servers
        .iter()
        .min_by_key(|server| server.failed_attempts + if is_left(server) { 2 } else { 0 })?;
    let pause = Duration::from_millis(250 * next.failed_attempts.min(8) as u64);
    Some(async_nats::ReconnectToServer {
        addr: next.addr.clone(),
        delay: Some(pause),
    })
}

/// Sends a message to itself through the server every `liveness.every`; when none comes
/// back within `liveness.silence` while connected, drops the connection so that the client
/// reconnects (to another server of its list when this one stays silent). Ends when the
/// client is gone, or when the user may not publish on its own inbox (a vendor or auditor
/// user of the example configuration): then only the client's own pings, after
/// `liveness.silence` without traffic, find a silent server.
async fn probe(client: async_nats::Client, liveness: Liveness, refusals: Refusals) {
    let subject = client.new_inbox();
    let mut echoes = match client.subscribe(subject.clone()).await {
        Ok(subscriber) => subscriber,
        Err(e) => {
            tracing::warn!(error = %e, "the NATS liveness probe cannot subscribe; a silent server will not be noticed");
            return;
        }
    };
    let mut sent: u64 = 0;
    let started = Instant::now();
    let mut heard = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(liveness.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            echo = echoes.next() => match echo {
                Some(_) => heard = tokio::time::Instant::now(),
                None => return,
            },
            _ = tick.tick() => {
                if refusals.refused_on(&subject, started) {
                    tracing::warn!("this NATS user may not publish on its own inbox, so the liveness probe is off: a server that goes silent is found by the client's pings only");
                    return;
                }
                if client.connection_state() != async_nats::connection::State::Connected {
                    // Reconnecting: the silence counts from when the connection is back.
                    heard = tokio::time::Instant::now();
                    continue;
                }
                if heard.elapsed() > liveness.silence {
                    tracing::warn!(
                        silent_for_ms = heard.elapsed().as_millis() as u64,
                        "the NATS server stopped answering without closing the connection; reconnecting to another server"
                    );
                    heard = tokio::time::Instant::now();
                    if client.force_reconnect().await.is_err() {
                        return;
                    }
                    continue;
                }
                sent += 1;
                if client.publish(subject.clone(), sent.to_string().into()).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_secrets() {
        assert_eq!(
            redact("nats://dealreg:s3cret@127.0.0.1:4222,nats://tok@other:4222"),
            "nats://***@127.0.0.1:4222,nats://***@other:4222"
        );
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact("u:p@host:4222/x?y=1"), "***@host:4222/x?y=1");
    }

    #[test]
    fn a_refused_publish_is_matched_to_its_subject() {
        let refusals = Refusals::default();
        let before = Instant::now();
        refusals.record("Permissions Violation for Publish to \"dealreg.ev.account-x\"".into());
        assert!(refusals
            .publish_denied("dealreg.ev.account-x", before)
            .is_some());
        assert!(refusals
            .publish_denied("dealreg.ev.account-y", before)
            .is_none());
        assert!(subject_matches("dealreg.ev.>", "dealreg.ev.a.b"));
        assert!(subject_matches("a.*.c", "a.b.c"));
        assert!(!subject_matches("a.*", "a.b.c"));
        let later = Instant::now() + Duration::from_secs(1);
        assert!(refusals
            .publish_denied("dealreg.ev.account-x", later)
            .is_none());
    }

    #[test]
    fn scrub_removes_every_secret_it_was_given() {
        let access = Access {
            user: Some(("dealreg".into(), "pw-1".into())),
            token: Some("tok-2".into()),
            ..Access::default()
        };
        let urls = vec!["nats://svc:pw-3@h:4222".to_string()];
        let text = scrub(
            "failed pw-1 tok-2 nats://svc:pw-3@h:4222 pw-3",
            &access,
            &urls,
        );
        for secret in ["pw-1", "tok-2", "pw-3"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(format!("{access:?}").contains("***"));
        assert!(!format!("{access:?}").contains("pw-1"));
    }
}
