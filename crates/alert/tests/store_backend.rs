//! The service over the real `sextant_storage::Store` (sled): state, history,
//! outbox and rules survive closing and reopening the store.

mod support;

use std::sync::Arc;

use sextant_alert::{AlertConfig, Alerting, HistoryQuery, NotifierConfig, NotifierKind};
use sextant_storage::{Space, Store, StoreConfig};
use support::FixedSource;

#[test]
fn state_history_outbox_and_rule_edits_survive_reopening_a_real_store() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let hook = NotifierConfig {
        name: "hook".into(),
        kind: NotifierKind::Webhook,
        url: Some("http://127.0.0.1:9/".into()),
        routing_key: None,
        events_url: None,
    };
    let config = AlertConfig {
        restart_grace_seconds: Some(0),
        ..AlertConfig::default()
    };
    let src = Arc::new(FixedSource::default());
    src.set(Some(6000.0));
    let queued;
    {
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let a = Alerting::with_backend(
            Arc::new(store.clone()),
            src.clone(),
            config.clone(),
            vec![hook.clone()],
            t0,
        )
        .unwrap();
        assert_eq!(a.rules().unwrap().len(), 6);
        a.delete_rule_at("token_spike", t0).unwrap();
        a.evaluate_once(t0).unwrap();
        queued = store.kv_scan(Space::Outbox, b"").unwrap().len();
        assert!(queued > 0);
        store.close().unwrap();
    }
    let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
    assert_eq!(store.kv_scan(Space::Outbox, b"").unwrap().len(), queued);
    let a = Alerting::with_backend(
        Arc::new(store.clone()),
        src.clone(),
        config,
        vec![hook],
        t0 + 60_000,
    )
    .unwrap();
    assert_eq!(
        a.rules().unwrap().len(),
        5,
        "a deleted default stays deleted"
    );
    let hl = a
        .instances()
        .unwrap()
        .into_iter()
        .find(|i| i.rule == "high_latency")
        .unwrap();
    assert_eq!((hl.state.as_str(), hl.last_value), ("firing", Some(6000.0)));
    let h = a
        .history(&HistoryQuery {
            from_ms: t0,
            to_ms: t0 + 1,
            kinds: vec!["firing".into()],
            ..Default::default()
        })
        .unwrap();
    assert!(h.iter().any(|e| e.name == "high_latency"));
    // Still firing after the restart: no new notification before repeat_interval.
    a.evaluate_once(t0 + 60_000).unwrap();
    assert_eq!(store.kv_scan(Space::Outbox, b"").unwrap().len(), queued);
    store.close().unwrap();
}
