//! Segment files (format 5): sealed segment bytes live in append-only log
//! files of the store's own, `<store>/segments/NNNNNNNNNNNNNNNN.seg` (the
//! file number in 16 lower-case hex digits); sled holds only where each
//! segment is (a [`Location`]). The only module that does segment file I/O.
//!
//! Each segment is stored exactly as its framed value (version + CRC, see
//! `frame.rs`), so a read checks the checksum as before. A file is appended
//! to until it reaches [`FILE_LIMIT`] bytes; the next segment starts a new
//! file. Files are never rewritten, only appended to and deleted whole.
//!
//! **Invariant (seal):** segment bytes are written and `sync_data`ed (and
//! the directory fsynced when a file was created since the last successful
//! directory fsync — by this append or by an earlier one that failed) by
//! [`SegFiles::append`] before the sled transaction that references them
//! commits. A crash before
//! the commit leaves bytes nothing references: harmless, and their file is
//! deleted at the next open once nothing in it is referenced.
//!
//! **Invariant (retention):** a file is deleted only after the deletion of
//! its last referenced location is durable in sled ([`SegFiles::release`]
//! is called after the flush), and never while it is the file being
//! appended to. Readers pin the files of the segments they listed
//! ([`SegFiles::pin`]): an unlinked file stays readable through an open
//! handle.
//!
//! **Invariant (open):** [`SegFiles::open`] counts the referenced segments
//! per file, deletes every file with none, and appends only to a new file
//! numbered above every existing or referenced one, so the torn tail of an
//! append cut by a crash is never extended or referenced.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::CodecError;
use crate::frame::{frame, unframe};
use crate::handle_cache::HandleCache;
use crate::numbered;

/// A segment file is appended to until it holds this many bytes (64 MiB);
/// the next segment starts a new file. Seals may be small (one per
/// `seal_max_age_ms` at worst), hence shared log files rather than one
/// file per segment.
pub(crate) const FILE_LIMIT: u64 = 64 << 20;

/// The directory of segment files inside the store directory.
pub(crate) const DIR_NAME: &str = "segments";

/// Frame version of a location record in tree `segments`. Distinct from
/// the segment frame versions (which count from 1), so an inline segment
/// value of a format ≤ 4 store is told apart from a location.
pub(crate) const LOCATION_VERSION: u8 = 0x81;

/// Where a segment's framed bytes are: `len` bytes at `offset` of file `file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Location {
    pub(crate) file: u64,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

impl Location {
    /// Framed record: `file u64 BE ‖ offset u64 BE ‖ len u32 BE`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(20);
        p.extend_from_slice(&self.file.to_be_bytes());
        p.extend_from_slice(&self.offset.to_be_bytes());
        p.extend_from_slice(&self.len.to_be_bytes());
        frame(LOCATION_VERSION, &p)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Location, CodecError> {
        let p = unframe("segment location", LOCATION_VERSION, bytes)?;
        if p.len() != 20 {
            return Err(CodecError::new(
                "segment location",
                format!("{} bytes, expected 20", p.len()),
            ));
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&p[i..i + 8]);
            u64::from_be_bytes(a)
        };
        let mut len = [0u8; 4];
        len.copy_from_slice(&p[16..20]);
        Ok(Location {
            file: u64_at(0),
            offset: u64_at(8),
            len: u32::from_be_bytes(len),
        })
    }

    /// Whether a `segments` value is a location record (format 5) rather
    /// than an inline framed segment (format ≤ 4).
    pub(crate) fn is_location(value: &[u8]) -> bool {
        value.first() == Some(&LOCATION_VERSION)
    }
}

/// Extension of these files' names (`numbered::name`).
const EXT: &str = "seg";

fn io_err(what: &str, path: &Path, e: std::io::Error) -> CodecError {
    CodecError::new("segment file", format!("{what} {}: {e}", path.display()))
}

/// A segment file a reader holds open, with its number (see [`SegFiles::pin`]).
pub(crate) type Pinned = Option<(u64, Arc<File>)>;

/// Space the segment files take (see [`SegFiles::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FileStats {
    pub(crate) files: u64,
    pub(crate) segments: u64,
    pub(crate) live_bytes: u64,
    pub(crate) file_bytes: u64,
}

#[derive(Debug)]
struct Current {
    no: u64,
    file: Arc<File>,
    len: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// File number → (referenced segments, their bytes).
    live: BTreeMap<u64, (u64, u64)>,
    /// Open read handles, by file number (bounded).
    handles: HandleCache,
    /// The file being appended to; `None` until the first append.
    current: Option<Current>,
    /// A file was created whose directory entry no directory fsync has
    /// yet made durable: set on creation, cleared only by a successful
    /// directory fsync, so an append that failed after creating its file
    /// leaves the fsync to the next append (whose segments may be in it).
    dir_unsynced: bool,
    /// The number the next new file gets.
    next_no: u64,
}

/// The store's segment files. All methods take one internal lock, held
/// for no other lock (callers may hold theirs).
#[derive(Debug)]
pub(crate) struct SegFiles {
    dir: PathBuf,
    /// [`FILE_LIMIT`] (smaller in unit tests).
    limit: u64,
    inner: Mutex<Inner>,
    /// Test hook: the next [`SegFiles::append`] fails writing (as on
    /// ENOSPC), after reserving its places (and creating a file if due).
    #[cfg(test)]
    pub(crate) fail_next_write: std::sync::atomic::AtomicBool,
    /// Test hook: directory fsyncs done by [`SegFiles::append`].
    #[cfg(test)]
    dir_syncs: std::sync::atomic::AtomicU64,
    /// Test hook: run once by the next [`SegFiles::read`], before it opens
    /// the file (to delete it as retention would, meanwhile).
    #[cfg(test)]
    pub(crate) before_next_read: Mutex<Option<TestHook>>,
}

/// A test hook (see [`SegFiles::before_next_read`]).
#[cfg(test)]
pub(crate) struct TestHook(pub(crate) Box<dyn FnOnce() + Send>);

#[cfg(test)]
impl std::fmt::Debug for TestHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestHook")
    }
}

impl SegFiles {
    /// Opens `<store>/segments/` (creating it), given the location of every
    /// referenced segment: deletes each file none of them is in, and
    /// appends from now on to a new file numbered above every file seen.
    ///
    /// `sweep` false (some location record could not be read, so the
    /// referenced set is incomplete): no file is deleted.
    pub(crate) fn open(
        store_dir: &Path,
        referenced: impl IntoIterator<Item = Location>,
        sweep: bool,
    ) -> Result<SegFiles, CodecError> {
        SegFiles::open_with_limit(store_dir, referenced, FILE_LIMIT, sweep)
    }

    fn open_with_limit(
        store_dir: &Path,
        referenced: impl IntoIterator<Item = Location>,
        limit: u64,
        sweep: bool,
    ) -> Result<SegFiles, CodecError> {
        let dir = store_dir.join(DIR_NAME);
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| io_err("creating", &dir, e))?;
            numbered::sync_dir(store_dir).map_err(|e| io_err("syncing", store_dir, e))?;
        }
        let mut live: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut max_no = 0u64;
        for loc in referenced {
            let e = live.entry(loc.file).or_default();
            e.0 += 1;
            e.1 += u64::from(loc.len);
            max_no = max_no.max(loc.file);
        }
        let entries = std::fs::read_dir(&dir).map_err(|e| io_err("listing", &dir, e))?;
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("listing", &dir, e))?;
            let name = entry.file_name();
            let Some(no) = name.to_str().and_then(|n| numbered::parse(n, EXT)) else {
                continue;
            };
            max_no = max_no.max(no);
            if sweep && !live.contains_key(&no) {
                // An orphan: bytes of a seal that never committed, or a
                // file whose last segment retention deleted just before a
                // crash. Nothing refers to it.
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|e| io_err("removing", &path, e))?;
                removed += 1;
            }
        }
        if removed > 0 {
            numbered::sync_dir(&dir).map_err(|e| io_err("syncing", &dir, e))?;
            tracing::info!(files = removed, "removed unreferenced segment files");
        }
        Ok(SegFiles {
            dir,
            limit,
            inner: Mutex::new(Inner {
                live,
                handles: HandleCache::default(),
                current: None,
                dir_unsynced: false,
                next_no: max_no + 1,
            }),
            #[cfg(test)]
            fail_next_write: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            dir_syncs: std::sync::atomic::AtomicU64::new(0),
            #[cfg(test)]
            before_next_read: Mutex::new(None),
        })
    }

    fn path(&self, no: u64) -> PathBuf {
        self.dir.join(numbered::name(no, EXT))
    }

    /// Appends each of `segments` (framed segment values) and makes them
    /// durable (`sync_data`, and a directory fsync if a file was created
    /// since the last successful one)
    /// before returning their locations. They count as referenced only once
    /// the caller's commit succeeded and it called [`SegFiles::add_live`].
    pub(crate) fn append(&self, segments: &[&[u8]]) -> Result<Vec<Location>, CodecError> {
        // Places are reserved under the lock; the writes and syncs run
        // without it, so readers pinning files never wait for an fsync.
        // Callers serialise `append` and `release` (the store's `maint`).
        let mut locs = Vec::with_capacity(segments.len());
        let mut files: Vec<(u64, Arc<File>)> = Vec::new();
        let sync_directory;
        {
            let mut inner = self.inner.lock();
            for seg in segments {
                let len = u32::try_from(seg.len()).map_err(|_| {
                    CodecError::new("segment file", format!("{} bytes is too big", seg.len()))
                })?;
                let full = inner.current.as_ref().is_none_or(|c| c.len >= self.limit);
                if full {
                    let no = inner.next_no;
                    let path = self.path(no);
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .map_err(|e| io_err("creating", &path, e))?;
                    let file = Arc::new(file);
                    inner.next_no = no + 1;
                    inner.handles.insert(no, file.clone());
                    inner.current = Some(Current { no, file, len: 0 });
                    inner.dir_unsynced = true;
                }
                let Some(cur) = inner.current.as_mut() else {
                    continue;
                };
                if files.last().is_none_or(|(no, _)| *no != cur.no) {
                    files.push((cur.no, cur.file.clone()));
                }
                locs.push(Location {
                    file: cur.no,
                    offset: cur.len,
                    len,
                });
                cur.len += u64::from(len);
            }
            sync_directory = inner.dir_unsynced;
        }
        #[cfg(test)]
        if self
            .fail_next_write
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            let e = std::io::Error::other("injected failure (test)");
            return Err(io_err("writing", &self.dir, e));
        }
        for (seg, loc) in segments.iter().zip(&locs) {
            let Some((_, file)) = files.iter().find(|(no, _)| *no == loc.file) else {
                continue;
            };
            file.write_all_at(seg, loc.offset)
                .map_err(|e| io_err("writing", &self.path(loc.file), e))?;
        }
        for (no, file) in &files {
            file.sync_data()
                .map_err(|e| io_err("syncing", &self.path(*no), e))?;
        }
        if sync_directory {
            numbered::sync_dir(&self.dir).map_err(|e| io_err("syncing", &self.dir, e))?;
            // Appends are serialised (see above): no file was created since.
            self.inner.lock().dir_unsynced = false;
            #[cfg(test)]
            self.dir_syncs
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(locs)
    }

    /// Counts `locs` as referenced (their commit succeeded).
    pub(crate) fn add_live(&self, locs: &[Location]) {
        let mut inner = self.inner.lock();
        for l in locs {
            let e = inner.live.entry(l.file).or_default();
            e.0 += 1;
            e.1 += u64::from(l.len);
        }
    }

    /// Counts `locs` as no longer referenced (their deletion is durable)
    /// and deletes every file left with no referenced segment, except the
    /// one being appended to. Returns how many files were deleted.
    pub(crate) fn release(&self, locs: &[Location]) -> Result<usize, CodecError> {
        let mut inner = self.inner.lock();
        let current = inner.current.as_ref().map(|c| c.no);
        let mut emptied = Vec::new();
        for l in locs {
            if let Some(e) = inner.live.get_mut(&l.file) {
                e.0 = e.0.saturating_sub(1);
                e.1 = e.1.saturating_sub(u64::from(l.len));
                if e.0 == 0 {
                    inner.live.remove(&l.file);
                    if Some(l.file) != current {
                        emptied.push(l.file);
                    }
                }
            }
        }
        for no in &emptied {
            inner.handles.remove(*no);
            let path = self.path(*no);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                // Left for the next open, which deletes unreferenced files.
                Err(e) => return Err(io_err("removing", &path, e)),
            }
        }
        Ok(emptied.len())
    }

    fn handle(&self, no: u64) -> std::io::Result<Arc<File>> {
        let mut inner = self.inner.lock();
        if let Some(f) = inner.handles.get(no) {
            return Ok(f);
        }
        let f = Arc::new(File::open(self.path(no))?);
        inner.handles.insert(no, f.clone());
        Ok(f)
    }

    /// An open handle on file `no`, for a reader that listed one of its
    /// segments (under the store's state lock, so the file is referenced):
    /// it stays readable if retention deletes the file meanwhile. `None`
    /// if it cannot be opened; [`SegFiles::read`] then reports why.
    pub(crate) fn pin(&self, no: u64) -> Pinned {
        self.handle(no).ok().map(|f| (no, f))
    }

    /// The framed bytes at `loc`, through `pinned` when it is that file's
    /// handle. A missing file or a location past the file's end is an error.
    pub(crate) fn read(&self, loc: Location, pinned: &Pinned) -> Result<Vec<u8>, CodecError> {
        #[cfg(test)]
        if let Some(hook) = self.before_next_read.lock().take() {
            (hook.0)();
        }
        let path = self.path(loc.file);
        let file = match pinned {
            Some((no, f)) if *no == loc.file => f.clone(),
            _ => self
                .handle(loc.file)
                .map_err(|e| io_err("opening", &path, e))?,
        };
        let size = file
            .metadata()
            .map_err(|e| io_err("reading the size of", &path, e))?
            .len();
        let end = loc.offset.checked_add(u64::from(loc.len));
        if end.is_none_or(|end| end > size) {
            return Err(CodecError::new(
                "segment file",
                format!(
                    "{} bytes at offset {} are past the end of {} ({size} bytes)",
                    loc.len,
                    loc.offset,
                    path.display()
                ),
            ));
        }
        let mut buf = vec![0u8; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset)
            .map_err(|e| io_err("reading", &path, e))?;
        Ok(buf)
    }

    /// Test hook: read handles cached.
    #[cfg(test)]
    fn handles_cached(&self) -> usize {
        self.inner.lock().handles.len()
    }

    /// Referenced segments and their bytes, and the files' sizes on disk.
    pub(crate) fn stats(&self) -> FileStats {
        let inner = self.inner.lock();
        let mut s = FileStats::default();
        for (segments, bytes) in inner.live.values() {
            s.segments += segments;
            s.live_bytes += bytes;
        }
        drop(inner);
        (s.files, s.file_bytes) = numbered::disk_usage(&self.dir, EXT);
        s
    }

    /// Test hook: XORs `mask` into byte `offset % loc.len` of the segment at `loc`.
    pub(crate) fn corrupt_for_test(
        &self,
        loc: Location,
        offset: usize,
        mask: u8,
    ) -> std::io::Result<()> {
        if loc.len == 0 {
            return Ok(());
        }
        let at = loc.offset + (offset % loc.len as usize) as u64;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(loc.file))?;
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at)?;
        b[0] ^= mask;
        f.write_all_at(&b, at)?;
        let mut f = f;
        f.flush()?;
        f.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<u64> {
        let mut v: Vec<u64> = std::fs::read_dir(dir.join(DIR_NAME))
            .unwrap()
            .filter_map(|e| numbered::parse(e.unwrap().file_name().to_str()?, EXT))
            .collect();
        v.sort_unstable();
        v
    }

    /// File limit of the tests.
    const LIMIT: u64 = 4096;

    fn open(dir: &Path, referenced: impl IntoIterator<Item = Location>) -> SegFiles {
        SegFiles::open_with_limit(dir, referenced, LIMIT, true).unwrap()
    }

    fn seg(n: usize, fill: u8) -> Vec<u8> {
        frame(1, &vec![fill; n])
    }

    #[test]
    fn locations_round_trip_and_reject_flipped_bytes() {
        let l = Location {
            file: 7,
            offset: 1 << 40,
            len: 123_456,
        };
        let b = l.encode();
        assert!(Location::is_location(&b));
        assert!(!Location::is_location(&seg(3, 1)));
        assert_eq!(Location::decode(&b).unwrap(), l);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            assert!(Location::decode(&bad).is_err(), "flip at {i}");
        }
        assert!(Location::decode(&b[..10]).is_err());
    }

    #[test]
    fn appended_segments_read_back_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = seg(1000, 1);
        let b = seg(5, 2);
        let locs = {
            let f = open(dir.path(), []);
            let locs = f.append(&[&a, &b]).unwrap();
            f.add_live(&locs);
            assert_eq!(f.read(locs[0], &None).unwrap(), a);
            let pinned = f.pin(locs[1].file);
            assert_eq!(f.read(locs[1], &pinned).unwrap(), b);
            assert_eq!(locs[1].offset, a.len() as u64);
            let s = f.stats();
            assert_eq!((s.files, s.segments), (1, 2));
            assert_eq!(s.live_bytes, (a.len() + b.len()) as u64);
            assert_eq!(s.file_bytes, s.live_bytes);
            locs
        };
        let f = open(dir.path(), locs.clone());
        assert_eq!(f.read(locs[0], &None).unwrap(), a);
        assert_eq!(f.read(locs[1], &None).unwrap(), b);
        // New appends go to a new file, never the old one's tail.
        let c = f.append(&[&b]).unwrap();
        assert_eq!(c[0].file, locs[0].file + 1);
        assert_eq!(c[0].offset, 0);
    }

    #[test]
    fn a_full_file_rolls_over_to_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = open(dir.path(), []);
        let big = seg((LIMIT / 2) as usize, 3);
        let small = seg(10, 4);
        let locs = f.append(&[&big, &small, &big, &small]).unwrap();
        // 1st file: big + small (under the limit), big (now over it);
        // the 4th segment starts the 2nd file.
        let nos: Vec<u64> = locs.iter().map(|l| l.file).collect();
        assert_eq!(nos, vec![1, 1, 1, 2]);
        assert_eq!(files(dir.path()), vec![1, 2]);
        assert_eq!(f.read(locs[3], &None).unwrap(), small);
        assert_eq!(f.read(locs[2], &None).unwrap(), big);
    }

    #[test]
    fn open_deletes_files_nothing_references_and_numbers_new_files_above_all() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, _orphan) = {
            let f = open(dir.path(), []);
            let big = seg(LIMIT as usize, 5);
            let locs = f.append(&[&big, &seg(9, 6)]).unwrap();
            (locs[0], locs[1])
        };
        assert_eq!(files(dir.path()), vec![1, 2]);
        // Only the first segment was committed: file 2 is an orphan.
        let f = open(dir.path(), [kept]);
        assert_eq!(files(dir.path()), vec![1]);
        assert_eq!(f.read(kept, &None).unwrap().len(), kept.len as usize);
        let next = f.append(&[&seg(1, 7)]).unwrap();
        assert_eq!(next[0].file, 3, "above every file seen, deleted ones too");
        drop(f);
        // Nothing referenced: every file goes; a location naming a file
        // that is gone still pushes new numbers above it.
        let gone = Location {
            file: 40,
            offset: 0,
            len: 1,
        };
        let f = open(dir.path(), [gone]);
        assert!(files(dir.path()).is_empty());
        assert_eq!(f.append(&[&seg(1, 8)]).unwrap()[0].file, 41);
    }

    #[test]
    fn a_location_past_the_end_or_in_a_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = open(dir.path(), []);
        let l = f.append(&[&seg(100, 1)]).unwrap()[0];
        let past = Location {
            offset: l.offset + 1,
            ..l
        };
        let err = f.read(past, &None).unwrap_err().to_string();
        assert!(err.contains("past the end"), "{err}");
        let huge = Location {
            offset: u64::MAX,
            ..l
        };
        assert!(f.read(huge, &None).is_err());
        let missing = Location { file: 99, ..l };
        let err = f.read(missing, &None).unwrap_err().to_string();
        assert!(err.contains(&numbered::name(99, EXT)), "{err}");
    }

    #[test]
    fn release_deletes_a_file_once_nothing_in_it_is_live_but_never_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = open(dir.path(), []);
        let big = seg(LIMIT as usize, 1);
        let first = f.append(&[&big, &seg(10, 2)]).unwrap();
        let second = f.append(&[&seg(10, 3)]).unwrap();
        f.add_live(&first);
        f.add_live(&second);
        // Files: 1 = [big], 2 = [small, small] (current).
        assert_eq!(files(dir.path()), vec![1, 2]);
        let pinned = f.pin(1);
        assert_eq!(f.release(&first[..1]).unwrap(), 1);
        assert_eq!(files(dir.path()), vec![2]);
        // A reader that pinned the file still reads it.
        assert_eq!(f.read(first[0], &pinned).unwrap().len(), big.len());
        assert!(f.read(first[0], &None).is_err());
        // The current file stays even with nothing live in it.
        assert_eq!(f.release(&[first[1], second[0]]).unwrap(), 0);
        assert_eq!(files(dir.path()), vec![2]);
        let next = f.append(&[&seg(4, 4)]).unwrap();
        assert_eq!(next[0].file, 2);
        // ...and goes at the next open, unreferenced.
        drop(f);
        open(dir.path(), []);
        assert!(files(dir.path()).is_empty());
    }

    #[test]
    fn an_append_after_one_that_failed_in_a_new_file_fsyncs_the_directory() {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = tempfile::tempdir().unwrap();
        let f = open(dir.path(), []);
        // The first append creates file 1, then fails writing.
        f.fail_next_write.store(true, SeqCst);
        assert!(f.append(&[&seg(10, 1)]).is_err());
        assert_eq!(files(dir.path()), vec![1]);
        assert_eq!(f.dir_syncs.load(SeqCst), 0);
        // The next one goes to the same file and makes its entry durable.
        let l = f.append(&[&seg(10, 2)]).unwrap();
        assert_eq!(l[0].file, 1);
        assert_eq!(f.dir_syncs.load(SeqCst), 1);
        assert_eq!(f.read(l[0], &None).unwrap(), seg(10, 2));
        // Then no more directory fsyncs until a file is created.
        f.append(&[&seg(10, 3)]).unwrap();
        assert_eq!(f.dir_syncs.load(SeqCst), 1);
        f.append(&[&seg(LIMIT as usize, 4), &seg(1, 5)]).unwrap();
        assert_eq!(f.dir_syncs.load(SeqCst), 2);
    }

    #[test]
    fn cached_read_handles_stay_bounded_and_reads_still_work() {
        let dir = tempfile::tempdir().unwrap();
        let f = open(dir.path(), []);
        let n = crate::handle_cache::MAX_HANDLES + 20;
        // One file per segment.
        let locs: Vec<Location> = (0..n)
            .map(|i| f.append(&[&seg(LIMIT as usize, i as u8)]).unwrap()[0])
            .collect();
        f.add_live(&locs);
        assert_eq!(files(dir.path()).len(), n);
        for _ in 0..2 {
            for (i, l) in locs.iter().enumerate() {
                assert_eq!(f.read(*l, &None).unwrap(), seg(LIMIT as usize, i as u8));
                assert!(f.handles_cached() <= crate::handle_cache::MAX_HANDLES);
            }
        }
        // A pinned file stays readable after its handle left the cache.
        let pinned = f.pin(locs[0].file);
        for l in &locs[1..] {
            f.read(*l, &None).unwrap();
        }
        assert_eq!(
            f.read(locs[0], &pinned).unwrap().len(),
            locs[0].len as usize
        );
    }
}
