//! Executor tests over the in-memory model of storage (`testing::MemSource`):
//! every answer is compared with a brute force over the raw events.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use sextant_model::{Dim, Feedback, LlmCall, Quality, Tier, TimeRange, HOUR_MS};
use sextant_storage::RowFilter;

use crate::acc::{Acc, Needs};
use crate::api::*;
use crate::testing::MemSource;

const T0: i64 = 1_700_006_400_000; // a UTC midnight
const EPS: f64 = 0.01;

fn source(w: &Workload) -> MemSource {
    MemSource::new(w.calls.clone(), w.quality.clone(), w.feedback.clone())
}

fn check_summary(
    src: &MemSource,
    w: &Workload,
    range: TimeRange,
    filter: &RowFilter,
    group_by: &[Dim],
    exact: bool,
) -> SummaryResult {
    let req = SummaryRequest {
        range,
        filter: filter.clone(),
        group_by: group_by.to_vec(),
        exact,
    };
    let got = summary_on(src, &req).expect("summary");
    let want = truth(w, range, filter, group_by);
    let what = format!("range {range:?} filter {filter:?} group_by {group_by:?} exact {exact}");
    if group_by.is_empty() {
        assert_eq!(got.groups.len(), 1, "{what}");
        let t = want.get(&Vec::new()).cloned().unwrap_or_default();
        let g = &got.groups[0];
        check_group(
            &what,
            g.count,
            g.errors,
            &g.metrics,
            &g.finish_reasons,
            &t,
            if exact { 0.0 } else { EPS },
        );
    } else {
        let labels: Vec<Vec<String>> = got
            .groups
            .iter()
            .map(|g| {
                group_by
                    .iter()
                    .map(|d| g.labels[&d.name()].clone())
                    .collect()
            })
            .collect();
        let mut want_labels: Vec<Vec<String>> = want.keys().cloned().collect();
        let mut sorted = labels.clone();
        sorted.sort();
        want_labels.sort();
        assert_eq!(sorted, want_labels, "{what}: groups");
        for (g, l) in got.groups.iter().zip(&labels) {
            check_group(
                &format!("{what} {l:?}"),
                g.count,
                g.errors,
                &g.metrics,
                &g.finish_reasons,
                &want[l],
                if exact { 0.0 } else { EPS },
            );
        }
    }
    got
}

fn f_model(m: &str) -> RowFilter {
    RowFilter {
        equals: vec![(Dim::Model, vec![m.to_string()])],
        error: None,
    }
}

#[test]
fn oracle_summaries_over_90_days_match_brute_force() {
    let w = workload(7, T0, 90, 3);
    let src = source(&w);
    let mut rng = fastrand::Rng::with_seed(11);
    let filters = [
        RowFilter::default(),
        f_model("gpt-4o"),
        RowFilter {
            equals: vec![(Dim::UserId, vec!["u1".into(), "u3".into()])],
            error: None,
        },
        RowFilter {
            equals: vec![],
            error: Some(true),
        },
        RowFilter {
            equals: vec![(Dim::Tag("team".into()), vec!["a".into()])],
            error: None,
        },
    ];
    let group_bys: [&[Dim]; 4] = [
        &[],
        &[Dim::Model],
        &[Dim::Model, Dim::Endpoint],
        &[Dim::UserId],
    ];
    for i in 0..12 {
        // Random unaligned ranges, from seconds to the whole 90 days.
        let from = T0 - DAY + rng.i64(0..92 * DAY);
        let len = [
            rng.i64(0..MIN),
            rng.i64(0..2 * HOUR_MS),
            rng.i64(0..40 * DAY),
            92 * DAY,
        ][i % 4];
        let range = TimeRange::new(from, from + len);
        let filter = &filters[i % filters.len()];
        let group_by = group_bys[i % group_bys.len()];
        let got = check_summary(&src, &w, range, filter, group_by, false);
        assert!(!got.partial, "everything is retained");
    }
    // The whole range, ungrouped and by model, and exact answers.
    let all = TimeRange::new(T0, T0 + 90 * DAY);
    check_summary(&src, &w, all, &RowFilter::default(), &[], false);
    check_summary(&src, &w, all, &RowFilter::default(), &[Dim::Model], false);
    check_summary(
        &src,
        &w,
        TimeRange::new(T0 + 12_345, T0 + 5 * DAY + 7),
        &f_model("gpt-4o-mini"),
        &[Dim::Endpoint],
        true,
    );
}

#[test]
fn oracle_series_points_match_brute_force_per_step() {
    let w = workload(8, T0, 3, 20);
    let src = source(&w);
    let range = TimeRange::new(T0 + 17 * MIN + 500, T0 + 2 * DAY + 3 * HOUR_MS);
    for metric in [
        "count",
        "total_tokens",
        "latency_p95_ms",
        "error_rate",
        "refusal_rate",
        "avg_rating",
    ] {
        let req = SeriesRequest {
            metric: metric.into(),
            range,
            step_ms: 3 * HOUR_MS,
            filter: RowFilter::default(),
            group_by: vec![Dim::Model],
        };
        let got = series_on(&src, &req).unwrap();
        assert_eq!(got.series.len(), MODELS.len());
        assert!(!got.partial);
        for s in &got.series {
            assert_eq!(s.points.len(), 17, "ceil(51 h / 3 h)");
            let model = &s.labels["model"];
            for &(t, v) in &s.points {
                let step = TimeRange::new(t, (t + 3 * HOUR_MS).min(range.to_ms));
                let tr = truth(&w, step, &f_model(model), &[])
                    .remove(&Vec::new())
                    .unwrap_or_default();
                let what = format!("{metric} {model} at {t}");
                match metric {
                    "count" => assert_eq!(v, Some(tr.count as f64), "{what}"),
                    "total_tokens" => assert_eq!(v, Some(tr.total_tokens as f64), "{what}"),
                    "error_rate" => assert_eq!(
                        v,
                        (tr.count > 0).then(|| tr.errors as f64 / tr.count as f64),
                        "{what}"
                    ),
                    "refusal_rate" => assert_eq!(
                        v,
                        (tr.quality_count > 0)
                            .then(|| tr.refusals as f64 / tr.quality_count as f64),
                        "{what}"
                    ),
                    "avg_rating" => assert_eq!(
                        v,
                        (tr.feedback_count > 0)
                            .then(|| tr.rating_sum as f64 / tr.feedback_count as f64),
                        "{what}"
                    ),
                    _ => match v {
                        None => assert!(tr.latencies.is_empty(), "{what}"),
                        Some(v) => assert!(within_rank(&tr.latencies, 0.95, v, EPS), "{what}: {v}"),
                    },
                }
            }
        }
    }
}

/// A series finishes each step's accumulators as soon as its rollups are
/// read (`Acc::finish`): every point must equal the summary of its step
/// alone, which never finishes early — bit for bit, for every percentile,
/// over minute, hour and unaligned multi-hour steps with raw edges.
#[test]
fn series_points_equal_the_summaries_of_their_steps() {
    let w = workload(11, T0, 2, 40);
    let src = source(&w);
    let range = TimeRange::new(T0 + 5 * HOUR_MS + 7 * MIN + 250, T0 + DAY + 2 * HOUR_MS);
    for (step_ms, len) in [
        (MIN, 3 * HOUR_MS),
        (HOUR_MS, DAY),
        (3 * HOUR_MS, DAY + HOUR_MS),
    ] {
        let range = TimeRange::new(range.from_ms, (range.from_ms + len).min(range.to_ms));
        for metric in [
            "latency_p95_ms",
            "latency_p50_ms",
            "latency_p99_ms",
            "ttft_p95_ms",
        ] {
            let req = SeriesRequest {
                metric: metric.into(),
                range,
                step_ms,
                filter: RowFilter::default(),
                group_by: vec![Dim::Model],
            };
            let got = series_on(&src, &req).unwrap();
            assert_eq!(got.series.len(), MODELS.len());
            let mut compared = 0;
            for s in &got.series {
                let model = &s.labels["model"];
                for &(t, v) in &s.points {
                    let step = TimeRange::new(t, (t + step_ms).min(range.to_ms));
                    let sum = summary_on(
                        &src,
                        &SummaryRequest {
                            range: step,
                            filter: f_model(model),
                            group_by: Vec::new(),
                            exact: false,
                        },
                    )
                    .unwrap();
                    let want = sum.groups[0].metrics.get(metric).copied();
                    assert_eq!(
                        v.map(f64::to_bits),
                        want.map(f64::to_bits),
                        "{metric} step {step_ms} {model} at {t}: {v:?} vs {want:?}"
                    );
                    compared += usize::from(v.is_some());
                }
            }
            assert!(
                compared > 0,
                "{metric} step {step_ms}: no point had samples"
            );
        }
    }
}

#[test]
fn after_raw_retention_rollups_alone_answer_aligned_ranges() {
    let w = workload(9, T0, 90, 3);
    let mut src = source(&w);
    let now = T0 + 90 * DAY;
    src.coverage.raw_from_ms = now - 30 * DAY;
    src.coverage.minute_from_ms = now - 30 * DAY;
    src.coverage.day_until_ms = now;
    src.coverage.hour_until_ms = now;
    src.coverage.week_until_ms = Tier::Week.floor(now);
    // Whole hours older than raw retention: answered from hour and day rollups.
    for (from, to) in [(T0 + 3 * HOUR_MS, T0 + 40 * DAY + 5 * HOUR_MS), (T0, now)] {
        let range = TimeRange::new(from, to);
        let got = check_summary(&src, &w, range, &RowFilter::default(), &[Dim::Model], false);
        assert!(!got.partial);
        check_summary(
            &src,
            &w,
            range,
            &f_model("claude-3-5-sonnet"),
            &[Dim::Endpoint],
            false,
        );
    }
    // A raw-only filter over the old part is partial, and says why.
    let range = TimeRange::new(T0, now);
    let req = SummaryRequest {
        range,
        filter: RowFilter {
            equals: vec![(Dim::UserId, vec!["u2".into()])],
            error: None,
        },
        group_by: vec![],
        exact: false,
    };
    let got = summary_on(&src, &req).unwrap();
    assert!(got.partial);
    assert!(
        got.coverage_note
            .as_deref()
            .unwrap()
            .contains("needs raw rows"),
        "{:?}",
        got.coverage_note
    );
    let retained = truth(&w, TimeRange::new(now - 30 * DAY, now), &req.filter, &[]);
    assert_eq!(
        got.groups[0].count,
        retained[&Vec::new()].count,
        "the retained part is still answered"
    );
    // An unaligned start 60 days ago cannot be answered to the minute.
    let req = SummaryRequest {
        range: TimeRange::new(T0 + 30 * DAY + 1, now),
        filter: RowFilter::default(),
        group_by: vec![],
        exact: false,
    };
    let got = summary_on(&src, &req).unwrap();
    assert!(got.partial);
    assert!(got.coverage_note.unwrap().contains("past retention"));
    // exact=true over the old part is partial too.
    let req = SummaryRequest {
        range,
        filter: RowFilter::default(),
        group_by: vec![],
        exact: true,
    };
    assert!(summary_on(&src, &req).unwrap().partial);
}

#[test]
fn single_event_empty_and_future_ranges() {
    let call = LlmCall {
        request_id: "only".into(),
        timestamp_ms: T0 + 5 * HOUR_MS + 30_123,
        model: "gpt-4o".into(),
        endpoint: "chat".into(),
        latency_ms: 321.5,
        total_tokens: 42,
        cost_usd: Some(0.25),
        ..LlmCall::default()
    };
    let src = MemSource::new(vec![call.clone()], vec![], vec![]);
    let q = |range: TimeRange| {
        summary_on(
            &src,
            &SummaryRequest {
                range,
                filter: RowFilter::default(),
                group_by: vec![],
                exact: false,
            },
        )
        .unwrap()
    };
    let one = q(TimeRange::new(T0, T0 + DAY));
    let g = &one.groups[0];
    assert_eq!(g.count, 1);
    assert_eq!(g.metric("latency_p99_ms"), Some(321.5));
    assert_eq!(g.metric("latency_min_ms"), Some(321.5));
    assert_eq!(g.metric("total_cost_usd"), Some(0.25));
    let point = q(TimeRange::new(call.timestamp_ms, call.timestamp_ms + 1));
    assert_eq!(point.groups[0].count, 1);
    assert_eq!(point.groups[0].metric("latency_p50_ms"), Some(321.5));
    assert_eq!(
        q(TimeRange::new(call.timestamp_ms + 1, call.timestamp_ms + 1)).groups[0].count,
        0
    );
    let future = q(TimeRange::new(T0 + 400 * DAY, T0 + 800 * DAY));
    assert_eq!(future.groups[0].count, 0);
    assert!(!future.partial);
    assert_eq!(future.groups[0].metric("error_rate"), None);
    // Grouped answers over nothing have no groups.
    let grouped = summary_on(
        &src,
        &SummaryRequest {
            range: TimeRange::new(0, 1),
            filter: RowFilter::default(),
            group_by: vec![Dim::Model],
            exact: false,
        },
    )
    .unwrap();
    assert!(grouped.groups.is_empty());
}

#[test]
fn invalid_requests_name_the_field() {
    let src = MemSource::new(vec![], vec![], vec![]);
    let series = |metric: &str, step_ms: i64, len: i64| {
        series_on(
            &src,
            &SeriesRequest {
                metric: metric.into(),
                range: TimeRange::new(T0, T0 + len),
                step_ms,
                filter: RowFilter::default(),
                group_by: vec![],
            },
        )
    };
    let field = |r: Result<SeriesResult, QueryError>| match r {
        Err(QueryError::InvalidInput { field, .. }) => field,
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    assert_eq!(field(series("latency_p42", MIN, DAY)), "metric");
    assert_eq!(field(series("count", 0, DAY)), "step");
    assert_eq!(field(series("count", 30_000, DAY)), "step");
    assert_eq!(field(series("count", MIN, 10_001 * MIN)), "step");
    let ok = series("count", MIN, 10_000 * MIN).unwrap();
    assert_eq!(ok.series[0].points.len(), 10_000);
    assert!(ok.series[0].points.iter().all(|p| p.1 == Some(0.0)));
    let inverted = summary_on(
        &src,
        &SummaryRequest {
            range: TimeRange::new(5, 1),
            filter: RowFilter::default(),
            group_by: vec![],
            exact: false,
        },
    );
    assert!(matches!(inverted, Err(QueryError::InvalidInput { ref field, .. }) if field == "to"));
}

// ---------------------------------------------------------------- drift

/// A window of `n` calls, each with a quality record and feedback.
fn window(
    rng: &mut fastrand::Rng,
    start: i64,
    n: usize,
    latency_scale: f64,
    refusal: f64,
    length: f64,
) -> Workload {
    let mut w = Workload::default();
    for i in 0..n {
        let id = format!("w{start}-{i}-{}", rng.u64(..));
        let ts = start + rng.i64(0..DAY);
        let z: f64 = (0..4).map(|_| rng.f64()).sum::<f64>() - 2.0;
        let tokens = rng.u64(200..600);
        w.calls.push(LlmCall {
            request_id: id.clone(),
            timestamp_ms: ts,
            model: "gpt-4o".into(),
            endpoint: "chat".into(),
            latency_ms: 800.0 * (z * 0.8).exp() * latency_scale,
            total_tokens: tokens,
            cost_usd: Some(tokens as f64 * 1e-5),
            error: (rng.f64() < 0.02).then(|| "e".to_string()),
            ..LlmCall::default()
        });
        w.quality.push(Quality {
            request_id: id.clone(),
            timestamp_ms: ts,
            response_length: (length * (0.5 + rng.f64())) as u64,
            has_refusal: rng.f64() < refusal,
            has_hallucination_markers: rng.f64() < 0.2,
            ..Quality::default()
        });
        w.feedback.push(Feedback {
            request_id: id,
            timestamp_ms: ts,
            rating: rng.i64(1..6),
            comment: None,
        });
    }
    w
}

fn drift_between(base: Workload, cur: Workload) -> DriftReport {
    let mut all = base;
    all.calls.extend(cur.calls);
    all.quality.extend(cur.quality);
    all.feedback.extend(cur.feedback);
    let src = source(&all);
    let req = DriftRequest {
        current: TimeRange::new(T0 + DAY, T0 + 2 * DAY),
        baseline: Baseline::Offset(DAY),
        filter: RowFilter::default(),
        config: DriftConfig::default(),
    };
    let b = resolve_baseline(req.current, &req.baseline).unwrap();
    drift_on(&src, &req, b).unwrap()
}

#[test]
fn constructed_shifts_are_detected_by_their_signal() {
    let mut rng = fastrand::Rng::with_seed(3);
    let n = 300;
    let latency = drift_between(
        window(&mut rng, T0, n, 1.0, 0.05, 500.0),
        window(&mut rng, T0 + DAY, n, 1.5, 0.05, 500.0),
    );
    let s = latency.signal("latency").unwrap();
    assert!(s.drifted, "latency ×1.5: {s:?}");
    assert!(latency
        .reasons
        .iter()
        .any(|r| r.starts_with("latency_distribution_change")));
    assert!(!latency.signal("refusal_rate").unwrap().drifted);

    let refusal = drift_between(
        window(&mut rng, T0, n, 1.0, 0.05, 500.0),
        window(&mut rng, T0 + DAY, n, 1.0, 0.25, 500.0),
    );
    let s = refusal.signal("refusal_rate").unwrap();
    assert!(
        s.drifted && s.p_value.unwrap() < 0.05,
        "refusal +0.2: {s:?}"
    );
    assert_eq!(
        refusal.reasons[0],
        format!(
            "refusal_rate_change: {:.2} -> {:.2}",
            s.baseline.unwrap(),
            s.current.unwrap()
        )
    );
    assert!(!refusal.signal("latency").unwrap().drifted);

    let length = drift_between(
        window(&mut rng, T0, n, 1.0, 0.05, 500.0),
        window(&mut rng, T0 + DAY, n, 1.0, 0.05, 300.0),
    );
    let s = length.signal("avg_response_length").unwrap();
    assert!(s.drifted, "length −40 %: {s:?}");
    assert!(length
        .reasons
        .iter()
        .any(|r| r.starts_with("length_change: ")));
    assert!(length.drift_detected && !length.insufficient_data);
    let seed = length.seed_metrics().unwrap();
    assert_eq!(seed.baseline_avg_length, s.baseline.unwrap());
}

#[test]
fn identical_distributions_rarely_drift() {
    // 200 random same-distribution pairs; the false-positive rate must stay
    // below 5 %. The measured rate is printed (run with --nocapture).
    let mut rng = fastrand::Rng::with_seed(5);
    let pairs = 200;
    let mut detected = 0;
    let mut by_signal = std::collections::BTreeMap::<&str, u32>::new();
    for _ in 0..pairs {
        let r = drift_between(
            window(&mut rng, T0, 150, 1.0, 0.05, 500.0),
            window(&mut rng, T0 + DAY, 150, 1.0, 0.05, 500.0),
        );
        if r.drift_detected {
            detected += 1;
            for s in r.signals.iter().filter(|s| s.drifted) {
                *by_signal.entry(s.name).or_default() += 1;
            }
        }
    }
    let rate = detected as f64 / pairs as f64;
    println!(
        "drift false-positive rate over {pairs} same-distribution pairs: {rate:.3} {by_signal:?}"
    );
    assert!(rate < 0.05, "false-positive rate {rate} {by_signal:?}");
}

#[test]
fn below_min_samples_is_insufficient_data() {
    let mut rng = fastrand::Rng::with_seed(4);
    let r = drift_between(
        window(&mut rng, T0, 9, 1.0, 0.0, 500.0),
        window(&mut rng, T0 + DAY, 50, 3.0, 0.9, 100.0),
    );
    assert!(r.insufficient_data);
    assert!(!r.drift_detected);
    assert!(r.reasons.is_empty());
    assert!(r
        .signals
        .iter()
        .all(|s| s.status == SignalStatus::InsufficientData && !s.drifted));
    assert!(r.seed_insufficient_data() && r.seed_metrics().is_none());
}

#[test]
fn seed_reason_strings_match_the_seed_format() {
    // Hand-built accumulators: 20 quality records a side.
    let side = |refusals: u64, hedging: u64, length: u64| {
        let mut a = Acc::new(Needs::default());
        for i in 0..20 {
            a.add_quality(&Quality {
                has_refusal: i < refusals,
                has_hallucination_markers: i < hedging,
                response_length: length,
                ..Quality::default()
            });
        }
        a
    };
    let cfg = DriftConfig {
        p_value: 1.0,
        ..DriftConfig::default()
    };
    let c = crate::drift::compare(&side(1, 2, 500), &side(11, 9, 251), &cfg);
    assert_eq!(
        c.reasons,
        vec![
            "refusal_rate_change: 0.05 -> 0.55".to_string(),
            "length_change: 500 -> 251".to_string(),
            "hallucination_rate_change: 0.10 -> 0.45".to_string(),
        ]
    );
    // Python rounds 2.5 to "2" and 0.125 to "0.12"; so does Rust.
    let c = crate::drift::compare(&side(0, 0, 1000), &side(0, 0, 2), &cfg);
    assert_eq!(c.reasons, vec!["length_change: 1000 -> 2".to_string()]);
    assert_eq!(format!("{:.0} {:.2}", 2.5f64, 0.125f64), "2 0.12");
    // With the default p-value a 1-in-20 vs 3-in-20 refusal change is not significant.
    let c = crate::drift::compare(&side(1, 0, 500), &side(4, 0, 500), &DriftConfig::default());
    let s = c.signals.iter().find(|s| s.name == "refusal_rate").unwrap();
    assert!(
        s.statistic.unwrap() > 0.1 && !s.drifted && s.p_value.unwrap() > 0.05,
        "{s:?}"
    );
}

#[test]
fn baseline_values_round_trip_and_bad_bytes_are_errors() {
    let r = TimeRange::new(-5, 1_700_000_000_000);
    assert_eq!(decode_baseline(&encode_baseline(r)), Ok(r));
    assert!(decode_baseline(&[]).is_err());
    assert!(decode_baseline(&[2, 0]).is_err());
    assert!(decode_baseline(&encode_baseline(r)[..10]).is_err());
    assert_eq!(
        resolve_baseline(TimeRange::new(100, 200), &Baseline::Offset(50)).unwrap(),
        TimeRange::new(50, 150)
    );
    assert!(resolve_baseline(TimeRange::new(100, 200), &Baseline::Offset(0)).is_err());
}

#[test]
fn the_seed_window_includes_now_and_excludes_the_cutoff() {
    let r = window_range(1_000_000, 1);
    assert!(r.contains(1_000_000));
    assert!(!r.contains(1_000_000 - MIN));
    assert!(r.contains(1_000_000 - MIN + 1));
}

/// One query's accumulators, comparable bit for bit: per group (labels),
/// per slot, every metric the accumulator answers (`None`: untouched).
fn collected_bits(
    c: &crate::exec::Collected,
    n: usize,
    finish: Option<&str>,
) -> Vec<CollectedGroup> {
    (0..c.groups.len())
        .map(|g| {
            let slots = (0..n)
                .map(|i| {
                    c.acc(g, i).map(|a| match finish {
                        Some(m) => vec![(m.to_string(), a.metric(m).map(f64::to_bits))],
                        None => METRICS
                            .iter()
                            .map(|m| (m.to_string(), a.metric(m).map(f64::to_bits)))
                            .collect(),
                    })
                })
                .collect();
            (c.groups[g].0.clone(), slots)
        })
        .collect()
}

type CollectedGroup = (Vec<String>, Vec<Option<Vec<(String, Option<u64>)>>>);

/// A query cut into pieces read on several threads (`exec::collect_in`)
/// gives the very accumulators, groups and group order of the sequential
/// read: over minute, hour and unaligned steps, raw edges, filters,
/// rollup and non-rollup group_bys (the raw path with its quality and
/// feedback joins), exact, and steps finished early.
#[test]
fn queries_read_in_pieces_equal_sequential_reads() {
    use crate::exec::{collect_in, split_slots, Grid, Query};
    let w = workload(21, T0, 3, 60);
    let src = source(&w);
    let from = T0 + 3 * HOUR_MS + 7 * MIN + 250;
    // (step, length, filter, group_by, exact, metric finished early)
    type Case = (i64, i64, RowFilter, Vec<Dim>, bool, Option<&'static str>);
    let cases: Vec<Case> = vec![
        (
            MIN,
            DAY,
            RowFilter::default(),
            vec![Dim::Model],
            false,
            None,
        ),
        (
            MIN,
            DAY,
            RowFilter::default(),
            vec![Dim::Model],
            false,
            Some("latency_p95_ms"),
        ),
        (
            MIN,
            20 * HOUR_MS,
            f_model(MODELS[1]),
            vec![Dim::Endpoint],
            false,
            Some("count"),
        ),
        (
            5 * MIN,
            2 * DAY,
            RowFilter::default(),
            vec![],
            false,
            Some("ttft_p50_ms"),
        ),
        (
            HOUR_MS,
            2 * DAY + 5 * HOUR_MS,
            RowFilter::default(),
            vec![Dim::Model],
            false,
            None,
        ),
        (
            7 * MIN,
            DAY,
            RowFilter::default(),
            vec![Dim::UserId],
            false,
            None,
        ),
        (
            MIN,
            10 * HOUR_MS,
            RowFilter::default(),
            vec![Dim::Model],
            true,
            None,
        ),
    ];
    let mut split = 0;
    for (step_ms, len, filter, group_by, exact, finish) in cases {
        let range = TimeRange::new(from, from + len);
        let grid = Grid::steps(range, step_ms);
        let needs = finish.map_or(Needs::ALL, Needs::for_metric);
        let q = Query {
            grid,
            filter: &filter,
            group_by: &group_by,
            exact,
            needs,
            finish,
        };
        let what =
            format!("step {step_ms} len {len} {filter:?} {group_by:?} exact {exact} {finish:?}");
        let one = collect_in(&src, &q, 1).unwrap();
        let want = collected_bits(&one, grid.n, finish);
        assert!(
            want.iter().flat_map(|g| &g.1).any(Option::is_some),
            "{what}: nothing read"
        );
        for threads in [2, 3, 4] {
            let got = collect_in(&src, &q, threads).unwrap();
            assert_eq!(
                collected_bits(&got, grid.n, finish),
                want,
                "{what}, {threads} threads"
            );
            assert_eq!(got.missing, one.missing, "{what}");
        }
        let coverage = crate::source::DataSource::coverage(&src);
        let dims = crate::source::DataSource::rollup_dims(&src);
        let (parts, _, _) = crate::exec::plan_grid(&q, &coverage, &dims);
        split += usize::from(!split_slots(&grid, &parts, 4).is_empty());
    }
    assert!(split >= 5, "only {split} cases were read in pieces");
}

/// A query is cut into pieces of about equal work, at slot boundaries, and
/// only when each piece has enough work to be worth a thread.
#[test]
fn queries_are_cut_where_the_work_halves() {
    use crate::exec::{split_slots, Grid};
    use crate::plan::{Part, PartSource};
    let day = TimeRange::new(T0, T0 + DAY);
    let minutes = [Part {
        source: PartSource::Minute,
        range: day,
    }];
    let grid = Grid::steps(day, MIN);
    assert_eq!(split_slots(&grid, &minutes, 1), Vec::<usize>::new());
    assert_eq!(split_slots(&grid, &minutes, 2), vec![720]);
    assert_eq!(split_slots(&grid, &minutes, 4), vec![360, 720, 1080]);
    // 16 hour buckets then 8 hours of minutes (496 units): cut where half
    // the work is done (232 minutes into the minutes), not at the middle slot.
    let mixed = [
        Part {
            source: PartSource::Hour,
            range: TimeRange::new(T0, T0 + 16 * HOUR_MS),
        },
        Part {
            source: PartSource::Minute,
            range: TimeRange::new(T0 + 16 * HOUR_MS, T0 + DAY),
        },
    ];
    let hours = Grid::steps(day, HOUR_MS);
    assert_eq!(split_slots(&hours, &mixed, 2), vec![20]);
    // Three hours of minutes: not worth a second thread.
    let short = TimeRange::new(T0, T0 + 3 * HOUR_MS);
    let three = [Part {
        source: PartSource::Minute,
        range: short,
    }];
    assert!(split_slots(&Grid::steps(short, MIN), &three, 4).is_empty());
}

/// The same over the real store, whose `read_part` answers a raw part lying
/// in one slot from minute rollups where they provably hold only its events:
/// a part cut from one spanning two slots must still be read as raw rows, as
/// the sequential reader reads it. An unaligned range with hour steps puts a
/// raw part across every step boundary, and sparse calls leave many minutes
/// whose events all fall in one half of such a part.
#[test]
fn store_queries_read_in_pieces_equal_sequential_reads() {
    use crate::exec::{collect_in, Grid, Query};
    use sextant_model::{Batch, DAY_MS};
    use sextant_storage::{Store, StoreConfig};
    let now = sextant_model::now_ms();
    let start = Tier::Day.floor(now) - 3 * DAY_MS;
    let w = workload(23, start, 2, 20);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreConfig {
            background_maintenance: false,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    for chunk in w.calls.chunks(500) {
        store.append(Batch::from_calls(chunk.to_vec())).unwrap();
    }
    store.seal(now).unwrap();
    let range = TimeRange::new(start + 30_000, start + 40 * HOUR_MS + 30_000);
    for finish in [Some("latency_p95_ms"), None] {
        let grid = Grid::steps(range, HOUR_MS);
        let mut needs = finish.map_or(Needs::ALL, Needs::for_metric);
        needs.digests_only = finish.is_some();
        let filter = RowFilter::default();
        let q = Query {
            grid,
            filter: &filter,
            group_by: &[Dim::Model],
            exact: false,
            needs,
            finish,
        };
        let want = collected_bits(&collect_in(&store, &q, 1).unwrap(), grid.n, finish);
        assert!(want.iter().flat_map(|g| &g.1).any(Option::is_some));
        for threads in [2, 3] {
            let got = collect_in(&store, &q, threads).unwrap();
            assert_eq!(
                collected_bits(&got, grid.n, finish),
                want,
                "{finish:?}, {threads} threads"
            );
        }
    }
    store.close().unwrap();
}
