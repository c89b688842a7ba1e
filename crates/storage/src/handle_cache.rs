//! A bounded cache of open read handles, by file number, shared by the
//! segment files and the request-run files. At most [`MAX_HANDLES`] stay
//! open; inserting one more closes the least recently used. Closing a
//! cached handle is always safe: a reader holds its own `Arc<File>`
//! (a pin), which keeps the file open until it is done.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

/// Open read handles kept per kind of file.
pub(crate) const MAX_HANDLES: usize = 64;

#[derive(Debug)]
pub(crate) struct HandleCache {
    /// File number → (handle, tick of its last use).
    map: HashMap<u64, (Arc<File>, u64)>,
    tick: u64,
    cap: usize,
}

impl Default for HandleCache {
    fn default() -> HandleCache {
        HandleCache::with_cap(MAX_HANDLES)
    }
}

impl HandleCache {
    pub(crate) fn with_cap(cap: usize) -> HandleCache {
        HandleCache {
            map: HashMap::new(),
            tick: 0,
            cap: cap.max(1),
        }
    }

    pub(crate) fn get(&mut self, no: u64) -> Option<Arc<File>> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(&no).map(|(f, used)| {
            *used = tick;
            f.clone()
        })
    }

    /// Caches `file` as file `no`'s handle, closing the least recently
    /// used handle if the cache is full.
    pub(crate) fn insert(&mut self, no: u64, file: Arc<File>) {
        self.tick += 1;
        if !self.map.contains_key(&no) && self.map.len() >= self.cap {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(no, _)| *no);
            if let Some(oldest) = oldest {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(no, (file, self.tick));
    }

    pub(crate) fn remove(&mut self, no: u64) {
        self.map.remove(&no);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_handle_is_closed_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let open = |no: u64| {
            let p = dir.path().join(no.to_string());
            std::fs::write(&p, b"x").unwrap();
            Arc::new(File::open(p).unwrap())
        };
        let mut c = HandleCache::with_cap(3);
        for no in 0..3 {
            c.insert(no, open(no));
        }
        assert!(c.get(0).is_some(), "0 is now the most recently used");
        c.insert(3, open(3));
        assert_eq!(c.len(), 3);
        assert!(c.get(1).is_none(), "1 was the least recently used");
        for no in [0, 2, 3] {
            assert!(c.get(no).is_some(), "{no}");
        }
        // Re-inserting a cached number evicts nothing.
        c.insert(3, open(3));
        assert_eq!(c.len(), 3);
        c.remove(0);
        assert_eq!(c.len(), 2);
        assert!(c.get(0).is_none());
    }
}
