//! The key-value edge of alerting: everything it persists goes through
//! [`KvBackend`], implemented by `sextant_storage::Store` (one sled
//! transaction per `commit`) and by [`MemoryKv`] for tests and benches.
//!
//! Key layout (all integers big-endian, so byte order is time order):
//! - `Rules`: rule name → rule JSON.
//! - `AlertState`: `rule \0 labels` → instance JSON.
//! - `AlertHistory`: `day u32 | ts_ms u64 (sign-flipped) | seq u64` → entry JSON;
//!   a day prefix lets time ranges and retention scan whole days.
//! - `Outbox`: `seq u64` → outbox entry JSON (queue order).
//! - `Silences`: id → silence JSON.
//! - `Settings`: `alert.seq` (u64 counter), `alert.defaults_installed`,
//!   `alert.history_min_day` and `alert.history_max_day` (u32 day numbers).

use std::collections::BTreeMap;
use std::fmt::Debug;

use parking_lot::Mutex;
use sextant_storage::{Space, StorageError, Store, WriteSet};

/// (key, value) pairs in key order.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

type MemMap = BTreeMap<(u8, Vec<u8>), Vec<u8>>;

/// Atomic, durable key-value access across spaces.
pub trait KvBackend: Send + Sync + Debug {
    /// Applies every op of `ws` atomically and durably.
    fn commit(&self, ws: WriteSet) -> Result<(), StorageError>;
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Every (key, value) whose key starts with `prefix`, in key order.
    fn scan(&self, space: Space, prefix: &[u8]) -> Result<KvPairs, StorageError>;
}

impl KvBackend for Store {
    fn commit(&self, ws: WriteSet) -> Result<(), StorageError> {
        self.kv_commit(ws)
    }
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.kv_get(space, key)
    }
    fn scan(&self, space: Space, prefix: &[u8]) -> Result<KvPairs, StorageError> {
        self.kv_scan(space, prefix)
    }
}

fn space_id(s: Space) -> u8 {
    match s {
        Space::Rules => 0,
        Space::AlertState => 1,
        Space::AlertHistory => 2,
        Space::Outbox => 3,
        Space::Silences => 4,
        Space::Baselines => 5,
        Space::Settings => 6,
        _ => 255,
    }
}

/// An in-memory [`KvBackend`] (not durable).
#[derive(Debug, Default)]
pub struct MemoryKv {
    map: Mutex<MemMap>,
}

impl MemoryKv {
    pub fn new() -> MemoryKv {
        MemoryKv::default()
    }
    /// Every entry, for tests that snapshot and restore the store.
    pub fn snapshot(&self) -> BTreeMap<(u8, Vec<u8>), Vec<u8>> {
        self.map.lock().clone()
    }
    pub fn from_snapshot(map: BTreeMap<(u8, Vec<u8>), Vec<u8>>) -> MemoryKv {
        MemoryKv {
            map: Mutex::new(map),
        }
    }
}

impl KvBackend for MemoryKv {
    fn commit(&self, ws: WriteSet) -> Result<(), StorageError> {
        let mut m = self.map.lock();
        for (space, key, value) in ws.ops {
            match value {
                Some(v) => {
                    m.insert((space_id(space), key), v);
                }
                None => {
                    m.remove(&(space_id(space), key));
                }
            }
        }
        Ok(())
    }
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .map
            .lock()
            .get(&(space_id(space), key.to_vec()))
            .cloned())
    }
    fn scan(&self, space: Space, prefix: &[u8]) -> Result<KvPairs, StorageError> {
        let id = space_id(space);
        let m = self.map.lock();
        Ok(m.range((id, prefix.to_vec())..)
            .take_while(|((s, k), _)| *s == id && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

pub(crate) const DAY_MS: i64 = 86_400_000;

/// History key: day | ts (sign-flipped) | seq.
pub(crate) fn history_key(ts_ms: i64, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(20);
    k.extend_from_slice(&day_of(ts_ms).to_be_bytes());
    k.extend_from_slice(&((ts_ms as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The day number of `ts_ms` (days since 1970, clamped at 0).
pub(crate) fn day_of(ts_ms: i64) -> u32 {
    u32::try_from(ts_ms.max(0) / DAY_MS).unwrap_or(u32::MAX)
}

/// The timestamp stored in a history key, if the key is well-formed.
pub(crate) fn history_key_ts(key: &[u8]) -> Option<i64> {
    let b: [u8; 8] = key.get(4..12)?.try_into().ok()?;
    Some((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

pub(crate) fn outbox_key(seq: u64) -> Vec<u8> {
    seq.to_be_bytes().to_vec()
}

pub(crate) const SEQ_KEY: &[u8] = b"alert.seq";
pub(crate) const DEFAULTS_KEY: &[u8] = b"alert.defaults_installed";
pub(crate) const HISTORY_MIN_DAY_KEY: &[u8] = b"alert.history_min_day";
pub(crate) const HISTORY_MAX_DAY_KEY: &[u8] = b"alert.history_max_day";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keys_sort_by_time_including_before_1970() {
        let ts = [-5_000i64, 0, 1, 86_399_999, 86_400_000, 1_700_000_000_000];
        let keys: Vec<_> = ts.iter().map(|t| history_key(*t, 1)).collect();
        for w in keys.windows(2) {
            assert!(w[0] < w[1]);
        }
        for (t, k) in ts.iter().zip(&keys) {
            assert_eq!(history_key_ts(k), Some(*t));
        }
        assert_eq!(history_key_ts(&[1, 2]), None);
    }

    #[test]
    fn memory_kv_scans_by_prefix_in_key_order() {
        let kv = MemoryKv::new();
        let mut ws = WriteSet::default();
        ws.put(Space::Rules, b"b".to_vec(), b"2".to_vec());
        ws.put(Space::Rules, b"a".to_vec(), b"1".to_vec());
        ws.put(Space::Outbox, b"a".to_vec(), b"x".to_vec());
        kv.commit(ws).unwrap();
        let all = kv.scan(Space::Rules, b"").unwrap();
        assert_eq!(
            all,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        );
        assert_eq!(kv.scan(Space::Outbox, b"a").unwrap().len(), 1);
    }
}
