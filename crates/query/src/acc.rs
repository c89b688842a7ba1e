//! The accumulator: merges rollups and raw rows of one group (and one series
//! step) and computes every `METRICS` value.
//!
//! **Invariants:**
//! - counts and sums are exact and independent of the order and of the tier
//!   that served each part: raw rows are folded with the same fixed-point
//!   rounding as [`Rollup::add_call`] (cost in nano-USD, latency in µs,
//!   sentiment and factual accuracy in micro-units);
//! - percentiles are exact (`sorted[int(n·q)]`, the seed's rule) when every
//!   sample came from raw rows, and otherwise estimated from the union of
//!   the digests' centroids and the raw samples (see `dist`).

use std::collections::BTreeMap;

use sextant_model::{Feedback, LlmCall, Quality};
#[cfg(test)]
use sextant_storage::Rollup;
use sextant_storage::{DigestField, RollupView, StorageError};

use crate::dist::{Dist, DistPool, DistSlot};

/// Which digests a query needs (merging digests dominates rollup cost, so a
/// series of `count` merges none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Needs {
    pub(crate) latency: bool,
    pub(crate) ttft: bool,
    /// Count finish reasons (a summary reports them; a series never does).
    pub(crate) finish_reasons: bool,
    /// Read only the digests, not a rollup's exact fields: for a series of
    /// one percentile, which reads nothing else (then only the needed
    /// distributions' metrics are answered).
    pub(crate) digests_only: bool,
}

impl Needs {
    #[cfg(test)]
    pub(crate) const ALL: Needs = Needs {
        latency: true,
        ttft: true,
        finish_reasons: true,
        digests_only: false,
    };

    pub(crate) fn for_metric(name: &str) -> Needs {
        Needs {
            latency: matches!(name, "latency_p50_ms" | "latency_p95_ms" | "latency_p99_ms"),
            ttft: matches!(name, "ttft_p50_ms" | "ttft_p95_ms"),
            finish_reasons: false,
            digests_only: false,
        }
    }

    pub(crate) fn for_metrics<'a>(names: impl IntoIterator<Item = &'a str>) -> Needs {
        names.into_iter().fold(Needs::default(), |n, m| {
            let x = Needs::for_metric(m);
            Needs {
                latency: n.latency || x.latency,
                ttft: n.ttft || x.ttft,
                finish_reasons: n.finish_reasons || x.finish_reasons,
                digests_only: false,
            }
        })
    }
}

/// The aggregate of one group (and step).
#[derive(Debug, Clone)]
pub(crate) struct Acc {
    pub(crate) count: u64,
    pub(crate) errors: u64,
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
    pub(crate) total_tokens: u64,
    pub(crate) cost_nano_usd: u128,
    pub(crate) cost_unknown: u64,
    pub(crate) latency_sum_us: u128,
    pub(crate) latency_min_ms: f64,
    pub(crate) latency_max_ms: f64,
    pub(crate) ttft_count: u64,
    pub(crate) ttft_sum_us: u128,
    pub(crate) finish_reasons: BTreeMap<String, u64>,
    pub(crate) quality_count: u64,
    pub(crate) refusals: u64,
    pub(crate) hedging: u64,
    pub(crate) response_length_sum: u64,
    pub(crate) sentiment_sum_micro: i128,
    pub(crate) factual_count: u64,
    pub(crate) factual_sum_micro: u128,
    pub(crate) feedback_count: u64,
    pub(crate) rating_sum: i64,
    pub(crate) latency: DistSlot,
    pub(crate) ttft: DistSlot,
    needs: Needs,
    /// Set by [`Acc::finish`]: the one metric still answerable, and its value.
    finished: Option<(&'static str, Option<f64>)>,
}

/// A percentile metric's distribution (`true`: time to first token, else
/// latency) and quantile; `None` for the other metrics.
fn percentile(name: &str) -> Option<(bool, f64)> {
    Some(match name {
        "latency_p50_ms" => (false, 0.50),
        "latency_p95_ms" => (false, 0.95),
        "latency_p99_ms" => (false, 0.99),
        "ttft_p50_ms" => (true, 0.50),
        "ttft_p95_ms" => (true, 0.95),
        _ => return None,
    })
}

/// `round(x × scale)` as the rollups store it (values are validated finite and ≥ 0).
fn fixed_u(x: f64, scale: f64) -> u128 {
    let v = (x * scale).round();
    if v.is_finite() && v > 0.0 {
        v as u128
    } else {
        0
    }
}

fn fixed_i(x: f64, scale: f64) -> i128 {
    let v = (x * scale).round();
    if v.is_finite() {
        v as i128
    } else {
        0
    }
}

impl Acc {
    pub(crate) fn new(needs: Needs) -> Acc {
        Acc {
            count: 0,
            errors: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            total_tokens: 0,
            cost_nano_usd: 0,
            cost_unknown: 0,
            latency_sum_us: 0,
            latency_min_ms: f64::INFINITY,
            latency_max_ms: f64::NEG_INFINITY,
            ttft_count: 0,
            ttft_sum_us: 0,
            finish_reasons: BTreeMap::new(),
            quality_count: 0,
            refusals: 0,
            hedging: 0,
            response_length_sum: 0,
            sentiment_sum_micro: 0,
            factual_count: 0,
            factual_sum_micro: 0,
            feedback_count: 0,
            rating_sum: 0,
            latency: DistSlot::default(),
            ttft: DistSlot::default(),
            needs,
            finished: None,
        }
    }

    /// An empty accumulator whose distributions come from `pool` (emptied
    /// distributions, buffers kept);
    /// with `defer`, they keep stored digests quantized until [`Acc::finish`]
    /// (which must then be called before reading).
    pub(crate) fn with_pool(needs: Needs, pool: &mut DistPool, defer: bool) -> Acc {
        let mut a = Acc::new(needs);
        let dist = |pool: &mut DistPool| {
            DistSlot::new(match pool.pop() {
                Some(mut d) => {
                    d.reset(defer);
                    d
                }
                None if defer => Box::new(Dist::deferred()),
                None => Box::default(),
            })
        };
        if needs.latency {
            a.latency = dist(pool);
        }
        if needs.ttft {
            a.ttft = dist(pool);
        }
        a
    }

    /// Computes `metric` (one of `METRICS`) now and drops the samples,
    /// returning the emptied distributions to `pool`: afterwards only `metric(metric)`
    /// is answered, and nothing may be added. A series finishes each step
    /// once its data is all read, while its centroids are still in cache.
    pub(crate) fn finish(&mut self, metric: &'static str, pool: &mut DistPool) {
        if self.finished.is_some() {
            return;
        }
        if let Some((ttft, q)) = percentile(metric) {
            let d = if ttft {
                &mut self.ttft
            } else {
                &mut self.latency
            };
            d.prepare_quantile(q);
        }
        let v = self.metric(metric);
        for d in [&mut self.latency, &mut self.ttft] {
            if let Some(mut d) = d.take() {
                if d.reset(false) {
                    pool.push(d);
                }
            }
        }
        self.finished = Some((metric, v));
    }

    /// Adds a rollup (any tier): its exact fields, and the finish reasons
    /// and digests this accumulator needs (nothing else is decoded).
    pub(crate) fn add_rollup(&mut self, v: &RollupView<'_>) -> Result<(), StorageError> {
        debug_assert!(self.finished.is_none(), "added to a finished accumulator");
        if self.needs.digests_only {
            // A stored digest is present only when it holds values.
            if self.needs.latency {
                if let Some(d) = v.digest(DigestField::Latency)? {
                    self.latency.add_digest(d)?;
                }
            }
            if self.needs.ttft {
                if let Some(d) = v.digest(DigestField::Ttft)? {
                    self.ttft.add_digest(d)?;
                }
            }
            return Ok(());
        }
        let r = v.totals()?;
        self.count += r.count;
        self.errors += r.errors;
        self.prompt_tokens += r.prompt_tokens;
        self.completion_tokens += r.completion_tokens;
        self.total_tokens += r.total_tokens;
        self.cost_nano_usd += r.cost_nano_usd;
        self.cost_unknown += r.cost_unknown;
        self.latency_sum_us += r.latency_sum_us;
        if r.count > 0 {
            self.latency_min_ms = self.latency_min_ms.min(r.latency_min_ms);
            self.latency_max_ms = self.latency_max_ms.max(r.latency_max_ms);
        }
        self.ttft_count += r.ttft_count;
        self.ttft_sum_us += r.ttft_sum_us;
        self.quality_count += r.quality_count;
        self.refusals += r.refusals;
        self.hedging += r.hedging;
        self.response_length_sum += r.response_length_sum;
        self.sentiment_sum_micro += r.sentiment_sum_micro;
        self.factual_count += r.factual_count;
        self.factual_sum_micro += r.factual_sum_micro;
        self.feedback_count += r.feedback_count;
        self.rating_sum += r.rating_sum;
        if self.needs.finish_reasons {
            let reasons = &mut self.finish_reasons;
            v.for_each_finish_reason(|k, n| match reasons.get_mut(k) {
                Some(m) => *m += n,
                None => {
                    reasons.insert(k.to_string(), n);
                }
            })?;
        }
        if self.needs.latency && r.count > 0 {
            if let Some(d) = v.digest(DigestField::Latency)? {
                self.latency.add_digest(d)?;
            }
        }
        if self.needs.ttft && r.ttft_count > 0 {
            if let Some(d) = v.digest(DigestField::Ttft)? {
                self.ttft.add_digest(d)?;
            }
        }
        Ok(())
    }

    /// Adds one raw call, rounding as `Rollup::add_call` does.
    pub(crate) fn add_call(&mut self, c: &LlmCall) {
        debug_assert!(self.finished.is_none(), "added to a finished accumulator");
        self.count += 1;
        self.errors += u64::from(c.is_error());
        self.prompt_tokens += c.prompt_tokens;
        self.completion_tokens += c.completion_tokens;
        self.total_tokens += c.total_tokens;
        match c.cost_usd {
            Some(cost) => self.cost_nano_usd += fixed_u(cost, 1e9),
            None => self.cost_unknown += 1,
        }
        self.latency_sum_us += fixed_u(c.latency_ms, 1e3);
        self.latency_min_ms = self.latency_min_ms.min(c.latency_ms);
        self.latency_max_ms = self.latency_max_ms.max(c.latency_ms);
        if let Some(t) = c.time_to_first_token_ms {
            self.ttft_count += 1;
            self.ttft_sum_us += fixed_u(t, 1e3);
            if self.needs.ttft {
                self.ttft.add_raw(t);
            }
        }
        if self.needs.finish_reasons {
            match self.finish_reasons.get_mut(&c.finish_reason) {
                Some(n) => *n += 1,
                None => {
                    self.finish_reasons.insert(c.finish_reason.clone(), 1);
                }
            }
        }
        if self.needs.latency {
            self.latency.add_raw(c.latency_ms);
        }
    }

    pub(crate) fn add_quality(&mut self, q: &Quality) {
        debug_assert!(self.finished.is_none(), "added to a finished accumulator");
        self.quality_count += 1;
        self.refusals += u64::from(q.has_refusal);
        self.hedging += u64::from(q.has_hallucination_markers);
        self.response_length_sum += q.response_length;
        self.sentiment_sum_micro += fixed_i(q.sentiment_score, 1e6);
        if let Some(f) = q.factual_accuracy {
            self.factual_count += 1;
            self.factual_sum_micro += fixed_u(f, 1e6);
        }
    }

    pub(crate) fn add_feedback(&mut self, f: &Feedback) {
        debug_assert!(self.finished.is_none(), "added to a finished accumulator");
        self.feedback_count += 1;
        self.rating_sum += f.rating;
    }

    fn ratio(num: f64, den: u64) -> Option<f64> {
        (den > 0).then(|| num / den as f64)
    }

    /// Known-cost calls.
    pub(crate) fn cost_known(&self) -> u64 {
        self.count - self.cost_unknown.min(self.count)
    }

    /// Every metric except the percentiles.
    fn simple(&self, name: &str) -> Option<f64> {
        let n = self.count;
        Some(match name {
            "count" => n as f64,
            "errors" => self.errors as f64,
            "error_rate" => return Acc::ratio(self.errors as f64, n),
            "latency_avg_ms" => return Acc::ratio(self.latency_sum_us as f64 / 1e3, n),
            "latency_min_ms" => {
                return (n > 0 && self.latency_min_ms.is_finite()).then_some(self.latency_min_ms)
            }
            "latency_max_ms" => {
                return (n > 0 && self.latency_max_ms.is_finite()).then_some(self.latency_max_ms)
            }
            "prompt_tokens" => self.prompt_tokens as f64,
            "completion_tokens" => self.completion_tokens as f64,
            "total_tokens" => self.total_tokens as f64,
            "avg_prompt_tokens" => return Acc::ratio(self.prompt_tokens as f64, n),
            "avg_completion_tokens" => return Acc::ratio(self.completion_tokens as f64, n),
            "avg_tokens" => return Acc::ratio(self.total_tokens as f64, n),
            "total_cost_usd" => self.cost_nano_usd as f64 / 1e9,
            "avg_cost_usd" => {
                return Acc::ratio(self.cost_nano_usd as f64 / 1e9, self.cost_known())
            }
            "cost_unknown_count" => self.cost_unknown as f64,
            "quality_count" => self.quality_count as f64,
            "refusal_rate" => return Acc::ratio(self.refusals as f64, self.quality_count),
            "hedging_rate" => return Acc::ratio(self.hedging as f64, self.quality_count),
            "avg_response_length" => {
                return Acc::ratio(self.response_length_sum as f64, self.quality_count)
            }
            "avg_sentiment" => {
                return Acc::ratio(self.sentiment_sum_micro as f64 / 1e6, self.quality_count)
            }
            "avg_factual_accuracy" => {
                return Acc::ratio(self.factual_sum_micro as f64 / 1e6, self.factual_count)
            }
            "feedback_count" => self.feedback_count as f64,
            "avg_rating" => return Acc::ratio(self.rating_sum as f64, self.feedback_count),
            _ => return None,
        })
    }

    /// The value of one `METRICS` name.
    pub(crate) fn metric(&self, name: &str) -> Option<f64> {
        if let Some((m, v)) = self.finished {
            debug_assert_eq!(m, name, "a finished accumulator answers one metric");
            return v;
        }
        match percentile(name) {
            Some((true, q)) => self.ttft.quantile(q),
            Some((false, q)) => self.latency.quantile(q),
            None => self.simple(name),
        }
    }

    /// Every `METRICS` value that has samples.
    #[cfg(test)]
    pub(crate) fn all_metrics(&self) -> BTreeMap<&'static str, f64> {
        self.metrics(crate::api::METRICS)
    }

    /// The listed `METRICS` values that have samples (unknown names are skipped).
    pub(crate) fn metrics(&self, names: &[&'static str]) -> BTreeMap<&'static str, f64> {
        let mut out = BTreeMap::new();
        let wants = |m: &str| names.contains(&m);
        let lat = if self.needs.latency
            && ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"]
                .iter()
                .any(|m| wants(m))
        {
            self.latency.quantiles(&[0.50, 0.95, 0.99])
        } else {
            vec![None; 3]
        };
        let ttft = if self.needs.ttft && ["ttft_p50_ms", "ttft_p95_ms"].iter().any(|m| wants(m)) {
            self.ttft.quantiles(&[0.50, 0.95])
        } else {
            vec![None; 2]
        };
        for &name in names {
            let v = match name {
                "latency_p50_ms" => lat[0],
                "latency_p95_ms" => lat[1],
                "latency_p99_ms" => lat[2],
                "ttft_p50_ms" => ttft[0],
                "ttft_p95_ms" => ttft[1],
                other => self.simple(other),
            };
            if let Some(v) = v {
                out.insert(name, v);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(latency: f64, tokens: u64, cost: Option<f64>, error: bool) -> LlmCall {
        LlmCall {
            latency_ms: latency,
            prompt_tokens: tokens / 2,
            completion_tokens: tokens - tokens / 2,
            total_tokens: tokens,
            cost_usd: cost,
            error: error.then(|| "boom".to_string()),
            finish_reason: "stop".into(),
            ..LlmCall::default()
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]
        /// Deferred stored digests, decoded only at the end a percentile
        /// needs (`Acc::finish`), give bit for bit what decoding every
        /// centroid gives — with unit and non-unit weights, one run or many,
        /// and digests in memory mixed in.
        #[test]
        fn finished_percentiles_equal_fully_decoded_ones(
            runs in proptest::collection::vec(
                (proptest::collection::vec(0.5f64..5e4, 1..260), 4usize..60, proptest::prelude::any::<bool>()),
                1..8,
            ),
            metric in proptest::sample::select(vec!["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"]),
        ) {
            let rollups: Vec<(Rollup, bool)> = runs
                .iter()
                .map(|(lat, size, in_memory)| {
                    let mut r = Rollup::new(*size);
                    for &l in lat {
                        r.add_call(&call(l, 10, Some(0.001), false));
                    }
                    (r, *in_memory)
                })
                .collect();
            let encoded: Vec<Vec<u8>> = rollups.iter().map(|(r, _)| r.encode()).collect();
            let needs = Needs::for_metric(metric);
            let (mut full, mut pool) = (Acc::new(needs), Vec::new());
            let mut deferred = Acc::with_pool(needs, &mut pool, true);
            for ((r, in_memory), bytes) in rollups.iter().zip(&encoded) {
                let v = if *in_memory { RollupView::of(r) } else { RollupView::decode(bytes).unwrap() };
                full.add_rollup(&v).unwrap();
                deferred.add_rollup(&v).unwrap();
            }
            let want = full.metric(metric);
            deferred.finish(metric, &mut pool);
            let got = deferred.metric(metric);
            proptest::prop_assert!(want.is_some());
            proptest::prop_assert_eq!(got.map(f64::to_bits), want.map(f64::to_bits), "{:?} vs {:?}", got, want);
        }
    }

    #[test]
    fn raw_only_answers_match_the_seed_summary() {
        let mut acc = Acc::new(Needs::ALL);
        let lat = [
            120.0, 80.0, 300.0, 95.0, 101.0, 5000.0, 99.0, 130.0, 111.0, 87.0,
        ];
        for (i, &l) in lat.iter().enumerate() {
            acc.add_call(&call(l, 100 + i as u64, Some(0.001), i % 5 == 0));
        }
        let mut sorted = lat.to_vec();
        sorted.sort_by(f64::total_cmp);
        let m = acc.all_metrics();
        assert_eq!(m["count"], 10.0);
        assert_eq!(m["latency_p50_ms"], sorted[5]);
        assert_eq!(m["latency_p95_ms"], sorted[9]);
        assert_eq!(m["latency_p99_ms"], sorted[9]);
        assert_eq!(m["avg_tokens"], (100..110).sum::<u64>() as f64 / 10.0);
        assert!((m["total_cost_usd"] - 0.01).abs() < 1e-12);
        assert_eq!(m["errors"], 2.0);
        assert_eq!(m["error_rate"], 0.2);
        assert_eq!(m["latency_min_ms"], 80.0);
        assert_eq!(m["latency_max_ms"], 5000.0);
        assert!(!m.contains_key("ttft_p50_ms"), "no ttft samples");
        assert!(!m.contains_key("refusal_rate"), "no quality samples");
        assert_eq!(acc.finish_reasons["stop"], 10);
    }

    #[test]
    fn unknown_costs_are_counted_not_summed_as_zero() {
        let mut acc = Acc::new(Needs::default());
        acc.add_call(&call(1.0, 10, None, false));
        acc.add_call(&call(1.0, 10, Some(0.5), false));
        assert_eq!(acc.metric("cost_unknown_count"), Some(1.0));
        assert_eq!(acc.metric("total_cost_usd"), Some(0.5));
        assert_eq!(acc.metric("avg_cost_usd"), Some(0.5));
    }

    #[test]
    fn empty_accumulator_has_counts_but_no_ratios() {
        let m = Acc::new(Needs::ALL).all_metrics();
        assert_eq!(m["count"], 0.0);
        for absent in [
            "error_rate",
            "latency_p50_ms",
            "latency_min_ms",
            "avg_tokens",
            "avg_rating",
        ] {
            assert!(!m.contains_key(absent), "{absent}");
        }
    }

    #[test]
    fn quality_and_feedback_rates() {
        let mut acc = Acc::new(Needs::default());
        for i in 0..4 {
            acc.add_quality(&Quality {
                response_length: 100 * (i + 1),
                has_refusal: i == 0,
                has_hallucination_markers: i < 3,
                sentiment_score: -0.25,
                factual_accuracy: (i == 1).then_some(0.75),
                ..Quality::default()
            });
        }
        acc.add_feedback(&Feedback {
            rating: 5,
            ..Feedback::default()
        });
        acc.add_feedback(&Feedback {
            rating: 2,
            ..Feedback::default()
        });
        assert_eq!(acc.metric("refusal_rate"), Some(0.25));
        assert_eq!(acc.metric("hedging_rate"), Some(0.75));
        assert_eq!(acc.metric("avg_response_length"), Some(250.0));
        assert_eq!(acc.metric("avg_sentiment"), Some(-0.25));
        assert_eq!(acc.metric("avg_factual_accuracy"), Some(0.75));
        assert_eq!(acc.metric("avg_rating"), Some(3.5));
        assert_eq!(acc.metric("no_such_metric"), None);
    }
}
