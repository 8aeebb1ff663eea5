//! The double's database: one global log and a per-stream index over it, plain synchronous
//! code behind the server's mutex, so every rule about expected versions, idempotence and
//! deletion sits in one place that the gRPC layer only translates.
//!
//! The rules mirror KurrentDB's write path (its index writer's commit check) as far as the
//! gRPC protocol lets a client observe them; README.md lists where the double is simpler.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::Uuid;

/// Stream revision that KurrentDB gives a tombstone record (`long.MaxValue`).
pub const TOMBSTONE_REVISION: u64 = i64::MAX as u64;

/// Event type of a tombstone record, as the real server writes it.
pub const TOMBSTONE_EVENT_TYPE: &str = "$streamDeleted";

/// Event type of the records in a `$$stream` metadata stream.
pub const METADATA_EVENT_TYPE: &str = "$metadata";

/// Where the first record lands. Real logs never hold a user event at 0 (the log starts with
/// the server's own records), and `Position::start()` is (0, 0), so a consumer that resumes
/// "after (0, 0)" must still see the first event.
const FIRST_POSITION: u64 = 1024;

/// Fixed per-record overhead added to the payload sizes, so positions look like byte
/// offsets of a log with headers: they grow strictly but never densely.
const RECORD_OVERHEAD: u64 = 64;

/// One record of the global log.
#[derive(Clone, Debug)]
pub struct Record {
    pub id: Uuid,
    pub stream: String,
    pub revision: u64,
    /// Commit and prepare position: equal, as for any single-stream append on a real node.
    pub position: u64,
    pub event_type: String,
    pub content_type: String,
    /// 100-nanosecond ticks since the Unix epoch, the unit of the real server's `created`.
    pub created_ticks: i64,
    pub custom_metadata: Vec<u8>,
    pub data: Vec<u8>,
}

/// An event proposed by an append.
#[derive(Clone, Debug)]
pub struct Proposed {
    pub id: Uuid,
    pub event_type: String,
    pub content_type: String,
    pub custom_metadata: Vec<u8>,
    pub data: Vec<u8>,
}

/// The expected state sent with an append, delete or tombstone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    Any,
    NoStream,
    StreamExists,
    Revision(u64),
}

/// What a successful append answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The revision the stream is at after the append (for a retried, idempotent append: the
    /// revision of the last event of that earlier append); `None` for an empty append to a
    /// stream that does not exist.
    pub current_revision: Option<u64>,
    /// Position of the last event written (or found again); `None` when nothing was written.
    pub position: Option<u64>,
}

/// Why a write was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// `current` is the stream's last revision, `None` when it has none.
    WrongExpectedVersion {
        current: Option<u64>,
    },
    StreamDeleted,
}

#[derive(Debug, Default)]
struct Stream {
    /// Log indexes of the stream's events; an event's revision is its index here.
    events: Vec<usize>,
    tombstoned: bool,
    /// Soft delete: the first revision a read still shows. `Some(u64::MAX)` right after a
    /// delete (nothing is shown); the revision of the first event appended after it once the
    /// stream is recreated. Also set by a `$tb` in metadata a client writes.
    truncate_before: Option<u64>,
    /// `$maxCount` of the stream's metadata: reads show only its last this many events.
    max_count: Option<u64>,
}

impl Stream {
    fn last_revision(&self) -> Option<u64> {
        (self.events.len() as u64).checked_sub(1)
    }

    fn soft_deleted(&self) -> bool {
        self.truncate_before == Some(u64::MAX)
    }
}

/// Where a read of one stream stands.
#[derive(Debug)]
pub enum StreamRead {
    NotFound,
    Deleted,
    /// The events read, and the stream's last revision.
    Events(Vec<Record>, u64),
}

#[derive(Debug)]
pub struct Store {
    log: Vec<Record>,
    streams: HashMap<String, Stream>,
    /// Last log index of each event id, the double's stand-in for the server's cache of
    /// recently committed ids (which is bounded; this is not).
    ids: HashMap<Uuid, usize>,
    next_position: u64,
    /// `$r` of the ACL in `$all`'s metadata (`$$$all`): who besides `$admins` may read
    /// `$all`. `None`: no ACL, so only `$admins` (the system stream default).
    all_readers: Option<Vec<String>>,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            log: Vec::new(),
            streams: HashMap::new(),
            ids: HashMap::new(),
            next_position: FIRST_POSITION,
            all_readers: None,
        }
    }
}

enum Decision {
    Write { recreate: bool },
    Idempotent { last_index: usize },
}

impl Store {
    pub fn len(&self) -> usize {
        self.log.len()
    }

    pub fn record(&self, index: usize) -> Option<&Record> {
        self.log.get(index)
    }

    /// Log index of the first record at or after `position` (by commit, then prepare).
    pub fn first_index_at_or_after(&self, commit: u64, prepare: u64) -> usize {
        self.log
            .partition_point(|r| (r.position, r.position) < (commit, prepare))
    }

    /// Log index of the first record strictly after `position`.
    pub fn first_index_after(&self, commit: u64, prepare: u64) -> usize {
        self.log
            .partition_point(|r| (r.position, r.position) <= (commit, prepare))
    }

    /// Appends `events` to `stream` if `expected` allows it, with KurrentDB's idempotence:
    /// a retry of an earlier append (same event ids, in order, at the same place) succeeds
    /// again without writing anything.
    pub fn append(
        &mut self,
        stream: &str,
        expected: Expected,
        events: Vec<Proposed>,
    ) -> Result<Appended, WriteError> {
        match self.check(stream, expected, &events)? {
            Decision::Idempotent { last_index } => {
                let record = &self.log[last_index];
                Ok(Appended {
                    current_revision: Some(record.revision),
                    position: Some(record.position),
                })
            }
            Decision::Write { recreate } => {
                let current = self.streams.get(stream).and_then(Stream::last_revision);
                if events.is_empty() {
                    return Ok(Appended {
                        current_revision: current,
                        position: None,
                    });
                }
                if recreate {
                    let first_new = current.map_or(0, |c| c + 1);
                    self.write_metadata(stream, first_new);
                    if let Some(s) = self.streams.get_mut(stream) {
                        s.truncate_before = Some(first_new);
                    }
                }
                let mut last = None;
                let mut metadata = None;
                for event in events {
                    if event.event_type == METADATA_EVENT_TYPE {
                        metadata = Some(event.data.clone());
                    }
                    last = Some(self.push(stream, event, None));
                }
                if let (Some(target), Some(data)) = (stream.strip_prefix("$$"), metadata) {
                    self.apply_metadata(target, &data);
                }
                let position = last.map(|i| self.log[i].position);
                Ok(Appended {
                    current_revision: self.streams.get(stream).and_then(Stream::last_revision),
                    position,
                })
            }
        }
    }

    /// The commit check, in the order the real index writer makes it.
    fn check(
        &self,
        stream: &str,
        expected: Expected,
        events: &[Proposed],
    ) -> Result<Decision, WriteError> {
        let entry = self.streams.get(stream);
        let Some(s) = entry.filter(|s| !s.events.is_empty() || s.tombstoned) else {
            // A stream that never had an event (though it may have been soft-deleted
            // before it had any: then this append also lifts that delete).
            let recreate = entry.is_some_and(Stream::soft_deleted);
            return match expected {
                Expected::Any | Expected::NoStream => Ok(Decision::Write { recreate }),
                _ => Err(WriteError::WrongExpectedVersion { current: None }),
            };
        };
        if s.tombstoned {
            return Err(WriteError::StreamDeleted);
        }
        let soft_deleted = s.soft_deleted();
        let current = s.last_revision();
        if expected == Expected::StreamExists && soft_deleted {
            return Err(WriteError::StreamDeleted);
        }

        if matches!(expected, Expected::Any | Expected::StreamExists) {
            // Idempotence by id alone: every id must already be an event of this stream.
            let mut last_index = None;
            for (n, event) in events.iter().enumerate() {
                match self.ids.get(&event.id) {
                    Some(&i) if self.log[i].stream == stream => last_index = Some(i),
                    _ if n == 0 => {
                        return Ok(Decision::Write {
                            recreate: soft_deleted,
                        })
                    }
                    // Part of the batch was written before and part was not.
                    _ => return Err(WriteError::WrongExpectedVersion { current }),
                }
            }
            return Ok(match last_index {
                Some(last_index) => Decision::Idempotent { last_index },
                None => Decision::Write { recreate: false },
            });
        }

        let expected_number: i128 = match expected {
            Expected::Revision(r) => i128::from(r),
            _ => -1,
        };
        let current_number = current.map_or(-1, i128::from);

        if expected_number < current_number {
            // Idempotence by place: the events must be exactly those after `expected`.
            let mut number = expected_number;
            for event in events {
                number += 1;
                let same = u64::try_from(number)
                    .ok()
                    .and_then(|r| s.events.get(r as usize))
                    .is_some_and(|&i| self.log[i].id == event.id);
                if same {
                    continue;
                }
                if number != expected_number + 1 {
                    return Err(WriteError::WrongExpectedVersion { current });
                }
                if expected == Expected::NoStream && soft_deleted {
                    return Ok(Decision::Write { recreate: true });
                }
                return Err(WriteError::WrongExpectedVersion { current });
            }
            if number == expected_number {
                // An empty append behind the stream's end.
                return Err(WriteError::WrongExpectedVersion { current });
            }
            let last_index = s.events[number as usize];
            return Ok(Decision::Idempotent { last_index });
        }
        if expected_number > current_number {
            return Err(WriteError::WrongExpectedVersion { current });
        }
        Ok(Decision::Write {
            recreate: soft_deleted,
        })
    }

    /// Applies the newest `$metadata` record a client wrote to `$$target`: as on the
    /// server, the newest record is the whole metadata (a key it lacks is unset). Read
    /// here: `$tb` (truncate before), `$maxCount`, and for `$all` the `$r` of its `$acl`.
    /// Data that is not a JSON object sets nothing, as the server ignores it.
    fn apply_metadata(&mut self, target: &str, data: &[u8]) {
        let Ok(serde_json::Value::Object(metadata)) = serde_json::from_slice(data) else {
            return;
        };
        if target == "$all" {
            let roles = metadata
                .get("$acl")
                .and_then(|acl| acl.get("$r"))
                .map(|r| match r {
                    serde_json::Value::String(one) => vec![one.clone()],
                    serde_json::Value::Array(many) => many
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                });
            self.all_readers = roles;
            return;
        }
        let number = |key: &str| metadata.get(key).and_then(serde_json::Value::as_u64);
        let s = self.streams.entry(target.to_owned()).or_default();
        // `$tb` of `long.MaxValue` is how a soft delete is written.
        s.truncate_before = number("$tb").map(|tb| {
            if tb >= TOMBSTONE_REVISION {
                u64::MAX
            } else {
                tb
            }
        });
        s.max_count = number("$maxCount");
    }

    /// Who besides `$admins` may read `$all` (the `$r` of its ACL), if it has an ACL.
    pub fn all_readers(&self) -> Option<&[String]> {
        self.all_readers.as_deref()
    }

    /// The expected-state check of a delete or tombstone, which has no idempotence.
    fn check_delete(&self, stream: &str, expected: Expected) -> Result<(), WriteError> {
        let s = self.streams.get(stream);
        if s.is_some_and(|s| s.tombstoned) {
            return Err(WriteError::StreamDeleted);
        }
        let current = s.and_then(Stream::last_revision);
        let ok = match expected {
            Expected::Any => true,
            Expected::NoStream => current.is_none(),
            Expected::StreamExists => current.is_some(),
            Expected::Revision(r) => current == Some(r),
        };
        if ok {
            Ok(())
        } else {
            Err(WriteError::WrongExpectedVersion { current })
        }
    }

    /// Soft delete: the stream reads as not found until something is appended again, and
    /// revisions then go on from where they were. Returns the position of the metadata
    /// record written to `$$stream`.
    pub fn delete(&mut self, stream: &str, expected: Expected) -> Result<u64, WriteError> {
        self.check_delete(stream, expected)?;
        let index = self.write_metadata(stream, TOMBSTONE_REVISION);
        self.streams
            .entry(stream.to_owned())
            .or_default()
            .truncate_before = Some(u64::MAX);
        Ok(self.log[index].position)
    }

    /// Hard delete: a `$streamDeleted` record at revision `i64::MAX` ends the stream for
    /// good. Returns its position.
    pub fn tombstone(&mut self, stream: &str, expected: Expected) -> Result<u64, WriteError> {
        self.check_delete(stream, expected)?;
        let tombstone = Proposed {
            id: Uuid::new_v4(),
            event_type: TOMBSTONE_EVENT_TYPE.to_owned(),
            content_type: "application/octet-stream".to_owned(),
            custom_metadata: Vec::new(),
            data: Vec::new(),
        };
        let index = self.push(stream, tombstone, Some(TOMBSTONE_REVISION));
        let s = self.streams.entry(stream.to_owned()).or_default();
        s.tombstoned = true;
        Ok(self.log[index].position)
    }

    /// Reads `stream` from `from` (a revision; `None` = its end) forwards or backwards.
    #[cfg(test)]
    pub fn read_stream(
        &self,
        stream: &str,
        from: StreamFrom,
        count: u64,
        forwards: bool,
    ) -> StreamRead {
        self.read_stream_as_of(stream, from, count, forwards, self.log.len())
    }

    /// [`Store::read_stream`] as a node that holds only the first `visible` records of the
    /// log (a lagging follower) answers it.
    ///
    /// Events before the stream's `$tb`, and all but its last `$maxCount`, are skipped as
    /// the server's reads skip them: a forwards read from revision 0 of a truncated stream
    /// starts at its first visible revision, without saying so.
    pub fn read_stream_as_of(
        &self,
        stream: &str,
        from: StreamFrom,
        count: u64,
        forwards: bool,
        visible: usize,
    ) -> StreamRead {
        let Some(s) = self.streams.get(stream) else {
            return StreamRead::NotFound;
        };
        if s.tombstoned {
            return StreamRead::Deleted;
        }
        let known = s.events.partition_point(|&index| index < visible);
        let Some(last) = (known as u64).checked_sub(1) else {
            return StreamRead::NotFound;
        };
        let by_count = s.max_count.map_or(0, |max| (last + 1).saturating_sub(max));
        let first_visible = s.truncate_before.unwrap_or(0).max(by_count);
        if first_visible > last {
            return StreamRead::NotFound;
        }
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let revisions: Vec<u64> = if forwards {
            let start = match from {
                StreamFrom::Start => first_visible,
                StreamFrom::End => last.saturating_add(1),
                StreamFrom::Revision(r) => r.max(first_visible),
            };
            (start..=last).take(count).collect()
        } else {
            let start = match from {
                StreamFrom::Start => first_visible,
                StreamFrom::End => last,
                StreamFrom::Revision(r) => r.min(last),
            };
            if start < first_visible {
                Vec::new()
            } else {
                (first_visible..=start).rev().take(count).collect()
            }
        };
        let events = revisions
            .into_iter()
            .map(|r| self.log[s.events[r as usize]].clone())
            .collect();
        StreamRead::Events(events, last)
    }

    fn write_metadata(&mut self, stream: &str, truncate_before: u64) -> usize {
        let meta_stream = format!("$${stream}");
        let event = Proposed {
            id: Uuid::new_v4(),
            event_type: METADATA_EVENT_TYPE.to_owned(),
            content_type: "application/json".to_owned(),
            custom_metadata: Vec::new(),
            data: format!("{{\"$tb\":{truncate_before}}}").into_bytes(),
        };
        self.push(&meta_stream, event, None)
    }

    /// Writes one record at the log's end and indexes it. `revision` overrides the next
    /// revision of the stream (the tombstone's), without taking a slot in the stream.
    fn push(&mut self, stream: &str, event: Proposed, revision: Option<u64>) -> usize {
        let s = self.streams.entry(stream.to_owned()).or_default();
        let index = self.log.len();
        let revision = match revision {
            Some(r) => r,
            None => {
                s.events.push(index);
                s.events.len() as u64 - 1
            }
        };
        let size = event.data.len() + event.custom_metadata.len() + event.event_type.len();
        let position = self.next_position;
        self.next_position += size as u64 + stream.len() as u64 + RECORD_OVERHEAD;
        self.ids.insert(event.id, index);
        self.log.push(Record {
            id: event.id,
            stream: stream.to_owned(),
            revision,
            position,
            event_type: event.event_type,
            content_type: event.content_type,
            created_ticks: now_ticks(),
            custom_metadata: event.custom_metadata,
            data: event.data,
        });
        index
    }
}

/// Where a read of one stream starts.
#[derive(Clone, Copy, Debug)]
pub enum StreamFrom {
    Start,
    End,
    Revision(u64),
}

fn now_ticks() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_nanos() / 100).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: u128) -> Proposed {
        Proposed {
            id: Uuid::from_u128(id),
            event_type: "t".into(),
            content_type: "application/json".into(),
            custom_metadata: Vec::new(),
            data: b"{}".to_vec(),
        }
    }

    #[test]
    fn retried_append_at_same_revision_is_idempotent() {
        let mut store = Store::default();
        let first = store
            .append("s", Expected::NoStream, vec![ev(1), ev(2)])
            .unwrap();
        let again = store
            .append("s", Expected::NoStream, vec![ev(1), ev(2)])
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(store.len(), 2);
        // Part of it retried, part new: not idempotent.
        assert_eq!(
            store.append("s", Expected::NoStream, vec![ev(1), ev(3)]),
            Err(WriteError::WrongExpectedVersion { current: Some(1) })
        );
        // Different ids at the same place: a plain conflict.
        assert_eq!(
            store.append("s", Expected::Revision(0), vec![ev(9)]),
            Err(WriteError::WrongExpectedVersion { current: Some(1) })
        );
        // The prefix of an earlier append, retried at its place.
        let prefix = store.append("s", Expected::NoStream, vec![ev(1)]).unwrap();
        assert_eq!(prefix.current_revision, Some(0));
    }

    fn metadata(json: &str) -> Proposed {
        Proposed {
            id: Uuid::new_v4(),
            event_type: METADATA_EVENT_TYPE.into(),
            content_type: "application/json".into(),
            custom_metadata: Vec::new(),
            data: json.as_bytes().to_vec(),
        }
    }

    fn revisions(store: &Store, from: StreamFrom, visible: usize) -> Vec<u64> {
        match store.read_stream_as_of("s", from, 100, true, visible) {
            StreamRead::Events(events, _) => events.iter().map(|e| e.revision).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_skip_what_tb_and_max_count_hide_as_the_server_does() {
        let mut store = Store::default();
        store
            .append("s", Expected::NoStream, (1..=5).map(ev).collect())
            .unwrap();
        let all = store.len() + 10;
        store
            .append("$$s", Expected::Any, vec![metadata(r#"{"$tb":3}"#)])
            .unwrap();
        assert_eq!(revisions(&store, StreamFrom::Start, all), vec![3, 4]);
        assert_eq!(revisions(&store, StreamFrom::Revision(1), all), vec![3, 4]);
        // The newest metadata is the whole of it: $tb is gone, $maxCount keeps the last 2.
        store
            .append("$$s", Expected::Any, vec![metadata(r#"{"$maxCount":2}"#)])
            .unwrap();
        assert_eq!(revisions(&store, StreamFrom::Start, all), vec![3, 4]);
        store
            .append("$$s", Expected::Any, vec![metadata("{}")])
            .unwrap();
        assert_eq!(
            revisions(&store, StreamFrom::Start, all),
            vec![0, 1, 2, 3, 4]
        );
        // A follower that holds only the first 3 records of the log.
        assert_eq!(revisions(&store, StreamFrom::Start, 3), vec![0, 1, 2]);
        assert!(matches!(
            store.read_stream_as_of("s", StreamFrom::Start, 100, true, 0),
            StreamRead::NotFound
        ));
    }

    #[test]
    fn positions_are_strictly_increasing_and_not_dense() {
        let mut store = Store::default();
        store
            .append("a", Expected::Any, vec![ev(1), ev(2)])
            .unwrap();
        let p0 = store.record(0).unwrap().position;
        let p1 = store.record(1).unwrap().position;
        assert!(p0 > 0);
        assert!(p1 > p0 + 1);
        assert_eq!(store.first_index_at_or_after(p1, p1), 1);
        assert_eq!(store.first_index_after(p1, p1), 2);
    }

    #[test]
    fn a_stream_deleted_before_it_existed_can_be_created() {
        let mut store = Store::default();
        store.delete("s", Expected::Any).unwrap();
        store.append("s", Expected::NoStream, vec![ev(1)]).unwrap();
        match store.read_stream("s", StreamFrom::Start, 10, true) {
            StreamRead::Events(events, last) => {
                assert_eq!(last, 0);
                assert_eq!(events.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn soft_deleted_stream_is_recreated_by_an_append() {
        let mut store = Store::default();
        store.append("s", Expected::Any, vec![ev(1)]).unwrap();
        store.delete("s", Expected::Revision(0)).unwrap();
        assert!(matches!(
            store.read_stream("s", StreamFrom::Start, 10, true),
            StreamRead::NotFound
        ));
        assert_eq!(
            store.append("s", Expected::StreamExists, vec![ev(2)]),
            Err(WriteError::StreamDeleted)
        );
        let again = store.append("s", Expected::NoStream, vec![ev(2)]).unwrap();
        assert_eq!(again.current_revision, Some(1));
        match store.read_stream("s", StreamFrom::Start, 10, true) {
            StreamRead::Events(events, last) => {
                assert_eq!(last, 1);
                assert_eq!(events.len(), 1);
                assert_eq!(events[0].revision, 1);
            }
            other => panic!("{other:?}"),
        }
    }
}
