//! The oracle test over the real store: a random 90-day workload (with late
//! events, some arriving after their hour, day and week were rolled up) is loaded
//! through `Store::append`, and every summary and series answer is compared
//! with a brute force over the raw events — after loading, after reopening
//! the store, and after retention dropped the raw tier (rollups alone).

mod common;

use common::*;
use sextant_model::{now_ms, Batch, Dim, Tier, TimeRange, HOUR_MS};
use sextant_query::{
    plan, Baseline, DriftConfig, DriftRequest, PartSource, QueryEngine, QueryError, SeriesRequest,
    SummaryRequest,
};
use sextant_storage::{RowFilter, Store, StoreConfig};

/// Percentile rank bound for answers that merged digests (docs/query.md).
const EPS: f64 = 0.01;

fn config() -> StoreConfig {
    StoreConfig {
        background_maintenance: false,
        ..StoreConfig::default()
    }
}

fn check_summary(
    engine: &QueryEngine,
    w: &Workload,
    range: TimeRange,
    filter: &RowFilter,
    group_by: &[Dim],
    exact: bool,
) -> bool {
    let req = SummaryRequest {
        range,
        filter: filter.clone(),
        group_by: group_by.to_vec(),
        exact,
    };
    let got = engine.summary(&req).expect("summary");
    let want = truth(w, range, filter, group_by);
    let what = format!("range {range:?} filter {filter:?} group_by {group_by:?} exact {exact}");
    let eps = if exact { 0.0 } else { EPS };
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
            eps,
        );
    } else {
        assert_eq!(got.groups.len(), want.len(), "{what}: groups");
        for g in &got.groups {
            let l: Vec<String> = group_by
                .iter()
                .map(|d| g.labels[&d.name()].clone())
                .collect();
            let t = want
                .get(&l)
                .unwrap_or_else(|| panic!("{what}: unexpected group {l:?}"));
            check_group(
                &format!("{what} {l:?}"),
                g.count,
                g.errors,
                &g.metrics,
                &g.finish_reasons,
                t,
                eps,
            );
        }
    }
    got.partial
}

fn check_series(engine: &QueryEngine, w: &Workload, range: TimeRange, step_ms: i64) {
    for metric in ["count", "errors", "total_tokens", "latency_p95_ms"] {
        let req = SeriesRequest {
            metric: metric.into(),
            range,
            step_ms,
            filter: RowFilter::default(),
            group_by: vec![Dim::Model],
        };
        let got = engine.series(&req).expect("series");
        for s in &got.series {
            let model = &s.labels["model"];
            let filter = RowFilter {
                equals: vec![(Dim::Model, vec![model.clone()])],
                error: None,
            };
            for &(t, v) in &s.points {
                let step = TimeRange::new(t, (t + step_ms).min(range.to_ms));
                let tr = truth(w, step, &filter, &[])
                    .remove(&Vec::new())
                    .unwrap_or_default();
                let what = format!("series {metric} {model} at {t}");
                match metric {
                    "count" => assert_eq!(v, Some(tr.count as f64), "{what}"),
                    "errors" => assert_eq!(v, Some(tr.errors as f64), "{what}"),
                    "total_tokens" => assert_eq!(v, Some(tr.total_tokens as f64), "{what}"),
                    _ => match v {
                        None => assert!(tr.latencies.is_empty(), "{what}"),
                        Some(v) => assert!(within_rank(&tr.latencies, 0.95, v, EPS), "{what}: {v}"),
                    },
                }
            }
        }
    }
}

/// The week tier holds every call of the rolled-up weeks (late ones
/// included), and the 90-day query is planned mostly over weeks.
fn check_weeks(store: &Store, w: &Workload, start: i64, end: i64) {
    let cov = store.coverage();
    let mut in_weeks = 0;
    let mut buckets = 0;
    store
        .rollups(
            Tier::Week,
            TimeRange::new(i64::MIN, i64::MAX),
            &RowFilter::default(),
            &mut |_, _, r| {
                in_weeks += r.count;
                buckets += 1;
            },
        )
        .unwrap();
    let want = w
        .calls
        .iter()
        .filter(|c| Tier::Week.floor(c.timestamp_ms) < cov.week_until_ms)
        .count() as u64;
    assert_eq!(
        in_weeks, want,
        "week rollups hold every call of their weeks"
    );
    assert!(buckets >= 12, "{buckets} week buckets");
    let p = plan(
        TimeRange::new(start, end),
        &cov,
        store.rollup_dims(),
        &RowFilter::default(),
        &[Dim::Model],
        false,
    );
    let weeks: i64 = p
        .parts
        .iter()
        .filter(|x| x.source == PartSource::Week)
        .map(|x| x.range.duration_ms())
        .sum();
    assert!(weeks >= 11 * 7 * DAY, "90 days plan over weeks: {p:?}");
}

fn queries(engine: &QueryEngine, w: &Workload, start: i64, end: i64, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let filters = [
        RowFilter::default(),
        RowFilter {
            equals: vec![(Dim::Model, vec!["gpt-4o".into()])],
            error: None,
        },
        RowFilter {
            equals: vec![(Dim::UserId, vec!["u1".into()])],
            error: None,
        },
        RowFilter {
            equals: vec![],
            error: Some(false),
        },
    ];
    let group_bys: [&[Dim]; 3] = [&[], &[Dim::Model], &[Dim::Model, Dim::Endpoint]];
    for i in 0..8 {
        let from = start + rng.i64(0..(end - start));
        let len = [
            rng.i64(0..MIN),
            rng.i64(0..3 * HOUR_MS),
            rng.i64(0..30 * DAY),
            end - from,
        ][i % 4];
        let partial = check_summary(
            engine,
            w,
            TimeRange::new(from, from + len),
            &filters[i % filters.len()],
            group_bys[i % group_bys.len()],
            false,
        );
        assert!(!partial, "everything is retained");
    }
    check_summary(
        engine,
        w,
        TimeRange::new(start, end),
        &RowFilter::default(),
        &[Dim::Model],
        false,
    );
    check_summary(
        engine,
        w,
        TimeRange::new(end - 2 * DAY + 7, end - 3),
        &RowFilter::default(),
        &[],
        true,
    );
    check_series(
        engine,
        w,
        TimeRange::new(end - 2 * DAY + 17 * MIN, end),
        2 * HOUR_MS,
    );
}

#[test]
fn store_answers_match_brute_force_after_load_reopen_and_retention() {
    let now = now_ms();
    let end = Tier::Day.floor(now) - DAY;
    let start = end - 90 * DAY;
    let w = workload(42, start, 90, 2);
    let dir = tempfile::tempdir().unwrap();

    // Load: 80 % of the calls in random order, seal and roll up; then the
    // other 20 % (late, spread over all 90 days), quality and feedback.
    let mut calls = w.calls.clone();
    fastrand::Rng::with_seed(1).shuffle(&mut calls);
    let late = calls.split_off(calls.len() * 4 / 5);
    {
        let store = Store::open(dir.path(), config()).unwrap();
        for chunk in calls.chunks(500) {
            store.append(Batch::from_calls(chunk.to_vec())).unwrap();
        }
        store.seal(now).unwrap();
        store.downsample(now).unwrap();
        for chunk in late.chunks(500) {
            store.append(Batch::from_calls(chunk.to_vec())).unwrap();
        }
        store
            .append(Batch {
                quality: w.quality.clone(),
                feedback: w.feedback.clone(),
                ..Batch::default()
            })
            .unwrap();
        store.seal(now).unwrap();
        store.downsample(now).unwrap();
        check_weeks(&store, &w, start, end);
        let engine = QueryEngine::new(store.clone());
        queries(&engine, &w, start, end, 1);
        store.close().unwrap();
    }

    // Reopen: the same answers.
    let store = Store::open(dir.path(), config()).unwrap();
    check_weeks(&store, &w, start, end);
    let engine = QueryEngine::new(store.clone());
    queries(&engine, &w, start, end, 1);

    // Retention drops raw rows and minute rollups older than 30 days: whole
    // hours before that are answered from hour and day rollups alone.
    store.apply_retention(now).unwrap();
    let cov = store.coverage();
    assert!(cov.raw_from_ms > start, "raw retention ran: {cov:?}");
    let old_end = Tier::Hour.floor(cov.raw_from_ms.min(cov.minute_from_ms));
    for (from, to) in [
        (start, old_end),
        (start + 5 * HOUR_MS, start + 40 * DAY + 7 * HOUR_MS),
        (start, end),
    ] {
        let partial = check_summary(
            &engine,
            &w,
            TimeRange::new(from, to),
            &RowFilter::default(),
            &[Dim::Model],
            false,
        );
        assert!(
            !partial,
            "hour-aligned old ranges are fully served by rollups"
        );
    }
    // A non-rollup filter over the dropped part is partial and says so.
    let req = SummaryRequest {
        range: TimeRange::new(start, end),
        filter: RowFilter {
            equals: vec![(Dim::UserId, vec!["u1".into()])],
            error: None,
        },
        group_by: vec![],
        exact: false,
    };
    let got = engine.summary(&req).unwrap();
    assert!(got.partial && got.coverage_note.is_some());
    store.close().unwrap();
}

#[test]
fn named_baselines_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let range = TimeRange::new(1_700_000_000_000, 1_700_086_400_000);
    {
        let engine = QueryEngine::new(Store::open(dir.path(), config()).unwrap());
        engine.save_baseline("launch", range).unwrap();
        engine.save_baseline("other", TimeRange::new(1, 2)).unwrap();
        assert!(engine.delete_baseline("other").unwrap());
        assert!(!engine.delete_baseline("other").unwrap());
        engine.store().close().unwrap();
    }
    let engine = QueryEngine::new(Store::open(dir.path(), config()).unwrap());
    assert_eq!(
        engine.baselines().unwrap(),
        vec![("launch".to_string(), range)]
    );
    let now = now_ms();
    let req = DriftRequest {
        current: TimeRange::new(now - DAY, now),
        baseline: Baseline::Named("launch".into()),
        filter: RowFilter::default(),
        config: DriftConfig::default(),
    };
    let report = engine.drift(&req).unwrap();
    assert_eq!(report.baseline, range);
    assert!(report.insufficient_data);
    let missing = DriftRequest {
        baseline: Baseline::Named("nope".into()),
        ..req
    };
    assert!(matches!(
        engine.drift(&missing),
        Err(QueryError::NotFound { .. })
    ));
}
