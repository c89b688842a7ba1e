//! The only module that calls sled: typed tree definitions, key encodings,
//! atomic multi-tree commits.
//!
//! **Architecture Invariant:** nothing outside this module names a sled type
//! (except the [`Bytes`] alias, a cheaply clonable byte buffer). A second
//! backend is a change to this file only.
//!
//! Integers in keys are big-endian so that byte order is numeric order;
//! signed timestamps are stored with the sign bit flipped ([`ts_key`]) so
//! that negative times sort before positive ones.

use std::ops::RangeBounds;
use std::path::Path;

use crate::api::Space;
use crate::error::{Result, StorageError};

/// A stored value or key. Derefs to `[u8]`.
pub(crate) type Bytes = sled::IVec;

/// Every tree of the store. See docs/format.md for each one's keys and values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum T {
    /// Format version, rollup dims, watermarks, counters.
    Meta,
    /// u64 BE sequence → framed WAL batch. Since format 4 it lives in its
    /// own sled database, `<dir>/wal/` (see [`Db`]).
    Wal,
    /// segment key (max_ts, id) → framed segment.
    Segments,
    /// segment key → segment summary (min/max ts, rows).
    SegmentMeta,
    /// Persistent string dictionary of the segment codec.
    Dict,
    RollupMinute,
    RollupHour,
    RollupDay,
    /// Format 3: week buckets (Monday 00:00 UTC, 7 days).
    RollupWeek,
    /// Format version 1 request index: request_id → (timestamp, group).
    /// Read, never written, since version 2.
    Requests,
    /// (ts, seq, idx) → framed quality row.
    Quality,
    /// (ts, seq, idx) → framed feedback row.
    Feedback,
    /// trace_id 0x00 start_ns span_id → framed span JSON.
    Traces,
    /// start_ns trace_id 0x00 span_id → empty.
    TraceTime,
    /// Request index runs: run id u64 BE ‖ chunk no u32 BE → framed chunk.
    RequestRuns,
    /// Request index run directory: run id u64 BE → framed run summary.
    RequestRunDir,
    Kv(Space),
}

const FIXED: [T; 16] = [
    T::Meta,
    T::Wal,
    T::Segments,
    T::SegmentMeta,
    T::Dict,
    T::RollupMinute,
    T::RollupHour,
    T::RollupDay,
    T::RollupWeek,
    T::Requests,
    T::Quality,
    T::Feedback,
    T::Traces,
    T::TraceTime,
    T::RequestRuns,
    T::RequestRunDir,
];

const SPACES: [Space; 7] = [
    Space::Rules,
    Space::AlertState,
    Space::AlertHistory,
    Space::Outbox,
    Space::Silences,
    Space::Baselines,
    Space::Settings,
];

impl T {
    /// The sled tree name; part of the on-disk format.
    pub(crate) fn name(self) -> &'static str {
        match self {
            T::Meta => "meta",
            T::Wal => "wal",
            T::Segments => "segments",
            T::SegmentMeta => "segment_meta",
            T::Dict => "dict",
            T::RollupMinute => "rollup_minute",
            T::RollupHour => "rollup_hour",
            T::RollupDay => "rollup_day",
            T::RollupWeek => "rollup_week",
            T::Requests => "requests",
            T::Quality => "quality",
            T::Feedback => "feedback",
            T::Traces => "traces",
            T::TraceTime => "trace_time",
            T::RequestRuns => "request_runs",
            T::RequestRunDir => "request_run_dir",
            T::Kv(s) => match s {
                Space::Rules => "kv_rules",
                Space::AlertState => "kv_alert_state",
                Space::AlertHistory => "kv_alert_history",
                Space::Outbox => "kv_outbox",
                Space::Silences => "kv_silences",
                Space::Baselines => "kv_baselines",
                Space::Settings => "kv_settings",
            },
        }
    }

    fn index(self) -> usize {
        match self {
            T::Kv(s) => FIXED.len() + SPACES.iter().position(|x| *x == s).unwrap_or(0),
            t => FIXED.iter().position(|x| *x == t).unwrap_or(0),
        }
    }

    /// Every tree, fixed ones first.
    pub(crate) fn all() -> Vec<T> {
        FIXED
            .iter()
            .copied()
            .chain(SPACES.iter().map(|s| T::Kv(*s)))
            .collect()
    }

    /// Looks a tree up by its on-disk name (used by migrations).
    pub(crate) fn by_name(name: &str) -> Option<T> {
        T::all().into_iter().find(|t| t.name() == name)
    }
}

/// Puts and deletes across trees, applied atomically by [`Db::commit`].
#[derive(Debug, Default)]
pub(crate) struct Ops {
    ops: Vec<(T, Vec<u8>, Option<Vec<u8>>)>,
}

impl Ops {
    pub(crate) fn put(&mut self, t: T, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((t, key.into(), Some(value.into())));
    }
    pub(crate) fn del(&mut self, t: T, key: impl Into<Vec<u8>>) {
        self.ops.push((t, key.into(), None));
    }
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub(crate) fn iter(&self) -> impl Iterator<Item = (T, &[u8], Option<&[u8]>)> {
        self.ops
            .iter()
            .map(|(t, k, v)| (*t, k.as_slice(), v.as_deref()))
    }
}

/// Options the store passes to the database.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DbOptions {
    /// sled page cache, bytes.
    pub(crate) cache_bytes: u64,
    /// Background fsync period, ms (`None`: only explicit flushes).
    pub(crate) flush_every_ms: Option<u64>,
}

/// sled log segment size of the main database of new stores (existing
/// ones keep theirs). Items bigger than a quarter of it are stored as
/// separate blob files, and sled 0.34 leaks the blob file of a node that
/// was a single blob when it is freed or replaced (see docs/format.md,
/// "sled"). The WAL, whose leaves are the big ones, has its own database
/// ([`WAL_SEGMENT_SIZE`]); request-index chunks and their fences are in
/// run files, so here the largest leaves are rollups' (≤ 16 values of
/// ~2 KB) and traces' (16 spans; a quarter segment, 256 KiB, holds 16
/// spans of 16 KiB). Smaller segments are reclaimed sooner, but below
/// 1 MiB sled's log grew again: 10M events at steady ingest left a main
/// database of 92.8–93.9 MB with 1 MiB, 99.1–101.2 with 2 MiB and
/// 104.3–106.4 with 512 KiB (docs/benchmarks.md, "Run indexes in files,
/// sled segment size (s8-fence)"). Stores created before kept the size
/// they were created with: 2 MiB (formats 4–8), 8 MiB or 512 KiB.
const NEW_SEGMENT_SIZE: usize = 1 << 20;

/// The segment size an existing sled directory was created with (sled
/// refuses to open it with another), from its `conf` file.
fn existing_segment_size(dir: &Path) -> Option<usize> {
    let conf = std::fs::read(dir.join("conf")).ok()?;
    let text = String::from_utf8_lossy(&conf);
    text.lines()
        .find_map(|l| l.strip_prefix("segment_size: "))
        .and_then(|v| v.trim().parse().ok())
}

/// How long [`open_waiting_for_lock`] waits for another holder of the
/// directory's lock to let go.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens sled, retrying while its directory lock is held.
///
/// sled 0.34's `Db::drop` returns before its flusher thread has released
/// the directory's `flock` (spacejam/sled#1234, #1289), so a store closed
/// and reopened at once in the same process can briefly see its own lock.
/// The wait is bounded: a directory really held by another live process
/// still fails, after [`LOCK_WAIT`], with sled's "could not acquire lock".
fn open_waiting_for_lock(config: &sled::Config) -> sled::Result<sled::Db> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        match config.open() {
            // sled wraps the `flock` error as `Other` with this message.
            Err(sled::Error::Io(e))
                if e.to_string().starts_with("could not acquire lock")
                    && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// sled log segment size of the WAL database (`<dir>/wal/`). Its leaves
/// (up to 16 WAL batches of ~56 KB) stay below a quarter of it, so they are
/// written in the log, never as blob files (which sled 0.34 neither fsyncs
/// nor always deletes).
const WAL_SEGMENT_SIZE: usize = 8 << 20;

/// The WAL database's page cache: it is read only when the store opens.
const WAL_CACHE_BYTES: u64 = 64 << 20;

/// An empty WAL database bigger than this is replaced at open. sled
/// 0.34.7 allocates a whole log segment (8 MiB, not sparse) whenever it
/// reopens an existing database, even an empty one, so every open of an
/// empty WAL database would leave 8 MiB behind; a fresh database is
/// ~200 bytes until something is written. Half a segment tells the two
/// apart (a fresh database that was written to is not empty, or is
/// replaced at the next open).
const WAL_RESET_BYTES: u64 = WAL_SEGMENT_SIZE as u64 / 2;

/// Removes a directory that holds nothing live (an empty WAL database set
/// aside); a failure is logged and retried at the next open.
fn discard_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(path = %dir.display(), error = %e, "could not remove an empty WAL database; retried at the next open");
    }
}

/// The store's sled databases.
///
/// Since format 4 the WAL tree is its own sled database in `<dir>/wal/`:
/// sled 0.34 reuses a log segment only once (nearly) nothing in it is live,
/// so WAL batches interleaved with long-lived segments, rollups and index
/// chunks in one log kept their space after a seal deleted them. In a log
/// of its own, a seal empties whole segments. The two databases share no
/// transaction; `meta/wal_floor` (written in the seal's transaction)
/// is what makes the pair consistent: WAL entries below it are sealed and
/// never replayed (docs/format.md, "wal").
#[derive(Debug)]
pub(crate) struct Db {
    db: sled::Db,
    /// Main-database trees by [`T::index`]; `trees[T::Wal.index()]` is the
    /// format ≤ 3 WAL tree, drained by [`Db::drain_legacy_wal`].
    trees: Vec<sled::Tree>,
    wal_db: sled::Db,
    wal: sled::Tree,
}

/// fsyncs the log file of the sled database in `dir` (sled 0.34 names it
/// `db`). What sled recovers at open after a kill may still be only in the
/// page cache, and `sled::Db::flush` has nothing new to write, so it does
/// not fsync it: without this, a power loss after the open could bring
/// back records naming segment or run files the open deleted as orphans
/// (or un-empty a WAL the open replaced). Once per open.
fn sync_recovered(dir: &Path) -> Result<()> {
    let log = dir.join("db");
    let res = match std::fs::File::open(&log) {
        Ok(f) => f.sync_all(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    res.map_err(|e| StorageError::Open {
        path: log.display().to_string(),
        source: Box::new(e),
    })
}

fn err(op: &'static str) -> impl Fn(sled::Error) -> StorageError {
    move |e| StorageError::Db {
        op,
        message: e.to_string(),
    }
}

impl Db {
    pub(crate) fn open(dir: &Path, opts: DbOptions) -> Result<Db> {
        let open = |dir: &Path, default_segment: usize, cache_bytes: u64| {
            let config = sled::Config::new()
                .path(dir)
                .segment_size(existing_segment_size(dir).unwrap_or(default_segment))
                .cache_capacity(cache_bytes)
                .flush_every_ms(opts.flush_every_ms);
            open_waiting_for_lock(&config).map_err(|e| StorageError::Open {
                path: dir.display().to_string(),
                source: Box::new(e),
            })
        };
        let db = open(dir, NEW_SEGMENT_SIZE, opts.cache_bytes)?;
        sync_recovered(dir)?;
        let mut trees = Vec::new();
        for t in T::all() {
            trees.push(db.open_tree(t.name()).map_err(err("open tree"))?);
        }
        let wal_dir = dir.join("wal");
        let old_wal_dir = dir.join("wal.old");
        if old_wal_dir.exists() {
            discard_dir(&old_wal_dir);
        }
        let mut wal_db = open(&wal_dir, WAL_SEGMENT_SIZE, WAL_CACHE_BYTES)?;
        sync_recovered(&wal_dir)?;
        let mut wal = wal_db.open_tree(T::Wal.name()).map_err(err("open tree"))?;
        // sled never shrinks a log below its high-water mark while idle:
        // an empty WAL database is replaced by a fresh one. What sled
        // recovered at open is on disk, so "empty" here is durable; the
        // old directory is renamed first, so a crash leaves either it
        // (empty) or no WAL directory, never a half-removed one in use.
        let size = wal_db.size_on_disk().map_err(err("size_on_disk"))?;
        if wal.is_empty() && size > WAL_RESET_BYTES {
            drop(wal);
            drop(wal_db);
            std::fs::rename(&wal_dir, &old_wal_dir).map_err(|e| StorageError::Open {
                path: wal_dir.display().to_string(),
                source: Box::new(e),
            })?;
            discard_dir(&old_wal_dir);
            wal_db = open(&wal_dir, WAL_SEGMENT_SIZE, WAL_CACHE_BYTES)?;
            wal = wal_db.open_tree(T::Wal.name()).map_err(err("open tree"))?;
            tracing::info!(
                bytes = size,
                "replaced the empty WAL database by a fresh one"
            );
        }
        Ok(Db {
            db,
            trees,
            wal_db,
            wal,
        })
    }

    fn tree(&self, t: T) -> &sled::Tree {
        match t {
            T::Wal => &self.wal,
            t => &self.trees[t.index()],
        }
    }

    /// Moves the entries a format ≤ 3 store kept in the main database's
    /// `wal` tree into the WAL database; returns how many moved.
    ///
    /// Crash-safe by order: the copies are made durable before the
    /// originals are removed, and copying again writes the same keys and
    /// values, so an interrupted drain is finished by the next open.
    pub(crate) fn drain_legacy_wal(&self) -> Result<u64> {
        let legacy = &self.trees[T::Wal.index()];
        let mut keys = Vec::new();
        let mut batch = sled::Batch::default();
        let mut pending = 0usize;
        for kv in legacy.iter() {
            let (k, v) = kv.map_err(err("range"))?;
            pending += v.len();
            batch.insert(k.clone(), v);
            keys.push(k);
            if pending >= 64 << 20 {
                self.wal
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(err("insert batch"))?;
                pending = 0;
            }
        }
        if keys.is_empty() {
            return Ok(0);
        }
        self.wal.apply_batch(batch).map_err(err("insert batch"))?;
        self.wal_db.flush().map_err(err("flush"))?;
        let mut removal = sled::Batch::default();
        for k in &keys {
            removal.remove(k.clone());
        }
        legacy.apply_batch(removal).map_err(err("remove batch"))?;
        self.db.flush().map_err(err("flush"))?;
        Ok(keys.len() as u64)
    }

    pub(crate) fn get(&self, t: T, key: &[u8]) -> Result<Option<Bytes>> {
        self.tree(t).get(key).map_err(err("get"))
    }

    pub(crate) fn insert(&self, t: T, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree(t).insert(key, value).map_err(err("insert"))?;
        Ok(())
    }

    /// Inserts many values into one tree atomically (not durably).
    pub(crate) fn insert_many(&self, t: T, kvs: &[(Vec<u8>, &[u8])]) -> Result<()> {
        let mut b = sled::Batch::default();
        for (k, v) in kvs {
            b.insert(k.as_slice(), *v);
        }
        self.tree(t).apply_batch(b).map_err(err("insert batch"))
    }

    /// Removes many keys from one tree atomically (not durably).
    pub(crate) fn remove_many(&self, t: T, keys: &[Vec<u8>]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut b = sled::Batch::default();
        for k in keys {
            b.remove(k.as_slice());
        }
        self.tree(t).apply_batch(b).map_err(err("remove batch"))
    }

    /// Key-ordered entries of `t` within `range`.
    pub(crate) fn range<R: RangeBounds<Vec<u8>>>(
        &self,
        t: T,
        range: R,
    ) -> impl DoubleEndedIterator<Item = Result<(Bytes, Bytes)>> + '_ {
        self.tree(t).range(range).map(|r| r.map_err(err("range")))
    }

    pub(crate) fn scan_prefix(
        &self,
        t: T,
        prefix: &[u8],
    ) -> impl DoubleEndedIterator<Item = Result<(Bytes, Bytes)>> + '_ {
        self.tree(t)
            .scan_prefix(prefix)
            .map(|r| r.map_err(err("scan")))
    }

    /// Applies `ops` in one multi-tree transaction: all or nothing, also
    /// across a crash. Not durable until [`Db::flush`]. The WAL is in
    /// another database and cannot take part: ops on [`T::Wal`] are an error.
    pub(crate) fn commit(&self, ops: &Ops) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        if ops.ops.iter().any(|(t, _, _)| *t == T::Wal) {
            return Err(StorageError::Db {
                op: "commit",
                message: "the WAL is its own database and takes no part in commits".into(),
            });
        }
        let mut touched: Vec<T> = Vec::new();
        for (t, _, _) in &ops.ops {
            if !touched.contains(t) {
                touched.push(*t);
            }
        }
        let mut batches: Vec<sled::Batch> =
            touched.iter().map(|_| sled::Batch::default()).collect();
        for (t, k, v) in &ops.ops {
            let i = touched.iter().position(|x| x == t).unwrap_or(0);
            match v {
                Some(v) => batches[i].insert(k.as_slice(), v.as_slice()),
                None => batches[i].remove(k.as_slice()),
            }
        }
        let trees: Vec<&sled::Tree> = touched.iter().map(|t| self.tree(*t)).collect();
        use sled::Transactional;
        let res: sled::transaction::TransactionResult<(), ()> =
            trees.as_slice().transaction(|view| {
                for (tt, b) in view.iter().zip(batches.iter()) {
                    tt.apply_batch(b)?;
                }
                Ok(())
            });
        res.map_err(|e| StorageError::Db {
            op: "commit",
            message: format!("{e:?}"),
        })
    }

    /// fsyncs everything written so far (main database, then the WAL).
    pub(crate) fn flush(&self) -> Result<()> {
        self.db.flush().map_err(err("flush"))?;
        self.wal_db.flush().map_err(err("flush"))?;
        Ok(())
    }

    /// fsyncs the WAL database only (group commit of batches without spans).
    pub(crate) fn flush_wal(&self) -> Result<()> {
        self.wal_db.flush().map_err(err("flush"))?;
        Ok(())
    }

    pub(crate) fn size_on_disk(&self) -> Result<u64> {
        let main = self.db.size_on_disk().map_err(err("size_on_disk"))?;
        let wal = self.wal_db.size_on_disk().map_err(err("size_on_disk"))?;
        Ok(main + wal)
    }
}

// ---- key encodings ----

/// A signed timestamp as 8 bytes that sort numerically (sign bit flipped, BE).
pub(crate) fn ts_key(ts: i64) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn ts_from_key(b: &[u8]) -> Option<i64> {
    let a: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(a) ^ (1 << 63)) as i64)
}

pub(crate) fn u64_from(b: &[u8]) -> Option<u64> {
    let a: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(a))
}

/// Appends `s` as u16 BE length + bytes.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    let n = s.len().min(u16::MAX as usize);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&s.as_bytes()[..n]);
}

/// Reads a [`put_str`] string at `*pos`, advancing it.
pub(crate) fn get_str(b: &[u8], pos: &mut usize) -> Option<String> {
    let end = pos.checked_add(2)?;
    let n = u16::from_be_bytes(b.get(*pos..end)?.try_into().ok()?) as usize;
    let s_end = end.checked_add(n)?;
    let s = std::str::from_utf8(b.get(end..s_end)?).ok()?.to_string();
    *pos = s_end;
    Some(s)
}

// ---- migrations bridge ----

/// Runs migration steps against the real trees; each step's writes are one commit.
#[derive(Debug)]
pub(crate) struct MigrationTx<'a> {
    pub(crate) db: &'a Db,
    pub(crate) ops: Ops,
}

impl sextant_migrations::KvStore for MigrationTx<'_> {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let t = T::by_name(tree).ok_or_else(|| format!("unknown tree {tree}"))?;
        self.db
            .get(t, key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| e.to_string())
    }
    fn put(&mut self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), String> {
        let t = T::by_name(tree).ok_or_else(|| format!("unknown tree {tree}"))?;
        self.ops.put(t, key, value);
        Ok(())
    }
    fn commit(&mut self) -> Result<(), String> {
        let ops = std::mem::take(&mut self.ops);
        self.db.commit(&ops).map_err(|e| e.to_string())?;
        self.db.flush().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_keys_sort_numerically_across_zero() {
        let ts = [i64::MIN, -5, -1, 0, 1, 7, i64::MAX];
        for w in ts.windows(2) {
            assert!(ts_key(w[0]) < ts_key(w[1]));
        }
        for t in ts {
            assert_eq!(ts_from_key(&ts_key(t)), Some(t));
        }
    }

    fn options() -> DbOptions {
        DbOptions {
            cache_bytes: 1 << 20,
            flush_every_ms: None,
        }
    }

    #[test]
    fn a_directory_held_open_is_refused_after_the_bounded_wait() {
        let dir = tempfile::tempdir().unwrap();
        let held = Db::open(dir.path(), options()).unwrap();
        let started = std::time::Instant::now();
        let err = Db::open(dir.path(), options()).unwrap_err().to_string();
        assert!(err.contains("could not acquire lock"), "{err}");
        assert!(started.elapsed() >= LOCK_WAIT, "gave up before the wait");
        drop(held);
    }

    #[test]
    fn close_then_reopen_in_the_same_process_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..20u8 {
            let db = Db::open(dir.path(), options()).unwrap();
            db.insert(T::Meta, b"k", &[i]).unwrap();
            db.flush().unwrap();
            drop(db);
        }
        let db = Db::open(dir.path(), options()).unwrap();
        assert_eq!(db.get(T::Meta, b"k").unwrap().as_deref(), Some(&[19u8][..]));
    }

    #[test]
    fn a_legacy_wal_tree_is_moved_into_the_wal_database_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            // A format 3 store: WAL entries in the main database.
            let db = sled::open(dir.path()).unwrap();
            let wal = db.open_tree("wal").unwrap();
            for seq in 1..=3u64 {
                wal.insert(seq.to_be_bytes(), vec![seq as u8; 1000])
                    .unwrap();
            }
            db.flush().unwrap();
        }
        let all = |db: &Db| -> Vec<(Vec<u8>, Vec<u8>)> {
            db.range(T::Wal, ..)
                .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
                .collect()
        };
        let db = Db::open(dir.path(), options()).unwrap();
        assert!(all(&db).is_empty(), "not moved yet");
        assert_eq!(db.drain_legacy_wal().unwrap(), 3);
        let moved = all(&db);
        assert_eq!(moved.len(), 3);
        assert_eq!(moved[2], (3u64.to_be_bytes().to_vec(), vec![3u8; 1000]));
        assert!(db.trees[T::Wal.index()].is_empty());
        assert_eq!(db.drain_legacy_wal().unwrap(), 0);
        // A move cut short after the copies: the next one rewrites the
        // same entries, and nothing is doubled.
        db.trees[T::Wal.index()]
            .insert(2u64.to_be_bytes(), vec![2u8; 1000])
            .unwrap();
        db.flush().unwrap();
        drop(db);
        let db = Db::open(dir.path(), options()).unwrap();
        assert_eq!(db.drain_legacy_wal().unwrap(), 1);
        assert_eq!(all(&db), moved);
        assert!(dir.path().join("wal").join("db").exists());
    }

    #[test]
    fn an_empty_wal_database_is_replaced_at_open_and_a_non_empty_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let wal_size = || {
            let mut n = 0;
            for e in std::fs::read_dir(dir.path().join("wal")).unwrap() {
                let m = e.unwrap().metadata().unwrap();
                n += if m.is_file() { m.len() } else { 0 };
            }
            n
        };
        let keys: Vec<Vec<u8>> = (1..=600u64).map(|s| s.to_be_bytes().to_vec()).collect();
        {
            let db = Db::open(dir.path(), options()).unwrap();
            let value = vec![7u8; 56_000];
            for chunk in keys.chunks(100) {
                let kvs: Vec<(Vec<u8>, &[u8])> =
                    chunk.iter().map(|k| (k.clone(), &value[..])).collect();
                db.insert_many(T::Wal, &kvs).unwrap();
                db.flush().unwrap();
            }
            db.insert(T::Meta, b"k", b"v").unwrap();
            db.remove_many(T::Wal, &keys[..599]).unwrap();
            db.flush().unwrap();
        }
        let big = wal_size();
        assert!(big > WAL_RESET_BYTES, "{big}");
        // One entry left: kept as it is.
        let db = Db::open(dir.path(), options()).unwrap();
        assert_eq!(db.range(T::Wal, ..).count(), 1);
        db.remove_many(T::Wal, &keys[599..]).unwrap();
        db.flush().unwrap();
        drop(db);
        assert!(wal_size() >= big / 2);
        // Empty: replaced by a fresh database; the main one is untouched.
        let db = Db::open(dir.path(), options()).unwrap();
        assert_eq!(db.range(T::Wal, ..).count(), 0);
        assert_eq!(db.get(T::Meta, b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert!(wal_size() < WAL_RESET_BYTES, "{} bytes", wal_size());
        assert!(!dir.path().join("wal.old").exists());
        drop(db);
        // Reopening an empty database makes sled allocate a whole log
        // segment; it is replaced again, so an idle store's WAL stays
        // the size of a fresh database however often it is opened.
        for _ in 0..3 {
            let db = Db::open(dir.path(), options()).unwrap();
            assert_eq!(db.range(T::Wal, ..).count(), 0);
            drop(db);
            assert!(wal_size() < 64 << 10, "{} bytes", wal_size());
        }
        let db = Db::open(dir.path(), options()).unwrap();
        db.insert(T::Wal, &1u64.to_be_bytes(), b"x").unwrap();
        db.flush().unwrap();
        drop(db);
        let db = Db::open(dir.path(), options()).unwrap();
        assert_eq!(db.range(T::Wal, ..).count(), 1);
    }

    #[test]
    fn the_wal_takes_no_part_in_multi_tree_commits() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), options()).unwrap();
        let mut ops = Ops::default();
        ops.put(T::Meta, b"k".to_vec(), b"v".to_vec());
        ops.del(T::Wal, 1u64.to_be_bytes().to_vec());
        assert!(db.commit(&ops).is_err());
        assert_eq!(db.get(T::Meta, b"k").unwrap(), None);
    }

    #[test]
    fn every_tree_has_a_distinct_name_and_index() {
        let all = T::all();
        for (i, t) in all.iter().enumerate() {
            assert_eq!(t.index(), i);
            assert_eq!(T::by_name(t.name()), Some(*t));
        }
    }
}
