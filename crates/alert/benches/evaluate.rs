//! One evaluation cycle of 1,000 rules × 20 groups (5-minute windows) over an
//! in-memory backend, with a metric source that answers from memory — so the
//! figure is the alerting crate's own cost (state machine, encoding, commit
//! assembly), not the query engine's.
//!
//! `query_source_steady`: the same 1,000 rules over the real `QuerySource`
//! on a real store holding 2,000 calls across 20 models in the window; the
//! rules share 4 distinct (window, filters, group_by) shapes, so a cycle runs
//! 4 summaries (the source caches identical queries within a cycle).
//!
//! `query_source_observe_only`: that source's `observe_shared` alone (what the evaluator calls) (no evaluation,
//! no commit), to tell its share of `query_source_steady`.
//!
//! `steady_source_observe_only`: the in-memory source of `steady` alone.
//!
//! `steady`: values move but states do not (the common case).
//! `flapping`: every instance alternates firing/resolved each cycle (worst case:
//! 20,000 transitions, history records and outbox entries per cycle); its
//! backend discards commits so the queue does not grow without a worker.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use sextant_alert::{
    AlertConfig, Alerting, GroupObservation, KvBackend, Labels, MemoryKv, MetricSource,
    NotifierConfig, NotifierKind, Observation, Rule, RuleResult,
};
use sextant_storage::{Space, StorageError, WriteSet};

/// Accepts every commit and forgets it.
#[derive(Debug)]
struct NullKv;

impl KvBackend for NullKv {
    fn commit(&self, ws: WriteSet) -> Result<(), StorageError> {
        std::hint::black_box(ws);
        Ok(())
    }
    fn get(&self, _: Space, _: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(None)
    }
    fn scan(&self, _: Space, _: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        Ok(Vec::new())
    }
}

#[derive(Debug)]
struct BenchSource {
    groups: usize,
    /// Bumped each cycle; odd cycles breach when `flap`.
    cycle: AtomicI64,
    flap: bool,
}

impl MetricSource for BenchSource {
    fn observe(&self, rules: &[&Rule], _now_ms: i64) -> Vec<RuleResult> {
        let c = self.cycle.fetch_add(1, Ordering::Relaxed);
        rules
            .iter()
            .enumerate()
            .map(|(ri, _)| {
                Ok((0..self.groups)
                    .map(|g| {
                        let breach = if self.flap {
                            c % 2 == 1
                        } else {
                            (ri + g) % 10 == 0
                        };
                        let value = if breach {
                            6000.0 + (c % 7) as f64
                        } else {
                            1000.0 + (c % 7) as f64
                        };
                        GroupObservation {
                            labels: Labels::from([("model".to_string(), format!("model-{g}"))]),
                            observation: Observation::Value {
                                value,
                                samples: 100,
                            },
                            metrics: None,
                        }
                    })
                    .collect())
            })
            .collect()
    }
}

fn setup(flap: bool) -> Alerting {
    let kv: Arc<dyn KvBackend> = if flap {
        Arc::new(NullKv)
    } else {
        Arc::new(MemoryKv::new())
    };
    let src = Arc::new(BenchSource {
        groups: 20,
        cycle: AtomicI64::new(0),
        flap,
    });
    let config = AlertConfig {
        install_default_rules: false,
        restart_grace_seconds: Some(0),
        ..AlertConfig::default()
    };
    let hook = NotifierConfig {
        name: "hook".into(),
        kind: NotifierKind::Webhook,
        url: Some("http://127.0.0.1:9/".into()),
        routing_key: None,
        events_url: None,
    };
    let a = Alerting::with_backend(kv, src, config, vec![hook], 0).unwrap();
    for i in 0..1000 {
        let r: Rule = serde_json::from_value(serde_json::json!({
            "name": format!("rule-{i:04}"), "metric": "latency_p95_ms", "window_minutes": 5,
            "group_by": ["model"], "op": ">", "threshold": 5000, "warning_threshold": 3000,
            "repeat_interval_seconds": 300, "message": "p95 {latency_p95_ms:.0f}ms", "notifiers": ["hook"]
        }))
        .unwrap();
        a.create_rule(r).unwrap();
    }
    a
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The real store and query engine; the store's tempdir lives as long as the
/// bench. Also returns the rules and a `QuerySource` over the same store, to
/// time the source alone.
fn setup_query() -> (
    Alerting,
    tempfile::TempDir,
    Vec<Rule>,
    sextant_alert::QuerySource,
) {
    use sextant_model::{Batch, LlmCall};
    let dir = tempfile::tempdir().unwrap();
    let store =
        sextant_storage::Store::open(dir.path(), sextant_storage::StoreConfig::default()).unwrap();
    let now = wall_ms();
    let calls = (0..2000)
        .map(|i: i64| LlmCall {
            request_id: format!("req-{i}"),
            timestamp_ms: now - 120_000 + i * 50,
            model: format!("model-{}", i % 20),
            provider: if i % 3 == 0 { "anthropic" } else { "openai" }.into(),
            endpoint: "chat.completions".into(),
            latency_ms: 500.0 + (i % 97) as f64 * 60.0,
            prompt_tokens: 100,
            completion_tokens: 50,
            total_tokens: 150,
            finish_reason: "stop".into(),
            error: (i % 17 == 0).then(|| "boom".to_string()),
            ..LlmCall::default()
        })
        .collect();
    store
        .append(Batch {
            calls,
            ..Batch::default()
        })
        .unwrap();
    let engine = sextant_query::QueryEngine::new(store.clone());
    let config = AlertConfig {
        install_default_rules: false,
        restart_grace_seconds: Some(0),
        ..AlertConfig::default()
    };
    let source = sextant_alert::QuerySource::new(engine.clone());
    let a = Alerting::with_backend(
        Arc::new(store),
        Arc::new(sextant_alert::QuerySource::new(engine)),
        config,
        Vec::new(),
        0,
    )
    .unwrap();
    let metrics = [
        "latency_p95_ms",
        "error_rate",
        "latency_p99_ms",
        "avg_cost_usd",
    ];
    let mut rules = Vec::new();
    for i in 0..1000 {
        let filters = [
            serde_json::json!({}),
            serde_json::json!({"provider": "openai"}),
            serde_json::json!({"provider": "anthropic"}),
            serde_json::json!({"endpoint": "chat.completions"}),
        ][i % 4]
            .clone();
        let r: Rule = serde_json::from_value(serde_json::json!({
            "name": format!("rule-{i:04}"), "metric": metrics[(i / 4) % metrics.len()],
            "window_minutes": 5, "filters": filters, "group_by": ["model"],
            "op": ">", "threshold": 5000, "message": "value {latency_p95_ms:.0f}"
        }))
        .unwrap();
        rules.push(a.create_rule(r).unwrap());
    }
    rules.sort_by(|x, y| x.name.cmp(&y.name));
    (a, dir, rules, source)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("alert_eval_1000_rules_x_20_groups");
    g.sample_size(20);
    // The in-memory source's own share of `steady`: building the 20,000
    // groups' labels and values (and dropping them), without evaluating.
    {
        let src = BenchSource {
            groups: 20,
            cycle: AtomicI64::new(0),
            flap: false,
        };
        let a = setup(false);
        let rules = a.rules().unwrap();
        let refs: Vec<&Rule> = rules.iter().collect();
        g.bench_function("steady_source_observe_only", |b| {
            b.iter(|| src.observe(&refs, 0))
        });
    }
    for (name, flap) in [("steady", false), ("flapping", true)] {
        let a = setup(flap);
        let mut now = 1_700_000_000_000i64;
        a.evaluate_once(now).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                now += 15_000;
                a.evaluate_once(now).unwrap();
            })
        });
    }
    let (a, _dir, rules, source) = setup_query();
    a.evaluate_once(wall_ms()).unwrap();
    g.bench_function("query_source_steady", |b| {
        b.iter(|| a.evaluate_once(wall_ms()).unwrap())
    });
    // The source's share of that cycle: the 4 summaries and building the
    // 1,000 rules' results (20,000 groups), without evaluating them.
    let refs: Vec<&Rule> = rules.iter().collect();
    g.bench_function("query_source_observe_only", |b| {
        b.iter(|| source.observe_shared(&refs, wall_ms()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
