//! The alert state machine: a pure function of (rules, observations, prior
//! state, context). No I/O, no clock: `now` and the restart instant are inputs.
//!
//! States per (rule, group): inactive → pending (`for`) → firing →
//! recovering (`keep_firing_for`) → inactive, plus no_data and error (both
//! behave like inactive for the next transition).
//!
//! **Invariants** (each protected by a table test in `tests`):
//! - a firing notification is emitted exactly once per episode (when the
//!   instance enters firing, or when a silence covering that moment ends);
//! - while firing, repeats are at least `repeat_interval` apart (0 = never);
//! - a resolve is emitted exactly when a notified episode leaves firing;
//! - a rise to a higher level (warning → full threshold) notifies once per episode;
//! - `for` and `keep_firing_for` timers only count time between two
//!   evaluations of the same process run (downtime never counts), and no
//!   instance enters firing before `restarted_at + grace`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::api::Silence;
use crate::rule::{fnv1a, CompiledRule, NoDataPolicy};

/// Group labels of an instance (group_by dim → value).
pub type Labels = BTreeMap<String, String>;

/// Every metric of a group's summary, for templates naming other metrics.
pub type MetricValues = Arc<BTreeMap<&'static str, f64>>;

/// What one evaluation observed for one (rule, group).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Observation {
    /// The metric's value over the window and the number of samples behind it.
    Value { value: f64, samples: u64 },
    /// No samples (or the metric is undefined for the window).
    NoData,
}

/// One group of a rule's result.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupObservation {
    pub labels: Labels,
    pub observation: Observation,
    /// Other metrics of the same group (optional; for templates).
    pub metrics: Option<MetricValues>,
}

/// A rule's result for one evaluation: its groups, or the query's error.
pub type RuleResult = Result<Vec<GroupObservation>, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Inactive,
    Pending,
    Firing,
    Recovering,
    NoData,
    Error,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Inactive => "inactive",
            Phase::Pending => "pending",
            Phase::Firing => "firing",
            Phase::Recovering => "recovering",
            Phase::NoData => "no_data",
            Phase::Error => "error",
        }
    }

    fn is_quiet(self) -> bool {
        matches!(self, Phase::Inactive | Phase::NoData | Phase::Error)
    }
}

/// Which threshold an active instance crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Only `warning_threshold`: severity `warning`.
    Warning,
    /// `threshold`: the rule's severity.
    Full,
}

/// The persisted state of one (rule, group) instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceState {
    pub rule: String,
    pub labels: Labels,
    /// Fingerprint of the rule this state was computed under.
    pub rule_fingerprint: u64,
    pub phase: Phase,
    /// Current level while pending/firing/recovering.
    pub level: Option<Level>,
    /// Highest level notified in this episode; None = episode not notified.
    pub notified_level: Option<Level>,
    /// Unix ms the instance became pending (or firing, without `for`).
    pub active_since_ms: Option<i64>,
    /// Unix ms the current firing episode began (its identity).
    pub episode_ms: Option<i64>,
    /// Time accumulated towards `for` (pending) or `keep_firing_for`
    /// (recovering), ms; downtime is never added.
    pub timer_ms: i64,
    pub last_value: Option<f64>,
    pub last_samples: u64,
    /// Unix ms of the last evaluation.
    pub last_evaluated_ms: Option<i64>,
    /// Unix ms of the last notification queued for this instance.
    pub last_notified_ms: Option<i64>,
    /// Repeat notifications sent in this episode.
    pub repeats: u32,
    /// The last query error, while it persists.
    pub error: Option<String>,
}

impl InstanceState {
    fn new(rule: &CompiledRule, labels: Labels) -> InstanceState {
        InstanceState {
            rule: rule.rule.name.clone(),
            labels,
            rule_fingerprint: rule.fingerprint,
            phase: Phase::Inactive,
            level: None,
            notified_level: None,
            active_since_ms: None,
            episode_ms: None,
            timer_ms: 0,
            last_value: None,
            last_samples: 0,
            last_evaluated_ms: None,
            last_notified_ms: None,
            repeats: 0,
            error: None,
        }
    }
}

/// The key of an instance: `rule \0 k=v\x1fk=v…`.
pub fn instance_key(rule: &str, labels: &Labels) -> String {
    let mut k = String::with_capacity(rule.len() + 16);
    k.push_str(rule);
    k.push('\0');
    for (i, (name, v)) in labels.iter().enumerate() {
        if i > 0 {
            k.push('\x1f');
        }
        k.push_str(name);
        k.push('=');
        k.push_str(v);
    }
    k
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyKind {
    Firing,
    Repeat,
    Escalated,
    Resolved,
}

impl NotifyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Firing => "firing",
            NotifyKind::Repeat => "repeat",
            NotifyKind::Escalated => "escalated",
            NotifyKind::Resolved => "resolved",
        }
    }
}

/// A notification to deliver (one per notifier is queued in the outbox).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub kind: NotifyKind,
    pub rule: String,
    pub labels: Labels,
    /// Rule labels merged with group labels.
    pub rule_labels: Labels,
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub value: Option<f64>,
    pub threshold: f64,
    pub message: String,
    /// Unix ms the episode began firing.
    pub started_ms: i64,
    /// Unix ms of the evaluation that produced this notification.
    pub at_ms: i64,
    /// Identity of the episode: `rule/group-hash/episode_ms` (PagerDuty `dedup_key`).
    pub episode_key: String,
    /// Identity of this notification: episode key + kind (+ repeat number).
    pub idempotency_key: String,
    pub instance_key: String,
}

/// One recorded transition (becomes a history entry).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub rule: String,
    pub labels: Labels,
    /// pending, pending_cancelled, firing, recovering, refiring, resolved,
    /// escalated, deescalated, repeat, no_data, error, error_cleared, rule_changed.
    pub kind: &'static str,
    pub severity: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub message: String,
    pub at_ms: i64,
}

/// Evaluation context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalContext {
    /// Unix ms of this evaluation.
    pub now_ms: i64,
    /// Unix ms this process run started; evaluations before it are "before
    /// the restart" and the gap since them is not counted on any timer.
    pub restarted_at_ms: i64,
    /// No instance enters firing before `restarted_at_ms + grace_ms`.
    pub grace_ms: i64,
}

/// The output of one evaluation.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// Every instance after the evaluation.
    pub next: HashMap<String, InstanceState>,
    /// Keys of instances that are new or whose restart-relevant fields changed.
    pub changed: std::collections::HashSet<String>,
    /// Keys of prior instances that were dropped.
    pub removed: Vec<String>,
    pub transitions: Vec<Transition>,
    pub notifications: Vec<Notification>,
}

/// What stepping instances emitted: transitions (history) and notifications
/// (outbox), in the order they happened.
#[derive(Debug, Default)]
pub(crate) struct Emitted {
    pub(crate) transitions: Vec<Transition>,
    pub(crate) notifications: Vec<Notification>,
}

/// True when an active silence covers (rule, labels) at `now_ms`.
pub(crate) fn is_silenced(silences: &[Silence], rule: &str, labels: &Labels, now_ms: i64) -> bool {
    silences.iter().any(|s| {
        s.starts_ms <= now_ms
            && now_ms < s.ends_ms
            && s.rule.as_deref().is_none_or(|r| r == rule)
            && s.matchers.iter().all(|(k, v)| labels.get(k) == Some(v))
    })
}

/// Evaluates every rule against its result. Rules missing from `results` are
/// skipped (their instances are carried over unchanged); instances of rules
/// not in `rules` are dropped.
pub fn evaluate(
    rules: &[CompiledRule],
    results: &HashMap<String, RuleResult>,
    prior: &HashMap<String, InstanceState>,
    silences: &[Silence],
    ctx: &EvalContext,
) -> Evaluation {
    evaluate_owned(rules, results, prior.clone(), silences, ctx)
}

/// [`evaluate`] consuming the prior state (no per-instance clone).
///
/// The service does not go through this map-based form: it keeps instances
/// per rule, hashed by group labels, and steps them in place with the same
/// [`step`] / [`step_new`] used here.
pub fn evaluate_owned(
    rules: &[CompiledRule],
    results: &HashMap<String, RuleResult>,
    prior: HashMap<String, InstanceState>,
    silences: &[Silence],
    ctx: &EvalContext,
) -> Evaluation {
    let mut out = Evaluation {
        next: HashMap::with_capacity(prior.len()),
        ..Evaluation::default()
    };
    let mut em = Emitted::default();
    // Prior instances per rule.
    let mut by_rule: HashMap<String, HashMap<String, InstanceState>> = HashMap::new();
    for (k, s) in prior {
        match by_rule.get_mut(&s.rule) {
            Some(m) => {
                m.insert(k, s);
            }
            None => {
                let r = s.rule.clone();
                by_rule.insert(r, HashMap::from([(k, s)]));
            }
        }
    }
    for rule in rules {
        let name = rule.rule.name.as_str();
        let mut priors = by_rule.remove(name).unwrap_or_default();
        let Some(result) = results.get(name) else {
            out.next.extend(priors);
            continue;
        };
        match result {
            Err(msg) => {
                if priors.is_empty() {
                    let s = step_new(
                        rule,
                        Labels::new(),
                        Input::Error(msg),
                        None,
                        silences,
                        ctx,
                        &mut em,
                    );
                    let key = instance_key(name, &Labels::new());
                    out.changed.insert(key.clone());
                    out.next.insert(key, s);
                    continue;
                }
                for (key, mut s) in priors {
                    if step(
                        rule,
                        &mut s,
                        Input::Error(msg),
                        None,
                        silences,
                        ctx,
                        &mut em,
                    ) {
                        out.changed.insert(key.clone());
                    }
                    out.next.insert(key, s);
                }
            }
            Ok(groups) => {
                for g in groups {
                    let key = instance_key(name, &g.labels);
                    let input = Input::Obs(&g.observation);
                    let (s, dirty) = match priors.remove(&key) {
                        Some(mut s) => {
                            let dirty = step(
                                rule,
                                &mut s,
                                input,
                                g.metrics.as_ref(),
                                silences,
                                ctx,
                                &mut em,
                            );
                            (s, dirty)
                        }
                        None => (
                            step_new(
                                rule,
                                g.labels.clone(),
                                input,
                                g.metrics.as_ref(),
                                silences,
                                ctx,
                                &mut em,
                            ),
                            true,
                        ),
                    };
                    keep_or_drop(&mut out, key, s, dirty, false);
                }
                for (key, mut s) in priors {
                    // A group that vanished: no data for it.
                    let dirty = step(
                        rule,
                        &mut s,
                        Input::Obs(&Observation::NoData),
                        None,
                        silences,
                        ctx,
                        &mut em,
                    );
                    keep_or_drop(&mut out, key, s, dirty, !rule.rule.group_by.is_empty());
                }
            }
        }
    }
    // Instances of rules that no longer exist.
    for (_, m) in by_rule {
        out.removed.extend(m.into_keys());
    }
    out.transitions = em.transitions;
    out.notifications = em.notifications;
    out
}

/// True when a group that vanished from its rule's result has nothing left
/// worth keeping (quiet again, no error): its instance is dropped.
pub(crate) fn vanished_droppable(s: &InstanceState) -> bool {
    s.phase.is_quiet() && s.error.is_none()
}

fn keep_or_drop(
    out: &mut Evaluation,
    key: String,
    s: InstanceState,
    dirty: bool,
    vanished_group: bool,
) {
    // A vanished group that is quiet again carries nothing worth keeping.
    if vanished_group && vanished_droppable(&s) {
        out.changed.remove(&key);
        out.removed.push(key);
        return;
    }
    if dirty {
        out.changed.insert(key.clone());
    }
    out.next.insert(key, s);
}

pub(crate) enum Input<'a> {
    Obs(&'a Observation),
    Error(&'a str),
}

enum Cond {
    Active(Level),
    Clear { no_data: bool },
    Hold,
}

/// Resets the instances of a changed or deleted rule: a notified firing
/// episode gets its resolve (so no incident is left open) and every reset is
/// recorded.
pub(crate) fn reset_instances(
    rule: &CompiledRule,
    instances: &[&InstanceState],
    now_ms: i64,
    deleted: bool,
) -> (Vec<Transition>, Vec<Notification>) {
    let mut ts = Vec::new();
    let mut ns = Vec::new();
    for s in instances {
        if matches!(s.phase, Phase::Firing | Phase::Recovering) && s.notified_level.is_some() {
            ns.push(notification(rule, s, NotifyKind::Resolved, now_ms, None));
        }
        ts.push(Transition {
            rule: s.rule.clone(),
            labels: s.labels.clone(),
            kind: if deleted {
                "rule_deleted"
            } else {
                "rule_changed"
            },
            severity: severity_of(rule, s.level),
            value: s.last_value,
            threshold: Some(rule.rule.threshold),
            message: format!(
                "rule {} {}; instance reset from {}",
                rule.rule.name,
                if deleted { "deleted" } else { "changed" },
                s.phase.as_str()
            ),
            at_ms: now_ms,
        });
    }
    (ts, ns)
}

/// Steps an existing instance in place; returns whether it changed
/// materially (see [`Material`]): only then must it be persisted this cycle.
pub(crate) fn step(
    rule: &CompiledRule,
    s: &mut InstanceState,
    input: Input<'_>,
    metrics: Option<&MetricValues>,
    silences: &[Silence],
    ctx: &EvalContext,
    out: &mut Emitted,
) -> bool {
    let before = Material::of(s);
    step_inner(rule, s, input, metrics, silences, ctx, out);
    before != Material::of(s)
}

/// Creates the instance of a group seen for the first time and steps it (a
/// new instance is always persisted).
pub(crate) fn step_new(
    rule: &CompiledRule,
    labels: Labels,
    input: Input<'_>,
    metrics: Option<&MetricValues>,
    silences: &[Silence],
    ctx: &EvalContext,
    out: &mut Emitted,
) -> InstanceState {
    let mut s = InstanceState::new(rule, labels);
    step_inner(rule, &mut s, input, metrics, silences, ctx, out);
    s
}

/// The fields a restart depends on.
#[derive(PartialEq)]
struct Material {
    phase: Phase,
    level: Option<Level>,
    notified_level: Option<Level>,
    active_since_ms: Option<i64>,
    episode_ms: Option<i64>,
    timer_ms: i64,
    last_notified_ms: Option<i64>,
    repeats: u32,
    error: Option<String>,
    rule_fingerprint: u64,
}

impl Material {
    fn of(s: &InstanceState) -> Material {
        Material {
            phase: s.phase,
            level: s.level,
            notified_level: s.notified_level,
            active_since_ms: s.active_since_ms,
            episode_ms: s.episode_ms,
            timer_ms: s.timer_ms,
            last_notified_ms: s.last_notified_ms,
            repeats: s.repeats,
            error: s.error.clone(),
            rule_fingerprint: s.rule_fingerprint,
        }
    }
}

fn step_inner(
    rule: &CompiledRule,
    s: &mut InstanceState,
    input: Input<'_>,
    metrics: Option<&MetricValues>,
    silences: &[Silence],
    ctx: &EvalContext,
    out: &mut Emitted,
) {
    let now = ctx.now_ms;
    if s.rule_fingerprint != rule.fingerprint {
        // Defensive: a rule edit normally resets instances itself.
        let (ts, ns) = reset_instances(rule, &[&*s], now, false);
        out.transitions.extend(ts);
        out.notifications.extend(ns);
        let labels = std::mem::take(&mut s.labels);
        *s = InstanceState::new(rule, labels);
    }
    // Time since the previous evaluation of this process run; downtime is 0.
    let gap = match s.last_evaluated_ms {
        Some(t) if t >= ctx.restarted_at_ms => (now - t).max(0),
        _ => 0,
    };
    s.last_evaluated_ms = Some(now);
    let silenced = is_silenced(silences, &s.rule, &s.labels, now);

    let cond = match input {
        Input::Error(msg) => {
            if s.error.as_deref() != Some(msg) {
                if s.error.is_none() {
                    record(
                        out,
                        rule,
                        s,
                        "error",
                        format!("evaluating {}: {msg}", s.rule),
                        now,
                        metrics,
                    );
                }
                s.error = Some(msg.to_string());
            }
            if s.phase.is_quiet() {
                s.phase = Phase::Error;
            }
            Cond::Hold
        }
        Input::Obs(obs) => {
            if s.error.take().is_some() {
                if s.phase == Phase::Error {
                    s.phase = Phase::Inactive;
                }
                record(
                    out,
                    rule,
                    s,
                    "error_cleared",
                    format!("{} evaluates again", s.rule),
                    now,
                    metrics,
                );
            }
            match obs {
                Observation::Value { value, samples }
                    if value.is_finite() && *samples >= rule.rule.min_samples.max(1) =>
                {
                    s.last_value = Some(*value);
                    s.last_samples = *samples;
                    if rule.op.holds(*value, rule.rule.threshold) {
                        Cond::Active(Level::Full)
                    } else if rule
                        .rule
                        .warning_threshold
                        .is_some_and(|w| rule.op.holds(*value, w))
                    {
                        Cond::Active(Level::Warning)
                    } else {
                        Cond::Clear { no_data: false }
                    }
                }
                other => {
                    // No samples, too few (min_samples) or a non-finite value.
                    if let Observation::Value { samples, .. } = other {
                        s.last_samples = *samples;
                    } else {
                        s.last_samples = 0;
                    }
                    match rule.no_data {
                        NoDataPolicy::Ok => Cond::Clear { no_data: true },
                        NoDataPolicy::KeepLast => Cond::Hold,
                        NoDataPolicy::Alert => Cond::Active(Level::Full),
                    }
                }
            }
        }
    };

    let can_fire = now >= ctx.restarted_at_ms.saturating_add(ctx.grace_ms);
    let for_ms = secs_ms(rule.rule.for_seconds);
    match cond {
        Cond::Hold => {}
        Cond::Active(level) => match s.phase {
            Phase::Inactive | Phase::NoData | Phase::Error => {
                s.active_since_ms = Some(now);
                s.timer_ms = 0;
                s.level = Some(level);
                if for_ms == 0 && can_fire {
                    fire(rule, s, level, now, silenced, metrics, out);
                } else {
                    s.phase = Phase::Pending;
                    record(
                        out,
                        rule,
                        s,
                        "pending",
                        render(rule, s, metrics),
                        now,
                        metrics,
                    );
                }
            }
            Phase::Pending => {
                s.timer_ms = s.timer_ms.saturating_add(gap);
                s.level = Some(level);
                if s.timer_ms >= for_ms && can_fire {
                    fire(rule, s, level, now, silenced, metrics, out);
                }
            }
            Phase::Recovering => {
                s.phase = Phase::Firing;
                s.timer_ms = 0;
                record(
                    out,
                    rule,
                    s,
                    "refiring",
                    render(rule, s, metrics),
                    now,
                    metrics,
                );
                while_firing(rule, s, level, now, silenced, metrics, out);
            }
            Phase::Firing => while_firing(rule, s, level, now, silenced, metrics, out),
        },
        Cond::Clear { no_data } => {
            let quiet = if no_data {
                Phase::NoData
            } else {
                Phase::Inactive
            };
            match s.phase {
                Phase::Pending => {
                    s.phase = quiet;
                    s.timer_ms = 0;
                    s.active_since_ms = None;
                    s.level = None;
                    record(
                        out,
                        rule,
                        s,
                        "pending_cancelled",
                        render(rule, s, metrics),
                        now,
                        metrics,
                    );
                }
                Phase::Firing => {
                    if rule.rule.keep_firing_for_seconds == 0 {
                        resolve(rule, s, quiet, now, metrics, out);
                    } else {
                        s.phase = Phase::Recovering;
                        s.timer_ms = 0;
                        record(
                            out,
                            rule,
                            s,
                            "recovering",
                            render(rule, s, metrics),
                            now,
                            metrics,
                        );
                    }
                }
                Phase::Recovering => {
                    s.timer_ms = s.timer_ms.saturating_add(gap);
                    if s.timer_ms >= secs_ms(rule.rule.keep_firing_for_seconds) {
                        resolve(rule, s, quiet, now, metrics, out);
                    }
                }
                Phase::Inactive | Phase::NoData | Phase::Error => {
                    if s.phase != quiet {
                        s.phase = quiet;
                        if no_data {
                            record(
                                out,
                                rule,
                                s,
                                "no_data",
                                format!("no data for {}", s.rule),
                                now,
                                metrics,
                            );
                        }
                    }
                }
            }
        }
    }
    // Repeats continue while firing even when the value is held (keep_last, error).
    if matches!(cond, Cond::Hold) && s.phase == Phase::Firing {
        if let Some(level) = s.level {
            while_firing(rule, s, level, now, silenced, metrics, out);
        }
    }
}

fn secs_ms(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn severity_of(rule: &CompiledRule, level: Option<Level>) -> String {
    match level {
        Some(Level::Warning) => "warning".to_string(),
        _ => rule.severity.as_str().to_string(),
    }
}

fn threshold_of(rule: &CompiledRule, level: Option<Level>) -> f64 {
    match level {
        Some(Level::Warning) => rule.rule.warning_threshold.unwrap_or(rule.rule.threshold),
        _ => rule.rule.threshold,
    }
}

fn render(rule: &CompiledRule, s: &InstanceState, metrics: Option<&MetricValues>) -> String {
    let v = s.last_value;
    let threshold = threshold_of(rule, s.level);
    rule.template.render(|name| {
        if name == rule.rule.metric || name == "value" {
            v
        } else if name == "threshold" {
            Some(threshold)
        } else {
            metrics.and_then(|m| m.get(name).copied())
        }
    })
}

fn message_for(rule: &CompiledRule, s: &InstanceState, metrics: Option<&MetricValues>) -> String {
    if rule.rule.message.is_empty() {
        let v = s.last_value.map_or("n/a".to_string(), |v| format!("{v}"));
        format!(
            "{}: {} = {} ({} {})",
            rule.rule.name,
            rule.rule.metric,
            v,
            rule.rule.op,
            threshold_of(rule, s.level)
        )
    } else {
        render(rule, s, metrics)
    }
}

fn record(
    out: &mut Emitted,
    rule: &CompiledRule,
    s: &InstanceState,
    kind: &'static str,
    message: String,
    now: i64,
    _metrics: Option<&MetricValues>,
) {
    out.transitions.push(Transition {
        rule: s.rule.clone(),
        labels: s.labels.clone(),
        kind,
        severity: severity_of(rule, s.level),
        value: s.last_value,
        threshold: Some(threshold_of(rule, s.level)),
        message,
        at_ms: now,
    });
}

fn episode_key(s: &InstanceState) -> String {
    let group = fnv1a(instance_key("", &s.labels).as_bytes());
    format!("{}/{:016x}/{}", s.rule, group, s.episode_ms.unwrap_or(0))
}

fn notification(
    rule: &CompiledRule,
    s: &InstanceState,
    kind: NotifyKind,
    now: i64,
    metrics: Option<&MetricValues>,
) -> Notification {
    let ek = episode_key(s);
    let idem = match kind {
        NotifyKind::Repeat => format!("{ek}/repeat-{}", s.repeats),
        NotifyKind::Escalated => format!("{ek}/escalated"),
        k => format!("{ek}/{}", k.as_str()),
    };
    let mut rule_labels = rule.rule.labels.clone();
    rule_labels.extend(s.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let body = message_for(rule, s, metrics);
    Notification {
        kind,
        rule: s.rule.clone(),
        labels: s.labels.clone(),
        rule_labels,
        severity: severity_of(rule, s.level),
        state: if kind == NotifyKind::Resolved {
            "resolved"
        } else {
            "firing"
        }
        .to_string(),
        value: s.last_value,
        threshold: threshold_of(rule, s.level),
        message: if kind == NotifyKind::Resolved {
            format!("Resolved: {body}")
        } else {
            body
        },
        started_ms: s.episode_ms.unwrap_or(now),
        at_ms: now,
        episode_key: ek,
        idempotency_key: idem,
        instance_key: instance_key(&s.rule, &s.labels),
    }
}

fn fire(
    rule: &CompiledRule,
    s: &mut InstanceState,
    level: Level,
    now: i64,
    silenced: bool,
    metrics: Option<&MetricValues>,
    out: &mut Emitted,
) {
    s.phase = Phase::Firing;
    s.level = Some(level);
    s.episode_ms = Some(now);
    s.timer_ms = 0;
    s.repeats = 0;
    s.notified_level = None;
    let msg = message_for(rule, s, metrics);
    record(out, rule, s, "firing", msg, now, metrics);
    if !silenced {
        out.notifications
            .push(notification(rule, s, NotifyKind::Firing, now, metrics));
        s.notified_level = Some(level);
        s.last_notified_ms = Some(now);
    }
}

fn while_firing(
    rule: &CompiledRule,
    s: &mut InstanceState,
    level: Level,
    now: i64,
    silenced: bool,
    metrics: Option<&MetricValues>,
    out: &mut Emitted,
) {
    let previous = s.level;
    s.level = Some(level);
    if previous.is_some_and(|p| level < p) {
        record(
            out,
            rule,
            s,
            "deescalated",
            message_for(rule, s, metrics),
            now,
            metrics,
        );
    }
    if silenced {
        return;
    }
    match s.notified_level {
        None => {
            // The episode began under a silence that has ended.
            out.notifications
                .push(notification(rule, s, NotifyKind::Firing, now, metrics));
            s.notified_level = Some(level);
            s.last_notified_ms = Some(now);
        }
        Some(n) if level > n => {
            record(
                out,
                rule,
                s,
                "escalated",
                message_for(rule, s, metrics),
                now,
                metrics,
            );
            out.notifications
                .push(notification(rule, s, NotifyKind::Escalated, now, metrics));
            s.notified_level = Some(level);
            s.last_notified_ms = Some(now);
        }
        Some(_) => {
            let repeat = secs_ms(rule.rule.repeat_interval_seconds);
            if repeat > 0
                && s.last_notified_ms
                    .is_none_or(|t| now.saturating_sub(t) >= repeat)
            {
                s.repeats = s.repeats.saturating_add(1);
                record(
                    out,
                    rule,
                    s,
                    "repeat",
                    message_for(rule, s, metrics),
                    now,
                    metrics,
                );
                out.notifications
                    .push(notification(rule, s, NotifyKind::Repeat, now, metrics));
                s.last_notified_ms = Some(now);
            }
        }
    }
}

fn resolve(
    rule: &CompiledRule,
    s: &mut InstanceState,
    quiet: Phase,
    now: i64,
    metrics: Option<&MetricValues>,
    out: &mut Emitted,
) {
    let body = message_for(rule, s, metrics);
    record(
        out,
        rule,
        s,
        "resolved",
        format!("Resolved: {body}"),
        now,
        metrics,
    );
    if s.notified_level.is_some() {
        out.notifications
            .push(notification(rule, s, NotifyKind::Resolved, now, metrics));
        s.last_notified_ms = Some(now);
    }
    s.phase = quiet;
    s.level = None;
    s.notified_level = None;
    s.active_since_ms = None;
    s.episode_ms = None;
    s.timer_ms = 0;
    s.repeats = 0;
}
