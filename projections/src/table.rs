//! Tables: the parts of a projection's state that are stored as rows.
//!
//! Why rows: a projection's state used to be saved as one JSON blob, so every save cost
//! the whole state and a query for one partner loaded everything. A [`Table`] is an ordered
//! map that remembers which keys changed since the last save, so a save writes only those
//! rows; each row carries an optional *scope* (the partner a row belongs to), so the rows of
//! one partner can be read without the rest. The small remainder of a projection's state
//! (a policy, a counter) is its *meta*, saved whole beside the rows.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::Arc;

use dealreg_domain::{AccountKey, ConflictId, PartnerId, RegistrationId};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A key as stored: a string, readable and ordered like the key.
pub trait RowKey: Ord + Clone {
    fn to_key(&self) -> String;
    fn from_key(key: &str) -> Option<Self>;
}

macro_rules! uuid_keys {
    ($($t:ty),*) => {$(
        impl RowKey for $t {
            fn to_key(&self) -> String {
                self.0.to_string()
            }
            fn from_key(key: &str) -> Option<Self> {
                key.parse().ok()
            }
        }
    )*};
}
uuid_keys!(
    PartnerId,
    RegistrationId,
    dealreg_domain::ids::AnnouncementId
);

impl RowKey for AccountKey {
    fn to_key(&self) -> String {
        self.0.clone()
    }
    fn from_key(key: &str) -> Option<Self> {
        Some(AccountKey(key.to_string()))
    }
}

impl RowKey for ConflictId {
    fn to_key(&self) -> String {
        self.0.clone()
    }
    fn from_key(key: &str) -> Option<Self> {
        Some(ConflictId(key.to_string()))
    }
}

impl RowKey for String {
    fn to_key(&self) -> String {
        self.clone()
    }
    fn from_key(key: &str) -> Option<Self> {
        Some(key.to_string())
    }
}

/// A capacity slot: the account, the registration and the partner holding it for it.
impl RowKey for (AccountKey, RegistrationId, PartnerId) {
    fn to_key(&self) -> String {
        format!("{}|{}|{}", (self.0).0, (self.1).0, (self.2).0)
    }
    fn from_key(key: &str) -> Option<Self> {
        let mut parts = key.rsplitn(3, '|');
        let partner = parts.next()?.parse().ok()?;
        let registration = parts.next()?.parse().ok()?;
        let account = parts.next()?;
        Some((
            AccountKey(account.to_string()),
            RegistrationId(registration),
            PartnerId(partner),
        ))
    }
}

/// Zero-padded so that stored keys sort like the numbers.
impl RowKey for u64 {
    fn to_key(&self) -> String {
        format!("{self:020}")
    }
    fn from_key(key: &str) -> Option<Self> {
        key.parse().ok()
    }
}

/// Which partner a row belongs to, if any: partner-scoped rows can be read (and published)
/// per partner.
pub trait Scope<V> {
    fn scope(value: &V) -> Option<String>;
}

/// Rows that belong to no partner in particular.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unscoped;

impl<V> Scope<V> for Unscoped {
    fn scope(_: &V) -> Option<String> {
        None
    }
}

/// Rows keyed by the partner they belong to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByPartnerKey;

/// A row as a save writes it: its key, its scope, and its bytes (`None`: deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    pub key: String,
    pub scope: Option<String>,
    pub row: Option<Vec<u8>>,
}

/// A row taken for a save: serialised later, off the fold's thread.
pub trait RowValue: Send + Sync {
    /// The row's stored key, without its table's name.
    fn key(&self) -> String;
    /// The partner the row belongs to, if any.
    fn scope(&self) -> Option<String>;
    /// The row's bytes; `None` when the row was removed.
    fn to_bytes(&self) -> Result<Option<Vec<u8>>, serde_json::Error>;
}

/// A changed row of a table as a save takes it: the key, and the value it has now (shared
/// with the table, which copies it only if the fold changes it again before the save has
/// serialised it), or none when removed.
struct Changed<K, V, S> {
    key: K,
    value: Option<Arc<V>>,
    scope: PhantomData<fn() -> S>,
}

impl<K, V, S> RowValue for Changed<K, V, S>
where
    K: RowKey + Send + Sync,
    V: Serialize + Send + Sync,
    S: Scope<V>,
{
    fn key(&self) -> String {
        self.key.to_key()
    }
    fn scope(&self) -> Option<String> {
        self.value.as_deref().and_then(S::scope)
    }
    fn to_bytes(&self) -> Result<Option<Vec<u8>>, serde_json::Error> {
        let Some(value) = self.value.as_deref() else {
            return Ok(None);
        };
        // Written into a buffer kept by the thread and copied out at its exact size: one
        // allocation per row instead of one per doubling of a growing vector.
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            serde_json::to_writer(&mut *scratch, value)?;
            Ok(Some(scratch.as_slice().to_vec()))
        })
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A changed row taken from a table: which table, and the row, to be turned into its
/// stored key, scope and bytes when serialised.
///
/// Why deferred: taking happens on the fold's thread, which every event waits for; a take
/// only moves the changed keys and shares the values, and the key formatting and the JSON
/// are done by the save, on another thread.
pub struct TakenRow {
    table: &'static str,
    row: Box<dyn RowValue>,
}

impl TakenRow {
    /// The row as a save writes it: `<table>/<key>`, its scope (none for a removed row),
    /// its bytes.
    pub fn serialise(self) -> Result<RowChange, serde_json::Error> {
        let row = self.row.to_bytes()?;
        Ok(RowChange {
            key: format!("{}/{}", self.table, self.row.key()),
            scope: row.as_ref().and(self.row.scope()),
            row,
        })
    }
}

/// What the runner needs of a table, whatever its key and row types. A projection names
/// its tables; stored keys are `<table name>/<key>`.
pub trait RowTable {
    /// The rows changed since the last call, with their current bytes, keyed under `name`.
    fn drain_changes(&mut self, name: &'static str) -> Result<Vec<RowChange>, serde_json::Error> {
        self.take_changes(name)
            .into_iter()
            .map(TakenRow::serialise)
            .collect()
    }
    /// The rows changed since the last call, shared out to be serialised elsewhere.
    fn take_changes(&mut self, name: &'static str) -> Vec<TakenRow>;
    /// How many rows changed since the last take.
    fn changed(&self) -> usize;
    /// Puts a stored row back (when a projection is loaded).
    fn restore(&mut self, key: &str, row: &[u8]) -> Result<(), String>;
    /// Every row, for comparing two states byte for byte.
    fn snapshot(&self) -> Result<Vec<(String, serde_json::Value)>, serde_json::Error>;
}

/// An ordered map that remembers the keys changed since the last save. Two tables are
/// equal when their rows are (what is saved or not is not part of the value).
///
/// Why values behind `Arc`: a save shares the changed rows instead of copying them on the
/// fold's thread; a row the fold changes again while a save still holds it is copied then
/// (`Arc::make_mut`), which is rare, since a save serialises its rows first.
#[derive(Debug, Clone)]
pub struct Table<K, V, S = Unscoped> {
    rows: BTreeMap<K, Arc<V>>,
    dirty: BTreeSet<K>,
    scope: PhantomData<S>,
}

impl<K: PartialEq, V: PartialEq, S> PartialEq for Table<K, V, S> {
    fn eq(&self, other: &Self) -> bool {
        self.rows == other.rows
    }
}

impl<K, V, S> Default for Table<K, V, S> {
    fn default() -> Self {
        Table {
            rows: BTreeMap::new(),
            dirty: BTreeSet::new(),
            scope: PhantomData,
        }
    }
}

impl<K: RowKey, V: Clone, S> Table<K, V, S> {
    pub fn get(&self, key: &K) -> Option<&V> {
        self.rows.get(key).map(|v| &**v)
    }

    /// The row for changing it: marked changed.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let row = self.rows.get_mut(key)?;
        self.dirty.insert(key.clone());
        Some(Arc::make_mut(row))
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.dirty.insert(key.clone());
        self.rows
            .insert(key, Arc::new(value))
            .map(Arc::unwrap_or_clone)
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let removed = self.rows.remove(key)?;
        self.dirty.insert(key.clone());
        Some(Arc::unwrap_or_clone(removed))
    }

    /// The row for changing it, created empty when missing: marked changed.
    pub fn entry_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        self.dirty.insert(key.clone());
        Arc::make_mut(self.rows.entry(key).or_default())
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.rows.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator + '_ {
        self.rows.iter().map(|(k, v)| (k, &**v))
    }

    /// The rows whose keys fall in `range`, in key order.
    pub fn range<R: std::ops::RangeBounds<K>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = (&K, &V)> + '_ {
        self.rows.range(range).map(|(k, v)| (k, &**v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator + '_ {
        self.rows.keys()
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator + '_ {
        self.rows.values().map(|v| &**v)
    }
}

impl<K, V, S> RowTable for Table<K, V, S>
where
    K: RowKey + Send + Sync + 'static,
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
    S: Scope<V> + 'static,
{
    fn take_changes(&mut self, name: &'static str) -> Vec<TakenRow> {
        let dirty = std::mem::take(&mut self.dirty);
        let mut changes = Vec::with_capacity(dirty.len());
        for key in dirty {
            let value = self.rows.get(&key).cloned();
            changes.push(TakenRow {
                table: name,
                row: Box::new(Changed::<K, V, S> {
                    key,
                    value,
                    scope: PhantomData,
                }),
            });
        }
        changes
    }

    fn changed(&self) -> usize {
        self.dirty.len()
    }

    fn restore(&mut self, key: &str, row: &[u8]) -> Result<(), String> {
        let key = K::from_key(key).ok_or_else(|| format!("`{key}` is not a key of this table"))?;
        let value = serde_json::from_slice(row).map_err(|e| e.to_string())?;
        self.rows.insert(key, Arc::new(value));
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<(String, serde_json::Value)>, serde_json::Error> {
        self.rows
            .iter()
            .map(|(k, v)| Ok((k.to_key(), serde_json::to_value(&**v)?)))
            .collect()
    }
}

/// A projection's tables by name, for the runner.
pub type Tables<'a> = Vec<(&'static str, &'a dyn RowTable)>;
pub type TablesMut<'a> = Vec<(&'static str, &'a mut dyn RowTable)>;

/// Restores rows stored as `<table>/<key>` into the matching tables of `tables`.
pub fn restore_rows(
    tables: &mut TablesMut<'_>,
    rows: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Result<(), String> {
    for (stored, row) in rows {
        let (name, key) = stored
            .split_once('/')
            .ok_or_else(|| format!("row `{stored}` names no table"))?;
        let (_, table) = tables
            .iter_mut()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| format!("row `{stored}` belongs to no table of this view"))?;
        table.restore(key, &row)?;
    }
    Ok(())
}

/// Every change of every table, keyed `<table>/<key>`, to be serialised by the caller.
pub fn take_all(tables: &mut TablesMut<'_>) -> Vec<TakenRow> {
    let mut changes = Vec::new();
    for (name, table) in tables.iter_mut() {
        changes.extend(table.take_changes(name));
    }
    changes
}

/// How many rows of all tables changed since the last take.
pub fn changed(tables: &Tables<'_>) -> usize {
    tables.iter().map(|(_, t)| t.changed()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct EvenOdd;
    impl Scope<u32> for EvenOdd {
        fn scope(v: &u32) -> Option<String> {
            Some(if v.is_multiple_of(2) { "even" } else { "odd" }.into())
        }
    }

    #[test]
    fn a_save_writes_only_the_rows_changed_since_the_last_one() {
        let mut t: Table<u64, u32, EvenOdd> = Table::default();
        t.insert(1, 10);
        t.insert(2, 21);
        let first = t.drain_changes("n").expect("json");
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].key, "n/00000000000000000001");
        assert_eq!(first[0].scope.as_deref(), Some("even"));
        assert!(
            t.drain_changes("n").expect("json").is_empty(),
            "nothing changed since"
        );
        if let Some(v) = t.get_mut(&2) {
            *v += 1;
        }
        t.remove(&1);
        let second = t.drain_changes("n").expect("json");
        assert_eq!(second.len(), 2);
        assert_eq!(second[0].row, None, "a removed row is deleted");
        assert_eq!(second[1].row.as_deref(), Some(&b"22"[..]));
    }

    #[test]
    fn stored_rows_restore_the_table() {
        let mut t: Table<u64, u32> = Table::default();
        t.insert(7, 70);
        let rows: Vec<(String, Vec<u8>)> = t
            .drain_changes("n")
            .expect("json")
            .into_iter()
            .filter_map(|c| c.row.map(|r| (c.key, r)))
            .collect();
        let mut back: Table<u64, u32> = Table::default();
        let mut tables: TablesMut<'_> = vec![("n", &mut back)];
        restore_rows(&mut tables, rows).expect("restore");
        assert_eq!(back.get(&7), Some(&70));
        assert!(
            back.drain_changes("n").expect("json").is_empty(),
            "restoring changes nothing"
        );
    }
}
