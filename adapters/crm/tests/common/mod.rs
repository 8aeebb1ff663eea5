//! What the CRM adapter tests share.

use std::sync::{Arc, Mutex};

use dealreg_crm::webhook::CommandSink;
use serde_json::{json, Value};

/// Records every command envelope; answers ok.
#[derive(Clone, Default)]
pub struct Recorded(Arc<Mutex<Vec<Value>>>);

impl Recorded {
    pub fn commands(&self) -> Vec<Value> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl CommandSink for Recorded {
    async fn execute(&self, envelope: Vec<u8>) -> Value {
        let envelope: Value = serde_json::from_slice(&envelope).unwrap_or(Value::Null);
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(envelope);
        json!({ "ok": true, "events": [], "replayed": false })
    }
}
