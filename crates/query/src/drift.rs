//! Drift: compares two accumulators signal by signal.
//!
//! **Invariants:**
//! - a signal with fewer than `min_samples` samples on either side is
//!   `InsufficientData` and never drifts;
//! - rate signals (refusal, hedging, error) drift only when the absolute
//!   change exceeds the threshold *and* the two-proportion z-test p-value is
//!   below `config.p_value`; latency drifts only when the KS distance exceeds
//!   its threshold *and* the KS test p-value is below `config.p_value`;
//! - the three seed signals produce the seed's reason strings, byte for byte
//!   (Rust's `{:.2}` and Python's `:.2f` both round the exact binary value
//!   half-to-even, so they agree).

use crate::acc::Acc;
use crate::api::{DriftConfig, DriftSignal, SignalStatus};
use crate::dist::ks_distance;
use crate::stats::{ks_p_value, two_proportion_p_value};

/// The outcome of comparing two windows.
#[derive(Debug)]
pub(crate) struct Compared {
    pub(crate) signals: Vec<DriftSignal>,
    pub(crate) reasons: Vec<String>,
    pub(crate) drift_detected: bool,
    pub(crate) insufficient_data: bool,
}

#[derive(Clone, Copy)]
enum Change {
    Absolute,
    Relative,
}

struct Side {
    samples: u64,
    value: Option<f64>,
}

fn signal(
    name: &'static str,
    base: Side,
    cur: Side,
    kind: Change,
    threshold: f64,
    cfg: &DriftConfig,
) -> DriftSignal {
    let enough = base.samples >= cfg.min_samples.max(1) && cur.samples >= cfg.min_samples.max(1);
    let mut s = DriftSignal {
        name,
        baseline: base.value,
        current: cur.value,
        change: None,
        statistic: None,
        threshold,
        p_value: None,
        drifted: false,
        status: if enough {
            SignalStatus::Ok
        } else {
            SignalStatus::InsufficientData
        },
        baseline_samples: base.samples,
        current_samples: cur.samples,
    };
    if !enough {
        return s;
    }
    if let (Some(b), Some(c)) = (base.value, cur.value) {
        s.change = match kind {
            Change::Absolute => Some(c - b),
            Change::Relative => (b != 0.0).then(|| (c - b) / b),
        };
        s.statistic = s.change.map(f64::abs);
        s.drifted = s.statistic.is_some_and(|x| x > threshold);
    }
    s
}

/// Adds a two-proportion test to a rate signal.
fn with_z_test(mut s: DriftSignal, x1: u64, x2: u64, cfg: &DriftConfig) -> DriftSignal {
    if s.status == SignalStatus::Ok {
        let p = two_proportion_p_value(x1, s.baseline_samples, x2, s.current_samples);
        s.p_value = Some(p);
        s.drifted = s.drifted && p < cfg.p_value;
    }
    s
}

pub(crate) fn compare(base: &Acc, cur: &Acc, cfg: &DriftConfig) -> Compared {
    let side = |a: &Acc, samples: u64, metric: &str| Side {
        samples,
        value: a.metric(metric),
    };
    let refusal = with_z_test(
        signal(
            "refusal_rate",
            side(base, base.quality_count, "refusal_rate"),
            side(cur, cur.quality_count, "refusal_rate"),
            Change::Absolute,
            cfg.refusal_rate_abs,
            cfg,
        ),
        base.refusals,
        cur.refusals,
        cfg,
    );
    let hedging = with_z_test(
        signal(
            "hedging_rate",
            side(base, base.quality_count, "hedging_rate"),
            side(cur, cur.quality_count, "hedging_rate"),
            Change::Absolute,
            cfg.hedging_rate_abs,
            cfg,
        ),
        base.hedging,
        cur.hedging,
        cfg,
    );
    let length = signal(
        "avg_response_length",
        side(base, base.quality_count, "avg_response_length"),
        side(cur, cur.quality_count, "avg_response_length"),
        Change::Relative,
        cfg.length_rel,
        cfg,
    );
    let errors = with_z_test(
        signal(
            "error_rate",
            side(base, base.count, "error_rate"),
            side(cur, cur.count, "error_rate"),
            Change::Absolute,
            cfg.error_rate_abs,
            cfg,
        ),
        base.errors,
        cur.errors,
        cfg,
    );
    let mut latency = signal(
        "latency",
        side(base, base.count, "latency_p50_ms"),
        side(cur, cur.count, "latency_p50_ms"),
        Change::Relative,
        cfg.latency_ks,
        cfg,
    );
    if latency.status == SignalStatus::Ok {
        latency.drifted = false;
        if let Some(d) = ks_distance(&base.latency, &cur.latency) {
            let p = ks_p_value(d, base.count, cur.count);
            latency.statistic = Some(d);
            latency.p_value = Some(p);
            latency.drifted = d > cfg.latency_ks && p < cfg.p_value;
        }
    }
    let tokens = signal(
        "tokens_per_call",
        side(base, base.count, "avg_tokens"),
        side(cur, cur.count, "avg_tokens"),
        Change::Relative,
        cfg.tokens_rel,
        cfg,
    );
    let cost = signal(
        "cost_per_call",
        side(base, base.cost_known(), "avg_cost_usd"),
        side(cur, cur.cost_known(), "avg_cost_usd"),
        Change::Relative,
        cfg.cost_rel,
        cfg,
    );
    let rating = signal(
        "avg_rating",
        side(base, base.feedback_count, "avg_rating"),
        side(cur, cur.feedback_count, "avg_rating"),
        Change::Absolute,
        cfg.rating_abs,
        cfg,
    );

    let mut reasons = Vec::new();
    let val = |s: &DriftSignal| (s.baseline.unwrap_or(0.0), s.current.unwrap_or(0.0));
    // The seed's three, in the seed's order and format.
    if refusal.drifted {
        let (b, c) = val(&refusal);
        reasons.push(format!("refusal_rate_change: {b:.2} -> {c:.2}"));
    }
    if length.drifted {
        let (b, c) = val(&length);
        reasons.push(format!("length_change: {b:.0} -> {c:.0}"));
    }
    if hedging.drifted {
        let (b, c) = val(&hedging);
        reasons.push(format!("hallucination_rate_change: {b:.2} -> {c:.2}"));
    }
    // Extensions, after the seed's.
    if errors.drifted {
        let (b, c) = val(&errors);
        reasons.push(format!("error_rate_change: {b:.2} -> {c:.2}"));
    }
    if latency.drifted {
        let (b, c) = val(&latency);
        let d = latency.statistic.unwrap_or(0.0);
        reasons.push(format!(
            "latency_distribution_change: ks={d:.2}, p50 {b:.0} -> {c:.0}"
        ));
    }
    if tokens.drifted {
        let (b, c) = val(&tokens);
        reasons.push(format!("tokens_per_call_change: {b:.0} -> {c:.0}"));
    }
    if cost.drifted {
        let (b, c) = val(&cost);
        reasons.push(format!("cost_per_call_change: {b:.6} -> {c:.6}"));
    }
    if rating.drifted {
        let (b, c) = val(&rating);
        reasons.push(format!("avg_rating_change: {b:.2} -> {c:.2}"));
    }
    let signals = vec![
        refusal, hedging, length, errors, latency, tokens, cost, rating,
    ];
    let drift_detected = signals.iter().any(|s| s.drifted);
    let insufficient_data = signals
        .iter()
        .all(|s| s.status == SignalStatus::InsufficientData);
    Compared {
        signals,
        reasons,
        drift_detected,
        insufficient_data,
    }
}
