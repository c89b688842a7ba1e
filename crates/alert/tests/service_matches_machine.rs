//! The service steps its instances in place (indexed per rule by a hash of
//! their labels); the pure `evaluate` works on a map of instance keys. Both
//! must produce the same states, history records and notifications, cycle
//! after cycle, over a pseudo-random script of groups appearing and
//! vanishing, values crossing thresholds, query errors, silences and rule
//! edits and deletions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use sextant_alert::{
    compile_rule, evaluate, AlertConfig, Alerting, CompiledRule, EvalContext, GroupObservation,
    HistoryQuery, InstanceState, KvBackend, Labels, MemoryKv, MetricSource, NotifierConfig,
    NotifierKind, Observation, Rule, RuleResult, Silence,
};
use sextant_storage::Space;

/// Answers each rule from the script of the current cycle.
#[derive(Debug, Default)]
struct Scripted {
    results: Mutex<HashMap<String, RuleResult>>,
}

impl MetricSource for Scripted {
    fn observe(&self, rules: &[&Rule], _now_ms: i64) -> Vec<RuleResult> {
        let r = self.results.lock();
        rules
            .iter()
            .map(|rule| r.get(&rule.name).cloned().unwrap_or(Ok(Vec::new())))
            .collect()
    }
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn rules() -> Vec<Rule> {
    let r = |v: serde_json::Value| serde_json::from_value::<Rule>(v).unwrap();
    vec![
        r(
            serde_json::json!({"name": "a_latency", "metric": "latency_p95_ms", "group_by": ["model"],
            "op": ">", "threshold": 5000, "warning_threshold": 3000, "repeat_interval_seconds": 60,
            "message": "p95 {latency_p95_ms:.0f} over {threshold}"}),
        ),
        r(
            serde_json::json!({"name": "b_errors", "metric": "error_rate", "group_by": ["model"],
            "op": ">", "threshold": 0.1, "for_seconds": 30, "keep_firing_for_seconds": 30,
            "no_data": "keep_last", "min_samples": 5, "severity": "critical",
            "message": "errors {error_rate:.1%}"}),
        ),
        r(
            serde_json::json!({"name": "c_global", "metric": "latency_p95_ms",
            "op": "<", "threshold": 1000, "no_data": "alert", "repeat_interval_seconds": 45}),
        ),
        r(
            serde_json::json!({"name": "d_tokens", "metric": "avg_tokens", "group_by": ["model", "provider"],
            "op": ">=", "threshold": 100, "keep_firing_for_seconds": 15, "labels": {"team": "ml"},
            "message": "tokens {avg_tokens}"}),
        ),
    ]
}

fn script(rng: &mut Lcg, rule: &Rule) -> RuleResult {
    if rule.name == "d_tokens" && rng.next(10) == 0 {
        return Err(format!("query failed #{}", rng.next(3)));
    }
    let values: &[f64] = match rule.metric.as_str() {
        "latency_p95_ms" => &[500.0, 2000.0, 4000.0, 6000.0, f64::NAN],
        "error_rate" => &[0.0, 0.05, 0.2, 0.5],
        _ => &[50.0, 100.0, 150.0],
    };
    let models = if rule.group_by.is_empty() { 1 } else { 5 };
    let mut groups = Vec::new();
    for m in 0..models {
        if rng.next(5) == 0 {
            continue; // this group vanishes this cycle
        }
        let mut labels = Labels::new();
        for dim in &rule.group_by {
            labels.insert(dim.clone(), format!("{dim}-{}", (m + 2) % 5));
        }
        let observation = if rng.next(8) == 0 {
            Observation::NoData
        } else {
            Observation::Value {
                value: values[rng.next(values.len() as u64) as usize],
                samples: rng.next(12),
            }
        };
        groups.push(GroupObservation {
            labels,
            observation,
            metrics: None,
        });
    }
    Ok(groups)
}

/// (rule, labels, phase, active_since, last_value, last_evaluated, last_notified, error)
type View = (
    String,
    BTreeMap<String, String>,
    String,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn views_of_machine(state: &HashMap<String, InstanceState>) -> Vec<View> {
    let mut v: Vec<View> = state
        .values()
        .map(|s| {
            (
                s.rule.clone(),
                s.labels.clone(),
                s.phase.as_str().to_string(),
                s.active_since_ms,
                s.last_value.map(|x| format!("{x:?}")),
                s.last_evaluated_ms,
                s.last_notified_ms,
                s.error.clone(),
            )
        })
        .collect();
    v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    v
}

fn views_of_service(a: &Alerting) -> Vec<View> {
    a.instances()
        .unwrap()
        .into_iter()
        .map(|i| {
            (
                i.rule,
                i.labels,
                i.state,
                i.active_since_ms,
                i.last_value.map(|x| format!("{x:?}")),
                i.last_evaluated_ms,
                i.last_notified_ms,
                i.error,
            )
        })
        .collect()
}

/// Outbox idempotency keys (one notifier, so one entry per notification), in queue order.
fn outbox_keys(kv: &MemoryKv) -> Vec<String> {
    kv.scan(Space::Outbox, b"")
        .unwrap()
        .iter()
        .map(|(_, v)| {
            let e: serde_json::Value = serde_json::from_slice(v).unwrap();
            e["notification"]["idempotency_key"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn the_service_and_the_pure_machine_agree_cycle_after_cycle() {
    let kv = Arc::new(MemoryKv::new());
    let src = Arc::new(Scripted::default());
    let start = 1_700_000_000_000i64;
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
    let a = Alerting::with_backend(kv.clone(), src.clone(), config, vec![hook], start).unwrap();
    let mut compiled: Vec<CompiledRule> = Vec::new();
    for r in rules() {
        a.create_rule(r.clone()).unwrap();
        compiled.push(compile_rule(&r, &["hook".to_string()]).unwrap());
    }
    let mut state: HashMap<String, InstanceState> = HashMap::new();
    let mut silences: Vec<Silence> = Vec::new();
    let mut rng = Lcg(42);
    let mut notified = 0usize;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for cycle in 0..400i64 {
        let now = start + cycle * 15_000;
        if cycle == 100 {
            let s = Silence {
                id: String::new(),
                rule: Some("a_latency".into()),
                matchers: BTreeMap::from([("model".to_string(), "model-3".to_string())]),
                starts_ms: now,
                ends_ms: now + 40 * 15_000,
                comment: String::new(),
            };
            silences.push(a.create_silence(s).unwrap());
        }
        if cycle == 200 || cycle == 300 {
            // Edit one rule, delete another: both reset their instances.
            let edit_at = now - 7_000;
            let name = if cycle == 200 {
                "b_errors"
            } else {
                "a_latency"
            };
            let mut r = compiled
                .iter()
                .find(|c| c.rule().name == name)
                .unwrap()
                .rule()
                .clone();
            r.threshold *= 1.5;
            a.update_rule_at(name, r.clone(), edit_at).unwrap();
            let pos = compiled.iter().position(|c| c.rule().name == name).unwrap();
            compiled[pos] = compile_rule(&r, &["hook".to_string()]).unwrap();
            state.retain(|_, s| s.rule != name);
            if cycle == 300 {
                a.delete_rule_at("c_global", edit_at).unwrap();
                compiled.retain(|c| c.rule().name != "c_global");
                state.retain(|_, s| s.rule != "c_global");
            }
            notified = outbox_keys(&kv).len();
        }
        let results: HashMap<String, RuleResult> = compiled
            .iter()
            .map(|c| (c.rule().name.clone(), script(&mut rng, c.rule())))
            .collect();
        *src.results.lock() = results.clone();
        let ctx = EvalContext {
            now_ms: now,
            restarted_at_ms: start,
            grace_ms: 0,
        };
        let ev = evaluate(&compiled, &results, &state, &silences, &ctx);
        a.evaluate_once(now).unwrap();

        assert_eq!(
            views_of_service(&a),
            views_of_machine(&ev.next),
            "cycle {cycle}"
        );

        let mut want: Vec<(String, String, Labels, String)> = ev
            .transitions
            .iter()
            .map(|t| {
                (
                    t.rule.clone(),
                    t.kind.to_string(),
                    t.labels.clone(),
                    t.message.clone(),
                )
            })
            .collect();
        let mut got: Vec<(String, String, Labels, String)> = a
            .history(&HistoryQuery {
                from_ms: now,
                to_ms: now + 1,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|h| (h.name, h.kind, h.labels, h.message))
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "history of cycle {cycle}");
        for t in &ev.transitions {
            *counts.entry(t.kind.to_string()).or_default() += 1;
        }

        let keys = outbox_keys(&kv);
        let mut new_keys = keys[notified..].to_vec();
        let mut want_keys: Vec<String> = ev
            .notifications
            .iter()
            .map(|n| n.idempotency_key.clone())
            .collect();
        new_keys.sort();
        want_keys.sort();
        assert_eq!(new_keys, want_keys, "notifications of cycle {cycle}");
        notified = keys.len();

        // Everything the store holds decodes to the instance the service holds,
        // except a value-only change waiting for its checkpoint.
        let stored = kv.scan(Space::AlertState, b"").unwrap();
        assert_eq!(
            stored.len(),
            ev.next.len(),
            "stored instances at cycle {cycle}"
        );
        for (k, v) in stored {
            let s: InstanceState = serde_json::from_slice(&v).unwrap();
            let key = String::from_utf8(k).unwrap();
            let mem = &ev.next[&key];
            assert_eq!(
                (s.phase, s.level, s.notified_level, s.episode_ms, s.timer_ms),
                (
                    mem.phase,
                    mem.level,
                    mem.notified_level,
                    mem.episode_ms,
                    mem.timer_ms
                ),
                "stored {key} at cycle {cycle}"
            );
            assert_eq!(s.last_notified_ms, mem.last_notified_ms);
            assert_eq!(s.repeats, mem.repeats);
            assert_eq!(s.error, mem.error);
            assert!(now - s.last_evaluated_ms.unwrap() <= 75_000);
        }
        state = ev.next;
    }
    // The script did reach every kind of transition this test is about.
    for kind in [
        "pending",
        "pending_cancelled",
        "firing",
        "recovering",
        "refiring",
        "resolved",
        "escalated",
        "deescalated",
        "repeat",
        "no_data",
        "error",
        "error_cleared",
    ] {
        assert!(
            counts.get(kind).is_some_and(|n| *n > 0),
            "no {kind} in {counts:?}"
        );
    }
}
