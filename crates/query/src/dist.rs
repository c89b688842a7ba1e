//! Distributions merged from many digests: the union of their centroids
//! (never re-compressed), plus raw samples.
//!
//! **Small sets** (≤ 4,096 centroids and samples) are kept as they are;
//! quantiles sort them and interpolate between centroid mid-ranks as a
//! t-digest does — over the *uncompressed* union, so a merge is at least as
//! accurate as merging into one digest.
//!
//! **Large sets** (a year of day rollups is ~73,000 centroids per group) are
//! binned as they arrive by a monotone key — the float's sign, exponent and
//! top 8 mantissa bits: 256 bins per binade, ≤ 0.4 % wide in value — each
//! bin keeping its weight and weighted mean. A bin is then a centroid whose
//! members lie within 0.4 % of each other, and quantiles interpolate between
//! the non-empty bins as between centroids: binning adds at most 0.4 %
//! relative value error, and reading a quantile is O(bins), not O(centroids).
//! Magnitudes are clamped to [1e-9, 1e60] for keying only (a bin's mean stays
//! exact), which bounds the number of bins.
//!
//! The KS distance is exact for small sets and compares the two bin
//! histograms for large ones.
//!
//! **Invariant:** when every sample is raw, quantiles are the seed's exact
//! `sorted[int(n·q)]` and the KS distance is the exact two-sample statistic.

#[cfg(test)]
use sextant_storage::Digest;
use sextant_storage::{DigestRef, StorageError};

use crate::stats::seed_percentile;

/// Sets larger than this are binned.
const SORT_LIMIT: usize = 4096;
/// Mantissa bits kept in a bin key (256 bins per binade, ≤ 0.4 % wide).
const BIN_MANTISSA_BITS: u32 = 8;

type SortBuffers = (Vec<(f64, f64)>, Vec<(f64, f64)>);

thread_local! {
    /// Reused merge buffers of [`Dist::quantiles`] over small sets.
    static SORT_BUFFERS: std::cell::RefCell<SortBuffers> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new()))
    };
}

/// A distribution being accumulated.
#[derive(Debug, Clone)]
pub(crate) struct Dist {
    /// Every merged digest's centroids (mean, weight), one ascending run per
    /// digest, concatenated; emptied once the set is binned.
    cents: Vec<(f64, u64)>,
    /// End index (into `cents`) of each run.
    run_ends: Vec<usize>,
    /// Centroids merged so far.
    n_cents: usize,
    /// Σ weight of the kept centroids (`cents`).
    cent_weight: u64,
    /// True once the centroids are binned (`bins`) instead of kept (`cents`).
    binned: bool,
    /// Per bin: (Σ weight, Σ weight × value); index 0 is key `bin_base`.
    bins: Vec<(f64, f64)>,
    bin_base: u64,
    /// Raw samples, unsorted (never binned in place).
    raw: Vec<f64>,
    /// Exact bounds of the digest part (+inf / −inf when none).
    min: f64,
    max: f64,
    /// Stored digests' means are kept quantized (`pend*`) until
    /// [`Dist::prepare_quantile`] decodes what one quantile needs.
    defer: bool,
    /// Runs not decoded yet, in arrival order, all after `cents`' runs.
    pend: Vec<Pending>,
    /// Their quantized means, concatenated.
    pend_q: Vec<u32>,
    /// Their weights, for the runs whose weights are not all 1.
    pend_w: Vec<u64>,
    /// Σ weight of `pend`.
    pend_weight: u64,
    /// Set when `prepare_quantile` decoded only part of the runs: only
    /// that quantile may be read.
    truncated: bool,
}

/// A stored digest's run whose means are still quantized.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// End index into `pend_q`.
    q_end: usize,
    /// End index into `pend_w` (unchanged from the previous run's when unit).
    w_end: usize,
    unit: bool,
    min: f64,
    max: f64,
    weight: u64,
}

impl Default for Dist {
    fn default() -> Dist {
        Dist::EMPTY
    }
}

impl Dist {
    const EMPTY: Dist = Dist {
        cents: Vec::new(),
        run_ends: Vec::new(),
        n_cents: 0,
        cent_weight: 0,
        binned: false,
        bins: Vec::new(),
        bin_base: 0,
        raw: Vec::new(),
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        defer: false,
        pend: Vec::new(),
        pend_q: Vec::new(),
        pend_w: Vec::new(),
        pend_weight: 0,
        truncated: false,
    };
}

/// Emptied distributions kept for reuse, boxed as a [`DistSlot`] holds
/// them: one moves between a slot and the pool without being copied.
#[allow(clippy::vec_box)]
pub(crate) type DistPool = Vec<Box<Dist>>;

/// What an empty [`DistSlot`] reads as.
static EMPTY_DIST: Dist = Dist::EMPTY;

/// A [`Dist`] kept out of line, allocated on first write: an accumulator
/// is mostly exact sums, and a series holds one per (step, group), so its
/// distributions (~250 bytes each) stay out of the accumulators' vector.
/// Reads of an unallocated slot see an empty distribution.
#[derive(Debug, Default, Clone)]
pub(crate) struct DistSlot(Option<Box<Dist>>);

impl DistSlot {
    pub(crate) fn new(d: Box<Dist>) -> DistSlot {
        DistSlot(Some(d))
    }

    /// Takes the distribution out (the slot reads as empty afterwards).
    pub(crate) fn take(&mut self) -> Option<Box<Dist>> {
        self.0.take()
    }
}

impl std::ops::Deref for DistSlot {
    type Target = Dist;
    fn deref(&self) -> &Dist {
        self.0.as_deref().unwrap_or(&EMPTY_DIST)
    }
}

impl std::ops::DerefMut for DistSlot {
    fn deref_mut(&mut self) -> &mut Dist {
        self.0.get_or_insert_with(Box::default)
    }
}

/// A sorted weighted sample: (value, weight) ascending, with its total.
#[derive(Debug, Clone)]
pub(crate) struct Weighted {
    pub(crate) items: Vec<(f64, f64)>,
    pub(crate) total: f64,
}

/// A bin histogram: (Σ weight, Σ weight × value) per key from `base`.
#[derive(Debug, Clone, Default)]
struct Hist {
    base: u64,
    bins: Vec<(f64, f64)>,
}

impl Hist {
    fn add(&mut self, x: f64, w: f64) {
        let k = bin_key(x);
        if self.bins.is_empty() {
            self.base = k;
            self.bins.push((0.0, 0.0));
        } else if k < self.base {
            let grow = (self.base - k) as usize;
            self.bins
                .splice(0..0, std::iter::repeat_n((0.0, 0.0), grow));
            self.base = k;
        } else if k - self.base >= self.bins.len() as u64 {
            self.bins.resize((k - self.base + 1) as usize, (0.0, 0.0));
        }
        let b = &mut self.bins[(k - self.base) as usize];
        b.0 += w;
        b.1 += w * x;
    }

    /// Makes room for keys `lo..=hi` (one growth at most per side).
    fn reserve_range(&mut self, lo: f64, hi: f64) {
        self.add(lo, 0.0);
        self.add(hi, 0.0);
    }

    /// Adds one value, cheaply when it lies within a reserved range.
    #[inline]
    fn add_in_range(&mut self, m: f64, w: f64) {
        let i = bin_key(m).wrapping_sub(self.base) as usize;
        match self.bins.get_mut(i) {
            Some(b) => {
                b.0 += w;
                b.1 += w * m;
            }
            None => self.add(m, w),
        }
    }

    /// Adds ascending centroids: room for the first and last key once, then no checks.
    fn add_sorted(&mut self, c: &[(f64, u64)]) {
        let (Some(first), Some(last)) = (c.first(), c.last()) else {
            return;
        };
        self.add(first.0, 0.0);
        self.add(last.0, 0.0);
        let base = self.base;
        for &(m, w) in c {
            let b = &mut self.bins[(bin_key(m) - base) as usize];
            let w = w as f64;
            b.0 += w;
            b.1 += w * m;
        }
    }

    fn weight_at(&self, k: u64) -> f64 {
        k.checked_sub(self.base)
            .and_then(|i| self.bins.get(i as usize))
            .map_or(0.0, |b| b.0)
    }

    fn end(&self) -> u64 {
        self.base + self.bins.len() as u64
    }
}

impl Dist {
    /// Adds a digest's centroids (a stored digest's means are validated as
    /// they are read: an error leaves `self` holding part of it).
    pub(crate) fn add_digest(&mut self, d: DigestRef<'_>) -> Result<(), StorageError> {
        if d.is_empty() {
            return Ok(());
        }
        let (lo, hi) = (d.min(), d.max());
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
        if self.binned {
            // Straight into the bins (order does not matter here).
            let mut h = Hist {
                base: self.bin_base,
                bins: std::mem::take(&mut self.bins),
            };
            // Centroid means lie within the digest's exact bounds, so this
            // is the only growth (`add_in_range` still checks).
            h.reserve_range(lo, hi);
            let mut n = 0usize;
            let res = d.try_for_each_centroid(|m, w| {
                h.add_in_range(m, w as f64);
                n += 1;
            });
            self.n_cents += n;
            self.bin_base = h.base;
            self.bins = h.bins;
            return res;
        }
        if self.defer {
            let q_before = self.pend_q.len();
            if let Some(unit) = d.decode_quantized(&mut self.pend_q, &mut self.pend_w)? {
                self.pend.push(Pending {
                    q_end: self.pend_q.len(),
                    w_end: self.pend_w.len(),
                    unit,
                    min: lo,
                    max: hi,
                    weight: d.count(),
                });
                self.pend_weight += d.count();
                self.n_cents += self.pend_q.len() - q_before;
                if self.n_cents > SORT_LIMIT {
                    self.decode_pending(None);
                    self.bin_all();
                }
                return Ok(());
            }
        }
        // A digest in memory: decoded now, after the pending runs (run
        // order decides ties).
        self.decode_pending(None);
        let before = self.cents.len();
        if self.cents.capacity() == 0 {
            // Room for a few digests at once (a series step merges several
            // groups' digests): one allocation instead of three.
            self.cents.reserve((4 * d.max_centroids()).min(SORT_LIMIT));
        }
        let cents = &mut self.cents;
        let mut weight = 0u64;
        let res = d.try_for_each_centroid(|m, w| {
            weight += w;
            cents.push((m, w));
        });
        self.cent_weight += weight;
        self.n_cents += self.cents.len() - before;
        self.run_ends.push(self.cents.len());
        if self.n_cents > SORT_LIMIT {
            self.bin_all();
        }
        res
    }

    /// Replaces the kept centroids (all decoded) by their histogram.
    fn bin_all(&mut self) {
        debug_assert!(self.pend.is_empty() && !self.truncated);
        let mut h = Hist::default();
        for run in self.runs() {
            h.add_sorted(run);
        }
        self.cents = Vec::new();
        self.run_ends = Vec::new();
        self.bin_base = h.base;
        self.bins = h.bins;
        self.binned = true;
    }

    /// A distribution whose stored digests stay quantized until
    /// [`Dist::prepare_quantile`] (or any digest in memory) decodes them.
    pub(crate) fn deferred() -> Dist {
        Dist {
            defer: true,
            ..Dist::default()
        }
    }

    /// Decodes what reading the `q` quantile needs: when the quantile is
    /// walked (a few runs, no raw samples), only each pending run's end
    /// nearer to it — the centroids with at most the weight beyond the
    /// quantile's rank before them in their run, plus two — else all. After
    /// a partial decode only `quantile(q)` may be read.
    pub(crate) fn prepare_quantile(&mut self, q: f64) {
        if self.pend.is_empty() {
            return;
        }
        if !self.walkable() {
            self.decode_pending(None);
            return;
        }
        // As `quantile` computes the target rank and the walk's direction.
        let total = (self.cent_weight + self.pend_weight) as f64;
        let t = (q * total).clamp(0.0, total);
        if t >= total / 2.0 {
            self.decode_pending(Some((true, total - t)));
        } else {
            self.decode_pending(Some((false, t)));
        }
    }

    /// Decodes the pending runs, in order, into `cents`: all of each, or
    /// with `Some((from_top, beyond))` only its end from the top (or the
    /// bottom): every centroid with at most `beyond` weight before it from
    /// that end, plus two. Run weights count in full either way.
    fn decode_pending(&mut self, part: Option<(bool, f64)>) {
        if self.pend.is_empty() {
            return;
        }
        let (mut q0, mut w0) = (0usize, 0usize);
        self.cents.reserve(self.pend_q.len());
        self.run_ends.reserve(self.pend.len());
        let mut pend = std::mem::take(&mut self.pend);
        for p in pend.drain(..) {
            let qs = &self.pend_q[q0..p.q_end];
            let ws = &self.pend_w[w0..p.w_end];
            let n = qs.len();
            let weight = |i: usize| if p.unit { 1 } else { ws[i] };
            // Unit weights: the centroids with at most `beyond` before them
            // from an end are floor(beyond) + 1 of them.
            let unit_keep =
                |beyond: f64| (beyond.max(0.0).floor() as usize).saturating_add(3).min(n);
            let (lo, hi) = match part {
                None => (0, n),
                Some((true, beyond)) if p.unit => (n - unit_keep(beyond), n),
                Some((false, beyond)) if p.unit => (0, unit_keep(beyond)),
                Some((true, beyond)) => {
                    let (mut lo, mut before) = (n, 0u64);
                    while lo > 0 && before as f64 <= beyond {
                        lo -= 1;
                        before += weight(lo);
                    }
                    (lo.saturating_sub(2), n)
                }
                Some((false, beyond)) => {
                    let (mut hi, mut before) = (0, 0u64);
                    while hi < n && before as f64 <= beyond {
                        before += weight(hi);
                        hi += 1;
                    }
                    (0, (hi + 2).min(n))
                }
            };
            self.truncated |= hi - lo < n;
            if p.unit {
                self.cents.extend(
                    qs[lo..hi]
                        .iter()
                        .map(|&q| (sextant_storage::dequantize_mean(q, p.min, p.max), 1)),
                );
            } else {
                self.cents.extend(
                    qs[lo..hi]
                        .iter()
                        .zip(&ws[lo..hi])
                        .map(|(&q, &w)| (sextant_storage::dequantize_mean(q, p.min, p.max), w)),
                );
            }
            self.run_ends.push(self.cents.len());
            self.cent_weight += p.weight;
            q0 = p.q_end;
            w0 = p.w_end;
        }
        self.pend = pend;
        self.pend_q.clear();
        self.pend_w.clear();
        self.pend_weight = 0;
    }

    /// The kept centroid runs (each ascending).
    fn runs(&self) -> impl Iterator<Item = &[(f64, u64)]> + '_ {
        let mut start = 0;
        self.run_ends.iter().map(move |&end| {
            let run = &self.cents[start..end];
            start = end;
            run
        })
    }

    /// Empties `self` for reuse: its centroid buffers stay (cleared,
    /// capacity kept); returns whether there were any.
    pub(crate) fn reset(&mut self, defer: bool) -> bool {
        let mut d = Dist {
            cents: std::mem::take(&mut self.cents),
            run_ends: std::mem::take(&mut self.run_ends),
            pend: std::mem::take(&mut self.pend),
            pend_q: std::mem::take(&mut self.pend_q),
            defer,
            ..Dist::EMPTY
        };
        d.cents.clear();
        d.run_ends.clear();
        d.pend.clear();
        d.pend_q.clear();
        let kept = d.cents.capacity() > 0 || d.pend_q.capacity() > 0;
        *self = d;
        kept
    }

    pub(crate) fn add_raw(&mut self, x: f64) {
        self.raw.push(x);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.n_cents == 0 && self.raw.is_empty()
    }

    /// Exact bounds over digests and raw samples.
    fn bounds(&self) -> (f64, f64) {
        let lo = self.raw.iter().copied().fold(self.min, f64::min);
        let hi = self.raw.iter().copied().fold(self.max, f64::max);
        (lo, hi)
    }

    /// Every sample as (value, weight), sorted; only for unbinned sets.
    ///
    /// The runs (and the sorted raw samples as a last run) are merged, ties
    /// going to the earlier run: the same order as a stable sort of their
    /// concatenation, without the sort.
    fn sorted(&self) -> Weighted {
        let (mut items, mut scratch) = (Vec::new(), Vec::new());
        let total = self.sorted_into(&mut items, &mut scratch);
        Weighted { items, total }
    }

    /// [`Dist::sorted`] into reused buffers; returns the total weight.
    fn sorted_into(&self, items: &mut Vec<(f64, f64)>, scratch: &mut Vec<(f64, f64)>) -> f64 {
        debug_assert!(
            self.pend.is_empty() && !self.truncated,
            "read before prepare_quantile"
        );
        items.clear();
        items.reserve(self.n_cents + self.raw.len());
        for run in self.runs() {
            merge_into(items, scratch, run.iter().map(|&(m, w)| (m, w as f64)));
        }
        if !self.raw.is_empty() {
            let mut raw = self.raw.clone();
            raw.sort_by(f64::total_cmp);
            merge_into(items, scratch, raw.iter().map(|&x| (x, 1.0)));
        }
        items.iter().map(|c| c.1).sum()
    }

    /// The histogram of every centroid and raw sample.
    fn hist(&self) -> Hist {
        debug_assert!(
            self.pend.is_empty() && !self.truncated,
            "read before prepare_quantile"
        );
        let mut h = if self.binned {
            Hist {
                base: self.bin_base,
                bins: self.bins.clone(),
            }
        } else {
            let mut h = Hist::default();
            for run in self.runs() {
                h.add_sorted(run);
            }
            h
        };
        for &x in &self.raw {
            h.add(x, 1.0);
        }
        h
    }

    /// A few unbinned runs (pending ones counted) and no raw samples:
    /// quantiles walk the runs.
    fn walkable(&self) -> bool {
        self.n_cents > 0
            && !self.binned
            && self.raw.is_empty()
            && self.run_ends.len() + self.pend.len() <= MAX_WALK_RUNS
    }

    /// The `q` quantile estimate: `quantiles(&[q])[0]`, without allocating
    /// for the small sets of a series step.
    pub(crate) fn quantile(&self, q: f64) -> Option<f64> {
        debug_assert!(self.pend.is_empty(), "read before prepare_quantile");
        if self.walkable() {
            let (lo, hi) = self.bounds();
            let mut runs: [&[(f64, u64)]; MAX_WALK_RUNS] = [&[]; MAX_WALK_RUNS];
            let k = self.run_ends.len();
            for (slot, run) in runs.iter_mut().zip(self.runs()) {
                *slot = run;
            }
            let total = self.cent_weight as f64;
            let t = (q * total).clamp(0.0, total);
            return Some(walk_quantile(&runs[..k], total, t, lo, hi));
        }
        self.quantiles(&[q])[0]
    }

    /// Quantile estimates for each of `qs`; `None` when there are no samples.
    pub(crate) fn quantiles(&self, qs: &[f64]) -> Vec<Option<f64>> {
        if self.is_empty() {
            return vec![None; qs.len()];
        }
        if self.n_cents == 0 {
            let mut v = self.raw.clone();
            v.sort_by(f64::total_cmp);
            return qs.iter().map(|&q| Some(seed_percentile(&v, q))).collect();
        }
        let (lo, hi) = self.bounds();
        let points = if self.binned {
            // Every non-empty bin acts as a centroid at its weighted mean.
            let h = self.hist();
            let items: Vec<(f64, f64)> = h
                .bins
                .iter()
                .filter(|b| b.0 > 0.0)
                .map(|&(w, s)| ((s / w).clamp(lo, hi), w))
                .collect();
            let total = items.iter().map(|c| c.1).sum();
            Weighted { items, total }
        } else if self.walkable() {
            // Small sets of a few runs (a series step): walked, not merged.
            return qs.iter().map(|&q| self.quantile(q)).collect();
        } else {
            // Small sets: merged in per-thread buffers.
            return SORT_BUFFERS.with(|b| {
                let (items, scratch) = &mut *b.borrow_mut();
                let total = self.sorted_into(items, scratch);
                qs.iter()
                    .map(|&q| {
                        let t = (q * total).clamp(0.0, total);
                        Some(interpolate(items, total, t, lo, hi))
                    })
                    .collect()
            });
        };
        qs.iter()
            .map(|&q| {
                let t = (q * points.total).clamp(0.0, points.total);
                Some(interpolate(&points.items, points.total, t, lo, hi))
            })
            .collect()
    }
}

/// Merges the ascending `run` into the ascending `acc` (ties: `acc` first,
/// as a stable sort of `acc ++ run` orders them); `scratch` is reused.
fn merge_into(
    acc: &mut Vec<(f64, f64)>,
    scratch: &mut Vec<(f64, f64)>,
    run: impl ExactSizeIterator<Item = (f64, f64)>,
) {
    if run.len() == 0 {
        return;
    }
    let mut run = run.peekable();
    if acc.is_empty() {
        acc.extend(run);
        return;
    }
    scratch.clear();
    scratch.reserve(acc.len() + run.len());
    let mut i = 0;
    while let Some(&b) = run.peek() {
        if i < acc.len() && acc[i].0.total_cmp(&b.0).is_le() {
            scratch.push(acc[i]);
            i += 1;
        } else {
            scratch.push(b);
            run.next();
        }
    }
    scratch.extend_from_slice(&acc[i..]);
    std::mem::swap(acc, scratch);
}

/// Two-sample KS distance between two distributions; `None` when either is
/// empty. Exact for raw samples and small centroid sets; large sets are
/// compared over common bins (≤ 0.4 % wide), which can only miss a
/// difference arising inside one bin.
pub(crate) fn ks_distance(a: &Dist, b: &Dist) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    if !a.binned && !b.binned && a.n_cents + a.raw.len() + b.n_cents + b.raw.len() <= 2 * SORT_LIMIT
    {
        return Some(ks_weighted(&a.sorted(), &b.sorted()));
    }
    let (ha, hb) = (a.hist(), b.hist());
    let ta: f64 = ha.bins.iter().map(|x| x.0).sum();
    let tb: f64 = hb.bins.iter().map(|x| x.0).sum();
    let (mut ca, mut cb, mut d) = (0.0f64, 0.0f64, 0.0f64);
    for k in ha.base.min(hb.base)..ha.end().max(hb.end()) {
        ca += ha.weight_at(k);
        cb += hb.weight_at(k);
        d = d.max((ca / ta - cb / tb).abs());
    }
    Some(d)
}

/// Two-sample KS distance between weighted samples: the largest difference
/// of their step CDFs, evaluated at every value of either.
pub(crate) fn ks_weighted(a: &Weighted, b: &Weighted) -> f64 {
    if a.total <= 0.0 || b.total <= 0.0 {
        return 0.0;
    }
    let (x, y) = (&a.items, &b.items);
    let (mut i, mut j) = (0usize, 0usize);
    let (mut ca, mut cb) = (0.0f64, 0.0f64);
    let mut d = 0.0f64;
    while i < x.len() || j < y.len() {
        let v = match (x.get(i), y.get(j)) {
            (Some(p), Some(q)) => p.0.min(q.0),
            (Some(p), None) => p.0,
            (None, Some(q)) => q.0,
            (None, None) => break,
        };
        while i < x.len() && x[i].0 <= v {
            ca += x[i].1;
            i += 1;
        }
        while j < y.len() && y[j].0 <= v {
            cb += y[j].1;
            j += 1;
        }
        d = d.max((ca / a.total - cb / b.total).abs());
    }
    d
}

/// t-digest interpolation over sorted centroids `c` (total weight `total`)
/// for target rank `t`: centroid means sit at their mid-ranks, the tails
/// interpolate to the exact `lo` / `hi`, and two adjacent singletons are not
/// interpolated (the value itself).
fn interpolate(c: &[(f64, f64)], total: f64, t: f64, lo: f64, hi: f64) -> f64 {
    let Some(&(m0, w0)) = c.first() else {
        return lo;
    };
    if t < w0 / 2.0 {
        return below_first(m0, w0, t, lo, hi);
    }
    let mut cum = 0.0;
    for win in c.windows(2) {
        let (ma, wa) = win[0];
        let (mb, wb) = win[1];
        if t < cum + wa + wb / 2.0 {
            return between(ma, wa, mb, wb, cum, t, lo, hi);
        }
        cum += wa;
    }
    let &(ml, wl) = c.last().unwrap_or(&(hi, 1.0));
    above_last(ml, wl, cum, total, t, lo, hi)
}

/// [`interpolate`] when `t` is below the first centroid's mid-rank.
#[inline]
fn below_first(m0: f64, w0: f64, t: f64, lo: f64, hi: f64) -> f64 {
    let mid0 = w0 / 2.0;
    if w0 > 1.0 {
        return (lo + (m0 - lo) * (t / mid0).clamp(0.0, 1.0)).clamp(lo, hi);
    }
    m0.clamp(lo, hi)
}

/// [`interpolate`] between adjacent centroids a and b (`cum`: the weight
/// before a), the first pair with `t` below b's mid-rank.
#[allow(clippy::too_many_arguments)]
#[inline]
fn between(ma: f64, wa: f64, mb: f64, wb: f64, cum: f64, t: f64, lo: f64, hi: f64) -> f64 {
    let mid_a = cum + wa / 2.0;
    let mid_b = cum + wa + wb / 2.0;
    if wa == 1.0 && wb == 1.0 {
        return if t < cum + wa { ma } else { mb };
    }
    let f = ((t - mid_a) / (mid_b - mid_a)).clamp(0.0, 1.0);
    (ma + (mb - ma) * f).clamp(lo, hi)
}

/// [`interpolate`] when `t` is at or above the last centroid's mid-rank
/// (`cum`: the weight before it).
#[inline]
fn above_last(ml: f64, wl: f64, cum: f64, total: f64, t: f64, lo: f64, hi: f64) -> f64 {
    let mid_l = cum + wl / 2.0;
    if wl > 1.0 && total > mid_l {
        return (ml + (hi - ml) * ((t - mid_l) / (total - mid_l)).clamp(0.0, 1.0)).clamp(lo, hi);
    }
    ml.clamp(lo, hi)
}

/// Runs the quantile walks take at most (more go through the merge).
const MAX_WALK_RUNS: usize = 16;

/// [`interpolate`] over the stable merge of `runs` (each ascending; equal
/// values in run order), without building it: walks the runs together from
/// the end nearer to `t` and stops at the centroids around it, so a p95
/// visits ~5 % of them. Same arithmetic as [`interpolate`], so the same
/// answer. `total` is the runs' total weight; at most [`MAX_WALK_RUNS`] runs.
fn walk_quantile(runs: &[&[(f64, u64)]], total: f64, t: f64, lo: f64, hi: f64) -> f64 {
    let k = runs.len().min(MAX_WALK_RUNS);
    let runs = &runs[..k];
    if t >= total / 2.0 {
        // From the top: the merge reversed (largest first, ties later run first).
        let mut end = [0usize; MAX_WALK_RUNS];
        for (e, r) in end.iter_mut().zip(runs) {
            *e = r.len();
        }
        let mut after = 0.0;
        let mut above: Option<(f64, f64)> = None;
        loop {
            let mut best = usize::MAX;
            let mut bm = f64::NEG_INFINITY;
            for (i, r) in runs.iter().enumerate() {
                if end[i] > 0 {
                    let m = r[end[i] - 1].0;
                    if best == usize::MAX || m >= bm {
                        best = i;
                        bm = m;
                    }
                }
            }
            if best == usize::MAX {
                // Every mid-rank is above t: t is below the first one's.
                let Some((m0, w0)) = above else {
                    return lo;
                };
                return below_first(m0, w0, t, lo, hi);
            }
            end[best] -= 1;
            let (m, w) = runs[best][end[best]];
            let w = w as f64;
            let cum = total - after - w;
            if t < cum + w / 2.0 {
                after += w;
                above = Some((m, w));
                continue;
            }
            return match above {
                None => above_last(m, w, cum, total, t, lo, hi),
                Some((mb, wb)) => between(m, w, mb, wb, cum, t, lo, hi),
            };
        }
    }
    // From the bottom: the merge (smallest first, ties earlier run first).
    let mut pos = [0usize; MAX_WALK_RUNS];
    let mut cum = 0.0;
    let mut below: Option<(f64, f64)> = None;
    loop {
        let mut best = usize::MAX;
        let mut bm = f64::INFINITY;
        for (i, r) in runs.iter().enumerate() {
            if let Some(&(m, _)) = r.get(pos[i]) {
                if best == usize::MAX || m < bm {
                    best = i;
                    bm = m;
                }
            }
        }
        if best == usize::MAX {
            let Some((ml, wl)) = below else {
                return lo;
            };
            return above_last(ml, wl, cum, total, t, lo, hi);
        }
        let (m, w) = runs[best][pos[best]];
        pos[best] += 1;
        let w = w as f64;
        match below {
            None if t < w / 2.0 => return below_first(m, w, t, lo, hi),
            None => {}
            Some((ma, wa)) => {
                if t < cum + wa + w / 2.0 {
                    return between(ma, wa, m, w, cum, t, lo, hi);
                }
                cum += wa;
            }
        }
        below = Some((m, w));
    }
}

/// A monotone bin key: the order-preserving bit pattern of `x` (magnitude
/// clamped to [1e-9, 1e60]), keeping sign, exponent and 8 mantissa bits.
fn bin_key(x: f64) -> u64 {
    let m = x.abs().clamp(1e-9, 1e60);
    let b = if x < 0.0 { -m } else { m }.to_bits();
    let ordered = if b >> 63 == 1 { !b } else { b | (1 << 63) };
    ordered >> (52 - BIN_MANTISSA_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rank_error(sorted: &[f64], v: f64, q: f64) -> f64 {
        let n = sorted.len() as f64;
        let below = sorted.partition_point(|&x| x < v) as f64 / n;
        let at = sorted.partition_point(|&x| x <= v) as f64 / n;
        if q < below {
            below - q
        } else if q > at {
            q - at
        } else {
            0.0
        }
    }

    fn lognormal(rng: &mut fastrand::Rng, n: usize) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let z: f64 = (0..6).map(|_| rng.f64()).sum::<f64>() - 3.0;
                500.0 * (z * 0.9).exp()
            })
            .collect()
    }

    #[test]
    fn raw_only_quantiles_are_the_seed_rule() {
        let mut d = Dist::default();
        for x in [5.0, 1.0, 4.0, 2.0, 3.0] {
            d.add_raw(x);
        }
        assert_eq!(
            d.quantiles(&[0.5, 0.99, 0.0]),
            vec![Some(3.0), Some(5.0), Some(1.0)]
        );
        assert_eq!(Dist::default().quantiles(&[0.5]), vec![None]);
    }

    /// Both paths — sorting a small union, binning a large one — stay within
    /// the rollup bound (p50 ≤ 0.01, p95/p99 ≤ 0.005 in rank) of the exact answer.
    #[test]
    fn merged_digest_quantiles_stay_within_the_rank_bound() {
        let mut rng = fastrand::Rng::with_seed(9);
        for (digests, per, size) in [
            (3usize, 2000usize, 200usize),
            (400, 300, 200),
            (2000, 60, 50),
        ] {
            let mut d = Dist::default();
            let mut all = Vec::new();
            for _ in 0..digests {
                let xs = lognormal(&mut rng, per);
                let mut g = Digest::new(size);
                xs.iter().for_each(|&x| g.add(x));
                g.compress();
                d.add_digest((&g).into()).unwrap();
                all.extend(xs);
            }
            for _ in 0..50 {
                let x = lognormal(&mut rng, 1)[0];
                d.add_raw(x);
                all.push(x);
            }
            all.sort_by(f64::total_cmp);
            let qs = [0.5, 0.95, 0.99, 0.0, 1.0];
            let got = d.quantiles(&qs);
            for (q, v) in qs.iter().zip(&got) {
                let v = v.unwrap();
                let err = rank_error(&all, v, *q);
                let bound = if *q == 0.5 { 0.01 } else { 0.005 };
                assert!(
                    err <= bound,
                    "{digests}×{per}: q={q} v={v} rank error {err}"
                );
            }
            assert_eq!(got[3], Some(all[0]), "q=0 is the exact min");
            assert_eq!(got[4], Some(*all.last().unwrap()), "q=1 is the exact max");
        }
    }

    #[test]
    fn ks_of_weighted_samples() {
        let w = |v: &[f64]| Weighted {
            items: v.iter().map(|&x| (x, 1.0)).collect(),
            total: v.len() as f64,
        };
        assert_eq!(ks_weighted(&w(&[1.0, 2.0, 3.0]), &w(&[1.0, 2.0, 3.0])), 0.0);
        assert_eq!(ks_weighted(&w(&[1.0, 2.0, 3.0]), &w(&[4.0, 5.0])), 1.0);
        assert!(
            (ks_weighted(&w(&[1.0, 2.0, 3.0, 4.0]), &w(&[3.0, 4.0, 5.0, 6.0])) - 0.5).abs() < 1e-12
        );
        // Weights count: one centroid of weight 3 at 1.0 equals three samples at 1.0.
        let a = Weighted {
            items: vec![(1.0, 3.0), (2.0, 1.0)],
            total: 4.0,
        };
        assert_eq!(ks_weighted(&a, &w(&[1.0, 1.0, 1.0, 2.0])), 0.0);
    }

    #[test]
    fn binned_ks_agrees_with_the_exact_distance() {
        let mut rng = fastrand::Rng::with_seed(2);
        let (mut a, mut b) = (Dist::default(), Dist::default());
        let (mut ra, mut rb) = (Vec::new(), Vec::new());
        for _ in 0..60 {
            let xs = lognormal(&mut rng, 500);
            let ys: Vec<f64> = lognormal(&mut rng, 500)
                .into_iter()
                .map(|y| y * 1.3)
                .collect();
            let (mut g, mut h) = (Digest::new(200), Digest::new(200));
            xs.iter().for_each(|&x| g.add(x));
            ys.iter().for_each(|&y| h.add(y));
            a.add_digest((&g).into()).unwrap();
            b.add_digest((&h).into()).unwrap();
            ra.extend(xs);
            rb.extend(ys);
        }
        let (mut ea, mut eb) = (Dist::default(), Dist::default());
        ra.iter().for_each(|&x| ea.add_raw(x));
        rb.iter().for_each(|&x| eb.add_raw(x));
        let exact = ks_distance(&ea, &eb).unwrap();
        let binned = ks_distance(&a, &b).unwrap();
        assert!(exact > 0.1, "a 30 % shift is visible: {exact}");
        assert!(
            (exact - binned).abs() < 0.01,
            "exact {exact} vs from digests {binned}"
        );
        assert_eq!(ks_distance(&a, &Dist::default()), None);
    }

    #[test]
    fn bin_keys_are_monotone_across_zero_and_binades() {
        let xs = [
            -1e9, -3.5, -1e-300, -0.0, 0.0, 1e-300, 0.001, 1.0, 1.01, 2.0, 3e5, 1e300,
        ];
        for w in xs.windows(2) {
            assert!(bin_key(w[0]) <= bin_key(w[1]), "{} vs {}", w[0], w[1]);
        }
        assert!(bin_key(1.0) < bin_key(1.01), "bins are narrower than 1 %");
    }

    #[test]
    fn values_spanning_huge_ranges_keep_a_bounded_histogram() {
        let mut d = Dist::default();
        for j in 0..30 {
            let mut g = Digest::new(200);
            for i in 0..400 {
                let x = if i % 2 == 0 {
                    1e-200 * (1.0 + i as f64)
                } else {
                    1e200 * (1.0 + (i + j) as f64)
                };
                g.add(x);
            }
            d.add_digest((&g).into()).unwrap();
        }
        assert!(d.binned);
        assert!(d.bins.len() < 2 * 230 * 256, "{} bins", d.bins.len());
        let got = d.quantiles(&[0.25, 0.75]);
        assert!(got[0].unwrap() < 1.0 && got[1].unwrap() > 1.0, "{got:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// The walk answers exactly what interpolating over the merge answers,
        /// ties between runs included.
        #[test]
        fn walked_quantiles_equal_merged_ones(
            runs in proptest::collection::vec(
                proptest::collection::vec((0u32..40, 1u64..4), 0..12), 1..MAX_WALK_RUNS + 1),
            qs in proptest::collection::vec(0.0f64..=1.0, 1..8),
        ) {
            let runs: Vec<Vec<(f64, u64)>> = runs
                .into_iter()
                .map(|mut r| {
                    r.sort_by_key(|x| x.0);
                    r.into_iter().map(|(m, w)| (f64::from(m) * 0.5, w)).collect()
                })
                .collect();
            let mut merged: Vec<(f64, f64)> = runs
                .iter()
                .flatten()
                .map(|&(m, w)| (m, w as f64))
                .collect();
            // Stable: equal values keep run order, as `sorted_into` merges them.
            merged.sort_by(|a, b| a.0.total_cmp(&b.0));
            let total: f64 = merged.iter().map(|c| c.1).sum();
            proptest::prop_assume!(total > 0.0);
            let (lo, hi) = (merged[0].0 - 1.0, merged[merged.len() - 1].0 + 1.0);
            let slices: Vec<&[(f64, u64)]> = runs.iter().map(Vec::as_slice).collect();
            for q in qs.into_iter().chain([0.0, 1.0, 0.5]) {
                let t = (q * total).clamp(0.0, total);
                let want = interpolate(&merged, total, t, lo, hi);
                let got = walk_quantile(&slices, total, t, lo, hi);
                proptest::prop_assert_eq!(got.to_bits(), want.to_bits(), "q {} t {}", q, t);
            }
        }
    }
}
