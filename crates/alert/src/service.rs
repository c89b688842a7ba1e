//! The alerting service: rules and instance state held in memory behind one
//! lock, persisted through [`KvBackend`], evaluated on a timer, and an outbox
//! drained by the delivery worker.
//!
//! **Invariants:**
//! - one evaluation = one `commit`: instance states, history records, outbox
//!   entries and the sequence counter are written together or not at all, and
//!   memory is updated only after the commit succeeded;
//! - an outbox entry is deleted only after its receiver answered 2xx (or it is
//!   marked failed, with a history record, in the same commit that deletes it);
//! - per (instance, notifier), entries are delivered in queue order: an entry
//!   is attempted only when no older entry of its lane is left.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use sextant_storage::{Space, WriteSet};

use crate::api::{
    AlertConfig, AlertError, AlertStats, HistoryEntry, HistoryQuery, InstanceView, NotifierConfig,
    NotifierKind, Rule, Silence,
};
use crate::instances::{Instances, Slot};
use crate::kv::{self, KvBackend};
use crate::machine::{
    self, Emitted, EvalContext, Input, InstanceState, Notification, Observation, Transition,
};
use crate::notify::{self, OutboxEntry, Outcome};
use crate::rule::{self, CompiledRule};
use crate::source::{Group, MetricSource, SharedRuleResult};

/// A metric source's answers for one cycle, in whichever form it gave them.
enum Answers {
    Owned(Vec<machine::RuleResult>),
    Shared(Vec<SharedRuleResult>),
}

/// One evaluation cycle's pass over the rules: steps every instance in place
/// and stages the writes (instances that changed materially, are new, or whose
/// checkpoint is due; deletions of dropped instances).
struct Pass<'a> {
    ctx: &'a EvalContext,
    silences: &'a [Silence],
    cycle: u64,
    em: &'a mut Emitted,
    ws: &'a mut WriteSet,
    buf: Vec<u8>,
}

impl Pass<'_> {
    fn persist(&mut self, slot: &mut Slot, dirty: bool) {
        let now = self.ctx.now_ms;
        if dirty || slot.checkpoint_due(now) {
            // Encoded into a reused buffer, then copied out at its exact
            // size: one allocation per write instead of a growing Vec.
            self.buf.clear();
            if serde_json::to_writer(&mut self.buf, &slot.state).is_err() {
                self.buf.clear(); // cannot happen for this plain struct
            }
            self.ws.put(
                Space::AlertState,
                slot.key.as_bytes().to_vec(),
                self.buf.clone(),
            );
            slot.persisted_ms = now;
        }
    }

    fn rule<G: Group>(
        &mut self,
        table: &mut Instances,
        rule: &CompiledRule,
        answer: Result<Vec<G>, String>,
    ) {
        let (ctx, silences) = (self.ctx, self.silences);
        let name = rule.rule.name.as_str();
        match answer {
            Err(msg) => {
                let insts = table.rule_mut(name);
                if insts.is_empty() {
                    let s = machine::step_new(
                        rule,
                        machine::Labels::new(),
                        Input::Error(&msg),
                        None,
                        silences,
                        ctx,
                        self.em,
                    );
                    let hash = table.labels_hash(&s.labels);
                    let mut slot = Slot::new(hash, s, 0, self.cycle);
                    self.persist(&mut slot, true);
                    table.rule_mut(name).insert(slot);
                    return;
                }
                for slot in insts.iter_mut() {
                    slot.seen = self.cycle;
                    let dirty = machine::step(
                        rule,
                        &mut slot.state,
                        Input::Error(&msg),
                        None,
                        silences,
                        ctx,
                        self.em,
                    );
                    self.persist(slot, dirty);
                }
            }
            Ok(groups) => {
                let hasher = table.hasher();
                let insts = table.rule_mut(name);
                for g in groups {
                    let hash = hasher.hash_one(g.labels());
                    if let Some(slot) = insts.get_mut(hash, g.labels()) {
                        slot.seen = self.cycle;
                        let dirty = machine::step(
                            rule,
                            &mut slot.state,
                            Input::Obs(g.observation()),
                            g.metrics(),
                            silences,
                            ctx,
                            self.em,
                        );
                        self.persist(slot, dirty);
                    } else {
                        let observation = g.observation().clone();
                        let metrics = g.metrics().cloned();
                        let s = machine::step_new(
                            rule,
                            g.into_labels(),
                            Input::Obs(&observation),
                            metrics.as_ref(),
                            silences,
                            ctx,
                            self.em,
                        );
                        let mut slot = Slot::new(hash, s, 0, self.cycle);
                        self.persist(&mut slot, true);
                        insts.insert(slot);
                    }
                }
                // Groups that vanished: no data for them.
                let grouped = !rule.rule.group_by.is_empty();
                let cycle = self.cycle;
                insts.retain(|slot| {
                    if slot.seen == cycle {
                        return true;
                    }
                    let dirty = machine::step(
                        rule,
                        &mut slot.state,
                        Input::Obs(&Observation::NoData),
                        None,
                        silences,
                        ctx,
                        self.em,
                    );
                    // A vanished group that is quiet again carries nothing worth keeping.
                    if grouped && machine::vanished_droppable(&slot.state) {
                        self.ws
                            .delete(Space::AlertState, slot.key.as_bytes().to_vec());
                        return false;
                    }
                    self.persist(slot, dirty);
                    true
                });
            }
        }
    }
}

/// Retention runs at most this often.
const RETENTION_EVERY_MS: i64 = 3_600_000;
/// Most history days deleted by one retention run (bounds one commit).
const RETENTION_MAX_DAYS: u32 = 31;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[derive(Debug)]
struct EvalState {
    /// Sorted by name.
    rules: Vec<CompiledRule>,
    /// Every instance, with when it was last written. Instances whose only
    /// change is their value / last-evaluated time (no material change:
    /// phase, level, timers, notifications, error) are re-persisted once per
    /// `instances::CHECKPOINT_PERIOD_MS`, in every phase. Losing up to that
    /// much of `last_value` on a crash is harmless: downtime never counts, and
    /// material changes are always written in the same commit as their
    /// notifications.
    instances: Instances,
    /// Evaluation cycles run (marks the instances a cycle saw).
    cycle: u64,
    silences: Vec<Silence>,
    /// Last sequence number used (outbox keys, history ids).
    seq: u64,
    history_min_day: Option<u32>,
    /// Newest day holding history (bounds history scans).
    history_max_day: Option<u32>,
    last_retention_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct RetryState {
    attempts: u32,
    next_ms: i64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    cycles: AtomicU64,
    last_cycle_us: AtomicU64,
    outbox_depth: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    kv: Arc<dyn KvBackend>,
    source: Arc<dyn MetricSource>,
    pub(crate) config: AlertConfig,
    notifiers: Vec<NotifierConfig>,
    /// Unix ms this service started (the restart instant for the state machine).
    started_ms: i64,
    state: Mutex<EvalState>,
    retries: Mutex<HashMap<u64, RetryState>>,
    counters: Counters,
    pub(crate) wake: tokio::sync::Notify,
    client: reqwest::Client,
}

/// What one delivery pass found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeliveryPass {
    /// Entries delivered in this pass.
    pub delivered: u64,
    /// Entries marked failed in this pass.
    pub failed: u64,
    /// Entries still queued after the pass.
    pub remaining: u64,
    /// Unix ms of the earliest scheduled retry, if any.
    pub next_due_ms: Option<i64>,
    /// Whether another pass could make progress right away.
    pub more: bool,
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, key: &[u8], bytes: &[u8]) -> Option<T> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(what, key = %String::from_utf8_lossy(key), error = %e, "skipping undecodable alert record");
            None
        }
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs to JSON cannot fail (string keys, no
    // non-finite floats are produced by serde_json: they become null).
    serde_json::to_vec(v).unwrap_or_default()
}

fn install_crypto_provider() {
    // Ignore "already installed": any provider will do.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn load_instances(kv: &dyn KvBackend) -> Result<Instances, AlertError> {
    let mut states = Vec::new();
    for (k, v) in kv.scan(Space::AlertState, b"")? {
        if let Some(s) = decode::<InstanceState>("instance", &k, &v) {
            states.push(s);
        }
    }
    Ok(Instances::from_states(states))
}

impl Inner {
    fn load_instances(&self) -> Result<Instances, AlertError> {
        load_instances(self.kv.as_ref())
    }

    pub(crate) fn open(
        kv: Arc<dyn KvBackend>,
        source: Arc<dyn MetricSource>,
        config: AlertConfig,
        notifiers: Vec<NotifierConfig>,
        started_ms: i64,
    ) -> Result<Inner, AlertError> {
        install_crypto_provider();
        let mut names = Vec::new();
        for n in &notifiers {
            if names.contains(&n.name) {
                return Err(AlertError::InvalidInput {
                    field: "notifier.name".into(),
                    message: format!("notifier {} is configured twice", n.name),
                });
            }
            match n.kind {
                NotifierKind::Pagerduty if n.routing_key.is_none() => {
                    return Err(AlertError::InvalidInput {
                        field: "notifier.routing_key".into(),
                        message: format!("pagerduty notifier {} needs a routing_key", n.name),
                    })
                }
                NotifierKind::Webhook | NotifierKind::Slack if n.url.is_none() => {
                    return Err(AlertError::InvalidInput {
                        field: "notifier.url".into(),
                        message: format!("notifier {} needs a url", n.name),
                    })
                }
                _ => {}
            }
            names.push(n.name.clone());
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.delivery_timeout_seconds.max(1)))
            .build()
            .map_err(|e| {
                AlertError::Internal(format!("building the HTTP client: {}", e.without_url()))
            })?;

        // First start of a new store: the seed's default rules, once.
        if config.install_default_rules && kv.get(Space::Settings, kv::DEFAULTS_KEY)?.is_none() {
            let mut ws = WriteSet::default();
            for r in rule::default_rules() {
                if kv.get(Space::Rules, r.name.as_bytes())?.is_none() {
                    ws.put(Space::Rules, r.name.as_bytes().to_vec(), encode(&r));
                }
            }
            ws.put(Space::Settings, kv::DEFAULTS_KEY.to_vec(), b"1".to_vec());
            kv.commit(ws)?;
        }

        let mut rules = Vec::new();
        for (k, v) in kv.scan(Space::Rules, b"")? {
            let Some(r) = decode::<Rule>("rule", &k, &v) else {
                continue;
            };
            // Load-time validation tolerates notifiers removed from the config
            // (their entries fail at delivery) but nothing else.
            match rule::validate(&r, &r.notifiers) {
                Ok(c) => rules.push(c),
                Err(e) => {
                    tracing::error!(rule = %r.name, error = %e, "skipping invalid stored rule")
                }
            }
        }
        rules.sort_by(|a, b| a.rule.name.cmp(&b.rule.name));
        let instances = load_instances(kv.as_ref())?;
        let mut silences = Vec::new();
        for (k, v) in kv.scan(Space::Silences, b"")? {
            if let Some(s) = decode::<Silence>("silence", &k, &v) {
                silences.push(s);
            }
        }
        let seq = kv
            .get(Space::Settings, kv::SEQ_KEY)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map_or(0, u64::from_be_bytes);
        // Outbox keys must stay above every queued entry even if the counter was lost.
        let max_outbox = kv
            .scan(Space::Outbox, b"")?
            .last()
            .and_then(|(k, _)| <[u8; 8]>::try_from(k.as_slice()).ok())
            .map_or(0, u64::from_be_bytes);
        let history_min_day = kv
            .get(Space::Settings, kv::HISTORY_MIN_DAY_KEY)?
            .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
            .map(u32::from_be_bytes);
        let history_max_day = kv
            .get(Space::Settings, kv::HISTORY_MAX_DAY_KEY)?
            .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
            .map(u32::from_be_bytes);
        Ok(Inner {
            kv,
            source,
            config,
            notifiers,
            started_ms,
            state: Mutex::new(EvalState {
                rules,
                instances,
                cycle: 0,
                silences,
                seq: seq.max(max_outbox),
                history_min_day,
                history_max_day,
                last_retention_ms: None,
            }),
            retries: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            wake: tokio::sync::Notify::new(),
            client,
        })
    }

    fn notifier_names(&self) -> Vec<String> {
        self.notifiers.iter().map(|n| n.name.clone()).collect()
    }

    pub(crate) fn notifiers(&self) -> Vec<(String, NotifierKind)> {
        self.notifiers
            .iter()
            .map(|n| (n.name.clone(), n.kind))
            .collect()
    }

    /// The eval interval, ms (`eval_interval_ms` wins over `eval_interval_seconds`).
    pub(crate) fn eval_interval_ms(&self) -> i64 {
        let ms = self
            .config
            .eval_interval_ms
            .unwrap_or(self.config.eval_interval_seconds.saturating_mul(1000));
        i64::try_from(ms.max(1)).unwrap_or(i64::MAX)
    }

    fn grace_ms(&self) -> i64 {
        match self.config.restart_grace_seconds {
            Some(s) => i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX),
            None => self.eval_interval_ms(),
        }
    }

    pub(crate) fn rules(&self) -> Vec<Rule> {
        self.state
            .lock()
            .rules
            .iter()
            .map(|c| c.rule.clone())
            .collect()
    }

    pub(crate) fn rule(&self, name: &str) -> Result<Rule, AlertError> {
        self.state
            .lock()
            .rules
            .iter()
            .find(|c| c.rule.name == name)
            .map(|c| c.rule.clone())
            .ok_or_else(|| AlertError::NotFound {
                what: "rule",
                name: name.to_string(),
            })
    }

    pub(crate) fn create_rule(&self, rule: Rule) -> Result<Rule, AlertError> {
        let compiled = rule::validate(&rule, &self.notifier_names())?;
        let mut st = self.state.lock();
        if st.rules.iter().any(|c| c.rule.name == rule.name) {
            return Err(AlertError::Conflict(rule.name));
        }
        let mut ws = WriteSet::default();
        ws.put(Space::Rules, rule.name.as_bytes().to_vec(), encode(&rule));
        self.kv.commit(ws)?;
        let pos = st.rules.partition_point(|c| c.rule.name < rule.name);
        st.rules.insert(pos, compiled);
        Ok(rule)
    }

    /// Replaces (`Some`) or deletes (`None`) rule `name`, resetting its instances.
    pub(crate) fn replace_rule(
        &self,
        name: &str,
        new: Option<Rule>,
        now: i64,
    ) -> Result<Option<Rule>, AlertError> {
        let compiled = match &new {
            Some(r) => Some(rule::validate(r, &self.notifier_names())?),
            None => None,
        };
        let mut st = self.state.lock();
        let Some(idx) = st.rules.iter().position(|c| c.rule.name == name) else {
            return Err(AlertError::NotFound {
                what: "rule",
                name: name.to_string(),
            });
        };
        if let Some(c) = &compiled {
            if c.rule.name != name && st.rules.iter().any(|o| o.rule.name == c.rule.name) {
                return Err(AlertError::Conflict(c.rule.name.clone()));
            }
            if c.rule == st.rules[idx].rule {
                return Ok(new); // unchanged: nothing to reset
            }
        }
        let old = st.rules[idx].clone();
        let (keys, insts): (Vec<&str>, Vec<&InstanceState>) = st
            .instances
            .by_rule
            .get(name)
            .map(|r| r.iter().map(|s| (s.key.as_str(), &s.state)).unzip())
            .unwrap_or_default();
        let (mut transitions, notifications) =
            machine::reset_instances(&old, &insts, now, compiled.is_none());
        if transitions.is_empty() {
            // Record the edit even when the rule had no instances.
            transitions.push(Transition {
                rule: name.to_string(),
                labels: BTreeMap::new(),
                kind: if compiled.is_none() {
                    "rule_deleted"
                } else {
                    "rule_changed"
                },
                severity: old.rule.severity.clone(),
                value: None,
                threshold: Some(old.rule.threshold),
                message: format!(
                    "rule {name} {}",
                    if compiled.is_none() {
                        "deleted"
                    } else {
                        "changed"
                    }
                ),
                at_ms: now,
            });
        }
        let mut ws = WriteSet::default();
        let mut seq = st.seq;
        for k in &keys {
            ws.delete(Space::AlertState, k.as_bytes().to_vec());
        }
        drop(insts);
        ws.delete(Space::Rules, name.as_bytes().to_vec());
        if let Some(c) = &compiled {
            ws.put(
                Space::Rules,
                c.rule.name.as_bytes().to_vec(),
                encode(&c.rule),
            );
        }
        let days = self.stage_history(
            &mut ws,
            &mut seq,
            (st.history_min_day, st.history_max_day),
            &transitions,
        );
        self.stage_outbox(&mut ws, &mut seq, &st.rules, &notifications, now);
        ws.put(
            Space::Settings,
            kv::SEQ_KEY.to_vec(),
            seq.to_be_bytes().to_vec(),
        );
        self.kv.commit(ws)?;
        st.seq = seq;
        (st.history_min_day, st.history_max_day) = days;
        st.instances.by_rule.remove(name);
        st.rules.remove(idx);
        if let Some(c) = compiled {
            let pos = st.rules.partition_point(|o| o.rule.name < c.rule.name);
            st.rules.insert(pos, c);
        }
        drop(st);
        if !notifications.is_empty() {
            self.wake.notify_one();
        }
        Ok(new)
    }

    /// Stages history records; returns the new (min, max) history days.
    fn stage_history(
        &self,
        ws: &mut WriteSet,
        seq: &mut u64,
        days: (Option<u32>, Option<u32>),
        transitions: &[Transition],
    ) -> (Option<u32>, Option<u32>) {
        let (mut min_day, mut max_day) = days;
        for t in transitions {
            *seq += 1;
            let entry = HistoryEntry {
                id: seq.to_string(),
                name: t.rule.clone(),
                severity: t.severity.clone(),
                message: t.message.clone(),
                timestamp_ms: t.at_ms,
                kind: t.kind.to_string(),
                labels: t.labels.clone(),
                value: t.value,
                threshold: t.threshold,
            };
            ws.put(
                Space::AlertHistory,
                kv::history_key(t.at_ms, *seq),
                encode(&entry),
            );
            let day = kv::day_of(t.at_ms);
            if min_day.is_none_or(|d| day < d) {
                min_day = Some(day);
                ws.put(
                    Space::Settings,
                    kv::HISTORY_MIN_DAY_KEY.to_vec(),
                    day.to_be_bytes().to_vec(),
                );
            }
            if max_day.is_none_or(|d| day > d) {
                max_day = Some(day);
                ws.put(
                    Space::Settings,
                    kv::HISTORY_MAX_DAY_KEY.to_vec(),
                    day.to_be_bytes().to_vec(),
                );
            }
        }
        (min_day, max_day)
    }

    /// The notifiers a notification goes to: the rule's, or with none named,
    /// every configured notifier (PagerDuty only for critical, as in the seed).
    fn targets<'a>(&'a self, rule: Option<&CompiledRule>, n: &Notification) -> Vec<&'a str> {
        match rule {
            Some(r) if !r.rule.notifiers.is_empty() => self
                .notifiers
                .iter()
                .filter(|c| r.rule.notifiers.contains(&c.name))
                .map(|c| c.name.as_str())
                .collect(),
            _ => self
                .notifiers
                .iter()
                .filter(|c| c.kind != NotifierKind::Pagerduty || n.severity == "critical")
                .map(|c| c.name.as_str())
                .collect(),
        }
    }

    fn stage_outbox(
        &self,
        ws: &mut WriteSet,
        seq: &mut u64,
        rules: &[CompiledRule],
        notifications: &[Notification],
        now: i64,
    ) {
        for n in notifications {
            // `rules` is sorted by name.
            let rule = rules
                .binary_search_by(|c| c.rule.name.as_str().cmp(n.rule.as_str()))
                .ok()
                .map(|i| &rules[i]);
            for target in self.targets(rule, n) {
                *seq += 1;
                let e = OutboxEntry {
                    seq: *seq,
                    notifier: target.to_string(),
                    queued_ms: now,
                    notification: n.clone(),
                };
                ws.put(Space::Outbox, kv::outbox_key(*seq), encode(&e));
            }
        }
    }

    pub(crate) fn evaluate_once(&self, now: i64) -> Result<(), AlertError> {
        let started = std::time::Instant::now();
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let answers = {
            let rule_refs: Vec<&Rule> = st.rules.iter().map(|c| &c.rule).collect();
            match self.source.observe_shared(&rule_refs, now) {
                Some(shared) => Answers::Shared(shared),
                None => Answers::Owned(self.source.observe(&rule_refs, now)),
            }
        };
        let ctx = EvalContext {
            now_ms: now,
            restarted_at_ms: self.started_ms,
            grace_ms: self.grace_ms(),
        };
        st.cycle += 1;
        // Instances are stepped in place; on a failed commit they are
        // reloaded from storage, which is the truth.
        let mut em = Emitted::default();
        let mut ws = WriteSet::default();
        let mut pass = Pass {
            ctx: &ctx,
            silences: &st.silences,
            cycle: st.cycle,
            em: &mut em,
            ws: &mut ws,
            buf: Vec::with_capacity(1024),
        };
        // Rules without an answer (a short answer list) keep their instances as they are.
        match answers {
            Answers::Owned(owned) => {
                for (rule, answer) in st.rules.iter().zip(owned) {
                    pass.rule(&mut st.instances, rule, answer);
                }
            }
            Answers::Shared(shared) => {
                for (rule, answer) in st.rules.iter().zip(shared) {
                    pass.rule(&mut st.instances, rule, answer);
                }
            }
        }
        // Instances of rules that no longer exist.
        let rules = &st.rules;
        st.instances.by_rule.retain(|name, insts| {
            let exists = rules
                .binary_search_by(|c| c.rule.name.as_str().cmp(name.as_str()))
                .is_ok();
            if !exists {
                for slot in insts.iter() {
                    ws.delete(Space::AlertState, slot.key.as_bytes().to_vec());
                }
            }
            exists
        });
        let ev = em;
        let mut seq = st.seq;
        let (mut min_day, max_day) = self.stage_history(
            &mut ws,
            &mut seq,
            (st.history_min_day, st.history_max_day),
            &ev.transitions,
        );
        self.stage_outbox(&mut ws, &mut seq, &st.rules, &ev.notifications, now);
        if seq != st.seq {
            ws.put(
                Space::Settings,
                kv::SEQ_KEY.to_vec(),
                seq.to_be_bytes().to_vec(),
            );
        }
        let retention_due = st
            .last_retention_ms
            .is_none_or(|t| now - t >= RETENTION_EVERY_MS);
        if retention_due {
            min_day = self.stage_retention(&mut ws, min_day, now)?;
        }
        if !ws.is_empty() {
            if let Err(e) = self.kv.commit(ws) {
                st.instances = self.load_instances().unwrap_or_default();
                return Err(e.into());
            }
        }
        st.seq = seq;
        st.history_min_day = min_day;
        st.history_max_day = max_day;
        if retention_due {
            st.last_retention_ms = Some(now);
        }
        drop(guard);
        if !ev.notifications.is_empty() {
            self.wake.notify_one();
        }
        self.counters.cycles.fetch_add(1, Ordering::Relaxed);
        self.counters.last_cycle_us.store(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Deletes history older than the retention, whole days by prefix and the
    /// cut-off day entry by entry.
    fn stage_retention(
        &self,
        ws: &mut WriteSet,
        min_day: Option<u32>,
        now: i64,
    ) -> Result<Option<u32>, AlertError> {
        let Some(first) = min_day else {
            return Ok(None);
        };
        let retention = i64::try_from(self.config.history_retention_seconds.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let cutoff_ms = now.saturating_sub(retention);
        let cutoff_day = kv::day_of(cutoff_ms);
        if first > cutoff_day {
            return Ok(min_day);
        }
        let last = cutoff_day.min(first.saturating_add(RETENTION_MAX_DAYS));
        for day in first..=last {
            for (k, _) in self.kv.scan(Space::AlertHistory, &day.to_be_bytes())? {
                if kv::history_key_ts(&k).is_none_or(|t| t < cutoff_ms) {
                    ws.delete(Space::AlertHistory, k);
                }
            }
        }
        let new_min = if last == cutoff_day {
            cutoff_day
        } else {
            last + 1
        };
        ws.put(
            Space::Settings,
            kv::HISTORY_MIN_DAY_KEY.to_vec(),
            new_min.to_be_bytes().to_vec(),
        );
        Ok(Some(new_min))
    }

    pub(crate) fn history(&self, q: &HistoryQuery) -> Result<Vec<HistoryEntry>, AlertError> {
        let (min_day, max_day) = {
            let st = self.state.lock();
            (st.history_min_day, st.history_max_day)
        };
        let (Some(min_day), Some(max_day)) = (min_day, max_day) else {
            return Ok(Vec::new());
        };
        if q.to_ms <= q.from_ms {
            return Ok(Vec::new());
        }
        let first = kv::day_of(q.from_ms).max(min_day);
        let last = kv::day_of(q.to_ms - 1).min(max_day);
        let limit = if q.limit == 0 { usize::MAX } else { q.limit };
        let mut out = Vec::new();
        // Newest day first, so a limit stops early.
        let mut day = last;
        while day >= first && out.len() < limit {
            let mut entries: Vec<HistoryEntry> = Vec::new();
            for (k, v) in self.kv.scan(Space::AlertHistory, &day.to_be_bytes())? {
                let Some(ts) = kv::history_key_ts(&k) else {
                    continue;
                };
                if ts < q.from_ms || ts >= q.to_ms {
                    continue;
                }
                let Some(e) = decode::<HistoryEntry>("history", &k, &v) else {
                    continue;
                };
                if q.rule.as_ref().is_some_and(|r| *r != e.name) {
                    continue;
                }
                if !q.kinds.is_empty() && !q.kinds.contains(&e.kind) {
                    continue;
                }
                entries.push(e);
            }
            out.extend(entries.into_iter().rev());
            if day == 0 {
                break;
            }
            day -= 1;
        }
        out.truncate(limit);
        Ok(out)
    }

    pub(crate) fn instances(&self) -> Vec<InstanceView> {
        let st = self.state.lock();
        let mut v: Vec<InstanceView> = st
            .instances
            .iter()
            .map(|slot| &slot.state)
            .map(|s| InstanceView {
                rule: s.rule.clone(),
                labels: s.labels.clone(),
                state: s.phase.as_str().to_string(),
                severity: match (
                    s.level,
                    st.rules
                        .binary_search_by(|c| c.rule.name.as_str().cmp(s.rule.as_str()))
                        .ok()
                        .map(|i| &st.rules[i]),
                ) {
                    (Some(machine::Level::Warning), _) => "warning".to_string(),
                    (_, Some(c)) => c.rule.severity.clone(),
                    (_, None) => String::new(),
                },
                active_since_ms: s.active_since_ms,
                last_value: s.last_value,
                last_evaluated_ms: s.last_evaluated_ms,
                last_notified_ms: s.last_notified_ms,
                error: s.error.clone(),
            })
            .collect();
        v.sort_by(|a, b| (&a.rule, &a.labels).cmp(&(&b.rule, &b.labels)));
        v
    }

    pub(crate) fn silences(&self) -> Vec<Silence> {
        self.state.lock().silences.clone()
    }

    pub(crate) fn create_silence(&self, mut s: Silence) -> Result<Silence, AlertError> {
        if s.ends_ms <= s.starts_ms {
            return Err(AlertError::InvalidInput {
                field: "ends_ms".into(),
                message: "must be after starts_ms".into(),
            });
        }
        let mut st = self.state.lock();
        let mut seq = st.seq;
        if s.id.is_empty() {
            seq += 1;
            s.id = format!("silence-{seq}");
        }
        if st.silences.iter().any(|o| o.id == s.id) {
            return Err(AlertError::Conflict(s.id));
        }
        let mut ws = WriteSet::default();
        ws.put(Space::Silences, s.id.as_bytes().to_vec(), encode(&s));
        ws.put(
            Space::Settings,
            kv::SEQ_KEY.to_vec(),
            seq.to_be_bytes().to_vec(),
        );
        self.kv.commit(ws)?;
        st.seq = seq;
        st.silences.push(s.clone());
        Ok(s)
    }

    pub(crate) fn delete_silence(&self, id: &str) -> Result<(), AlertError> {
        let mut st = self.state.lock();
        let Some(pos) = st.silences.iter().position(|s| s.id == id) else {
            return Err(AlertError::NotFound {
                what: "silence",
                name: id.to_string(),
            });
        };
        let mut ws = WriteSet::default();
        ws.delete(Space::Silences, id.as_bytes().to_vec());
        self.kv.commit(ws)?;
        st.silences.remove(pos);
        Ok(())
    }

    pub(crate) fn stats(&self) -> AlertStats {
        AlertStats {
            outbox_depth: self.counters.outbox_depth.load(Ordering::Relaxed),
            notifications_sent_total: self.counters.sent.load(Ordering::Relaxed),
            notifications_failed_total: self.counters.failed.load(Ordering::Relaxed),
            last_cycle_ms: self.counters.last_cycle_us.load(Ordering::Relaxed) as f64 / 1000.0,
            cycles_total: self.counters.cycles.load(Ordering::Relaxed),
        }
    }

    /// Marks `e` failed: deletes it and records `delivery_failed`, in one commit.
    fn fail(&self, e: &OutboxEntry, reason: &str, now: i64) -> Result<(), AlertError> {
        let mut st = self.state.lock();
        let mut seq = st.seq;
        let mut ws = WriteSet::default();
        ws.delete(Space::Outbox, kv::outbox_key(e.seq));
        let n = &e.notification;
        let t = Transition {
            rule: n.rule.clone(),
            labels: n.labels.clone(),
            kind: "delivery_failed",
            severity: n.severity.clone(),
            value: n.value,
            threshold: Some(n.threshold),
            message: format!(
                "{} notification {} to {} failed: {reason}",
                n.kind.as_str(),
                n.idempotency_key,
                e.notifier
            ),
            at_ms: now,
        };
        let days = self.stage_history(
            &mut ws,
            &mut seq,
            (st.history_min_day, st.history_max_day),
            &[t],
        );
        ws.put(
            Space::Settings,
            kv::SEQ_KEY.to_vec(),
            seq.to_be_bytes().to_vec(),
        );
        self.kv.commit(ws)?;
        st.seq = seq;
        (st.history_min_day, st.history_max_day) = days;
        drop(st);
        self.retries.lock().remove(&e.seq);
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(notifier = %e.notifier, key = %n.idempotency_key, reason, "notification failed");
        Ok(())
    }

    /// One delivery pass at `now`: attempts the head of every lane that is due.
    pub(crate) async fn deliver_pass(&self, now: i64) -> Result<DeliveryPass, AlertError> {
        let mut pass = DeliveryPass::default();
        let raw = self.kv.scan(Space::Outbox, b"")?;
        let mut heads: BTreeMap<(String, String), OutboxEntry> = BTreeMap::new();
        let mut total = 0u64;
        for (k, v) in raw {
            total += 1;
            let Some(e) = decode::<OutboxEntry>("outbox", &k, &v) else {
                // Undecodable: drop it rather than block the queue forever.
                let mut ws = WriteSet::default();
                ws.delete(Space::Outbox, k);
                self.kv.commit(ws)?;
                continue;
            };
            heads
                .entry((e.notification.instance_key.clone(), e.notifier.clone()))
                .or_insert(e);
        }
        let max_age = i64::try_from(self.config.delivery_max_age_seconds.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let mut attempts = Vec::new();
        for e in heads.into_values() {
            if now.saturating_sub(e.queued_ms) >= max_age {
                let attempts = self.retries.lock().get(&e.seq).map_or(0, |r| r.attempts);
                self.fail(
                    &e,
                    &format!(
                        "undelivered after {attempts} attempts and {} s",
                        max_age / 1000
                    ),
                    now,
                )?;
                pass.failed += 1;
                pass.more = true;
                continue;
            }
            if let Some(r) = self.retries.lock().get(&e.seq) {
                if r.next_ms > now {
                    pass.next_due_ms =
                        Some(pass.next_due_ms.map_or(r.next_ms, |d| d.min(r.next_ms)));
                    continue;
                }
            }
            let Some(cfg) = self.notifiers.iter().find(|n| n.name == e.notifier) else {
                self.fail(&e, "notifier is no longer configured", now)?;
                pass.failed += 1;
                pass.more = true;
                continue;
            };
            attempts.push(async move {
                let outcome = notify::send(&self.client, cfg, &e).await;
                (e, outcome)
            });
        }
        for (e, outcome) in futures_join_all(attempts).await {
            match outcome {
                Outcome::Delivered => {
                    let mut ws = WriteSet::default();
                    ws.delete(Space::Outbox, kv::outbox_key(e.seq));
                    self.kv.commit(ws)?;
                    self.retries.lock().remove(&e.seq);
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    pass.delivered += 1;
                    pass.more = true;
                    tracing::debug!(notifier = %e.notifier, key = %e.notification.idempotency_key, "notification delivered");
                }
                Outcome::Permanent(reason) => {
                    self.fail(&e, &reason, now)?;
                    pass.failed += 1;
                    pass.more = true;
                }
                Outcome::Retry { after, reason } => {
                    let mut retries = self.retries.lock();
                    let r = retries.entry(e.seq).or_insert(RetryState {
                        attempts: 0,
                        next_ms: now,
                    });
                    r.attempts = r.attempts.saturating_add(1);
                    let wait = notify::backoff(
                        r.attempts,
                        Duration::from_millis(self.config.delivery_backoff_initial_ms),
                        Duration::from_millis(self.config.delivery_backoff_max_ms),
                        fastrand::f64(),
                    )
                    .max(after.unwrap_or(Duration::ZERO));
                    let done = crate::service::now_ms();
                    r.next_ms =
                        done.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
                    pass.next_due_ms =
                        Some(pass.next_due_ms.map_or(r.next_ms, |d| d.min(r.next_ms)));
                    tracing::info!(notifier = %e.notifier, key = %e.notification.idempotency_key, attempt = r.attempts, %reason, "delivery will be retried");
                }
            }
        }
        pass.remaining = total.saturating_sub(pass.delivered + pass.failed);
        self.counters
            .outbox_depth
            .store(pass.remaining, Ordering::Relaxed);
        Ok(pass)
    }
}

/// Runs futures concurrently on the current task and returns their outputs in order.
async fn futures_join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(outs.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().flatten().collect()
}
