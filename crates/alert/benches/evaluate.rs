//! One evaluation cycle of 1,000 rules × 20 groups (5-minute windows) over an
//! in-memory backend, with a metric source that answers from memory — so the
//! figure is the alerting crate's own cost (state machine, encoding, commit
//! assembly), not the query engine's.
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

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("alert_eval_1000_rules_x_20_groups");
    g.sample_size(20);
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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
