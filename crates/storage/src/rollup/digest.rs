//! [`Digest`]: a t-digest (the `tdigest` crate) with an unsorted pending
//! buffer, so single adds and merges are amortized cheap, and its compact
//! encoding.
//!
//! **Invariants:**
//! - `count`, `min` and `max` are exact (count is an integer; min/max are f64
//!   min/max, order-independent); only the centroids are approximate.
//! - `compressed` never holds buffered values (we never call `TDigest::push`),
//!   and all its centroid weights are whole numbers ≥ 1.
//! - `compressed.count() + Σ pending weights == count`.
//! - The pending buffer is folded in when it reaches
//!   `BUFFER_FACTOR × max_centroids` entries, so memory is bounded and each
//!   merged centroid is sorted and compressed O(1) times amortized.
//!
//! Encoding (inside a rollup, see docs/format/rollup.md): centroid count,
//! exact f64 min and max, weights as varints, means quantized to
//! [`MEAN_MANTISSA_BITS`] mantissa bits and delta-coded as varints.

use std::borrow::Cow;

use tdigest::{Centroid, TDigest};

use super::wire::{self, Reader};
use crate::error::CodecError;

/// Pending entries (raw values or merged centroids) allowed per maximum
/// centroid before the buffer is compressed.
const BUFFER_FACTOR: usize = 8;

/// Mantissa bits kept for each encoded centroid mean (f64 has 52). The mean
/// is rounded to nearest, so its relative error is at most 2^-(bits+1).
pub(crate) const MEAN_MANTISSA_BITS: u32 = 12;
const MEAN_SHIFT: u32 = 52 - MEAN_MANTISSA_BITS;

/// Largest digest size a decoder accepts (guards allocations).
pub(crate) const MAX_DIGEST_SIZE: usize = 1 << 16;

/// A mergeable quantile sketch: a t-digest with a small unsorted buffer so
/// single adds are cheap.
#[derive(Debug, Clone)]
pub struct Digest {
    max_centroids: usize,
    compressed: TDigest,
    pending: Vec<Centroid>,
    count: u64,
    /// +inf when empty.
    min: f64,
    /// −inf when empty.
    max: f64,
}

impl Digest {
    /// An empty digest of at most `max_centroids` centroids (at least 1).
    pub fn new(max_centroids: usize) -> Digest {
        let max_centroids = max_centroids.clamp(1, MAX_DIGEST_SIZE);
        Digest {
            max_centroids,
            compressed: TDigest::new_with_size(max_centroids),
            pending: Vec::new(),
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Adds one value. Non-finite values are ignored (validation rejects them
    /// before they reach storage).
    pub fn add(&mut self, value: f64) {
        if !value.is_finite() {
            return;
        }
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
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.pending.extend_from_slice(other.compressed.centroids());
        self.pending.extend_from_slice(&other.pending);
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
        self.view()
            .estimate_quantile(q.clamp(0.0, 1.0))
            .unwrap_or(f64::NAN)
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
                    view.estimate_quantile(q.clamp(0.0, 1.0))
                        .unwrap_or(f64::NAN)
                }
            })
            .collect()
    }

    /// Estimated fraction of values ≤ `x`; NaN when empty or `x` is NaN.
    pub fn cdf(&self, x: f64) -> f64 {
        if self.count == 0 || x.is_nan() {
            return f64::NAN;
        }
        self.view().estimate_rank(x).unwrap_or(f64::NAN)
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

    /// Folds the pending buffer into the centroids (no-op when empty).
    pub fn compress(&mut self) {
        if !self.pending.is_empty() {
            self.compressed = self.build(self.max_centroids);
            self.pending.clear();
        }
    }

    /// Sets the maximum centroids to `max_centroids` and re-compresses.
    pub fn resize(&mut self, max_centroids: usize) {
        self.max_centroids = max_centroids.clamp(1, MAX_DIGEST_SIZE);
        self.compressed = self.build(self.max_centroids);
        self.pending.clear();
    }

    fn maybe_compress(&mut self) {
        if self.pending.len() >= BUFFER_FACTOR * self.max_centroids {
            self.compress();
        }
    }

    /// The compressed digest including pending entries.
    fn view(&self) -> Cow<'_, TDigest> {
        if self.pending.is_empty() {
            Cow::Borrowed(&self.compressed)
        } else {
            Cow::Owned(self.build(self.max_centroids))
        }
    }

    fn build(&self, max_centroids: usize) -> TDigest {
        if self.count == 0 {
            return TDigest::new_with_size(max_centroids);
        }
        let mut all = Vec::with_capacity(self.compressed.centroids().len() + self.pending.len());
        all.extend_from_slice(self.compressed.centroids());
        all.extend_from_slice(&self.pending);
        let sum = all.iter().map(|c| c.mean() * c.weight()).sum();
        TDigest::new(
            all,
            sum,
            self.count as f64,
            Some(self.max),
            Some(self.min),
            max_centroids,
        )
    }

    /// Appends the encoding: `n` varint, min f64, max f64, `n` weight
    /// varints, `n` quantized-mean varints (first relative to min, then deltas).
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        let view = self.view();
        let cs = view.centroids();
        wire::put_u64(out, cs.len() as u64);
        wire::put_f64(out, self.min);
        wire::put_f64(out, self.max);
        // (quantized mean, weight), sorted as the decoder will sort them so
        // that re-encoding a decoded digest gives the same bytes.
        let mut qw: Vec<(u64, u64)> = cs
            .iter()
            .map(|c| {
                (
                    quantize(c.mean().clamp(self.min, self.max)),
                    c.weight().round().max(1.0) as u64,
                )
            })
            .collect();
        qw.sort_unstable();
        for &(_, w) in &qw {
            wire::put_u64(out, w);
        }
        let mut prev = quantize_floor(self.min);
        for &(q, _) in &qw {
            // quantize(mean ≥ min) ≥ floor(min), and qw is sorted: never negative.
            wire::put_u64(out, q.saturating_sub(prev));
            prev = prev.max(q);
        }
    }

    /// Decodes what [`Digest::encode_into`] wrote, into a digest of
    /// `max_centroids` centroids.
    pub(crate) fn decode_from(
        r: &mut Reader<'_>,
        field: &str,
        max_centroids: usize,
    ) -> Result<Digest, CodecError> {
        let n = r.u64(field)?;
        // Every centroid takes at least two bytes (weight + mean delta).
        if n == 0 || n > (r.remaining() / 2) as u64 {
            return Err(r.err(
                field,
                format!("centroid count {n} is zero or exceeds the bytes left"),
            ));
        }
        let n = n as usize;
        let min = r.f64(field)?;
        let max = r.f64(field)?;
        if !(min.is_finite() && max.is_finite() && min <= max) {
            return Err(r.err(
                field,
                format!("min {min} / max {max} not finite and ordered"),
            ));
        }
        let mut weights = Vec::with_capacity(n);
        let mut count: u64 = 0;
        for _ in 0..n {
            let w = r.u64(field)?;
            if w == 0 || w > (1 << 52) {
                return Err(r.err(field, format!("centroid weight {w} out of range")));
            }
            count = count
                .checked_add(w)
                .filter(|&c| c <= 1 << 52)
                .ok_or_else(|| r.err(field, "total weight overflows"))?;
            weights.push(w);
        }
        let mut centroids = Vec::with_capacity(n);
        let mut q = quantize_floor(min);
        let mut sum = 0.0;
        for &w in &weights {
            let delta = r.u64(field)?;
            q = q
                .checked_add(delta)
                .ok_or_else(|| r.err(field, "mean delta overflows"))?;
            let mean = dequantize(q)
                .filter(|m| m.is_finite())
                .ok_or_else(|| r.err(field, "mean is not a finite number"))?
                .clamp(min, max);
            sum += mean * w as f64;
            centroids.push(Centroid::new(mean, w as f64));
        }
        let compressed = TDigest::new(
            centroids,
            sum,
            count as f64,
            Some(max),
            Some(min),
            max_centroids,
        );
        Ok(Digest {
            max_centroids,
            compressed,
            pending: Vec::new(),
            count,
            min,
            max,
        })
    }
}

/// Monotone map from f64 (total order) to u64.
fn order_key(x: f64) -> u64 {
    let bits = x.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

fn from_order_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// Rounds to nearest quantum (monotone).
fn quantize(x: f64) -> u64 {
    order_key(x).saturating_add(1 << (MEAN_SHIFT - 1)) >> MEAN_SHIFT
}

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
        fn encoding_round_trips_count_extremes_and_quantiles(values in proptest::collection::vec(0.0f64..1e6, 1..400), size in 5usize..120) {
            let mut d = Digest::new(size);
            for v in &values { d.add(*v); }
            let mut out = Vec::new();
            d.encode_into(&mut out);
            let back = Digest::decode_from(&mut Reader::new("t", &out), "d", size).unwrap();
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
            back.encode_into(&mut again);
            prop_assert_eq!(again, out);
        }
    }
}
