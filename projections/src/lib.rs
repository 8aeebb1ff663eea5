//! Read models of dealreg, each a pure fold over the log.
//!
//! Why pure: a projection must rebuild from the log alone and give the same bytes every
//! time (docs/ARCHITECTURE.md, invariant 3). So a projection is a value with `apply(event)`, and all
//! state is in ordered maps; the runner that feeds it and stores its output lives outside.

pub mod conflicts;
pub mod deadlines;
pub mod ledger;
pub mod metrics;
pub mod pipeline;
pub mod table;
pub mod text;

use dealreg_domain::Event;
pub use table::{RowChange, RowTable, Table, Tables, TablesMut};

/// A fold from events to a read model.
///
/// The state is serde-serialisable so the runner can store it with its checkpoint in one
/// atomic write, and its maps are ordered so the same log always gives the same bytes.
pub trait Projection:
    Default + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static
{
    /// Stable name, used for checkpoints and `dealreg rebuild NAME`.
    const NAME: &'static str;

    /// The version of the fold. Raise it whenever `apply` or the state's shape changes:
    /// a state saved under another version is rebuilt from the log instead of served.
    const VERSION: u32;

    /// Whether the view's row changes are published (the change feed): its saves write
    /// the feed outbox too.
    const PUBLISHED: bool = false;

    /// Folds one event at its global position.
    fn apply(&mut self, position: u64, event: &Event);

    /// The tables of the state, stored as rows (the rest, serialised with serde, is the
    /// small *meta* saved whole beside them; table fields are `#[serde(skip)]`).
    fn tables(&self) -> Tables<'_>;
    fn tables_mut(&mut self) -> TablesMut<'_>;
}

/// A projection's whole state, meta and every row, as JSON: what "the same bytes" means
/// when two folds are compared.
pub fn snapshot<P: Projection>(projection: &P) -> Result<serde_json::Value, serde_json::Error> {
    let mut tables = serde_json::Map::new();
    for (name, table) in projection.tables() {
        let rows: serde_json::Map<String, serde_json::Value> =
            table.snapshot()?.into_iter().collect();
        tables.insert(name.to_string(), serde_json::Value::Object(rows));
    }
    Ok(serde_json::json!({ "meta": serde_json::to_value(projection)?, "tables": tables }))
}
