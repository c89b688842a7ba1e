//! The service over an in-memory backend: defaults, one commit per
//! evaluation, restart by reopening, rule edits, silences, history, and
//! delivery against a local receiver that misbehaves.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sextant_alert::{
    AlertConfig, AlertError, Alerting, HistoryQuery, KvBackend, MemoryKv, NotifierConfig,
    NotifierKind, Rule, Silence,
};
use sextant_storage::{Space, StorageError, WriteSet};
use support::{FixedSource, Receiver, Reply};

/// Counts commits, to check "one commit per evaluation".
#[derive(Debug, Default)]
struct CountingKv {
    inner: MemoryKv,
    commits: AtomicU64,
}

impl KvBackend for CountingKv {
    fn commit(&self, ws: WriteSet) -> Result<(), StorageError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.inner.commit(ws)
    }
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(space, key)
    }
    fn scan(&self, space: Space, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        self.inner.scan(space, prefix)
    }
}

/// The tests' start instant: real time, because delivery ages entries by the wall clock.
fn t0() -> i64 {
    static T: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *T.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    })
}

fn config() -> AlertConfig {
    AlertConfig {
        eval_interval_ms: Some(1000),
        restart_grace_seconds: Some(0),
        delivery_timeout_seconds: 1,
        delivery_backoff_initial_ms: 20,
        delivery_backoff_max_ms: 200,
        ..AlertConfig::default()
    }
}

fn webhook(url: String) -> NotifierConfig {
    NotifierConfig {
        name: "hook".into(),
        kind: NotifierKind::Webhook,
        url: Some(url),
        routing_key: None,
        events_url: None,
    }
}

fn open(
    kv: Arc<dyn KvBackend>,
    src: Arc<FixedSource>,
    notifiers: Vec<NotifierConfig>,
    started: i64,
) -> Alerting {
    Alerting::with_backend(kv, src, config(), notifiers, started).unwrap()
}

fn outbox_len(kv: &dyn KvBackend) -> usize {
    kv.scan(Space::Outbox, b"").unwrap().len()
}

fn all_history(a: &Alerting) -> Vec<sextant_alert::HistoryEntry> {
    a.history(&HistoryQuery {
        from_ms: 0,
        to_ms: i64::MAX,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn defaults_are_installed_once_and_deleted_or_changed_defaults_stay_so() {
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let src = Arc::new(FixedSource::default());
    let a = open(kv.clone(), src.clone(), vec![], t0());
    let names: Vec<String> = a.rules().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(
        names,
        [
            "cost_spike",
            "critical_error_rate",
            "critical_latency",
            "high_error_rate",
            "high_latency",
            "token_spike"
        ]
    );
    a.delete_rule_at("token_spike", t0()).unwrap();
    let mut hl = a.rule("high_latency").unwrap();
    hl.threshold = 7000.0;
    a.update_rule_at("high_latency", hl, t0()).unwrap();
    drop(a);
    let b = open(kv, src, vec![], t0() + 1);
    assert_eq!(b.rules().unwrap().len(), 5);
    assert!(matches!(
        b.rule("token_spike"),
        Err(AlertError::NotFound { .. })
    ));
    assert_eq!(b.rule("high_latency").unwrap().threshold, 7000.0);
    assert!(all_history(&b)
        .iter()
        .any(|h| h.kind == "rule_deleted" && h.name == "token_spike"));
}

#[test]
fn an_evaluation_is_one_commit_holding_state_history_and_outbox() {
    let kv = Arc::new(CountingKv::default());
    let src = Arc::new(FixedSource::default());
    let a = open(
        kv.clone(),
        src.clone(),
        vec![webhook("http://127.0.0.1:9/x".into())],
        t0(),
    );
    src.set(Some(6000.0));
    let before = kv.commits.load(Ordering::SeqCst);
    a.evaluate_once(t0()).unwrap();
    assert_eq!(kv.commits.load(Ordering::SeqCst), before + 1);
    // p95 6000 > 5000 fires high_latency; p99 6000 < 10000 does not; the
    // value also trips token_spike (> 10000? no), cost_spike (> 100: yes) and
    // both error rates (> 0.05, > 0.1: yes). The webhook gets every one.
    let firing: Vec<String> = all_history(&a)
        .into_iter()
        .filter(|h| h.kind == "firing")
        .map(|h| h.name)
        .collect();
    assert!(firing.contains(&"high_latency".to_string()));
    assert!(!firing.contains(&"critical_latency".to_string()));
    assert_eq!(outbox_len(kv.as_ref()), firing.len());
    let inst = a.instances().unwrap();
    let hl = inst.iter().find(|i| i.rule == "high_latency").unwrap();
    assert_eq!(hl.state, "firing");
    assert_eq!(hl.last_value, Some(6000.0));
}

#[test]
fn reopening_keeps_firing_state_and_does_not_renotify() {
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let src = Arc::new(FixedSource::default());
    src.set(Some(6000.0));
    let a = open(
        kv.clone(),
        src.clone(),
        vec![webhook("http://127.0.0.1:9/x".into())],
        t0(),
    );
    a.evaluate_once(t0()).unwrap();
    let queued = outbox_len(kv.as_ref());
    assert!(queued > 0);
    drop(a);
    // Restart 60 s later: still firing, no new notifications before 300 s.
    let b = open(
        kv.clone(),
        src.clone(),
        vec![webhook("http://127.0.0.1:9/x".into())],
        t0() + 60_000,
    );
    let hl = b
        .instances()
        .unwrap()
        .into_iter()
        .find(|i| i.rule == "high_latency")
        .unwrap();
    assert_eq!((hl.state.as_str(), hl.last_value), ("firing", Some(6000.0)));
    b.evaluate_once(t0() + 60_000).unwrap();
    b.evaluate_once(t0() + 299_000).unwrap();
    assert_eq!(outbox_len(kv.as_ref()), queued);
    b.evaluate_once(t0() + 300_000).unwrap();
    assert_eq!(
        outbox_len(kv.as_ref()),
        2 * queued,
        "one repeat per firing rule"
    );
    src.set(Some(0.01));
    b.evaluate_once(t0() + 301_000).unwrap();
    assert_eq!(
        outbox_len(kv.as_ref()),
        3 * queued,
        "one resolve per firing rule"
    );
}

#[test]
fn updating_a_firing_rule_resets_it_queues_its_resolve_and_records_the_change() {
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let src = Arc::new(FixedSource::default());
    src.set(Some(6000.0));
    let a = open(
        kv.clone(),
        src.clone(),
        vec![webhook("http://127.0.0.1:9/x".into())],
        t0(),
    );
    a.evaluate_once(t0()).unwrap();
    let before = outbox_len(kv.as_ref());
    let mut hl = a.rule("high_latency").unwrap();
    hl.for_seconds = 60;
    a.update_rule_at("high_latency", hl, t0() + 1000).unwrap();
    assert_eq!(outbox_len(kv.as_ref()), before + 1);
    assert!(a
        .instances()
        .unwrap()
        .iter()
        .all(|i| i.rule != "high_latency"));
    let h = a
        .history(&HistoryQuery {
            from_ms: t0() + 1000,
            to_ms: t0() + 1001,
            rule: Some("high_latency".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].kind, "rule_changed");
    // Now `for` applies: pending first.
    a.evaluate_once(t0() + 2000).unwrap();
    let hl = a
        .instances()
        .unwrap()
        .into_iter()
        .find(|i| i.rule == "high_latency")
        .unwrap();
    assert_eq!(hl.state, "pending");
}

#[test]
fn invalid_rules_are_rejected_before_anything_is_stored() {
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let a = open(kv.clone(), Arc::new(FixedSource::default()), vec![], t0());
    let mut r: Rule = a.rule("high_latency").unwrap();
    r.name = "new".into();
    r.metric = "latency_p42_ms".into();
    match a.create_rule(r.clone()) {
        Err(AlertError::InvalidInput { field, .. }) => assert_eq!(field, "metric"),
        other => panic!("{other:?}"),
    }
    assert!(kv.get(Space::Rules, b"new").unwrap().is_none());
    r.metric = "latency_p95_ms".into();
    a.create_rule(r.clone()).unwrap();
    assert!(matches!(a.create_rule(r), Err(AlertError::Conflict(_))));
}

#[test]
fn history_filters_by_time_rule_and_kind_newest_first_and_retention_expires_it() {
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let src = Arc::new(FixedSource::default());
    let mut cfg = config();
    cfg.history_retention_seconds = 2 * 86_400;
    let a = Alerting::with_backend(kv.clone(), src.clone(), cfg, vec![], t0()).unwrap();
    let day = 86_400_000;
    for i in 0..4 {
        src.set(Some(6000.0));
        a.evaluate_once(t0() + i * day).unwrap();
        src.set(Some(1.0));
        a.evaluate_once(t0() + i * day + 1000).unwrap();
    }
    let h = a
        .history(&HistoryQuery {
            from_ms: t0(),
            to_ms: t0() + 4 * day,
            rule: Some("high_latency".into()),
            kinds: vec!["firing".into()],
            limit: 0,
        })
        .unwrap();
    // Retention ran at the first evaluation of each new hour; entries older than two days are gone.
    let times: Vec<i64> = h.iter().map(|e| e.timestamp_ms).collect();
    assert!(
        times.windows(2).all(|w| w[0] > w[1]),
        "newest first: {times:?}"
    );
    assert!(
        times.iter().all(|t| *t >= t0() + 3 * day - 2 * day),
        "{times:?}"
    );
    assert_eq!(times.first(), Some(&(t0() + 3 * day)));
    let limited = a
        .history(&HistoryQuery {
            from_ms: 0,
            to_ms: i64::MAX,
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(limited.len(), 1);
}

#[test]
fn notifier_secrets_never_show_in_debug_or_the_api() {
    let n = NotifierConfig {
        name: "pd".into(),
        kind: NotifierKind::Pagerduty,
        url: Some("https://hooks.example/SECRET-URL".into()),
        routing_key: Some("SECRET-KEY".into()),
        events_url: None,
    };
    let dbg = format!("{n:?}");
    assert!(!dbg.contains("SECRET"), "{dbg}");
    let a = open(
        Arc::new(MemoryKv::new()),
        Arc::new(FixedSource::default()),
        vec![n.clone()],
        t0(),
    );
    assert_eq!(
        a.notifiers(),
        vec![("pd".to_string(), NotifierKind::Pagerduty)]
    );
    assert!(!format!("{a:?}").contains("SECRET"));
}

#[test]
fn silences_are_persisted_and_suppress_notifications() {
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let src = Arc::new(FixedSource::default());
    let a = open(
        kv.clone(),
        src.clone(),
        vec![webhook("http://127.0.0.1:9/x".into())],
        t0(),
    );
    let s = a
        .create_silence(Silence {
            id: String::new(),
            rule: None,
            matchers: Default::default(),
            starts_ms: t0(),
            ends_ms: t0() + 10_000,
            comment: "deploy".into(),
        })
        .unwrap();
    drop(a);
    let a = open(
        kv.clone(),
        src.clone(),
        vec![webhook("http://127.0.0.1:9/x".into())],
        t0(),
    );
    assert_eq!(a.silences().unwrap(), vec![s.clone()]);
    src.set(Some(6000.0));
    a.evaluate_once(t0() + 1).unwrap();
    assert_eq!(outbox_len(kv.as_ref()), 0);
    a.delete_silence(&s.id).unwrap();
    a.evaluate_once(t0() + 2).unwrap();
    assert!(outbox_len(kv.as_ref()) > 0);
}

/// Fires one rule with a webhook to `rx` and returns the service.
fn one_rule_service(
    kv: Arc<dyn KvBackend>,
    src: Arc<FixedSource>,
    rx: &Receiver,
    cfg: AlertConfig,
) -> Alerting {
    let mut cfg = cfg;
    cfg.install_default_rules = false;
    let a = Alerting::with_backend(kv, src, cfg, vec![webhook(rx.url("/hook"))], t0()).unwrap();
    let r: Rule = serde_json::from_value(serde_json::json!({
        "name": "p95", "metric": "latency_p95_ms", "op": ">", "threshold": 5000,
        "repeat_interval_seconds": 0, "message": "p95 {latency_p95_ms:.0f}ms", "notifiers": ["hook"]
    }))
    .unwrap();
    a.create_rule(r).unwrap();
    a
}

/// Runs delivery passes until the outbox is empty or `limit` passes.
async fn drain(a: &Alerting, limit: usize) -> usize {
    for _ in 0..limit {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let p = a.deliver_once(now).await.unwrap();
        if p.remaining == 0 {
            return 0;
        }
        if !p.more {
            let wait = p.next_due_ms.map_or(10, |t| (t - now).clamp(1, 2000));
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }
    usize::MAX
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_faults_500_429_and_timeouts_are_retried_until_delivered_in_order() {
    let rx = Receiver::start(0).await;
    rx.push(Reply::status(500));
    rx.push(Reply::status(503));
    rx.push(Reply {
        status: 429,
        retry_after: Some(1),
        delay: Duration::ZERO,
    });
    rx.push(Reply {
        status: 200,
        retry_after: None,
        delay: Duration::from_millis(1500),
    });
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let src = Arc::new(FixedSource::default());
    let a = one_rule_service(kv.clone(), src.clone(), &rx, config());
    // Firing then resolve queued before any delivery succeeds: order must hold.
    src.set(Some(6000.0));
    a.evaluate_once(t0()).unwrap();
    src.set(Some(1.0));
    a.evaluate_once(t0() + 1000).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(drain(&a, 200).await, 0);
    // The 429's Retry-After (1 s) was honoured.
    assert!(started.elapsed() >= Duration::from_secs(1));
    // The hung request was answered after the client gave up, so the
    // receiver saw that firing twice: same key, which is what at-least-once allows.
    let got = rx.delivered();
    let mut keys: Vec<String> = Vec::new();
    for r in &got {
        let k = r.idempotency_key.clone().unwrap();
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let kinds: Vec<&str> = keys.iter().map(|k| k.rsplit('/').next().unwrap()).collect();
    assert_eq!(kinds, ["firing", "resolved"]);
    assert_eq!(
        rx.all().len(),
        6,
        "500, 503, 429, timeout, then two successes"
    );
    for r in &got {
        assert_eq!(
            r.idempotency_key.as_deref(),
            r.body["idempotency_key"].as_str()
        );
        assert_eq!(r.path, "/hook");
    }
    // Every failed attempt carried the same key as the success.
    let all = rx.all();
    let firing_key = got[0].idempotency_key.clone();
    assert!(all
        .iter()
        .filter(|r| r.body["kind"] == "firing")
        .all(|r| r.idempotency_key == firing_key));
    assert_eq!(a.stats().notifications_sent_total, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_everything_once_back_in_order() {
    // Reserve a port, then close it: connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hook");
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let src = Arc::new(FixedSource::default());
    let mut cfg = config();
    cfg.install_default_rules = false;
    let a = Alerting::with_backend(kv.clone(), src.clone(), cfg, vec![webhook(url)], t0()).unwrap();
    let r: Rule = serde_json::from_value(serde_json::json!({
        "name": "p95", "metric": "latency_p95_ms", "op": ">", "threshold": 5000,
        "repeat_interval_seconds": 0, "group_by": ["model"], "notifiers": ["hook"]
    }))
    .unwrap();
    a.create_rule(r).unwrap();
    *src.groups.lock() = vec!["a".into(), "b".into()];
    for i in 0..3 {
        src.set(Some(6000.0));
        a.evaluate_once(t0() + i * 2000).unwrap();
        src.set(Some(1.0));
        a.evaluate_once(t0() + i * 2000 + 1000).unwrap();
    }
    // Several passes against the dead port: nothing is lost or dropped.
    for _ in 0..3 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let p = a.deliver_once(now + 10_000).await.unwrap();
        assert_eq!(p.delivered, 0);
        assert_eq!(p.remaining, 12);
    }
    let rx = Receiver::start(port).await;
    assert_eq!(drain(&a, 500).await, 0);
    let got = rx.delivered();
    assert_eq!(got.len(), 12);
    for model in ["a", "b"] {
        let seq: Vec<String> = got
            .iter()
            .filter(|r| r.body["labels"]["model"] == model)
            .map(|r| r.body["kind"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            seq,
            ["firing", "resolved", "firing", "resolved", "firing", "resolved"],
            "model {model}"
        );
    }
    let keys: std::collections::HashSet<_> =
        got.iter().map(|r| r.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_notifications_are_marked_failed_after_max_age_and_recorded() {
    let rx = Receiver::start(0).await;
    for _ in 0..100 {
        rx.push(Reply::status(502));
    }
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let src = Arc::new(FixedSource::default());
    let mut cfg = config();
    cfg.delivery_max_age_seconds = 60;
    let a = one_rule_service(kv.clone(), src.clone(), &rx, cfg);
    src.set(Some(6000.0));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    a.evaluate_once(now).unwrap();
    let p = a.deliver_once(now).await.unwrap();
    assert_eq!((p.delivered, p.failed, p.remaining), (0, 0, 1));
    let p = a.deliver_once(now + 61_000).await.unwrap();
    assert_eq!((p.failed, p.remaining), (1, 0));
    let failed = a
        .history(&HistoryQuery {
            from_ms: 0,
            to_ms: i64::MAX,
            kinds: vec!["delivery_failed".into()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert!(
        !failed[0].message.contains("127.0.0.1"),
        "no URL in history: {}",
        failed[0].message
    );
    assert_eq!(a.stats().notifications_failed_total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_and_pagerduty_receive_their_payloads_and_pagerduty_resolves_with_the_same_dedup_key()
{
    let rx = Receiver::start(0).await;
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::new());
    let src = Arc::new(FixedSource::default());
    let notifiers = vec![
        NotifierConfig {
            name: "slack".into(),
            kind: NotifierKind::Slack,
            url: Some(rx.url("/slack")),
            routing_key: None,
            events_url: None,
        },
        NotifierConfig {
            name: "pd".into(),
            kind: NotifierKind::Pagerduty,
            url: None,
            routing_key: Some("rk".into()),
            events_url: Some(rx.url("/pd")),
        },
    ];
    let mut cfg = config();
    cfg.install_default_rules = true;
    let a = Alerting::with_backend(kv, src.clone(), cfg, notifiers, t0()).unwrap();
    // p99 12000 fires critical_latency (critical → slack and pagerduty) and
    // high_latency (warning → slack only, as the seed's PagerDuty notifier).
    src.set(Some(12_000.0));
    a.evaluate_once(t0()).unwrap();
    src.set(Some(0.01));
    a.evaluate_once(t0() + 1000).unwrap();
    assert_eq!(drain(&a, 100).await, 0);
    let got = rx.delivered();
    // PagerDuty gets only the critical rules (critical_latency, critical_error_rate).
    let all_pd: Vec<_> = got.iter().filter(|r| r.path == "/pd").collect();
    assert_eq!(all_pd.len(), 4);
    let pd: Vec<_> = all_pd
        .iter()
        .filter(|r| {
            r.body["dedup_key"]
                .as_str()
                .unwrap()
                .starts_with("critical_latency/")
        })
        .collect();
    let actions: Vec<&str> = pd
        .iter()
        .map(|r| r.body["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "trigger").count(), 1);
    assert_eq!(actions.iter().filter(|a| **a == "resolve").count(), 1);
    assert_eq!(pd[0].body["dedup_key"], pd[1].body["dedup_key"]);
    let slack: Vec<_> = got.iter().filter(|r| r.path == "/slack").collect();
    let crit = slack
        .iter()
        .find(|r| r.body["attachments"][0]["title"] == "[CRITICAL] critical_latency")
        .unwrap();
    assert_eq!(crit.body["attachments"][0]["color"], "#f44336");
    assert_eq!(
        crit.body["attachments"][0]["text"],
        "Critical latency: P99 = 12000ms"
    );
    assert!(slack
        .iter()
        .any(|r| r.body["attachments"][0]["title"] == "[WARNING] high_latency"));
}

/// Fails every commit while `fail` is set.
#[derive(Debug, Default)]
struct FlakyKv {
    inner: MemoryKv,
    fail: std::sync::atomic::AtomicBool,
}

impl KvBackend for FlakyKv {
    fn commit(&self, ws: WriteSet) -> Result<(), StorageError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StorageError::Db {
                op: "commit",
                message: "injected failure".into(),
            });
        }
        self.inner.commit(ws)
    }
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.inner.get(space, key)
    }
    fn scan(&self, space: Space, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        self.inner.scan(space, prefix)
    }
}

#[test]
fn a_failed_commit_leaves_memory_as_stored_and_the_next_cycle_redoes_the_work() {
    let kv = Arc::new(FlakyKv::default());
    let src = Arc::new(FixedSource::default());
    let a = open(
        kv.clone(),
        src.clone(),
        vec![webhook("http://127.0.0.1:9/x".into())],
        t0(),
    );
    src.set(Some(6000.0));
    kv.fail.store(true, Ordering::SeqCst);
    assert!(a.evaluate_once(t0()).is_err());
    assert!(
        a.instances().unwrap().is_empty(),
        "nothing evaluated is visible"
    );
    assert_eq!(outbox_len(kv.as_ref()), 0);
    kv.fail.store(false, Ordering::SeqCst);
    a.evaluate_once(t0() + 1000).unwrap();
    let hl = a
        .instances()
        .unwrap()
        .into_iter()
        .find(|i| i.rule == "high_latency")
        .unwrap();
    assert_eq!(hl.state, "firing");
    assert!(outbox_len(kv.as_ref()) > 0);
}
