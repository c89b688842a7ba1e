//! End to end through the real query engine: calls appended to a real
//! `sextant_storage::Store`, summarised by `sextant_query::QueryEngine`, and
//! evaluated by `Alerting::open` with the seed's default rules. Protects the
//! seed's strict `>` thresholds on the values the engine actually returns.

use sextant_alert::{AlertConfig, Alerting};
use sextant_model::{Batch, LlmCall, TimeRange};
use sextant_query::{QueryEngine, SummaryRequest};
use sextant_storage::{Store, StoreConfig};

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// `(latency_ms, failed)` per call, all within the last minute.
fn calls(spec: &[(f64, bool)], now: i64) -> Batch {
    Batch {
        calls: spec
            .iter()
            .enumerate()
            .map(|(i, &(latency_ms, failed))| LlmCall {
                request_id: format!("req-{i}"),
                timestamp_ms: now - 60_000 + i as i64 * 100,
                model: "gpt-4o".into(),
                provider: "openai".into(),
                endpoint: "chat.completions".into(),
                latency_ms,
                prompt_tokens: 100,
                completion_tokens: 50,
                total_tokens: 150,
                finish_reason: "stop".into(),
                error: failed.then(|| "rate limited".to_string()),
                ..LlmCall::default()
            })
            .collect(),
        ..Batch::default()
    }
}

/// Appends `spec`, asserts the engine's 5-minute value of `metric` is
/// `expected`, evaluates the default rules once and returns `rule`'s state.
fn state_after(spec: &[(f64, bool)], metric: &str, expected: f64, rule: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let now = wall_ms();
    store.append(calls(spec, now)).unwrap();
    let engine = QueryEngine::new(store.clone());
    let summary = engine
        .summary(&SummaryRequest {
            range: TimeRange::new(now - 5 * 60_000, now + 1),
            filter: Default::default(),
            group_by: Vec::new(),
            exact: false,
        })
        .unwrap();
    assert_eq!(summary.groups.len(), 1);
    assert_eq!(summary.groups[0].count, spec.len() as u64);
    assert_eq!(
        summary.groups[0].metrics.get(metric).copied(),
        Some(expected),
        "engine value of {metric}"
    );
    let config = AlertConfig {
        restart_grace_seconds: Some(0),
        ..AlertConfig::default()
    };
    let a = Alerting::open(store.clone(), engine, config, Vec::new()).unwrap();
    assert_eq!(a.rules().unwrap().len(), 6, "the seed's default rules");
    a.evaluate_once(wall_ms() + 1).unwrap();
    let state = a
        .instances()
        .unwrap()
        .into_iter()
        .find(|i| i.rule == rule)
        .map_or_else(|| "inactive".to_string(), |i| i.state);
    store.close().unwrap();
    state
}

/// 100 calls, the seed's p95 index `sorted[int(0.95 * n)]` = `sorted[95]` holds `p95`.
fn latency_spec(p95: f64) -> Vec<(f64, bool)> {
    vec![(p95, false); 100]
}

fn error_spec(errors: usize) -> Vec<(f64, bool)> {
    (0..100).map(|i| (800.0, i < errors)).collect()
}

#[test]
fn high_latency_fires_at_p95_5001_ms_through_the_query_engine() {
    assert_eq!(
        state_after(
            &latency_spec(5001.0),
            "latency_p95_ms",
            5001.0,
            "high_latency"
        ),
        "firing"
    );
}

#[test]
fn high_latency_does_not_fire_at_p95_exactly_5000_ms() {
    assert_eq!(
        state_after(
            &latency_spec(5000.0),
            "latency_p95_ms",
            5000.0,
            "high_latency"
        ),
        "inactive"
    );
}

#[test]
fn high_error_rate_fires_at_6_percent_through_the_query_engine() {
    assert_eq!(
        state_after(&error_spec(6), "error_rate", 0.06, "high_error_rate"),
        "firing"
    );
}

#[test]
fn high_error_rate_does_not_fire_at_exactly_5_percent() {
    assert_eq!(
        state_after(&error_spec(5), "error_rate", 0.05, "high_error_rate"),
        "inactive"
    );
}

/// The evaluator reads `observe_shared` (labels shared between rules of one
/// query); it must answer exactly what `observe` answers, grouped rules,
/// filtered rules and drift rules alike.
#[test]
fn query_source_shared_answers_equal_its_owned_answers() {
    use sextant_alert::{MetricSource, QuerySource, Rule, SharedGroup};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    let now = wall_ms();
    let mut batch = calls(
        &(0..60)
            .map(|i| (1000.0 + f64::from(i) * 100.0, i % 7 == 0))
            .collect::<Vec<_>>(),
        now,
    );
    for (i, c) in batch.calls.iter_mut().enumerate() {
        c.model = format!("model-{}", i % 3);
    }
    store.append(batch).unwrap();
    let source = QuerySource::new(QueryEngine::new(store.clone()));
    let rule = |v: serde_json::Value| serde_json::from_value::<Rule>(v).unwrap();
    let rules = [
        rule(
            serde_json::json!({"name": "a", "metric": "latency_p95_ms", "group_by": ["model"], "op": ">", "threshold": 1}),
        ),
        rule(
            serde_json::json!({"name": "b", "metric": "error_rate", "group_by": ["model"], "op": ">", "threshold": 1}),
        ),
        rule(
            serde_json::json!({"name": "c", "metric": "error_rate", "op": ">", "threshold": 1,
            "filters": {"model": "model-1"}}),
        ),
        rule(
            serde_json::json!({"name": "d", "metric": "drift.latency", "op": ">", "threshold": 1}),
        ),
    ];
    let refs: Vec<&Rule> = rules.iter().collect();
    let at = wall_ms() + 1;
    let owned = source.observe(&refs, at);
    let shared = source
        .observe_shared(&refs, at)
        .expect("QuerySource shares labels");
    let owned_as_shared: Vec<Result<Vec<SharedGroup>, String>> = owned
        .into_iter()
        .map(|r| r.map(|gs| gs.into_iter().map(SharedGroup::from).collect()))
        .collect();
    assert_eq!(shared, owned_as_shared);
    assert_eq!(shared[0].as_ref().unwrap().len(), 3, "one group per model");
    assert_eq!(shared[2].as_ref().unwrap().len(), 1);
    store.close().unwrap();
}
