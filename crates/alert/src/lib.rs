//! sextant-alert: alert rules, the alert state machine, and notification delivery.
//!
//! **Architecture Invariant:** the state machine ([`evaluate`]) is a pure
//! function of (rules, query results, prior state, now); persistence goes
//! through [`KvBackend`] (implemented by `sextant_storage::Store`) and delivery
//! through an HTTP client at the crate's edge (`notify`).
//!
//! Layers: `rule` (validation, defaults) and `template` (messages) → `machine`
//! (pure transitions) → `service` (one atomic commit per evaluation, the
//! outbox, the delivery worker) → `api` (the [`Alerting`] handle).

mod api;
mod instances;
mod kv;
mod machine;
mod notify;
mod rule;
mod service;
mod source;
mod template;

pub use api::{
    AlertConfig, AlertError, AlertStats, Alerting, HistoryEntry, HistoryQuery, InstanceView,
    NotifierConfig, NotifierKind, Rule, Silence,
};
pub use kv::{KvBackend, KvPairs, MemoryKv};
pub use machine::{
    evaluate, evaluate_owned, instance_key, EvalContext, Evaluation, GroupObservation,
    InstanceState, Labels, Level, MetricValues, Notification, NotifyKind, Observation, Phase,
    RuleResult, Transition,
};
pub use notify::PAGERDUTY_EVENTS_URL;
pub use rule::{default_rules, DRIFT_SIGNALS};
pub use service::DeliveryPass;
pub use source::{MetricSource, QuerySource, SharedGroup, SharedRuleResult};

/// Validates `rule` against the configured notifier names and compiles it
/// for [`evaluate`].
pub fn compile_rule(rule: &Rule, notifiers: &[String]) -> Result<CompiledRule, AlertError> {
    rule::validate(rule, notifiers)
}

pub use rule::CompiledRule;
