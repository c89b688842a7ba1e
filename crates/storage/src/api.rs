//! Types of the storage read/write API used by `sextant-query`, `sextant-alert`
//! and `sextant-server`.

use sextant_model::{Dim, LlmCall};

/// The values of a rollup group, in the store's `rollup_dims` order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct GroupKey(pub Vec<String>);

/// Which raw rows a scan returns: every `equals` entry must match (a row
/// matches an entry when its value for that dim is one of the listed values);
/// `error` keeps only failed (`Some(true)`) or successful (`Some(false)`) calls.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowFilter {
    pub equals: Vec<(Dim, Vec<String>)>,
    pub error: Option<bool>,
}

impl RowFilter {
    pub fn matches(&self, call: &LlmCall) -> bool {
        if let Some(want) = self.error {
            if call.is_error() != want {
                return false;
            }
        }
        self.equals
            .iter()
            .all(|(dim, values)| values.iter().any(|v| v == dim.value_of(call)))
    }

    /// True when every dim this filter names is one of `dims` and there is
    /// no error filter: rollups grouped by `dims` can answer it exactly.
    pub fn served_by_rollups(&self, dims: &[Dim]) -> bool {
        self.error.is_none() && self.equals.iter().all(|(d, _)| dims.contains(d))
    }
}

/// A call's place, found through the request index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRef {
    /// The call's timestamp, Unix ms.
    pub timestamp_ms: i64,
    /// The call's rollup group.
    pub group: GroupKey,
}

/// The time each tier covers, Unix ms. Data older than a tier's `*_from_ms`
/// has been removed from it by retention; hour, day and week rollups exist
/// only for buckets ending at or before their `*_until_ms` (later buckets
/// are answered from the finer tiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coverage {
    pub raw_from_ms: i64,
    pub minute_from_ms: i64,
    pub hour_from_ms: i64,
    pub hour_until_ms: i64,
    pub day_from_ms: i64,
    pub day_until_ms: i64,
    pub week_from_ms: i64,
    pub week_until_ms: i64,
}

/// One entry of the recent-traces listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSummary {
    pub trace_id: String,
    /// Start of its earliest stored span, Unix ns.
    pub start_unix_nano: u64,
    /// Name of that span.
    pub root_name: String,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Values checked.
    pub checked: u64,
    /// (tree and key, what is wrong), in key order.
    pub problems: Vec<(String, String)>,
}

/// What a maintenance pass did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MaintenanceReport {
    pub sealed_events: u64,
    pub segments_written: u64,
    pub hours_rolled: u64,
    pub days_rolled: u64,
    pub weeks_rolled: u64,
    pub keys_expired: u64,
}

/// Gauges for the server's `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreStats {
    pub wal_batches: u64,
    pub wal_bytes: u64,
    pub head_events: u64,
    pub segments: u64,
    pub appended_events_total: u64,
    pub sealed_events_total: u64,
}

/// The segment files of a store (`<store>/segments/`, format 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentFileStats {
    /// Segment files on disk.
    pub files: u64,
    /// Segments stored in them.
    pub segments: u64,
    /// Bytes of those segments.
    pub live_bytes: u64,
    /// Bytes of the files (more than `live_bytes` while a file holds
    /// segments deleted by retention, or bytes of a seal cut by a crash).
    pub file_bytes: u64,
}

/// A key space for the layers above storage (rules, alert state, …). Values
/// are opaque bytes; the owner encodes them.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    Rules,
    AlertState,
    AlertHistory,
    Outbox,
    Silences,
    Baselines,
    Settings,
}

/// A set of puts and deletes across spaces, committed atomically and durably.
#[derive(Debug, Clone, Default)]
pub struct WriteSet {
    pub ops: Vec<(Space, Vec<u8>, Option<Vec<u8>>)>,
}

impl WriteSet {
    pub fn put(&mut self, space: Space, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((space, key.into(), Some(value.into())));
    }

    pub fn delete(&mut self, space: Space, key: impl Into<Vec<u8>>) {
        self.ops.push((space, key.into(), None));
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
