//! Real-kill restart test: the evaluator runs in a child process (this test
//! binary re-executed with `SEXTANT_ALERT_CHILD_DIR` set) over a durable
//! file-backed store; a receiver in the parent records every delivery; the
//! parent SIGKILLs the child at random moments — before, during and after
//! firing, during delivery — restarts it, and checks that every episode was
//! notified exactly once (duplicates only with the same idempotency key),
//! resolved exactly once, and nothing was lost.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sextant_alert::{
    AlertConfig, Alerting, GroupObservation, KvBackend, Labels, MetricSource, NotifierConfig,
    NotifierKind, Observation, Rule, RuleResult,
};
use sextant_storage::{Space, StorageError, WriteSet};
use support::{Receiver, Reply};

const CHILD_ENV: &str = "SEXTANT_ALERT_CHILD_DIR";
const URL_ENV: &str = "SEXTANT_ALERT_CHILD_URL";
/// `file` (FileKv) or `sled` (the real `sextant_storage::Store`).
const BACKEND_ENV: &str = "SEXTANT_ALERT_CHILD_BACKEND";

fn space_id(s: Space) -> u8 {
    match s {
        Space::Rules => 0,
        Space::AlertState => 1,
        Space::AlertHistory => 2,
        Space::Outbox => 3,
        Space::Silences => 4,
        _ => 9,
    }
}

/// A durable KV: the whole map rewritten to a temp file, fsynced and renamed
/// over the old one on every commit (atomic under SIGKILL).
#[derive(Debug)]
struct FileKv {
    path: PathBuf,
    map: Mutex<Map>,
}

type Dump = Vec<(u8, Vec<u8>, Vec<u8>)>;
type Map = BTreeMap<(u8, Vec<u8>), Vec<u8>>;

impl FileKv {
    fn load(path: &Path) -> Map {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice::<Dump>(&b)
                .unwrap()
                .into_iter()
                .map(|(s, k, v)| ((s, k), v))
                .collect(),
            Err(_) => BTreeMap::new(),
        }
    }
    fn open(path: PathBuf) -> FileKv {
        let map = FileKv::load(&path);
        FileKv {
            path,
            map: Mutex::new(map),
        }
    }
}

impl KvBackend for FileKv {
    fn commit(&self, ws: WriteSet) -> Result<(), StorageError> {
        let mut m = self.map.lock();
        let mut next = m.clone();
        for (space, key, value) in ws.ops {
            match value {
                Some(v) => {
                    next.insert((space_id(space), key), v);
                }
                None => {
                    next.remove(&(space_id(space), key));
                }
            }
        }
        let dump: Dump = next
            .iter()
            .map(|((s, k), v)| (*s, k.clone(), v.clone()))
            .collect();
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).unwrap();
        f.write_all(&serde_json::to_vec(&dump).unwrap()).unwrap();
        f.sync_all().unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
        std::fs::File::open(self.path.parent().unwrap())
            .unwrap()
            .sync_all()
            .unwrap();
        *m = next;
        Ok(())
    }
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .map
            .lock()
            .get(&(space_id(space), key.to_vec()))
            .cloned())
    }
    fn scan(&self, space: Space, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        let id = space_id(space);
        Ok(self
            .map
            .lock()
            .iter()
            .filter(|((s, k), _)| *s == id && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// p95 read from `dir/value` at every evaluation ("none" = no data).
#[derive(Debug)]
struct FileSource {
    path: PathBuf,
}

impl MetricSource for FileSource {
    fn observe(&self, rules: &[&Rule], _now_ms: i64) -> Vec<RuleResult> {
        let v = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok());
        rules
            .iter()
            .map(|_| {
                Ok(vec![GroupObservation {
                    labels: Labels::new(),
                    observation: match v {
                        Some(value) => Observation::Value {
                            value,
                            samples: 100,
                        },
                        None => Observation::NoData,
                    },
                    metrics: None,
                }])
            })
            .collect()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The child: runs the evaluator and the delivery worker until killed.
#[test]
fn kill_child_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let url = std::env::var(URL_ENV).unwrap();
    let dir = PathBuf::from(dir);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let kv: Arc<dyn KvBackend> = if std::env::var(BACKEND_ENV).as_deref() == Ok("sled") {
            Arc::new(
                sextant_storage::Store::open(
                    &dir.join("store"),
                    sextant_storage::StoreConfig::default(),
                )
                .unwrap(),
            )
        } else {
            Arc::new(FileKv::open(dir.join("kv.json")))
        };
        let src = Arc::new(FileSource {
            path: dir.join("value"),
        });
        let config = AlertConfig {
            eval_interval_ms: Some(100),
            delivery_timeout_seconds: 2,
            delivery_backoff_initial_ms: 20,
            delivery_backoff_max_ms: 200,
            install_default_rules: false,
            ..AlertConfig::default()
        };
        let hook = NotifierConfig {
            name: "hook".into(),
            kind: NotifierKind::Webhook,
            url: Some(url),
            routing_key: None,
            events_url: None,
        };
        let a = Alerting::with_backend(kv, src, config, vec![hook], now_ms()).unwrap();
        if a.rule("p95").is_err() {
            let r: Rule = serde_json::from_value(serde_json::json!({
                "name": "p95", "metric": "latency_p95_ms", "window_minutes": 1, "op": ">",
                "threshold": 5000, "for_seconds": 1, "repeat_interval_seconds": 0,
                "message": "p95 {latency_p95_ms:.0f}ms", "notifiers": ["hook"]
            }))
            .unwrap();
            a.create_rule(r).unwrap();
        }
        let (_tx, rx) = tokio::sync::watch::channel(false);
        // Tell the parent when the outbox is empty (it cannot open sled while we hold it).
        let watcher = a.clone();
        let marker = dir.join("drained");
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let s = watcher.stats();
                // Three cycles in, the worker has made at least its first pass.
                if s.cycles_total >= 3 && s.outbox_depth == 0 {
                    let _ = std::fs::write(&marker, b"1");
                }
            }
        });
        a.run(rx).await;
    });
}

struct Harness {
    backend: &'static str,
    dir: tempfile::TempDir,
    url: String,
    child: Option<Child>,
    kills: u32,
}

impl Harness {
    fn set_value(&self, v: &str) {
        let tmp = self.dir.path().join("value.tmp");
        std::fs::write(&tmp, v).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("value")).unwrap();
    }
    fn start(&mut self) {
        assert!(self.child.is_none());
        let exe = std::env::current_exe().unwrap();
        let child = Command::new(exe)
            .args([
                "--exact",
                "kill_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, self.dir.path())
            .env(URL_ENV, &self.url)
            .env(BACKEND_ENV, self.backend)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL
            c.wait().unwrap();
            self.kills += 1;
        }
    }
    fn outbox_len(&self) -> usize {
        FileKv::load(&self.dir.path().join("kv.json"))
            .keys()
            .filter(|(s, _)| *s == 3)
            .count()
    }
    /// A few starts each killed after a random 0–`max_ms` ms.
    async fn chaos(&mut self, rounds: u32, max_ms: u64) {
        for _ in 0..rounds {
            self.start();
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=max_ms))).await;
            self.kill();
        }
    }
}

fn distinct_keys(rx: &Receiver, kind: &str) -> Vec<String> {
    let mut keys: Vec<String> = rx
        .delivered()
        .iter()
        .filter(|r| r.body["kind"] == kind)
        .filter_map(|r| r.idempotency_key.clone())
        .collect();
    keys.dedup();
    keys.sort();
    keys.dedup();
    keys
}

/// Polls `cond` until it holds or 30 s pass.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_and_duplicates_no_notification() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    kill_scenario("file").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_over_the_real_sled_store_loses_and_duplicates_no_notification() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    kill_scenario("sled").await;
}

async fn kill_scenario(backend: &'static str) {
    let rx = Receiver::start(0).await;
    // Slow answers widen the "killed during delivery" window.
    for _ in 0..10_000 {
        rx.push(Reply {
            status: 200,
            retry_after: None,
            delay: Duration::from_millis(fastrand::u64(0..60)),
        });
    }
    let mut h = Harness {
        backend,
        dir: tempfile::tempdir().unwrap(),
        url: rx.url("/hook"),
        child: None,
        kills: 0,
    };
    const EPISODES: usize = 2;
    for episode in 1..=EPISODES {
        h.set_value("6000");
        // Kills before and while the `for` timer runs.
        h.chaos(4, 400).await;
        h.start();
        wait_for("firing", || distinct_keys(&rx, "firing").len() == episode).await;
        // Killed during or right after the delivery and its bookkeeping.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..80))).await;
        h.kill();
        h.chaos(3, 300).await;
        h.set_value("100");
        h.chaos(3, 300).await;
        h.start();
        wait_for("resolve", || {
            distinct_keys(&rx, "resolved").len() == episode
        })
        .await;
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..80))).await;
        h.kill();
    }
    // Let one last run drain whatever is still queued.
    let marker = h.dir.path().join("drained");
    let _ = std::fs::remove_file(&marker);
    h.start();
    if backend == "file" {
        wait_for("an empty outbox", || h.outbox_len() == 0).await;
    } else {
        wait_for("the child to report an empty outbox", || marker.exists()).await;
    }
    h.kill();
    if backend == "sled" {
        let store = sextant_storage::Store::open(
            &h.dir.path().join("store"),
            sextant_storage::StoreConfig::default(),
        )
        .unwrap();
        assert!(
            store.kv_scan(Space::Outbox, b"").unwrap().is_empty(),
            "outbox drained"
        );
        store.close().unwrap();
    }

    let got = rx.delivered();
    let firing = distinct_keys(&rx, "firing");
    let resolved = distinct_keys(&rx, "resolved");
    assert_eq!(firing.len(), EPISODES, "one firing per episode: {firing:?}");
    assert_eq!(
        resolved.len(),
        EPISODES,
        "one resolve per episode: {resolved:?}"
    );
    assert!(
        got.iter()
            .all(|r| r.body["kind"] == "firing" || r.body["kind"] == "resolved"),
        "no repeats configured"
    );
    // Each resolve belongs to a delivered firing and arrives after it.
    for (i, r) in got.iter().enumerate() {
        if r.body["kind"] == "resolved" {
            let ep = r.body["episode_key"].as_str().unwrap();
            assert!(got[..i]
                .iter()
                .any(|f| f.body["kind"] == "firing" && f.body["episode_key"] == ep));
        }
    }
    // Duplicates carry the same key and the same body.
    let mut by_key: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for r in &got {
        let prev = by_key
            .entry(r.idempotency_key.clone().unwrap())
            .or_insert(r.body.clone());
        assert_eq!(*prev, r.body);
    }
    assert!(h.kills >= 20, "{} kills", h.kills);
    eprintln!(
        "kills: {}, deliveries: {}, distinct: {}",
        h.kills,
        got.len(),
        by_key.len()
    );
}
