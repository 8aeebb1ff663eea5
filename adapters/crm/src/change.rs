//! A view row change as the CRM adapters consume it, whatever carried it (the JetStream
//! feed `dealreg serve` publishes, or the views file read in-process).

use serde_json::Value;

/// One row change of a published view table.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewChange {
    pub view: String,
    pub table: String,
    /// `<table>/<key>`, as the view stores it.
    pub key: String,
    /// The log position of the save that changed the row (an opaque token).
    pub position: String,
    /// `Some(partner)`: the partner-safe form for that partner (portal records);
    /// `None`: the vendor's row.
    pub partner: Option<String>,
    /// The row; `None` when it was deleted.
    pub row: Option<Value>,
}
