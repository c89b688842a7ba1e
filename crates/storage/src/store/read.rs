//! Reads: rollups, raw scans, traces, verify.
//!
//! **Invariant:** every read takes the state read lock once and takes its
//! view of the head, the head being sealed and the stored trees under it,
//! so it sees each acknowledged event exactly once (see `store/mod.rs`).
//! Rollup reads take only refcounted handles to the stored values and
//! copies of the heads' contributions under the lock
//! ([`Core::snapshot_rollups`]), then release it and decode while streaming
//! to the caller's callback ([`RollupSnapshot::stream`]): a seal or flush
//! that commits after the lock is released cannot change what the snapshot
//! holds. Raw call scans likewise read that view's rows after releasing the
//! lock (`store/scan.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sextant_model::{Dim, Feedback, LlmCall, Quality, Span, Tier, TimeRange};

use crate::api::{GroupKey, RequestRef, RowFilter, TraceSummary, VerifyReport};
use crate::db::{ts_from_key, ts_key, u64_from, Bytes, T};
use crate::error::hex;
use crate::error::{Result, StorageError};
use crate::rollup::{Prepared, Rollup, RollupView};
use crate::seg_files::Location;
use crate::store::head::Head;
use crate::store::records::{
    decode_request, decode_row, decode_span, decode_wal, parse_rollup_key, parse_span_time_key,
    trace_prefix, SegMeta,
};
use crate::store::{requests, Core, State};

/// Whether rollup group `g` passes `filter` (a dim the rollups are not
/// grouped by does not restrict them).
pub(crate) fn group_matches(dims: &[Dim], filter: &RowFilter, g: &GroupKey) -> bool {
    filter
        .equals
        .iter()
        .all(|(dim, values)| match dims.iter().position(|d| d == dim) {
            Some(i) => g.0.get(i).is_some_and(|v| values.iter().any(|x| x == v)),
            None => true,
        })
}

/// The tree holding `tier`'s rollups.
fn rollup_tree(tier: Tier) -> T {
    match tier {
        Tier::Minute => T::RollupMinute,
        Tier::Hour => T::RollupHour,
        Tier::Day => T::RollupDay,
        // Tier::Week (`Tier` is non-exhaustive).
        _ => T::RollupWeek,
    }
}

/// The group strings of a rollup key after its 8 timestamp bytes, as raw
/// bytes (UTF-8 once [`key_is_valid`] said so); stops at the first
/// malformed one.
fn group_strs(mut b: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (len, rest) = b.split_first_chunk::<2>()?;
        let n = u16::from_be_bytes(*len) as usize;
        let s = rest.get(..n)?;
        b = &rest[n..];
        Some(s)
    })
}

/// True when `k` is what `records::rollup_key` writes (what
/// `parse_rollup_key` accepts), without allocating.
fn key_is_valid(k: &[u8]) -> bool {
    let Some(mut b) = k.get(8..) else {
        return false;
    };
    while !b.is_empty() {
        let Some((len, rest)) = b.split_first_chunk::<2>() else {
            return false;
        };
        let n = u16::from_be_bytes(*len) as usize;
        let Some(s) = rest.get(..n) else {
            return false;
        };
        if std::str::from_utf8(s).is_err() {
            return false;
        }
        b = &rest[n..];
    }
    true
}

/// What [`Core::snapshot_rollups`] took under the lock.
#[derive(Debug)]
pub(crate) struct RollupSnapshot {
    tree: T,
    /// `(bucket, group index, value)` of stored rollups passing the
    /// filter, in key order (keys are dropped as they are read: an error
    /// names a key rebuilt from bucket and group, which gives the same bytes).
    /// Values from the hot mirror carry their [`Prepared`] form.
    stored: Vec<(i64, u32, Bytes, Option<Arc<Prepared>>)>,
    groups: Groups,
    /// The heads' contributions by (bucket, group), merged per key.
    head: BTreeMap<(i64, GroupKey), Rollup>,
}

impl RollupSnapshot {
    /// Calls `f` for every (bucket, group) of the snapshot in (bucket,
    /// group) order, stored rollups decoded lazily; a key both stored and in
    /// a head is handed out once, the head's contribution merged into the
    /// stored rollup. Stops at the first error (`f`'s or a decode error).
    pub(crate) fn stream(self, f: &mut RollupViewFn<'_>) -> Result<()> {
        // Key order is (bucket, length-prefixed strings): hand out each
        // bucket's groups in `GroupKey` order (already so when all have one
        // length). `order` holds positions in `stored` in that order.
        // Buckets repeat the same groups in the same key order, so a run's
        // permutation is worked out once and reused while they repeat.
        let rank = self.groups.ranks();
        let mut order: Vec<u32> = Vec::with_capacity(self.stored.len());
        let (mut run_groups, mut perm) = (Vec::new(), Vec::new());
        let mut i = 0;
        while i < self.stored.len() {
            let ts = self.stored[i].0;
            let mut j = i + 1;
            while j < self.stored.len() && self.stored[j].0 == ts {
                j += 1;
            }
            let run = &self.stored[i..j];
            if run.is_sorted_by_key(|x| rank[x.1 as usize]) {
                order.extend(i as u32..j as u32);
            } else {
                if !run.iter().map(|x| x.1).eq(run_groups.iter().copied()) {
                    run_groups.clear();
                    run_groups.extend(run.iter().map(|x| x.1));
                    perm.clear();
                    perm.extend(0..run.len() as u32);
                    perm.sort_unstable_by_key(|k| rank[run_groups[*k as usize] as usize]);
                }
                order.extend(perm.iter().map(|k| i as u32 + k));
            }
            i = j;
        }
        let tree = self.tree.name();
        let groups = &self.groups.list;
        let mut head = self.head.into_iter().peekable();
        let mut key = Vec::new();
        for p in order {
            let (bucket, g, v, prepared) = &self.stored[p as usize];
            let (bucket, group) = (*bucket, &groups[*g as usize].1);
            // Head-only keys ordered before this one.
            while let Some(((hb, hg), _)) = head.peek() {
                if (*hb, hg) < (bucket, group) {
                    let ((hb, hg), r) = head.next().expect("peeked");
                    f(hb, &hg, &RollupView::of(&r))?;
                } else {
                    break;
                }
            }
            // The key only names errors (the view keeps a reference to it).
            key.clear();
            key.extend_from_slice(&groups[*g as usize].0);
            key[..8].copy_from_slice(&ts_key(bucket));
            let view = RollupView::with_prepared(tree, &key, v, prepared.as_deref())?;
            if head
                .peek()
                .is_some_and(|((hb, hg), _)| *hb == bucket && hg == group)
            {
                // A late event into a bucket already stored: decode it whole
                // and merge, as the two would be merged when sealed.
                let (_, r) = head.next().expect("peeked");
                let mut merged = view.to_rollup()?;
                merged.merge(&r);
                f(bucket, group, &RollupView::of(&merged))?;
            } else {
                f(bucket, group, &view)?;
            }
        }
        for ((hb, hg), r) in head {
            f(hb, &hg, &RollupView::of(&r))?;
        }
        Ok(())
    }
}

/// The callback of a rollup read.
pub(crate) type RollupViewFn<'a> = dyn FnMut(i64, &GroupKey, &RollupView<'_>) -> Result<()> + 'a;

/// The groups of the rollup keys read so far, so a read allocates one
/// `GroupKey` per group, not one per rollup. Buckets repeat the same groups
/// in the same order, so the entry after the last hit is tried first.
#[derive(Debug, Default)]
struct Groups {
    /// A zeroed timestamp followed by the key's group suffix, and its group.
    list: Vec<(Box<[u8]>, GroupKey)>,
    index: HashMap<Box<[u8]>, u32>,
    next: usize,
}

impl Groups {
    /// The index of a group already seen, by its key suffix (the key
    /// after its 8 timestamp bytes).
    fn known(&mut self, suffix: &[u8]) -> Option<u32> {
        let i = match self.list.get(self.next) {
            Some((s, _)) if s[8..] == *suffix => self.next as u32,
            _ => *self.index.get(suffix)?,
        };
        self.next = i as usize + 1;
        Some(i)
    }

    /// The index of the group of the (validated) rollup key `k`, added if new.
    fn id(&mut self, tree: &'static str, k: &[u8]) -> Result<u32> {
        let suffix = &k[8..];
        if let Some(i) = self.known(suffix) {
            return Ok(i);
        }
        let Some((_, g)) = parse_rollup_key(k) else {
            return Err(StorageError::decode(
                tree,
                k,
                crate::error::CodecError::new("rollup key", "unparsable"),
            ));
        };
        let mut prefixed = vec![0u8; 8];
        prefixed.extend_from_slice(suffix);
        self.list.push((prefixed.into(), g));
        self.index.insert(suffix.into(), self.list.len() as u32 - 1);
        self.next = self.list.len();
        Ok(self.list.len() as u32 - 1)
    }

    /// Each group's rank in `GroupKey` order, by index.
    fn ranks(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.list.len() as u32).collect();
        order.sort_unstable_by(|a, b| self.list[*a as usize].1.cmp(&self.list[*b as usize].1));
        let mut rank = vec![0; order.len()];
        for (r, i) in order.into_iter().enumerate() {
            rank[i as usize] = r as u32;
        }
        rank
    }
}

fn heads(st: &State) -> impl Iterator<Item = &Head> {
    st.sealing
        .as_deref()
        .into_iter()
        .chain(std::iter::once(&st.head))
}

impl Core {
    /// What a rollup read needs from under the state lock: the stored
    /// values of the range (cheap refcounted handles) and the heads'
    /// contributions (copied), taken together so that each acknowledged event
    /// is in exactly one of them. Decoding happens after the lock is released.
    pub(crate) fn snapshot_rollups(
        &self,
        tier: Tier,
        range: TimeRange,
        filter: &RowFilter,
    ) -> Result<RollupSnapshot> {
        let t = rollup_tree(tier);
        let mut snap = RollupSnapshot {
            tree: t,
            stored: Vec::new(),
            groups: Groups::default(),
            head: BTreeMap::new(),
        };
        // Positions (in the key) of the filtered dims; a filter on a dim the
        // rollups are not grouped by does not restrict them.
        let wanted: Vec<(usize, &Vec<String>)> = filter
            .equals
            .iter()
            .filter_map(|(dim, values)| Some((self.dims.iter().position(|d| d == dim)?, values)))
            .collect();
        let st = self.state.read_recursive();
        let wm = st.wm;
        let (lo, hi) = match tier {
            Tier::Minute => (range.from_ms.max(wm.minute_from), range.to_ms),
            Tier::Hour => (
                range.from_ms.max(wm.hour_from),
                range.to_ms.min(wm.hour_until),
            ),
            Tier::Day => (
                range.from_ms.max(wm.day_from),
                range.to_ms.min(wm.day_until),
            ),
            // Tier::Week (`Tier` is non-exhaustive).
            _ => (
                range.from_ms.max(wm.week_from),
                range.to_ms.min(wm.week_until),
            ),
        };
        if hi <= lo {
            return Ok(snap);
        }
        // Minute buckets from `hot.from()` on come from the in-memory
        // mirror, which holds exactly what the tree holds there
        // (`store/hot.rs`); older ones (and other tiers) from the tree.
        let hot_from = if tier == Tier::Minute {
            st.hot.from()
        } else {
            i64::MAX
        };
        let (sled_hi, hot_lo) = (hi.min(hot_from), lo.max(hot_from));
        if hot_lo < hi {
            snap.stored.reserve(st.hot.estimate(hot_lo, hi));
        }
        // Whether each group (by index in `snap.groups`) passes the filter.
        let mut passes: Vec<bool> = Vec::new();
        let mut take = |k: &[u8], v: Bytes, prepared: Option<Arc<Prepared>>| -> Result<()> {
            // A key whose group suffix was seen before is valid, and its
            // filter verdict known: keys are validated once per group.
            let g = match k.get(8..).and_then(|s| snap.groups.known(s)) {
                Some(g) => g,
                None => {
                    if !key_is_valid(k) {
                        return Err(StorageError::decode(
                            t.name(),
                            k,
                            crate::error::CodecError::new("rollup key", "unparsable"),
                        ));
                    }
                    let g = snap.groups.id(t.name(), k)?;
                    if g as usize == passes.len() {
                        passes.push(wanted.iter().all(|(i, values)| {
                            group_strs(&k[8..])
                                .nth(*i)
                                .is_some_and(|v| values.iter().any(|x| x.as_bytes() == v))
                        }));
                    }
                    g
                }
            };
            if passes[g as usize] {
                let bucket = ts_from_key(k).unwrap_or_default();
                snap.stored.push((bucket, g, v, prepared));
            }
            Ok(())
        };
        if lo < sled_hi {
            for kv in self
                .db
                .range(t, ts_key(lo).to_vec()..ts_key(sled_hi).to_vec())
            {
                let (k, v) = kv?;
                take(&k, v, None)?;
            }
        }
        if hot_lo < hi {
            for (k, v) in st.hot.range(hot_lo, hi) {
                take(k, v.bytes.clone(), v.prepared.clone())?;
            }
        }
        for h in heads(&st) {
            for ((m, g), r) in h.rollups() {
                let b = tier.floor(*m);
                if b < lo || b >= hi || !group_matches(&self.dims, filter, g) {
                    continue;
                }
                snap.head
                    .entry((b, g.clone()))
                    .or_insert_with(|| Rollup::new(self.digest_size(tier)))
                    .merge(r);
            }
        }
        Ok(snap)
    }

    pub(crate) fn scan_calls(
        &self,
        range: TimeRange,
        filter: &RowFilter,
        f: &mut dyn FnMut(&LlmCall),
    ) -> Result<()> {
        // The view is taken under the lock; the rows are read without it,
        // so a long scan never holds the writer out.
        let scan = {
            let st = self.state.read_recursive();
            let r = TimeRange::new(range.from_ms.max(st.wm.raw_from), range.to_ms);
            if r.is_empty() {
                return Ok(());
            }
            let n = heads(&st).count();
            self.call_scan(&st, vec![r], vec![vec![r]; n])
        };
        self.run_call_scan(&scan, filter, f)
    }

    pub(crate) fn scan_quality(
        &self,
        range: TimeRange,
        f: &mut dyn FnMut(&Quality, Option<&RequestRef>),
    ) -> Result<()> {
        self.scan_rows(
            T::Quality,
            range,
            |h| &h.quality,
            |q: &Quality| &q.request_id,
            |q| q.timestamp_ms,
            f,
        )
    }

    pub(crate) fn scan_feedback(
        &self,
        range: TimeRange,
        f: &mut dyn FnMut(&Feedback, Option<&RequestRef>),
    ) -> Result<()> {
        self.scan_rows(
            T::Feedback,
            range,
            |h| &h.feedback,
            |x: &Feedback| &x.request_id,
            |x| x.timestamp_ms,
            f,
        )
    }

    fn scan_rows<R: for<'de> serde::Deserialize<'de>>(
        &self,
        t: T,
        range: TimeRange,
        rows: impl Fn(&Head) -> &Vec<(Vec<u8>, R)>,
        id: impl Fn(&R) -> &String,
        ts: impl Fn(&R) -> i64,
        f: &mut dyn FnMut(&R, Option<&RequestRef>),
    ) -> Result<()> {
        let st = self.state.read_recursive();
        let r = TimeRange::new(range.from_ms.max(st.wm.raw_from), range.to_ms);
        if r.is_empty() {
            return Ok(());
        }
        for kv in self
            .db
            .range(t, ts_key(r.from_ms).to_vec()..ts_key(r.to_ms).to_vec())
        {
            let (k, v) = kv?;
            let row: R =
                decode_row(t.name(), &v).map_err(|e| StorageError::decode(t.name(), &k, e))?;
            let rr = self.lookup_request(&st, id(&row))?;
            f(&row, rr.as_ref());
        }
        for h in heads(&st) {
            for (_, row) in rows(h) {
                if r.contains(ts(row)) {
                    let rr = self.lookup_request(&st, id(row))?;
                    f(row, rr.as_ref());
                }
            }
        }
        Ok(())
    }

    pub(crate) fn trace(&self, trace_id: &str) -> Result<Vec<Span>> {
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(T::Traces, &trace_prefix(trace_id)) {
            let (k, v) = kv?;
            out.push(decode_span(&v).map_err(|e| StorageError::decode("traces", &k, e))?);
        }
        Ok(out)
    }

    pub(crate) fn recent_traces(&self, limit: usize) -> Result<Vec<TraceSummary>> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for kv in self.db.range(T::TraceTime, ..).rev() {
            let (k, _) = kv?;
            let Some((_, trace_id, _)) = parse_span_time_key(&k) else {
                continue;
            };
            if !seen.insert(trace_id.clone()) {
                continue;
            }
            let first = self
                .db
                .scan_prefix(T::Traces, &trace_prefix(&trace_id))
                .next();
            if let Some(kv) = first {
                let (k, v) = kv?;
                let s = decode_span(&v).map_err(|e| StorageError::decode("traces", &k, e))?;
                out.push(TraceSummary {
                    trace_id,
                    start_unix_nano: s.start_unix_nano,
                    root_name: s.name,
                });
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn verify(&self) -> Result<VerifyReport> {
        let mut rep = VerifyReport::default();
        let codec = self.codec.read();
        let all = TimeRange::new(i64::MIN, i64::MAX);
        let none = RowFilter::default();
        let mut check = |t: T, k: &[u8], res: std::result::Result<(), String>| {
            rep.checked += 1;
            if let Err(msg) = res {
                rep.problems.push((format!("{}/{}", t.name(), hex(k)), msg));
            }
        };
        // Files are read without the maintenance lock (verify must not
        // stall seals): retention or a run merge may delete a record and
        // then its file between the record's read and the file's. An error
        // therefore counts only if the record is still the one read.
        let changed = |t: T, k: &[u8], v: &[u8]| -> Result<bool> {
            Ok(self.db.get(t, k)?.as_deref() != Some(v))
        };
        for kv in self.db.range(T::Segments, ..) {
            let (k, v) = kv?;
            let id = k.get(8..).and_then(u64_from).unwrap_or(0);
            // The location record, then the bytes it points to in the
            // segment files (`seg_files.rs`).
            let res = Location::decode(&v)
                .and_then(|loc| self.segs.read(loc, &None))
                .and_then(|bytes| codec.decode(&bytes, all, &none))
                .map(|_| ())
                .map_err(|e| format!("segment {id}: {e}"));
            if res.is_err() && changed(T::Segments, &k, &v)? {
                continue;
            }
            check(T::Segments, &k, res);
        }
        for kv in self.db.range(T::SegmentMeta, ..) {
            let (k, v) = kv?;
            check(
                T::SegmentMeta,
                &k,
                SegMeta::decode(&v).map(|_| ()).map_err(|e| e.to_string()),
            );
        }
        for t in [T::RollupMinute, T::RollupHour, T::RollupDay, T::RollupWeek] {
            for kv in self.db.range(t, ..) {
                let (k, v) = kv?;
                let res = match parse_rollup_key(&k) {
                    None => Err("unparsable key".to_string()),
                    Some(_) => Rollup::decode(&v).map(|_| ()).map_err(|e| e.to_string()),
                };
                check(t, &k, res);
            }
        }
        for kv in self.db.range(T::Dict, ..) {
            let (k, v) = kv?;
            check(
                T::Dict,
                &k,
                codec.verify_dict_entry(&k, &v).map_err(|e| e.to_string()),
            );
        }
        for kv in self.db.range(T::Wal, ..) {
            let (k, v) = kv?;
            check(
                T::Wal,
                &k,
                decode_wal(&v).map(|_| ()).map_err(|e| e.to_string()),
            );
        }
        for kv in self.db.range(T::Quality, ..) {
            let (k, v) = kv?;
            let res = decode_row::<Quality>("quality", &v).map(|_| ());
            check(T::Quality, &k, res.map_err(|e| e.to_string()));
        }
        for kv in self.db.range(T::Feedback, ..) {
            let (k, v) = kv?;
            let res = decode_row::<Feedback>("feedback", &v).map(|_| ());
            check(T::Feedback, &k, res.map_err(|e| e.to_string()));
        }
        for kv in self.db.range(T::Requests, ..) {
            let (k, v) = kv?;
            check(
                T::Requests,
                &k,
                decode_request(&v).map(|_| ()).map_err(|e| e.to_string()),
            );
        }
        for kv in self.db.range(T::RequestRunDir, ..) {
            let (k, v) = kv?;
            check(T::RequestRunDir, &k, requests::verify_dir_entry(&k, &v));
            // Format 6: the run's chunks, read from its file.
            let files = self.state.read_recursive().requests.files.clone();
            let res = requests::verify_run_file(&self.db, &files, &k, &v);
            if res.is_err() && changed(T::RequestRunDir, &k, &v)? {
                continue;
            }
            check(T::RequestRuns, &k, res);
        }
        for kv in self.db.range(T::RequestRuns, ..) {
            let (k, v) = kv?;
            check(T::RequestRuns, &k, requests::verify_chunk(&v));
        }
        for kv in self.db.range(T::Traces, ..) {
            let (k, v) = kv?;
            check(
                T::Traces,
                &k,
                decode_span(&v).map(|_| ()).map_err(|e| e.to_string()),
            );
        }
        Ok(rep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreConfig;
    use crate::rollup::DigestField;
    use crate::store::records::rollup_key;
    use crate::store::Store;
    use sextant_model::{Batch, Dim, MINUTE_MS};

    fn open(dir: &std::path::Path) -> Store {
        Store::open(
            dir,
            StoreConfig {
                rollup_dims: vec![Dim::Model, Dim::Endpoint],
                background_maintenance: false,
                ..StoreConfig::default()
            },
        )
        .unwrap()
    }

    fn call(id: &str, ts: i64, model: &str, latency: f64) -> LlmCall {
        LlmCall {
            request_id: id.into(),
            timestamp_ms: ts,
            model: model.into(),
            endpoint: "chat".into(),
            latency_ms: latency,
            total_tokens: 10,
            finish_reason: "stop".into(),
            ..LlmCall::default()
        }
    }

    fn append(store: &Store, calls: Vec<LlmCall>) {
        store
            .append(Batch {
                calls,
                ..Batch::default()
            })
            .unwrap();
    }

    /// (bucket, group, count, latency digest count, latency min, max) of
    /// every minute rollup, through `scan_rollups`.
    fn scanned(store: &Store) -> Vec<(i64, GroupKey, u64, u64, f64, f64)> {
        let mut out = Vec::new();
        let all = TimeRange::new(i64::MIN / 2, i64::MAX / 2);
        store
            .scan_rollups(Tier::Minute, all, &RowFilter::default(), &mut |b, g, v| {
                let d = v.digest(DigestField::Latency)?.unwrap();
                let mut n = 0;
                d.try_for_each_centroid(|_, w| n += w)?;
                assert_eq!(n, d.count());
                let t = v.totals()?;
                out.push((b, g.clone(), t.count, n, t.latency_min_ms, t.latency_max_ms));
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn a_late_event_into_a_stored_minute_is_merged_with_it_in_group_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let m0 = Tier::Minute.floor(sextant_model::now_ms()) - 10 * MINUTE_MS;
        let m1 = m0 + MINUTE_MS;
        append(
            &store,
            vec![
                call("a", m0 + 5, "bb", 10.0),
                call("b", m0 + 6, "bb", 20.0),
                call("c", m0 + 7, "c", 30.0),
            ],
        );
        store.seal(sextant_model::now_ms()).unwrap();
        // Late into the stored (m0, bb); a new group ordered between the
        // stored ones by name but not by key bytes; a head-only minute.
        append(
            &store,
            vec![
                call("d", m0 + 8, "bb", 5.0),
                call("e", m0 + 9, "a-long-model", 40.0),
                call("f", m1 + 1, "bb", 50.0),
            ],
        );
        let g = |m: &str| GroupKey(vec![m.into(), "chat".into()]);
        let want = vec![
            (m0, g("a-long-model"), 1, 1, 40.0, 40.0),
            (m0, g("bb"), 3, 3, 5.0, 20.0),
            (m0, g("c"), 1, 1, 30.0, 30.0),
            (m1, g("bb"), 1, 1, 50.0, 50.0),
        ];
        assert_eq!(scanned(&store), want);
        // `rollups` hands out the same rollups, whole.
        let mut whole = Vec::new();
        let all = TimeRange::new(i64::MIN / 2, i64::MAX / 2);
        store
            .rollups(Tier::Minute, all, &RowFilter::default(), &mut |b, g, r| {
                whole.push((b, g.clone(), r.count, r.finish_reasons.clone()));
            })
            .unwrap();
        let counts: Vec<_> = whole.iter().map(|x| (x.0, x.1.clone(), x.2)).collect();
        let want_counts: Vec<_> = want.iter().map(|x| (x.0, x.1.clone(), x.2)).collect();
        assert_eq!(counts, want_counts);
        assert_eq!(whole[1].3, [("stop".to_string(), 3)].into());
        // Once sealed, the same answer from storage alone.
        store.seal(sextant_model::now_ms()).unwrap();
        assert_eq!(scanned(&store), want);
    }

    /// A store of format ≤ 6 holds rollup version 1 values: they read as
    /// they did (views, the hot mirror's prepared form, verify), and a
    /// late event merged into one rewrites it as version 2.
    #[test]
    fn a_version_1_rollup_reads_and_a_late_merge_rewrites_it_as_version_2() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let m0 = Tier::Minute.floor(sextant_model::now_ms()) - 10 * MINUTE_MS;
        append(
            &store,
            (0..40)
                .map(|i| {
                    call(
                        &format!("r{i}"),
                        m0 + i,
                        "m",
                        100.0 + (i * 37 % 101) as f64 * 1.5,
                    )
                })
                .collect(),
        );
        store.seal(sextant_model::now_ms()).unwrap();
        let key = rollup_key(m0, &GroupKey(vec!["m".into(), "chat".into()]));
        let v2 = store.core().db.get(T::RollupMinute, &key).unwrap().unwrap();
        assert_eq!(v2[0], crate::rollup::ROLLUP_FORMAT_VERSION);
        let before = scanned(&store);
        // What an earlier build wrote for the same minute.
        let v1 = crate::rollup::encode_v1(&Rollup::decode(&v2).unwrap());
        assert_eq!(v1[0], crate::rollup::ROLLUP_FORMAT_V1);
        assert!(v1.len() > v2.len());
        store.core().db.insert(T::RollupMinute, &key, &v1).unwrap();
        drop(store);
        store = open(dir.path());
        assert_eq!(
            store.core().db.get(T::RollupMinute, &key).unwrap().unwrap(),
            v1
        );
        assert_eq!(scanned(&store), before);
        assert!(store.verify().unwrap().problems.is_empty());
        append(&store, vec![call("late", m0 + 50, "m", 1.0)]);
        store.seal(sextant_model::now_ms()).unwrap();
        let merged = store.core().db.get(T::RollupMinute, &key).unwrap().unwrap();
        assert_eq!(merged[0], crate::rollup::ROLLUP_FORMAT_VERSION);
        let r = Rollup::decode(&merged).unwrap();
        assert_eq!((r.count, r.latency_min_ms), (41, 1.0));
        let after = scanned(&store);
        assert_eq!((after[0].2, after[0].3, after[0].4), (41, 41, 1.0));
    }

    #[test]
    fn every_bucket_is_handed_out_in_group_order_whatever_groups_repeat() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let b = 1_700_006_400_000;
        // Key order puts "c" (shorter) before "bb"; group order does not.
        let buckets: [&[&str]; 5] = [
            &["bb", "c"],
            &["bb", "c"],
            &["a-long", "bb", "c"],
            &["c", "dd"],
            &["bb", "c"],
        ];
        let mut rows = Vec::new();
        let mut want = Vec::new();
        for (i, models) in buckets.iter().enumerate() {
            let bucket = b + i as i64 * MINUTE_MS;
            for m in *models {
                let mut r = Rollup::new(20);
                r.add_call(&call("", bucket, m, 1.0 + i as f64));
                let g = GroupKey(vec![m.to_string(), "chat".into()]);
                rows.push((bucket, g.clone(), r));
                want.push((bucket, g, 1.0 + i as f64));
            }
        }
        store.import_rollups(Tier::Minute, rows).unwrap();
        let mut got = Vec::new();
        let all = TimeRange::new(b, b + 10 * MINUTE_MS);
        store
            .scan_rollups(Tier::Minute, all, &RowFilter::default(), &mut |b, g, v| {
                got.push((b, g.clone(), v.totals()?.latency_min_ms));
                Ok(())
            })
            .unwrap();
        want.sort_by(|x, y| (x.0, &x.1).cmp(&(y.0, &y.1)));
        assert_eq!(got, want);
    }

    #[test]
    fn views_yield_what_decoded_rollups_hold_and_filters_apply_to_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let b = 1_700_006_400_000;
        let mut rows = Vec::new();
        for (i, m) in ["x", "yy", "zzz"].iter().enumerate() {
            let mut r = Rollup::new(20);
            for j in 0..(50 + i * 30) {
                let mut c = call("", b, m, 1.0 + (j * 7 % 13) as f64);
                c.time_to_first_token_ms = (j % 3 == 0).then_some(j as f64);
                c.finish_reason = ["stop", "length", ""][j % 3].into();
                r.add_call(&c);
                r.add_quality(&Quality {
                    response_length: j as u64,
                    ..Quality::default()
                });
            }
            r.compress_digests();
            rows.push((b, GroupKey(vec![m.to_string(), "chat".into()]), r));
        }
        store.import_rollups(Tier::Minute, rows.clone()).unwrap();
        let filter = RowFilter {
            equals: vec![(Dim::Model, vec!["x".into(), "zzz".into()])],
            ..RowFilter::default()
        };
        let mut seen = Vec::new();
        let all = TimeRange::new(b, b + MINUTE_MS);
        store
            .scan_rollups(Tier::Minute, all, &filter, &mut |_, g, v| {
                let (_, _, r) = rows.iter().find(|x| &x.1 == g).unwrap();
                let r = Rollup::decode(&r.encode()).unwrap();
                assert_eq!(*v.totals()?, r.totals());
                let mut reasons = BTreeMap::new();
                v.for_each_finish_reason(|k, n| {
                    reasons.insert(k.to_string(), n);
                })?;
                assert_eq!(reasons, r.finish_reasons);
                for (f, d) in [
                    (DigestField::Latency, &r.latency),
                    (DigestField::Ttft, &r.ttft),
                    (DigestField::TotalTokens, &r.total_tokens_digest),
                    (DigestField::ResponseLength, &r.response_length),
                ] {
                    let d = d.as_ref().unwrap();
                    let got = v.digest(f)?.unwrap();
                    let mut cs = Vec::new();
                    got.try_for_each_centroid(|m, w| cs.push((m, w)))?;
                    assert_eq!(cs, d.centroids(), "{f:?}");
                    assert_eq!(
                        (got.count(), Some(got.min()), Some(got.max())),
                        (d.count(), d.min(), d.max())
                    );
                }
                assert!(v.to_rollup()?.exact_eq(&r));
                seen.push(g.0[0].clone());
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, ["x", "zzz"]);
    }

    #[test]
    fn a_damaged_rollup_is_a_decode_error_naming_its_key_and_verify_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let b = 1_700_006_400_000;
        let group = GroupKey(vec!["m".into(), "chat".into()]);
        let mut r = Rollup::new(20);
        for j in 0..30 {
            r.add_call(&call("", b, "m", j as f64));
        }
        store
            .import_rollups(Tier::Minute, [(b, group.clone(), r.clone())])
            .unwrap();
        let key = rollup_key(b, &group);
        let good = r.encode();
        let all = TimeRange::new(b, b + MINUTE_MS);
        let read_all = |store: &Store| {
            store.scan_rollups(Tier::Minute, all, &RowFilter::default(), &mut |_, _, v| {
                for f in [DigestField::Latency, DigestField::TotalTokens] {
                    if let Some(d) = v.digest(f)? {
                        d.try_for_each_centroid(|_, _| {})?;
                    }
                }
                Ok(())
            })
        };
        assert!(read_all(&store).is_ok());
        // A flipped byte: the checksum catches it before anything is decoded.
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x10;
        // The last digest (total tokens) cut short, re-framed with a valid
        // checksum: the exact fields still read, the digest is an error.
        let payload = &good[crate::frame::FRAME_HEADER..good.len() - 1];
        let cut = crate::frame::frame(crate::rollup::ROLLUP_FORMAT_VERSION, payload);
        // Whether the value the store wrote (or loaded at open) reads.
        let mut loaded_reads = true;
        for (bad, totals_read) in [(flipped, false), (cut, true)] {
            store.core().db.insert(T::RollupMinute, &key, &bad).unwrap();
            // The minute is in the hot mirror, which holds what was written
            // or loaded: reads see damage done on disk after a reopen.
            assert_eq!(read_all(&store).is_ok(), loaded_reads);
            loaded_reads = false;
            drop(store);
            store = open(dir.path());
            let err = read_all(&store).unwrap_err();
            assert!(
                matches!(&err, StorageError::Decode { tree, key: k, .. } if *tree == "rollup_minute" && *k == hex(&key)),
                "{err:?}"
            );
            let mut counts = Vec::new();
            let res =
                store.scan_rollups(Tier::Minute, all, &RowFilter::default(), &mut |_, _, v| {
                    counts.push(v.totals()?.count);
                    Ok(())
                });
            assert_eq!(res.is_ok(), totals_read);
            assert_eq!(counts, if totals_read { vec![30] } else { vec![] });
            assert!(store
                .rollups(Tier::Minute, all, &RowFilter::default(), &mut |_, _, _| {})
                .is_err());
            let report = store.verify().unwrap();
            assert_eq!(report.problems.len(), 1, "{report:?}");
            assert!(report.problems[0].0.ends_with(&hex(&key)));
        }
    }
}
