//! sextant-migrations: numbered on-disk format steps and their runner.
//!
//! A step upgrades a store from format version `N - 1` to `N`. Steps work
//! through the abstract [`KvStore`] trait (named trees of byte keys and
//! values), so this crate never depends on sled; `sextant-storage`
//! implements the trait over its trees.
//!
//! **Invariant:** each step's writes, including the new format version in
//! the `meta` tree, are committed together ([`KvStore::commit`]), so a crash
//! mid-migration leaves the store at the old or the new version, never
//! between them.

mod steps;

/// The meta tree and the key of the format version (u32 big-endian).
pub const META_TREE: &str = "meta";
pub const FORMAT_VERSION_KEY: &[u8] = b"format_version";

/// Named trees of byte keys and values, with buffered writes.
pub trait KvStore {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    /// Buffers a put until [`KvStore::commit`].
    fn put(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), String>;
    /// Atomically and durably applies every buffered write.
    fn commit(&mut self) -> Result<(), String>;
}

/// One numbered step.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// The version this step produces.
    pub version: u32,
    pub name: &'static str,
    pub apply: fn(&mut dyn KvStore) -> Result<(), String>,
}

/// Every step, oldest first. `STEPS[i].version == i + 1`.
pub const STEPS: &[Step] = &[
    steps::INITIAL,
    steps::REQUEST_RUNS,
    steps::WEEK_TIER,
    steps::WAL_DB,
    steps::SEGMENT_FILES,
    steps::REQUEST_RUN_FILES,
    steps::REQUEST_FINGERPRINTS,
    steps::ROLLUP_V2,
];

/// The newest format version these steps produce.
pub fn latest_version() -> u32 {
    STEPS.last().map(|s| s.version).unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrationError {
    #[error("the store has format version {found}; this build knows up to {supported}")]
    Newer { found: u32, supported: u32 },
    #[error("the stored format version is unreadable: {0}")]
    BadVersion(String),
    #[error("step {version} ({name}) failed: {message}")]
    Step {
        version: u32,
        name: &'static str,
        message: String,
    },
    #[error("reading the store: {0}")]
    Store(String),
}

/// The store's format version; 0 for an empty (new) store.
pub fn current_version(store: &dyn KvStore) -> Result<u32, MigrationError> {
    match store
        .get(META_TREE, FORMAT_VERSION_KEY)
        .map_err(MigrationError::Store)?
    {
        None => Ok(0),
        Some(v) => {
            let a: [u8; 4] = v
                .as_slice()
                .try_into()
                .map_err(|_| MigrationError::BadVersion(format!("{} bytes", v.len())))?;
            Ok(u32::from_be_bytes(a))
        }
    }
}

/// Brings the store to [`latest_version`], running each missing step in
/// order; returns the versions applied. A store newer than this build is
/// an error and is left untouched.
pub fn migrate(store: &mut dyn KvStore) -> Result<Vec<u32>, MigrationError> {
    let found = current_version(store)?;
    let supported = latest_version();
    if found > supported {
        return Err(MigrationError::Newer { found, supported });
    }
    let mut applied = Vec::new();
    for step in STEPS.iter().filter(|s| s.version > found) {
        let fail = |message: String| MigrationError::Step {
            version: step.version,
            name: step.name,
            message,
        };
        (step.apply)(store).map_err(fail)?;
        store
            .put(META_TREE, FORMAT_VERSION_KEY, &step.version.to_be_bytes())
            .map_err(fail)?;
        store.commit().map_err(fail)?;
        applied.push(step.version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Mem {
        committed: BTreeMap<(String, Vec<u8>), Vec<u8>>,
        pending: Vec<(String, Vec<u8>, Vec<u8>)>,
        commits: usize,
    }

    impl KvStore for Mem {
        fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
            Ok(self
                .committed
                .get(&(tree.to_string(), key.to_vec()))
                .cloned())
        }
        fn put(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), String> {
            self.pending.push((tree.into(), key.into(), value.into()));
            Ok(())
        }
        fn commit(&mut self) -> Result<(), String> {
            for (t, k, v) in self.pending.drain(..) {
                self.committed.insert((t, k), v);
            }
            self.commits += 1;
            Ok(())
        }
    }

    #[test]
    fn steps_are_numbered_consecutively_from_one() {
        for (i, s) in STEPS.iter().enumerate() {
            assert_eq!(s.version as usize, i + 1, "step {}", s.name);
        }
    }

    #[test]
    fn migrate_brings_an_empty_store_to_the_latest_version_once() {
        let mut m = Mem::default();
        assert_eq!(migrate(&mut m).unwrap(), vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(current_version(&m).unwrap(), latest_version());
        assert_eq!(m.commits, 8);
        assert_eq!(migrate(&mut m).unwrap(), Vec::<u32>::new());
        assert_eq!(m.commits, 8);
        // A new store gets no week watermarks: weeks start with its data.
        assert_eq!(m.get(META_TREE, b"wm.week_until").unwrap(), None);
    }

    fn ts(v: i64) -> Vec<u8> {
        ((v as u64) ^ (1 << 63)).to_be_bytes().to_vec()
    }

    fn at_version(v: u32, meta: &[(&[u8], Vec<u8>)]) -> Mem {
        let mut m = Mem::default();
        m.committed.insert(
            (META_TREE.into(), FORMAT_VERSION_KEY.to_vec()),
            v.to_be_bytes().to_vec(),
        );
        for (k, val) in meta {
            m.committed
                .insert((META_TREE.into(), k.to_vec()), val.clone());
        }
        m
    }

    #[test]
    fn week_tier_step_starts_weeks_after_deleted_days_and_rewrites_nothing_else() {
        const DAY: i64 = 86_400_000;
        // 2026-11-30T00:00:00Z is a Monday.
        let monday = 1_795_996_800_000;
        // Days deleted before Wednesday: weeks start the next Monday.
        let mut m = at_version(2, &[(b"wm.day_from", ts(monday + 2 * DAY))]);
        let before = m.committed.len();
        assert_eq!(migrate(&mut m).unwrap(), vec![3, 4, 5, 6, 7, 8]);
        let next = ts(monday + 7 * DAY);
        assert_eq!(
            m.get(META_TREE, b"wm.week_from").unwrap(),
            Some(next.clone())
        );
        assert_eq!(m.get(META_TREE, b"wm.week_until").unwrap(), Some(next));
        assert_eq!(m.committed.len(), before + 2);
        // Days deleted exactly up to a Monday: weeks start there.
        let mut m = at_version(2, &[(b"wm.day_from", ts(monday))]);
        migrate(&mut m).unwrap();
        assert_eq!(
            m.get(META_TREE, b"wm.week_until").unwrap(),
            Some(ts(monday))
        );
        // No day deleted: no week watermark, weeks are built from every day.
        for meta in [vec![], vec![(&b"wm.day_from"[..], ts(i64::MIN))]] {
            let mut m = at_version(1, &meta);
            assert_eq!(migrate(&mut m).unwrap(), vec![2, 3, 4, 5, 6, 7, 8]);
            assert_eq!(m.get(META_TREE, b"wm.week_until").unwrap(), None);
            assert_eq!(m.get(META_TREE, b"wm.week_from").unwrap(), None);
        }
        // An unreadable watermark fails the step, leaving version 2.
        let mut m = at_version(2, &[(b"wm.day_from", vec![1, 2, 3])]);
        assert!(matches!(
            migrate(&mut m),
            Err(MigrationError::Step { version: 3, .. })
        ));
        assert_eq!(current_version(&m).unwrap(), 2);
    }

    #[test]
    fn migrate_refuses_a_newer_store_and_leaves_it_untouched() {
        let mut m = Mem::default();
        m.committed.insert(
            (META_TREE.into(), FORMAT_VERSION_KEY.to_vec()),
            99u32.to_be_bytes().to_vec(),
        );
        let before = m.committed.clone();
        assert_eq!(
            migrate(&mut m),
            Err(MigrationError::Newer {
                found: 99,
                supported: latest_version()
            })
        );
        assert_eq!(m.committed, before);
    }

    #[test]
    fn an_unreadable_version_is_an_error_not_a_panic() {
        let mut m = Mem::default();
        m.committed
            .insert((META_TREE.into(), FORMAT_VERSION_KEY.to_vec()), vec![1, 2]);
        assert!(matches!(
            migrate(&mut m),
            Err(MigrationError::BadVersion(_))
        ));
    }
}
