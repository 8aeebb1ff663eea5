//! Opening the store: the server's version, the stream's configuration, and what an
//! acknowledgement is worth on this deployment.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use async_nats::jetstream::stream::{
    Config, DiscardPolicy, PersistenceMode, RetentionPolicy, StorageType,
};

/// The oldest nats-server the store runs on: atomic batch publish (ADR-50) came in 2.12.
/// Why refused rather than warned: an older server ignores the batch headers and stores
/// every message of a batch on its own, so a multi-event append would no longer be atomic
/// and nothing would say so.
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 12);

/// How the store is opened.
#[derive(Debug, Clone)]
pub struct JetStreamOptions {
    /// The JetStream stream that holds every event (default `DEALREG_EVENTS`).
    pub stream: String,
    /// Events of a stream named `s` go to `<subject_prefix>.<token of s>` (default
    /// `dealreg.ev`); the JetStream stream captures `<subject_prefix>.>`.
    pub subject_prefix: String,
    /// Replicas of the JetStream stream (default 1). 3 on a cluster: an acknowledgement
    /// then means a quorum of two nodes stored the event.
    pub replicas: usize,
    /// Create the JetStream stream when it is missing (default true). With false a missing
    /// stream is refused, for deployments where an operator creates it.
    pub create: bool,
    /// The server's monitoring endpoint (`http://host:8222`), read once at open to tell
    /// whether a single node syncs every write to disk (`/varz`); JetStream's own API does
    /// not say.
    pub monitoring_url: Option<String>,
    /// How long to wait for an acknowledgement or a read (default 5 s). An append whose
    /// acknowledgement did not come in time is reported as
    /// [`dealreg_events::StoreError::OutcomeUnknown`].
    pub timeout: Duration,
    /// How [`JetStreamStore::connect`](crate::JetStreamStore::connect) authenticates
    /// (default: anonymously).
    pub access: dealreg_nats_connect::Access,
    /// How a silent server is found on the store's connection.
    pub liveness: dealreg_nats_connect::Liveness,
}

impl Default for JetStreamOptions {
    fn default() -> Self {
        JetStreamOptions {
            stream: "DEALREG_EVENTS".into(),
            subject_prefix: "dealreg.ev".into(),
            replicas: 1,
            create: true,
            monitoring_url: None,
            timeout: Duration::from_secs(5),
            access: dealreg_nats_connect::Access::default(),
            liveness: dealreg_nats_connect::Liveness::default(),
        }
    }
}

/// Why the store could not be opened; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("nats-server {found} is too old: the JetStream event store needs nats-server {}.{} or newer (atomic batch publish; an older server ignores the batch headers and would store a multi-event append piece by piece). Upgrade the server", MIN_SERVER_VERSION.0, MIN_SERVER_VERSION.1)]
    ServerTooOld { found: String },
    #[error("cannot read the nats-server version `{found}`; the JetStream event store needs nats-server {}.{} or newer", MIN_SERVER_VERSION.0, MIN_SERVER_VERSION.1)]
    UnreadableServerVersion { found: String },
    #[error("the NATS server does not run JetStream; start it with `-js` (or `jetstream {{}}` in its configuration)")]
    NoJetStream,
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    #[error("the JetStream stream `{stream}` does not exist; create it (open with `create: true`, or have an operator create it with subjects `{subjects}`, file storage, allow_atomic and allow_direct)")]
    StreamMissing { stream: String, subjects: String },
    #[error("the JetStream stream `{stream}` does not allow atomic batch publish; enable it (`allow_atomic: true`, `nats stream edit {stream} --allow-batch`), or a multi-event append could not be atomic")]
    AtomicPublishOff { stream: String },
    #[error("the JetStream stream `{stream}` cannot hold dealreg's events: {problem}; change the stream (or the options) and open again")]
    StreamUnfit { stream: String, problem: String },
    #[error("cannot connect to NATS at {urls}: {reason}; check the URLs, that the server runs and the credentials (--nats-user with DEALREG_NATS_PASSWORD, --nats-creds, --nats-nkey, DEALREG_NATS_TOKEN)")]
    Connect { urls: String, reason: String },
    #[error("NATS failed while opening the event store: {0}; check that the server (and, on a cluster, a quorum of it) is up, then open again")]
    Nats(String),
}

/// `(major, minor, patch)` of `2.15.1`, `2.12.0-RC.1`, `v2.12`.
fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.trim().trim_start_matches('v');
    let core = core.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        Some(p) => p.parse().ok()?,
        None => 0,
    };
    Some((major, minor, patch))
}

/// Refuses a server older than [`MIN_SERVER_VERSION`], naming both versions.
pub fn check_server_version(version: &str) -> Result<(), OpenError> {
    let Some((major, minor, _)) = parse_version(version) else {
        return Err(OpenError::UnreadableServerVersion {
            found: version.to_string(),
        });
    };
    if (major, minor) < MIN_SERVER_VERSION {
        return Err(OpenError::ServerTooOld {
            found: version.to_string(),
        });
    }
    Ok(())
}

/// The configuration a created stream gets. Why each setting: file storage survives a
/// restart; atomic publish makes a multi-event append one batch; direct get lets any
/// replica serve reads; no limits and denied delete and purge, because a log that drops
/// events is no log.
pub(crate) fn stream_config(options: &JetStreamOptions) -> Config {
    Config {
        name: options.stream.clone(),
        subjects: vec![format!("{}.>", options.subject_prefix)],
        storage: StorageType::File,
        num_replicas: options.replicas,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        allow_direct: true,
        allow_atomic_publish: true,
        deny_delete: true,
        deny_purge: true,
        description: Some("dealreg events: one subject per event stream".into()),
        ..Default::default()
    }
}

/// Checks a stream's configuration as the server reports it.
pub(crate) fn check_stream(config: &Config, options: &JetStreamOptions) -> Result<(), OpenError> {
    let unfit = |problem: String| OpenError::StreamUnfit {
        stream: options.stream.clone(),
        problem,
    };
    let wanted = format!("{}.>", options.subject_prefix);
    if !config.subjects.contains(&wanted) {
        return Err(unfit(format!(
            "its subjects are {:?}, not `{wanted}`",
            config.subjects
        )));
    }
    if !config.allow_atomic_publish {
        return Err(OpenError::AtomicPublishOff {
            stream: options.stream.clone(),
        });
    }
    if !config.allow_direct {
        return Err(unfit(
            "direct get is off (`allow_direct: false`); reads need it".into(),
        ));
    }
    if config.storage != StorageType::File {
        return Err(unfit(
            "it keeps messages in memory; an event log needs file storage".into(),
        ));
    }
    if config.retention != RetentionPolicy::Limits {
        return Err(unfit(format!(
            "its retention is {:?}, which deletes events once consumed; use limits retention without limits",
            config.retention
        )));
    }
    let limits = [
        (config.max_messages > 0, "max_msgs"),
        (config.max_bytes > 0, "max_bytes"),
        (config.max_messages_per_subject > 0, "max_msgs_per_subject"),
        (!config.max_age.is_zero(), "max_age"),
    ];
    let set: Vec<&str> = limits
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
    if !set.is_empty() {
        return Err(unfit(format!(
            "it has limits ({}) that would delete events; remove them",
            set.join(", ")
        )));
    }
    if config.sealed {
        return Err(unfit("it is sealed and takes no more messages".into()));
    }
    if config.persist_mode == Some(PersistenceMode::Async) {
        return Err(unfit(
            "its persist mode is async, which acknowledges before the write is stored".into(),
        ));
    }
    if config.num_replicas.max(1) != options.replicas.max(1) {
        return Err(unfit(format!(
            "it has {} replica(s) and the options ask for {}; set the options' replicas to match, or scale the stream",
            config.num_replicas.max(1),
            options.replicas.max(1)
        )));
    }
    Ok(())
}

/// What an acknowledged append is worth here, as found at open.
///
/// "Acknowledged means durable" needs either a replicated stream (R3: a quorum of two
/// nodes stored the event before the ack) or, on a single node, `sync_interval: always`
/// (the node fsyncs before it acknowledges). By default a node syncs every two minutes,
/// so a power loss may take acknowledged events with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// Replicas of the JetStream stream.
    pub replicas: usize,
    /// Whether the server syncs every write (`/varz` `jetstream.config.sync_always`);
    /// `None` when no monitoring URL was given or it could not be read.
    pub sync_always: Option<bool>,
    /// The sync interval `/varz` reported, as it wrote it, when it was read.
    pub sync_interval: Option<String>,
    /// Why `sync_always` is unknown, when it is.
    pub unknown_because: Option<String>,
}

impl Durability {
    /// Whether an acknowledged append survives the loss of the node that acknowledged it
    /// (replicated) or of its power (synced always).
    pub fn acknowledged_means_durable(&self) -> bool {
        self.replicas >= 2 || self.sync_always == Some(true)
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.replicas >= 2 {
            return write!(
                f,
                "replicated over {} nodes: an acknowledged event is stored on a quorum",
                self.replicas
            );
        }
        match self.sync_always {
            Some(true) => f.write_str(
                "one node with sync_interval: always: an acknowledged event was synced to disk",
            ),
            Some(false) => write!(
                f,
                "one node syncing every {}: an acknowledged event may be lost on a power loss; use 3 replicas or `jetstream {{ sync_interval: always }}`",
                self.sync_interval.as_deref().unwrap_or("interval")
            ),
            None => write!(
                f,
                "one node whose sync setting is unknown ({}): an acknowledged event may be lost on a power loss unless the server runs with `sync_interval: always`; use 3 replicas, or give the monitoring URL to check",
                self.unknown_because.as_deref().unwrap_or("not checked")
            ),
        }
    }
}

/// `host:port` and path of an `http://` URL.
fn split_http_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("the monitoring URL `{url}` is not an http:// URL (https is not supported)")
    })?;
    let (host, _) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err(format!("the monitoring URL `{url}` names no host"));
    }
    Ok((host.to_string(), "/varz".to_string()))
}

/// `/varz` of the monitoring endpoint, by a plain HTTP/1.0 GET (one request at open; no
/// HTTP client crate for it).
fn read_varz(url: &str, timeout: Duration) -> Result<serde_json::Value, String> {
    let (host, path) = split_http_url(url)?;
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{host}` resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut text = String::new();
    stream
        .take(16 * 1024 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("the answer is not HTTP")?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("/varz answered HTTP {status}"));
    }
    serde_json::from_str(body).map_err(|e| format!("/varz is not JSON: {e}"))
}

/// Finds what an acknowledgement is worth: the stream's replicas and, when a monitoring URL
/// is given, the server's sync setting.
pub(crate) async fn durability(replicas: usize, options: &JetStreamOptions) -> Durability {
    let mut found = Durability {
        replicas: replicas.max(1),
        sync_always: None,
        sync_interval: None,
        unknown_because: None,
    };
    let Some(url) = options.monitoring_url.clone() else {
        found.unknown_because = Some("no monitoring URL was given".into());
        return found;
    };
    let timeout = options.timeout;
    let varz = tokio::task::spawn_blocking(move || read_varz(&url, timeout))
        .await
        .unwrap_or_else(|e| Err(format!("the /varz reader failed: {e}")));
    match varz {
        Ok(varz) => {
            let config = &varz["jetstream"]["config"];
            found.sync_always = Some(config["sync_always"].as_bool().unwrap_or(false));
            found.sync_interval = match &config["sync_interval"] {
                serde_json::Value::Null => None,
                serde_json::Value::Number(n) => n
                    .as_u64()
                    .map(|ns| format!("{:?}", Duration::from_nanos(ns))),
                other => Some(other.to_string()),
            };
        }
        Err(reason) => found.unknown_because = Some(reason),
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_server_is_refused_naming_both_versions() {
        let err = check_server_version("2.11.9").expect_err("too old");
        let text = err.to_string();
        assert!(text.contains("2.11.9"), "{text}");
        assert!(text.contains("2.12"), "{text}");
        assert!(matches!(err, OpenError::ServerTooOld { .. }));
        assert!(check_server_version("1.99.0").is_err());
        assert!(check_server_version("2.2.0").is_err());
    }

    #[test]
    fn recent_servers_are_accepted() {
        for v in ["2.12.0", "2.15.1", "2.12.0-RC.1", "v2.13", "3.0.0"] {
            check_server_version(v).unwrap_or_else(|e| panic!("{v}: {e}"));
        }
    }

    #[test]
    fn an_unreadable_version_is_refused() {
        for v in ["", "two", "2", "2.x.1"] {
            assert!(
                matches!(
                    check_server_version(v),
                    Err(OpenError::UnreadableServerVersion { .. })
                ),
                "{v}"
            );
        }
    }

    #[test]
    fn a_created_stream_passes_its_own_check() {
        let options = JetStreamOptions::default();
        check_stream(&stream_config(&options), &options).expect("fit");
        let mut limited = stream_config(&options);
        limited.max_age = Duration::from_secs(60);
        assert!(check_stream(&limited, &options).is_err());
        let mut no_atomic = stream_config(&options);
        no_atomic.allow_atomic_publish = false;
        assert!(matches!(
            check_stream(&no_atomic, &options),
            Err(OpenError::AtomicPublishOff { .. })
        ));
    }

    #[test]
    fn durability_says_what_an_ack_is_worth() {
        let single = Durability {
            replicas: 1,
            sync_always: None,
            sync_interval: None,
            unknown_because: Some("no monitoring URL was given".into()),
        };
        assert!(!single.acknowledged_means_durable());
        assert!(single.to_string().contains("sync_interval: always"));
        assert!(Durability {
            sync_always: Some(true),
            ..single.clone()
        }
        .acknowledged_means_durable());
        assert!(Durability {
            replicas: 3,
            ..single
        }
        .acknowledged_means_durable());
    }

    #[test]
    fn monitoring_urls_are_split() {
        assert_eq!(
            split_http_url("http://127.0.0.1:8222").expect("url"),
            ("127.0.0.1:8222".to_string(), "/varz".to_string())
        );
        assert_eq!(split_http_url("http://n1:8222/").expect("url").0, "n1:8222");
        assert!(split_http_url("https://n1:8222").is_err());
    }
}
