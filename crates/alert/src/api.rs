//! The alerting API. See lib.rs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sextant_query::QueryEngine;
use sextant_storage::{StorageError, Store};

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
/// are never returned by the API or logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    _private: (),
}

#[allow(unused_variables)]
impl Alerting {
    /// Loads persisted rules and state; installs the default rules on first start.
    pub fn open(
        store: Store,
        engine: QueryEngine,
        config: AlertConfig,
        notifiers: Vec<NotifierConfig>,
    ) -> Result<Alerting, AlertError> {
        unimplemented!()
    }
    pub fn rules(&self) -> Result<Vec<Rule>, AlertError> {
        unimplemented!()
    }
    pub fn rule(&self, name: &str) -> Result<Rule, AlertError> {
        unimplemented!()
    }
    /// Validates and persists a new rule (Conflict when the name exists).
    pub fn create_rule(&self, rule: Rule) -> Result<Rule, AlertError> {
        unimplemented!()
    }
    /// Validates and persists a changed rule; resets its instances.
    pub fn update_rule(&self, name: &str, rule: Rule) -> Result<Rule, AlertError> {
        unimplemented!()
    }
    pub fn delete_rule(&self, name: &str) -> Result<(), AlertError> {
        unimplemented!()
    }
    /// One evaluation cycle at `now_ms` (the evaluator loop calls this).
    pub fn evaluate_once(&self, now_ms: i64) -> Result<(), AlertError> {
        unimplemented!()
    }
    pub fn history(&self, q: &HistoryQuery) -> Result<Vec<HistoryEntry>, AlertError> {
        unimplemented!()
    }
    pub fn instances(&self) -> Result<Vec<InstanceView>, AlertError> {
        unimplemented!()
    }
    pub fn silences(&self) -> Result<Vec<Silence>, AlertError> {
        unimplemented!()
    }
    pub fn create_silence(&self, s: Silence) -> Result<Silence, AlertError> {
        unimplemented!()
    }
    pub fn delete_silence(&self, id: &str) -> Result<(), AlertError> {
        unimplemented!()
    }
    /// Notifier names and kinds only (no secrets).
    pub fn notifiers(&self) -> Vec<(String, NotifierKind)> {
        unimplemented!()
    }
    pub fn stats(&self) -> AlertStats {
        unimplemented!()
    }
    /// Runs the evaluator loop and the delivery worker until `shutdown` turns true.
    pub async fn run(self, shutdown: tokio::sync::watch::Receiver<bool>) {
        unimplemented!()
    }
}
