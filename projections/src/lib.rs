//! Read models of dealreg, each a pure fold over the log.
//!
//! Why pure: a projection must rebuild from the log alone and give the same bytes every
//! time (docs/ARCHITECTURE.md, invariant 3). So a projection is a value with `apply(event)`, and all
//! state is in ordered maps; the runner that feeds it and stores its output lives outside.

pub mod alerts;
pub mod conflicts;
pub mod deadlines;
pub mod ledger;
pub mod metrics;
pub mod pipeline;
pub mod program;
pub mod table;
pub mod text;

use dealreg_domain::{Event, Position};
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

    /// The tables whose row changes are published (the change feeds a CRM mirrors), each
    /// with what a partner may see of a row: declared here once, for every sink (the NATS
    /// feeds, the CRM adapters) and every query. A view with published tables writes the
    /// feed outbox with its saves.
    const PUBLISHED: &'static [Published] = &[];

    /// Folds one event at its global position.
    fn apply(&mut self, position: Position, event: &Event);

    /// The tables of the state, stored as rows (the rest, serialised with serde, is the
    /// small *meta* saved whole beside them; table fields are `#[serde(skip)]`).
    fn tables(&self) -> Tables<'_>;
    fn tables_mut(&mut self) -> TablesMut<'_>;
}

/// A table of a view whose row changes are published.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    pub table: &'static str,
    /// The partner-safe form of a row, for the partner the row belongs to (its scope);
    /// `None`: partners never get this table's rows.
    pub for_partners: Option<PartnerForm>,
}

/// How a row becomes what its partner may see: `None` when nothing of it may be seen.
pub type PartnerForm = fn(&serde_json::Value) -> Option<serde_json::Value>;

/// The partner-safe form of a row of a table every field of which its partner may see.
pub fn as_is(row: &serde_json::Value) -> Option<serde_json::Value> {
    Some(row.clone())
}

/// The published table `table` of `published`, if it is one.
pub fn published<'a>(published: &'a [Published], table: &str) -> Option<&'a Published> {
    published.iter().find(|p| p.table == table)
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
