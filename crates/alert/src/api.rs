//! The alerting API. See lib.rs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sextant_query::QueryEngine;
use sextant_storage::{ErrorKind, StorageError, Store};

use crate::kv::KvBackend;
use crate::service::{self, DeliveryPass, Inner};
use crate::source::{MetricSource, QuerySource};

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// A rule or silence is invalid; `field` names the offending field.
    #[error("invalid {field}: {message}")]
    InvalidInput { field: String, message: String },
    #[error("no {what} named {name}")]
    NotFound { what: &'static str, name: String },
    #[error("a rule named {0} already exists")]
    Conflict(String),
    #[error("alert storage: {0}")]
    Storage(#[from] StorageError),
    /// A failure that is not the caller's fault (e.g. the HTTP client could not be built).
    #[error("alerting: {0}")]
    Internal(String),
}

impl AlertError {
    /// The class of failure, for the server's status mapping. `Conflict` is
    /// `InvalidInput` here; the server may match the variant for a 409.
    pub fn kind(&self) -> ErrorKind {
        match self {
            AlertError::InvalidInput { .. } | AlertError::Conflict(_) => ErrorKind::InvalidInput,
            AlertError::NotFound { .. } => ErrorKind::NotFound,
            AlertError::Storage(e) => e.kind(),
            AlertError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// An alert rule, exactly as the API takes and returns it (DESIGN.md
/// "Rules, notifiers and configuration"). Durations are seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// A summary metric (`sextant_query::METRICS`) or a drift signal `drift.<signal>`.
    pub metric: String,
    #[serde(default = "default_window")]
    pub window_minutes: u32,
    #[serde(default)]
    pub filters: BTreeMap<String, String>,
    #[serde(default)]
    pub group_by: Vec<String>,
    /// `>`, `>=`, `<`, `<=`.
    pub op: String,
    pub threshold: f64,
    #[serde(default)]
    pub warning_threshold: Option<f64>,
    #[serde(default)]
    pub for_seconds: u64,
    #[serde(default)]
    pub keep_firing_for_seconds: u64,
    /// The seed's cooldown. Default 300.
    #[serde(default = "default_repeat")]
    pub repeat_interval_seconds: u64,
    #[serde(default)]
    pub min_samples: u64,
    /// `ok` | `keep_last` | `alert`. Default `ok`.
    #[serde(default = "default_no_data")]
    pub no_data: String,
    /// `info` | `warning` | `critical`. Default `warning`.
    #[serde(default = "default_severity")]
    pub severity: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The seed's `{metric:.0f}`-style template.
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub notifiers: Vec<String>,
}

fn default_window() -> u32 {
    5
}
fn default_repeat() -> u64 {
    300
}
fn default_no_data() -> String {
    "ok".into()
}
fn default_severity() -> String {
    "warning".into()
}

#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifierKind {
    Webhook,
    Slack,
    Pagerduty,
}

/// One `[[notifier]]` of the configuration file. Secrets (url, routing_key)
/// are never returned by the API or logged: `Debug` redacts them.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    pub name: String,
    pub kind: NotifierKind,
    /// Webhook and Slack: where to POST.
    #[serde(default)]
    pub url: Option<String>,
    /// PagerDuty routing key.
    #[serde(default)]
    pub routing_key: Option<String>,
    /// PagerDuty Events v2 URL. Default `https://events.pagerduty.com/v2/enqueue`.
    #[serde(default)]
    pub events_url: Option<String>,
}

impl fmt::Debug for NotifierConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("NotifierConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &redact(&self.url))
            .field("routing_key", &redact(&self.routing_key))
            .field("events_url", &redact(&self.events_url))
            .finish()
    }
}

/// The `[alerting]` section. Every field has its default in its doc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    /// Default 15.
    pub eval_interval_seconds: u64,
    /// After a restart, pending instances need this long of fresh evaluations
    /// before they may fire. Default: one eval interval.
    pub restart_grace_seconds: Option<u64>,
    /// Per-attempt delivery timeout. Default 10.
    pub delivery_timeout_seconds: u64,
    /// A notification still undelivered this long after it was queued is marked failed. Default 86,400.
    pub delivery_max_age_seconds: u64,
    /// Alert history kept. Default 90 days.
    pub history_retention_seconds: u64,
    /// Install the seed's six default rules on first start. Default true.
    pub install_default_rules: bool,
    /// Overrides `eval_interval_seconds` with a finer interval, ms (tests). Default unset.
    pub eval_interval_ms: Option<u64>,
    /// First retry delay, ms; doubles per attempt, with jitter. Default 1,000.
    pub delivery_backoff_initial_ms: u64,
    /// Longest retry delay, ms (a receiver's longer `Retry-After` still wins). Default 300,000.
    pub delivery_backoff_max_ms: u64,
}

impl Default for AlertConfig {
    fn default() -> AlertConfig {
        AlertConfig {
            eval_interval_seconds: 15,
            restart_grace_seconds: None,
            delivery_timeout_seconds: 10,
            delivery_max_age_seconds: 86_400,
            history_retention_seconds: 90 * 86_400,
            install_default_rules: true,
            eval_interval_ms: None,
            delivery_backoff_initial_ms: 1_000,
            delivery_backoff_max_ms: 300_000,
        }
    }
}

/// One alert-history record (also the seed's `GET /v1/alerts` item).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub id: String,
    /// Rule name (the seed's `name`).
    pub name: String,
    pub severity: String,
    pub message: String,
    /// Unix ms.
    pub timestamp_ms: i64,
    /// e.g. `firing`, `resolved`, `pending`, `rule_changed`, `delivery_failed`.
    pub kind: String,
    pub labels: BTreeMap<String, String>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistoryQuery {
    /// Unix ms, inclusive.
    pub from_ms: i64,
    /// Unix ms, exclusive.
    pub to_ms: i64,
    pub rule: Option<String>,
    /// Only these kinds; empty = all.
    pub kinds: Vec<String>,
    /// Newest first, at most this many.
    pub limit: usize,
}

/// The current state of one (rule, group) instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceView {
    pub rule: String,
    pub labels: BTreeMap<String, String>,
    /// inactive | pending | firing | recovering | no_data | error
    pub state: String,
    pub severity: String,
    pub active_since_ms: Option<i64>,
    pub last_value: Option<f64>,
    pub last_evaluated_ms: Option<i64>,
    pub last_notified_ms: Option<i64>,
    /// The last evaluation error, while it persists.
    #[serde(default)]
    pub error: Option<String>,
}

/// A silence: matching instances still change state but do not notify.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    #[serde(default)]
    pub id: String,
    /// Rule name; None = every rule.
    #[serde(default)]
    pub rule: Option<String>,
    /// Labels an instance must carry.
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    pub starts_ms: i64,
    pub ends_ms: i64,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct AlertStats {
    pub outbox_depth: u64,
    pub notifications_sent_total: u64,
    pub notifications_failed_total: u64,
    pub last_cycle_ms: f64,
    pub cycles_total: u64,
}

/// The alerting service over one store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Alerting {
    inner: Arc<Inner>,
}

impl Alerting {
    /// Loads persisted rules and state; installs the default rules on first start.
    pub fn open(
        store: Store,
        engine: QueryEngine,
        config: AlertConfig,
        notifiers: Vec<NotifierConfig>,
    ) -> Result<Alerting, AlertError> {
        Alerting::with_backend(
            Arc::new(store),
            Arc::new(QuerySource::new(engine)),
            config,
            notifiers,
            service::now_ms(),
        )
    }

    /// Like [`Alerting::open`] over any key-value backend and metric source;
    /// `started_ms` is the restart instant (Unix ms) the state machine's grace
    /// period and downtime rule count from.
    pub fn with_backend(
        kv: Arc<dyn KvBackend>,
        source: Arc<dyn MetricSource>,
        config: AlertConfig,
        notifiers: Vec<NotifierConfig>,
        started_ms: i64,
    ) -> Result<Alerting, AlertError> {
        let inner = Inner::open(kv, source, config, notifiers, started_ms)?;
        Ok(Alerting {
            inner: Arc::new(inner),
        })
    }

    /// Every rule, sorted by name.
    pub fn rules(&self) -> Result<Vec<Rule>, AlertError> {
        Ok(self.inner.rules())
    }
    pub fn rule(&self, name: &str) -> Result<Rule, AlertError> {
        self.inner.rule(name)
    }
    /// Validates and persists a new rule (Conflict when the name exists).
    pub fn create_rule(&self, rule: Rule) -> Result<Rule, AlertError> {
        self.inner.create_rule(rule)
    }
    /// Validates and persists a changed rule; resets its instances (a firing,
    /// notified instance gets its resolve) and records the change in history.
    pub fn update_rule(&self, name: &str, rule: Rule) -> Result<Rule, AlertError> {
        self.update_rule_at(name, rule, service::now_ms())
    }
    /// [`Alerting::update_rule`] at an injected time.
    pub fn update_rule_at(&self, name: &str, rule: Rule, now_ms: i64) -> Result<Rule, AlertError> {
        let stored = rule.clone();
        self.inner
            .replace_rule(name, Some(rule), now_ms)
            .map(|_| stored)
    }
    pub fn delete_rule(&self, name: &str) -> Result<(), AlertError> {
        self.delete_rule_at(name, service::now_ms())
    }
    /// [`Alerting::delete_rule`] at an injected time.
    pub fn delete_rule_at(&self, name: &str, now_ms: i64) -> Result<(), AlertError> {
        self.inner.replace_rule(name, None, now_ms).map(|_| ())
    }
    /// One evaluation cycle at `now_ms` (the evaluator loop calls this).
    pub fn evaluate_once(&self, now_ms: i64) -> Result<(), AlertError> {
        self.inner.evaluate_once(now_ms)
    }
    /// One delivery pass at `now_ms`: attempts every due outbox lane head once.
    pub async fn deliver_once(&self, now_ms: i64) -> Result<DeliveryPass, AlertError> {
        self.inner.deliver_pass(now_ms).await
    }
    /// History entries, newest first.
    pub fn history(&self, q: &HistoryQuery) -> Result<Vec<HistoryEntry>, AlertError> {
        self.inner.history(q)
    }
    /// Every instance, sorted by (rule, labels).
    pub fn instances(&self) -> Result<Vec<InstanceView>, AlertError> {
        Ok(self.inner.instances())
    }
    pub fn silences(&self) -> Result<Vec<Silence>, AlertError> {
        Ok(self.inner.silences())
    }
    pub fn create_silence(&self, s: Silence) -> Result<Silence, AlertError> {
        self.inner.create_silence(s)
    }
    pub fn delete_silence(&self, id: &str) -> Result<(), AlertError> {
        self.inner.delete_silence(id)
    }
    /// Notifier names and kinds only (no secrets).
    pub fn notifiers(&self) -> Vec<(String, NotifierKind)> {
        self.inner.notifiers()
    }
    pub fn stats(&self) -> AlertStats {
        self.inner.stats()
    }
    /// Runs the evaluator loop and the delivery worker until `shutdown` turns true.
    pub async fn run(self, shutdown: tokio::sync::watch::Receiver<bool>) {
        let eval = self.clone().eval_loop(shutdown.clone());
        let deliver = self.deliver_loop(shutdown);
        tokio::join!(eval, deliver);
    }

    async fn eval_loop(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let every = std::time::Duration::from_millis(self.inner.eval_interval_ms().unsigned_abs());
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            let me = self.clone();
            let done =
                tokio::task::spawn_blocking(move || me.evaluate_once(service::now_ms())).await;
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "alert evaluation failed"),
                Err(e) => tracing::error!(error = %e, "alert evaluation panicked"),
            }
        }
    }

    async fn deliver_loop(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = service::now_ms();
            let wait_ms = match self.inner.deliver_pass(now).await {
                Ok(p) if p.more => continue,
                Ok(p) => p.next_due_ms.map_or(1_000, |t| (t - now).clamp(1, 1_000)),
                Err(e) => {
                    tracing::error!(error = %e, "alert delivery pass failed");
                    1_000
                }
            };
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_millis(wait_ms.unsigned_abs())) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
