//! The persisted instance form is the first version's: key `rule \0 k=v…`,
//! value the `InstanceState` JSON with the same fields. A store holding an
//! instance written in that form (here: a literal, as the previous build wrote
//! it) restarts without re-notifying, keeps its episode, and resolves once.

mod support;

use std::sync::Arc;

use sextant_alert::{AlertConfig, Alerting, KvBackend, MemoryKv, NotifierConfig, NotifierKind};
use sextant_storage::{Space, WriteSet};
use support::FixedSource;

fn hook() -> NotifierConfig {
    NotifierConfig {
        name: "hook".into(),
        kind: NotifierKind::Webhook,
        url: Some("http://127.0.0.1:9/".into()),
        routing_key: None,
        events_url: None,
    }
}

fn config() -> AlertConfig {
    AlertConfig {
        install_default_rules: false,
        restart_grace_seconds: Some(0),
        ..AlertConfig::default()
    }
}

/// (kind, idempotency key) of every queued outbox entry.
fn outbox(kv: &MemoryKv) -> Vec<(String, String)> {
    kv.scan(Space::Outbox, b"")
        .unwrap()
        .iter()
        .map(|(_, v)| {
            let e: serde_json::Value = serde_json::from_slice(v).unwrap();
            let n = &e["notification"];
            (
                n["kind"].as_str().unwrap().to_string(),
                n["idempotency_key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn an_instance_stored_in_the_first_versions_form_restarts_without_renotifying() {
    let t0 = 1_700_000_000_000i64;
    let kv = Arc::new(MemoryKv::new());
    let src = Arc::new(FixedSource::default());
    *src.groups.lock() = vec!["gpt-4o".into()];
    let rule: sextant_alert::Rule = serde_json::from_value(serde_json::json!({
        "name": "p95", "metric": "latency_p95_ms", "group_by": ["model"],
        "op": ">", "threshold": 5000, "repeat_interval_seconds": 300,
        "message": "p95 {latency_p95_ms:.0f}ms"
    }))
    .unwrap();

    // This build writes exactly the first version's key and fields.
    let a = Alerting::with_backend(kv.clone(), src.clone(), config(), vec![hook()], t0).unwrap();
    a.create_rule(rule).unwrap();
    src.set(Some(6000.0));
    a.evaluate_once(t0).unwrap();
    let stored = kv.scan(Space::AlertState, b"").unwrap();
    assert_eq!(stored.len(), 1);
    let (key, value) = &stored[0];
    assert_eq!(key.as_slice(), b"p95\0model=gpt-4o");
    let written: serde_json::Value = serde_json::from_slice(value).unwrap();
    let fields: Vec<&str> = written
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "rule",
        "labels",
        "rule_fingerprint",
        "phase",
        "level",
        "notified_level",
        "active_since_ms",
        "episode_ms",
        "timer_ms",
        "last_value",
        "last_samples",
        "last_evaluated_ms",
        "last_notified_ms",
        "repeats",
        "error",
    ];
    let mut got = fields.clone();
    expected.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, expected);
    drop(a);

    // Replace it by the literal the previous build wrote for a firing,
    // notified episode that began 60 s before the crash.
    let fingerprint = written["rule_fingerprint"].as_u64().unwrap();
    let old_form = format!(
        r#"{{"rule":"p95","labels":{{"model":"gpt-4o"}},"rule_fingerprint":{fingerprint},"phase":"firing","level":"full","notified_level":"full","active_since_ms":{s},"episode_ms":{s},"timer_ms":0,"last_value":6100.0,"last_samples":100,"last_evaluated_ms":{e},"last_notified_ms":{s},"repeats":0,"error":null}}"#,
        s = t0 - 60_000,
        e = t0 - 15_000,
    );
    let mut ws = WriteSet::default();
    ws.put(
        Space::AlertState,
        b"p95\0model=gpt-4o".to_vec(),
        old_form.into_bytes(),
    );
    for (k, _) in kv.scan(Space::Outbox, b"").unwrap() {
        ws.delete(Space::Outbox, k); // as if delivered before the crash
    }
    kv.commit(ws).unwrap();

    // Restart: still firing, same episode, no notification before the repeat interval.
    let restart = t0 + 30_000;
    let a =
        Alerting::with_backend(kv.clone(), src.clone(), config(), vec![hook()], restart).unwrap();
    let view = a.instances().unwrap();
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].state, "firing");
    assert_eq!(view[0].last_value, Some(6100.0));
    for i in 0..10 {
        a.evaluate_once(restart + i * 15_000).unwrap();
    }
    assert_eq!(outbox(&kv), Vec::<(String, String)>::new());
    assert_eq!(a.instances().unwrap()[0].state, "firing");

    // Recovery: exactly one resolve, of the stored episode.
    src.set(Some(1000.0));
    a.evaluate_once(restart + 150_000).unwrap();
    a.evaluate_once(restart + 165_000).unwrap();
    let episode = format!("/{}/resolved", t0 - 60_000);
    let queued = outbox(&kv);
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].0, "resolved");
    assert!(queued[0].1.ends_with(&episode), "{queued:?}");
    assert_eq!(kv.scan(Space::AlertState, b"").unwrap().len(), 1);
}
