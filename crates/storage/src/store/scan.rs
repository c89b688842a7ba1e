//! Reading an unaligned piece of a rollup-served query ("a raw part", e.g.
//! the partial minutes at a summary window's edges) without reading every
//! raw row in it.
//!
//! Each minute bucket the part touches is answered **per source** — the
//! sealed data, the head being sealed, the head — from that source's minute
//! rollups when every event the source holds in the bucket (calls, quality
//! and feedback) lies inside the part, and from the source's raw rows in the
//! part otherwise. A source's minute rollup holds exactly its events in the
//! bucket, so in the first case it equals the raw rows it replaces; counts
//! and sums are the same either way (raw rows are folded with the rollups'
//! rounding), only percentiles come from digests instead of raw samples.
//!
//! Why it matters: the load tool stamps every event "now", so the current
//! minute can hold millions of events; the window's newest edge is then
//! answered from a few rollups instead of decoding millions of rows.
//!
//! **Invariant:** the bounds are taken, the rollups and quality/feedback
//! rows read, and the raw calls' view (segment list, head chunks) taken
//! under one state read lock, so they describe the same state (a seal
//! commits under the write lock); the raw calls of that view are read after
//! the lock is released (see `CallScan`).
//!
//! Bounds per source: the head keeps each minute's earliest and latest event
//! timestamp ([`Head::minute_bounds`]); for sealed data, a segment
//! overlapping the bucket bounds its rows there by its own min/max
//! timestamp clamped to the bucket (conservative: a segment straddling the
//! bucket's start makes the bucket's sealed rows "maybe earlier"), and
//! sealed quality/feedback rows are keyed by timestamp (first and last key
//! in the bucket). Only buckets inside both raw and minute retention are
//! answered from rollups.

use std::sync::Arc;

use sextant_model::{Feedback, LlmCall, Quality, Tier, TimeRange, MINUTE_MS};

use crate::api::{GroupKey, RequestRef, RowFilter};
use crate::db::{ts_from_key, ts_key, T};
use crate::error::{Result, StorageError};
use crate::rollup::Rollup;
use crate::seg_files::Pinned;
use crate::store::head::Head;
use crate::store::read::group_matches;
use crate::store::records::{decode_row, parse_rollup_key};
use crate::store::sealed;
use crate::store::{Core, State};

/// Receives what [`crate::Store::read_part`] reads. Rollups, quality and
/// feedback are delivered under the store's read lock, raw calls after it
/// is released: implementations must not call back into the store.
pub trait PartSink {
    /// A minute rollup (`bucket_ms` is the bucket's start, which may lie
    /// before the part's start: the rollup then holds only events inside it).
    fn rollup(&mut self, bucket_ms: i64, group: &GroupKey, rollup: &Rollup);
    /// A raw call inside the part matching the filter.
    fn call(&mut self, call: &LlmCall);
    /// A raw quality row inside the part, with its call's place if known.
    fn quality(&mut self, quality: &Quality, call: Option<&RequestRef>);
    /// A raw feedback row inside the part, with its call's place if known.
    fn feedback(&mut self, feedback: &Feedback, call: Option<&RequestRef>);
}

/// Per source: the buckets answered from its rollups, the ranges from raw rows.
#[derive(Debug, Default)]
struct Route {
    rollups: Vec<i64>,
    raw: Vec<TimeRange>,
}

impl Route {
    fn decide(&mut self, bounds: Option<Option<(i64, i64)>>, bucket: i64, inner: TimeRange) {
        match bounds {
            // Eligible, and nothing of this source in the bucket.
            Some(None) => {}
            Some(Some((lo, hi))) if lo >= inner.from_ms && hi < inner.to_ms => {
                self.rollups.push(bucket)
            }
            _ => match self.raw.last_mut() {
                Some(last) if last.to_ms == inner.from_ms => last.to_ms = inner.to_ms,
                _ => self.raw.push(inner),
            },
        }
    }

    fn raw_contains(&self, ts: i64) -> bool {
        self.raw.iter().any(|r| r.contains(ts))
    }
}

/// The head being sealed (if any), then the head.
pub(crate) fn heads_of(st: &State) -> impl Iterator<Item = &Head> {
    st.sealing
        .as_deref()
        .into_iter()
        .chain(std::iter::once(&st.head))
}

/// A head's call chunks.
type Chunks = Vec<Arc<Vec<LlmCall>>>;

/// Calls a read will scan outside the state lock (see `store/mod.rs`,
/// "no double counting"): the segments the state listed and the heads'
/// chunks, all immutable once taken. Only retention may delete one of the
/// segments meanwhile; its rows are then past raw retention and skipped.
#[derive(Debug)]
pub(crate) struct CallScan {
    /// Disjoint, ascending ranges to read from segments.
    sealed: Vec<TimeRange>,
    /// (key, id, its file held open) of every segment overlapping `sealed`.
    segments: Vec<(Vec<u8>, u64, Pinned)>,
    /// Per head with something to read: its chunks and ranges.
    heads: Vec<(Chunks, Vec<TimeRange>)>,
}

fn widen(b: &mut Option<(i64, i64)>, lo: i64, hi: i64) {
    *b = Some(match *b {
        Some((l, h)) => (l.min(lo), h.max(hi)),
        None => (lo, hi),
    });
}

impl Core {
    /// (earliest, latest) timestamp that sealed data may hold in
    /// `[bucket, end)`; `None` when it holds nothing there.
    fn sealed_bounds(&self, st: &State, bucket: i64, end: i64) -> Result<Option<(i64, i64)>> {
        let mut b = None;
        for m in st
            .segments
            .range(ts_key(bucket).to_vec()..)
            .map(|(_, s)| &s.meta)
        {
            if m.rows == 0 || m.min_ts >= end || m.max_ts < bucket {
                continue;
            }
            widen(&mut b, m.min_ts.max(bucket), m.max_ts.min(end - 1));
        }
        for t in [T::Quality, T::Feedback] {
            let mut it = self
                .db
                .range(t, ts_key(bucket).to_vec()..ts_key(end).to_vec());
            for kv in [it.next(), it.next_back()].into_iter().flatten() {
                let (k, _) = kv?;
                let ts = ts_from_key(&k).ok_or_else(|| {
                    StorageError::decode(
                        t.name(),
                        &k,
                        crate::error::CodecError::new("row key", "truncated"),
                    )
                })?;
                widen(&mut b, ts, ts);
            }
        }
        Ok(b)
    }

    pub(crate) fn read_part(
        &self,
        range: TimeRange,
        filter: &RowFilter,
        sink: &mut dyn PartSink,
    ) -> Result<()> {
        let st = self.state.read_recursive();
        let r = TimeRange::new(range.from_ms.max(st.wm.raw_from), range.to_ms);
        if r.is_empty() {
            return Ok(());
        }
        let rollups_from = st.wm.raw_from.max(st.wm.minute_from);
        let heads: Vec<&Head> = heads_of(&st).collect();
        let mut sealed = Route::default();
        let mut head_routes: Vec<Route> = heads.iter().map(|_| Route::default()).collect();
        let mut bucket = Tier::Minute.floor(r.from_ms);
        while bucket < r.to_ms {
            let end = bucket.saturating_add(MINUTE_MS);
            let inner = TimeRange::new(bucket.max(r.from_ms), end.min(r.to_ms));
            let eligible = bucket >= rollups_from && end > bucket;
            let sb = if eligible {
                Some(self.sealed_bounds(&st, bucket, end)?)
            } else {
                None
            };
            sealed.decide(sb, bucket, inner);
            for (h, route) in heads.iter().zip(&mut head_routes) {
                route.decide(eligible.then(|| h.minute_bounds(bucket)), bucket, inner);
            }
            if end <= bucket {
                break;
            }
            bucket = end;
        }

        // Rollups.
        for &b in &sealed.rollups {
            let t = T::RollupMinute;
            let end = b.saturating_add(MINUTE_MS);
            for kv in self.db.range(t, ts_key(b).to_vec()..ts_key(end).to_vec()) {
                let (k, v) = kv?;
                let Some((bk, group)) = parse_rollup_key(&k) else {
                    return Err(StorageError::decode(
                        t.name(),
                        &k,
                        crate::error::CodecError::new("rollup key", "unparsable"),
                    ));
                };
                if bk != b || !group_matches(&self.dims, filter, &group) {
                    continue;
                }
                let rollup =
                    Rollup::decode(&v).map_err(|e| StorageError::decode(t.name(), &k, e))?;
                sink.rollup(b, &group, &rollup);
            }
        }
        for (h, route) in heads.iter().zip(&head_routes) {
            if route.rollups.is_empty() {
                continue;
            }
            for ((m, g), rollup) in h.rollups() {
                if route.rollups.contains(m) && group_matches(&self.dims, filter, g) {
                    sink.rollup(*m, g, rollup);
                }
            }
        }

        // Raw quality and feedback rows (their request lookups need the
        // state): sealed, then the heads'.
        for part in &sealed.raw {
            for t in [T::Quality, T::Feedback] {
                let keys = ts_key(part.from_ms).to_vec()..ts_key(part.to_ms).to_vec();
                for kv in self.db.range(t, keys) {
                    let (k, v) = kv?;
                    let err = |e| StorageError::decode(t.name(), &k, e);
                    if t == T::Quality {
                        let q: Quality = decode_row(t.name(), &v).map_err(err)?;
                        let rr = self.lookup_request(&st, &q.request_id)?;
                        sink.quality(&q, rr.as_ref());
                    } else {
                        let f: Feedback = decode_row(t.name(), &v).map_err(err)?;
                        let rr = self.lookup_request(&st, &f.request_id)?;
                        sink.feedback(&f, rr.as_ref());
                    }
                }
            }
        }
        for (h, route) in heads.iter().zip(&head_routes) {
            for (_, q) in &h.quality {
                if route.raw_contains(q.timestamp_ms) {
                    let rr = self.lookup_request(&st, &q.request_id)?;
                    sink.quality(q, rr.as_ref());
                }
            }
            for (_, f) in &h.feedback {
                if route.raw_contains(f.timestamp_ms) {
                    let rr = self.lookup_request(&st, &f.request_id)?;
                    sink.feedback(f, rr.as_ref());
                }
            }
        }

        // Raw calls: taken now, read after the lock is released.
        let scan = self.call_scan(
            &st,
            sealed.raw,
            head_routes.into_iter().map(|r| r.raw).collect(),
        );
        drop(heads);
        drop(st);
        self.run_call_scan(&scan, filter, &mut |c| sink.call(c))
    }

    /// The calls of `st` to read: the segments overlapping `sealed`, and
    /// each head's chunks (in [`heads_of`] order) with its ranges. Taken
    /// under the state lock; read by [`Core::run_call_scan`] without it.
    pub(crate) fn call_scan(
        &self,
        st: &State,
        sealed: Vec<TimeRange>,
        head_ranges: Vec<Vec<TimeRange>>,
    ) -> CallScan {
        let mut segments: Vec<(Vec<u8>, u64, Pinned)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for part in &sealed {
            for (key, s) in st.segments.range(ts_key(part.from_ms).to_vec()..) {
                if s.meta.min_ts >= part.to_ms || !seen.insert(s.meta.id) {
                    continue;
                }
                // Listed under the state lock: its file is referenced and
                // cannot be deleted before this handle is taken.
                let pinned = s.loc.and_then(|l| self.segs.pin(l.file));
                segments.push((key.clone(), s.meta.id, pinned));
            }
        }
        let heads = heads_of(st)
            .zip(head_ranges)
            .filter(|(_, ranges)| !ranges.is_empty())
            .map(|(h, ranges)| (h.calls.chunks().to_vec(), ranges))
            .collect();
        CallScan {
            sealed,
            segments,
            heads,
        }
    }

    /// Reads a [`CallScan`]: `f` gets every call in its ranges matching
    /// `filter`. No state lock is held; the segment codec's lock is taken
    /// per segment.
    pub(crate) fn run_call_scan(
        &self,
        scan: &CallScan,
        filter: &RowFilter,
        f: &mut dyn FnMut(&LlmCall),
    ) -> Result<()> {
        let in_any = |ranges: &[TimeRange], ts: i64| ranges.iter().any(|r| r.contains(ts));
        if let (Some(first), Some(last)) = (scan.sealed.first(), scan.sealed.last()) {
            let hull = TimeRange::new(first.from_ms, last.to_ms);
            for (key, id, pinned) in &scan.segments {
                let read = sealed::read(&self.db, &self.segs, key, pinned).map_err(|e| {
                    StorageError::ReadSegment {
                        segment_id: *id,
                        source: e,
                    }
                })?;
                // Gone: retention deleted it after the scan was taken.
                let Some(bytes) = read else {
                    continue;
                };
                let calls = self
                    .codec
                    .read()
                    .decode(&bytes, hull, filter)
                    .map_err(|e| StorageError::ReadSegment {
                        segment_id: *id,
                        source: e,
                    })?;
                for c in &calls {
                    if in_any(&scan.sealed, c.timestamp_ms) && filter.matches(c) {
                        f(c);
                    }
                }
            }
        }
        for (chunks, ranges) in &scan.heads {
            for c in chunks.iter().flat_map(|c| c.iter()) {
                if in_any(ranges, c.timestamp_ms) && filter.matches(c) {
                    f(c);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreConfig};
    use sextant_model::Batch;

    /// Tallies what a part delivers, and through which path.
    #[derive(Debug, Default, PartialEq)]
    struct Tally {
        calls: u64,
        latency_sum_us: u128,
        quality: u64,
        feedback: u64,
        rollups: u64,
        raw_calls: u64,
    }

    impl PartSink for Tally {
        fn rollup(&mut self, _b: i64, _g: &GroupKey, r: &Rollup) {
            self.calls += r.count;
            self.latency_sum_us += r.latency_sum_us;
            self.quality += r.quality_count;
            self.feedback += r.feedback_count;
            self.rollups += 1;
        }
        fn call(&mut self, c: &LlmCall) {
            self.calls += 1;
            self.latency_sum_us += (c.latency_ms * 1e3).round() as u128;
            self.raw_calls += 1;
        }
        fn quality(&mut self, _q: &Quality, _r: Option<&RequestRef>) {
            self.quality += 1;
        }
        fn feedback(&mut self, _f: &Feedback, _r: Option<&RequestRef>) {
            self.feedback += 1;
        }
    }

    /// A store that seals and maintains only when a test says so.
    fn manual_store(dir: &std::path::Path) -> Store {
        let config = StoreConfig {
            background_maintenance: false,
            seal_max_events: usize::MAX,
            ..StoreConfig::default()
        };
        Store::open(dir, config).unwrap()
    }

    fn call(id: String, ts: i64, model: &str, latency_ms: f64) -> LlmCall {
        LlmCall {
            request_id: id,
            timestamp_ms: ts,
            model: model.into(),
            endpoint: "chat".into(),
            latency_ms,
            ..LlmCall::default()
        }
    }

    /// Raw calls (sealed and in the head) reach the callback with the state
    /// lock released: the writer could take it.
    #[test]
    fn raw_calls_are_read_without_the_state_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = manual_store(dir.path());
        let b = Tier::Minute.floor(sextant_model::now_ms()) - 5 * MINUTE_MS;
        let calls = |ids: std::ops::Range<i64>| {
            let v = ids
                .map(|i| call(format!("r{i}"), b + i * 100, "m", 1.0))
                .collect();
            Batch::from_calls(v)
        };
        store.append(calls(0..50)).unwrap();
        store.seal(0).unwrap();
        store.append(calls(50..100)).unwrap();
        let core = store.core();
        let (mut seen, mut free) = (0, 0);
        store
            .scan_calls(
                TimeRange::new(b, b + MINUTE_MS),
                &RowFilter::default(),
                &mut |_| {
                    seen += 1;
                    free += usize::from(core.state.try_write().is_some());
                },
            )
            .unwrap();
        assert_eq!((seen, free), (100, 100));
        // A part whose rows straddle its edge: read as rows, also unlocked.
        let mut t = Locked {
            core,
            calls: 0,
            free: 0,
        };
        store
            .read_part(
                TimeRange::new(b + 50, b + 9_850),
                &RowFilter::default(),
                &mut t,
            )
            .unwrap();
        assert_eq!((t.calls, t.free), (98, 98));
    }

    struct Locked<'a> {
        core: &'a Core,
        calls: usize,
        free: usize,
    }

    impl PartSink for Locked<'_> {
        fn rollup(&mut self, _b: i64, _g: &GroupKey, _r: &Rollup) {}
        fn call(&mut self, _c: &LlmCall) {
            self.calls += 1;
            self.free += usize::from(self.core.state.try_write().is_some());
        }
        fn quality(&mut self, _q: &Quality, _r: Option<&RequestRef>) {}
        fn feedback(&mut self, _f: &Feedback, _r: Option<&RequestRef>) {}
    }

    /// Every range, aligned or not, gets exactly its events — whether a
    /// minute's sealed part or head part is answered from rollups or rows —
    /// and a minute whose events all lie inside the range is read from
    /// rollups, one whose events straddle the range's edge from rows.
    #[test]
    fn parts_get_exactly_their_events_through_rollups_or_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = manual_store(dir.path());
        let b0 = Tier::Minute.floor(sextant_model::now_ms()) - 20 * MINUTE_MS;
        let (b1, b2) = (b0 + MINUTE_MS, b0 + 2 * MINUTE_MS);
        let s = 1_000;
        let mut calls = Vec::new();
        let mut quality = Vec::new();
        let mut feedback = Vec::new();
        let mut n = 0;
        let mut batch = |at: &[i64], q: &[i64], f: &[i64], calls: &mut Vec<LlmCall>| {
            let mut b = Batch::default();
            for &ts in at {
                n += 1;
                let c = call(
                    format!("r{n}"),
                    ts,
                    ["a", "b"][n % 2],
                    1.0 + n as f64 * 0.37,
                );
                b.calls.push(c.clone());
                calls.push(c);
            }
            for &ts in q {
                let x = Quality {
                    request_id: "r1".into(),
                    timestamp_ms: ts,
                    response_length: 5,
                    ..Quality::default()
                };
                b.quality.push(x.clone());
                quality.push(x);
            }
            for &ts in f {
                let x = Feedback {
                    request_id: "r2".into(),
                    timestamp_ms: ts,
                    rating: 1,
                    comment: None,
                };
                b.feedback.push(x.clone());
                feedback.push(x);
            }
            store.append(b).unwrap();
        };
        // Sealed: b0 spread over the minute, b1 within [20 s, 40 s].
        let sealed: Vec<i64> = (0..20)
            .map(|i| b0 + 5 * s + i * 2_500)
            .chain((0..10).map(|i| b1 + 20 * s + i * 2 * s))
            .collect();
        batch(&sealed, &[b1 + 30 * s], &[b0 + 50 * s], &mut calls);
        store.seal(0).unwrap();
        // Head: b1 at 25 s, b2 within [10 s, 50 s].
        let head: Vec<i64> = std::iter::once(b1 + 25 * s)
            .chain((0..9).map(|i| b2 + 10 * s + i * 5 * s))
            .collect();
        batch(&head, &[b2 + 15 * s], &[b1 + 39 * s], &mut calls);

        let read = |from: i64, to: i64| {
            let mut t = Tally::default();
            store
                .read_part(TimeRange::new(from, to), &RowFilter::default(), &mut t)
                .unwrap();
            t
        };
        let want = |from: i64, to: i64| {
            let r = TimeRange::new(from, to);
            let mut t = Tally::default();
            for c in calls.iter().filter(|c| r.contains(c.timestamp_ms)) {
                t.calls += 1;
                t.latency_sum_us += (c.latency_ms * 1e3).round() as u128;
            }
            t.quality = quality
                .iter()
                .filter(|x| r.contains(x.timestamp_ms))
                .count() as u64;
            t.feedback = feedback
                .iter()
                .filter(|x| r.contains(x.timestamp_ms))
                .count() as u64;
            t
        };
        let mut cuts = vec![b0 - MINUTE_MS, b0, b1, b2, b2 + 3 * MINUTE_MS];
        for base in [b0, b1, b2] {
            for off in [1, 5, 6, 19, 20, 21, 25, 26, 39, 40, 41, 50, 51, 59] {
                cuts.push(base + off * s);
            }
        }
        cuts.sort_unstable();
        for (i, &from) in cuts.iter().enumerate() {
            for &to in &cuts[i + 1..] {
                let (got, want) = (read(from, to), want(from, to));
                let sums = |t: &Tally| (t.calls, t.latency_sum_us, t.quality, t.feedback);
                assert_eq!(
                    sums(&got),
                    sums(&want),
                    "[{}, {}) s",
                    (from - b0) / s,
                    (to - b0) / s
                );
            }
        }
        // b1's sealed events lie in [20 s, 40 s], its head events at 25 s
        // and 39 s: [b1, 45 s) is answered from rollups alone.
        let t = read(b1, b1 + 45 * s);
        assert_eq!((t.raw_calls, t.calls, t.feedback, t.quality), (0, 11, 1, 1));
        assert!(t.rollups >= 2, "{t:?}");
        // The sealed segment starts in b0, so its rows in b1 may start at
        // b1 (bounds are per segment): [15 s, 45 s) reads them as rows.
        let t = read(b1 + 15 * s, b1 + 45 * s);
        assert_eq!(
            (t.raw_calls, t.calls, t.feedback, t.quality),
            (10, 11, 1, 1)
        );
        // [21 s, 45 s) cuts the sealed events: those are read as rows, the
        // head's (all inside) from its rollup.
        let t = read(b1 + 21 * s, b1 + 45 * s);
        assert_eq!((t.raw_calls, t.calls), (9, 10));
        // b2 (head only) spans [10 s, 50 s]: a range ending at 50 s reads rows.
        let t = read(b2 + 10 * s, b2 + 50 * s);
        assert_eq!((t.raw_calls, t.calls), (8, 8));
        let t = read(b2 + 10 * s, b2 + 51 * s);
        assert_eq!((t.raw_calls, t.calls), (0, 9));
    }
}
