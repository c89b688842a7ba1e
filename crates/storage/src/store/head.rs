//! The head: acknowledged events not yet sealed, and their minute rollups.
//!
//! **Invariant:** the head holds exactly the events of the WAL entries in
//! `seqs`, applied in sequence order; replaying those entries into an empty
//! head rebuilds it (group resolution included, because it depends only on
//! what was stored or applied before).
//!
//! Applying is the part of an append the single writer does under the state
//! lock, so it is kept to a few hash probes per call: the work that needs no
//! head state (grouping calls by their rollup dims) is done beforehand by
//! [`Prepared::new`] on the appender's (or replay decoder's) thread; groups
//! are interned (a rollup key is `(minute, group index)`), a batch's calls are
//! kept as the batch's own vector (never moved one by one), and the request
//! index maps a keyed hash of the request id to the call's ordinal instead of
//! cloning ids and groups.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Arc;

use sextant_model::{Batch, Dim, Feedback, LlmCall, Quality, Tier};

use crate::api::{GroupKey, RequestRef};
use crate::db::ts_key;
use crate::rollup::Rollup;

/// Key of a quality or feedback row: ts, WAL sequence, index in the batch.
pub(crate) fn row_key(ts_ms: i64, seq: u64, idx: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(20);
    k.extend_from_slice(&ts_key(ts_ms));
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(&idx.to_be_bytes());
    k
}

pub(crate) fn group_of(dims: &[Dim], call: &LlmCall) -> GroupKey {
    GroupKey(dims.iter().map(|d| d.value_of(call).to_string()).collect())
}

/// The group of a quality/feedback row whose call is unknown.
pub(crate) fn unknown_group(dims: &[Dim]) -> GroupKey {
    GroupKey(vec![String::new(); dims.len()])
}

/// FxHash (rustc's): a fast, non-keyed hasher for small integer keys that
/// callers cannot choose freely (minute buckets, interned group indexes).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

const FX_K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(FX_K);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 56));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits (hashbrown's bucket index) weakly
        // mixed; fold the high half in.
        let x = self.0;
        (x ^ (x >> 29)).wrapping_mul(FX_K) ^ (x >> 32)
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;

/// Passes an already-hashed `u64` key through (the request index keys are
/// keyed SipHash values of request ids).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A batch with its calls grouped by rollup dims, computed without the head.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    pub(crate) batch: Batch,
    /// Distinct groups of the batch's calls, in first-seen order.
    groups: Vec<GroupKey>,
    /// Per call, its index in `groups`.
    call_groups: Vec<u32>,
    /// Call indexes sorted by (group, minute bucket, index): the order in
    /// which [`Head::apply`] adds calls to rollups, so each rollup's calls
    /// are added back to back, in batch order.
    order: Vec<u32>,
}

impl Prepared {
    pub(crate) fn new(batch: Batch, dims: &[Dim]) -> Prepared {
        let mut groups: Vec<GroupKey> = Vec::new();
        let mut call_groups = Vec::with_capacity(batch.calls.len());
        // Hash of the dim values → the first group with that hash; a
        // colliding group is found by a linear search.
        let mut by_hash: HashMap<u64, u32, FxBuild> = HashMap::default();
        let same = |g: &GroupKey, c: &LlmCall| {
            g.0.iter()
                .zip(dims)
                .all(|(v, d)| v.as_str() == d.value_of(c))
        };
        for c in &batch.calls {
            let mut h = FxHasher::default();
            for d in dims {
                let v = d.value_of(c);
                h.write(v.as_bytes());
                h.write_usize(v.len());
            }
            let h = h.finish();
            let idx = match by_hash.get(&h) {
                Some(&i) if same(&groups[i as usize], c) => i,
                found => match groups.iter().position(|g| same(g, c)) {
                    Some(i) => i as u32,
                    None => {
                        let i = groups.len() as u32;
                        groups.push(group_of(dims, c));
                        if found.is_none() {
                            by_hash.insert(h, i);
                        }
                        i
                    }
                },
            };
            call_groups.push(idx);
        }
        let mut keys: Vec<(u32, i64, u32)> = batch
            .calls
            .iter()
            .zip(&call_groups)
            .enumerate()
            .map(|(i, (c, &g))| (g, Tier::Minute.floor(c.timestamp_ms), i as u32))
            .collect();
        keys.sort_unstable();
        let order = keys.into_iter().map(|(_, _, i)| i).collect();
        Prepared {
            batch,
            groups,
            call_groups,
            order,
        }
    }

    /// True when `call_groups` and `order` cover the batch's calls.
    fn is_consistent(&self) -> bool {
        let n = self.batch.calls.len();
        self.call_groups.len() == n && self.order.len() == n
    }

    pub(crate) fn len(&self) -> usize {
        self.batch.len()
    }
}

/// The head's calls: each applied batch's vector, kept as it came, behind
/// an `Arc` so a reader can take the chunks and scan them without the
/// state lock (a chunk never changes once pushed).
#[derive(Debug, Default)]
pub(crate) struct Calls {
    chunks: Vec<Arc<Vec<LlmCall>>>,
    /// Ordinal of each chunk's first call, ascending.
    starts: Vec<usize>,
    len: usize,
}

type ChunkIter<'a> = std::iter::FlatMap<
    std::slice::Iter<'a, Arc<Vec<LlmCall>>>,
    std::slice::Iter<'a, LlmCall>,
    fn(&'a Arc<Vec<LlmCall>>) -> std::slice::Iter<'a, LlmCall>,
>;

impl Calls {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn push_chunk(&mut self, calls: Vec<LlmCall>) {
        if calls.is_empty() {
            return;
        }
        self.starts.push(self.len);
        self.len += calls.len();
        self.chunks.push(Arc::new(calls));
    }

    /// The call with ordinal `i` (0 = first applied).
    fn get(&self, i: usize) -> Option<&LlmCall> {
        let c = self.starts.partition_point(|&s| s <= i).checked_sub(1)?;
        self.chunks.get(c)?.get(i - self.starts[c])
    }

    pub(crate) fn iter(&self) -> ChunkIter<'_> {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The chunks, shared (for a scan outside the state lock).
    pub(crate) fn chunks(&self) -> &[Arc<Vec<LlmCall>>] {
        &self.chunks
    }
}

impl<'a> IntoIterator for &'a Calls {
    type Item = &'a LlmCall;
    type IntoIter = ChunkIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

const NO_CALL: usize = usize::MAX;

/// request id → newest call with that id, by call ordinal.
///
/// While replaying, inserts are deferred: their (hash, ordinal) pairs are
/// collected and inserted by [`RequestIndex::flush`] in the map's bucket
/// order, so a million inserts sweep the table instead of missing the cache
/// once each. The result is the same map and chains as inserting one by one
/// in ordinal order (pairs with equal hashes keep ordinal order).
#[derive(Debug, Default)]
struct RequestIndex {
    hasher: RandomState,
    /// Keyed hash of the id → ordinal of the newest call with that hash.
    newest: HashMap<u64, usize, BuildHasherDefault<IdHasher>>,
    /// Per call ordinal, the previous call with the same hash (`NO_CALL` if none).
    prev: Vec<usize>,
    /// Collect inserts in `deferred` instead of applying them.
    defer: bool,
    /// (hash, ordinal) of calls newer than every call in `newest`, ascending
    /// by ordinal.
    deferred: Vec<(u64, usize)>,
}

impl RequestIndex {
    fn insert(&mut self, id: &str, ordinal: usize) {
        debug_assert_eq!(ordinal, self.prev.len() + self.deferred.len());
        let h = self.hasher.hash_one(id);
        if self.defer {
            self.deferred.push((h, ordinal));
            return;
        }
        let prev = self.newest.insert(h, ordinal).unwrap_or(NO_CALL);
        self.prev.push(prev);
    }

    /// Inserts the deferred pairs, in bucket order.
    fn flush(&mut self) {
        if self.deferred.is_empty() {
            return;
        }
        let mut d = std::mem::take(&mut self.deferred);
        self.prev.resize(self.prev.len() + d.len(), NO_CALL);
        self.newest.reserve(d.len());
        // hashbrown's bucket of a key is `hash & (buckets − 1)`, with
        // capacity = 7/8 of the buckets (a wrong guess only costs locality).
        let mask = (self.newest.capacity().saturating_mul(8) / 7)
            .checked_next_power_of_two()
            .map_or(u64::MAX, |b| b as u64 - 1);
        d.sort_unstable_by_key(|&(h, o)| (h & mask, h, o));
        for (h, o) in d {
            let prev = self.newest.insert(h, o).unwrap_or(NO_CALL);
            if let Some(p) = self.prev.get_mut(o) {
                *p = prev;
            }
        }
    }

    fn find(&self, calls: &Calls, id: &str) -> Option<usize> {
        let h = self.hasher.hash_one(id);
        for &(dh, o) in self.deferred.iter().rev() {
            if dh == h && calls.get(o)?.request_id == id {
                return Some(o);
            }
        }
        let mut i = *self.newest.get(&h)?;
        while i != NO_CALL {
            if calls.get(i)?.request_id == id {
                return Some(i);
            }
            i = *self.prev.get(i)?;
        }
        None
    }
}

#[derive(Debug, Default)]
pub(crate) struct Head {
    pub(crate) calls: Calls,
    pub(crate) quality: Vec<(Vec<u8>, Quality)>,
    pub(crate) feedback: Vec<(Vec<u8>, Feedback)>,
    /// Interned rollup groups; a group's index never changes.
    groups: Vec<GroupKey>,
    group_ids: HashMap<GroupKey, u32>,
    /// (minute bucket start ms, group index) → rollup of the head's events there.
    rollups: HashMap<(i64, u32), Rollup, FxBuild>,
    /// Minute bucket start ms → (earliest, latest) timestamp of the head's
    /// events there (calls, quality and feedback), inclusive: whether the
    /// minute's rollups hold only events inside a range (see `store/scan.rs`).
    minute_bounds: HashMap<i64, (i64, i64), FxBuild>,
    requests: RequestIndex,
    /// Per call ordinal, its group's index in `groups`.
    call_groups: Vec<u32>,
    /// WAL sequences applied, ascending.
    pub(crate) seqs: Vec<u64>,
    pub(crate) wal_bytes: u64,
    /// Wall-clock ms when the oldest event here was applied.
    pub(crate) first_applied_ms: Option<i64>,
}

impl Head {
    pub(crate) fn events(&self) -> usize {
        self.calls.len() + self.quality.len() + self.feedback.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Every (minute bucket start ms, group) and its rollup, in no order.
    pub(crate) fn rollups(&self) -> impl Iterator<Item = ((&i64, &GroupKey), &Rollup)> {
        self.rollups
            .iter()
            .map(|((b, g), r)| ((b, &self.groups[*g as usize]), r))
    }

    /// (earliest, latest) timestamp of this head's events in the minute
    /// bucket starting at `bucket_ms`; `None` when it holds none there.
    pub(crate) fn minute_bounds(&self, bucket_ms: i64) -> Option<(i64, i64)> {
        self.minute_bounds.get(&bucket_ms).copied()
    }

    fn widen_bounds(&mut self, bucket_ms: i64, lo: i64, hi: i64) {
        self.minute_bounds
            .entry(bucket_ms)
            .and_modify(|b| *b = (b.0.min(lo), b.1.max(hi)))
            .or_insert((lo, hi));
    }

    /// The newest call in this head with `request_id`.
    pub(crate) fn request(&self, dims: &[Dim], request_id: &str) -> Option<RequestRef> {
        let c = self
            .calls
            .get(self.requests.find(&self.calls, request_id)?)?;
        Some(RequestRef {
            timestamp_ms: c.timestamp_ms,
            group: group_of(dims, c),
        })
    }

    /// One entry per distinct request id (its newest call), in applied order.
    #[cfg(test)]
    pub(crate) fn requests<'a>(
        &'a self,
        dims: &'a [Dim],
    ) -> impl Iterator<Item = (&'a str, RequestRef)> + 'a {
        self.calls.iter().enumerate().filter_map(move |(i, c)| {
            let newest = self.requests.find(&self.calls, &c.request_id) == Some(i);
            newest.then(|| {
                (
                    c.request_id.as_str(),
                    RequestRef {
                        timestamp_ms: c.timestamp_ms,
                        group: group_of(dims, c),
                    },
                )
            })
        })
    }

    /// The interned groups and, per call in applied order, its request id,
    /// timestamp and group index: what the seal's request-index run is
    /// built from (newest call per id wins), without a lookup per call.
    pub(crate) fn call_entries(&self) -> (&[GroupKey], impl Iterator<Item = (&str, i64, u32)>) {
        let entries = self
            .calls
            .iter()
            .zip(&self.call_groups)
            .map(|(c, &g)| (c.request_id.as_str(), c.timestamp_ms, g));
        (&self.groups, entries)
    }

    /// Defers request-index inserts until [`Head::end_replay`] (or a
    /// quality/feedback row needing a lookup).
    pub(crate) fn begin_replay(&mut self) {
        self.requests.defer = true;
    }

    pub(crate) fn end_replay(&mut self) {
        self.requests.flush();
        self.requests.defer = false;
    }

    fn intern(&mut self, g: &GroupKey) -> u32 {
        if let Some(&i) = self.group_ids.get(g) {
            return i;
        }
        let i = self.groups.len() as u32;
        self.groups.push(g.clone());
        self.group_ids.insert(g.clone(), i);
        i
    }

    fn rollup(&mut self, bucket: i64, group: &GroupKey, size: usize) -> &mut Rollup {
        let g = self.intern(group);
        self.rollups
            .entry((bucket, g))
            .or_insert_with(|| Rollup::new(size))
    }

    /// Applies one WAL batch. `lookup` finds calls not in this head.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply(
        &mut self,
        seq: u64,
        wal_bytes: u64,
        prepared: Prepared,
        dims: &[Dim],
        digest_size: usize,
        now_ms: i64,
        lookup: &dyn Fn(&str) -> Option<RequestRef>,
    ) {
        let prepared = if prepared.is_consistent() {
            prepared
        } else {
            Prepared::new(prepared.batch, dims)
        };
        let Prepared {
            batch,
            groups,
            call_groups,
            order,
        } = prepared;
        self.seqs.push(seq);
        self.wal_bytes += wal_bytes;
        if self.first_applied_ms.is_none() && !batch.is_empty() {
            self.first_applied_ms = Some(now_ms);
        }
        let gids: Vec<u32> = groups.iter().map(|g| self.intern(g)).collect();
        // Rollup by rollup (each one's calls in batch order, so every rollup
        // gets exactly the values, in the order, of adding call by call).
        let rollups = &mut self.rollups;
        let bounds = &mut self.minute_bounds;
        let mut last: Option<((i64, u32), &mut Rollup)> = None;
        // Time bounds of the current rollup's calls, folded into
        // `minute_bounds` when the rollup changes (one probe per rollup).
        let mut span: Option<(i64, i64, i64)> = None;
        let mut fold = |span: Option<(i64, i64, i64)>| {
            if let Some((m, lo, hi)) = span {
                bounds
                    .entry(m)
                    .and_modify(|b| *b = (b.0.min(lo), b.1.max(hi)))
                    .or_insert((lo, hi));
            }
        };
        for &i in &order {
            let i = i as usize;
            let (Some(call), Some(&g)) = (
                batch.calls.get(i),
                call_groups.get(i).and_then(|&l| gids.get(l as usize)),
            ) else {
                continue; // `is_consistent` rules this out
            };
            let key = (Tier::Minute.floor(call.timestamp_ms), g);
            let r = match last.take() {
                Some((k, r)) if k == key => r,
                _ => rollups
                    .entry(key)
                    .or_insert_with(|| Rollup::new(digest_size)),
            };
            r.add_call(call);
            last = Some((key, r));
            let t = call.timestamp_ms;
            span = match span {
                Some((m, lo, hi)) if m == key.0 => Some((m, lo.min(t), hi.max(t))),
                other => {
                    fold(other);
                    Some((key.0, t, t))
                }
            };
        }
        fold(span);
        self.call_groups.extend(
            call_groups
                .iter()
                .map(|&l| gids.get(l as usize).copied().unwrap_or(0)),
        );
        let first = self.calls.len();
        for (i, call) in batch.calls.iter().enumerate() {
            self.requests.insert(&call.request_id, first + i);
        }
        self.calls.push_chunk(batch.calls);
        if !(batch.quality.is_empty() && batch.feedback.is_empty()) {
            self.requests.flush();
        }
        for (i, q) in batch.quality.into_iter().enumerate() {
            let group = self.resolve(&q.request_id, dims, lookup);
            let m = Tier::Minute.floor(q.timestamp_ms);
            self.rollup(m, &group, digest_size).add_quality(&q);
            self.widen_bounds(m, q.timestamp_ms, q.timestamp_ms);
            self.quality
                .push((row_key(q.timestamp_ms, seq, i as u32), q));
        }
        for (i, fb) in batch.feedback.into_iter().enumerate() {
            let group = self.resolve(&fb.request_id, dims, lookup);
            let m = Tier::Minute.floor(fb.timestamp_ms);
            self.rollup(m, &group, digest_size).add_feedback(&fb);
            self.widen_bounds(m, fb.timestamp_ms, fb.timestamp_ms);
            self.feedback
                .push((row_key(fb.timestamp_ms, seq, i as u32), fb));
        }
    }

    fn resolve(
        &self,
        request_id: &str,
        dims: &[Dim],
        lookup: &dyn Fn(&str) -> Option<RequestRef>,
    ) -> GroupKey {
        match self.request(dims, request_id) {
            Some(r) => r.group,
            None => lookup(request_id)
                .map(|r| r.group)
                .unwrap_or_else(|| unknown_group(dims)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: &str, ts: i64, model: &str) -> LlmCall {
        LlmCall {
            request_id: id.into(),
            timestamp_ms: ts,
            model: model.into(),
            endpoint: "chat".into(),
            latency_ms: 1.0,
            ..LlmCall::default()
        }
    }

    fn apply(head: &mut Head, seq: u64, calls: Vec<LlmCall>) {
        let dims = [Dim::Model, Dim::Endpoint];
        let p = Prepared::new(Batch::from_calls(calls), &dims);
        head.apply(seq, 0, p, &dims, 50, 0, &|_| None);
    }

    #[test]
    fn request_index_finds_the_newest_call_across_batches() {
        let dims = [Dim::Model, Dim::Endpoint];
        let mut head = Head::default();
        apply(
            &mut head,
            1,
            vec![call("a", 1, "m1"), call("b", 2, "m1"), call("a", 3, "m2")],
        );
        apply(&mut head, 2, vec![call("c", 4, "m3"), call("b", 5, "m3")]);
        let r = |id: &str| {
            head.request(&dims, id)
                .map(|r| (r.timestamp_ms, r.group.0[0].clone()))
        };
        assert_eq!(r("a"), Some((3, "m2".into())));
        assert_eq!(r("b"), Some((5, "m3".into())));
        assert_eq!(r("c"), Some((4, "m3".into())));
        assert_eq!(r("d"), None);
        let all: Vec<(String, i64)> = head
            .requests(&dims)
            .map(|(id, r)| (id.to_string(), r.timestamp_ms))
            .collect();
        assert_eq!(all, vec![("a".into(), 3), ("c".into(), 4), ("b".into(), 5)]);
        assert_eq!(head.calls.iter().count(), 5);
        assert_eq!(head.calls.get(3).map(|c| c.timestamp_ms), Some(4));
        assert!(head.calls.get(5).is_none());
    }

    #[test]
    fn rollups_are_keyed_by_minute_and_group_as_if_added_one_by_one() {
        let dims = [Dim::Model, Dim::Endpoint];
        let calls: Vec<LlmCall> = (0..500)
            .map(|i| {
                call(
                    &format!("r{i}"),
                    (i * 7_919) % 300_000,
                    ["a", "b", "c"][i as usize % 3],
                )
            })
            .collect();
        let mut head = Head::default();
        apply(&mut head, 1, calls[..200].to_vec());
        apply(&mut head, 2, calls[200..].to_vec());
        let mut want: HashMap<(i64, GroupKey), Rollup> = HashMap::new();
        for c in &calls {
            want.entry((Tier::Minute.floor(c.timestamp_ms), group_of(&dims, c)))
                .or_insert_with(|| Rollup::new(50))
                .add_call(c);
        }
        let got: HashMap<(i64, GroupKey), &Rollup> = head
            .rollups()
            .map(|((b, g), r)| ((*b, g.clone()), r))
            .collect();
        assert_eq!(got.len(), want.len());
        for (k, r) in &want {
            assert!(got[k].exact_eq(r), "{k:?}");
        }
    }

    /// A replayed head (deferred request index, quality rows forcing a
    /// flush mid-way, lookups while deferred) equals the live one.
    #[test]
    fn replayed_head_has_the_live_heads_requests_and_rollups() {
        let dims = [Dim::Model, Dim::Endpoint];
        let mut batches = Vec::new();
        for b in 0..6i64 {
            let calls: Vec<LlmCall> = (0..300i64)
                .map(|i| {
                    let ts = (b * 300 + i) * 997 % 600_000;
                    call(
                        &format!("r{}", (b * 300 + i) % 700),
                        ts,
                        ["a", "b"][(i % 2) as usize],
                    )
                })
                .collect();
            let mut batch = Batch::from_calls(calls);
            if b == 3 {
                batch.quality.push(Quality {
                    request_id: "r5".into(),
                    timestamp_ms: 1_000,
                    response_length: 10,
                    ..Quality::default()
                });
            }
            batches.push(batch);
        }
        let run = |replay: bool| {
            let mut head = Head::default();
            if replay {
                head.begin_replay();
            }
            for (seq, b) in batches.iter().enumerate() {
                let p = Prepared::new(b.clone(), &dims);
                head.apply(seq as u64, 0, p, &dims, 50, 0, &|_| None);
                if replay && seq == 4 {
                    // Found while still deferred.
                    let r = head.request(&dims, "r1").map(|r| r.timestamp_ms);
                    let want = batches[..5]
                        .iter()
                        .flat_map(|b| &b.calls)
                        .rfind(|c| c.request_id == "r1")
                        .map(|c| c.timestamp_ms);
                    assert_eq!(r, want);
                }
            }
            if replay {
                head.end_replay();
            }
            head
        };
        let (live, replayed) = (run(false), run(true));
        let reqs = |h: &Head| -> Vec<(String, i64, GroupKey)> {
            h.requests(&dims)
                .map(|(id, r)| (id.to_string(), r.timestamp_ms, r.group))
                .collect()
        };
        assert_eq!(reqs(&live).len(), 700);
        assert_eq!(reqs(&live), reqs(&replayed));
        for id in ["r0", "r5", "r699", "nope"] {
            assert_eq!(
                live.request(&dims, id).map(|r| r.timestamp_ms),
                replayed.request(&dims, id).map(|r| r.timestamp_ms)
            );
        }
        let rollups = |h: &Head| -> HashMap<(i64, GroupKey), Rollup> {
            h.rollups()
                .map(|((b, g), r)| ((*b, g.clone()), r.clone()))
                .collect()
        };
        let (a, b) = (rollups(&live), rollups(&replayed));
        assert_eq!(a.len(), b.len());
        for (k, r) in &a {
            assert!(b[k].exact_eq(r), "{k:?}");
        }
    }

    #[test]
    fn prepared_groups_are_the_calls_groups() {
        let dims = [Dim::Model];
        let calls: Vec<LlmCall> = (0..100)
            .map(|i| call("x", 0, &format!("m{}", i % 37)))
            .collect();
        let p = Prepared::new(Batch::from_calls(calls.clone()), &dims);
        assert_eq!(p.groups.len(), 37);
        for (c, &g) in calls.iter().zip(&p.call_groups) {
            assert_eq!(p.groups[g as usize], group_of(&dims, c));
        }
    }
}
