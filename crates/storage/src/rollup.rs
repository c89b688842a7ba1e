//! Rollups: mergeable per-(bucket × group) aggregates, and their digests.
//!
//! OWNER: rollup helper. This file defines the contract; the implementation
//! fills in the bodies.
//!
//! **Invariant:** `merge` is associative and commutative on every exact field
//! (counts and fixed-point sums), so late events and re-merges in any order
//! give identical counts and sums; digests merge approximately within the
//! bound stated in docs/format.md.

use std::collections::BTreeMap;

use sextant_model::{Feedback, LlmCall, Quality};

use crate::error::CodecError;

/// A t-digest with a small unsorted buffer so single adds are cheap.
#[derive(Debug, Clone)]
pub struct Digest {
    _private: (),
}

/// Aggregates of every call, quality record and feedback in one bucket × group.
///
/// Sums of real-valued quantities are fixed-point integers so that merging is
/// exact and order-independent: each value is rounded once, when added.
#[derive(Debug, Clone, Default)]
pub struct Rollup {
    pub count: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cached_input_tokens: u64,
    pub reasoning_tokens: u64,
    /// Sum of `round(cost_usd × 1e9)` over calls with a known cost.
    pub cost_nano_usd: u128,
    /// Calls whose cost is unknown (no price for the model).
    pub cost_unknown: u64,
    /// Sum of `round(latency_ms × 1000)`.
    pub latency_sum_us: u128,
    /// Smallest latency, ms; +inf when `count == 0`.
    pub latency_min_ms: f64,
    /// Largest latency, ms; −inf when `count == 0`.
    pub latency_max_ms: f64,
    /// Calls with a time to first token.
    pub ttft_count: u64,
    /// Sum of `round(ttft_ms × 1000)`.
    pub ttft_sum_us: u128,
    pub latency: Option<Digest>,
    pub ttft: Option<Digest>,
    pub total_tokens_digest: Option<Digest>,
    /// Calls per finish reason ("" for none).
    pub finish_reasons: BTreeMap<String, u64>,
    pub quality_count: u64,
    pub refusals: u64,
    pub hedging: u64,
    /// Sum of response lengths, characters.
    pub response_length_sum: u64,
    pub response_length: Option<Digest>,
    /// Sum of `round(sentiment_score × 1e6)`.
    pub sentiment_sum_micro: i128,
    pub factual_count: u64,
    /// Sum of `round(factual_accuracy × 1e6)`.
    pub factual_sum_micro: u128,
    pub feedback_count: u64,
    pub rating_sum: i64,
}

#[allow(unused_variables, clippy::new_without_default)]
impl Digest {
    /// An empty digest of at most `max_centroids` centroids.
    pub fn new(max_centroids: usize) -> Digest {
        unimplemented!()
    }
    pub fn add(&mut self, value: f64) {
        unimplemented!()
    }
    pub fn merge(&mut self, other: &Digest) {
        unimplemented!()
    }
    /// Estimated `q`-quantile (q in [0, 1]); NaN when empty.
    pub fn quantile(&self, q: f64) -> f64 {
        unimplemented!()
    }
    /// Estimated fraction of values ≤ `x`.
    pub fn cdf(&self, x: f64) -> f64 {
        unimplemented!()
    }
    pub fn count(&self) -> u64 {
        unimplemented!()
    }
}

#[allow(unused_variables)]
impl Rollup {
    /// An empty rollup whose digests hold at most `digest_size` centroids.
    pub fn new(digest_size: usize) -> Rollup {
        unimplemented!()
    }
    pub fn add_call(&mut self, call: &LlmCall) {
        unimplemented!()
    }
    pub fn add_quality(&mut self, q: &Quality) {
        unimplemented!()
    }
    pub fn add_feedback(&mut self, f: &Feedback) {
        unimplemented!()
    }
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Rollup) {
        unimplemented!()
    }
    /// Re-compresses digests to at most `digest_size` centroids (for coarser tiers).
    pub fn resize_digests(&mut self, digest_size: usize) {
        unimplemented!()
    }
    /// Framed encoding (version + CRC; see docs/format.md).
    pub fn encode(&self) -> Vec<u8> {
        unimplemented!()
    }
    pub fn decode(bytes: &[u8]) -> Result<Rollup, CodecError> {
        unimplemented!()
    }
    pub fn cost_usd(&self) -> f64 {
        self.cost_nano_usd as f64 / 1e9
    }
    pub fn latency_sum_ms(&self) -> f64 {
        self.latency_sum_us as f64 / 1e3
    }
    pub fn ttft_sum_ms(&self) -> f64 {
        self.ttft_sum_us as f64 / 1e3
    }
}
