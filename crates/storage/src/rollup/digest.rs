//! [`Digest`]: a t-digest with an unsorted pending buffer and undecoded
//! encoded runs, so single adds, decodes and merges are amortized cheap, and
//! its compact encoding.
//!
//! Compression is the merging t-digest of the `tdigest` crate (same scale
//! function `k_to_q`, same greedy pass), reimplemented here over sorted runs
//! so that merging stored digests never goes through the crate's per-digest
//! sort and rebuild. Quantile and rank estimates are the crate's
//! (`TDigest::estimate_quantile` / `estimate_rank`), ported in `View` so
//! that they read the centroids in exactly their stored order: the crate's
//! constructor re-sorts by (mean, weight), and two centroids whose means
//! quantize to the same value would then swap places after a round trip
//! and move a quantile by up to the gap to the next centroid.
//!
//! **Invariants:**
//! - `count`, `min` and `max` are exact (count is an integer; min/max are f64
//!   min/max, order-independent); only the centroids are approximate.
//! - `centroids` is sorted by mean (ties keep merge order, which the
//!   encoding preserves); all weights are whole numbers ≥ 1.
//! - `Σ centroids weights + Σ pending weights + Σ encoded counts == count`.
//! - `pending` is folded in when it reaches `BUFFER_FACTOR × max_centroids`
//!   entries, and `encoded` when it holds more than [`LAZY_MAX_CENTROIDS`]
//!   centroids, so memory is bounded. A fold merges at most
//!   `BUFFER_FACTOR × max_centroids` new entries per compression pass.
//! - Every `encoded` run was fully validated by [`Digest::decode_from`]
//!   (lengths, weights, mean range), so decoding it later cannot fail.
//! - `view`, when set, is the compression of the current contents; every
//!   `&mut` method that changes the contents resets it.
//!
//! Encoding (inside a rollup, see docs/format/rollup.md): means quantized
//! to [`MEAN_MANTISSA_BITS`] mantissa bits and delta-coded. Version 2
//! (written for small digest sizes): centroid count, `count − n`, Rice
//! parameters, min and max as decimal-or-raw numbers, then one bit stream
//! of Rice-coded weights − 1 and mean deltas, preceded by its byte length.
//! Version 1 (read; written for large digest sizes): centroid count, exact
//! f64 min and max, weights as varints, mean deltas as varints. Both give
//! the same centroids for the same digest.

use std::fmt;
use std::sync::{Arc, OnceLock};

use tdigest::Centroid;

use super::wire::{self, varint, BitReader, Reader};
use crate::error::CodecError;

/// Pending entries (raw values or merged centroids) allowed per maximum
/// centroid before the buffer is compressed; also the batch size (per
/// maximum centroid) of one compression pass when folding.
const BUFFER_FACTOR: usize = 8;

/// Centroids a digest may hold as undecoded encoded runs (merged from
/// decoded rollups) before it folds them. ~2–3 bytes each, shared with the
/// decoded rollups: a few MB at most.
const LAZY_MAX_CENTROIDS: usize = 1 << 20;

/// Mantissa bits kept for each encoded centroid mean (f64 has 52). The mean
/// is rounded to nearest, so its relative error is at most 2^-(bits+1).
pub(crate) const MEAN_MANTISSA_BITS: u32 = 12;
const MEAN_SHIFT: u32 = 52 - MEAN_MANTISSA_BITS;

/// Largest digest size a decoder accepts (guards allocations).
pub(crate) const MAX_DIGEST_SIZE: usize = 1 << 16;

/// Largest centroid weight and total count a decoder accepts (f64-exact).
const MAX_WEIGHT: u64 = 1 << 52;

/// Largest Rice parameter of version-2 mean deltas (deltas are below
/// [`MEAN_Q_END`] < 2^24) and of weights − 1 (below [`MAX_WEIGHT`]).
const MAX_K_MEAN: u32 = 24;
const MAX_K_WEIGHT: u32 = 52;

/// A version-2 digest's bit stream: where it lies in its buffer and its
/// Rice parameters. `unit`: every weight is 1 (none coded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stream {
    at: usize,
    end: usize,
    kw: u32,
    km: u32,
    unit: bool,
}

impl Stream {
    /// Decodes the `n` centroids of the stream in `buf[self.at..self.end]`,
    /// calling `f(quantized mean, weight)` for each, and validates them as
    /// it goes: each mean finite (below [`MEAN_Q_END`]), weights summing to
    /// `count`, nothing but 0 padding after the last centroid. On an error
    /// `f` has seen a prefix.
    #[inline]
    fn for_each(
        &self,
        buf: &[u8],
        n: usize,
        count: u64,
        min: f64,
        mut f: impl FnMut(u64, u64),
    ) -> Result<(), &'static str> {
        let bits = buf.get(self.at..self.end).ok_or("stream out of range")?;
        let mut r = BitReader::new(bits);
        let mut q = quantize_floor(min);
        let max_qm = MEAN_Q_END >> self.km;
        if self.unit {
            for _ in 0..n {
                let d = r.rice(self.km, max_qm).ok_or(BAD_MEAN)?;
                q = next_mean(q, d)?;
                f(q, 1);
            }
        } else {
            let max_qw = MAX_WEIGHT >> self.kw;
            let mut sum: u64 = 0;
            for _ in 0..n {
                let w = r.rice(self.kw, max_qw).ok_or(BAD_WEIGHT)? + 1;
                // w < 2^54 and sum ≤ count ≤ 2^52: no overflow.
                sum += w;
                if sum > count {
                    return Err("centroid weights sum above the count");
                }
                let d = r.rice(self.km, max_qm).ok_or(BAD_MEAN)?;
                q = next_mean(q, d)?;
                f(q, w);
            }
            if sum != count {
                return Err("centroid weights do not sum to the count");
            }
        }
        if !r.at_padding() {
            return Err("bits left after the last centroid");
        }
        Ok(())
    }
}

const BAD_MEAN: &str = "mean delta cut off or out of range";
const BAD_WEIGHT: &str = "centroid weight cut off or out of range";

/// A version-2 digest's header, read and checked (see [`read_header_v2`]).
#[derive(Debug, Clone, Copy)]
struct HeaderV2 {
    n: usize,
    count: u64,
    min: f64,
    max: f64,
    stream: Stream,
}

/// Reads a version-2 digest up to the end of its bit stream (whose bytes
/// are stepped over, not decoded): centroid count (non-zero, at most the
/// digest size and the stream's bits), the weight above it (the total at
/// most [`MAX_WEIGHT`]), Rice parameters in range, min and max finite and
/// ordered, the stream within the bytes left.
fn read_header_v2(
    r: &mut Reader<'_>,
    field: &str,
    max_centroids: usize,
) -> Result<HeaderV2, CodecError> {
    let n = r.u64(field)?;
    if n == 0 || n > max_centroids as u64 {
        return Err(r.err(
            field,
            format!("centroid count {n} is zero or exceeds the digest size {max_centroids}"),
        ));
    }
    let extra = r.u64(field)?;
    let count = n
        .checked_add(extra)
        .filter(|&c| c <= MAX_WEIGHT)
        .ok_or_else(|| r.err(field, format!("total weight {n} + {extra} out of range")))?;
    let ks = r.u64(field)?;
    let (km, kw) = ((ks & 31) as u32, ks >> 5);
    if km > MAX_K_MEAN || kw > u64::from(MAX_K_WEIGHT) {
        return Err(r.err(field, format!("Rice parameters {km} / {kw} out of range")));
    }
    let tags = r.bytes(field, 1)?[0];
    let min = r.num(field, tags & 15)?;
    let max = r.num(field, tags >> 4)?;
    if min > max {
        return Err(r.err(field, format!("min {min} above max {max}")));
    }
    let len = r.u64(field)?;
    // Each centroid takes at least one bit.
    if len > r.remaining() as u64 || n > len.saturating_mul(8) {
        return Err(r.err(
            field,
            format!("bit stream of {len} bytes does not fit or cannot hold {n} centroids"),
        ));
    }
    let at = r.pos();
    r.bytes(field, len as usize)?;
    Ok(HeaderV2 {
        n: n as usize,
        count,
        min,
        max,
        stream: Stream {
            at,
            end: r.pos(),
            kw: kw as u32,
            km,
            unit: extra == 0,
        },
    })
}

/// A validated, not yet decoded digest encoding inside a shared payload.
#[derive(Clone)]
struct EncodedRun {
    bytes: Arc<[u8]>,
    /// Offset of the digest's first byte (its centroid count).
    start: usize,
    /// Offset of the first weight varint.
    weights_at: usize,
    /// Offset of the first mean varint.
    means_at: usize,
    /// Offset one past the digest's last byte.
    end: usize,
    /// A version-2 digest's bit stream (`weights_at`, `means_at` unused).
    v2: Option<Stream>,
    /// Number of centroids.
    n: usize,
    count: u64,
    min: f64,
    max: f64,
}

impl fmt::Debug for EncodedRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedRun")
            .field("bytes", &(self.end - self.start))
            .field("n", &self.n)
            .field("count", &self.count)
            .finish()
    }
}

impl EncodedRun {
    /// Appends the run's centroids (sorted by mean) to `out`.
    fn decode_into(&self, out: &mut Vec<Centroid>) {
        if let Some(s) = self.v2 {
            out.reserve(self.n);
            let (min, max) = (self.min, self.max);
            let res = s.for_each(&self.bytes[..self.end], self.n, self.count, min, |q, w| {
                let mean = from_order_key(q << MEAN_SHIFT).clamp(min, max);
                out.push(Centroid::new(mean, w as f64));
            });
            debug_assert!(res.is_ok(), "validated digest run failed to decode");
            return;
        }
        let b = &self.bytes[..self.end];
        let (mut wp, mut mp) = (self.weights_at, self.means_at);
        let mut q = quantize_floor(self.min);
        out.reserve(self.n);
        for _ in 0..self.n {
            // Validated by `Digest::decode_from`: these reads cannot fail.
            let (Some(w), Some(d)) = (varint(b, &mut wp), varint(b, &mut mp)) else {
                debug_assert!(false, "validated digest run failed to decode");
                return;
            };
            q = q.wrapping_add(d);
            let mean = dequantize(q).unwrap_or(self.max).clamp(self.min, self.max);
            out.push(Centroid::new(mean, w as f64));
        }
    }
}

/// A mergeable quantile sketch: a t-digest with a small unsorted buffer so
/// single adds are cheap, and lazily decoded runs so decoding and merging
/// stored digests is cheap.
#[derive(Debug, Clone)]
pub struct Digest {
    max_centroids: usize,
    /// Compressed centroids, sorted by (mean, weight).
    centroids: Vec<Centroid>,
    /// Unsorted raw values (weight 1) and merged centroids.
    pending: Vec<Centroid>,
    /// Merged or decoded digests not decoded yet.
    encoded: Vec<EncodedRun>,
    /// Σ `n` over `encoded`.
    encoded_centroids: usize,
    count: u64,
    /// +inf when empty.
    min: f64,
    /// −inf when empty.
    max: f64,
    /// Cache: the compression of everything above, for reads.
    view: OnceLock<View>,
}

impl Digest {
    /// An empty digest of at most `max_centroids` centroids (at least 1).
    pub fn new(max_centroids: usize) -> Digest {
        let max_centroids = max_centroids.clamp(1, MAX_DIGEST_SIZE);
        Digest {
            max_centroids,
            centroids: Vec::new(),
            pending: Vec::new(),
            encoded: Vec::new(),
            encoded_centroids: 0,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            view: OnceLock::new(),
        }
    }

    /// Adds one value. Non-finite values are ignored (validation rejects them
    /// before they reach storage).
    pub fn add(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
        self.view = OnceLock::new();
        self.count += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.pending.push(Centroid::new(value, 1.0));
        self.maybe_compress();
    }

    /// Adds every value of `other` into `self`; `self` keeps its size.
    pub fn merge(&mut self, other: &Digest) {
        if other.count == 0 {
            return;
        }
        self.view = OnceLock::new();
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        if let Some(v) = other.view.get() {
            self.pending.extend_from_slice(v.centroids());
        } else {
            self.pending.extend_from_slice(&other.centroids);
            self.pending.extend_from_slice(&other.pending);
            self.encoded.extend_from_slice(&other.encoded);
            self.encoded_centroids += other.encoded_centroids;
        }
        self.maybe_compress();
    }

    /// Merges all `digests` into one digest of at most `max_centroids` centroids.
    pub fn merge_many<'a>(
        digests: impl IntoIterator<Item = &'a Digest>,
        max_centroids: usize,
    ) -> Digest {
        let mut out = Digest::new(max_centroids);
        for d in digests {
            out.merge(d);
        }
        out.compress();
        out
    }

    /// Estimated `q`-quantile (q in [0, 1], clamped); NaN when empty or q is NaN.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count == 0 || q.is_nan() {
            return f64::NAN;
        }
        self.view().quantile(q.clamp(0.0, 1.0))
    }

    /// Several quantiles with one compression of the pending buffer.
    pub fn quantiles(&self, qs: &[f64]) -> Vec<f64> {
        if self.count == 0 {
            return vec![f64::NAN; qs.len()];
        }
        let view = self.view();
        qs.iter()
            .map(|&q| {
                if q.is_nan() {
                    f64::NAN
                } else {
                    view.quantile(q.clamp(0.0, 1.0))
                }
            })
            .collect()
    }

    /// Estimated fraction of values ≤ `x`; NaN when empty or `x` is NaN.
    pub fn cdf(&self, x: f64) -> f64 {
        if self.count == 0 || x.is_nan() {
            return f64::NAN;
        }
        self.view().rank(x)
    }

    /// Number of values added (exact).
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Smallest value added (exact); `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// Largest value added (exact); `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The configured maximum number of centroids.
    pub fn max_centroids(&self) -> usize {
        self.max_centroids
    }

    /// The compressed centroids as `(mean, weight)`, ascending by mean.
    pub fn centroids(&self) -> Vec<(f64, u64)> {
        self.view()
            .centroids()
            .iter()
            .map(|c| (c.mean(), c.weight() as u64))
            .collect()
    }

    /// Calls `f(mean, weight)` for each compressed centroid, ascending by
    /// mean — the same sequence as [`Digest::centroids`], without allocating
    /// (once the compressed view is cached).
    pub fn for_each_centroid(&self, mut f: impl FnMut(f64, u64)) {
        for c in self.view().centroids() {
            f(c.mean(), c.weight() as u64);
        }
    }

    /// Number of compressed centroids (what [`Digest::centroids`] would return).
    pub fn centroid_count(&self) -> usize {
        self.view().centroids().len()
    }

    fn is_folded(&self) -> bool {
        self.pending.is_empty() && self.encoded.is_empty()
    }

    /// Folds the pending buffer and encoded runs into the centroids (no-op
    /// when there are none).
    pub fn compress(&mut self) {
        if self.is_folded() {
            return;
        }
        self.centroids = match self.view.get() {
            Some(v) => v.centroids().to_vec(),
            None => self.fold(self.max_centroids),
        };
        self.pending.clear();
        self.encoded.clear();
        self.encoded_centroids = 0;
    }

    /// Sets the maximum centroids to `max_centroids` and re-compresses.
    pub fn resize(&mut self, max_centroids: usize) {
        self.max_centroids = max_centroids.clamp(1, MAX_DIGEST_SIZE);
        self.centroids = self.fold(self.max_centroids);
        self.pending.clear();
        self.encoded.clear();
        self.encoded_centroids = 0;
        self.view = OnceLock::new();
    }

    fn maybe_compress(&mut self) {
        if self.pending.len() >= BUFFER_FACTOR * self.max_centroids
            || self.encoded_centroids > LAZY_MAX_CENTROIDS
        {
            self.compress();
        }
    }

    /// The compressed digest of everything held (computed once, cached).
    fn view(&self) -> &View {
        self.view.get_or_init(|| {
            let centroids = if self.count == 0 {
                Vec::new()
            } else if self.is_folded() {
                self.centroids.clone()
            } else {
                self.fold(self.max_centroids)
            };
            View {
                centroids,
                count: self.count as f64,
                min: self.min,
                max: self.max,
            }
        })
    }

    /// Compresses centroids + pending + encoded runs into at most
    /// `max_size` sorted centroids, `BUFFER_FACTOR × max_size` new entries
    /// per pass (the pending-buffer rule applied to stored runs too).
    fn fold(&self, max_size: usize) -> Vec<Centroid> {
        let batch = BUFFER_FACTOR * max_size;
        let mut cur = self.centroids.clone();
        let mut runs = Runs::default();
        if !self.pending.is_empty() {
            runs.start_run();
            runs.buf.extend_from_slice(&self.pending);
            // Stable, so ties keep merge order exactly as undecoded runs do.
            runs.buf.sort_by(|a, b| a.mean().total_cmp(&b.mean()));
        }
        for run in &self.encoded {
            if runs.buf.len() >= batch {
                runs.fold_into(&mut cur, max_size);
            }
            runs.start_run();
            run.decode_into(&mut runs.buf);
        }
        runs.fold_into(&mut cur, max_size);
        cur
    }

    /// Appends the version-2 encoding (docs/format/rollup.md): `n`, the
    /// weight above `n`, the Rice parameters, min and max as numbers, then
    /// the bit stream of Rice-coded weights − 1 and quantized-mean deltas
    /// (the first relative to min), preceded by its length in bytes.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>, version: u8) {
        // A digest that is exactly one decoded run of this version re-encodes to its bytes.
        if let [run] = self.encoded.as_slice() {
            if self.centroids.is_empty()
                && self.pending.is_empty()
                && run.n <= self.max_centroids
                && run.v2.is_some() == (version >= 2)
            {
                out.extend_from_slice(&run.bytes[run.start..run.end]);
                return;
            }
        }
        if version < 2 {
            return self.encode_v1_into(out);
        }
        let qw = self.quantized_centroids();
        let mut prev = quantize_floor(self.min);
        let deltas: Vec<u64> = qw
            .iter()
            .map(|&(q, _)| {
                // quantize(mean ≥ min) ≥ floor(min), and qw is sorted: never negative.
                let d = q.saturating_sub(prev);
                prev = prev.max(q);
                d
            })
            .collect();
        let n = qw.len() as u64;
        let extra = qw.iter().map(|&(_, w)| w - 1).sum::<u64>();
        let (km, _) = wire::best_rice_k(deltas.iter().copied(), MAX_K_MEAN);
        let kw = if extra == 0 {
            0
        } else {
            wire::best_rice_k(qw.iter().map(|&(_, w)| w - 1), MAX_K_WEIGHT).0
        };
        wire::put_u64(out, n);
        wire::put_u64(out, extra);
        wire::put_u64(out, u64::from(km | kw << 5));
        let (tmin, tmax) = (wire::num_tag(self.min), wire::num_tag(self.max));
        out.push(tmin.0 | tmax.0 << 4);
        wire::put_num(out, self.min, tmin);
        wire::put_num(out, self.max, tmax);
        let mut bits = wire::BitWriter::default();
        for (&(_, w), &d) in qw.iter().zip(&deltas) {
            if extra > 0 {
                bits.rice(w - 1, kw);
            }
            bits.rice(d, km);
        }
        let stream = bits.finish();
        wire::put_u64(out, stream.len() as u64);
        out.extend_from_slice(&stream);
    }

    /// (quantized mean, weight) of every centroid, in the centroids' order,
    /// which is sorted by mean; quantizing is monotone, so the quantized
    /// means ascend too. Centroids whose means quantize to one value keep
    /// their order: the decoder reads them back in it, so every estimate
    /// moves by at most the quantization error (see `View`), and
    /// re-encoding a decoded digest gives the same bytes. Both encodings
    /// store exactly these.
    fn quantized_centroids(&self) -> Vec<(u64, u64)> {
        self.view()
            .centroids()
            .iter()
            .map(|c| {
                (
                    quantize(c.mean().clamp(self.min, self.max)),
                    c.weight().round().max(1.0) as u64,
                )
            })
            .collect()
    }

    /// The version-1 encoding (`n` varint, min f64, max f64, `n` weight
    /// varints, `n` quantized-mean varints, the first relative to min).
    fn encode_v1_into(&self, out: &mut Vec<u8>) {
        let qw = self.quantized_centroids();
        wire::put_u64(out, qw.len() as u64);
        wire::put_f64(out, self.min);
        wire::put_f64(out, self.max);
        let mut prev = quantize_floor(self.min);
        for &(_, w) in &qw {
            wire::put_u64(out, w);
        }
        for &(q, _) in &qw {
            wire::put_u64(out, q.saturating_sub(prev));
            prev = prev.max(q);
        }
    }

    /// Validates what [`Digest::encode_into`] wrote at the reader's position
    /// in `shared` (the reader's buffer) and returns a digest of
    /// `max_centroids` centroids holding it as an undecoded run.
    pub(crate) fn decode_from(
        r: &mut Reader<'_>,
        shared: &Arc<[u8]>,
        field: &str,
        max_centroids: usize,
        version: u8,
    ) -> Result<Digest, CodecError> {
        let start = r.pos();
        let (n, count, min, max, weights_at, means_at, v2) = if version >= 2 {
            let h = read_header_v2(r, field, max_centroids)?;
            let s = h.stream;
            let checked = s.for_each(r.buf(), h.n, h.count, h.min, |_, _| {});
            checked.map_err(|reason| r.err(field, reason))?;
            (h.n, h.count, h.min, h.max, 0, 0, Some(s))
        } else {
            let (n, min, max) = read_header(r, field, max_centroids)?;
            let weights_at = r.pos();
            let scanned = r.with_cursor(|b, pos| scan_centroids(b, pos, n, min));
            let (count, means_at) = scanned.map_err(|reason| r.err(field, reason))?;
            (n, count, min, max, weights_at, means_at, None)
        };
        let end = r.pos();
        if shared.len() < end {
            return Err(r.err(field, "reader and shared payload differ"));
        }
        let run = EncodedRun {
            bytes: Arc::clone(shared),
            start,
            weights_at,
            means_at,
            end,
            v2,
            n,
            count,
            min,
            max,
        };
        Ok(Digest {
            max_centroids,
            centroids: Vec::new(),
            pending: Vec::new(),
            encoded: vec![run],
            encoded_centroids: n,
            count,
            min,
            max,
            view: OnceLock::new(),
        })
    }
}

/// The compressed centroids of a digest and the estimates read from them.
///
/// The estimators are those of the `tdigest` crate 1.0.1
/// (`estimate_quantile`, `estimate_rank`), applied to the centroids in the
/// order given — never re-sorted. A quantile is then an interpolation
/// `(1 − t)·a + t·b` between two centroid means (or a mean and the exact
/// min/max) with `t` depending only on the weights, so moving each mean by
/// at most ε·|mean| (the encoding's quantization) moves a quantile of
/// same-signed values by at most ε·|quantile|.
#[derive(Debug, Clone)]
struct View {
    /// Sorted by mean; never empty when `count > 0`.
    centroids: Vec<Centroid>,
    count: f64,
    min: f64,
    max: f64,
}

impl View {
    fn centroids(&self) -> &[Centroid] {
        &self.centroids
    }

    /// The crate's `estimate_quantile` (`q` in [0, 1]); NaN when empty.
    fn quantile(&self, q: f64) -> f64 {
        let cs = &self.centroids;
        if cs.is_empty() {
            return f64::NAN;
        }
        let rank = q * self.count;
        let (pos, before) = if q > 0.5 {
            if q >= 1.0 {
                return self.max;
            }
            let mut t = self.count;
            let mut pos = 0;
            for (k, c) in cs.iter().enumerate().rev() {
                t -= c.weight();
                if rank >= t {
                    pos = k;
                    break;
                }
            }
            (pos, t)
        } else {
            if q <= 0.0 {
                return self.min;
            }
            let mut t = 0.0;
            let mut pos = cs.len() - 1;
            for (k, c) in cs.iter().enumerate() {
                if rank < t + c.weight() {
                    pos = k;
                    break;
                }
                t += c.weight();
            }
            (pos, t)
        };
        self.interpolate_quantile(pos, rank, before)
    }

    fn interpolate_quantile(&self, pos: usize, rank: f64, weight_before: f64) -> f64 {
        let cs = &self.centroids;
        let c = cs[pos];
        let offset = (rank - weight_before) / c.weight() - 0.5;
        let (neighbor, weight_fraction) = if offset < 0.0 {
            match pos.checked_sub(1) {
                None => (self.min, 1.0),
                Some(p) => (cs[p].mean(), c.weight() / (cs[p].weight() + c.weight())),
            }
        } else {
            match cs.get(pos + 1) {
                None => (self.max, 1.0),
                Some(n) => (n.mean(), c.weight() / (c.weight() + n.weight())),
            }
        };
        interpolate(
            c.mean(),
            neighbor,
            (offset.abs() * 2.0 * weight_fraction).clamp(0.0, 1.0),
        )
        .clamp(self.min, self.max)
    }

    /// The crate's `estimate_rank`: estimated fraction of values ≤ `x`.
    fn rank(&self, x: f64) -> f64 {
        let cs = &self.centroids;
        let (Some(first), Some(last)) = (cs.first(), cs.last()) else {
            return f64::NAN;
        };
        let (min, max, count) = (self.min, self.max, self.count);
        if min == max {
            return if x >= max { 1.0 } else { 0.0 };
        }
        if x <= min {
            return 0.0;
        }
        if x >= max {
            return 1.0;
        }
        if x < first.mean() {
            let rank = if first.mean() - min > 0.0 {
                fraction_between(x, min, first.mean()) * first.weight() / 2.0
            } else {
                0.0
            };
            return (rank / count).clamp(0.0, 1.0);
        }
        let mut weight_before = 0.0;
        for pair in cs.windows(2) {
            let (left, right) = (pair[0], pair[1]);
            let left_rank = weight_before + left.weight() / 2.0;
            let right_rank = weight_before + left.weight() + right.weight() / 2.0;
            if x <= right.mean() {
                let rank = if right.mean() - left.mean() > 0.0 {
                    left_rank
                        + fraction_between(x, left.mean(), right.mean()) * (right_rank - left_rank)
                } else {
                    right_rank
                };
                return (rank / count).clamp(0.0, 1.0);
            }
            weight_before += left.weight();
        }
        let last_rank = count - last.weight() / 2.0;
        let rank = if max - last.mean() > 0.0 {
            last_rank + fraction_between(x, last.mean(), max) * (count - last_rank)
        } else {
            count
        };
        (rank / count).clamp(0.0, 1.0)
    }
}

/// The `tdigest` crate's interpolation between two values.
fn interpolate(left: f64, right: f64, fraction: f64) -> f64 {
    if left == right {
        left
    } else if left.is_sign_negative() == right.is_sign_negative() {
        left + (right - left) * fraction
    } else {
        left * (1.0 - fraction) + right * fraction
    }
}

/// The `tdigest` crate's position of `value` between `left` and `right`.
fn fraction_between(value: f64, left: f64, right: f64) -> f64 {
    let width = right - left;
    if width.is_finite() {
        (value - left) / width
    } else {
        (value / 2.0 - left / 2.0) / (right / 2.0 - left / 2.0)
    }
}

/// Validates `n` weights at `*pos` (each in 1..=MAX_WEIGHT, and their sum
/// too); returns the total weight. On error `*pos` is where it failed.
fn scan_weights(b: &[u8], pos: &mut usize, n: usize) -> Result<u64, String> {
    // Fast path: every weight one byte in 1..=127 (small buckets: all 1).
    if let Some(run) = pos.checked_add(n).and_then(|end| b.get(*pos..end)) {
        // Branch-free folds, so they vectorize. All ones: the sum is n.
        if run.iter().fold(0u8, |acc, &w| acc | (w ^ 1)) == 0 {
            *pos += n;
            return Ok(n as u64);
        }
        // w in 1..=127 iff neither w nor w − 1 has the high bit.
        let high = run.iter().fold(0u8, |acc, &w| acc | w | w.wrapping_sub(1));
        if high & 0x80 == 0 {
            *pos += n;
            // n ≤ the bytes left, so the sum ≤ 127 × n: far below MAX_WEIGHT.
            return Ok(run.iter().map(|&w| u64::from(w)).sum());
        }
    }
    let mut count: u64 = 0;
    for _ in 0..n {
        let w = varint(b, pos).ok_or("weight varint cut off or over 64 bits")?;
        if w == 0 || w > MAX_WEIGHT {
            return Err(format!("centroid weight {w} out of range"));
        }
        // Both ≤ 2^52: cannot overflow u64.
        count += w;
        if count > MAX_WEIGHT {
            return Err("total weight overflows".into());
        }
    }
    Ok(count)
}

/// Validates `n` weights then `n` mean deltas at `*pos`; returns the total
/// weight and the offset of the first mean. On error `*pos` is where it failed.
fn scan_centroids(b: &[u8], pos: &mut usize, n: usize, min: f64) -> Result<(u64, usize), String> {
    let count = scan_weights(b, pos, n)?;
    let means_at = *pos;
    let mut q = quantize_floor(min);
    for _ in 0..n {
        let delta = varint(b, pos).ok_or("mean varint cut off or over 64 bits")?;
        q = q.checked_add(delta).ok_or("mean delta overflows")?;
    }
    // Quantized means ascend from floor(min) (finite): if the largest is a
    // finite number, so is every one (the order keys of the finite numbers
    // form one contiguous range).
    if !dequantize(q).is_some_and(f64::is_finite) {
        return Err("mean is not a finite number".into());
    }
    Ok((count, means_at))
}

/// Centroid runs, each sorted by mean, laid out one after another in `buf`.
#[derive(Debug, Default)]
struct Runs {
    buf: Vec<Centroid>,
    /// Start offset of each run in `buf`, ascending.
    starts: Vec<usize>,
    scratch: Vec<Centroid>,
    scratch_starts: Vec<usize>,
}

impl Runs {
    fn start_run(&mut self) {
        self.starts.push(self.buf.len());
    }

    /// Merges the sorted `cur` with every run (pairwise, bottom-up: O(n log
    /// runs)) into at most `max_size` centroids in `cur`; empties the runs.
    fn fold_into(&mut self, cur: &mut Vec<Centroid>, max_size: usize) {
        if self.buf.is_empty() && cur.len() <= max_size {
            return;
        }
        self.start_run();
        self.buf.extend_from_slice(cur);
        while self.starts.len() > 1 {
            self.scratch.clear();
            self.scratch_starts.clear();
            let end = self.buf.len();
            for k in (0..self.starts.len()).step_by(2) {
                self.scratch_starts.push(self.scratch.len());
                let a = self.starts[k];
                let b = self.starts.get(k + 1).copied().unwrap_or(end);
                let c = self.starts.get(k + 2).copied().unwrap_or(end);
                merge_sorted(&self.buf[a..b], &self.buf[b..c], &mut self.scratch);
            }
            std::mem::swap(&mut self.buf, &mut self.scratch);
            std::mem::swap(&mut self.starts, &mut self.scratch_starts);
        }
        compress_sorted(&mut self.buf, max_size);
        std::mem::swap(cur, &mut self.buf);
        self.buf.clear();
        self.starts.clear();
    }
}

/// Appends the merge of two mean-sorted slices to `out` (stable: `a` first
/// on equal means). Branch-free selection: run interleavings are random, so
/// a branchy merge mispredicts about every other element.
fn merge_sorted(a: &[Centroid], b: &[Centroid], out: &mut Vec<Centroid>) {
    let start = out.len();
    let Some(&fill) = a.first().or(b.first()) else {
        return;
    };
    out.resize(start + a.len() + b.len(), fill);
    let dst = &mut out[start..];
    let (mut i, mut j, mut k) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        let take_b = y.mean() < x.mean();
        dst[k] = if take_b { y } else { x };
        k += 1;
        j += usize::from(take_b);
        i += usize::from(!take_b);
    }
    let rest_a = a.len() - i;
    dst[k..k + rest_a].copy_from_slice(&a[i..]);
    dst[k + rest_a..].copy_from_slice(&b[j..]);
}

/// The `tdigest` crate's merge pass (`TDigest::merge_digests`), in place:
/// when more than `max_size` centroids, greedily merges neighbours while the
/// cumulative weight stays within `k_to_q(k, max_size) × count`.
fn compress_sorted(cs: &mut Vec<Centroid>, max_size: usize) {
    if cs.len() <= max_size {
        return;
    }
    let count: f64 = cs.iter().map(Centroid::weight).sum();
    let mut k = 1.0;
    let mut limit = weight_limit(k, max_size, count);
    k += 1.0;
    let mut curr = cs[0];
    let mut weight_so_far = curr.weight();
    let mut out = 0;
    for i in 1..cs.len() {
        let next = cs[i];
        weight_so_far += next.weight();
        if weight_so_far <= limit {
            curr = merge_centroid(curr, next);
        } else {
            cs[out] = curr;
            out += 1;
            limit = weight_limit(k, max_size, count);
            k += 1.0;
            curr = next;
        }
    }
    cs[out] = curr;
    cs.truncate(out + 1);
}

fn k_to_q(k: f64, d: f64) -> f64 {
    let k_div_d = k / d;
    if k_div_d >= 0.5 {
        let base = 1.0 - k_div_d;
        1.0 - 2.0 * base * base
    } else {
        2.0 * k_div_d * k_div_d
    }
}

fn weight_limit(k: f64, max_size: usize, count: f64) -> f64 {
    if k >= max_size as f64 {
        f64::INFINITY
    } else {
        k_to_q(k, max_size as f64) * count
    }
}

/// The `tdigest` crate's centroid merge: weighted mean, kept between the
/// two means (interpolated without overflow when the plain formula fails).
fn merge_centroid(a: Centroid, b: Centroid) -> Centroid {
    let weight = a.weight() + b.weight();
    let (x, y) = (a.mean(), b.mean());
    if x == y {
        return Centroid::new(x, weight);
    }
    let f = b.weight() / weight;
    let combined = x * (1.0 - f) + y * f;
    let mean = if !combined.is_finite()
        || (combined < x && combined < y)
        || (combined > x && combined > y)
    {
        if x.is_sign_negative() == y.is_sign_negative() {
            x + (y - x) * f
        } else {
            x * (1.0 - f) + y * f
        }
    } else {
        combined
    };
    Centroid::new(mean, weight)
}

/// Monotone map from f64 (total order) to u64.
#[inline]
fn order_key(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

#[inline]
fn from_order_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// Rounds to nearest quantum (monotone).
fn quantize(x: f64) -> u64 {
    order_key(x).saturating_add(1 << (MEAN_SHIFT - 1)) >> MEAN_SHIFT
}

/// One past the largest quantized mean of a finite number: the quantum of
/// +inf (above it lie +inf and the positive NaNs). Below it a quantized
/// mean fits in 24 bits.
const MEAN_Q_END: u64 = (f64::INFINITY.to_bits() | 1 << 63) >> MEAN_SHIFT;

/// The quantized mean `delta` above `q`. Stored means ascend from the
/// finite `min`'s quantum, so each is a finite number iff it is below
/// [`MEAN_Q_END`].
#[inline]
fn next_mean(q: u64, delta: u64) -> Result<u64, &'static str> {
    let q = q.checked_add(delta).ok_or("mean delta overflows")?;
    if q >= MEAN_Q_END {
        return Err("mean is not a finite number");
    }
    Ok(q)
}

/// A quantized mean of [`StoredDigest::decode_quantized`] as the mean it
/// stands for, clamped to the digest's exact bounds as decoding does.
#[inline]
pub fn dequantize_mean(q: u32, min: f64, max: f64) -> f64 {
    from_order_key(u64::from(q) << MEAN_SHIFT).clamp(min, max)
}

#[inline]
fn quantize_floor(x: f64) -> u64 {
    order_key(x) >> MEAN_SHIFT
}

fn dequantize(q: u64) -> Option<f64> {
    let k = q
        .checked_shl(MEAN_SHIFT)
        .filter(|_| q < 1 << (64 - MEAN_SHIFT))?;
    Some(from_order_key(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_digest_answers_nan_and_none() {
        let d = Digest::new(50);
        assert!(d.quantile(0.5).is_nan());
        assert!(d.cdf(1.0).is_nan());
        assert_eq!((d.count(), d.min(), d.max()), (0, None, None));
        assert!(d.centroids().is_empty());
    }

    #[test]
    fn for_each_centroid_visits_exactly_the_centroids() {
        let mut d = Digest::new(30);
        for i in 0..2_000 {
            d.add(f64::from(i % 97) * 1.5 + f64::from(i) * 0.01);
        }
        let mut seen = Vec::new();
        d.for_each_centroid(|m, w| seen.push((m, w)));
        assert_eq!(seen, d.centroids());
        assert_eq!(d.centroid_count(), seen.len());
        assert!(seen.len() > 1 && seen.len() <= 30);
    }

    #[test]
    fn small_digest_is_exact_at_the_extremes() {
        let mut d = Digest::new(50);
        for v in [5.0, 1.0, 3.0] {
            d.add(v);
        }
        assert_eq!(d.quantile(0.0), 1.0);
        assert_eq!(d.quantile(1.0), 5.0);
        assert_eq!(d.quantile(0.5), 3.0);
        assert_eq!(d.count(), 3);
    }

    #[test]
    fn buffer_stays_bounded_and_centroids_respect_the_size() {
        let mut d = Digest::new(20);
        for i in 0..10_000 {
            d.add(f64::from(i));
            assert!(d.pending.len() < BUFFER_FACTOR * 20);
        }
        d.compress();
        assert!(d.centroids().len() <= 20);
        assert_eq!(d.centroids().iter().map(|c| c.1).sum::<u64>(), 10_000);
        let p50 = d.quantile(0.5);
        assert!((p50 - 5000.0).abs() < 300.0, "p50 {p50}");
    }

    #[test]
    fn centroids_whose_means_quantize_alike_keep_their_order_through_encoding() {
        // 1000.0 and 1000.01 quantize to one value (quantum 0.25 here). Sorting
        // the decoded pair by (mean, weight) would put the weight-1 centroid
        // first and move p70 from ~1000 to ~3000.
        let mut d = Digest::new(10);
        d.centroids = vec![
            Centroid::new(1000.0, 3.0),
            Centroid::new(1000.01, 1.0),
            Centroid::new(5000.0, 1.0),
        ];
        d.count = 5;
        d.min = 1000.0;
        d.max = 5000.0;
        let mut out = Vec::new();
        d.encode_into(&mut out, 2);
        let shared: Arc<[u8]> = Arc::from(out.as_slice());
        let back = Digest::decode_from(&mut Reader::new("t", &out), &shared, "d", 10, 2).unwrap();
        let eps = 2f64.powi(-(MEAN_MANTISSA_BITS as i32 + 1));
        for i in 0..=100 {
            let q = f64::from(i) / 100.0;
            let (x, y) = (d.quantile(q), back.quantile(q));
            assert!((x - y).abs() <= eps * x.abs() + 1e-9, "q {q}: {x} vs {y}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn encoding_round_trips_count_extremes_and_quantiles(values in proptest::collection::vec(0.0f64..1e6, 1..400), size in 5usize..120) {
            let mut d = Digest::new(size);
            for v in &values { d.add(*v); }
            let mut out = Vec::new();
            d.encode_into(&mut out, 2);
            let shared: Arc<[u8]> = Arc::from(out.as_slice());
            let back = Digest::decode_from(&mut Reader::new("t", &out), &shared, "d", size, 2).unwrap();
            prop_assert_eq!(back.count(), d.count());
            prop_assert_eq!(back.min(), d.min());
            prop_assert_eq!(back.max(), d.max());
            let eps = 2f64.powi(-(MEAN_MANTISSA_BITS as i32 + 1));
            for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0] {
                let (x, y) = (d.quantile(q), back.quantile(q));
                prop_assert!((x - y).abs() <= eps * x.abs() + 1e-9, "q {}: {} vs {}", q, x, y);
            }
            // Re-encoding a decoded digest is a fixed point.
            let mut again = Vec::new();
            back.encode_into(&mut again, 2);
            prop_assert_eq!(again, out);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn quantization_is_monotone_and_within_relative_bound(a in -1e12f64..1e12, b in -1e12f64..1e12) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(quantize(lo) <= quantize(hi));
            let back = dequantize(quantize(a)).unwrap();
            let eps = 2f64.powi(-(MEAN_MANTISSA_BITS as i32 + 1));
            prop_assert!((back - a).abs() <= eps * a.abs() + 1e-300, "{} -> {}", a, back);
        }

        #[test]
        fn run_merge_then_compress_equals_stable_sort_then_compress(
            runs in proptest::collection::vec(proptest::collection::vec((0u32..500, 1u32..20), 0..60), 0..12),
            cur in proptest::collection::vec((0u32..500, 1u32..20), 0..30),
            size in 1usize..40,
        ) {
            let sorted_run = |r: &Vec<(u32, u32)>| {
                let mut v: Vec<Centroid> = r.iter().map(|&(m, w)| Centroid::new(f64::from(m), f64::from(w))).collect();
                v.sort_by(|a, b| a.mean().total_cmp(&b.mean()));
                v
            };
            let mut expected: Vec<Centroid> = runs.iter().flat_map(sorted_run).collect();
            let mut cur = sorted_run(&cur);
            expected.extend_from_slice(&cur);
            expected.sort_by(|a, b| a.mean().total_cmp(&b.mean()));
            compress_sorted(&mut expected, size);
            let mut r = Runs::default();
            for run in &runs {
                r.start_run();
                r.buf.extend(sorted_run(run));
            }
            r.fold_into(&mut cur, size);
            let pairs = |v: &[Centroid]| v.iter().map(|c| (c.mean(), c.weight())).collect::<Vec<_>>();
            prop_assert_eq!(pairs(&cur), pairs(&expected));
            prop_assert!(cur.len() <= size.max(1) || (runs.iter().all(Vec::is_empty) && cur.len() <= size));
        }

        #[test]
        fn merging_undecoded_runs_matches_merging_decoded_centroids(
            parts in proptest::collection::vec(proptest::collection::vec(0.0f64..1e4, 1..300), 1..24),
            size in 5usize..60,
        ) {
            let encoded: Vec<Vec<u8>> = parts.iter().map(|vs| {
                let mut d = Digest::new(size);
                for v in vs { d.add(*v); }
                let mut out = Vec::new();
                d.encode_into(&mut out, 2);
                out
            }).collect();
            let decode = |b: &Vec<u8>| {
                let shared: Arc<[u8]> = Arc::from(b.as_slice());
                Digest::decode_from(&mut Reader::new("t", b), &shared, "d", size, 2).unwrap()
            };
            let lazy: Vec<Digest> = encoded.iter().map(decode).collect();
            let eager: Vec<Digest> = encoded.iter().map(|b| { let mut d = decode(b); d.compress(); d }).collect();
            prop_assert!(eager.iter().all(|d| d.encoded.is_empty()));
            let a = Digest::merge_many(&lazy, size);
            let b = Digest::merge_many(&eager, size);
            let n: u64 = parts.iter().map(|p| p.len() as u64).sum();
            prop_assert_eq!((a.count(), a.min(), a.max()), (n, b.min(), b.max()));
            prop_assert_eq!(a.centroids().iter().map(|c| c.1).sum::<u64>(), n);
            prop_assert!(a.centroids().len() <= size);
            prop_assert_eq!(a.centroids(), b.centroids());
        }
    }
}

// ---------------------------------------------------------------------------
// Query fast path (additions; the encode/decode functions above are unchanged).

impl Digest {
    /// Appends the compressed centroids as `(mean, weight)`, ascending by
    /// mean, ties in stored order — exactly the sequence [`Digest::for_each_centroid`]
    /// visits — to `out`.
    ///
    /// When the digest is one undecoded stored run (what [`Rollup::decode`]
    /// returns, see [`super::Rollup`]) the run is decoded straight into `out`:
    /// no compressed view is built or cached, so a query reading thousands of
    /// stored digests once allocates nothing per digest. Otherwise this is
    /// `for_each_centroid` pushing into `out`.
    ///
    /// [`Rollup::decode`]: super::Rollup::decode
    pub fn append_centroids(&self, out: &mut Vec<(f64, u64)>) {
        if let Some(run) = self.single_run() {
            // The view of a single run is that run in stored order (never
            // re-sorted, see `View`), so this is exactly its sequence.
            run.append_pairs(out);
            return;
        }
        out.reserve(self.centroid_count());
        self.for_each_centroid(|m, w| out.push((m, w)));
    }
}

impl Digest {
    /// Calls `f(mean, weight)` for each compressed centroid — the same
    /// multiset as [`Digest::for_each_centroid`], in an unspecified order —
    /// decoding a single undecoded stored run straight from its bytes (see
    /// [`Digest::append_centroids`]). For order-insensitive consumers
    /// (histograms, sums).
    pub fn for_each_centroid_unordered(&self, mut f: impl FnMut(f64, u64)) {
        if let Some(run) = self.single_run() {
            run.for_each_pair(f);
            return;
        }
        self.for_each_centroid(&mut f);
    }

    /// The digest's only content when it is one undecoded stored run that
    /// needs no compression (its view, were it built, is that run's centroids).
    #[inline]
    fn single_run(&self) -> Option<&EncodedRun> {
        match (self.view.get(), self.encoded.as_slice()) {
            (None, [run])
                if self.centroids.is_empty()
                    && self.pending.is_empty()
                    && run.n <= self.max_centroids =>
            {
                Some(run)
            }
            _ => None,
        }
    }
}

impl EncodedRun {
    /// [`EncodedRun::decode_into`] as `(mean, weight)` pairs.
    fn append_pairs(&self, out: &mut Vec<(f64, u64)>) {
        out.reserve(self.n);
        self.for_each_pair(|m, w| out.push((m, w)));
    }

    /// Calls `f(mean, weight)` for each centroid, in stored order.
    #[inline]
    fn for_each_pair(&self, mut f: impl FnMut(f64, u64)) {
        if let Some(s) = self.v2 {
            let (min, max) = (self.min, self.max);
            let res = s.for_each(&self.bytes[..self.end], self.n, self.count, min, |q, w| {
                f(from_order_key(q << MEAN_SHIFT).clamp(min, max), w);
            });
            debug_assert!(res.is_ok(), "validated digest run failed to decode");
            return;
        }
        let b = &self.bytes[..self.end];
        let (mut wp, mut mp) = (self.weights_at, self.means_at);
        let mut q = quantize_floor(self.min);
        for _ in 0..self.n {
            // Validated by `Digest::decode_from`: these reads cannot fail.
            let (Some(w), Some(d)) = (varint(b, &mut wp), varint(b, &mut mp)) else {
                debug_assert!(false, "validated digest run failed to decode");
                return;
            };
            q = q.wrapping_add(d);
            // `dequantize(q).unwrap_or(max)`, inlined (the hot loop of a query).
            let mean = if q < 1 << (64 - MEAN_SHIFT) {
                let k = q << MEAN_SHIFT;
                f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
            } else {
                self.max
            };
            let mean = mean.clamp(self.min, self.max);
            // `for_each_centroid` goes through f64: exact, as w ≤ 2^52 (validated).
            f(mean, w);
        }
    }
}

#[cfg(test)]
mod fast_path_tests {
    use super::*;
    use proptest::prelude::*;

    fn decoded(values: &[f64], size: usize) -> Digest {
        let mut d = Digest::new(size);
        for v in values {
            d.add(*v);
        }
        let mut out = Vec::new();
        d.encode_into(&mut out, 2);
        let shared: Arc<[u8]> = Arc::from(out.as_slice());
        Digest::decode_from(&mut Reader::new("t", &out), &shared, "d", size, 2).unwrap()
    }

    #[test]
    fn clamped_ties_keep_their_stored_order_as_the_view_does() {
        // Many copies of nearly equal values near max: quantized means clamp to max.
        let mut vs: Vec<f64> = (0..300).map(|i| 1000.0 + f64::from(i) * 1e-9).collect();
        vs.extend((0..50).map(f64::from));
        let d = decoded(&vs, 20);
        let mut fast = Vec::new();
        d.append_centroids(&mut fast);
        let mut slow = Vec::new();
        d.for_each_centroid(|m, w| slow.push((m, w)));
        assert_eq!(fast, slow);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn append_centroids_equals_for_each_centroid(
            values in proptest::collection::vec(prop_oneof![0.0f64..1e6, 0.0f64..2.0, Just(5.0)], 1..600),
            size in 1usize..120,
            prefix in 0usize..3,
        ) {
            let d = decoded(&values, size);
            let mut fast = vec![(-1.0, 7); prefix];
            d.append_centroids(&mut fast);
            prop_assert!(d.view.get().is_none(), "the fast path builds no view");
            let mut slow = vec![(-1.0, 7); prefix];
            d.for_each_centroid(|m, w| slow.push((m, w)));
            prop_assert_eq!(&fast, &slow);
            let mut unordered = vec![(-1.0, 7); prefix];
            d.for_each_centroid_unordered(|m, w| unordered.push((m, w)));
            unordered.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            slow.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            prop_assert_eq!(&unordered, &slow);
            // Decoded-then-merged and in-memory digests take the general path.
            let mut merged = d.clone();
            merged.merge(&decoded(&values, size));
            let mut a = Vec::new();
            merged.append_centroids(&mut a);
            prop_assert_eq!(a, merged.centroids());
            let mut live = Digest::new(size);
            values.iter().for_each(|&v| live.add(v));
            let mut b = Vec::new();
            live.append_centroids(&mut b);
            prop_assert_eq!(b, live.centroids());
        }
    }
}

// ---------------------------------------------------------------------------
// Borrowed stored digests (read path; the encoding above is unchanged).

/// A digest encoding inside a stored rollup payload, read in place: the
/// header and the weights are validated when it is opened, the means while
/// they are read ([`StoredDigest::try_for_each`]), so a read that decodes a
/// digest once reads its bytes once (plus the weights twice).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoredDigest<'a> {
    bytes: &'a [u8],
    weights_at: usize,
    means_at: usize,
    /// A version-2 digest's bit stream (`weights_at`, `means_at` unused).
    v2: Option<Stream>,
    n: usize,
    count: u64,
    min: f64,
    max: f64,
}

/// A stored digest's header: its centroid count (non-zero, no more than
/// the digest size `max_centroids` — every encoder compresses to it — and
/// no more than the bytes left could hold), min and max (finite, ordered).
fn read_header(
    r: &mut Reader<'_>,
    field: &str,
    max_centroids: usize,
) -> Result<(usize, f64, f64), CodecError> {
    let n = r.u64(field)?;
    // Every centroid takes at least two bytes (weight + mean delta).
    if n == 0 || n > (r.remaining() / 2) as u64 {
        return Err(r.err(
            field,
            format!("centroid count {n} is zero or exceeds the bytes left"),
        ));
    }
    if n > max_centroids as u64 {
        return Err(r.err(
            field,
            format!("centroid count {n} exceeds the digest size {max_centroids}"),
        ));
    }
    let min = r.f64(field)?;
    let max = r.f64(field)?;
    if !(min.is_finite() && max.is_finite() && min <= max) {
        return Err(r.err(
            field,
            format!("min {min} / max {max} not finite and ordered"),
        ));
    }
    Ok((n as usize, min, max))
}

impl<'a> StoredDigest<'a> {
    /// Opens the digest at the reader's position (what [`Digest::encode_into`]
    /// wrote), validating its header and weights as [`Digest::decode_from`]
    /// does (`max_centroids`: its rollup's digest size); leaves the reader
    /// at the first mean varint.
    pub(crate) fn open(
        r: &mut Reader<'a>,
        field: &str,
        max_centroids: usize,
        version: u8,
    ) -> Result<StoredDigest<'a>, CodecError> {
        if version >= 2 {
            let h = read_header_v2(r, field, max_centroids)?;
            return Ok(StoredDigest {
                bytes: r.buf(),
                weights_at: 0,
                means_at: 0,
                v2: Some(h.stream),
                n: h.n,
                count: h.count,
                min: h.min,
                max: h.max,
            });
        }
        let (n, min, max) = read_header(r, field, max_centroids)?;
        let weights_at = r.pos();
        let scanned = r.with_cursor(|b, pos| scan_weights(b, pos, n).map(|count| (count, b)));
        let (count, bytes) = scanned.map_err(|reason| r.err(field, reason))?;
        Ok(StoredDigest {
            bytes,
            weights_at,
            means_at: r.pos(),
            v2: None,
            n,
            count,
            min,
            max,
        })
    }

    /// Moves the reader past the digest's means (validating that they are
    /// well-formed varints, not their values).
    pub(crate) fn skip_means(&self, r: &mut Reader<'a>, field: &str) -> Result<(), CodecError> {
        if self.v2.is_some() {
            // `open` stepped over the whole stream.
            return Ok(());
        }
        let n = self.n;
        let res = r.with_cursor(|b, pos| {
            for _ in 0..n {
                varint(b, pos).ok_or("mean varint cut off or over 64 bits")?;
            }
            Ok::<(), &str>(())
        });
        res.map_err(|reason| r.err(field, reason))
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }
    pub(crate) fn min(&self) -> f64 {
        self.min
    }
    pub(crate) fn max(&self) -> f64 {
        self.max
    }
    pub(crate) fn len(&self) -> usize {
        self.n
    }

    /// Calls `f(mean, weight)` for each centroid in stored order (ascending
    /// by mean, ties in stored order): exactly the sequence
    /// [`Digest::for_each_centroid`] visits for the decoded digest. Mean
    /// deltas are validated as they are read; on an error `f` has seen a
    /// prefix of the centroids.
    #[inline]
    /// Appends each centroid's quantized mean ([`dequantize_mean`] turns it
    /// back into what [`StoredDigest::try_for_each`] visits) to `qs` and,
    /// unless every weight is 1 (returns `true` then), its weight to `ws`.
    /// Means are validated here; on an error nothing is appended.
    pub(crate) fn decode_quantized(
        &self,
        qs: &mut Vec<u32>,
        ws: &mut Vec<u64>,
    ) -> Result<bool, String> {
        if let Some(s) = self.v2 {
            return self.decode_quantized_v2(s, qs, ws);
        }
        let b = self.bytes;
        let (mut wp, mut mp) = (self.weights_at, self.means_at);
        let unit = self.count == self.n as u64;
        let mut q = quantize_floor(self.min);
        let (q_before, w_before) = (qs.len(), ws.len());
        // Filled in place (no capacity check per mean).
        qs.resize(q_before + self.n, 0);
        for slot in &mut qs[q_before..] {
            let next = varint(b, &mut mp)
                .ok_or("mean varint cut off or over 64 bits")
                .and_then(|d| next_mean(q, d));
            match next {
                Ok(x) => q = x,
                Err(e) => {
                    qs.truncate(q_before);
                    return Err(e.into());
                }
            }
            // Below MEAN_Q_END: 24 bits.
            *slot = q as u32;
        }
        if !unit {
            ws.reserve(self.n);
            for _ in 0..self.n {
                // Validated by `open`.
                let Some(w) = varint(b, &mut wp) else {
                    qs.truncate(q_before);
                    ws.truncate(w_before);
                    return Err("weight varint cut off".into());
                };
                ws.push(w);
            }
        }
        Ok(unit)
    }

    pub(crate) fn try_for_each(&self, mut f: impl FnMut(f64, u64)) -> Result<(), String> {
        if let Some(s) = self.v2 {
            let (min, max) = (self.min, self.max);
            return s
                .for_each(self.bytes, self.n, self.count, min, |q, w| {
                    f(from_order_key(q << MEAN_SHIFT).clamp(min, max), w);
                })
                .map_err(String::from);
        }
        let b = self.bytes;
        let (mut wp, mut mp) = (self.weights_at, self.means_at);
        // Weights are ≥ 1 and sum to `count` (validated by `open`): when
        // count == n every weight is 1 and need not be read again (digests
        // of small buckets, e.g. minutes).
        let unit = self.count == self.n as u64;
        let mut q = quantize_floor(self.min);
        for _ in 0..self.n {
            let w = if unit { Some(1) } else { varint(b, &mut wp) };
            let (Some(w), Some(d)) = (w, varint(b, &mut mp)) else {
                return Err("mean varint cut off or over 64 bits".into());
            };
            q = next_mean(q, d)?;
            // `dequantize`, inlined (the hot loop of a query).
            let mean = from_order_key(q << MEAN_SHIFT);
            f(mean.clamp(self.min, self.max), w);
        }
        Ok(())
    }
}

impl StoredDigest<'_> {
    /// [`StoredDigest::decode_quantized`] of a version-2 digest.
    fn decode_quantized_v2(
        &self,
        s: Stream,
        qs: &mut Vec<u32>,
        ws: &mut Vec<u64>,
    ) -> Result<bool, String> {
        let (q_before, w_before) = (qs.len(), ws.len());
        // Filled in place (no capacity check per centroid); `for_each`
        // visits at most `n` centroids.
        qs.resize(q_before + self.n, 0);
        let slots = &mut qs[q_before..];
        let mut i = 0;
        let res = if s.unit {
            s.for_each(self.bytes, self.n, self.count, self.min, |q, _| {
                if let Some(slot) = slots.get_mut(i) {
                    // Below MEAN_Q_END: 24 bits.
                    *slot = q as u32;
                }
                i += 1;
            })
        } else {
            ws.resize(w_before + self.n, 0);
            let wslots = &mut ws[w_before..];
            s.for_each(self.bytes, self.n, self.count, self.min, |q, w| {
                if let (Some(slot), Some(wslot)) = (slots.get_mut(i), wslots.get_mut(i)) {
                    *slot = q as u32;
                    *wslot = w;
                }
                i += 1;
            })
        };
        match res {
            Ok(()) => Ok(s.unit),
            Err(e) => {
                qs.truncate(q_before);
                ws.truncate(w_before);
                Err(e.into())
            }
        }
    }
}

/// A stored digest decoded once into the form
/// [`StoredDigest::decode_quantized`] hands out (quantized means, weights),
/// for bytes held in memory and read many times (the hot minute mirror):
/// it yields exactly what the stored digest yields, without decoding the
/// means' varints at every read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QuantDigest {
    means: Box<[u32]>,
    /// `None` when every weight is 1.
    weights: Option<Box<[u32]>>,
    count: u64,
    min: f64,
    max: f64,
}

impl StoredDigest<'_> {
    /// The digest decoded (`None` when its means are malformed, or a weight
    /// does not fit 32 bits: then it is read from its bytes, as before).
    pub(crate) fn quantized(&self) -> Option<QuantDigest> {
        let (mut qs, mut ws) = (Vec::with_capacity(self.n), Vec::new());
        let unit = self.decode_quantized(&mut qs, &mut ws).ok()?;
        let weights = if unit {
            None
        } else {
            let ws: Option<Vec<u32>> = ws.into_iter().map(|w| u32::try_from(w).ok()).collect();
            Some(ws?.into_boxed_slice())
        };
        Some(QuantDigest {
            means: qs.into_boxed_slice(),
            weights,
            count: self.count,
            min: self.min,
            max: self.max,
        })
    }
}

impl QuantDigest {
    /// Bytes it holds on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        4 * (self.means.len() + self.weights.as_ref().map_or(0, |w| w.len()))
    }
    pub(crate) fn count(&self) -> u64 {
        self.count
    }
    pub(crate) fn min(&self) -> f64 {
        self.min
    }
    pub(crate) fn max(&self) -> f64 {
        self.max
    }
    pub(crate) fn len(&self) -> usize {
        self.means.len()
    }

    /// As [`StoredDigest::decode_quantized`] (which cannot fail here).
    pub(crate) fn decode_quantized(&self, qs: &mut Vec<u32>, ws: &mut Vec<u64>) -> bool {
        qs.extend_from_slice(&self.means);
        match &self.weights {
            None => true,
            Some(w) => {
                ws.extend(w.iter().map(|&w| u64::from(w)));
                false
            }
        }
    }

    /// As [`StoredDigest::try_for_each`] (which cannot fail here).
    #[inline]
    pub(crate) fn for_each(&self, mut f: impl FnMut(f64, u64)) {
        match &self.weights {
            None => {
                for &q in self.means.iter() {
                    f(dequantize_mean(q, self.min, self.max), 1);
                }
            }
            Some(w) => {
                for (&q, &w) in self.means.iter().zip(w.iter()) {
                    f(dequantize_mean(q, self.min, self.max), u64::from(w));
                }
            }
        }
    }
}

#[cfg(test)]
mod stored_digest_tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mean_q_end_is_the_quantum_of_infinity() {
        assert_eq!(MEAN_Q_END, order_key(f64::INFINITY) >> MEAN_SHIFT);
        assert!(from_order_key((MEAN_Q_END - 1) << MEAN_SHIFT).is_finite());
        assert!(!from_order_key(MEAN_Q_END << MEAN_SHIFT).is_finite());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn stored_digest_visits_what_the_decoded_digest_visits(
            values in proptest::collection::vec(prop_oneof![0.0f64..1e6, 0.0f64..2.0, Just(5.0)], 1..600),
            size in 1usize..120,
        ) {
            let mut d = Digest::new(size);
            values.iter().for_each(|&v| d.add(v));
            let mut out = vec![9u8];
            d.encode_into(&mut out, 2);
            out.push(7);
            let shared: Arc<[u8]> = Arc::from(out.as_slice());
            let mut r = Reader::new("t", &out);
            r.u64("pad").unwrap();
            let decoded = Digest::decode_from(&mut r, &shared, "d", size, 2).unwrap();
            let mut r = Reader::new("t", &out);
            r.u64("pad").unwrap();
            let s = StoredDigest::open(&mut r, "d", size, 2).unwrap();
            s.skip_means(&mut r, "d").unwrap();
            prop_assert_eq!(r.u64("tail").unwrap(), 7);
            prop_assert!(r.is_at_end());
            prop_assert_eq!((s.count(), Some(s.min()), Some(s.max())), (decoded.count(), decoded.min(), decoded.max()));
            let mut got = Vec::new();
            s.try_for_each(|m, w| got.push((m, w))).unwrap();
            prop_assert_eq!(got, decoded.centroids());
        }

        #[test]
        fn damaged_stored_digest_is_an_error_never_a_panic(
            values in proptest::collection::vec(0.0f64..1e6, 1..200),
            at in any::<prop::sample::Index>(),
            xor in 1u8..=255,
        ) {
            let mut d = Digest::new(40);
            values.iter().for_each(|&v| d.add(v));
            let mut out = Vec::new();
            d.encode_into(&mut out, 2);
            let i = at.index(out.len());
            out[i] ^= xor;
            let mut r = Reader::new("t", &out);
            if let Ok(s) = StoredDigest::open(&mut r, "d", 40, 2) {
                let mut w = 0u64;
                if s.try_for_each(|m, x| { assert!(m.is_finite()); w += x; }).is_ok() {
                    prop_assert_eq!(w, s.count());
                }
            }
            let mut r = Reader::new("t", &out[..i]);
            if let Ok(s) = StoredDigest::open(&mut r, "d", 40, 2) {
                let _ = s.skip_means(&mut r, "d");
                let _ = s.try_for_each(|_, _| {});
            }
        }
    }
}
