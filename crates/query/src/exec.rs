//! The executor: plans a range (per series step), reads each part from its
//! source and folds it into one accumulator per (group, step).
//!
//! **Invariants:**
//! - every part of every step's plan is read exactly once: contiguous parts
//!   of the same source are coalesced into one storage scan, and each bucket
//!   or row is routed to the step that contains its start (a plan never lets
//!   a bucket straddle a step boundary, because each step is planned alone);
//! - quality and feedback rows are placed by their own timestamp and
//!   attributed to their call's group — through the request index's group
//!   when rollup dims suffice, otherwise by joining to the call itself;
//! - storage callbacks never call back into storage (rows needing a join are
//!   collected first).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use sextant_model::{Dim, Feedback, LlmCall, Quality, TimeRange};
use sextant_storage::{Coverage, GroupKey, PartSink, RequestRef, RowFilter, StorageError};

use crate::acc::{Acc, Needs};
use crate::api::QueryError;
use crate::dist::DistPool;
use crate::plan::{plan, rollups_serve, Part, RawReason};
use crate::source::DataSource;

/// How timestamps map to output slots: `n` steps of `step_ms` from `from_ms`
/// (the last one cut at `to_ms`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grid {
    pub(crate) range: TimeRange,
    pub(crate) step_ms: i64,
    pub(crate) n: usize,
}

impl Grid {
    /// One slot spanning the whole range.
    pub(crate) fn single(range: TimeRange) -> Grid {
        Grid {
            range,
            step_ms: range.duration_ms().max(1),
            n: 1,
        }
    }

    pub(crate) fn steps(range: TimeRange, step_ms: i64) -> Grid {
        let n = (range.duration_ms() + step_ms - 1) / step_ms;
        Grid {
            range,
            step_ms,
            n: n as usize,
        }
    }

    /// Slots `first..end` as a grid of their own.
    fn sub(&self, first: usize, end: usize) -> Grid {
        let from = self.slot_range(first).from_ms;
        let to = self.slot_range(end - 1).to_ms;
        Grid {
            range: TimeRange::new(from, to),
            step_ms: self.step_ms,
            n: end - first,
        }
    }

    fn slot_range(&self, i: usize) -> TimeRange {
        let from = self.range.from_ms + i as i64 * self.step_ms;
        TimeRange::new(from, (from + self.step_ms).min(self.range.to_ms))
    }

    fn slot(&self, ts: i64) -> Option<usize> {
        if !self.range.contains(ts) {
            return None;
        }
        let i = ((ts - self.range.from_ms) / self.step_ms) as usize;
        (i < self.n).then_some(i)
    }
}

/// What a query read: per group, its values (in group_by order) and the
/// index of its accumulator in that group's `accs` by slot ([`NO_ACC`]:
/// nothing fell in that slot).
#[derive(Debug)]
pub(crate) struct Collected {
    pub(crate) groups: Vec<GroupSlots>,
    /// Per group, every touched slot's accumulator, in order of first touch.
    pub(crate) accs: Vec<Vec<Acc>>,
    pub(crate) missing: Vec<TimeRange>,
    pub(crate) raw_reason: RawReason,
    pub(crate) coverage: Coverage,
}

impl Collected {
    pub(crate) fn coverage_note(&self) -> Option<String> {
        crate::plan::coverage_note(&self.missing, self.raw_reason, &self.coverage)
    }

    /// The accumulator of slot `i` of group `g`, if touched.
    pub(crate) fn acc(&self, g: usize, i: usize) -> Option<&Acc> {
        let a = *self.groups.get(g)?.1.get(i)?;
        self.accs.get(g)?.get(a as usize)
    }

    /// Takes the accumulator of slot `i` of group `g` (an empty one if untouched).
    pub(crate) fn take_acc(&mut self, g: usize, i: usize, needs: Needs) -> Acc {
        let a = self.groups.get(g).and_then(|s| s.1.get(i)).copied();
        match a.and_then(|a| self.accs.get_mut(g)?.get_mut(a as usize)) {
            Some(a) => std::mem::replace(a, Acc::new(needs)),
            None => Acc::new(needs),
        }
    }
}

/// Marks an untouched slot.
pub(crate) const NO_ACC: u32 = u32::MAX;

/// One group's labels and its accumulator indices by slot (empty until the
/// group's first touch).
pub(crate) type GroupSlots = (Vec<String>, Vec<u32>);

/// FNV-1a: group keys are a few short strings, and the default SipHash
/// dominated routing a rollup to its group.
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

type FnvMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

/// Accumulators by group (dense index) and slot: each group's slots index
/// one contiguous vector of accumulators, appended to on first touch.
struct Groups {
    index: FnvMap<Vec<String>, usize>,
    list: Vec<GroupSlots>,
    /// Per group (a vector each, so a new group never moves the others').
    accs: Vec<Vec<Acc>>,
    slots: usize,
    needs: Needs,
    /// Buffers of finished accumulators, for new ones.
    pool: DistPool,
    /// New accumulators keep stored digests quantized (every one is
    /// finished before `collect` returns).
    defer: bool,
}

impl Groups {
    fn new(slots: usize, needs: Needs) -> Groups {
        Groups {
            index: FnvMap::default(),
            list: Vec::new(),
            accs: Vec::new(),
            slots,
            needs,
            pool: Vec::new(),
            defer: false,
        }
    }

    fn id(&mut self, labels: Vec<String>) -> usize {
        if let Some(&i) = self.index.get(&labels) {
            return i;
        }
        let i = self.list.len();
        self.list.push((labels.clone(), Vec::new()));
        self.accs.push(Vec::new());
        self.index.insert(labels, i);
        i
    }

    fn acc(&mut self, group: usize, slot: usize) -> &mut Acc {
        let slots = &mut self.list[group].1;
        let accs = &mut self.accs[group];
        if slots.is_empty() {
            slots.resize(self.slots, NO_ACC);
            // Room for this group's slots (a series usually fills them):
            // no regrowth copying accumulators.
            accs.reserve_exact(self.slots);
        }
        let a = &mut slots[slot];
        if *a == NO_ACC {
            *a = accs.len() as u32;
            accs.push(Acc::with_pool(self.needs, &mut self.pool, self.defer));
        }
        &mut accs[*a as usize]
    }

    /// Adds the groups and accumulators a query piece read, whose slot 0 is
    /// slot `first` here (see [`collect_in`]).
    fn join(&mut self, first: usize, groups: Vec<GroupSlots>, accs: Vec<Vec<Acc>>) {
        for ((labels, slots), accs) in groups.into_iter().zip(accs) {
            let g = self.id(labels);
            if !slots.is_empty() {
                let out = &mut self.list[g].1;
                if out.is_empty() {
                    out.resize(self.slots, NO_ACC);
                }
                let base = self.accs[g].len() as u32;
                for (i, a) in slots.into_iter().enumerate() {
                    if a != NO_ACC {
                        out[first + i] = base + a;
                    }
                }
            }
            self.accs[g].extend(accs);
        }
    }

    /// Finishes every group's accumulator of `slot` (see [`Acc::finish`]).
    fn finish_slot(&mut self, slot: usize, metric: &'static str) {
        for (g, (_, slots)) in self.list.iter().enumerate() {
            if let Some(&a) = slots.get(slot).filter(|&&a| a != NO_ACC) {
                self.accs[g][a as usize].finish(metric, &mut self.pool);
            }
        }
    }
}

pub(crate) struct Query<'a> {
    pub(crate) grid: Grid,
    pub(crate) filter: &'a RowFilter,
    pub(crate) group_by: &'a [Dim],
    pub(crate) exact: bool,
    pub(crate) needs: Needs,
    /// The one metric the caller will read, if so: each slot's accumulators
    /// are then finished ([`Acc::finish`]) as soon as the slot is read.
    pub(crate) finish: Option<&'static str>,
}

/// Plans every slot and coalesces contiguous same-source parts.
pub(crate) fn plan_grid(
    q: &Query<'_>,
    cov: &Coverage,
    dims: &[Dim],
) -> (Vec<Part>, Vec<TimeRange>, RawReason) {
    let mut parts: Vec<Part> = Vec::new();
    let mut missing: Vec<TimeRange> = Vec::new();
    let mut reason = RawReason::None;
    for i in 0..q.grid.n {
        let p = plan(
            q.grid.slot_range(i),
            cov,
            dims,
            q.filter,
            q.group_by,
            q.exact,
        );
        reason = p.raw_reason;
        for part in p.parts {
            match parts.last_mut() {
                Some(last)
                    if last.source == part.source && last.range.to_ms == part.range.from_ms =>
                {
                    last.range.to_ms = part.range.to_ms;
                }
                _ => parts.push(part),
            }
        }
        for m in p.missing {
            match missing.last_mut() {
                Some(last) if last.to_ms == m.from_ms => last.to_ms = m.to_ms,
                _ => missing.push(m),
            }
        }
    }
    (parts, missing, reason)
}

pub(crate) fn collect(src: &dyn DataSource, q: &Query<'_>) -> Result<Collected, QueryError> {
    collect_in(src, q, query_threads())
}

/// How many threads one query may read with: the machine's parallelism,
/// at most [`MAX_QUERY_THREADS`] (read once).
fn query_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_QUERY_THREADS)
    })
}

/// The most threads one query reads with.
const MAX_QUERY_THREADS: usize = 4;

/// The least work (rollup buckets plus raw minutes, see [`work_units`]) a
/// query piece must have for a query to be split: a thread costs tens of
/// microseconds, reading 240 buckets of 15 groups a few milliseconds.
const MIN_UNITS_PER_PIECE: u64 = 240;

/// A part's estimated cost: its rollup buckets, or its raw minutes.
fn work_units(p: &Part) -> u64 {
    let ms = p.range.duration_ms().max(0) as u64;
    let unit = p
        .source
        .tier()
        .map_or(sextant_model::MINUTE_MS, |t| t.width_ms()) as u64;
    ms.div_ceil(unit)
}

/// Where to cut the grid into at most `threads` pieces of about equal work:
/// the first slot of every piece after the first (ascending, in `1..n`).
pub(crate) fn split_slots(grid: &Grid, parts: &[Part], threads: usize) -> Vec<usize> {
    let total: u64 = parts.iter().map(work_units).sum();
    let pieces = (total / MIN_UNITS_PER_PIECE)
        .min(threads as u64)
        .min(grid.n as u64);
    let mut cuts = Vec::new();
    if pieces < 2 {
        return cuts;
    }
    let mut done = 0;
    let mut next = total / pieces;
    for p in parts {
        let units = work_units(p);
        while done + units >= next && cuts.len() + 1 < pieces as usize {
            // The time where this part reaches `next` units, rounded to the
            // nearest slot boundary.
            let frac = (next - done) as f64 / units.max(1) as f64;
            let t = p.range.from_ms + (frac * p.range.duration_ms() as f64) as i64;
            let slot = ((t - grid.range.from_ms) as f64 / grid.step_ms as f64).round() as usize;
            if slot > cuts.last().copied().unwrap_or(0) && slot < grid.n {
                cuts.push(slot);
            }
            next += total / pieces;
        }
        done += units;
    }
    cuts
}

/// `parts` (coalesced over the whole grid) cut at each of `times`, as one
/// list per piece; each part with whether it is whole (`false`: cut from a
/// part that spans a cut, see [`read_parts`]).
fn cut_parts(parts: &[Part], times: &[i64]) -> Vec<Vec<(Part, bool)>> {
    let mut out = vec![Vec::new(); times.len() + 1];
    for p in parts {
        let mut p = *p;
        let mut whole = true;
        for (piece, &t) in times.iter().enumerate() {
            if p.range.from_ms < t && t < p.range.to_ms {
                out[piece].push((
                    Part {
                        source: p.source,
                        range: TimeRange::new(p.range.from_ms, t),
                    },
                    false,
                ));
                p.range.from_ms = t;
                whole = false;
            }
        }
        let piece = times.iter().filter(|&&t| t <= p.range.from_ms).count();
        out[piece].push((p, whole));
    }
    out
}

/// [`collect`] with at most `threads` threads: a query with enough work is
/// cut at slot boundaries into pieces read side by side, each by the
/// sequential reader, and their groups and accumulators are joined in
/// piece order. Each slot is read by one piece as the sequential reader
/// reads it (one slot's plan never straddles its boundary, and a coalesced
/// raw part cut between pieces is still read as raw rows, see
/// [`read_parts`]), so every accumulator is the same. A group first touched
/// by a quality or feedback row may be listed in another order than a
/// sequential read lists it; every caller sorts the groups.
pub(crate) fn collect_in(
    src: &dyn DataSource,
    q: &Query<'_>,
    threads: usize,
) -> Result<Collected, QueryError> {
    let coverage = src.coverage();
    let dims = src.rollup_dims();
    let (parts, missing, raw_reason) = plan_grid(q, &coverage, &dims);
    let cuts = split_slots(&q.grid, &parts, threads);
    let (groups, accs) = if cuts.is_empty() {
        let parts: Vec<(Part, bool)> = parts.iter().map(|p| (*p, true)).collect();
        read_parts(src, q, &parts, &dims, raw_reason)?
    } else {
        let starts: Vec<usize> = std::iter::once(0).chain(cuts.iter().copied()).collect();
        let times: Vec<i64> = cuts.iter().map(|&i| q.grid.slot_range(i).from_ms).collect();
        let piece_parts = cut_parts(&parts, &times);
        let read = |i: usize| {
            let first = starts[i];
            let end = starts.get(i + 1).copied().unwrap_or(q.grid.n);
            let grid = q.grid.sub(first, end);
            let piece = Query {
                grid,
                filter: q.filter,
                group_by: q.group_by,
                exact: q.exact,
                needs: q.needs,
                finish: q.finish,
            };
            read_parts(src, &piece, &piece_parts[i], &dims, raw_reason)
        };
        let read = &read;
        let results = std::thread::scope(|s| {
            let others: Vec<_> = (1..starts.len())
                .map(|i| s.spawn(move || read(i)))
                .collect();
            let mut results = vec![read(0)];
            for h in others {
                results.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
            }
            results
        });
        let mut joined = Groups::new(q.grid.n, q.needs);
        for (r, first) in results.into_iter().zip(starts) {
            let (groups, accs) = r?;
            joined.join(first, groups, accs);
        }
        (joined.list, joined.accs)
    };
    Ok(Collected {
        groups,
        accs,
        missing,
        raw_reason,
        coverage,
    })
}

/// Reads `parts` (planned for `q.grid`, in time order) into accumulators:
/// the groups (first touch order) and each group's accumulators. A raw part
/// lying in one slot may be answered through [`DataSource::read_part`] (whole
/// minutes from rollups), but only if it is whole: a part cut from one that
/// spans two slots is read as raw rows, as the sequential reader reads the
/// spanning part, so percentiles do not depend on where a query was cut.
fn read_parts(
    src: &dyn DataSource,
    q: &Query<'_>,
    parts: &[(Part, bool)],
    dims: &[Dim],
    raw_reason: RawReason,
) -> Result<(Vec<GroupSlots>, Vec<Vec<Acc>>), QueryError> {
    let mut groups = Groups::new(q.grid.n, q.needs);
    // Only accumulators holding distributions gain from finishing early.
    let finish = q.finish.filter(|_| q.needs.latency || q.needs.ttft);
    groups.defer = finish.is_some();
    let via_rollup_dims = rollups_serve(dims, q.filter, q.group_by);
    // Positions of the group_by dims inside a rollup GroupKey.
    let key_idx: Vec<usize> = if via_rollup_dims {
        q.group_by
            .iter()
            .map(|d| dims.iter().position(|x| x == d).unwrap_or(0))
            .collect()
    } else {
        Vec::new()
    };
    let grid = q.grid;
    // GroupKey → group id, so a known group costs one lookup and no allocation.
    let mut group_of: FnvMap<GroupKey, usize> = FnvMap::default();
    for (part, whole) in parts {
        match part.source.tier() {
            Some(tier) => {
                // Rollups arrive in bucket order, and no other part reads
                // a slot lying wholly inside this one: such a slot is
                // complete once a rollup of a later slot arrives.
                let mut unfinished = grid.slot(part.range.from_ms).unwrap_or(grid.n);
                src.rollups(tier, part.range, q.filter, &mut |start, key, r| {
                    let Some(slot) = grid.slot(start) else {
                        return Ok(());
                    };
                    if let Some(metric) = finish {
                        while unfinished < slot {
                            let r = grid.slot_range(unfinished);
                            if part.range.from_ms <= r.from_ms && r.to_ms <= part.range.to_ms {
                                groups.finish_slot(unfinished, metric);
                            }
                            unfinished += 1;
                        }
                    }
                    let g = match group_of.get(key) {
                        Some(&g) => g,
                        None => {
                            let labels = key_idx
                                .iter()
                                .map(|&i| key.0.get(i).cloned().unwrap_or_default())
                                .collect();
                            let g = groups.id(labels);
                            group_of.insert(key.clone(), g);
                            g
                        }
                    };
                    groups.acc(g, slot).add_rollup(r)
                })?;
            }
            None => {
                // A piece of one slot of a rollup-served query: let storage
                // answer whole minutes from rollups where that is exact.
                let slot = grid.slot(part.range.from_ms);
                let one_slot = *whole
                    && slot.is_some()
                    && slot == grid.slot(part.range.to_ms.saturating_sub(1))
                    && raw_reason == RawReason::None;
                let done = match slot {
                    Some(slot) if one_slot => {
                        let mut sink = PartAcc {
                            groups: &mut groups,
                            group_of: &mut group_of,
                            key_idx: &key_idx,
                            dims,
                            filter: q.filter,
                            group_by: q.group_by,
                            slot,
                            last: None,
                            error: None,
                        };
                        let done = src.read_part(part.range, q.filter, &mut sink)?;
                        if let Some(e) = sink.error {
                            return Err(e.into());
                        }
                        done
                    }
                    _ => false,
                };
                if !done {
                    read_raw(
                        src,
                        q,
                        part.range,
                        dims,
                        via_rollup_dims,
                        &key_idx,
                        &mut groups,
                    )?
                }
            }
        }
    }
    if let Some(metric) = finish {
        // Deferred digests are decoded only by finishing.
        for slot in 0..grid.n {
            groups.finish_slot(slot, metric);
        }
    }
    Ok((groups.list, groups.accs))
}

/// Folds what [`DataSource::read_part`] reads into one slot's accumulators.
struct PartAcc<'a> {
    groups: &'a mut Groups,
    /// Rollup group key → group id (shared with the rollup parts).
    group_of: &'a mut FnvMap<GroupKey, usize>,
    /// Positions of the group_by dims inside a rollup GroupKey.
    key_idx: &'a [usize],
    dims: &'a [Dim],
    filter: &'a RowFilter,
    group_by: &'a [Dim],
    slot: usize,
    /// The group of the last raw call (calls come in runs of one group).
    last: Option<usize>,
    /// The first error adding a rollup (the sink's methods cannot return one).
    error: Option<StorageError>,
}

impl PartAcc<'_> {
    fn key_group(&mut self, key: &GroupKey) -> usize {
        if let Some(&g) = self.group_of.get(key) {
            return g;
        }
        let labels = self
            .key_idx
            .iter()
            .map(|&i| key.0.get(i).cloned().unwrap_or_default())
            .collect();
        let g = self.groups.id(labels);
        self.group_of.insert(key.clone(), g);
        g
    }

    /// The group of a quality/feedback row's call (`None`: filtered out).
    fn row_group(&mut self, r: Option<&RequestRef>) -> Option<usize> {
        let empty;
        let key = match r {
            Some(r) => &r.group,
            None => {
                empty = GroupKey(vec![String::new(); self.dims.len()]);
                &empty
            }
        };
        key_matches(self.filter, self.dims, key).then(|| self.key_group(key))
    }
}

impl PartSink for PartAcc<'_> {
    fn rollup(&mut self, _bucket_ms: i64, group: &GroupKey, rollup: &sextant_storage::Rollup) {
        let g = self.key_group(group);
        let added = self
            .groups
            .acc(g, self.slot)
            .add_rollup(&sextant_storage::RollupView::of(rollup));
        if let Err(e) = added {
            self.error.get_or_insert(e);
        }
    }

    fn call(&mut self, c: &LlmCall) {
        let same = |labels: &[String]| {
            labels
                .iter()
                .zip(self.group_by)
                .all(|(l, d)| l.as_str() == d.value_of(c))
        };
        let list = &self.groups.list;
        let found = match self.last {
            Some(g) if same(&list[g].0) => Some(g),
            // Few groups: find one by comparing labels, allocating nothing.
            _ if list.len() <= 16 => list.iter().position(|(l, _)| same(l)),
            _ => None,
        };
        let g = match found {
            Some(g) => g,
            None => {
                let labels = self
                    .group_by
                    .iter()
                    .map(|d| d.value_of(c).to_string())
                    .collect();
                self.groups.id(labels)
            }
        };
        self.last = Some(g);
        self.groups.acc(g, self.slot).add_call(c);
    }

    fn quality(&mut self, x: &Quality, r: Option<&RequestRef>) {
        if let Some(g) = self.row_group(r) {
            self.groups.acc(g, self.slot).add_quality(x);
        }
    }

    fn feedback(&mut self, x: &Feedback, r: Option<&RequestRef>) {
        if let Some(g) = self.row_group(r) {
            self.groups.acc(g, self.slot).add_feedback(x);
        }
    }
}

fn add_to(groups: &mut Groups, labels: Vec<String>, slot: usize, _needs: Needs) -> &mut Acc {
    let g = groups.id(labels);
    groups.acc(g, slot)
}

/// True when a rollup group key (in `dims` order) passes `filter`.
fn key_matches(filter: &RowFilter, dims: &[Dim], key: &GroupKey) -> bool {
    filter.equals.iter().all(|(d, values)| {
        let v = dims
            .iter()
            .position(|x| x == d)
            .and_then(|i| key.0.get(i))
            .map(String::as_str)
            .unwrap_or("");
        values.iter().any(|want| want == v)
    })
}

fn read_raw(
    src: &dyn DataSource,
    q: &Query<'_>,
    range: TimeRange,
    dims: &[Dim],
    via_rollup_dims: bool,
    key_idx: &[usize],
    groups: &mut Groups,
) -> Result<(), QueryError> {
    let grid = q.grid;
    let needs = q.needs;
    let labels_of = |c: &LlmCall| -> Vec<String> {
        q.group_by
            .iter()
            .map(|d| d.value_of(c).to_string())
            .collect()
    };
    // request_id → the call's labels (None: the call does not pass the filter).
    let mut joined: HashMap<String, Option<Vec<String>>> = HashMap::new();
    src.scan_calls(range, q.filter, &mut |c| {
        let Some(slot) = grid.slot(c.timestamp_ms) else {
            return;
        };
        let labels = labels_of(c);
        if !via_rollup_dims {
            joined.insert(c.request_id.clone(), Some(labels.clone()));
        }
        add_to(groups, labels, slot, needs).add_call(c);
    })?;

    if via_rollup_dims {
        // The request index carries the call's rollup group: no join needed.
        let empty = GroupKey(vec![String::new(); dims.len()]);
        let resolve = |r: Option<&RequestRef>| -> Option<Vec<String>> {
            let key = r.map(|r| &r.group).unwrap_or(&empty);
            key_matches(q.filter, dims, key).then(|| {
                key_idx
                    .iter()
                    .map(|&i| key.0.get(i).cloned().unwrap_or_default())
                    .collect()
            })
        };
        src.scan_quality(range, &mut |x, r| {
            if let (Some(slot), Some(labels)) = (grid.slot(x.timestamp_ms), resolve(r)) {
                add_to(groups, labels, slot, needs).add_quality(x);
            }
        })?;
        src.scan_feedback(range, &mut |x, r| {
            if let (Some(slot), Some(labels)) = (grid.slot(x.timestamp_ms), resolve(r)) {
                add_to(groups, labels, slot, needs).add_feedback(x);
            }
        })?;
        return Ok(());
    }

    // Non-rollup dims: join quality and feedback to their calls.
    let mut quality: Vec<(Quality, Option<RequestRef>)> = Vec::new();
    src.scan_quality(range, &mut |x, r| {
        if grid.slot(x.timestamp_ms).is_some() {
            quality.push((x.clone(), r.cloned()));
        }
    })?;
    let mut feedback: Vec<(Feedback, Option<RequestRef>)> = Vec::new();
    src.scan_feedback(range, &mut |x, r| {
        if grid.slot(x.timestamp_ms).is_some() {
            feedback.push((x.clone(), r.cloned()));
        }
    })?;
    let mut resolve =
        |request_id: &str, r: Option<&RequestRef>| -> Result<Option<Vec<String>>, QueryError> {
            if let Some(hit) = joined.get(request_id) {
                return Ok(hit.clone());
            }
            // The call is outside this part (or filtered out): look it up by its timestamp.
            let mut found: Option<LlmCall> = None;
            if let Some(r) = r {
                let at = TimeRange::new(r.timestamp_ms, r.timestamp_ms.saturating_add(1));
                src.scan_calls(at, &RowFilter::default(), &mut |c| {
                    if c.request_id == request_id {
                        found = Some(c.clone());
                    }
                })?;
            }
            // A call that is unknown (or past raw retention) has every dim "".
            let call = found.unwrap_or_default();
            let hit = q.filter.matches(&call).then(|| labels_of(&call));
            joined.insert(request_id.to_string(), hit.clone());
            Ok(hit)
        };
    for (x, r) in &quality {
        if let (Some(slot), Some(labels)) = (
            grid.slot(x.timestamp_ms),
            resolve(&x.request_id, r.as_ref())?,
        ) {
            add_to(groups, labels, slot, needs).add_quality(x);
        }
    }
    for (x, r) in &feedback {
        if let (Some(slot), Some(labels)) = (
            grid.slot(x.timestamp_ms),
            resolve(&x.request_id, r.as_ref())?,
        ) {
            add_to(groups, labels, slot, needs).add_feedback(x);
        }
    }
    Ok(())
}
