//! The query endpoints: answers from the stored views, at a position the caller can ask
//! for.
//!
//! Why from the stored views and not from a follower's memory: every `serve` process
//! answers queries, and only one of them folds the views (the lease holder); the rows in
//! the store are what all of them share. A partner's question reads only that partner's
//! rows (the views' scope index), so its cost does not grow with other partners.
//!
//! Read-your-writes: a command's reply carries the positions of its events; a query with
//! `min_position` waits until the view has been saved at or past it, or answers
//! `view_timeout`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dealreg_domain::{AccountKey, Currency, PartnerId, RegistrationId};
use dealreg_engine::{decode_event, personal, PartnerEvent, RefusalBody};
use dealreg_events::{EventStore, Position, StreamRevision, StreamTip};
use dealreg_host::registry::{Answer, Catalogue};
use dealreg_projections::conflicts::{ConflictFlag, ConflictFlags, DuplicateFlag};
use dealreg_projections::ledger::{Balances, Entry, Ledger};
use dealreg_projections::pipeline::{group, Pipeline};
use dealreg_projections::Projection;
use dealreg_vault::KeyVault;
use dealreg_views::{CheckpointStore, StoredRow};
use serde::{Deserialize, Serialize};

use crate::page::{self, PageError, Pager};
use crate::subject::Asker;

/// The longest a query waits for `min_position`.
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// How long a query waits when it names no timeout.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// How often a waiting query looks at the view's checkpoint again.
const RECHECK: Duration = Duration::from_millis(5);

/// `min_position`'s schema: a position token, or (deprecated) the bare number that builds
/// before position tokens sent, which the server still reads.
fn min_position_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let token = generator.subschema_for::<Position>();
    schemars::json_schema!({
        "description": "Answer only once the view reflects the log at least up to here: a position token as a reply gave it. A bare number is still read (deprecated: what builds before position tokens sent).",
        "anyOf": [
            token,
            {
                "type": "integer",
                "minimum": 0,
                "deprecated": true,
                "description": "Deprecated: a bare number N, read as the token \"N\"."
            },
            { "type": "null" }
        ]
    })
}

/// A query's body (every field optional; an empty body is `{}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// Answer only once the view reflects the log at least up to here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "min_position_schema")]
    pub min_position: Option<Position>,
    /// How long to wait for `min_position` (default 5000, at most 30000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// `conflicts`: only this account (any spelling of its domain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Vendor `ledger`: only this partner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<uuid::Uuid>,
    /// `registration`: the registration whose history is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<uuid::Uuid>,
    /// The page after this cursor: the `next` of the page before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// At most this many items in the page (1 to 10000); without it, as many as fit in
    /// one message of the server's `max_payload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// The reply to a query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum QueryReply {
    Answered {
        ok: bool,
        view: String,
        /// The log position the answer reflects.
        position: Position,
        answer: serde_json::Value,
        /// The cursor of the next page (ask again with it as `after`); absent on the
        /// last page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    Refused {
        ok: bool,
        error: RefusalBody,
    },
}

impl QueryReply {
    pub fn refusal(&self) -> Option<&RefusalBody> {
        match self {
            QueryReply::Answered { .. } => None,
            QueryReply::Refused { error, .. } => Some(error),
        }
    }
}

/// What a JSON value is, for a message.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn refused(code: &str, message: String) -> QueryReply {
    refused_with(code, message, serde_json::Value::Null)
}

/// A refusal with `details` for a program to read.
fn refused_with(code: &str, message: String, details: serde_json::Value) -> QueryReply {
    QueryReply::Refused {
        ok: false,
        error: RefusalBody {
            code: code.into(),
            // It may quote the query, which may be megabytes.
            message: dealreg_engine::bounded_message(&message),
            details,
        },
    }
}

fn store_refusal(e: &dyn std::fmt::Display) -> QueryReply {
    refused(
        "view_unavailable",
        format!("the views cannot be read now ({e}); retry"),
    )
}

/// A view read from the store, whole or one partner's rows.
struct Read<P> {
    position: Position,
    view: P,
}

enum Wait {
    Unavailable(String),
    Timeout { reached: Position },
    Store(dealreg_views::ViewsError),
}

/// A view's saved meta and rows, of one save.
struct Stored {
    position: Position,
    meta: Vec<u8>,
    rows: Vec<StoredRow>,
}

/// Reads the view `name` (saved under `version`) from its saved meta and rows once it
/// covers `min`, one consistent save (a save between reading the meta and the rows is
/// noticed by the position and read again).
async fn read_stored<K: CheckpointStore>(
    checkpoints: &K,
    name: &str,
    version: u32,
    scope: Option<PartnerId>,
    min: Position,
    deadline: Instant,
) -> Result<Stored, Wait> {
    loop {
        let meta = checkpoints.load(name).await.map_err(Wait::Store)?;
        let reached = match &meta {
            Some(saved) if saved.version == version => saved.position,
            Some(_) | None => Position::ORIGIN,
        };
        if let Some(saved) = meta.filter(|s| s.version == version && s.position >= min) {
            let (position, rows) = match scope {
                Some(partner) => checkpoints
                    .scoped_rows(name, &partner.to_string())
                    .await
                    .map_err(Wait::Store)?,
                None => {
                    let rows = checkpoints.load_rows(name).await.map_err(Wait::Store)?;
                    let again = checkpoints.load(name).await.map_err(Wait::Store)?;
                    (again.map_or(Position::ORIGIN, |c| c.position), rows)
                }
            };
            if position == saved.position {
                return Ok(Stored {
                    position,
                    meta: saved.state,
                    rows,
                });
            }
            continue;
        }
        if Instant::now() >= deadline {
            return Err(Wait::Timeout { reached });
        }
        tokio::time::sleep(RECHECK).await;
    }
}

/// How many stored rows a page reads from the store at a time.
const ROWS_AT_A_TIME: usize = 256;

/// One section of an answer as its view stores it: the page's section name, the prefix
/// of its table's row keys, and which of its rows the answer keeps (decoded, with the
/// page key; `None`: not this one).
struct Section<'f, T> {
    name: &'static str,
    prefix: &'static str,
    keep: &'f Keep<'f, T>,
}

/// Which stored rows a section keeps: given the page key and the row's bytes, the decoded
/// row, `None` for a row the answer leaves out, or why it cannot be read.
type Keep<'a, T> = dyn Fn(&str, &[u8]) -> Result<Option<T>, String> + Sync + 'a;

/// The rows of `pager`'s page of view `P`, section after section, read from the store a
/// chunk at a time after the page's cursor (not the whole view restored), once the view
/// covers `min`: enough kept rows to fill the page, all of one save (a save between two
/// chunks is noticed by the position, and the page read again). `scope` narrows them to
/// one partner's rows. What a query of a large view costs is then the page's.
async fn stored_sections<P: Projection, K: CheckpointStore, T>(
    checkpoints: &K,
    sections: &[Section<'_, T>],
    scope: Option<PartnerId>,
    pager: &Pager,
    min: Position,
    deadline: Instant,
) -> Result<(Position, Vec<Vec<(String, T)>>), Wait> {
    let scope = scope.map(|p| p.to_string());
    'save: loop {
        let meta = checkpoints.load(P::NAME).await.map_err(Wait::Store)?;
        let reached = match &meta {
            Some(saved) if saved.version == P::VERSION => saved.position,
            Some(_) | None => Position::ORIGIN,
        };
        let Some(saved) = meta.filter(|s| s.version == P::VERSION && s.position >= min) else {
            if Instant::now() >= deadline {
                return Err(Wait::Timeout { reached });
            }
            tokio::time::sleep(RECHECK).await;
            continue;
        };
        let (mut kept, mut count, mut bytes) = (Vec::new(), 0usize, 0usize);
        for section in sections {
            let mut rows = Vec::new();
            if let Some(start) = pager.start_of(section.name) {
                let mut after = start.map(|key| format!("{}{key}", section.prefix));
                while !pager.would_overflow(count, bytes) {
                    let (position, chunk) = checkpoints
                        .rows_after(
                            P::NAME,
                            section.prefix,
                            after.as_deref(),
                            ROWS_AT_A_TIME,
                            scope.as_deref(),
                        )
                        .await
                        .map_err(Wait::Store)?;
                    if position != saved.position {
                        continue 'save;
                    }
                    let last_chunk = chunk.len() < ROWS_AT_A_TIME;
                    for (key, stored) in chunk {
                        let page_key = key.strip_prefix(section.prefix).unwrap_or(&key);
                        let decoded = (section.keep)(page_key, &stored).map_err(|e| {
                            Wait::Unavailable(format!("`{}` cannot be read: {e}", P::NAME))
                        })?;
                        if let Some(row) = decoded {
                            count += 1;
                            bytes += stored.len() + 1;
                            rows.push((page_key.to_string(), row));
                        }
                        after = Some(key);
                    }
                    if last_chunk {
                        break;
                    }
                }
            }
            kept.push(rows);
        }
        return Ok((saved.position, kept));
    }
}

/// Reads `P` from its saved meta and rows once it covers `min` ([`read_stored`]).
async fn read_view<P: Projection, K: CheckpointStore>(
    checkpoints: &K,
    scope: Option<PartnerId>,
    min: Position,
    deadline: Instant,
) -> Result<Read<P>, Wait> {
    let stored = read_stored(checkpoints, P::NAME, P::VERSION, scope, min, deadline).await?;
    let mut view: P = serde_json::from_slice(&stored.meta)
        .map_err(|e| Wait::Unavailable(format!("`{}` cannot be read: {e}", P::NAME)))?;
    dealreg_projections::table::restore_rows(&mut view.tables_mut(), stored.rows)
        .map_err(Wait::Unavailable)?;
    Ok(Read {
        position: stored.position,
        view,
    })
}

fn answered<T: Serialize>(view: &str, position: Position, answer: &T, pager: Pager) -> QueryReply {
    let next = match pager.finish() {
        Ok(next) => next,
        Err(e) => return page_refusal(view, e),
    };
    match serde_json::to_value(answer) {
        Ok(answer) => QueryReply::Answered {
            ok: true,
            view: view.into(),
            position,
            answer,
            next,
        },
        Err(e) => refused("internal", format!("the answer could not be encoded: {e}")),
    }
}

/// The refusal of a reply of `bytes` that a message of `max_payload` cannot carry.
pub fn too_large(bytes: usize, max_payload: usize) -> QueryReply {
    refused_with(
        "answer_too_large",
        format!(
            "the answer is {bytes} bytes and a reply may hold {max_payload}; ask with a smaller `limit`, or narrow the query"
        ),
        serde_json::json!({ "bytes": bytes, "room": max_payload }),
    )
}

fn page_refusal(view: &str, e: PageError) -> QueryReply {
    match e {
        PageError::Cursor(cursor) => refused(
            "invalid_query",
            format!("`after`: `{cursor}` is not a cursor of the `{view}` view; pass the `next` of its previous page, or leave `after` out for the first page"),
        ),
        PageError::Limit(n) => refused(
            "invalid_query",
            format!("`limit`: {n} is not from 1 to {}", page::MAX_LIMIT),
        ),
        PageError::ItemTooLarge { section, bytes, room } => refused_with(
            "answer_too_large",
            format!(
                "one `{section}` of the `{view}` answer is {bytes} bytes and a reply may hold {room}; raise the server's `max_payload`, or narrow the query"
            ),
            serde_json::json!({ "bytes": bytes, "room": room }),
        ),
    }
}

fn wait_refusal(view: &str, min: Position, wait: Wait) -> QueryReply {
    match wait {
        Wait::Store(e) => store_refusal(&e),
        Wait::Unavailable(why) => refused("view_unavailable", format!("{why}; retry, or rebuild the view")),
        Wait::Timeout { reached } => refused_with(
            "view_timeout",
            format!(
                "the `{view}` view reached position {reached} and not {min} in time; ask again, or with a longer `timeout_ms`"
            ),
            serde_json::json!({ "reached": reached, "wanted": min }),
        ),
    }
}

/// Answers one query body on `view` for `asker`, from the standard catalogue's views.
pub async fn answer<S: EventStore, K: CheckpointStore>(
    store: &S,
    checkpoints: &K,
    vault: &dyn KeyVault,
    asker: &Asker,
    view: &str,
    body: &[u8],
    max_payload: usize,
) -> QueryReply {
    let catalogue = Catalogue::<S, K>::standard();
    answer_in(
        &catalogue,
        store,
        checkpoints,
        vault,
        asker,
        view,
        body,
        max_payload,
    )
    .await
}

/// Answers one query body on the query kind `view` of `catalogue` for `asker`.
#[allow(clippy::too_many_arguments)]
pub async fn answer_in<S: EventStore, K: CheckpointStore>(
    catalogue: &Catalogue<S, K>,
    store: &S,
    checkpoints: &K,
    vault: &dyn KeyVault,
    asker: &Asker,
    view: &str,
    body: &[u8],
    max_payload: usize,
) -> QueryReply {
    let allowed = catalogue.queries_for(matches!(asker, Asker::Partner(_)));
    let Some(kind) = allowed.iter().find(|q| q.name == view).copied().copied() else {
        let names: Vec<&str> = allowed.iter().map(|q| q.name).collect();
        return refused(
            "unknown_view",
            format!(
                "`{view}` is not a view you can ask for; ask for one of {}",
                names.join(", ")
            ),
        );
    };
    let request: QueryRequest = if body.iter().all(u8::is_ascii_whitespace) {
        QueryRequest::default()
    } else {
        // An object only: serde's derive also reads an array of the fields in order
        // (`[1, 2]` was `min_position` 1, `timeout_ms` 2).
        let object = match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value @ serde_json::Value::Object(_)) => Ok(value),
            Ok(other) => Err(format!(
                "it is JSON, but {} and not an object",
                json_kind(&other)
            )),
            Err(e) => Err(e.to_string()),
        };
        match object.and_then(|o| serde_json::from_value(o).map_err(|e| e.to_string())) {
            Ok(request) => request,
            Err(e) => {
                return refused(
                    "invalid_query",
                    format!("the query body is not a query ({e}); send {{\"min_position\"?, \"timeout_ms\"?, \"account\"?, \"partner_id\"?, \"registration_id\"?}} or nothing"),
                )
            }
        }
    };
    let min = request.min_position.unwrap_or(Position::ORIGIN);
    let wait = request
        .timeout_ms
        .map_or(DEFAULT_WAIT, Duration::from_millis)
        .min(MAX_WAIT);
    let deadline = Instant::now() + wait;
    let partner = match asker {
        Asker::Partner(me) => {
            if request.partner_id.is_some_and(|p| p != me.0) {
                return refused(
                    "not_permitted",
                    "a partner sees only its own views; leave `partner_id` out".into(),
                );
            }
            Some(*me)
        }
        Asker::Vendor => request.partner_id.map(PartnerId),
    };
    let mut pager = match Pager::new(
        kind.pages,
        request.after.as_deref(),
        request.limit,
        max_payload,
    ) {
        Ok(pager) => pager,
        Err(e) => return page_refusal(view, e),
    };
    match kind.answer {
        Answer::Pipeline => match asker {
            // A partner's rows only (the scope index), with what its form needs of the
            // rest of the view (renewals).
            Asker::Partner(me) => {
                match read_view::<Pipeline, K>(checkpoints, partner, min, deadline).await {
                    Ok(read) => {
                        let rows = read.view.partner_rows(*me);
                        let rows = rows.map(|r| (r.registration_id.0.to_string(), r));
                        let page = group(pager.take("registration", rows));
                        answered(view, read.position, &page, pager)
                    }
                    Err(e) => wait_refusal(view, min, e),
                }
            }
            // The vendor's page read from the store after its cursor: its cost is the
            // page's, whatever the program's size.
            Asker::Vendor => {
                let registration = |_: &str, row: &[u8]| {
                    Pipeline::stored_registration(row)
                        .map(Some)
                        .map_err(|e| e.to_string())
                };
                let sections = [Section {
                    name: "registration",
                    prefix: "registration/",
                    keep: &registration,
                }];
                let read = stored_sections::<Pipeline, K, _>(
                    checkpoints,
                    &sections,
                    partner,
                    &pager,
                    min,
                    deadline,
                )
                .await;
                match read {
                    Ok((position, mut kept)) => {
                        let rows = kept.pop().unwrap_or_default();
                        let page = group(pager.take("registration", rows));
                        answered(view, position, &page, pager)
                    }
                    Err(e) => wait_refusal(view, min, e),
                }
            }
        },
        Answer::Ledger => {
            // Entries (keyed by their zero-padded sequence, the page key) and balances,
            // both scoped to their partner.
            let entry = |_: &str, row: &[u8]| {
                serde_json::from_slice::<Entry>(row)
                    .map(|e| Some(LedgerRow::Entry(e)))
                    .map_err(|e| e.to_string())
            };
            let balance = |_: &str, row: &[u8]| {
                serde_json::from_slice::<Balances>(row)
                    .map(|b| Some(LedgerRow::Balance(b)))
                    .map_err(|e| e.to_string())
            };
            let sections = [
                Section {
                    name: "entry",
                    prefix: "entry/",
                    keep: &entry,
                },
                Section {
                    name: "balance",
                    prefix: "balance/",
                    keep: &balance,
                },
            ];
            match stored_sections::<Ledger, K, _>(
                checkpoints,
                &sections,
                partner,
                &pager,
                min,
                deadline,
            )
            .await
            {
                Ok((position, kept)) => {
                    let mut kept = kept.into_iter();
                    let entries = pager.take(
                        "entry",
                        kept.next()
                            .unwrap_or_default()
                            .into_iter()
                            .filter_map(|(k, r)| match r {
                                LedgerRow::Entry(e) => Some((k, e)),
                                LedgerRow::Balance(_) => None,
                            }),
                    );
                    let balances = pager
                        .take(
                            "balance",
                            kept.next().unwrap_or_default().into_iter().filter_map(
                                |(k, r)| match r {
                                    LedgerRow::Balance(b) => {
                                        Some((k, (b.partner_id.to_string(), b.by_currency)))
                                    }
                                    LedgerRow::Entry(_) => None,
                                },
                            ),
                        )
                        .into_iter()
                        .collect();
                    answered(view, position, &LedgerAnswer { entries, balances }, pager)
                }
                Err(e) => wait_refusal(view, min, e),
            }
        }
        Answer::Conflicts => {
            let account = match request
                .account
                .as_deref()
                .map(AccountKey::from_domain)
                .transpose()
            {
                Ok(account) => account,
                Err(e) => return refused("invalid_query", format!("`account`: {}", e.message)),
            };
            // Conflicts by account (each account's row holds its flags), then likely
            // duplicates; the vendor's only.
            let by_account = |key: &str, row: &[u8]| {
                let flags: BTreeMap<String, ConflictFlag> =
                    serde_json::from_slice(row).map_err(|e| e.to_string())?;
                let wanted = account.as_ref().is_none_or(|a| a.0 == key);
                Ok((wanted && !flags.is_empty())
                    .then(|| ConflictRow::Account(flags.into_values().collect())))
            };
            let duplicate = |_: &str, row: &[u8]| {
                let flag: DuplicateFlag = serde_json::from_slice(row).map_err(|e| e.to_string())?;
                let wanted = account.as_ref().is_none_or(|a| flag.accounts.contains(a));
                Ok(wanted.then_some(ConflictRow::Duplicate(flag)))
            };
            let sections = [
                Section {
                    name: "account",
                    prefix: "account/",
                    keep: &by_account,
                },
                Section {
                    name: "duplicate",
                    prefix: "duplicate/",
                    keep: &duplicate,
                },
            ];
            match stored_sections::<ConflictFlags, K, _>(
                checkpoints,
                &sections,
                None,
                &pager,
                min,
                deadline,
            )
            .await
            {
                Ok((position, kept)) => {
                    let mut kept = kept.into_iter();
                    let conflicts = pager
                        .take(
                            "account",
                            kept.next().unwrap_or_default().into_iter().filter_map(
                                |(k, r)| match r {
                                    ConflictRow::Account(flags) => Some((k.clone(), (k, flags))),
                                    ConflictRow::Duplicate(_) => None,
                                },
                            ),
                        )
                        .into_iter()
                        .collect();
                    let duplicates = pager.take(
                        "duplicate",
                        kept.next()
                            .unwrap_or_default()
                            .into_iter()
                            .filter_map(|(k, r)| match r {
                                ConflictRow::Duplicate(d) => Some((k, d)),
                                ConflictRow::Account(_) => None,
                            }),
                    );
                    answered(
                        view,
                        position,
                        &ConflictsAnswer {
                            conflicts,
                            likely_duplicates: duplicates,
                        },
                        pager,
                    )
                }
                Err(e) => wait_refusal(view, min, e),
            }
        }
        Answer::Report => {
            let Some(entry) = catalogue.view(kind.view) else {
                return refused("unknown_view", format!("`{view}` is not a view"));
            };
            match read_stored(checkpoints, entry.name, entry.version, None, min, deadline).await {
                Ok(stored) => match entry
                    .restore(&stored.meta, stored.rows)
                    .map_err(|why| wait_refusal(view, min, Wait::Unavailable(why)))
                    .and_then(|state| match entry.json(&*state) {
                        Some(Ok(shown)) => Ok(shown),
                        Some(Err(e)) => Err(refused(
                            "internal",
                            format!("the answer could not be encoded: {e}"),
                        )),
                        None => Err(refused("unknown_view", format!("`{view}` is not shown"))),
                    }) {
                    Ok(shown) => answered(view, stored.position, &shown, pager),
                    Err(refusal) => refusal,
                },
                Err(e) => wait_refusal(view, min, e),
            }
        }
        Answer::Rows => {
            let Some(entry) = catalogue.view(kind.view) else {
                return refused("unknown_view", format!("`{view}` is not a view"));
            };
            let section = kind.pages.first().copied().unwrap_or("row");
            match read_stored(
                checkpoints,
                entry.name,
                entry.version,
                partner,
                min,
                deadline,
            )
            .await
            {
                Ok(stored) => {
                    let for_partner = matches!(asker, Asker::Partner(_));
                    let rows = stored.rows.into_iter().filter_map(|(key, bytes)| {
                        let published = dealreg_projections::published(
                            entry.published,
                            dealreg_host::feed::table_of(&key),
                        )?;
                        let row: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
                        let row = if for_partner {
                            published.for_partners.and_then(|form| form(&row))?
                        } else {
                            row
                        };
                        Some((key.clone(), (key, row)))
                    });
                    let rows: BTreeMap<String, serde_json::Value> =
                        pager.take(section, rows).into_iter().collect();
                    answered(
                        view,
                        stored.position,
                        &serde_json::json!({ "rows": rows }),
                        pager,
                    )
                }
                Err(e) => wait_refusal(view, min, e),
            }
        }
        Answer::History => {
            let Some(id) = request.registration_id else {
                return refused(
                    "invalid_query",
                    "`registration_id` is required for a registration's history".into(),
                );
            };
            match history(
                store,
                checkpoints,
                vault,
                asker,
                RegistrationId(id),
                min,
                deadline,
            )
            .await
            {
                Ok(found) => {
                    let events = pager.take("event", found.lines);
                    answered(
                        view,
                        found.position,
                        &RegistrationAnswer {
                            registration_id: RegistrationId(id),
                            account: found.account,
                            events,
                        },
                        pager,
                    )
                }
                Err(refusal) => refusal,
            }
        }
    }
}

/// The `ledger` answer (one page of it): entries, then balances.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct LedgerAnswer {
    /// Entries in the order they were posted.
    pub entries: Vec<Entry>,
    /// Balances by partner id, then currency, in minor units (exact `i128` sums).
    pub balances: BTreeMap<String, BTreeMap<Currency, i128>>,
}

/// A stored row of the ledger's answer sections.
enum LedgerRow {
    Entry(Entry),
    Balance(Balances),
}

/// A stored row of the conflicts' answer sections.
enum ConflictRow {
    Account(Vec<ConflictFlag>),
    Duplicate(DuplicateFlag),
}

/// The `conflicts` answer (one page of it): open and closed conflicts by account, then
/// likely duplicate accounts.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ConflictsAnswer {
    /// Conflicts by account key (the customer's domain).
    pub conflicts: BTreeMap<String, Vec<ConflictFlag>>,
    pub likely_duplicates: Vec<DuplicateFlag>,
}

/// The `registration` answer (one page of it): the registration's history.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RegistrationAnswer {
    pub registration_id: RegistrationId,
    pub account: AccountKey,
    /// Events that name the registration, in log order (a partner's in their partner-safe
    /// form, `schemas/partner-event.schema.json`).
    pub events: Vec<HistoryLine>,
}

/// One event of a registration's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HistoryLine {
    pub position: Position,
    /// The event's revision in the account's stream: for the vendor only. Why not for a
    /// partner: the gaps between a partner's own revisions would count the other partners'
    /// activity on the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<StreamRevision>,
    /// The event (for a partner, its partner-safe form).
    pub event: serde_json::Value,
}

/// Whether `value` names `id` anywhere (an event about a registration names it in a field
/// of its own, or in a list of the registrations a conflict involves).
fn names(value: &serde_json::Value, id: &str) -> bool {
    match value {
        serde_json::Value::String(s) => s == id,
        serde_json::Value::Array(items) => items.iter().any(|v| names(v, id)),
        serde_json::Value::Object(fields) => fields.values().any(|v| names(v, id)),
        _ => false,
    }
}

/// A registration's history as of `position`: its account, and its lines keyed for paging.
struct History {
    position: Position,
    account: AccountKey,
    lines: Vec<(String, HistoryLine)>,
}

/// The history of one registration, from its account's stream: every event that names it,
/// partner-safe for a partner, who sees only its own registrations (another partner's
/// registration answers as unknown, exactly as one that does not exist).
async fn history<S: EventStore, K: CheckpointStore>(
    store: &S,
    checkpoints: &K,
    vault: &dyn KeyVault,
    asker: &Asker,
    id: RegistrationId,
    min: Position,
    deadline: Instant,
) -> Result<History, QueryReply> {
    let unknown = || {
        refused(
            "unknown_registration",
            format!("no registration {} is known to you; check the id, or ask again with `min_position` after submitting", id.0),
        )
    };
    // The pipeline row says which account's stream holds the registration.
    let key = format!("registration/{}", id.0);
    let (position, row) = loop {
        match checkpoints
            .rows_by_key(Pipeline::NAME, vec![key.clone()])
            .await
        {
            Ok((position, mut rows)) if position >= min || Instant::now() >= deadline => {
                if position < min {
                    return Err(wait_refusal(
                        "registration",
                        min,
                        Wait::Timeout { reached: position },
                    ));
                }
                break (position, rows.pop().flatten());
            }
            Ok(_) => tokio::time::sleep(RECHECK).await,
            Err(e) => return Err(store_refusal(&e)),
        }
    };
    let Some(row) = row else {
        return Err(unknown());
    };
    let row = match Pipeline::stored_registration(&row) {
        Ok(row) => row,
        Err(e) => {
            return Err(refused(
                "view_unavailable",
                format!("the pipeline row cannot be read: {e}"),
            ))
        }
    };
    let me = match asker {
        Asker::Partner(me) if row.partner_id != *me => return Err(unknown()),
        Asker::Partner(me) => Some(*me),
        Asker::Vendor => None,
    };
    let stream = dealreg_domain::Boundary::Account(row.account.clone()).stream_name();
    let wanted = id.0.to_string();
    let mut lines = Vec::new();
    let mut after: Option<StreamTip> = None;
    loop {
        let page = match store.read_stream(&stream, after.as_ref(), 1024).await {
            Ok(page) => page,
            Err(e) => return Err(store_refusal(&e)),
        };
        let Some(last) = page.last() else { break };
        after = Some(StreamTip::of(last));
        for recorded in &page {
            if recorded.position > position {
                continue;
            }
            let mut event = match decode_event(recorded) {
                Ok(event) => event,
                Err(e) => return Err(refused("internal", format!("an event cannot be read: {e}"))),
            };
            // The vendor reads the contact (or sees it erased); a partner's form has none.
            if me.is_none() {
                if let Err(e) = personal::reveal(&mut event, vault).await {
                    return Err(refused(
                        "store_failed",
                        format!("the key vault cannot be read: {e}"),
                    ));
                }
            }
            let value = match me {
                Some(me) => match PartnerEvent::of(&event, me) {
                    Some(safe) => serde_json::to_value(&safe),
                    None => continue,
                },
                None => serde_json::to_value(&event),
            };
            let Ok(value) = value else { continue };
            if names(&value, &wanted) {
                lines.push((
                    page::position_key(recorded.position),
                    HistoryLine {
                        position: recorded.position,
                        revision: me.is_none().then_some(recorded.revision),
                        event: value,
                    },
                ));
            }
        }
    }
    Ok(History {
        position,
        account: row.account,
        lines,
    })
}
