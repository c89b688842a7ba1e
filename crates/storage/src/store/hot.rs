//! The hot minute-rollup mirror: an in-memory copy of the most recent
//! window of the `rollup_minute` tree, so recent-minute reads do not iterate
//! sled (whose per-item iteration cost dominated a day-long series).
//!
//! **Invariant (authoritative mirror):** for every `rollup_minute` key whose
//! bucket is `>= HotMinutes::from`, the mirror holds exactly the value sled
//! holds, or neither holds the key. It lives in `State` and every write to
//! the tree updates it under the state write lock, in the same locked
//! section as the sled commit (seal, retention, `import_rollups`), so a
//! reader holding the state read lock sees one consistent view. `from`
//! never moves backwards; writes to buckets below it go to sled only.
//!
//! The mirror holds the encoded bytes sled holds, each with its
//! [`Prepared`] form: the version, CRC and extents a view checks first are
//! checked once, when the value enters the mirror, and its latency and ttft
//! digests decoded once, not at every read (a value that fails the checks
//! is kept unprepared and reads report it as before). A value damaged
//! on disk after it was written is seen by reads only after a reopen
//! (`verify` reads sled).

use std::collections::BTreeMap;
use std::sync::Arc;

use sextant_model::MINUTE_MS;

use crate::db::{ts_from_key, ts_key, Bytes, Db, T};
use crate::error::Result;
use crate::rollup::Prepared;

/// Bytes counted per entry on top of its key, its value and its prepared
/// digests (map node share, key box, value handle, prepared form).
pub(crate) const ENTRY_OVERHEAD: usize = 80 + std::mem::size_of::<Prepared>();

/// A mirrored value: the bytes sled holds and, unless they failed the
/// checks, their [`Prepared`] form (shared with the reads that took it).
#[derive(Debug)]
pub(crate) struct HotValue {
    pub(crate) bytes: Bytes,
    pub(crate) prepared: Option<Arc<Prepared>>,
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct HotMinutes {
    /// Authoritative for every minute bucket `>= from`; `i64::MAX` when
    /// the mirror is disabled.
    from: i64,
    /// `rollup_minute` key (`ts_key(bucket)` ++ group strings) → its value.
    map: BTreeMap<Box<[u8]>, HotValue>,
    /// Counted size of `map` (keys + values + [`ENTRY_OVERHEAD`] each).
    bytes: usize,
    window_ms: i64,
    max_bytes: usize,
}

fn entry_bytes(key_len: usize, v: &HotValue) -> usize {
    key_len + v.bytes.len() + ENTRY_OVERHEAD + v.prepared.as_ref().map_or(0, |p| p.heap_bytes())
}

/// The bucket of a rollup key (`i64::MIN` for a key too short to hold one:
/// never written by the store, and then simply below any `from`).
fn bucket_of(k: &[u8]) -> i64 {
    ts_from_key(k).unwrap_or(i64::MIN)
}

impl HotMinutes {
    /// An empty mirror authoritative from `from` (the caller guarantees
    /// sled holds no key at or above it), with the given limits; a zero
    /// limit disables the mirror.
    pub(crate) fn new(window_ms: i64, max_bytes: usize, from: i64) -> HotMinutes {
        let disabled = window_ms <= 0 || max_bytes == 0;
        HotMinutes {
            from: if disabled { i64::MAX } else { from },
            map: BTreeMap::new(),
            bytes: 0,
            window_ms,
            max_bytes,
        }
    }

    /// Loads the mirror from the `rollup_minute` tree at open: the window
    /// ending at the newest stored bucket (everything, authoritatively
    /// empty, when the tree is empty).
    pub(crate) fn load(db: &Db, window_ms: i64, max_bytes: usize) -> Result<HotMinutes> {
        let newest = match db.range(T::RollupMinute, ..).next_back() {
            Some(kv) => Some(bucket_of(&kv?.0)),
            None => None,
        };
        let mut hot = HotMinutes::new(window_ms, max_bytes, i64::MIN);
        if hot.disabled() {
            return Ok(hot);
        }
        let Some(newest) = newest else {
            return Ok(hot);
        };
        hot.from = hot.window_start(newest);
        let mut batch = Vec::new();
        for kv in db.range(T::RollupMinute, ts_key(hot.from).to_vec()..) {
            let (k, v) = kv?;
            batch.push((k.to_vec(), v));
        }
        hot.insert(batch);
        Ok(hot)
    }

    fn disabled(&self) -> bool {
        self.window_ms <= 0 || self.max_bytes == 0
    }

    /// The mirror is authoritative for buckets at or above this.
    pub(crate) fn from(&self) -> i64 {
        self.from
    }

    /// The first bucket of the window ending at bucket `newest`.
    fn window_start(&self, newest: i64) -> i64 {
        newest
            .saturating_sub(self.window_ms)
            .saturating_add(MINUTE_MS)
    }

    /// Entries with keys in `[ts_key(lo), ts_key(hi))` (callers pass
    /// `lo >= from`), in key order: the order of the sled tree.
    pub(crate) fn range(&self, lo: i64, hi: i64) -> impl Iterator<Item = (&[u8], &HotValue)> {
        let (lo, hi) = (ts_key(lo), ts_key(hi));
        let bounds = (
            std::ops::Bound::Included(&lo[..]),
            std::ops::Bound::Excluded(&hi[..]),
        );
        let slice = if lo < hi {
            Some(self.map.range::<[u8], _>(bounds))
        } else {
            None
        };
        slice.into_iter().flatten().map(|(k, v)| (&**k, v))
    }

    /// About how many entries [`HotMinutes::range`] yields for `[lo, hi)`
    /// (the mirror's entries spread evenly over its buckets), never more
    /// than it holds: a capacity to reserve.
    pub(crate) fn estimate(&self, lo: i64, hi: i64) -> usize {
        let (Some((first, _)), Some((last, _))) =
            (self.map.first_key_value(), self.map.last_key_value())
        else {
            return 0;
        };
        let (first, last) = (bucket_of(first), bucket_of(last));
        let span = i128::from(last) - i128::from(first) + i128::from(MINUTE_MS);
        let overlap =
            (i128::from(hi.min(last.saturating_add(MINUTE_MS))) - i128::from(lo.max(first))).max(0);
        let n = self.map.len() as i128;
        (n * overlap / span.max(1)).min(n) as usize
    }

    /// Records values just committed to sled (call under the state write
    /// lock, after the commit succeeded). Keys below `from` are skipped
    /// (sled alone holds them); then the window and the byte cap are applied.
    pub(crate) fn insert(&mut self, kvs: Vec<(Vec<u8>, Bytes)>) {
        if self.disabled() {
            return;
        }
        // The window first, so a large batch never holds more than it.
        if let Some(newest) = kvs.iter().map(|(k, _)| bucket_of(k)).max() {
            self.advance(self.window_start(newest));
        }
        for (k, v) in kvs {
            if bucket_of(&k) < self.from {
                continue;
            }
            let key_len = k.len();
            let prepared = Prepared::of(&v).map(Arc::new);
            let value = HotValue { bytes: v, prepared };
            self.bytes += entry_bytes(key_len, &value);
            if let Some(old) = self.map.insert(k.into_boxed_slice(), value) {
                // Replaced: the old entry is no longer counted (same key).
                self.bytes -= entry_bytes(key_len, &old);
            }
        }
        self.enforce_limits();
    }

    /// Forgets keys below `minute_from` and moves `from` up to it (call
    /// after retention deleted those keys from sled, under the state write
    /// lock): the mirror claims nothing below the minute tier's start.
    pub(crate) fn remove_below(&mut self, minute_from: i64) {
        if self.disabled() {
            return;
        }
        self.advance(minute_from);
    }

    /// Advances `from` to `to` (never backwards), forgetting older entries.
    fn advance(&mut self, to: i64) {
        if to <= self.from {
            return;
        }
        self.from = to;
        let keep = self.map.split_off(&ts_key(to)[..]);
        self.drop_map(keep);
    }

    /// Replaces the map by `keep`, uncounting what is dropped.
    fn drop_map(&mut self, keep: BTreeMap<Box<[u8]>, HotValue>) {
        let gone = std::mem::replace(&mut self.map, keep);
        for (k, v) in &gone {
            self.bytes -= entry_bytes(k.len(), v);
        }
    }

    fn enforce_limits(&mut self) {
        if let Some((k, _)) = self.map.last_key_value() {
            let newest = bucket_of(k);
            self.advance(self.window_start(newest));
        }
        while self.bytes > self.max_bytes {
            let Some((k, _)) = self.map.first_key_value() else {
                break;
            };
            let oldest = bucket_of(k);
            self.advance(oldest.saturating_add(MINUTE_MS));
        }
    }

    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.map
            .iter()
            .map(|(k, v)| (k.to_vec(), v.bytes.to_vec()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{GroupKey, RowFilter};
    use crate::config::{Retention, StoreConfig};
    use crate::rollup::Rollup;
    use crate::store::records::rollup_key;
    use crate::store::Store;
    use sextant_model::{Batch, LlmCall, Tier, TimeRange};

    const M: i64 = MINUTE_MS;
    const B: i64 = 1_700_006_400_000;

    fn kv(bucket: i64, group: &str, len: usize) -> (Vec<u8>, Bytes) {
        let key = rollup_key(bucket, &GroupKey(vec![group.into()]));
        (key, Bytes::from(vec![7u8; len]))
    }

    fn buckets(h: &HotMinutes) -> Vec<i64> {
        let mut b: Vec<i64> = h.entries().iter().map(|(k, _)| bucket_of(k)).collect();
        b.dedup();
        b
    }

    fn counted(h: &HotMinutes) -> usize {
        h.map.iter().map(|(k, v)| entry_bytes(k.len(), v)).sum()
    }

    #[test]
    fn the_window_ends_at_the_newest_bucket_and_from_never_moves_back() {
        let mut h = HotMinutes::new(3 * M, usize::MAX, i64::MIN);
        h.insert((0..5).map(|i| kv(B + i * M, "a", 10)).collect());
        // Newest B+4M, window 3 minutes: B+2M..=B+4M.
        assert_eq!(h.from(), B + 2 * M);
        assert_eq!(buckets(&h), [B + 2 * M, B + 3 * M, B + 4 * M]);
        assert_eq!(h.estimate(i64::MIN, i64::MAX), 3);
        assert_eq!(h.estimate(B + 3 * M, B + 4 * M), 1);
        assert_eq!(h.estimate(B, B + 2 * M), 0);
        // Below `from`: sled's alone, not taken; `from` stays.
        h.insert(vec![kv(B + M, "a", 10), kv(B + M, "b", 10)]);
        assert_eq!(h.from(), B + 2 * M);
        assert_eq!(buckets(&h), [B + 2 * M, B + 3 * M, B + 4 * M]);
        // Inside: taken (a new group, and a replaced value).
        h.insert(vec![kv(B + 2 * M, "b", 10), kv(B + 3 * M, "a", 30)]);
        assert_eq!(h.len(), 4);
        assert_eq!(h.bytes(), counted(&h));
        // A newer bucket slides the window.
        h.insert(vec![kv(B + 6 * M, "a", 10)]);
        assert_eq!(h.from(), B + 4 * M);
        assert_eq!(buckets(&h), [B + 4 * M, B + 6 * M]);
        assert_eq!(h.bytes(), counted(&h));
        // An older batch never moves it back.
        h.insert(vec![kv(B, "a", 10)]);
        assert_eq!(h.from(), B + 4 * M);
        assert_eq!(buckets(&h), [B + 4 * M, B + 6 * M]);
        // Retention forgets keys below its cut, and `from` moves up to it
        // (never down).
        h.remove_below(B + 5 * M);
        assert_eq!(h.from(), B + 5 * M);
        h.remove_below(B);
        assert_eq!(h.from(), B + 5 * M);
        assert_eq!(buckets(&h), [B + 6 * M]);
        assert_eq!(h.bytes(), counted(&h));
        // Ranges are in key order, bounded by bucket.
        let got: Vec<i64> = h
            .range(B + 6 * M, B + 7 * M)
            .map(|(k, _)| bucket_of(k))
            .collect();
        assert_eq!(got, [B + 6 * M]);
        assert_eq!(h.range(B + 4 * M, B + 6 * M).count(), 0);
        assert_eq!(h.range(B + 7 * M, B + 6 * M).count(), 0);
    }

    #[test]
    fn over_the_byte_cap_whole_oldest_buckets_leave_and_from_passes_them() {
        // Bytes that are no rollup: kept unprepared.
        let (k, bytes) = kv(B, "a", 100);
        let e = entry_bytes(
            k.len(),
            &HotValue {
                bytes,
                prepared: None,
            },
        );
        // Room for five entries.
        let mut h = HotMinutes::new(i64::MAX / 4, 5 * e, i64::MIN);
        h.insert(vec![kv(B, "a", 100), kv(B, "b", 100)]);
        h.insert(vec![kv(B + M, "a", 100), kv(B + M, "b", 100)]);
        assert_eq!((h.len(), h.bytes()), (4, 4 * e));
        assert!(h.from() < B);
        // Six entries: bucket B leaves whole (both its groups).
        h.insert(vec![kv(B + 2 * M, "a", 100), kv(B + 2 * M, "b", 100)]);
        assert_eq!(h.from(), B + M);
        assert_eq!(buckets(&h), [B + M, B + 2 * M]);
        assert_eq!(h.bytes(), 4 * e);
        // A bigger value in place: B+M leaves too.
        h.insert(vec![kv(B + 2 * M, "a", 100 + 2 * e)]);
        assert_eq!(h.from(), B + 2 * M);
        assert_eq!(buckets(&h), [B + 2 * M]);
        assert_eq!(h.bytes(), counted(&h));
        // A single bucket over the cap: all of it leaves, `from` passes it.
        h.insert(vec![kv(B + 3 * M, "a", 6 * e)]);
        assert_eq!(h.from(), B + 4 * M);
        assert_eq!((h.len(), h.bytes()), (0, 0));
        h.insert(vec![kv(B + 3 * M, "a", 10)]);
        assert_eq!(h.len(), 0);
    }

    #[test]
    fn a_zero_limit_disables_the_mirror() {
        for (w, b) in [(0, 1 << 20), (M, 0)] {
            let mut h = HotMinutes::new(w, b, i64::MIN);
            h.insert(vec![kv(B, "a", 10)]);
            assert_eq!((h.from(), h.len()), (i64::MAX, 0));
        }
    }

    // ---- the mirror inside a store ----

    fn config(window_ms: i64, minute_retention_ms: Option<i64>) -> StoreConfig {
        StoreConfig {
            background_maintenance: false,
            seal_max_events: usize::MAX,
            hot_minutes_window_ms: window_ms,
            retention: Retention {
                minute_ms: minute_retention_ms,
                ..Retention::default()
            },
            ..StoreConfig::default()
        }
    }

    fn calls(ts: &[i64], model: &str) -> Batch {
        Batch::from_calls(
            ts.iter()
                .enumerate()
                .map(|(i, t)| LlmCall {
                    request_id: format!("{model}-{t}-{i}"),
                    timestamp_ms: *t,
                    model: model.into(),
                    endpoint: "chat".into(),
                    latency_ms: 10.0 + (*t % 97) as f64,
                    total_tokens: 5,
                    ..LlmCall::default()
                })
                .collect(),
        )
    }

    /// Every minute rollup of `range` read through `scan_rollups`, as
    /// (bucket, group, re-encoded rollup).
    fn scanned(
        store: &Store,
        range: TimeRange,
        filter: &RowFilter,
    ) -> Vec<(i64, GroupKey, Vec<u8>)> {
        let mut out = Vec::new();
        store
            .scan_rollups(Tier::Minute, range, filter, &mut |b, g, v| {
                out.push((b, g.clone(), v.to_rollup()?.encode()));
                Ok(())
            })
            .unwrap();
        out
    }

    /// The same, straight from the `rollup_minute` tree.
    fn in_sled(
        store: &Store,
        range: TimeRange,
        model: Option<&str>,
    ) -> Vec<(i64, GroupKey, Vec<u8>)> {
        let db = &store.core().db;
        let from = range.from_ms.max(store.coverage().minute_from_ms);
        let mut out = Vec::new();
        for kv in db.range(
            T::RollupMinute,
            ts_key(from).to_vec()..ts_key(range.to_ms).to_vec(),
        ) {
            let (k, v) = kv.unwrap();
            let (b, g) = crate::store::records::parse_rollup_key(&k).unwrap();
            if model.is_some_and(|m| g.0[0] != m) {
                continue;
            }
            out.push((b, g, Rollup::decode(&v).unwrap().encode()));
        }
        out.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        out
    }

    /// The mirror holds exactly sled's values from `from` on, and reads
    /// through it (ranges below, across and above `from`, filtered or not)
    /// give what sled holds. Returns `from`.
    fn check(store: &Store) -> i64 {
        let c = store.core();
        let st = c.state.read();
        let from = st.hot.from();
        let mut sled = Vec::new();
        for kv in c.db.range(T::RollupMinute, ts_key(from).to_vec()..) {
            let (k, v) = kv.unwrap();
            sled.push((k.to_vec(), v.to_vec()));
        }
        assert_eq!(st.hot.entries(), sled, "mirror != sled from {from}");
        assert_eq!(st.hot.bytes(), counted(&st.hot));
        // Each value keeps the prepared form of its own bytes.
        for (k, v) in st.hot.range(from, i64::MAX) {
            let p = v
                .prepared
                .as_deref()
                .expect("a stored value failed its checks");
            assert_eq!(Some(p), Prepared::of(&v.bytes).as_ref(), "prepared {k:?}");
        }
        drop(st);
        let all = TimeRange::new(i64::MIN / 2, i64::MAX / 2);
        let across = TimeRange::new(from.saturating_sub(7 * M), from.saturating_add(5 * M));
        let below = TimeRange::new(from.saturating_sub(20 * M), from);
        for r in [all, across, below] {
            assert_eq!(
                scanned(store, r, &RowFilter::default()),
                in_sled(store, r, None)
            );
            let only_b = RowFilter {
                equals: vec![(sextant_model::Dim::Model, vec!["b".into()])],
                ..RowFilter::default()
            };
            assert_eq!(scanned(store, r, &only_b), in_sled(store, r, Some("b")));
        }
        from
    }

    #[test]
    fn reads_through_the_mirror_equal_sled_across_seal_late_events_import_retention_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now = sextant_model::now_ms();
        let base = Tier::Minute.floor(now) - 3 * sextant_model::HOUR_MS;
        let window = 30 * M;
        let cfg = config(window, Some(60 * M));
        let mut store = Store::open(dir.path(), cfg.clone()).unwrap();
        // Empty: authoritative from the start.
        assert_eq!(check(&store), i64::MIN);

        // An hour of two models, sealed.
        let ts: Vec<i64> = (0..60).map(|i| base + i * M + 17 * i % M).collect();
        store.append(calls(&ts, "a")).unwrap();
        store.append(calls(&ts[..40], "b")).unwrap();
        store.seal(now).unwrap();
        let from = check(&store);
        assert_eq!(from, base + 59 * M - window + M);
        assert!(!scanned(
            &store,
            TimeRange::new(from, from + M),
            &RowFilter::default()
        )
        .is_empty());

        // Late events: into stored minutes inside and below `from`, a new
        // group inside, a new minute below.
        let late = [from + 3 * M + 1, from - 5 * M + 2, from - 40 * M];
        store.append(calls(&late, "a")).unwrap();
        store
            .append(calls(&[from + 10 * M + 5, from - 2 * M], "b"))
            .unwrap();
        store.append(calls(&[from + 4 * M], "c")).unwrap();
        store.seal(now).unwrap();
        assert_eq!(check(&store), from);

        // Newer minutes slide the window; `from` only grows.
        store
            .append(calls(&[base + 75 * M, base + 76 * M + 9], "b"))
            .unwrap();
        store.seal(now).unwrap();
        let from2 = check(&store);
        assert_eq!(from2, base + 76 * M - window + M);

        // Imported minutes, inside and below `from`.
        let mut r = Rollup::new(50);
        r.add_call(&calls(&[base], "b").calls[0]);
        let g = GroupKey(vec!["b".into(), "chat".into()]);
        store
            .import_rollups(
                Tier::Minute,
                [
                    (from2 + 2 * M, g.clone(), r.clone()),
                    (from2 - 9 * M, g.clone(), r.clone()),
                ],
            )
            .unwrap();
        assert_eq!(check(&store), from2);
        store
            .import_rollups(Tier::Minute, [(base + 80 * M, g.clone(), r.clone())])
            .unwrap();
        let from3 = check(&store);
        assert_eq!(from3, base + 80 * M - window + M);

        // Retention cuts inside the mirror's window.
        let cut = from3 + 4 * M;
        store.apply_retention(cut + 60 * M).unwrap();
        assert_eq!(store.coverage().minute_from_ms, cut);
        assert_eq!(check(&store), cut);
        assert!(store
            .core()
            .state
            .read()
            .hot
            .entries()
            .iter()
            .all(|(k, _)| bucket_of(k) >= cut));

        // Reopened: loaded from sled, the window ending at the newest minute.
        drop(store);
        store = Store::open(dir.path(), cfg.clone()).unwrap();
        assert_eq!(check(&store), base + 80 * M - window + M);
        store
            .append(calls(&[base + 81 * M, from3 + M], "a"))
            .unwrap();
        store.seal(now).unwrap();
        check(&store);

        // The same answers with the mirror disabled.
        let want = scanned(
            &store,
            TimeRange::new(i64::MIN / 2, i64::MAX / 2),
            &RowFilter::default(),
        );
        drop(store);
        let store = Store::open(dir.path(), config(0, Some(60 * M))).unwrap();
        assert_eq!(check(&store), i64::MAX);
        assert_eq!(
            scanned(
                &store,
                TimeRange::new(i64::MIN / 2, i64::MAX / 2),
                &RowFilter::default()
            ),
            want
        );
    }
}
