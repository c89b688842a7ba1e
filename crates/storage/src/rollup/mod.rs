//! Rollups: mergeable per-(bucket × group) aggregates, and their digests.
//!
//! **Invariants:**
//! - `merge` is associative and commutative on every exact field (counts and
//!   fixed-point sums are integers, added with saturating arithmetic;
//!   `latency_min_ms`/`latency_max_ms` are f64 min/max), so late events and
//!   re-merges in any order give identical counts and sums. Each real value
//!   is rounded once, when added.
//! - Digests merge approximately, within the bound stated in
//!   docs/format/rollup.md; their `count`, `min` and `max` are exact.
//! - Every `Some` digest of a rollup holds at most `digest_size` centroids
//!   once compressed; an empty digest is `None`.
//! - [`Rollup::decode`] never panics: bad bytes are a [`CodecError`].
//!
//! The byte layout is documented in docs/format/rollup.md.

mod digest;
mod view;
mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;

use sextant_model::{Feedback, LlmCall, Quality};

pub use digest::{dequantize_mean, Digest};
pub(crate) use view::Prepared;
pub use view::{DigestField, DigestRef, RollupTotals, RollupView};

use crate::error::CodecError;
use crate::frame;
use wire::Reader;

/// Version byte of a framed rollup value as written (readers also accept
/// [`ROLLUP_FORMAT_V1`]).
pub(crate) const ROLLUP_FORMAT_VERSION: u8 = 2;

/// The first rollup version (varint digests, f64 bounds), still read.
pub(crate) const ROLLUP_FORMAT_V1: u8 = 1;

/// The payload of a framed rollup value of either version, and its version.
pub(crate) fn unframe_rollup(bytes: &[u8]) -> Result<(u8, &[u8]), CodecError> {
    let version = match bytes.first() {
        Some(&v @ (ROLLUP_FORMAT_V1 | ROLLUP_FORMAT_VERSION)) => v,
        _ => ROLLUP_FORMAT_VERSION,
    };
    Ok((version, frame::unframe("rollup", version, bytes)?))
}

/// Largest digest size whose rollups [`Rollup::encode`] writes in version 2.
/// Version 2 digests take a third fewer bytes but cost about twice the time
/// to decode (two serial Rice codes per centroid against one varint and a
/// vectorized weight scan). Minute rollups (digest size 50) are ~90 % of the
/// rollup bytes and mostly read from the hot mirror, decoded once; hour, day
/// and week rollups (200) are ~10 % of the bytes and decoded by every
/// long-range query (docs/format/rollup.md, docs/benchmarks.md "Compact
/// rollups (s8-rollz)").
pub(crate) const COMPACT_MAX_DIGEST_SIZE: usize = 100;

/// Digest size of [`Rollup::default`].
pub(crate) const DEFAULT_DIGEST_SIZE: usize = 100;

/// Aggregates of every call, quality record and feedback in one bucket × group.
///
/// Sums of real-valued quantities are fixed-point integers so that merging is
/// exact and order-independent: each value is rounded once, when added.
#[derive(Debug, Clone)]
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
    /// Latency, ms.
    pub latency: Option<Digest>,
    /// Time to first token, ms.
    pub ttft: Option<Digest>,
    /// Total tokens per call.
    pub total_tokens_digest: Option<Digest>,
    /// Calls per finish reason ("" for none).
    pub finish_reasons: BTreeMap<String, u64>,
    pub quality_count: u64,
    pub refusals: u64,
    pub hedging: u64,
    /// Sum of response lengths, characters.
    pub response_length_sum: u64,
    /// Response length, characters.
    pub response_length: Option<Digest>,
    /// Sum of `round(sentiment_score × 1e6)`.
    pub sentiment_sum_micro: i128,
    pub factual_count: u64,
    /// Sum of `round(factual_accuracy × 1e6)`.
    pub factual_sum_micro: u128,
    pub feedback_count: u64,
    pub rating_sum: i64,
    /// Maximum centroids of this rollup's digests (set by [`Rollup::new`] and
    /// [`Rollup::resize_digests`]; encoded).
    pub digest_size: usize,
}

impl Default for Rollup {
    /// An empty rollup with [`DEFAULT_DIGEST_SIZE`] digests.
    fn default() -> Rollup {
        Rollup::new(DEFAULT_DIGEST_SIZE)
    }
}

fn add_to(slot: &mut Option<Digest>, size: usize, value: f64) {
    slot.get_or_insert_with(|| Digest::new(size)).add(value);
}

fn merge_into(slot: &mut Option<Digest>, size: usize, other: &Option<Digest>) {
    if let Some(o) = other.as_ref().filter(|o| !o.is_empty()) {
        slot.get_or_insert_with(|| Digest::new(size)).merge(o);
    }
}

/// Fixed-point value, rounded once; negative, NaN → 0, saturating at the top.
fn fixed_u(x: f64, scale: f64) -> u128 {
    (x * scale).round() as u128
}

impl Rollup {
    /// An empty rollup whose digests hold at most `digest_size` centroids.
    pub fn new(digest_size: usize) -> Rollup {
        Rollup {
            count: 0,
            errors: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            total_tokens: 0,
            cached_input_tokens: 0,
            reasoning_tokens: 0,
            cost_nano_usd: 0,
            cost_unknown: 0,
            latency_sum_us: 0,
            latency_min_ms: f64::INFINITY,
            latency_max_ms: f64::NEG_INFINITY,
            ttft_count: 0,
            ttft_sum_us: 0,
            latency: None,
            ttft: None,
            total_tokens_digest: None,
            finish_reasons: BTreeMap::new(),
            quality_count: 0,
            refusals: 0,
            hedging: 0,
            response_length_sum: 0,
            response_length: None,
            sentiment_sum_micro: 0,
            factual_count: 0,
            factual_sum_micro: 0,
            feedback_count: 0,
            rating_sum: 0,
            digest_size: digest_size.clamp(1, digest::MAX_DIGEST_SIZE),
        }
    }

    /// True when nothing was added (no call, quality record or feedback).
    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.quality_count == 0 && self.feedback_count == 0
    }

    pub fn add_call(&mut self, call: &LlmCall) {
        let size = self.digest_size;
        self.count = self.count.saturating_add(1);
        self.errors = self.errors.saturating_add(u64::from(call.is_error()));
        self.prompt_tokens = self.prompt_tokens.saturating_add(call.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(call.completion_tokens);
        self.total_tokens = self.total_tokens.saturating_add(call.total_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(call.cached_input_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(call.reasoning_tokens);
        match call.cost_usd {
            Some(c) => self.cost_nano_usd = self.cost_nano_usd.saturating_add(fixed_u(c, 1e9)),
            None => self.cost_unknown = self.cost_unknown.saturating_add(1),
        }
        self.latency_sum_us = self
            .latency_sum_us
            .saturating_add(fixed_u(call.latency_ms, 1e3));
        self.latency_min_ms = self.latency_min_ms.min(call.latency_ms);
        self.latency_max_ms = self.latency_max_ms.max(call.latency_ms);
        add_to(&mut self.latency, size, call.latency_ms);
        if let Some(t) = call.time_to_first_token_ms {
            self.ttft_count = self.ttft_count.saturating_add(1);
            self.ttft_sum_us = self.ttft_sum_us.saturating_add(fixed_u(t, 1e3));
            add_to(&mut self.ttft, size, t);
        }
        add_to(
            &mut self.total_tokens_digest,
            size,
            call.total_tokens as f64,
        );
        // Few distinct reasons per rollup: a scan comparing lengths first
        // reads only the matching key's bytes (a B-tree search reads each
        // key it passes).
        let reason = call.finish_reason.as_str();
        let found = if self.finish_reasons.len() <= 8 {
            self.finish_reasons
                .iter_mut()
                .find(|(k, _)| k.as_str() == reason)
                .map(|(_, n)| n)
        } else {
            self.finish_reasons.get_mut(reason)
        };
        match found {
            Some(n) => *n = n.saturating_add(1),
            None => {
                self.finish_reasons.insert(call.finish_reason.clone(), 1);
            }
        }
    }

    pub fn add_quality(&mut self, q: &Quality) {
        self.quality_count = self.quality_count.saturating_add(1);
        self.refusals = self.refusals.saturating_add(u64::from(q.has_refusal));
        self.hedging = self
            .hedging
            .saturating_add(u64::from(q.has_hallucination_markers));
        self.response_length_sum = self.response_length_sum.saturating_add(q.response_length);
        add_to(
            &mut self.response_length,
            self.digest_size,
            q.response_length as f64,
        );
        self.sentiment_sum_micro = self
            .sentiment_sum_micro
            .saturating_add((q.sentiment_score * 1e6).round() as i128);
        if let Some(f) = q.factual_accuracy {
            self.factual_count = self.factual_count.saturating_add(1);
            self.factual_sum_micro = self.factual_sum_micro.saturating_add(fixed_u(f, 1e6));
        }
    }

    pub fn add_feedback(&mut self, f: &Feedback) {
        self.feedback_count = self.feedback_count.saturating_add(1);
        self.rating_sum = self.rating_sum.saturating_add(f.rating);
    }

    /// Adds `other` into `self`; `self` keeps its digest size.
    pub fn merge(&mut self, other: &Rollup) {
        let size = self.digest_size;
        self.count = self.count.saturating_add(other.count);
        self.errors = self.errors.saturating_add(other.errors);
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self
            .completion_tokens
            .saturating_add(other.completion_tokens);
        self.total_tokens = self.total_tokens.saturating_add(other.total_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(other.cached_input_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(other.reasoning_tokens);
        self.cost_nano_usd = self.cost_nano_usd.saturating_add(other.cost_nano_usd);
        self.cost_unknown = self.cost_unknown.saturating_add(other.cost_unknown);
        self.latency_sum_us = self.latency_sum_us.saturating_add(other.latency_sum_us);
        self.latency_min_ms = self.latency_min_ms.min(other.latency_min_ms);
        self.latency_max_ms = self.latency_max_ms.max(other.latency_max_ms);
        self.ttft_count = self.ttft_count.saturating_add(other.ttft_count);
        self.ttft_sum_us = self.ttft_sum_us.saturating_add(other.ttft_sum_us);
        merge_into(&mut self.latency, size, &other.latency);
        merge_into(&mut self.ttft, size, &other.ttft);
        merge_into(
            &mut self.total_tokens_digest,
            size,
            &other.total_tokens_digest,
        );
        for (reason, n) in &other.finish_reasons {
            match self.finish_reasons.get_mut(reason.as_str()) {
                Some(m) => *m = m.saturating_add(*n),
                None => {
                    self.finish_reasons.insert(reason.clone(), *n);
                }
            }
        }
        self.quality_count = self.quality_count.saturating_add(other.quality_count);
        self.refusals = self.refusals.saturating_add(other.refusals);
        self.hedging = self.hedging.saturating_add(other.hedging);
        self.response_length_sum = self
            .response_length_sum
            .saturating_add(other.response_length_sum);
        merge_into(&mut self.response_length, size, &other.response_length);
        self.sentiment_sum_micro = self
            .sentiment_sum_micro
            .saturating_add(other.sentiment_sum_micro);
        self.factual_count = self.factual_count.saturating_add(other.factual_count);
        self.factual_sum_micro = self
            .factual_sum_micro
            .saturating_add(other.factual_sum_micro);
        self.feedback_count = self.feedback_count.saturating_add(other.feedback_count);
        self.rating_sum = self.rating_sum.saturating_add(other.rating_sum);
    }

    /// Re-compresses digests to at most `digest_size` centroids (for coarser tiers).
    pub fn resize_digests(&mut self, digest_size: usize) {
        let size = digest_size.clamp(1, digest::MAX_DIGEST_SIZE);
        self.digest_size = size;
        for d in self.digests_mut().into_iter().flatten() {
            d.resize(size);
        }
    }

    /// Folds every digest's pending buffer into its centroids (cheaper
    /// repeated quantile queries; no effect on exact fields).
    pub fn compress_digests(&mut self) {
        for d in self.digests_mut().into_iter().flatten() {
            d.compress();
        }
    }

    fn digests_mut(&mut self) -> [Option<&mut Digest>; 4] {
        [
            self.latency.as_mut(),
            self.ttft.as_mut(),
            self.total_tokens_digest.as_mut(),
            self.response_length.as_mut(),
        ]
    }

    /// True when every exact field (counts, sums, min/max, finish reasons,
    /// digest counts and extremes) is equal; digest centroids are not compared.
    pub fn exact_eq(&self, other: &Rollup) -> bool {
        fn dig(d: &Option<Digest>) -> (u64, Option<u64>, Option<u64>) {
            match d {
                Some(d) => (
                    d.count(),
                    d.min().map(f64::to_bits),
                    d.max().map(f64::to_bits),
                ),
                None => (0, None, None),
            }
        }
        self.exact_u64s() == other.exact_u64s()
            && self.cost_nano_usd == other.cost_nano_usd
            && self.latency_sum_us == other.latency_sum_us
            && self.ttft_sum_us == other.ttft_sum_us
            && self.sentiment_sum_micro == other.sentiment_sum_micro
            && self.factual_sum_micro == other.factual_sum_micro
            && self.rating_sum == other.rating_sum
            && self.latency_min_ms.to_bits() == other.latency_min_ms.to_bits()
            && self.latency_max_ms.to_bits() == other.latency_max_ms.to_bits()
            && self.finish_reasons == other.finish_reasons
            && dig(&self.latency) == dig(&other.latency)
            && dig(&self.ttft) == dig(&other.ttft)
            && dig(&self.total_tokens_digest) == dig(&other.total_tokens_digest)
            && dig(&self.response_length) == dig(&other.response_length)
    }

    fn exact_u64s(&self) -> [u64; 15] {
        [
            self.count,
            self.errors,
            self.prompt_tokens,
            self.completion_tokens,
            self.total_tokens,
            self.cached_input_tokens,
            self.reasoning_tokens,
            self.cost_unknown,
            self.ttft_count,
            self.quality_count,
            self.refusals,
            self.hedging,
            self.response_length_sum,
            self.factual_count,
            self.feedback_count,
        ]
    }

    /// Framed encoding (version + CRC; see docs/format/rollup.md): version
    /// 2 when the digest size is at most [`COMPACT_MAX_DIGEST_SIZE`] (the
    /// minute tier), else version 1.
    pub fn encode(&self) -> Vec<u8> {
        let version = if self.digest_size <= COMPACT_MAX_DIGEST_SIZE {
            ROLLUP_FORMAT_VERSION
        } else {
            ROLLUP_FORMAT_V1
        };
        frame::frame(version, &self.encode_payload(version))
    }

    /// Decodes a framed rollup of version 1 or 2.
    pub fn decode(bytes: &[u8]) -> Result<Rollup, CodecError> {
        let (version, payload) = unframe_rollup(bytes)?;
        Rollup::decode_payload(payload, version)
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

/// Field numbers = bit positions in the presence mask, in encoding order.
mod field {
    pub(super) const COUNT: u32 = 0;
    pub(super) const ERRORS: u32 = 1;
    pub(super) const PROMPT_TOKENS: u32 = 2;
    pub(super) const COMPLETION_TOKENS: u32 = 3;
    pub(super) const TOTAL_TOKENS: u32 = 4;
    pub(super) const CACHED_INPUT_TOKENS: u32 = 5;
    pub(super) const REASONING_TOKENS: u32 = 6;
    pub(super) const COST_NANO_USD: u32 = 7;
    pub(super) const COST_UNKNOWN: u32 = 8;
    pub(super) const LATENCY_SUM_US: u32 = 9;
    pub(super) const LATENCY_MIN_MS: u32 = 10;
    pub(super) const LATENCY_MAX_MS: u32 = 11;
    pub(super) const TTFT_COUNT: u32 = 12;
    pub(super) const TTFT_SUM_US: u32 = 13;
    pub(super) const QUALITY_COUNT: u32 = 14;
    pub(super) const REFUSALS: u32 = 15;
    pub(super) const HEDGING: u32 = 16;
    pub(super) const RESPONSE_LENGTH_SUM: u32 = 17;
    pub(super) const SENTIMENT_SUM_MICRO: u32 = 18;
    pub(super) const FACTUAL_COUNT: u32 = 19;
    pub(super) const FACTUAL_SUM_MICRO: u32 = 20;
    pub(super) const FEEDBACK_COUNT: u32 = 21;
    pub(super) const RATING_SUM: u32 = 22;
    pub(super) const FINISH_REASONS: u32 = 23;
    pub(super) const LATENCY: u32 = 24;
    pub(super) const TTFT: u32 = 25;
    pub(super) const TOTAL_TOKENS_DIGEST: u32 = 26;
    pub(super) const RESPONSE_LENGTH: u32 = 27;
    pub(super) const ALL: u64 = (1 << 28) - 1;
    /// Version 2 stores the presence mask XOR this: the fields of a
    /// typical minute of calls (errors, ttft, no quality or feedback),
    /// so that such a mask takes one byte instead of four.
    pub(super) const TYPICAL_V2: u64 = 1 << COUNT
        | 1 << ERRORS
        | 1 << PROMPT_TOKENS
        | 1 << COMPLETION_TOKENS
        | 1 << TOTAL_TOKENS
        | 1 << CACHED_INPUT_TOKENS
        | 1 << COST_NANO_USD
        | 1 << LATENCY_SUM_US
        | 1 << LATENCY_MIN_MS
        | 1 << LATENCY_MAX_MS
        | 1 << TTFT_COUNT
        | 1 << TTFT_SUM_US
        | 1 << FINISH_REASONS
        | 1 << LATENCY
        | 1 << TTFT
        | 1 << TOTAL_TOKENS_DIGEST;
}

/// `r` framed in rollup format 1, as builds before store format 8 wrote
/// it (tests of reading such values).
#[cfg(test)]
pub(crate) fn encode_v1(r: &Rollup) -> Vec<u8> {
    frame::frame(ROLLUP_FORMAT_V1, &r.encode_payload(ROLLUP_FORMAT_V1))
}

/// Appends `d` in digest format `version` (1 or 2).
fn encode_digest(d: &Digest, out: &mut Vec<u8>, version: u8) {
    d.encode_into(out, version);
}

/// Finish-reason names longer than this are rejected by the decoder.
const MAX_REASON_BYTES: usize = 4096;

impl Rollup {
    /// The payload in rollup format `version` (1 or 2).
    fn encode_payload(&self, version: u8) -> Vec<u8> {
        use field::*;
        let u64s: [(u32, u64); 15] = [
            (COUNT, self.count),
            (ERRORS, self.errors),
            (PROMPT_TOKENS, self.prompt_tokens),
            (COMPLETION_TOKENS, self.completion_tokens),
            (TOTAL_TOKENS, self.total_tokens),
            (CACHED_INPUT_TOKENS, self.cached_input_tokens),
            (REASONING_TOKENS, self.reasoning_tokens),
            (COST_UNKNOWN, self.cost_unknown),
            (TTFT_COUNT, self.ttft_count),
            (QUALITY_COUNT, self.quality_count),
            (REFUSALS, self.refusals),
            (HEDGING, self.hedging),
            (RESPONSE_LENGTH_SUM, self.response_length_sum),
            (FACTUAL_COUNT, self.factual_count),
            (FEEDBACK_COUNT, self.feedback_count),
        ];
        let u128s: [(u32, u128); 4] = [
            (COST_NANO_USD, self.cost_nano_usd),
            (LATENCY_SUM_US, self.latency_sum_us),
            (TTFT_SUM_US, self.ttft_sum_us),
            (FACTUAL_SUM_MICRO, self.factual_sum_micro),
        ];
        let digests: [(u32, &Option<Digest>); 4] = [
            (LATENCY, &self.latency),
            (TTFT, &self.ttft),
            (TOTAL_TOKENS_DIGEST, &self.total_tokens_digest),
            (RESPONSE_LENGTH, &self.response_length),
        ];
        let mut mask: u64 = 0;
        for (bit, v) in u64s {
            mask |= u64::from(v != 0) << bit;
        }
        for (bit, v) in u128s {
            mask |= u64::from(v != 0) << bit;
        }
        for (bit, d) in digests {
            mask |= u64::from(d.as_ref().is_some_and(|d| !d.is_empty())) << bit;
        }
        mask |= u64::from(self.latency_min_ms.is_finite()) << LATENCY_MIN_MS;
        mask |= u64::from(self.latency_max_ms.is_finite()) << LATENCY_MAX_MS;
        mask |= u64::from(self.sentiment_sum_micro != 0) << SENTIMENT_SUM_MICRO;
        mask |= u64::from(self.rating_sum != 0) << RATING_SUM;
        mask |= u64::from(!self.finish_reasons.is_empty()) << FINISH_REASONS;

        let mut out = Vec::with_capacity(256);
        let stored_mask = if version == ROLLUP_FORMAT_V1 {
            mask
        } else {
            mask ^ field::TYPICAL_V2
        };
        wire::put_u64(&mut out, stored_mask);
        wire::put_u64(&mut out, self.digest_size as u64);
        let has = |bit: u32| mask & (1 << bit) != 0;
        for bit in 0..28 {
            if !has(bit) {
                continue;
            }
            if bit == TOTAL_TOKENS && version != ROLLUP_FORMAT_V1 {
                // Version 2: relative to prompt + completion tokens.
                let sum = i128::from(self.prompt_tokens) + i128::from(self.completion_tokens);
                wire::put_i128(&mut out, i128::from(self.total_tokens) - sum);
            } else if let Some((_, v)) = u64s.iter().find(|(b, _)| *b == bit) {
                wire::put_u64(&mut out, *v);
            } else if let Some((_, v)) = u128s.iter().find(|(b, _)| *b == bit) {
                wire::put_u128(&mut out, *v);
            } else if let Some((_, Some(d))) = digests.iter().find(|(b, _)| *b == bit) {
                encode_digest(d, &mut out, version);
            } else {
                match bit {
                    // Version 2: one byte of number tags (min low nibble,
                    // max high nibble, 0 for an absent bound), then each
                    // present bound as a number.
                    LATENCY_MIN_MS | LATENCY_MAX_MS if version == ROLLUP_FORMAT_V1 => {
                        let x = if bit == LATENCY_MIN_MS {
                            self.latency_min_ms
                        } else {
                            self.latency_max_ms
                        };
                        wire::put_f64(&mut out, x);
                    }
                    LATENCY_MIN_MS => {
                        let tag = |present: bool, x: f64| {
                            if present {
                                wire::num_tag(x)
                            } else {
                                (0, 0)
                            }
                        };
                        let tmin = tag(true, self.latency_min_ms);
                        let tmax = tag(has(LATENCY_MAX_MS), self.latency_max_ms);
                        out.push(tmin.0 | tmax.0 << 4);
                        wire::put_num(&mut out, self.latency_min_ms, tmin);
                    }
                    LATENCY_MAX_MS => {
                        if !has(LATENCY_MIN_MS) {
                            out.push(wire::num_tag(self.latency_max_ms).0 << 4);
                        }
                        let t = wire::num_tag(self.latency_max_ms);
                        wire::put_num(&mut out, self.latency_max_ms, t);
                    }
                    SENTIMENT_SUM_MICRO => wire::put_i128(&mut out, self.sentiment_sum_micro),
                    RATING_SUM => wire::put_i64(&mut out, self.rating_sum),
                    FINISH_REASONS => {
                        wire::put_u64(&mut out, self.finish_reasons.len() as u64);
                        for (reason, n) in &self.finish_reasons {
                            let known = KNOWN_REASONS.iter().position(|k| k == reason);
                            match known.filter(|_| version != ROLLUP_FORMAT_V1) {
                                // Version 2: a well-known name as its index.
                                Some(i) => wire::put_u64(&mut out, 2 * i as u64 + 1),
                                None => {
                                    let len = reason.len() as u64;
                                    let h = if version == ROLLUP_FORMAT_V1 {
                                        len
                                    } else {
                                        2 * len
                                    };
                                    wire::put_u64(&mut out, h);
                                    out.extend_from_slice(reason.as_bytes());
                                }
                            }
                            wire::put_u64(&mut out, *n);
                        }
                    }
                    _ => unreachable!("every mask bit below 28 is a field"),
                }
            }
        }
        out
    }

    fn decode_payload(payload: &[u8], version: u8) -> Result<Rollup, CodecError> {
        use field::*;
        let mut r = Reader::new("rollup", payload);
        let (mask, t) = decode_totals(&mut r, version)?;
        let mut x = Rollup::from_totals(&t);
        // One shared copy of the payload holds every digest, undecoded.
        let mut shared: Option<Arc<[u8]>> = None;
        let has = |bit: u32| mask & (1 << bit) != 0;
        if has(FINISH_REASONS) {
            read_finish_reasons(&mut r, version, |name, c| {
                x.finish_reasons.insert(name.to_owned(), c);
            })?;
        }
        macro_rules! digestf {
            ($bit:expr, $f:ident) => {
                if has($bit) {
                    let shared = shared.get_or_insert_with(|| Arc::from(payload));
                    x.$f = Some(Digest::decode_from(
                        &mut r,
                        shared,
                        stringify!($f),
                        x.digest_size,
                        version,
                    )?);
                }
            };
        }
        digestf!(LATENCY, latency);
        digestf!(TTFT, ttft);
        digestf!(TOTAL_TOKENS_DIGEST, total_tokens_digest);
        digestf!(RESPONSE_LENGTH, response_length);
        if !r.is_at_end() {
            return Err(r.err("end", format!("{} trailing bytes", r.remaining())));
        }
        Ok(x)
    }

    /// An empty-digest rollup holding `t`'s exact fields.
    fn from_totals(t: &RollupTotals) -> Rollup {
        let mut x = Rollup::new(t.digest_size);
        x.count = t.count;
        x.errors = t.errors;
        x.prompt_tokens = t.prompt_tokens;
        x.completion_tokens = t.completion_tokens;
        x.total_tokens = t.total_tokens;
        x.cached_input_tokens = t.cached_input_tokens;
        x.reasoning_tokens = t.reasoning_tokens;
        x.cost_nano_usd = t.cost_nano_usd;
        x.cost_unknown = t.cost_unknown;
        x.latency_sum_us = t.latency_sum_us;
        x.latency_min_ms = t.latency_min_ms;
        x.latency_max_ms = t.latency_max_ms;
        x.ttft_count = t.ttft_count;
        x.ttft_sum_us = t.ttft_sum_us;
        x.quality_count = t.quality_count;
        x.refusals = t.refusals;
        x.hedging = t.hedging;
        x.response_length_sum = t.response_length_sum;
        x.sentiment_sum_micro = t.sentiment_sum_micro;
        x.factual_count = t.factual_count;
        x.factual_sum_micro = t.factual_sum_micro;
        x.feedback_count = t.feedback_count;
        x.rating_sum = t.rating_sum;
        x
    }

    /// The exact fields (everything but digests and finish reasons).
    pub fn totals(&self) -> RollupTotals {
        RollupTotals {
            count: self.count,
            errors: self.errors,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.total_tokens,
            cached_input_tokens: self.cached_input_tokens,
            reasoning_tokens: self.reasoning_tokens,
            cost_nano_usd: self.cost_nano_usd,
            cost_unknown: self.cost_unknown,
            latency_sum_us: self.latency_sum_us,
            latency_min_ms: self.latency_min_ms,
            latency_max_ms: self.latency_max_ms,
            ttft_count: self.ttft_count,
            ttft_sum_us: self.ttft_sum_us,
            quality_count: self.quality_count,
            refusals: self.refusals,
            hedging: self.hedging,
            response_length_sum: self.response_length_sum,
            sentiment_sum_micro: self.sentiment_sum_micro,
            factual_count: self.factual_count,
            factual_sum_micro: self.factual_sum_micro,
            feedback_count: self.feedback_count,
            rating_sum: self.rating_sum,
            digest_size: self.digest_size,
        }
    }
}

/// Reads the presence mask, the digest size and fields 0..=22 (every exact
/// field), validated exactly as [`Rollup::decode`] validates them; leaves
/// the reader at the finish reasons (or the first digest).
fn decode_totals(r: &mut Reader<'_>, version: u8) -> Result<(u64, RollupTotals), CodecError> {
    use field::*;
    let (mask, size) = read_totals_head(r, version)?;
    let mut x = RollupTotals::empty(size);
    let has = |bit: u32| mask & (1 << bit) != 0;
    macro_rules! u64f {
        ($bit:expr, $f:ident) => {
            if has($bit) {
                x.$f = r.u64(stringify!($f))?;
            }
        };
    }
    macro_rules! u128f {
        ($bit:expr, $f:ident) => {
            if has($bit) {
                x.$f = r.u128(stringify!($f))?;
            }
        };
    }
    u64f!(COUNT, count);
    u64f!(ERRORS, errors);
    u64f!(PROMPT_TOKENS, prompt_tokens);
    u64f!(COMPLETION_TOKENS, completion_tokens);
    if version >= 2 {
        if has(TOTAL_TOKENS) {
            let delta = r.i128("total_tokens")?;
            let sum = i128::from(x.prompt_tokens) + i128::from(x.completion_tokens);
            x.total_tokens = sum
                .checked_add(delta)
                .and_then(|t| u64::try_from(t).ok())
                .ok_or_else(|| r.err("total_tokens", format!("{sum} + {delta} out of range")))?;
        }
    } else {
        u64f!(TOTAL_TOKENS, total_tokens);
    }
    u64f!(CACHED_INPUT_TOKENS, cached_input_tokens);
    u64f!(REASONING_TOKENS, reasoning_tokens);
    u128f!(COST_NANO_USD, cost_nano_usd);
    u64f!(COST_UNKNOWN, cost_unknown);
    u128f!(LATENCY_SUM_US, latency_sum_us);
    if version >= 2 {
        if let Some((tmin, tmax)) = bound_tags(r, mask)? {
            if has(LATENCY_MIN_MS) {
                x.latency_min_ms = r.num("latency_min_ms", tmin)?;
            }
            if has(LATENCY_MAX_MS) {
                x.latency_max_ms = r.num("latency_max_ms", tmax)?;
            }
        }
    } else {
        if has(LATENCY_MIN_MS) {
            x.latency_min_ms = finite(r, "latency_min_ms")?;
        }
        if has(LATENCY_MAX_MS) {
            x.latency_max_ms = finite(r, "latency_max_ms")?;
        }
    }
    u64f!(TTFT_COUNT, ttft_count);
    u128f!(TTFT_SUM_US, ttft_sum_us);
    u64f!(QUALITY_COUNT, quality_count);
    u64f!(REFUSALS, refusals);
    u64f!(HEDGING, hedging);
    u64f!(RESPONSE_LENGTH_SUM, response_length_sum);
    if has(SENTIMENT_SUM_MICRO) {
        x.sentiment_sum_micro = r.i128("sentiment_sum_micro")?;
    }
    u64f!(FACTUAL_COUNT, factual_count);
    u128f!(FACTUAL_SUM_MICRO, factual_sum_micro);
    u64f!(FEEDBACK_COUNT, feedback_count);
    if has(RATING_SUM) {
        x.rating_sum = r.i64("rating_sum")?;
    }
    Ok((mask, x))
}

/// The presence mask and digest size that open a payload, validated as
/// [`decode_totals`] validates them.
fn read_totals_head(r: &mut Reader<'_>, version: u8) -> Result<(u64, usize), CodecError> {
    use field::*;
    let mut mask = r.u64("presence mask")?;
    if version >= 2 {
        mask ^= TYPICAL_V2;
    }
    if mask & !ALL != 0 {
        return Err(r.err(
            "presence mask",
            format!("unknown field bits {:#x}", mask & !ALL),
        ));
    }
    let size = r.u64("digest_size")?;
    if size == 0 || size > digest::MAX_DIGEST_SIZE as u64 {
        return Err(r.err(
            "digest_size",
            format!("{size} out of range 1..={}", digest::MAX_DIGEST_SIZE),
        ));
    }
    Ok((mask, size as usize))
}

/// Steps over the exact fields present in `mask` without decoding them,
/// from where [`read_totals_head`] stops to where [`decode_totals`] stops:
/// the fields are varints, but for the two latency bounds (8 bytes each)
/// between fields 9 and 12. Only the varints' ends are checked; their values
/// are validated by `decode_totals` when someone reads them.
fn skip_totals_fields(r: &mut Reader<'_>, mask: u64, version: u8) -> Result<(), CodecError> {
    use field::*;
    let varints = |from: u32, to: u32| (mask & ((1 << to) - (1 << from))).count_ones() as usize;
    r.skip_varints("exact fields", varints(COUNT, LATENCY_MIN_MS))?;
    if version >= 2 {
        if let Some((tmin, tmax)) = bound_tags(r, mask)? {
            for (bound, tag) in [(LATENCY_MIN_MS, tmin), (LATENCY_MAX_MS, tmax)] {
                if mask & (1 << bound) != 0 {
                    r.skip_num("latency bounds", tag)?;
                }
            }
        }
    } else {
        for bound in [LATENCY_MIN_MS, LATENCY_MAX_MS] {
            if mask & (1 << bound) != 0 {
                r.bytes("latency bounds", 8)?;
            }
        }
    }
    r.skip_varints("exact fields", varints(TTFT_COUNT, FINISH_REASONS))
}

/// Version 2: the number tags of the latency bounds (a byte, present when
/// either bound is: min in the low nibble, max in the high one, 0 for an
/// absent bound).
fn bound_tags(r: &mut Reader<'_>, mask: u64) -> Result<Option<(u8, u8)>, CodecError> {
    use field::*;
    let (min, max) = (
        mask & (1 << LATENCY_MIN_MS) != 0,
        mask & (1 << LATENCY_MAX_MS) != 0,
    );
    if !(min || max) {
        return Ok(None);
    }
    let tags = r.bytes("latency bounds", 1)?[0];
    let (tmin, tmax) = (tags & 15, tags >> 4);
    if (!min && tmin != 0) || (!max && tmax != 0) {
        return Err(r.err(
            "latency bounds",
            format!("tag of an absent bound in {tags:#x}"),
        ));
    }
    Ok(Some((tmin, tmax)))
}

/// Reads the finish-reason entries (field 23, present), calling `f(name,
/// count)` for each, validated as [`Rollup::decode`] validates them.
fn read_finish_reasons<'a>(
    r: &mut Reader<'a>,
    version: u8,
    mut f: impl FnMut(&'a str, u64),
) -> Result<(), CodecError> {
    let n = r.u64("finish_reasons")?;
    // Each entry takes at least two bytes.
    if n == 0 || n > (r.remaining() / 2) as u64 {
        return Err(r.err("finish_reasons", format!("{n} entries do not fit")));
    }
    let mut last: Option<&str> = None;
    for _ in 0..n {
        let name = match reason_head(r, version)? {
            Ok(i) => KNOWN_REASONS[i],
            Err(len) => {
                let bytes = r.bytes("finish_reasons", len)?;
                std::str::from_utf8(bytes).map_err(|e| r.err("finish_reasons", e))?
            }
        };
        let c = r.u64("finish_reasons")?;
        if last.is_some_and(|l| l >= name) {
            return Err(r.err("finish_reasons", "names not strictly ascending"));
        }
        last = Some(name);
        f(name, c);
    }
    Ok(())
}

/// Steps over the finish-reason entries (field 23, present) as
/// [`read_finish_reasons`] reads them, checking only their extent (names
/// are validated when someone reads them): a digest read needs their end.
fn skip_finish_reasons(r: &mut Reader<'_>, version: u8) -> Result<(), CodecError> {
    let n = r.u64("finish_reasons")?;
    if n == 0 || n > (r.remaining() / 2) as u64 {
        return Err(r.err("finish_reasons", format!("{n} entries do not fit")));
    }
    for _ in 0..n {
        if let Err(len) = reason_head(r, version)? {
            r.bytes("finish_reasons", len)?;
        }
        r.skip_varints("finish_reasons", 1)?;
    }
    Ok(())
}

/// Finish-reason names a version 2 rollup stores as their index (one
/// byte); append only (the index is the stored form).
const KNOWN_REASONS: [&str; 12] = [
    "",
    "stop",
    "length",
    "tool_calls",
    "content_filter",
    "function_call",
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "error",
    "cancelled",
];

/// The head of a finish-reason entry: `Ok(index)` of a well-known name
/// (version 2: odd `2 × index + 1`), or `Err(length)` of a name whose
/// bytes follow (version 1: the length; version 2: twice it).
fn reason_head(r: &mut Reader<'_>, version: u8) -> Result<Result<usize, usize>, CodecError> {
    let h = r.u64("finish_reasons")?;
    let len = if version >= 2 {
        if h & 1 == 1 {
            let i = (h >> 1) as usize;
            if i >= KNOWN_REASONS.len() {
                return Err(r.err("finish_reasons", format!("unknown name index {i}")));
            }
            return Ok(Ok(i));
        }
        h >> 1
    } else {
        h
    };
    if len > MAX_REASON_BYTES as u64 {
        return Err(r.err("finish_reasons", format!("name of {len} bytes")));
    }
    Ok(Err(len as usize))
}

fn finite(r: &mut Reader<'_>, field: &str) -> Result<f64, CodecError> {
    let v = r.f64(field)?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(r.err(field, format!("{v} is not finite")))
    }
}

#[cfg(test)]
mod tests;
