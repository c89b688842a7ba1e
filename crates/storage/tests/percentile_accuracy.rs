//! Percentile accuracy of merged rollup digests against exact answers.
//!
//! For lognormal, bimodal and heavy-tailed (Pareto) latencies over 30
//! simulated days, minute rollups are built with `Rollup::add_call`, stored
//! (`encode`/`decode`), merged minute → hour → day exactly as the engine does
//! (hour and day digests re-compressed with `resize_digests`), and the 30 day
//! rollups merged into one. p50/p95/p99 of every hour, every day and the
//! 30-day digest are compared with exact sorted values by **rank error**
//! `|F_exact(estimate) − q|` and asserted below the bound documented in
//! docs/format/rollup.md.
//!
//! Runtime: one event per simulated second per distribution (86,400 a day,
//! 2,592,000 per distribution) keeps the debug-mode test under ~20 s; the
//! production workload (10 events/s over 9 groups, ~67 per group-minute) has
//! the same per-minute-rollup size as this one (60).
//!
//! Set `SEXTANT_DIGEST_SIZES=m,h,d` to also print (not assert) the errors
//! for other digest sizes.

use sextant_model::LlmCall;
use sextant_storage::{Digest, Rollup};

/// Documented bounds on rank error (docs/format/rollup.md).
const BOUND_P50: f64 = 0.01;
const BOUND_TAIL: f64 = 0.005;
/// Recommended tier digest sizes (docs/format/rollup.md): minute 50, hour 200, day 200.
const SIZES: (usize, usize, usize) = (50, 200, 200);
const DAYS: usize = 30;
const EVENTS_PER_MINUTE: usize = 60;
const QS: [f64; 3] = [0.5, 0.95, 0.99];

#[derive(Debug, Clone, Copy)]
enum Dist {
    LogNormal,
    Bimodal,
    Pareto,
}

fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = 1.0 - rng.f64();
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn sample(d: Dist, rng: &mut fastrand::Rng) -> f64 {
    match d {
        Dist::LogNormal => (800f64.ln() + 0.6 * normal(rng)).exp(),
        Dist::Bimodal => {
            if rng.f64() < 0.7 {
                (300f64.ln() + 0.25 * normal(rng)).exp()
            } else {
                (3000f64.ln() + 0.3 * normal(rng)).exp()
            }
        }
        // Pareto, x_m = 100 ms, alpha = 1.5 (infinite variance).
        Dist::Pareto => 100.0 / (1.0 - rng.f64()).powf(1.0 / 1.5),
    }
}

/// Rank error of `estimate` as the `q`-quantile of sorted `exact`: distance
/// from q to the interval [#{x < est}, #{x ≤ est}] / n.
fn rank_error(exact: &[f64], q: f64, estimate: f64) -> f64 {
    let n = exact.len() as f64;
    let lo = exact.partition_point(|&x| x < estimate) as f64 / n;
    let hi = exact.partition_point(|&x| x <= estimate) as f64 / n;
    if q < lo {
        lo - q
    } else if q > hi {
        q - hi
    } else {
        0.0
    }
}

/// Worst rank error per quantile, per scope.
#[derive(Debug, Default, Clone, Copy)]
struct Worst {
    hour: [f64; 3],
    day: [f64; 3],
    month: [f64; 3],
}

fn check(worst: &mut [f64; 3], digest: &Digest, exact: &mut [f64]) {
    exact.sort_unstable_by(f64::total_cmp);
    assert_eq!(digest.count(), exact.len() as u64);
    for (i, q) in QS.iter().enumerate() {
        let e = rank_error(exact, *q, digest.quantile(*q));
        worst[i] = worst[i].max(e);
    }
}

fn stored(r: &Rollup) -> Rollup {
    Rollup::decode(&r.encode()).expect("a rollup we encoded decodes")
}

/// Runs the minute → hour → day → 30-day pipeline and returns worst errors.
fn run(dist: Dist, (m, h, d): (usize, usize, usize), seed: u64) -> Worst {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut call = LlmCall {
        model: "gpt-4o".into(),
        endpoint: "chat".into(),
        finish_reason: "stop".into(),
        total_tokens: 300,
        cost_usd: Some(0.001),
        ..LlmCall::default()
    };
    let mut worst = Worst::default();
    let mut all = Vec::with_capacity(DAYS * 1440 * EVENTS_PER_MINUTE);
    let mut days = Vec::with_capacity(DAYS);
    for _ in 0..DAYS {
        let mut day = Rollup::new(d);
        let day_start = all.len();
        for _ in 0..24 {
            let mut hour = Rollup::new(h);
            let hour_start = all.len();
            for _ in 0..60 {
                let mut minute = Rollup::new(m);
                for _ in 0..EVENTS_PER_MINUTE {
                    call.latency_ms = sample(dist, &mut rng);
                    all.push(call.latency_ms);
                    minute.add_call(&call);
                }
                hour.merge(&stored(&minute));
            }
            hour.resize_digests(h);
            let hour = stored(&hour);
            check(
                &mut worst.hour,
                hour.latency.as_ref().unwrap(),
                &mut all[hour_start..].to_vec(),
            );
            day.merge(&hour);
        }
        day.resize_digests(d);
        let day = stored(&day);
        check(
            &mut worst.day,
            day.latency.as_ref().unwrap(),
            &mut all[day_start..].to_vec(),
        );
        days.push(day);
    }
    let month = Digest::merge_many(days.iter().filter_map(|r| r.latency.as_ref()), d);
    check(&mut worst.month, &month, &mut all);
    worst
}

fn report(dist: Dist, sizes: (usize, usize, usize), w: &Worst) {
    println!(
        "{dist:?} sizes {sizes:?}: worst rank error p50/p95/p99 — hour {:.5}/{:.5}/{:.5}, day {:.5}/{:.5}/{:.5}, 30 days {:.5}/{:.5}/{:.5}",
        w.hour[0], w.hour[1], w.hour[2], w.day[0], w.day[1], w.day[2], w.month[0], w.month[1], w.month[2]
    );
}

fn assert_within_bound(dist: Dist, w: &Worst) {
    for (scope, errs) in [("hour", w.hour), ("day", w.day), ("30 days", w.month)] {
        assert!(
            errs[0] <= BOUND_P50,
            "{dist:?} {scope} p50 rank error {} > {BOUND_P50}",
            errs[0]
        );
        for (i, q) in [(1, "p95"), (2, "p99")] {
            assert!(
                errs[i] <= BOUND_TAIL,
                "{dist:?} {scope} {q} rank error {} > {BOUND_TAIL}",
                errs[i]
            );
        }
    }
}

fn extra_sizes() -> Option<(usize, usize, usize)> {
    let s = std::env::var("SEXTANT_DIGEST_SIZES").ok()?;
    let v: Vec<usize> = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
    (v.len() == 3).then(|| (v[0], v[1], v[2]))
}

fn accuracy(dist: Dist, seed: u64) {
    let w = run(dist, SIZES, seed);
    report(dist, SIZES, &w);
    if let Some(sizes) = extra_sizes() {
        report(dist, sizes, &run(dist, sizes, seed));
    }
    assert_within_bound(dist, &w);
}

#[test]
fn lognormal_percentiles_from_merged_rollups_are_within_rank_bound() {
    accuracy(Dist::LogNormal, 1);
}

#[test]
fn bimodal_percentiles_from_merged_rollups_are_within_rank_bound() {
    accuracy(Dist::Bimodal, 2);
}

#[test]
fn pareto_percentiles_from_merged_rollups_are_within_rank_bound() {
    accuracy(Dist::Pareto, 3);
}

#[test]
fn rank_error_measures_distance_to_the_rank_interval() {
    let xs = [1.0, 2.0, 2.0, 3.0];
    assert_eq!(rank_error(&xs, 0.5, 2.0), 0.0);
    assert_eq!(rank_error(&xs, 0.5, 3.0), 0.25);
    assert_eq!(rank_error(&xs, 0.9, 1.0), 0.65);
}
