//! Which store a job works on (`--store`), opening it, its views and its key vault, and the
//! clock a job runs on.
//!
//! `--store` names the log: `sqlite:PATH` (or a bare path: the embedded default),
//! `jetstream:URL[,URL...][?stream=NAME&replicas=N&monitor=URL]` or `kurrentdb:URL`
//! (docs/STORES.md). Every job works on every backend through [`Log`], one type that is
//! whichever backend the flag named.
//!
//! Why two ways to open: only the jobs meant to create a store (`demo`, `apply`, `import`,
//! `serve`) may create one; every reader refuses a missing, empty or foreign SQLite file,
//! so a mistyped `--store` is an error instead of a new, empty and "healthy" store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dealreg_clock::{ControlledClock, SharedClock, SystemClock};
use dealreg_events::{
    Appended, Capabilities, EventStore, ExpectedVersion, LogStream, NewEvent, Position,
    RecordedEvent, StoreError, StreamTip,
};
use dealreg_store_jetstream::{JetStreamOptions, JetStreamStore};
use dealreg_store_kurrentdb::KurrentStore;
use dealreg_store_sqlite::{OpenError, SqliteCheckpoints, SqliteOptions, SqliteStore, SqliteVault};
use dealreg_vault::{KeyMaterial, KeyVault};
use dealreg_vault_jetstream::{JetStreamVault, VaultOptions};

/// The operator's cap on the store file, in database pages (`PRAGMA max_page_count`; pages
/// are 4 KiB). Appends that would grow the file past it fail as on a full disk and are
/// counted as store failures.
pub const MAX_PAGES_ENV: &str = "DEALREG_SQLITE_MAX_PAGES";

/// Set to `1` to skip SQLite's quick check of an existing store file when a job that
/// writes opens it (for large stores whose integrity a scheduled `dealreg verify` covers;
/// the check reads the whole file).
pub const SKIP_CHECK_ENV: &str = "DEALREG_SQLITE_SKIP_CHECK";

/// What `--store` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// The embedded SQLite file at this path.
    Sqlite(PathBuf),
    /// A stream on NATS JetStream.
    JetStream(JetStreamSpec),
    /// KurrentDB (EventStoreDB).
    Kurrent(KurrentSpec),
}

/// `kurrentdb:URL[&views=PATH&keys=sqlite:PATH|keys=jetstream:URL]` (the URL as the
/// client takes it: `kurrentdb://host:2113?tls=false`; `kurrentdb:host:2113?tls=false`
/// is read as that too). `Debug` shows the connection string without its user part.
#[derive(Clone, PartialEq, Eq)]
pub struct KurrentSpec {
    /// The connection string handed to the client.
    pub url: String,
    /// This process's views of the log (a local file; rebuilt from the log when missing).
    pub views: PathBuf,
    /// Where the keys that seal contacts are kept.
    pub keys: KeysAt,
    /// Streams stored as `<namespace>.<stream>`, and only those read as the log, so another
    /// application's events on the same server are never taken for dealreg's.
    pub namespace: Option<String>,
}

/// Where a KurrentDB deployment keeps its key vault (KurrentDB holds only the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysAt {
    /// A SQLite vault file (`<path>-keys`): one host.
    Sqlite(PathBuf),
    /// The JetStream vault on these servers: every host shares it.
    JetStream(JetStreamSpec),
}

impl std::fmt::Debug for KurrentSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KurrentSpec")
            .field("url", &self.shown())
            .field("views", &self.views)
            .field("keys", &self.keys)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl KurrentSpec {
    fn parse(text: &str) -> Result<KurrentSpec, String> {
        let scheme_given = text
            .split('?')
            .next()
            .is_some_and(|head| head.contains("://"));
        let mut url = if scheme_given {
            text.to_string()
        } else {
            format!("kurrentdb://{text}")
        };
        let mut views = None;
        let mut keys = None;
        let mut namespace = None;
        // dealreg's own settings ride on the connection string's query; the client gets
        // the rest.
        if let Some((base, query)) = url.clone().split_once('?') {
            let mut kept = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                match pair.split_once('=') {
                    Some(("views", path)) if !path.is_empty() => views = Some(PathBuf::from(path)),
                    Some(("namespace", ns)) if !ns.is_empty() => namespace = Some(ns.to_string()),
                    Some(("keys", at)) => {
                        keys = Some(match at.split_once(':') {
                            Some(("sqlite", path)) if !path.is_empty() => {
                                KeysAt::Sqlite(path.into())
                            }
                            Some(("jetstream", rest)) => {
                                KeysAt::JetStream(JetStreamSpec::parse(rest)?)
                            }
                            _ => {
                                return Err(format!(
                                    "kurrentdb: keys={at} is not sqlite:PATH or jetstream:URL"
                                ))
                            }
                        })
                    }
                    _ => kept.push(pair),
                }
            }
            url = if kept.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", kept.join("&"))
            };
        }
        let url = with_kurrent_credentials(&url)?;
        Ok(KurrentSpec {
            url,
            views: views.unwrap_or_else(|| "dealreg-views-kurrentdb.db".into()),
            keys: keys.unwrap_or_else(|| KeysAt::Sqlite("dealreg-kurrentdb".into())),
            namespace,
        })
    }

    /// The connection string without a password, for messages and the views' owner.
    fn shown(&self) -> String {
        dealreg_nats_connect::redact(&self.url)
    }
}

/// The KurrentDB user, when the connection string names none (a secure server denies
/// anonymous access); the password comes from [`KURRENTDB_PASSWORD_ENV`].
pub const KURRENTDB_USER_ENV: &str = "DEALREG_KURRENTDB_USER";
/// The password of [`KURRENTDB_USER_ENV`]: in the environment, not in the process list.
pub const KURRENTDB_PASSWORD_ENV: &str = "DEALREG_KURRENTDB_PASSWORD";

/// `url` with the user and password of the environment as its user part, unless it has one.
fn with_kurrent_credentials(url: &str) -> Result<String, String> {
    let user = std::env::var(KURRENTDB_USER_ENV)
        .ok()
        .filter(|u| !u.is_empty());
    let password = std::env::var(KURRENTDB_PASSWORD_ENV)
        .ok()
        .filter(|p| !p.is_empty());
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(url.to_string());
    };
    if dealreg_nats_connect::userinfo(url).is_some() {
        return Ok(url.to_string());
    }
    match (user, password) {
        (Some(user), Some(password)) => {
            if user.contains([':', '@', '/']) || password.contains(['@', '/']) {
                return Err(format!(
                    "{KURRENTDB_USER_ENV} or {KURRENTDB_PASSWORD_ENV} holds ':', '@' or '/', which a connection string cannot carry; use another user or password"
                ));
            }
            Ok(format!("{scheme}://{user}:{password}@{rest}"))
        }
        (Some(_), None) => Err(format!(
            "{KURRENTDB_USER_ENV} needs the password in {KURRENTDB_PASSWORD_ENV}"
        )),
        (None, _) => Ok(url.to_string()),
    }
}

/// `jetstream:URL[,URL...][?stream=NAME&replicas=N&monitor=URL&views=PATH]`. `Debug`
/// shows the URLs without their user part.
#[derive(Clone, PartialEq, Eq)]
pub struct JetStreamSpec {
    /// The servers (`nats://host:port`), several for a cluster.
    pub urls: Vec<String>,
    /// The JetStream stream of the events (default `DEALREG_EVENTS`).
    pub stream: String,
    /// Replicas of the streams a job creates (the events, the key vault): 3 on a cluster.
    pub replicas: usize,
    /// The monitoring endpoint, read to tell whether a single node syncs every write.
    pub monitor: Option<String>,
    /// This process's views of the log (a local file; rebuilt from the log when missing).
    pub views: PathBuf,
}

impl std::fmt::Debug for JetStreamSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self
            .urls
            .iter()
            .map(|u| dealreg_nats_connect::redact(u))
            .collect();
        f.debug_struct("JetStreamSpec")
            .field("urls", &urls)
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("monitor", &self.monitor)
            .field("views", &self.views)
            .finish()
    }
}

impl JetStreamSpec {
    fn parse(text: &str) -> Result<JetStreamSpec, String> {
        let (urls, query) = text.split_once('?').unwrap_or((text, ""));
        let urls: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        if urls.is_empty() {
            return Err(
                "jetstream: needs the servers: jetstream:nats://host:4222[,nats://other:4222]"
                    .into(),
            );
        }
        let mut spec = JetStreamSpec {
            urls,
            stream: "DEALREG_EVENTS".into(),
            replicas: 1,
            monitor: None,
            views: PathBuf::new(),
        };
        let mut views = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "stream" if !value.is_empty() => spec.stream = value.into(),
                "replicas" => {
                    spec.replicas = value.parse().ok().filter(|r| (1..=5).contains(r)).ok_or_else(|| {
                        format!("jetstream: replicas={value} is not 1 to 5 (3 on a cluster)")
                    })?
                }
                "monitor" if !value.is_empty() => spec.monitor = Some(value.into()),
                "views" if !value.is_empty() => views = Some(PathBuf::from(value)),
                other => {
                    return Err(format!(
                        "jetstream: `{other}` is not a setting; use stream=NAME, replicas=N, monitor=URL or views=PATH"
                    ))
                }
            }
        }
        spec.views = views.unwrap_or_else(|| format!("dealreg-views-{}.db", spec.stream).into());
        Ok(spec)
    }
}

impl std::str::FromStr for StoreSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<StoreSpec, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("--store is empty; give a path (the embedded SQLite store), sqlite:PATH, jetstream:URL or kurrentdb:URL".into());
        }
        match text.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => Ok(StoreSpec::Sqlite(path.into())),
            Some(("jetstream", rest)) => JetStreamSpec::parse(rest).map(StoreSpec::JetStream),
            // The client's own connection string, as the README writes it:
            // `kurrentdb://host:2113`, `kurrentdb+discover://...`, `esdb://...`.
            Some((
                "kurrentdb" | "kurrentdb+discover" | "esdb" | "esdb+discover",
                rest,
            )) if rest.starts_with("//") => KurrentSpec::parse(text).map(StoreSpec::Kurrent),
            Some(("kurrentdb", rest)) if !rest.is_empty() => {
                KurrentSpec::parse(rest).map(StoreSpec::Kurrent)
            }
            Some((kind, _)) if is_scheme(kind) && !Path::new(text).exists() => Err(format!(
                "`{kind}:` is not a store this build knows; use sqlite:PATH (or a bare path), jetstream:URL or kurrentdb:URL (docs/STORES.md)"
            )),
            _ => Ok(StoreSpec::Sqlite(text.into())),
        }
    }
}

/// Whether `word` looks like a URL scheme rather than the start of a file name.
fn is_scheme(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 16
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '+')
}

impl StoreSpec {
    /// Every URL this spec holds (the servers of a JetStream log or key vault, the
    /// KurrentDB connection string): what a message must never print with its secrets.
    pub fn nats_urls(&self) -> Vec<String> {
        match self {
            StoreSpec::Sqlite(_) => Vec::new(),
            StoreSpec::JetStream(js) => js.urls.clone(),
            StoreSpec::Kurrent(kdb) => {
                let mut urls = vec![kdb.url.clone()];
                if let KeysAt::JetStream(js) = &kdb.keys {
                    urls.extend(js.urls.iter().cloned());
                }
                urls
            }
        }
    }
}

impl std::fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSpec::Sqlite(path) => write!(f, "{}", path.display()),
            StoreSpec::JetStream(js) => {
                write!(
                    f,
                    "jetstream:{}",
                    dealreg_nats_connect::redact(&js.urls.join(","))
                )?;
                if js.stream != "DEALREG_EVENTS" {
                    write!(f, "?stream={}", js.stream)?;
                }
                Ok(())
            }
            StoreSpec::Kurrent(kdb) => write!(f, "kurrentdb:{}", kdb.shown()),
        }
    }
}

impl StoreSpec {
    /// The SQLite file, for the jobs and checks only the embedded store has.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            StoreSpec::Sqlite(path) => Some(path),
            StoreSpec::JetStream(_) | StoreSpec::Kurrent(_) => None,
        }
    }
}

/// The log of whichever backend `--store` named.
#[derive(Clone)]
pub enum Log {
    Sqlite(SqliteStore),
    JetStream(JetStreamStore),
    Kurrent(KurrentStore),
}

impl Log {
    /// The SQLite store, for what only it has (its writer's figures, its records).
    pub fn sqlite(&self) -> Option<&SqliteStore> {
        match self {
            Log::Sqlite(store) => Some(store),
            _ => None,
        }
    }
}

impl EventStore for Log {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        match self {
            Log::Sqlite(s) => s.append(stream, expected, events).await,
            Log::JetStream(s) => s.append(stream, expected, events).await,
            Log::Kurrent(s) => s.append(stream, expected, events).await,
        }
    }

    async fn read_stream(
        &self,
        stream: &str,
        after: Option<&StreamTip>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match self {
            Log::Sqlite(s) => s.read_stream(stream, after, max).await,
            Log::JetStream(s) => s.read_stream(stream, after, max).await,
            Log::Kurrent(s) => s.read_stream(stream, after, max).await,
        }
    }

    async fn read_stream_to_append(
        &self,
        stream: &str,
        after: Option<&StreamTip>,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match self {
            Log::Sqlite(s) => s.read_stream_to_append(stream, after, max).await,
            Log::JetStream(s) => s.read_stream_to_append(stream, after, max).await,
            Log::Kurrent(s) => s.read_stream_to_append(stream, after, max).await,
        }
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match self {
            Log::Sqlite(s) => s.read_all(after, max).await,
            Log::JetStream(s) => s.read_all(after, max).await,
            Log::Kurrent(s) => s.read_all(after, max).await,
        }
    }

    fn subscribe_all(&self, after: Position) -> LogStream {
        match self {
            Log::Sqlite(s) => s.subscribe_all(after),
            Log::JetStream(s) => s.subscribe_all(after),
            Log::Kurrent(s) => s.subscribe_all(after),
        }
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        match self {
            Log::Sqlite(s) => s.last_position().await,
            Log::JetStream(s) => s.last_position().await,
            Log::Kurrent(s) => s.last_position().await,
        }
    }

    fn capabilities(&self) -> Capabilities {
        match self {
            Log::Sqlite(s) => s.capabilities(),
            Log::JetStream(s) => s.capabilities(),
            Log::Kurrent(s) => s.capabilities(),
        }
    }

    async fn append_streams(
        &self,
        appends: Vec<dealreg_events::StreamAppend>,
    ) -> Result<Vec<dealreg_events::Appended>, StoreError> {
        match self {
            Log::Sqlite(s) => s.append_streams(appends).await,
            Log::JetStream(s) => s.append_streams(appends).await,
            Log::Kurrent(s) => s.append_streams(appends).await,
        }
    }
}

/// Opens the store, creating it when missing (`demo`, `apply`, `import`, `serve`), with
/// its views.
pub async fn create_or_open(spec: &StoreSpec) -> Result<(Log, SqliteCheckpoints), String> {
    open_as(spec, with_check(SqliteOptions::create())?).await
}

/// Opens the store, which must already be one, for a job that appends to the log (the
/// timekeeper): a damaged file is refused before the first append, as by
/// [`create_or_open`].
pub async fn open_existing_to_append(spec: &StoreSpec) -> Result<(Log, SqliteCheckpoints), String> {
    open_as(spec, with_check(SqliteOptions::existing())?).await
}

/// Opens the store, which must already be one (every job that writes views or commands
/// but may not create the store), with its views.
pub async fn open_existing(spec: &StoreSpec) -> Result<(Log, SqliteCheckpoints), String> {
    open_as(spec, SqliteOptions::existing()).await
}

/// Opens the store for reading only (every job that only reads: events, verify, history,
/// replay, views as of a moment, forget's scan): nothing is written to it or beside it,
/// so an auditor's read-only copy works.
pub async fn open_read(spec: &StoreSpec) -> Result<Log, String> {
    match spec {
        StoreSpec::Sqlite(path) => SqliteStore::open_read_only(path)
            .map(Log::Sqlite)
            .map_err(|e| refusal(path, &e)),
        StoreSpec::JetStream(js) => jetstream(js, false).await.map(Log::JetStream),
        StoreSpec::Kurrent(kdb) => kurrent(kdb).await.map(Log::Kurrent),
    }
}

async fn open_as(
    spec: &StoreSpec,
    options: SqliteOptions,
) -> Result<(Log, SqliteCheckpoints), String> {
    let create = options.creates();
    let options = match max_pages()? {
        Some(pages) => options.max_pages(pages),
        None => options,
    };

    match spec {
        StoreSpec::Sqlite(path) => {
            let store = SqliteStore::open_with(path, &options).map_err(|e| refusal(path, &e))?;
            let checkpoints = SqliteCheckpoints::open_with(path, &options)
                .map_err(|e| format!("cannot open the views of {}: {e}", path.display()))?;
            Ok((Log::Sqlite(store), checkpoints))
        }
        StoreSpec::JetStream(js) => {
            let store = jetstream(js, create).await?;
            let checkpoints = SqliteCheckpoints::open_file(&js.views, store.identity())
                .map_err(|e| format!("cannot open the views file {}: {e}", js.views.display()))?;
            Ok((Log::JetStream(store), checkpoints))
        }
        StoreSpec::Kurrent(kdb) => {
            let store = kurrent(kdb).await?;
            let owner = format!("kurrentdb:{}", kdb.shown());
            let checkpoints = SqliteCheckpoints::open_file(&kdb.views, &owner)
                .map_err(|e| format!("cannot open the views file {}: {e}", kdb.views.display()))?;
            Ok((Log::Kurrent(store), checkpoints))
        }
    }
}

/// Connects to the KurrentDB `spec` names (a server holds its log whatever job asks).
async fn kurrent(spec: &KurrentSpec) -> Result<KurrentStore, String> {
    let options = dealreg_store_kurrentdb::KurrentOptions {
        namespace: spec.namespace.clone(),
        ..dealreg_store_kurrentdb::KurrentOptions::default()
    };
    KurrentStore::connect_with(&spec.url, options)
        .await
        .map_err(|e| format!("cannot open the KurrentDB store {}: {e}", spec.shown()))
}

/// Opens the JetStream store `spec` names, creating its stream only when `create`.
async fn jetstream(spec: &JetStreamSpec, create: bool) -> Result<JetStreamStore, String> {
    let options = JetStreamOptions {
        stream: spec.stream.clone(),
        replicas: spec.replicas,
        create,
        monitoring_url: spec.monitor.clone(),
        access: super::nats_access::access(),
        liveness: super::nats_access::liveness(),
        ..JetStreamOptions::default()
    };
    JetStreamStore::connect(&spec.urls, options)
        .await
        .map_err(|e| match e {
            // Names the servers itself.
            dealreg_store_jetstream::OpenError::Connect { .. } => {
                format!("cannot open the JetStream store: {e}")
            }
            _ => format!(
                "cannot open the JetStream store at {}: {e}",
                dealreg_nats_connect::redact(&spec.urls.join(","))
            ),
        })
}

/// The message for a store that cannot be opened, saying what to do next.
fn refusal(path: &Path, e: &OpenError) -> String {
    match e {
        OpenError::Missing { .. } | OpenError::Empty { .. } | OpenError::NotAStore { .. } => {
            format!(
                "{e}; create a store with `dealreg --store {} demo` or `dealreg --store {} apply FILE`, or check `--store`",
                path.display(),
                path.display()
            )
        }
        _ => format!("cannot open the store {}: {e}", path.display()),
    }
}

/// `options` with SQLite's quick check at open, unless [`SKIP_CHECK_ENV`] says to skip it:
/// a job that appends to the log refuses a damaged file before its first commit.
fn with_check(options: SqliteOptions) -> Result<SqliteOptions, String> {
    match std::env::var(SKIP_CHECK_ENV).as_deref() {
        Ok("1") => Ok(options),
        Ok("" | "0") | Err(std::env::VarError::NotPresent) => Ok(options.check_integrity()),
        Ok(other) => Err(format!(
            "{SKIP_CHECK_ENV}={other:?}: set it to 1 to skip the store check, or unset it"
        )),
        Err(e) => Err(format!("{SKIP_CHECK_ENV} cannot be read: {e}")),
    }
}

fn max_pages() -> Result<Option<u64>, String> {
    match std::env::var(MAX_PAGES_ENV) {
        Ok(value) => value.trim().parse::<u64>().map(Some).map_err(|e| {
            format!("{MAX_PAGES_ENV}={value:?} is not a number of pages ({e}); unset it or give a positive integer")
        }),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(format!("{MAX_PAGES_ENV} cannot be read: {e}")),
    }
}

/// The key vault of the store (beside a SQLite store, `<store>-keys`), created when
/// missing: every job that executes commands seals contacts with it.
pub async fn vault(spec: &StoreSpec, material: KeyMaterial) -> Result<Arc<dyn KeyVault>, String> {
    match spec {
        StoreSpec::Sqlite(path) => SqliteVault::open(path, material)
            .map(|v| Arc::new(v) as Arc<dyn KeyVault>)
            .map_err(|e| e.to_string()),
        StoreSpec::JetStream(js) => jetstream_vault(js, material, true)
            .await
            .map(|v| Arc::new(v) as Arc<dyn KeyVault>),
        StoreSpec::Kurrent(kdb) => match &kdb.keys {
            KeysAt::Sqlite(path) => SqliteVault::open(path, material)
                .map(|v| Arc::new(v) as Arc<dyn KeyVault>)
                .map_err(|e| e.to_string()),
            KeysAt::JetStream(js) => jetstream_vault(js, material, true)
                .await
                .map(|v| Arc::new(v) as Arc<dyn KeyVault>),
        },
    }
}

/// The key vault beside a JetStream log: a stream of its own on the same servers.
async fn jetstream_vault(
    spec: &JetStreamSpec,
    material: KeyMaterial,
    create: bool,
) -> Result<JetStreamVault, String> {
    let connection = dealreg_nats_connect::connect(
        &spec.urls,
        &super::nats_access::access(),
        &format!("dealreg-keys-{}", std::process::id()),
        super::nats_access::liveness(),
    )
    .await
    .map_err(|e| format!("the key vault: {e}"))?;
    JetStreamVault::open(
        connection.client,
        VaultOptions {
            replicas: spec.replicas,
            material,
            create,
            ..VaultOptions::default()
        },
    )
    .await
    .map_err(|e| e.to_string())
}

/// Whether the store has a key vault yet (a store without one never sealed a contact).
pub async fn has_vault(spec: &StoreSpec) -> bool {
    match spec {
        StoreSpec::Sqlite(path) => dealreg_store_sqlite::vault_path(path).exists(),
        StoreSpec::JetStream(js)
        | StoreSpec::Kurrent(KurrentSpec {
            keys: KeysAt::JetStream(js),
            ..
        }) => jetstream_vault(js, KeyMaterial::Random, false)
            .await
            .is_ok(),
        StoreSpec::Kurrent(KurrentSpec {
            keys: KeysAt::Sqlite(path),
            ..
        }) => dealreg_store_sqlite::vault_path(path).exists(),
    }
}

/// The key vault of the store, read-only, for the jobs that show events to a person:
/// `None` when there is none (contacts are then shown sealed).
pub async fn read_vault(spec: &StoreSpec) -> Option<Arc<dyn KeyVault>> {
    let opened = match spec {
        StoreSpec::Sqlite(path) => SqliteVault::open_read_only(path)
            .map(|v| v.map(|v| Arc::new(v) as Arc<dyn KeyVault>))
            .map_err(|e| e.to_string()),
        StoreSpec::JetStream(js)
        | StoreSpec::Kurrent(KurrentSpec {
            keys: KeysAt::JetStream(js),
            ..
        }) => Ok(jetstream_vault(js, KeyMaterial::Random, false)
            .await
            .ok()
            .map(|v| Arc::new(v) as Arc<dyn KeyVault>)),
        StoreSpec::Kurrent(KurrentSpec {
            keys: KeysAt::Sqlite(path),
            ..
        }) => SqliteVault::open_read_only(path)
            .map(|v| v.map(|v| Arc::new(v) as Arc<dyn KeyVault>))
            .map_err(|e| e.to_string()),
    };
    match opened {
        Ok(vault) => vault,
        Err(e) => {
            tracing::warn!(%e, "contacts are shown sealed: the key vault cannot be read");
            None
        }
    }
}

/// The system clock, or a fixed controllable one at `at` (for replays and repeatable runs).
pub fn clock(at: Option<DateTime<Utc>>) -> SharedClock {
    match at {
        Some(at) => SharedClock::new(ControlledClock::starting_at(at)),
        None => SharedClock::new(SystemClock),
    }
}

/// Removes a SQLite store this process created and must not leave behind (an import
/// refused after it was written): the file, its WAL, and the views and keys beside it.
pub fn remove_store_files(path: &Path) {
    let mut files = vec![path.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        files.push(name.into());
    }
    let views = dealreg_store_sqlite::views_path(path);
    let keys = dealreg_store_sqlite::vault_path(path);
    for base in [views, keys] {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = base.as_os_str().to_owned();
            name.push(suffix);
            files.push(name.into());
        }
    }
    for file in files {
        if let Err(e) = std::fs::remove_file(&file) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %file.display(), error = %e, "could not remove a file of the refused import");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_named_by_a_path_or_a_url() {
        assert_eq!(
            "./dealreg.db".parse(),
            Ok(StoreSpec::Sqlite("./dealreg.db".into()))
        );
        assert_eq!(
            "sqlite:/var/lib/dealreg.db".parse(),
            Ok(StoreSpec::Sqlite("/var/lib/dealreg.db".into()))
        );
        let unknown = "postgres://db/dealreg".parse::<StoreSpec>();
        assert!(
            unknown.as_ref().is_err_and(|e| e.contains("`postgres:`")),
            "{unknown:?}"
        );
        assert!("".parse::<StoreSpec>().is_err());
        let js = "jetstream:nats://a:4222,nats://b:4222?replicas=3&views=/v/js.db"
            .parse::<StoreSpec>()
            .expect("jetstream");
        assert_eq!(
            js,
            StoreSpec::JetStream(JetStreamSpec {
                urls: vec!["nats://a:4222".into(), "nats://b:4222".into()],
                stream: "DEALREG_EVENTS".into(),
                replicas: 3,
                monitor: None,
                views: "/v/js.db".into(),
            })
        );
        assert!("jetstream:nats://a:4222?replica=3"
            .parse::<StoreSpec>()
            .is_err());
        // The client's connection string as it is, as the README and STORES.md write it.
        for url in [
            "kurrentdb://db:2113?tls=false",
            "kurrentdb+discover://a:2113,b:2113",
            "esdb://db:2113",
        ] {
            let Ok(StoreSpec::Kurrent(spec)) = url.parse::<StoreSpec>() else {
                panic!("{url} is not read as a KurrentDB store")
            };
            assert_eq!(spec.url, url);
        }
        let Ok(StoreSpec::Kurrent(spaced)) =
            "kurrentdb://db:2113?tls=false&namespace=dealreg-prod".parse::<StoreSpec>()
        else {
            panic!("namespace= is a setting")
        };
        assert_eq!(spaced.namespace.as_deref(), Some("dealreg-prod"));
        assert_eq!(spaced.url, "kurrentdb://db:2113?tls=false");
        let with_views = "kurrentdb://admin:pw@db:2113?tls=false&views=/v/k.db"
            .parse::<StoreSpec>()
            .expect("kurrentdb");
        assert_eq!(
            with_views.to_string(),
            "kurrentdb:kurrentdb://***@db:2113?tls=false"
        );
        let kdb =
            "kurrentdb:admin:secret@db:2113?tls=false&views=/v/k.db&keys=jetstream:nats://n:4222"
                .parse::<StoreSpec>()
                .expect("kurrentdb");
        let StoreSpec::Kurrent(kdb) = kdb else {
            panic!("not kurrentdb")
        };
        assert_eq!(kdb.url, "kurrentdb://admin:secret@db:2113?tls=false");
        assert_eq!(kdb.views, PathBuf::from("/v/k.db"));
        assert!(matches!(kdb.keys, KeysAt::JetStream(_)));
        assert_eq!(
            StoreSpec::Kurrent(kdb).to_string(),
            "kurrentdb:kurrentdb://***@db:2113?tls=false"
        );
    }
}
