//! The service's in-memory instance table: per rule, instances indexed by a
//! 64-bit hash of their group labels, so one evaluation cycle finds each
//! group's prior state with one hash of its labels and one small-map probe —
//! no instance-key string is built, hashed or compared per cycle. The
//! persisted key (`rule \0 labels`, see `kv.rs`) is built once, when the
//! instance is created or loaded, and kept with it.
//!
//! **Invariants:**
//! - within one rule, at most one instance per distinct label set;
//! - `hash` is `Instances::labels_hash(&state.labels)` under this table's
//!   hasher (randomly keyed per table, so crafted label values cannot force
//!   collisions); equal hashes with different labels live in `overflow`;
//! - `key == machine::instance_key(&state.rule, &state.labels)`.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use crate::machine::{instance_key, InstanceState, Labels};

/// How often an instance whose only change is its value (and last-evaluated
/// time) is re-persisted. Each instance has its own offset in the period
/// (from its label hash), so these checkpoints are spread over the period
/// instead of all falling in one cycle.
pub(crate) const CHECKPOINT_PERIOD_MS: i64 = 60_000;

/// One (rule, group) instance and its bookkeeping.
#[derive(Debug)]
pub(crate) struct Slot {
    /// The persisted key.
    pub(crate) key: String,
    pub(crate) hash: u64,
    pub(crate) state: InstanceState,
    /// Unix ms this instance was last written (or loaded).
    pub(crate) persisted_ms: i64,
    /// The cycle that last saw this instance's group.
    pub(crate) seen: u64,
}

impl Slot {
    pub(crate) fn new(hash: u64, state: InstanceState, persisted_ms: i64, seen: u64) -> Slot {
        Slot {
            key: instance_key(&state.rule, &state.labels),
            hash,
            state,
            persisted_ms,
            seen,
        }
    }

    /// Whether the value-only checkpoint of this instance is due at `now`:
    /// a checkpoint boundary (every [`CHECKPOINT_PERIOD_MS`], offset by the
    /// instance's hash) has passed since it was last written. So a value is
    /// never older than one period plus one eval interval after a crash.
    pub(crate) fn checkpoint_due(&self, now: i64) -> bool {
        let offset = (self.hash % CHECKPOINT_PERIOD_MS.unsigned_abs()) as i64;
        now.saturating_sub(offset).div_euclid(CHECKPOINT_PERIOD_MS)
            > self
                .persisted_ms
                .saturating_sub(offset)
                .div_euclid(CHECKPOINT_PERIOD_MS)
    }
}

/// A `Hasher` for keys that already are uniform 64-bit hashes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used for u64 keys; a correct fallback all the same.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ByHash = HashMap<u64, Slot, BuildHasherDefault<PassThrough>>;

/// The instances of one rule.
#[derive(Debug, Default)]
pub(crate) struct RuleInstances {
    main: ByHash,
    /// Instances whose label hash collides with a `main` entry's (rare).
    overflow: Vec<Slot>,
}

impl RuleInstances {
    pub(crate) fn is_empty(&self) -> bool {
        self.main.is_empty() && self.overflow.is_empty()
    }

    pub(crate) fn get_mut(&mut self, hash: u64, labels: &Labels) -> Option<&mut Slot> {
        match self.main.get_mut(&hash) {
            Some(s) if s.state.labels == *labels => Some(s),
            _ if self.overflow.is_empty() => None,
            _ => self
                .overflow
                .iter_mut()
                .find(|s| s.hash == hash && s.state.labels == *labels),
        }
    }

    /// Adds an instance whose labels are not in the table yet.
    pub(crate) fn insert(&mut self, slot: Slot) {
        match self.main.entry(slot.hash) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(slot);
            }
            std::collections::hash_map::Entry::Occupied(_) => self.overflow.push(slot),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.main.values().chain(self.overflow.iter())
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.main.values_mut().chain(self.overflow.iter_mut())
    }

    /// Keeps the instances for which `keep` is true.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&mut Slot) -> bool) {
        self.main.retain(|_, s| keep(s));
        self.overflow.retain_mut(keep);
    }
}

/// Every instance, by rule name.
#[derive(Debug, Default)]
pub(crate) struct Instances {
    pub(crate) by_rule: HashMap<String, RuleInstances>,
    hasher: RandomState,
}

impl Instances {
    /// A table holding `states` (as loaded from storage): each counts as
    /// persisted at its last evaluation.
    pub(crate) fn from_states(states: impl IntoIterator<Item = InstanceState>) -> Instances {
        let mut t = Instances::default();
        for s in states {
            let hash = t.labels_hash(&s.labels);
            let persisted = s.last_evaluated_ms.unwrap_or(0);
            let rule = t.rule_mut(&s.rule);
            // A duplicate (same rule and labels under two keys) keeps the first.
            if rule.get_mut(hash, &s.labels).is_none() {
                rule.insert(Slot::new(hash, s, persisted, 0));
            }
        }
        t
    }

    pub(crate) fn labels_hash(&self, labels: &Labels) -> u64 {
        self.hasher.hash_one(labels)
    }

    /// The hasher of this table's label hashes (to hash while holding one
    /// rule's instances mutably).
    pub(crate) fn hasher(&self) -> RandomState {
        self.hasher.clone()
    }

    /// The instances of `rule`, created empty if it has none.
    pub(crate) fn rule_mut(&mut self, rule: &str) -> &mut RuleInstances {
        if !self.by_rule.contains_key(rule) {
            self.by_rule
                .insert(rule.to_string(), RuleInstances::default());
        }
        self.by_rule.get_mut(rule).expect("inserted above")
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.by_rule.values().flat_map(RuleInstances::iter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::{Level, Phase};

    fn state(rule: &str, model: &str) -> InstanceState {
        InstanceState {
            rule: rule.into(),
            labels: Labels::from([("model".to_string(), model.to_string())]),
            rule_fingerprint: 1,
            phase: Phase::Firing,
            level: Some(Level::Full),
            notified_level: Some(Level::Full),
            active_since_ms: Some(1),
            episode_ms: Some(1),
            timer_ms: 0,
            last_value: Some(2.0),
            last_samples: 3,
            last_evaluated_ms: Some(10),
            last_notified_ms: Some(1),
            repeats: 0,
            error: None,
        }
    }

    #[test]
    fn colliding_hashes_keep_instances_apart() {
        let mut r = RuleInstances::default();
        let a = state("r", "a");
        let b = state("r", "b");
        let (la, lb) = (a.labels.clone(), b.labels.clone());
        // Force a collision: both under hash 7.
        r.insert(Slot::new(7, a, 0, 0));
        r.insert(Slot::new(7, b, 0, 0));
        assert_eq!(r.iter().count(), 2);
        assert_eq!(r.get_mut(7, &la).unwrap().state.labels, la);
        assert_eq!(r.get_mut(7, &lb).unwrap().state.labels, lb);
        assert!(r.get_mut(8, &la).is_none());
        // Dropping the main entry leaves the overflowed one reachable.
        r.retain(|s| s.state.labels != la);
        assert_eq!(r.get_mut(7, &lb).unwrap().state.labels, lb);
        assert!(r.get_mut(7, &la).is_none());
        assert_eq!(r.get_mut(7, &lb).unwrap().key, instance_key("r", &lb));
        r.retain(|_| false);
        assert!(r.is_empty());
    }

    #[test]
    fn loaded_instances_are_found_by_their_labels() {
        let t = Instances::from_states([state("r", "a"), state("r", "b"), state("q", "a")]);
        assert_eq!(t.iter().count(), 3);
        let mut t = t;
        let la = state("r", "a").labels;
        let h = t.labels_hash(&la);
        let slot = t.rule_mut("r").get_mut(h, &la).unwrap();
        assert_eq!(slot.key, instance_key("r", &la));
        assert_eq!(slot.persisted_ms, 10);
    }

    #[test]
    fn checkpoints_fall_once_per_period_at_each_instances_offset() {
        for hash in [0u64, 1, 59_999, 123_456_789, u64::MAX] {
            let mut slot = Slot::new(hash, state("r", "a"), 0, 0);
            let offset = (hash % 60_000) as i64;
            // Written just after a boundary: not due until the next one.
            let start = 1_700_000_000_000 / 60_000 * 60_000 + offset;
            slot.persisted_ms = start;
            assert!(!slot.checkpoint_due(start));
            assert!(!slot.checkpoint_due(start + 59_999));
            assert!(slot.checkpoint_due(start + 60_000));
            // Written just before a boundary: due right after it.
            slot.persisted_ms = start - 1;
            assert!(slot.checkpoint_due(start));
            // Over 15 s cycles, each instance is written once per minute.
            slot.persisted_ms = start;
            let mut writes = 0;
            let mut now = start;
            for _ in 0..40 {
                now += 15_000;
                if slot.checkpoint_due(now) {
                    slot.persisted_ms = now;
                    writes += 1;
                }
            }
            assert_eq!(writes, 10, "hash {hash}");
        }
    }
}
