//! Shared by the query tests: a random workload generator and a brute-force
//! oracle computed straight from the raw events, independent of the engine.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;

use sextant_model::{Dim, Feedback, LlmCall, Quality, TimeRange, DAY_MS, MINUTE_MS};
use sextant_storage::RowFilter;

pub const MODELS: &[&str] = &["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet"];
pub const ENDPOINTS: &[&str] = &["chat", "search"];
pub const USERS: &[&str] = &["u1", "u2", "u3", "u4"];

/// A generated workload: calls, quality and feedback (each quality/feedback
/// row refers to a call; its timestamp is a little after the call's).
#[derive(Debug, Clone, Default)]
pub struct Workload {
    pub calls: Vec<LlmCall>,
    pub quality: Vec<Quality>,
    pub feedback: Vec<Feedback>,
}

/// About `per_hour` calls in each hour of `[start, start + days)`, random
/// minutes, lognormal-ish latencies per model, 3 % errors, unknown cost for
/// one model in ten calls, ~60 % with quality and ~20 % with feedback.
pub fn workload(seed: u64, start_ms: i64, days: i64, per_hour: usize) -> Workload {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut w = Workload::default();
    let hours = days * 24;
    let mut n = 0u64;
    for h in 0..hours {
        for _ in 0..per_hour {
            let ts = start_ms + h * 3_600_000 + rng.i64(0..3_600_000);
            n += 1;
            let mi = rng.usize(0..MODELS.len());
            let base = [800.0, 300.0, 1200.0][mi];
            // Roughly lognormal: exp of a sum of uniforms.
            let z: f64 = (0..4).map(|_| rng.f64()).sum::<f64>() - 2.0;
            let latency = (base * (z * 0.8).exp() * 1000.0).round() / 1000.0;
            let prompt = rng.u64(10..2000);
            let completion = rng.u64(1..800);
            let error = rng.f64() < 0.03;
            let call = LlmCall {
                request_id: format!("r{seed}-{n}"),
                timestamp_ms: ts,
                model: MODELS[mi].into(),
                provider: if mi == 2 { "anthropic" } else { "openai" }.into(),
                endpoint: ENDPOINTS[rng.usize(0..ENDPOINTS.len())].into(),
                latency_ms: latency,
                time_to_first_token_ms: rng
                    .bool()
                    .then(|| (latency * 0.2 * 1000.0).round() / 1000.0),
                prompt_tokens: prompt,
                completion_tokens: completion,
                total_tokens: prompt + completion,
                cost_usd: (!(mi == 2 && rng.u32(0..10) == 0))
                    .then_some(prompt as f64 * 2.5e-6 + completion as f64 * 1e-5),
                finish_reason: if error {
                    ""
                } else if rng.u32(0..10) == 0 {
                    "length"
                } else {
                    "stop"
                }
                .into(),
                error: error.then(|| "rate limited".to_string()),
                user_id: Some(USERS[rng.usize(0..USERS.len())].into()),
                session_id: None,
                tags: BTreeMap::from([(
                    "team".to_string(),
                    if rng.bool() { "a" } else { "b" }.to_string(),
                )]),
                ..LlmCall::default()
            };
            if rng.f64() < 0.6 {
                w.quality.push(Quality {
                    request_id: call.request_id.clone(),
                    timestamp_ms: ts + rng.i64(0..5_000),
                    response_length: rng.u64(50..1500),
                    has_refusal: rng.f64() < 0.05,
                    has_hallucination_markers: rng.f64() < 0.2,
                    sentiment_score: (rng.f64() - 0.5) / 5.0,
                    factual_accuracy: rng.bool().then(|| rng.f64()),
                });
            }
            if rng.f64() < 0.2 {
                w.feedback.push(Feedback {
                    request_id: call.request_id.clone(),
                    timestamp_ms: ts + rng.i64(0..60_000),
                    rating: rng.i64(1..6),
                    comment: None,
                });
            }
            w.calls.push(call);
        }
    }
    w
}

/// The brute-force answer for one group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Truth {
    pub count: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub cost_nano: u128,
    pub cost_unknown: u64,
    pub latency_sum_us: u128,
    pub latencies: Vec<f64>,
    pub ttfts: Vec<f64>,
    pub quality_count: u64,
    pub refusals: u64,
    pub hedging: u64,
    pub length_sum: u64,
    pub feedback_count: u64,
    pub rating_sum: i64,
    pub finish_reasons: BTreeMap<String, u64>,
}

/// Brute force over `w`: calls in `range` passing `filter`, grouped by
/// `group_by` values; quality/feedback by their own timestamp, joined to their call.
pub fn truth(
    w: &Workload,
    range: TimeRange,
    filter: &RowFilter,
    group_by: &[Dim],
) -> BTreeMap<Vec<String>, Truth> {
    let mut out: BTreeMap<Vec<String>, Truth> = BTreeMap::new();
    let key = |c: &LlmCall| {
        group_by
            .iter()
            .map(|d| d.value_of(c).to_string())
            .collect::<Vec<_>>()
    };
    let by_id: BTreeMap<&str, &LlmCall> =
        w.calls.iter().map(|c| (c.request_id.as_str(), c)).collect();
    for c in &w.calls {
        if !range.contains(c.timestamp_ms) || !filter.matches(c) {
            continue;
        }
        let t = out.entry(key(c)).or_default();
        t.count += 1;
        t.errors += u64::from(c.is_error());
        t.prompt_tokens += c.prompt_tokens;
        t.completion_tokens += c.completion_tokens;
        t.total_tokens += c.total_tokens;
        match c.cost_usd {
            Some(x) => t.cost_nano += (x * 1e9).round() as u128,
            None => t.cost_unknown += 1,
        }
        t.latency_sum_us += (c.latency_ms * 1e3).round() as u128;
        t.latencies.push(c.latency_ms);
        if let Some(x) = c.time_to_first_token_ms {
            t.ttfts.push(x);
        }
        *t.finish_reasons.entry(c.finish_reason.clone()).or_default() += 1;
    }
    for q in &w.quality {
        let c = by_id[q.request_id.as_str()];
        if range.contains(q.timestamp_ms) && filter.matches(c) {
            let t = out.entry(key(c)).or_default();
            t.quality_count += 1;
            t.refusals += u64::from(q.has_refusal);
            t.hedging += u64::from(q.has_hallucination_markers);
            t.length_sum += q.response_length;
        }
    }
    for f in &w.feedback {
        let c = by_id[f.request_id.as_str()];
        if range.contains(f.timestamp_ms) && filter.matches(c) {
            let t = out.entry(key(c)).or_default();
            t.feedback_count += 1;
            t.rating_sum += f.rating;
        }
    }
    for t in out.values_mut() {
        t.latencies.sort_by(f64::total_cmp);
        t.ttfts.sort_by(f64::total_cmp);
    }
    out
}

/// True when `v` is within `eps` (plus one sample) in rank of the `q`-quantile of `sorted`:
/// the fraction of samples below `v` is ≤ q + eps and the fraction at or
/// below it is ≥ q − eps.
pub fn within_rank(sorted: &[f64], q: f64, v: f64, eps: f64) -> bool {
    let n = sorted.len() as f64;
    // Discrete samples: a value between two neighbours is one sample off.
    let eps = eps + 1.0 / n;
    let below = sorted.partition_point(|&x| x < v) as f64 / n;
    let at_or_below = sorted.partition_point(|&x| x <= v) as f64 / n;
    below <= q + eps && at_or_below >= q - eps
}

/// The seed's exact percentile.
pub fn seed_percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

pub const DAY: i64 = DAY_MS;
pub const MIN: i64 = MINUTE_MS;

/// Checks one group's answer against the brute force. Counts, errors and
/// sums must be equal; percentiles must be the seed's exact value when
/// `eps == 0.0`, else within `eps` in rank.
pub fn check_group(
    what: &str,
    count: u64,
    errors: u64,
    m: &BTreeMap<&'static str, f64>,
    finish_reasons: &BTreeMap<String, u64>,
    t: &Truth,
    eps: f64,
) {
    assert_eq!(count, t.count, "{what}: count");
    assert_eq!(errors, t.errors, "{what}: errors");
    let get = |k: &str| m.get(k).copied();
    assert_eq!(get("count"), Some(t.count as f64), "{what}");
    assert_eq!(
        get("prompt_tokens"),
        Some(t.prompt_tokens as f64),
        "{what}: prompt_tokens"
    );
    assert_eq!(
        get("completion_tokens"),
        Some(t.completion_tokens as f64),
        "{what}"
    );
    assert_eq!(
        get("total_tokens"),
        Some(t.total_tokens as f64),
        "{what}: total_tokens"
    );
    assert_eq!(
        get("total_cost_usd"),
        Some(t.cost_nano as f64 / 1e9),
        "{what}: total_cost_usd"
    );
    assert_eq!(
        get("cost_unknown_count"),
        Some(t.cost_unknown as f64),
        "{what}"
    );
    assert_eq!(
        get("quality_count"),
        Some(t.quality_count as f64),
        "{what}: quality_count"
    );
    assert_eq!(
        get("feedback_count"),
        Some(t.feedback_count as f64),
        "{what}: feedback_count"
    );
    assert_eq!(finish_reasons, &t.finish_reasons, "{what}: finish reasons");
    if t.count == 0 {
        assert_eq!(get("latency_p50_ms"), None, "{what}");
        return;
    }
    let n = t.count as f64;
    assert_eq!(
        get("error_rate"),
        Some(t.errors as f64 / n),
        "{what}: error_rate"
    );
    assert_eq!(
        get("avg_tokens"),
        Some(t.total_tokens as f64 / n),
        "{what}: avg_tokens"
    );
    assert_eq!(
        get("latency_avg_ms"),
        Some(t.latency_sum_us as f64 / 1e3 / n),
        "{what}"
    );
    assert_eq!(
        get("latency_min_ms"),
        t.latencies.first().copied(),
        "{what}: min"
    );
    assert_eq!(
        get("latency_max_ms"),
        t.latencies.last().copied(),
        "{what}: max"
    );
    if t.quality_count > 0 {
        let qc = t.quality_count as f64;
        assert_eq!(
            get("refusal_rate"),
            Some(t.refusals as f64 / qc),
            "{what}: refusal_rate"
        );
        assert_eq!(
            get("hedging_rate"),
            Some(t.hedging as f64 / qc),
            "{what}: hedging_rate"
        );
        assert_eq!(
            get("avg_response_length"),
            Some(t.length_sum as f64 / qc),
            "{what}"
        );
    }
    if t.feedback_count > 0 {
        assert_eq!(
            get("avg_rating"),
            Some(t.rating_sum as f64 / t.feedback_count as f64),
            "{what}"
        );
    }
    for (name, q, sorted) in [
        ("latency_p50_ms", 0.50, &t.latencies),
        ("latency_p95_ms", 0.95, &t.latencies),
        ("latency_p99_ms", 0.99, &t.latencies),
        ("ttft_p50_ms", 0.50, &t.ttfts),
        ("ttft_p95_ms", 0.95, &t.ttfts),
    ] {
        if sorted.is_empty() {
            assert_eq!(get(name), None, "{what}: {name}");
            continue;
        }
        let v = get(name).unwrap_or_else(|| panic!("{what}: {name} missing"));
        if eps == 0.0 {
            assert_eq!(v, seed_percentile(sorted, q), "{what}: {name} exact");
        } else {
            assert!(
                within_rank(sorted, q, v, eps),
                "{what}: {name} = {v} is not within rank {eps} of the {q} quantile (exact {}), n = {}",
                seed_percentile(sorted, q),
                sorted.len()
            );
        }
    }
}
