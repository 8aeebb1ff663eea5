//! The one registry of projections, and the catalogue of views read from it: every read
//! model the engine maintains, by name, with its tables, its published tables and their
//! partner-safe forms, how it is shown, and the queries that read it.
//!
//! Why one list: rebuilding "all" projections, validating a name given on the command
//! line, following every projection in a service, answering a query, publishing a feed and
//! listing them in docs must never disagree. [`projections`] is the only place that names
//! the projection types and [`Catalogue::standard`] the only place that names the query
//! kinds; each entry carries its operations as function pointers instantiated for the
//! caller's backends. A caller that needs one more view (a test's toy view) builds a
//! [`Catalogue`] with one more entry and passes it; the binary uses the standard one.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use dealreg_domain::{AccountKey, PartnerId};
use dealreg_events::{EventStore, Position};
use dealreg_projections::conflicts::ConflictFlags;
use dealreg_projections::deadlines::Deadlines;
use dealreg_projections::ledger::Ledger;
use dealreg_projections::metrics::ProgramMetrics;
use dealreg_projections::pipeline::Pipeline;
use dealreg_projections::program::Program;
use dealreg_projections::{Projection, Published};
use dealreg_views::{CheckpointStore, StoredRow};

use crate::parallel::Folding;
use crate::runner::{self, CatchUp, Progress, ViewError};
use crate::tail::LogTail;

type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T, ViewError>> + Send + 'a>>;
/// A progress callback a run reports to.
pub type ProgressSink<'a> = &'a mut (dyn FnMut(Progress) + Send);
/// A future that ends a follower when it resolves.
pub type Stop<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
type Run<S, K> = for<'a> fn(&'a S, &'a K, CatchUp, ProgressSink<'a>) -> Boxed<'a, RunReport>;
/// Where a follower announces each position it saved.
pub type SavedWatch = tokio::sync::watch::Sender<Position>;
type Follow<S, K> =
    for<'a> fn(&'a LogTail<S>, &'a K, Duration, Stop<'a>, &'a SavedWatch) -> Boxed<'a, Position>;

/// What a generic run over one projection reports (its typed state stays inside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub name: &'static str,
    pub position: Position,
    pub folded: u64,
    pub rebuilt: Option<String>,
}

/// One registered projection and what can be done with it on backends `S` and `K`.
pub struct Registered<S, K> {
    pub name: &'static str,
    pub version: u32,
    /// The tables whose row changes the feeds publish, with their partner-safe forms.
    pub published: &'static [Published],
    /// The names of the tables its rows are stored in.
    pub tables: fn() -> Vec<&'static str>,
    /// How `dealreg replay` and a report query show a state of it (the vendor's whole
    /// view); `None`: it is not shown.
    shown: Option<Shown>,
    restore: Restore,
    catch_up: Run<S, K>,
    rebuild: Run<S, K>,
    fresh: fn() -> Box<dyn Folding>,
    follow: Follow<S, K>,
}

/// A state of a view (as [`Folding::into_any`] or [`Registered::restore`] give it) as JSON.
type Shown = fn(&dyn Any) -> Result<serde_json::Value, String>;
/// A view's state from its saved meta and rows.
type Restore = fn(&[u8], Vec<StoredRow>) -> Result<Box<dyn Any + Send>, String>;

impl<S, K> Registered<S, K> {
    /// Whether the view is shown (by `dealreg replay`, by a report query).
    pub fn is_shown(&self) -> bool {
        self.shown.is_some()
    }

    /// A state of the view (its `into_any` or `restore`) as it is shown; `None` when the
    /// view is not shown.
    pub fn json(&self, state: &dyn Any) -> Option<Result<serde_json::Value, String>> {
        self.shown.map(|shown| shown(state))
    }

    /// The view's state from its saved meta (`Checkpoint::state`) and rows.
    pub fn restore(
        &self,
        meta: &[u8],
        rows: Vec<StoredRow>,
    ) -> Result<Box<dyn Any + Send>, String> {
        (self.restore)(meta, rows)
    }

    /// Brings the projection up to the log's head from its checkpoint.
    pub fn catch_up<'a>(
        &self,
        store: &'a S,
        checkpoints: &'a K,
        how: CatchUp,
        progress: ProgressSink<'a>,
    ) -> Boxed<'a, RunReport> {
        (self.catch_up)(store, checkpoints, how, progress)
    }

    /// Forgets the checkpoint and folds the whole log again.
    pub fn rebuild<'a>(
        &self,
        store: &'a S,
        checkpoints: &'a K,
        how: CatchUp,
        progress: ProgressSink<'a>,
    ) -> Boxed<'a, RunReport> {
        (self.rebuild)(store, checkpoints, how, progress)
    }

    /// The projection's empty state, to be folded with others ([`crate::parallel`]).
    pub fn fresh(&self) -> Box<dyn Folding> {
        (self.fresh)()
    }

    /// Keeps the projection current until `stop` resolves (see [`runner::follow`]),
    /// announcing every position it saved on `saved`.
    pub fn follow<'a>(
        &self,
        tail: &'a LogTail<S>,
        checkpoints: &'a K,
        poll: Duration,
        stop: Stop<'a>,
        saved: &'a SavedWatch,
    ) -> Boxed<'a, Position> {
        (self.follow)(tail, checkpoints, poll, stop, saved)
    }
}

fn report<P>(caught: runner::CaughtUp<P>, name: &'static str) -> RunReport {
    RunReport {
        name,
        position: caught.position,
        folded: caught.folded,
        rebuilt: caught.rebuilt,
    }
}

/// How a state of `P` is shown, as JSON.
pub type ShowFn<P> = fn(&P) -> Result<serde_json::Value, String>;

/// What the catalogue knows of a projection beyond the [`Projection`] trait.
pub trait Catalogued: Projection {
    /// How a state is shown (`dealreg replay`, `dealreg view NAME --json`, a report
    /// query): the vendor's whole view. `None`: the view is not shown.
    const SHOWN: Option<ShowFn<Self>> = None;
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

impl Catalogued for Pipeline {
    const SHOWN: Option<ShowFn<Self>> = Some(|p| to_json(&p.vendor_view()));
}

impl Catalogued for Ledger {
    const SHOWN: Option<ShowFn<Self>> = Some(|l| Ok(ledger_json(l, None)));
}

impl Catalogued for ConflictFlags {
    const SHOWN: Option<ShowFn<Self>> = Some(|c| Ok(conflicts_json(c, None)));
}

impl Catalogued for Deadlines {}

impl Catalogued for ProgramMetrics {
    const SHOWN: Option<ShowFn<Self>> = Some(|m| to_json(&m.report()));
}

impl Catalogued for Program {
    const SHOWN: Option<ShowFn<Self>> = Some(|p| to_json(&p.report()));
}

/// The conflicts view as JSON: flags by account and likely duplicates, for one account or all.
pub fn conflicts_json(flags: &ConflictFlags, account: Option<&AccountKey>) -> serde_json::Value {
    let mut by_account: std::collections::BTreeMap<&str, Vec<_>> = Default::default();
    for (key, flag) in flags.all() {
        if account.is_none_or(|a| a == key) {
            by_account.entry(key.0.as_str()).or_default().push(flag);
        }
    }
    let duplicates: Vec<_> = flags
        .duplicates()
        .filter(|d| account.is_none_or(|a| d.accounts.contains(a)))
        .collect();
    serde_json::json!({ "conflicts": by_account, "likely_duplicates": duplicates })
}

/// The ledger as JSON: entries and balances, for one partner or all.
pub fn ledger_json(ledger: &Ledger, partner: Option<PartnerId>) -> serde_json::Value {
    let entries: Vec<_> = ledger
        .entries()
        .filter(|e| partner.is_none_or(|p| p == e.partner_id))
        .collect();
    let balances: std::collections::BTreeMap<String, _> = ledger
        .balances()
        .filter(|(p, _)| partner.is_none_or(|q| q == **p))
        .map(|(p, by_currency)| (p.to_string(), by_currency))
        .collect();
    serde_json::json!({ "entries": entries, "balances": balances })
}

/// The catalogue entry of projection `P` on backends `S` and `K`.
pub fn entry<P: Catalogued, S: EventStore, K: CheckpointStore>() -> Registered<S, K> {
    Registered {
        name: P::NAME,
        version: P::VERSION,
        published: P::PUBLISHED,
        tables: || {
            P::default()
                .tables()
                .into_iter()
                .map(|(name, _)| name)
                .collect()
        },
        shown: match P::SHOWN {
            Some(_) => Some(|state| {
                let state = state
                    .downcast_ref::<P>()
                    .ok_or_else(|| format!("the state given is not the `{}` view's", P::NAME))?;
                P::SHOWN.map_or(Ok(serde_json::Value::Null), |shown| shown(state))
            }),
            None => None,
        },
        restore: |meta, rows| {
            let mut view: P = serde_json::from_slice(meta)
                .map_err(|e| format!("`{}` cannot be read: {e}", P::NAME))?;
            dealreg_projections::table::restore_rows(&mut view.tables_mut(), rows)?;
            Ok(Box::new(view))
        },
        fresh: || Box::new(P::default()),
        catch_up: |store, checkpoints, how, progress| {
            Box::pin(async move {
                let caught = runner::catch_up::<P, S, K>(store, checkpoints, how, progress).await?;
                Ok(report(caught, P::NAME))
            })
        },
        rebuild: |store, checkpoints, how, progress| {
            Box::pin(async move {
                let caught = runner::rebuild::<P, S, K>(store, checkpoints, how, progress).await?;
                Ok(report(caught, P::NAME))
            })
        },
        follow: |tail, checkpoints, poll, stop, saved| {
            Box::pin(runner::follow::<P, S, K>(
                tail,
                checkpoints,
                poll,
                stop,
                move |position| {
                    saved.send_replace(position);
                },
            ))
        },
    }
}

/// Every projection the engine maintains.
pub fn projections<S: EventStore, K: CheckpointStore>() -> [Registered<S, K>; 6] {
    // The one place that names the projection types.
    [
        entry::<Pipeline, S, K>(),
        entry::<Ledger, S, K>(),
        entry::<ConflictFlags, S, K>(),
        entry::<Deadlines, S, K>(),
        entry::<ProgramMetrics, S, K>(),
        entry::<Program, S, K>(),
    ]
}

/// The names of every registered projection, in registry order.
pub fn names<S: EventStore, K: CheckpointStore>() -> Vec<&'static str> {
    projections::<S, K>().iter().map(|p| p.name).collect()
}

/// The published table `table` of view `view` of the standard catalogue, if the view
/// publishes it.
pub fn published(view: &str, table: &str) -> Option<Published> {
    use dealreg_events::memory::MemoryStore;
    use dealreg_views::MemoryCheckpoints;
    Catalogue::<MemoryStore, MemoryCheckpoints>::standard().published(view, table)
}

/// How a query kind is answered: the answer's shape, which the query endpoints implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The view's published rows by key (`{"rows": {key: row}}`), a partner's in their
    /// partner-safe form; paged by the kind's one page key. Generic: any view.
    Rows,
    /// The view as it is shown ([`Catalogued::SHOWN`]), in one page. Generic: any shown view.
    Report,
    /// The pipeline's registrations grouped by motion and stage (a partner's own, safe
    /// fields only).
    Pipeline,
    /// The ledger's entries and balances.
    Ledger,
    /// The conflicts by account, and likely duplicate accounts.
    Conflicts,
    /// One registration's history, from its account's stream (found through the view's
    /// rows).
    History,
}

/// One kind of query: its name (the last token of the query subject), the view it reads,
/// who may ask it, the sections its answers are paged by, and its answer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryKind {
    pub name: &'static str,
    pub view: &'static str,
    /// Whether a partner may ask it (for its own rows); the vendor may ask every kind.
    pub partners: bool,
    /// The sections its answers are paged by, in answer order; none: one page.
    pub pages: &'static [&'static str],
    pub answer: Answer,
}

/// The views and the queries over them: what the CLI, the query endpoints, the feeds and
/// the CRM adapters read to choose a view.
pub struct Catalogue<S, K> {
    /// Every view, in registry order.
    pub views: Vec<Registered<S, K>>,
    /// Every query kind, in the order a refusal lists them.
    pub queries: Vec<QueryKind>,
}

impl<S: EventStore, K: CheckpointStore> Catalogue<S, K> {
    /// The views the engine maintains and the queries dealreg answers.
    pub fn standard() -> Self {
        const fn kind(
            name: &'static str,
            partners: bool,
            pages: &'static [&'static str],
            answer: Answer,
        ) -> QueryKind {
            QueryKind {
                name,
                view: name,
                partners,
                pages,
                answer,
            }
        }
        Catalogue {
            views: projections::<S, K>().into(),
            queries: vec![
                kind(Pipeline::NAME, true, &["registration"], Answer::Pipeline),
                kind(
                    ConflictFlags::NAME,
                    false,
                    &["account", "duplicate"],
                    Answer::Conflicts,
                ),
                kind(Ledger::NAME, true, &["entry", "balance"], Answer::Ledger),
                // Reports whose size does not grow with the log: one page.
                kind(ProgramMetrics::NAME, false, &[], Answer::Report),
                kind(Program::NAME, false, &[], Answer::Report),
                // A query kind over the pipeline's rows, not a view of its own.
                QueryKind {
                    name: "registration",
                    view: Pipeline::NAME,
                    partners: true,
                    pages: &["event"],
                    answer: Answer::History,
                },
            ],
        }
    }
}

impl<S, K> Catalogue<S, K> {
    /// This catalogue with one more view (after the others).
    pub fn with_view(mut self, view: Registered<S, K>) -> Self {
        self.views.push(view);
        self
    }

    /// This catalogue with one more query kind (after the others).
    pub fn with_query(mut self, query: QueryKind) -> Self {
        self.queries.push(query);
        self
    }

    /// The view named `name`.
    pub fn view(&self, name: &str) -> Option<&Registered<S, K>> {
        self.views.iter().find(|v| v.name == name)
    }

    /// The names of every view, in catalogue order.
    pub fn names(&self) -> Vec<&'static str> {
        self.views.iter().map(|v| v.name).collect()
    }

    /// The views that are shown (`dealreg replay`), in catalogue order.
    pub fn shown(&self) -> impl Iterator<Item = &Registered<S, K>> {
        self.views.iter().filter(|v| v.is_shown())
    }

    /// The shown view named `name`, or why there is none (the message lists the others).
    pub fn shown_view(&self, name: &str) -> Result<&Registered<S, K>, String> {
        self.shown().find(|v| v.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.shown().map(|v| v.name).collect();
            format!("`{name}` is not a view; choose one of {}", names.join(", "))
        })
    }

    /// The views with published tables (what the feeds and the CRM adapters carry).
    pub fn publishing(&self) -> impl Iterator<Item = &Registered<S, K>> {
        self.views.iter().filter(|v| !v.published.is_empty())
    }

    /// The published table `table` of view `view`, if the view publishes it.
    pub fn published(&self, view: &str, table: &str) -> Option<Published> {
        self.view(view)
            .and_then(|v| dealreg_projections::published(v.published, table).copied())
    }

    /// The query kinds a partner (`true`) or the vendor (`false`) may ask, in order.
    pub fn queries_for(&self, partner: bool) -> Vec<&QueryKind> {
        self.queries
            .iter()
            .filter(|q| q.partners || !partner)
            .collect()
    }
}
