//! Query benchmarks over pre-built rollups, in two stores:
//!
//! - `MemoryStore` (the `rollups*` and `series_*` benches): the planner, the
//!   executor and the digest merges are the production code; rollups are held
//!   encoded, as the real store holds them, and read through the same
//!   `RollupView`s (checksum, exact fields, and the digests a query reads),
//!   so these figures include all rollup decoding but not sled reads.
//! - The real sled `Store` (`store_*` benches), loaded through the
//!   `#[doc(hidden)]` `Store::import_rollups`: everything a production query
//!   pays, including sled range scans.
//!
//! Workload: 10 events/s over 5 models × 3 endpoints (15 groups). Every
//! bucket a query's plan touches is populated: minute rollups with 40 calls
//! (10 ev/s ÷ 15 groups), hour rollups with 400 sampled calls and day and
//! week rollups with 2,000 sampled calls (enough to fill their 200-centroid
//! digests — merge cost depends on centroids, not on counts),
//! raw calls at 10 ev/s for the unaligned edges.
//!
//! Run: `CARGO_TARGET_DIR=/work/target cargo bench -p sextant-query --bench query`

use criterion::{criterion_group, BenchmarkId, Criterion};
use sextant_model::Batch;
use sextant_model::{Dim, LlmCall, Tier, TimeRange, DAY_MS, HOUR_MS, MINUTE_MS};
use sextant_query::{
    plan, Baseline, DriftConfig, DriftRequest, MemoryStore, PartSource, QueryEngine, SeriesRequest,
    SummaryRequest,
};
use sextant_storage::{Coverage, GroupKey, Rollup, RowFilter, Store, StoreConfig};

const MODELS: &[&str] = &[
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4-turbo",
    "claude-3-5-sonnet",
    "claude-3-opus",
];
const ENDPOINTS: &[&str] = &["chat", "search", "summarize"];
/// 2026-11-28T12:34:56.789Z: an unaligned "now".
const NOW: i64 = 1_764_333_296_789;
const EVENTS_PER_S: i64 = 10;

fn dims() -> Vec<Dim> {
    vec![Dim::Model, Dim::Endpoint]
}

fn coverage() -> Coverage {
    Coverage {
        raw_from_ms: NOW - 30 * DAY_MS,
        minute_from_ms: NOW - 30 * DAY_MS,
        hour_from_ms: NOW - 400 * DAY_MS,
        hour_until_ms: Tier::Hour.floor(NOW),
        day_from_ms: i64::MIN / 4,
        day_until_ms: Tier::Day.floor(NOW),
        week_from_ms: i64::MIN / 4,
        week_until_ms: Tier::Week.floor(NOW),
    }
}

fn call(rng: &mut fastrand::Rng, ts: i64, model: &str, endpoint: &str) -> LlmCall {
    let z: f64 = (0..4).map(|_| rng.f64()).sum::<f64>() - 2.0;
    let latency = 700.0 * (z * 0.8).exp();
    let prompt = rng.u64(10..2000);
    let completion = rng.u64(1..800);
    LlmCall {
        request_id: String::new(),
        timestamp_ms: ts,
        model: model.to_string(),
        endpoint: endpoint.to_string(),
        latency_ms: latency,
        time_to_first_token_ms: Some(latency * 0.2),
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        cost_usd: Some(prompt as f64 * 2.5e-6 + completion as f64 * 1e-5),
        finish_reason: "stop".into(),
        error: (rng.u32(0..50) == 0).then(|| "e".to_string()),
        ..LlmCall::default()
    }
}

/// Where populated data goes.
trait Sink {
    fn rollup(&mut self, tier: Tier, bucket: i64, group: GroupKey, r: Rollup);
    fn calls(&mut self, calls: Vec<LlmCall>);
}

impl Sink for MemoryStore {
    fn rollup(&mut self, tier: Tier, bucket: i64, group: GroupKey, r: Rollup) {
        self.add_rollup(tier, bucket, group, &r);
    }
    fn calls(&mut self, calls: Vec<LlmCall>) {
        self.add_calls(calls);
    }
}

/// Rows for a real store: rollups per tier (imported) and raw calls (appended).
#[derive(Default)]
struct StoreRows {
    rollups: Vec<(Tier, i64, GroupKey, Rollup)>,
    calls: Vec<LlmCall>,
}

impl Sink for StoreRows {
    fn rollup(&mut self, tier: Tier, bucket: i64, group: GroupKey, r: Rollup) {
        self.rollups.push((tier, bucket, group, r));
    }
    fn calls(&mut self, calls: Vec<LlmCall>) {
        self.calls.extend(calls);
    }
}

impl StoreRows {
    /// A sled store in `dir` holding these rows, hours and days rolled up to `NOW`.
    fn into_store(self, dir: &std::path::Path) -> Store {
        let store = Store::open(
            dir,
            StoreConfig {
                rollup_dims: dims(),
                background_maintenance: false,
                ..StoreConfig::default()
            },
        )
        .expect("open store");
        for tier in Tier::ALL {
            let rows = self
                .rollups
                .iter()
                .filter(|x| x.0 == tier)
                .map(|(_, b, g, r)| (*b, g.clone(), r.clone()));
            store.import_rollups(tier, rows).expect("import");
        }
        store.import_mark_rolled_up(NOW, NOW).expect("watermarks");
        store.import_mark_weeks_rolled_up(NOW).expect("watermarks");
        for (i, chunk) in self.calls.chunks(10_000).enumerate() {
            let calls = chunk
                .iter()
                .enumerate()
                .map(|(j, c)| LlmCall {
                    request_id: format!("r{i}-{j}"),
                    ..c.clone()
                })
                .collect();
            store
                .append(Batch {
                    calls,
                    ..Batch::default()
                })
                .expect("append");
        }
        store
    }
}

/// Populates every bucket (and raw edge) the plan of `range` touches.
fn populate(sink: &mut dyn Sink, range: TimeRange, rng: &mut fastrand::Rng) {
    let p = plan(
        range,
        &coverage(),
        &dims(),
        &RowFilter::default(),
        &[Dim::Model],
        false,
    );
    for part in &p.parts {
        let r = part.range;
        match part.source {
            PartSource::Raw => {
                let per_ms = 1000 / EVENTS_PER_S;
                let mut ts = r.from_ms;
                let mut i = 0usize;
                let mut calls = Vec::new();
                while ts < r.to_ms {
                    let g = i % (MODELS.len() * ENDPOINTS.len());
                    calls.push(call(
                        rng,
                        ts,
                        MODELS[g % MODELS.len()],
                        ENDPOINTS[g / MODELS.len()],
                    ));
                    ts += per_ms;
                    i += 1;
                }
                sink.calls(calls);
            }
            source => {
                let (tier, samples, size) = match source {
                    PartSource::Minute => (Tier::Minute, 40, 50),
                    PartSource::Hour => (Tier::Hour, 400, 200),
                    PartSource::Day => (Tier::Day, 2000, 200),
                    _ => (Tier::Week, 2000, 200),
                };
                let mut b = r.from_ms;
                while b < r.to_ms {
                    for m in MODELS {
                        for e in ENDPOINTS {
                            let mut roll = Rollup::new(size);
                            for _ in 0..samples {
                                roll.add_call(&call(rng, b, m, e));
                            }
                            roll.compress_digests();
                            sink.rollup(
                                tier,
                                b,
                                GroupKey(vec![m.to_string(), e.to_string()]),
                                roll,
                            );
                        }
                    }
                    b += tier.width_ms();
                }
            }
        }
    }
}

/// `QUERY_BENCH_MEMORY_ONLY=1` skips building the sled stores (minutes of setup).
fn skip_store() -> bool {
    std::env::var_os("QUERY_BENCH_MEMORY_ONLY").is_some_and(|v| v == "1")
}

/// A memory store holding `rows` (coverage as the bench's `coverage()`).
fn memory_store(rows: &StoreRows) -> MemoryStore {
    let mut store = MemoryStore::new(dims());
    store.set_coverage(coverage());
    for (tier, b, g, r) in &rows.rollups {
        store.add_rollup(*tier, *b, g.clone(), r);
    }
    store.add_calls(rows.calls.iter().cloned());
    store.finish_loading();
    store
}

fn summary_req(range: TimeRange, exact: bool) -> SummaryRequest {
    SummaryRequest {
        range,
        filter: RowFilter::default(),
        group_by: vec![Dim::Model],
        exact,
    }
}

fn bench_summary(c: &mut Criterion) {
    let mut rng = fastrand::Rng::with_seed(1);
    let mut g = c.benchmark_group("summary_p95_by_model");
    g.sample_size(20);
    for days in [30i64, 365] {
        let range = if days == 30 {
            TimeRange::new(NOW - 30 * DAY_MS, NOW)
        } else {
            // Day-aligned start: the days before raw retention are whole days.
            TimeRange::new(Tier::Day.floor(NOW) - 365 * DAY_MS, NOW)
        };
        let mut rows = StoreRows::default();
        populate(&mut rows, range, &mut rng);
        let store = memory_store(&rows);
        let req = summary_req(range, false);
        let got = store.summary(&req).expect("summary");
        assert_eq!(got.groups.len(), MODELS.len());
        assert!(!got.partial, "{:?}", got.coverage_note);
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = (!skip_store()).then(|| QueryEngine::new(rows.into_store(dir.path())));
        if let Some(engine) = &engine {
            let real = engine.summary(&req).expect("summary");
            assert_eq!(
                real.groups.iter().map(|g| g.count).collect::<Vec<_>>(),
                got.groups.iter().map(|g| g.count).collect::<Vec<_>>(),
                "the sled store answers as the memory store"
            );
        }
        if let Some(engine) = &engine {
            g.bench_with_input(
                BenchmarkId::new("store_rollups", format!("{days}d")),
                &req,
                |b, req| b.iter(|| engine.summary(req).expect("summary")),
            );
            g.bench_with_input(
                BenchmarkId::new("store_rollups_p95_only", format!("{days}d")),
                &req,
                |b, req| {
                    b.iter(|| {
                        engine
                            .summary_for(req, &["latency_p95_ms"])
                            .expect("summary")
                    })
                },
            );
        }
        g.bench_with_input(
            BenchmarkId::new("rollups", format!("{days}d")),
            &req,
            |b, req| b.iter(|| store.summary(req).expect("summary")),
        );
        g.bench_with_input(
            BenchmarkId::new("rollups_p95_only", format!("{days}d")),
            &req,
            |b, req| {
                b.iter(|| {
                    store
                        .summary_for(req, &["latency_p95_ms"])
                        .expect("summary")
                })
            },
        );
    }
    // exact=true over one day of raw rows at 10 ev/s (864,000 calls); exact
    // cost is linear in the events, so 30 days costs ≈ 30× this.
    let range = TimeRange::new(NOW - DAY_MS, NOW);
    let mut store = MemoryStore::new(dims());
    let per_ms = 1000 / EVENTS_PER_S;
    let calls: Vec<LlmCall> = (0..(DAY_MS / per_ms))
        .map(|i| {
            let g = i as usize % (MODELS.len() * ENDPOINTS.len());
            call(
                &mut rng,
                range.from_ms + i * per_ms,
                MODELS[g % MODELS.len()],
                ENDPOINTS[g / MODELS.len()],
            )
        })
        .collect();
    store.add_calls(calls);
    store.finish_loading();
    let req = summary_req(range, true);
    g.sample_size(10);
    g.bench_with_input(BenchmarkId::new("exact_raw", "1d"), &req, |b, req| {
        b.iter(|| store.summary(req).expect("summary"))
    });
    g.finish();
}

/// The last 24 hours' minute rollups (a 1-minute-step series reads minute
/// rollups only), and that range.
fn series_day() -> (TimeRange, StoreRows) {
    let mut rng = fastrand::Rng::with_seed(2);
    let to = Tier::Minute.floor(NOW);
    let range = TimeRange::new(to - DAY_MS, to);
    let mut rows = StoreRows::default();
    let mut b = range.from_ms;
    while b < range.to_ms {
        populate(&mut rows, TimeRange::new(b, b + MINUTE_MS), &mut rng);
        b += MINUTE_MS;
    }
    (range, rows)
}

/// The 1-minute series of `metric` by model over `range`.
fn series_request(metric: &str, range: TimeRange) -> SeriesRequest {
    SeriesRequest {
        metric: metric.into(),
        range,
        step_ms: MINUTE_MS,
        filter: RowFilter::default(),
        group_by: vec![Dim::Model],
    }
}

fn bench_series(c: &mut Criterion) {
    let (range, rows) = series_day();
    let store = memory_store(&rows);
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = (!skip_store()).then(|| QueryEngine::new(rows.into_store(dir.path())));
    let mut g = c.benchmark_group("series_24h_1m_by_model");
    g.sample_size(20);
    for metric in ["count", "latency_p95_ms"] {
        let req = series_request(metric, range);
        let got = store.series(&req).expect("series");
        assert_eq!(got.series.len(), MODELS.len());
        assert_eq!(got.series[0].points.len(), 1440);
        if let Some(engine) = &engine {
            let real = engine.series(&req).expect("series");
            assert_eq!(real.series.len(), MODELS.len());
            g.bench_with_input(BenchmarkId::new("store", metric), &req, |b, req| {
                b.iter(|| engine.series(req).expect("series"))
            });
        }
        g.bench_with_input(BenchmarkId::from_parameter(metric), &req, |b, req| {
            b.iter(|| store.series(req).expect("series"))
        });
    }
    g.finish();
}

fn bench_drift(c: &mut Criterion) {
    let mut rng = fastrand::Rng::with_seed(3);
    let current = TimeRange::new(NOW - DAY_MS, NOW);
    let baseline = TimeRange::new(NOW - 2 * DAY_MS, NOW - DAY_MS);
    let mut store = MemoryStore::new(dims());
    store.set_coverage(coverage());
    populate(&mut store, current, &mut rng);
    populate(&mut store, baseline, &mut rng);
    store.finish_loading();
    let req = DriftRequest {
        current,
        baseline: Baseline::Offset(DAY_MS),
        filter: RowFilter::default(),
        config: DriftConfig::default(),
    };
    let got = store.drift(&req, baseline).expect("drift");
    assert!(got.signal("latency").is_some_and(|s| s.statistic.is_some()));
    let mut g = c.benchmark_group("drift_two_1d_windows");
    g.sample_size(20);
    g.bench_function("unaligned_now", |b| {
        b.iter(|| store.drift(&req, baseline).expect("drift"))
    });
    g.finish();
    let _ = HOUR_MS;
}

criterion_group!(benches, bench_summary, bench_series, bench_drift);

/// `SEXTANT_PROBE=<metric>[,<n>[,store|memory]]`: runs the 24-hour 1-minute series of
/// `<metric>` by model `n` times (default 30) on both stores and prints the
/// fastest and median run of each, instead of the criterion benches — a
/// steadier A/B figure than a mean when other work shares the machine.
fn probe(spec: &str) {
    let mut parts = spec.split(',');
    let metric = parts.next().unwrap_or("count");
    let n: usize = parts
        .next()
        .map_or(30, |n| n.parse().expect("SEXTANT_PROBE=<metric>,<n>"));
    // Optionally only one store: "store" or "memory".
    let only = parts.next();
    let (range, rows) = series_day();
    let store = memory_store(&rows);
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = QueryEngine::new(rows.into_store(dir.path()));
    let req = series_request(metric, range);
    let time = |f: &dyn Fn()| {
        let mut t: Vec<f64> = (0..n)
            .map(|_| {
                let s = std::time::Instant::now();
                f();
                s.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(f64::total_cmp);
        (t[0], t[t.len() / 2])
    };
    let (a, am) = match only {
        Some("memory") => (f64::NAN, f64::NAN),
        _ => time(&|| drop(engine.series(&req).expect("series"))),
    };
    let (m, mm) = match only {
        Some("store") => (f64::NAN, f64::NAN),
        _ => time(&|| drop(store.series(&req).expect("series"))),
    };
    println!("probe {metric}: store min {a:.2} ms median {am:.2} ms; memory min {m:.2} ms median {mm:.2} ms");
}

fn main() {
    if let Ok(spec) = std::env::var("SEXTANT_PROBE") {
        probe(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
