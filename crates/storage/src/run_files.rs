//! Request-index run files (format 6): the chunks of each request-index run
//! (`store/requests.rs`) live in a file of their own,
//! `<store>/request_runs/NNNNNNNNNNNNNNNN.run` (the run id in 16 lower-case
//! hex digits), written once and deleted whole; sled keeps the run's
//! directory entry, which records each chunk's end offset. The only module
//! that does request-run file I/O.
//!
//! A file is the concatenation of the run's framed chunks (version + CRC,
//! as the chunk values of tree `request_runs` were), so a read checks the
//! checksum as before; a fingerprint run's file (format 7) ends with the
//! run's framed index block (fences and chunk lengths, written by
//! `requests::write_file` as one more part), so its directory entry holds
//! only the block's location.
//!
//! **Invariant:** a run file is written and `sync_data`ed, and the
//! directory fsynced, by [`RunFiles::write`] before the transaction that
//! publishes the run's directory entry commits; it is deleted only after
//! the transaction that tombstones (or never published) that entry is
//! durable. At open, every file without a published directory entry is
//! deleted (`RequestIndex::open`).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::CodecError;
use crate::handle_cache::HandleCache;
use crate::numbered;

/// The directory of run files inside the store directory.
pub(crate) const DIR_NAME: &str = "request_runs";

/// Extension of these files' names (`numbered::name`).
const EXT: &str = "run";

fn io_err(what: &str, path: &Path, e: std::io::Error) -> CodecError {
    CodecError::new(
        "request run file",
        format!("{what} {}: {e}", path.display()),
    )
}

/// The store's request-index run files.
#[derive(Debug)]
pub(crate) struct RunFiles {
    dir: PathBuf,
    /// Open read handles, by run id (bounded).
    handles: Mutex<HandleCache>,
    /// Test hook: the next [`RunFiles::write`] fails (as on ENOSPC).
    #[cfg(test)]
    pub(crate) fail_next_write: std::sync::atomic::AtomicBool,
}

impl RunFiles {
    /// Opens (creating) `<store>/request_runs/`.
    pub(crate) fn open(store_dir: &Path) -> Result<RunFiles, CodecError> {
        let dir = store_dir.join(DIR_NAME);
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| io_err("creating", &dir, e))?;
            numbered::sync_dir(store_dir).map_err(|e| io_err("syncing", store_dir, e))?;
        }
        Ok(RunFiles {
            dir,
            handles: Mutex::new(HandleCache::default()),
            #[cfg(test)]
            fail_next_write: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn path(&self, id: u64) -> PathBuf {
        self.dir.join(numbered::name(id, EXT))
    }

    /// The run ids that have a file.
    pub(crate) fn list(&self) -> Result<Vec<u64>, CodecError> {
        let mut ids = Vec::new();
        for e in std::fs::read_dir(&self.dir).map_err(|e| io_err("listing", &self.dir, e))? {
            let e = e.map_err(|e| io_err("listing", &self.dir, e))?;
            if let Some(id) = e.file_name().to_str().and_then(|n| numbered::parse(n, EXT)) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Writes run `id`'s chunks (replacing any earlier file of that id, the
    /// leftover of an attempt that never committed) and makes the file
    /// durable; returns each chunk's end offset.
    pub(crate) fn write(&self, id: u64, chunks: &[&[u8]]) -> Result<Vec<u64>, CodecError> {
        let path = self.path(id);
        self.handles.lock().remove(id);
        let mut buf = Vec::with_capacity(chunks.iter().map(|c| c.len()).sum());
        let mut ends = Vec::with_capacity(chunks.len());
        for c in chunks {
            buf.extend_from_slice(c);
            ends.push(buf.len() as u64);
        }
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| io_err("creating", &path, e))?;
        #[cfg(test)]
        if self
            .fail_next_write
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            let e = std::io::Error::other("injected failure (test)");
            return Err(io_err("writing", &path, e));
        }
        file.write_all_at(&buf, 0)
            .map_err(|e| io_err("writing", &path, e))?;
        file.sync_data().map_err(|e| io_err("syncing", &path, e))?;
        numbered::sync_dir(&self.dir).map_err(|e| io_err("syncing", &self.dir, e))?;
        Ok(ends)
    }

    fn handle(&self, id: u64) -> std::io::Result<Arc<File>> {
        let mut h = self.handles.lock();
        if let Some(f) = h.get(id) {
            return Ok(f);
        }
        let f = Arc::new(File::open(self.path(id))?);
        h.insert(id, f.clone());
        Ok(f)
    }

    /// Bytes `from..to` of run `id`'s file; a missing file or a range past
    /// its end is an error.
    pub(crate) fn read(&self, id: u64, from: u64, to: u64) -> Result<Vec<u8>, CodecError> {
        let path = self.path(id);
        let file = self.handle(id).map_err(|e| io_err("opening", &path, e))?;
        let size = file
            .metadata()
            .map_err(|e| io_err("reading the size of", &path, e))?
            .len();
        if from > to || to > size {
            return Err(CodecError::new(
                "request run file",
                format!(
                    "bytes {from}..{to} are past the end of {} ({size} bytes)",
                    path.display()
                ),
            ));
        }
        let mut buf = vec![0u8; (to - from) as usize];
        file.read_exact_at(&mut buf, from)
            .map_err(|e| io_err("reading", &path, e))?;
        Ok(buf)
    }

    /// Bytes of the run files on disk.
    pub(crate) fn bytes(&self) -> u64 {
        numbered::disk_usage(&self.dir, EXT).1
    }

    /// Deletes run `id`'s file (no error if there is none).
    pub(crate) fn remove(&self, id: u64) -> Result<(), CodecError> {
        self.handles.lock().remove(id);
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing", &path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_written_read_by_range_replaced_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let f = RunFiles::open(dir.path()).unwrap();
        let ends = f.write(7, &[b"abc", b"", b"defgh"]).unwrap();
        assert_eq!(ends, vec![3, 3, 8]);
        assert_eq!(f.read(7, 3, 8).unwrap(), b"defgh");
        assert_eq!(f.read(7, 0, 3).unwrap(), b"abc");
        assert_eq!(f.list().unwrap(), vec![7]);
        assert_eq!(f.bytes(), 8);
        let err = f.read(7, 5, 9).unwrap_err().to_string();
        assert!(err.contains("past the end"), "{err}");
        assert!(f.read(7, 5, 4).is_err());
        // A rewrite of the same id replaces the file.
        f.write(7, &[b"xy"]).unwrap();
        assert_eq!(f.read(7, 0, 2).unwrap(), b"xy");
        assert!(f.read(7, 0, 3).is_err());
        f.remove(7).unwrap();
        f.remove(7).unwrap();
        assert!(f.list().unwrap().is_empty());
        let err = f.read(7, 0, 1).unwrap_err().to_string();
        assert!(err.contains(&numbered::name(7, EXT)), "{err}");
        // Reopened: the directory is still there, other names ignored.
        std::fs::write(dir.path().join(DIR_NAME).join("notes.txt"), b"x").unwrap();
        let f = RunFiles::open(dir.path()).unwrap();
        assert!(f.list().unwrap().is_empty());
    }

    #[test]
    fn cached_read_handles_stay_bounded_and_reads_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let f = RunFiles::open(dir.path()).unwrap();
        let n = crate::handle_cache::MAX_HANDLES as u64 + 20;
        for id in 0..n {
            f.write(id, &[&id.to_be_bytes()]).unwrap();
        }
        for _ in 0..2 {
            for id in 0..n {
                assert_eq!(f.read(id, 0, 8).unwrap(), id.to_be_bytes());
                assert!(f.handles.lock().len() <= crate::handle_cache::MAX_HANDLES);
            }
        }
    }
}
