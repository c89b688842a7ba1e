//! The store: WAL, head, sealing, rollups, retention, traces, indexes.
//!
//! **Invariant (group commit):** a batch is acknowledged only after its WAL
//! value is inserted, flushed (in `Durability::Batch`) and applied to the
//! head, by the single writer thread, in sequence order.
//!
//! **Invariant (no double counting):** every acknowledged event is in exactly
//! one of: the head, the head being sealed (`State::sealing`), or sealed
//! trees. The swap from "being sealed" to "sealed" happens inside one sled
//! transaction committed while holding the state write lock, and readers
//! take their view under the state read lock: rollups are read under it;
//! raw call scans take the heads' call chunks (immutable, shared) and the
//! list of segments under it and read them after releasing it (segments are
//! immutable and new ones are not in the list), so a long scan never holds
//! the writer out.
//!
//! Locks are always taken in the order `maint` → `state`.

#[cfg(test)]
mod fault_tests;
mod head;
mod hot;
mod import;
mod maint;
mod read;
mod records;
mod requests;
mod scan;
mod sealed;
mod segment;

pub use scan::PartSink;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};
use sextant_model::{Batch, Dim, Limits, Span, Tier, TimeRange};

use crate::api::*;
use crate::config::{Durability, StoreConfig};
use crate::db::{ts_from_key, u64_from, Bytes, Db, DbOptions, MigrationTx, Ops, T};
use crate::error::{Result, StorageError};
use crate::rollup::{Rollup, RollupView};
use crate::run_files::RunFiles;
use crate::seg_files::SegFiles;
use head::{Head, Prepared};
use records::{decode_wal, encode_span, encode_wal, span_key, span_time_key};
use segment::SegmentCodec;

/// Meta keys (tree `meta`). Watermarks are `ts_key`-encoded i64.
pub(crate) mod meta_keys {
    pub(crate) const ROLLUP_DIMS: &[u8] = b"rollup_dims";
    pub(crate) const NEXT_SEGMENT_ID: &[u8] = b"next_segment_id";
    pub(crate) const WAL_FLOOR: &[u8] = b"wal_floor";
    pub(crate) const RAW_FROM: &[u8] = b"wm.raw_from";
    pub(crate) const MINUTE_FROM: &[u8] = b"wm.minute_from";
    pub(crate) const HOUR_FROM: &[u8] = b"wm.hour_from";
    pub(crate) const HOUR_UNTIL: &[u8] = b"wm.hour_until";
    pub(crate) const DAY_FROM: &[u8] = b"wm.day_from";
    pub(crate) const DAY_UNTIL: &[u8] = b"wm.day_until";
    pub(crate) const WEEK_FROM: &[u8] = b"wm.week_from";
    pub(crate) const WEEK_UNTIL: &[u8] = b"wm.week_until";
    pub(crate) const TRACES_FROM: &[u8] = b"wm.traces_from";
}

/// Tier watermarks, Unix ms. `*_from` only grow (retention); `*_until` only
/// grow (downsampling). `i64::MIN` = nothing removed / nothing rolled yet.
///
/// **Invariant:** `day_from <= week_until` — day retention never deletes a
/// day whose week is not rolled up yet, so every week is rolled from all
/// of its days.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watermarks {
    pub(crate) raw_from: i64,
    pub(crate) minute_from: i64,
    pub(crate) hour_from: i64,
    pub(crate) hour_until: i64,
    pub(crate) day_from: i64,
    pub(crate) day_until: i64,
    pub(crate) week_from: i64,
    pub(crate) week_until: i64,
    pub(crate) traces_from: i64,
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) head: Head,
    /// The head a seal is writing out; still read until its commit.
    pub(crate) sealing: Option<Arc<Head>>,
    /// Segment key → summary and location, for every stored segment.
    pub(crate) segments: BTreeMap<Vec<u8>, sealed::Sealed>,
    pub(crate) wm: Watermarks,
    /// The sealed request index's directory.
    pub(crate) requests: requests::RequestIndex,
    /// The in-memory mirror of the newest minute rollups (`store/hot.rs`).
    pub(crate) hot: hot::HotMinutes,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) appended_events: AtomicU64,
    pub(crate) sealed_events: AtomicU64,
    pub(crate) wal_batches: AtomicU64,
    pub(crate) wal_bytes: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) db: Db,
    /// Sealed segment bytes (format 5); sled holds their locations.
    pub(crate) segs: SegFiles,
    pub(crate) config: StoreConfig,
    pub(crate) dims: Vec<Dim>,
    pub(crate) state: RwLock<State>,
    /// Serialises seal, downsample and retention.
    pub(crate) maint: Mutex<MaintState>,
    pub(crate) codec: RwLock<SegmentCodec>,
    pub(crate) counters: Counters,
}

#[derive(Debug)]
pub(crate) struct MaintState {
    pub(crate) next_segment_id: u64,
}

enum Msg {
    Append {
        wal: Vec<u8>,
        prepared: Prepared,
        ack: Sender<Result<()>>,
    },
    Sync(Sender<Result<()>>),
}

#[derive(Debug)]
struct Handle {
    core: Arc<Core>,
    tx: Mutex<Option<Sender<Msg>>>,
    stop_maint: Mutex<Option<Sender<()>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Append { prepared, .. } => write!(f, "Append({} events)", prepared.len()),
            Msg::Sync(_) => f.write_str("Sync"),
        }
    }
}

/// A handle to an open store. Cheap to clone; every clone shares one store.
#[derive(Debug, Clone)]
pub struct Store {
    h: Arc<Handle>,
}

fn read_i64(db: &Db, key: &[u8], default: i64) -> Result<i64> {
    Ok(db
        .get(T::Meta, key)?
        .and_then(|v| ts_from_key(&v))
        .unwrap_or(default))
}

fn open_err(dir: &Path, msg: String) -> StorageError {
    StorageError::Open {
        path: dir.display().to_string(),
        source: msg.into(),
    }
}

impl Store {
    /// Opens (creating if absent) the store in `dir`, running migrations and
    /// replaying the WAL into the head.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::Open {
            path: dir.display().to_string(),
            source: Box::new(e),
        })?;
        let flush_every_ms = match config.durability {
            Durability::Interval { interval_ms } => Some(interval_ms.max(1)),
            _ => None,
        };
        let db = Db::open(
            dir,
            DbOptions {
                cache_bytes: 256 << 20,
                flush_every_ms,
            },
        )?;
        migrate(&db, dir)?;
        let moved = db.drain_legacy_wal()?;
        if moved > 0 {
            tracing::info!(
                batches = moved,
                "moved the WAL into its own database (format 4)"
            );
        }

        let dims = match db.get(T::Meta, meta_keys::ROLLUP_DIMS)? {
            Some(v) => {
                let stored: Vec<Dim> = serde_json::from_slice(&v)
                    .map_err(|e| open_err(dir, format!("unreadable rollup dims: {e}")))?;
                if stored != config.rollup_dims {
                    return Err(open_err(
                        dir,
                        format!(
                            "the store groups rollups by {:?}; the configuration asks for {:?} (rollup dims are fixed at creation)",
                            stored, config.rollup_dims
                        ),
                    ));
                }
                stored
            }
            None => {
                let v = serde_json::to_vec(&config.rollup_dims).unwrap_or_default();
                db.insert(T::Meta, meta_keys::ROLLUP_DIMS, &v)?;
                db.flush()?;
                config.rollup_dims.clone()
            }
        };

        let wm = Watermarks {
            raw_from: read_i64(&db, meta_keys::RAW_FROM, i64::MIN)?,
            minute_from: read_i64(&db, meta_keys::MINUTE_FROM, i64::MIN)?,
            hour_from: read_i64(&db, meta_keys::HOUR_FROM, i64::MIN)?,
            hour_until: read_i64(&db, meta_keys::HOUR_UNTIL, i64::MIN)?,
            day_from: read_i64(&db, meta_keys::DAY_FROM, i64::MIN)?,
            day_until: read_i64(&db, meta_keys::DAY_UNTIL, i64::MIN)?,
            week_from: read_i64(&db, meta_keys::WEEK_FROM, i64::MIN)?,
            week_until: read_i64(&db, meta_keys::WEEK_UNTIL, i64::MIN)?,
            traces_from: read_i64(&db, meta_keys::TRACES_FROM, i64::MIN)?,
        };
        let next_segment_id = db
            .get(T::Meta, meta_keys::NEXT_SEGMENT_ID)?
            .and_then(|v| u64_from(&v))
            .unwrap_or(1);
        let wal_floor = db
            .get(T::Meta, meta_keys::WAL_FLOOR)?
            .and_then(|v| u64_from(&v))
            .unwrap_or(1);

        let (segs, locs) = sealed::open_files(&db, dir)?;
        let segments = sealed::load(&db, &locs)?;
        drop(locs);
        let mut dict = Vec::new();
        for kv in db.range(T::Dict, ..) {
            let (k, v) = kv?;
            dict.push((k.to_vec(), v.to_vec()));
        }
        let codec = SegmentCodec::load(dict.into_iter()).map_err(|e| StorageError::Decode {
            tree: "dict",
            key: String::new(),
            source: e,
        })?;
        let run_files = RunFiles::open(dir).map_err(|e| StorageError::Open {
            path: dir.display().to_string(),
            source: Box::new(e),
        })?;
        let requests = requests::RequestIndex::open(&db, run_files)?;
        let hot = hot::HotMinutes::load(
            &db,
            config.hot_minutes_window_ms,
            usize::try_from(config.hot_minutes_max_bytes).unwrap_or(usize::MAX),
        )?;

        let core = Arc::new(Core {
            db,
            segs,
            dims,
            state: RwLock::new(State {
                head: Head::default(),
                sealing: None,
                segments,
                wm,
                requests,
                hot,
            }),
            maint: Mutex::new(MaintState { next_segment_id }),
            codec: RwLock::new(codec),
            counters: Counters::default(),
            config,
        });
        let next_seq = core.replay(wal_floor)?.max(wal_floor);

        let (tx, rx) = crossbeam_channel::unbounded();
        // Automatic seals run on their own thread so appends keep flowing
        // while a head is encoded and written; the writer only signals. The
        // sealer stops when the writer (the only sender) exits.
        let (seal_tx, seal_rx) = crossbeam_channel::bounded::<()>(1);
        let mut threads = Vec::new();
        let c = core.clone();
        threads.push(
            std::thread::Builder::new()
                .name("sextant-seal".into())
                .spawn(move || c.sealer(seal_rx))
                .map_err(|e| open_err(dir, format!("starting the seal thread: {e}")))?,
        );
        let c = core.clone();
        threads.push(
            std::thread::Builder::new()
                .name("sextant-wal".into())
                .spawn(move || c.writer(rx, seal_tx, next_seq))
                .map_err(|e| open_err(dir, format!("starting the writer thread: {e}")))?,
        );
        let mut stop_maint = None;
        if core.config.background_maintenance {
            let (stx, srx) = crossbeam_channel::bounded::<()>(1);
            let c = core.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("sextant-maint".into())
                    .spawn(move || c.maintenance_loop(srx))
                    .map_err(|e| open_err(dir, format!("starting the maintenance thread: {e}")))?,
            );
            stop_maint = Some(stx);
        }
        Ok(Store {
            h: Arc::new(Handle {
                core,
                tx: Mutex::new(Some(tx)),
                stop_maint: Mutex::new(stop_maint),
                threads: Mutex::new(threads),
            }),
        })
    }

    fn core(&self) -> &Core {
        &self.h.core
    }

    /// The dims rollup groups are keyed by (fixed at creation).
    pub fn rollup_dims(&self) -> &[Dim] {
        &self.core().dims
    }

    /// Validates and appends `batch`; returns once it is durable (per the
    /// configured durability). Readers see it as soon as this returns.
    pub fn append(&self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let now = sextant_model::now_ms();
        let limits = Limits::default();
        for c in &batch.calls {
            c.validate(now, &limits)?;
        }
        for s in &batch.spans {
            s.validate(now, &limits)?;
        }
        for q in &batch.quality {
            q.validate(now, &limits)?;
        }
        for f in &batch.feedback {
            f.validate(now, &limits)?;
        }
        let wal = encode_wal(&batch);
        // Grouping needs no head state: done here, off the writer thread.
        let prepared = Prepared::new(batch, &self.core().dims);
        let (ack, done) = crossbeam_channel::bounded(1);
        self.send(Msg::Append { wal, prepared, ack })?;
        done.recv().map_err(|_| StorageError::ShuttingDown)?
    }

    fn send(&self, msg: Msg) -> Result<()> {
        let guard = self.h.tx.lock();
        let tx = guard.as_ref().ok_or(StorageError::ShuttingDown)?;
        tx.send(msg).map_err(|_| StorageError::ShuttingDown)
    }

    /// Seals the head into a segment and rollups (everything appended so far).
    pub fn seal(&self, now_ms: i64) -> Result<MaintenanceReport> {
        self.core().seal(now_ms)
    }

    /// Rolls closed hours up from minute rollups, days from hours and weeks from days.
    pub fn downsample(&self, now_ms: i64) -> Result<MaintenanceReport> {
        self.core().downsample(now_ms)
    }

    /// Deletes what each tier's retention no longer keeps.
    pub fn apply_retention(&self, now_ms: i64) -> Result<MaintenanceReport> {
        self.core().apply_retention(now_ms)
    }

    /// Seal (when due), downsample and retention in one pass.
    pub fn maintain(&self, now_ms: i64) -> Result<MaintenanceReport> {
        self.core().maintain(now_ms)
    }

    /// Calls `f(bucket_start_ms, group, rollup)` for every bucket of `tier`
    /// whose start is in `range`, for groups matching `filter` (which must be
    /// served by rollups), including data still in the head, in (bucket,
    /// group) order. Each rollup is decoded whole; [`Store::scan_rollups`]
    /// decodes only what the caller reads.
    ///
    /// Hour, day and week buckets are returned only below their `*_until_ms`
    /// watermark (see [`Coverage`]); `f` runs after every lock is released.
    /// On a decode error `f` may already have seen the rollups before it.
    pub fn rollups(
        &self,
        tier: Tier,
        range: TimeRange,
        filter: &RowFilter,
        f: &mut dyn FnMut(i64, &GroupKey, &Rollup),
    ) -> Result<()> {
        self.scan_rollups(tier, range, filter, &mut |b, g, v| {
            f(b, g, &v.to_rollup()?);
            Ok(())
        })
    }

    /// [`Store::rollups`], handing out [`RollupView`]s: exact fields decoded,
    /// finish reasons and digests read from the stored bytes when asked for
    /// (each validated as it is read; a bad one is a [`StorageError::Decode`]
    /// naming its key, which `f` should return). Stops at the first error,
    /// `f`'s or a decode error.
    pub fn scan_rollups(
        &self,
        tier: Tier,
        range: TimeRange,
        filter: &RowFilter,
        f: &mut dyn FnMut(i64, &GroupKey, &RollupView<'_>) -> Result<()>,
    ) -> Result<()> {
        let snap = self.core().snapshot_rollups(tier, range, filter)?;
        snap.stream(f)
    }

    /// Calls `f` for every raw call (sealed or in the head) with timestamp in
    /// `range` matching `filter`, pruned by segment bitmaps. Order unspecified.
    /// The calls are those acknowledged when the scan began; `f` runs without
    /// the store's state lock (a segment that retention deletes meanwhile is
    /// skipped: its rows are past raw retention).
    pub fn scan_calls(
        &self,
        range: TimeRange,
        filter: &RowFilter,
        f: &mut dyn FnMut(&sextant_model::LlmCall),
    ) -> Result<()> {
        self.core().scan_calls(range, filter, f)
    }

    /// Reads `range` for a query that rollups serve (`filter` names only
    /// rollup dims and no error filter): every minute bucket it touches is
    /// answered, per source (sealed data, the head being sealed, the head),
    /// from the source's minute rollups when all of the source's events in
    /// the bucket lie inside `range`, else from its raw rows in `range`.
    /// Every event in `range` reaches `sink` exactly once, as a raw row or
    /// inside a rollup; no event outside `range` does. `sink` may run
    /// under the store's read lock: it must not call the store.
    pub fn read_part(
        &self,
        range: TimeRange,
        filter: &RowFilter,
        sink: &mut dyn PartSink,
    ) -> Result<()> {
        self.core().read_part(range, filter, sink)
    }

    /// Raw quality records in `range`, with the call each one belongs to (if known).
    pub fn scan_quality(
        &self,
        range: TimeRange,
        f: &mut dyn FnMut(&sextant_model::Quality, Option<&RequestRef>),
    ) -> Result<()> {
        self.core().scan_quality(range, f)
    }

    /// Raw feedback in `range`, with the call each one belongs to (if known).
    pub fn scan_feedback(
        &self,
        range: TimeRange,
        f: &mut dyn FnMut(&sextant_model::Feedback, Option<&RequestRef>),
    ) -> Result<()> {
        self.core().scan_feedback(range, f)
    }

    /// What each tier covers now. `*_from_ms` is `i64::MIN` while nothing was removed.
    pub fn coverage(&self) -> Coverage {
        let wm = self.core().state.read_recursive().wm;
        Coverage {
            raw_from_ms: wm.raw_from,
            minute_from_ms: wm.minute_from,
            hour_from_ms: wm.hour_from,
            hour_until_ms: wm.hour_until,
            day_from_ms: wm.day_from,
            day_until_ms: wm.day_until,
            week_from_ms: wm.week_from,
            week_until_ms: wm.week_until,
        }
    }

    /// The call with this request id, whatever its age.
    pub fn request(&self, request_id: &str) -> Result<Option<RequestRef>> {
        let st = self.core().state.read_recursive();
        self.core().lookup_request(&st, request_id)
    }

    /// Every stored span of a trace, ordered by start; one range scan.
    pub fn trace(&self, trace_id: &str) -> Result<Vec<Span>> {
        self.core().trace(trace_id)
    }

    /// The most recently started traces, newest first.
    pub fn recent_traces(&self, limit: usize) -> Result<Vec<TraceSummary>> {
        self.core().recent_traces(limit)
    }

    /// Atomically and durably applies `ws`.
    pub fn kv_commit(&self, ws: WriteSet) -> Result<()> {
        let mut ops = Ops::default();
        for (space, k, v) in ws.ops {
            match v {
                Some(v) => ops.put(T::Kv(space), k, v),
                None => ops.del(T::Kv(space), k),
            }
        }
        let db = &self.core().db;
        db.commit(&ops)?;
        db.flush()
    }

    pub fn kv_get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.core().db.get(T::Kv(space), key)?.map(|v| v.to_vec()))
    }

    /// Every (key, value) in `space` whose key starts with `prefix`, in key order.
    pub fn kv_scan(&self, space: Space, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.core()
            .db
            .scan_prefix(T::Kv(space), prefix)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect()
    }

    /// Walks every segment, rollup, dictionary entry, WAL batch, row and
    /// span, checking checksums and decoding. Problems are reported, not raised.
    pub fn verify(&self) -> Result<VerifyReport> {
        self.core().verify()
    }

    pub fn stats(&self) -> StoreStats {
        let c = self.core();
        let (head_events, segments) = {
            let st = c.state.read_recursive();
            (
                (st.head.events() + st.sealing.as_ref().map_or(0, |h| h.events())) as u64,
                st.segments.len() as u64,
            )
        };
        StoreStats {
            wal_batches: c.counters.wal_batches.load(Ordering::Relaxed),
            wal_bytes: c.counters.wal_bytes.load(Ordering::Relaxed),
            head_events,
            segments,
            appended_events_total: c.counters.appended_events.load(Ordering::Relaxed),
            sealed_events_total: c.counters.sealed_events.load(Ordering::Relaxed),
        }
    }

    /// Bytes the store occupies on disk: sled's own accounting of its
    /// databases plus the segment files and the request-index run files.
    pub fn size_on_disk(&self) -> Result<u64> {
        let c = self.core();
        let runs = c.state.read_recursive().requests.files.clone();
        Ok(c.db.size_on_disk()? + c.segs.stats().file_bytes + runs.bytes())
    }

    /// The segment files (`<store>/segments/`): how many, the segments
    /// they hold and those segments' bytes, and their size on disk.
    pub fn segment_files(&self) -> SegmentFileStats {
        let s = self.core().segs.stats();
        SegmentFileStats {
            files: s.files,
            segments: s.segments,
            live_bytes: s.live_bytes,
            file_bytes: s.file_bytes,
        }
    }

    /// Makes everything acknowledged durable and stops background work.
    /// Later appends fail with [`StorageError::ShuttingDown`].
    pub fn close(&self) -> Result<()> {
        self.h.shutdown()
    }

    /// Per tree: (name, entries, bytes of keys + values). Walks every tree.
    pub fn tree_sizes(&self) -> Result<Vec<(String, u64, u64)>> {
        let db = &self.core().db;
        let mut out = Vec::new();
        for t in T::all() {
            let (mut n, mut bytes) = (0u64, 0u64);
            for kv in db.range(t, ..) {
                let (k, v) = kv?;
                n += 1;
                bytes += (k.len() + v.len()) as u64;
            }
            out.push((t.name().to_string(), n, bytes));
        }
        Ok(out)
    }

    /// Encoded bytes per segment column, summed over every stored segment.
    pub fn segment_column_sizes(&self) -> Result<Vec<(String, u64)>> {
        let c = self.core();
        let mut sums: BTreeMap<String, u64> = BTreeMap::new();
        for kv in c.db.range(T::Segments, ..) {
            let (k, _) = kv?;
            let v = sealed::read(&c.db, &c.segs, &k, &None)
                .map_err(|e| StorageError::decode("segments", &k, e))?
                .unwrap_or_default();
            let cols = SegmentCodec::column_sizes(&v)
                .map_err(|e| StorageError::decode("segments", &k, e))?;
            for (name, n) in cols {
                *sums.entry(name).or_default() += n as u64;
            }
        }
        Ok(sums.into_iter().collect())
    }

    /// Test hook: overwrites the stored format version (to test refusing newer stores).
    #[doc(hidden)]
    pub fn set_format_version_for_test(&self, version: u32) -> Result<()> {
        let db = &self.core().db;
        db.insert(
            T::Meta,
            sextant_migrations::FORMAT_VERSION_KEY,
            &version.to_be_bytes(),
        )?;
        db.flush()
    }

    /// Test hook: XORs `mask` into byte `offset` (modulo its length) of the
    /// `ordinal`-th stored segment (key order); returns its segment id.
    #[doc(hidden)]
    pub fn corrupt_segment_for_test(
        &self,
        ordinal: usize,
        offset: usize,
        mask: u8,
    ) -> Result<Option<u64>> {
        let c = self.core();
        let st = c.state.read_recursive();
        let Some((_, s)) = st.segments.iter().nth(ordinal) else {
            return Ok(None);
        };
        let Some(loc) = s.loc else {
            return Ok(None);
        };
        c.segs
            .corrupt_for_test(loc, offset, mask)
            .map_err(|e| StorageError::Db {
                op: "corrupt segment",
                message: e.to_string(),
            })?;
        Ok(Some(s.meta.id))
    }
}

impl Handle {
    fn shutdown(&self) -> Result<()> {
        if let Some(stop) = self.stop_maint.lock().take() {
            drop(stop);
        }
        let tx = self.tx.lock().take();
        let mut result = Ok(());
        if let Some(tx) = tx {
            let (ack, done) = crossbeam_channel::bounded(1);
            if tx.send(Msg::Sync(ack)).is_ok() {
                result = done.recv().unwrap_or(Ok(()));
            }
            drop(tx);
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        result.and_then(|_| self.core.db.flush())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "closing the store");
        }
    }
}

fn migrate(db: &Db, dir: &Path) -> Result<()> {
    debug_assert_eq!(sextant_migrations::latest_version(), crate::FORMAT_VERSION);
    let mut tx = MigrationTx {
        db,
        ops: Ops::default(),
    };
    match sextant_migrations::migrate(&mut tx) {
        Ok(_) => Ok(()),
        Err(sextant_migrations::MigrationError::Newer { found, supported }) => {
            Err(StorageError::NewerFormat {
                path: dir.display().to_string(),
                found,
                supported,
            })
        }
        Err(e) => Err(StorageError::Migrate(e.to_string())),
    }
}

impl Core {
    /// Rebuilds the head from the WAL entries at or above `floor`
    /// (`meta/wal_floor`: everything below it is sealed); returns the next
    /// sequence number.
    ///
    /// Decoding (and grouping) runs on worker threads, WAL entry `j` on
    /// worker `j mod n`; this thread takes results from the workers in the
    /// same rotation, so batches are applied in sequence order.
    fn replay(&self, floor: u64) -> Result<u64> {
        type Decoded = (
            u64,
            u64,
            std::result::Result<Prepared, crate::error::CodecError>,
        );
        let mut next = 1;
        let mut st = self.state.write();
        st.head.begin_replay();
        let now = sextant_model::now_ms();
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4);
        let stale: Mutex<Vec<(Bytes, Bytes)>> = Mutex::new(Vec::new());
        let replayed = std::thread::scope(|s| -> Result<()> {
            let mut ins = Vec::with_capacity(n);
            let mut outs = Vec::with_capacity(n);
            for _ in 0..n {
                let (in_tx, in_rx) = crossbeam_channel::bounded::<(u64, Bytes)>(8);
                let (out_tx, out_rx) = crossbeam_channel::bounded::<Decoded>(8);
                let dims = &self.dims;
                s.spawn(move || {
                    for (seq, v) in in_rx {
                        let d = decode_wal(&v).map(|b| Prepared::new(b, dims));
                        if out_tx.send((seq, v.len() as u64, d)).is_err() {
                            break;
                        }
                    }
                });
                ins.push(in_tx);
                outs.push(out_rx);
            }
            // Entries in key order, dealt round-robin; a read error ends
            // the deal and is reported after the entries before it.
            let (err_tx, err_rx) = crossbeam_channel::bounded::<StorageError>(1);
            let stale = &stale;
            s.spawn(move || {
                let mut j = 0;
                for kv in self.db.range(T::Wal, ..) {
                    let (k, v) = match kv {
                        Ok(kv) => kv,
                        Err(e) => {
                            let _ = err_tx.send(e);
                            return;
                        }
                    };
                    let Some(seq) = u64_from(&k) else { continue };
                    if seq < floor {
                        stale.lock().push((k, v));
                        continue;
                    }
                    if ins[j % n].send((seq, v)).is_err() {
                        return;
                    }
                    j += 1;
                }
            });
            let mut j = 0;
            while let Ok((seq, len, decoded)) = outs[j % n].recv() {
                j += 1;
                next = next.max(seq + 1);
                let prepared = match decoded {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(seq, error = %e, "unreadable WAL batch left in place; see verify()");
                        continue;
                    }
                };
                self.write_spans(&prepared.batch.spans)?;
                self.apply_locked(&mut st, seq, len, prepared, now);
            }
            match err_rx.try_recv() {
                Ok(e) => Err(e),
                Err(_) => Ok(()),
            }
        });
        st.head.end_replay();
        replayed?;
        // Entries below the floor were sealed by a seal whose WAL deletes
        // a crash cut short: delete them. One that does not decode was
        // never replayed nor sealed: it stays for verify() to report.
        let sealed: Vec<Vec<u8>> = stale
            .into_inner()
            .into_iter()
            .filter(|(_, v)| decode_wal(v).is_ok())
            .map(|(k, _)| k.to_vec())
            .collect();
        self.db.remove_many(T::Wal, &sealed)?;
        Ok(next)
    }

    fn apply_locked(&self, st: &mut State, seq: u64, wal_bytes: u64, prepared: Prepared, now: i64) {
        let events = prepared.len() as u64;
        let State {
            head,
            sealing,
            requests,
            ..
        } = st;
        let sealing = sealing.clone();
        let lookup = |id: &str| -> Option<RequestRef> {
            if let Some(r) = sealing.as_ref().and_then(|h| h.request(&self.dims, id)) {
                return Some(r);
            }
            requests.get(&self.db, id).ok().flatten()
        };
        head.apply(
            seq,
            wal_bytes,
            prepared,
            &self.dims,
            self.config.digest_sizes.minute,
            now,
            &lookup,
        );
        self.counters
            .appended_events
            .fetch_add(events, Ordering::Relaxed);
        self.counters.wal_batches.fetch_add(1, Ordering::Relaxed);
        self.counters
            .wal_bytes
            .fetch_add(wal_bytes, Ordering::Relaxed);
    }

    /// Span writes are idempotent (same key, same value), so replaying a WAL
    /// batch whose spans were already written is harmless.
    fn write_spans(&self, spans: &[Span]) -> Result<()> {
        if spans.is_empty() {
            return Ok(());
        }
        let mut ops = Ops::default();
        for s in spans {
            ops.put(T::Traces, span_key(s), encode_span(s));
            ops.put(T::TraceTime, span_time_key(s), Vec::new());
        }
        self.db.commit(&ops)
    }

    /// Seals whenever the writer signals that the head reached
    /// `seal_max_events`; returns when the writer has exited.
    fn sealer(self: Arc<Core>, rx: Receiver<()>) {
        while rx.recv().is_ok() {
            let due = self.state.read_recursive().head.events() >= self.config.seal_max_events;
            if due {
                if let Err(e) = self.seal(sextant_model::now_ms()) {
                    tracing::error!(error = %e, "automatic seal failed");
                }
            }
        }
    }

    fn writer(self: Arc<Core>, rx: Receiver<Msg>, seal_tx: Sender<()>, mut next_seq: u64) {
        let interval = match self.config.durability {
            Durability::Interval { interval_ms } => Some(Duration::from_millis(interval_ms.max(1))),
            _ => None,
        };
        let mut last_flush = Instant::now();
        let mut dirty = false;
        loop {
            let first = match interval {
                Some(iv) => match rx.recv_timeout(iv) {
                    Ok(m) => Some(m),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => break,
                },
            };
            let mut msgs: Vec<Msg> = first.into_iter().collect();
            while msgs.len() < 4096 {
                match rx.try_recv() {
                    Ok(m) => msgs.push(m),
                    Err(_) => break,
                }
            }
            let mut appends = Vec::new();
            let mut syncs = Vec::new();
            for m in msgs {
                match m {
                    Msg::Append { wal, prepared, ack } => appends.push((wal, prepared, ack)),
                    Msg::Sync(ack) => syncs.push(ack),
                }
            }
            let first_seq = next_seq;
            let mut result = Ok(());
            let mut spans_written = false;
            if !appends.is_empty() {
                let kvs: Vec<(Vec<u8>, &[u8])> = appends
                    .iter()
                    .enumerate()
                    .map(|(i, (w, _, _))| {
                        ((first_seq + i as u64).to_be_bytes().to_vec(), w.as_slice())
                    })
                    .collect();
                result = self.db.insert_many(T::Wal, &kvs);
                if result.is_ok() {
                    let spans: Vec<Span> = appends
                        .iter()
                        .flat_map(|(_, p, _)| p.batch.spans.iter().cloned())
                        .collect();
                    spans_written = !spans.is_empty();
                    result = self.write_spans(&spans);
                }
                dirty = true;
            }
            let flush_now = match interval {
                None => dirty || !syncs.is_empty(),
                Some(iv) => !syncs.is_empty() || (dirty && last_flush.elapsed() >= iv),
            };
            if result.is_ok() && flush_now {
                // Batches without spans wrote to the WAL database only.
                let everything = spans_written || !syncs.is_empty() || interval.is_some();
                result = if everything {
                    self.db.flush()
                } else {
                    self.db.flush_wal()
                };
                last_flush = Instant::now();
                dirty = false;
            }
            if result.is_ok() && !appends.is_empty() {
                next_seq += appends.len() as u64;
                let now = sextant_model::now_ms();
                let mut st = self.state.write();
                for (i, (w, b, _)) in appends.iter_mut().enumerate() {
                    let b = std::mem::take(b);
                    self.apply_locked(&mut st, first_seq + i as u64, w.len() as u64, b, now);
                }
                drop(st);
            }
            for (_, _, ack) in appends {
                let _ = ack.send(result.as_ref().map(|_| ()).map_err(clone_err));
            }
            for ack in syncs {
                let _ = ack.send(result.as_ref().map(|_| ()).map_err(clone_err));
            }
            let due = self.state.read_recursive().head.events() >= self.config.seal_max_events;
            if due {
                // Full means a signal is already pending: nothing to add.
                let _ = seal_tx.try_send(());
            }
        }
        drop(seal_tx);
        if dirty {
            let _ = self.db.flush();
        }
    }

    fn maintenance_loop(self: Arc<Core>, stop: Receiver<()>) {
        // Stops when the handle drops its sender (disconnect) or sends.
        while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
            stop.recv_timeout(Duration::from_secs(2))
        {
            if let Err(e) = self.maintain(sextant_model::now_ms()) {
                tracing::error!(error = %e, "background maintenance failed");
            }
        }
    }

    pub(crate) fn lookup_request(&self, st: &State, id: &str) -> Result<Option<RequestRef>> {
        if let Some(r) = st.head.request(&self.dims, id) {
            return Ok(Some(r));
        }
        if let Some(r) = st.sealing.as_ref().and_then(|h| h.request(&self.dims, id)) {
            return Ok(Some(r));
        }
        st.requests.get(&self.db, id)
    }
}

fn clone_err(e: &StorageError) -> StorageError {
    match e {
        StorageError::ShuttingDown => StorageError::ShuttingDown,
        other => StorageError::Db {
            op: "append",
            message: other.to_string(),
        },
    }
}

/// Set-up shared by the store's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use sextant_model::{Batch, LlmCall, TimeRange};

    use super::Store;
    use crate::{RowFilter, StoreConfig};

    /// Maintenance driven by the test alone: no background thread, no
    /// automatic seal.
    pub(crate) fn manual_config() -> StoreConfig {
        StoreConfig {
            background_maintenance: false,
            seal_max_events: usize::MAX,
            ..StoreConfig::default()
        }
    }

    /// `n` calls of `model`, request ids `tag-0`…, `step_ms` apart from
    /// `ts`, latencies 10, 11, … ms.
    pub(crate) fn calls(n: usize, ts: i64, step_ms: i64, tag: &str, model: &str) -> Batch {
        Batch::from_calls(
            (0..n)
                .map(|i| LlmCall {
                    request_id: format!("{tag}-{i}"),
                    timestamp_ms: ts + i as i64 * step_ms,
                    model: model.into(),
                    provider: "p".into(),
                    endpoint: "chat".into(),
                    latency_ms: 10.0 + i as f64,
                    ..LlmCall::default()
                })
                .collect(),
        )
    }

    /// Every stored call's request id, sorted.
    pub(crate) fn raw_ids(store: &Store) -> Vec<String> {
        let mut ids = Vec::new();
        store
            .scan_calls(
                TimeRange::new(i64::MIN, i64::MAX),
                &RowFilter::default(),
                &mut |c| ids.push(c.request_id.clone()),
            )
            .unwrap();
        ids.sort();
        ids
    }
}

#[cfg(test)]
mod wal_tests {
    use super::*;

    use super::test_support::{manual_config as config, raw_ids};

    fn calls(n: usize, ts: i64, tag: &str) -> Batch {
        super::test_support::calls(n, ts, 1, tag, "m")
    }

    /// A crash after a seal is durable but before its WAL entries are gone
    /// (the WAL is another database) must not replay them.
    #[test]
    fn sealed_wal_entries_left_by_a_crash_are_not_replayed_and_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let now = sextant_model::now_ms();
        let store = Store::open(dir.path(), config()).unwrap();
        store.append(calls(3, now - 60_000, "a")).unwrap();
        let key = 1u64.to_be_bytes().to_vec();
        let sealed_value = store.h.core.db.get(T::Wal, &key).unwrap().unwrap();
        store.seal(now).unwrap();
        assert_eq!(store.h.core.db.get(T::Wal, &key).unwrap(), None);
        store.append(calls(2, now - 30_000, "b")).unwrap();
        // What the crash leaves: the sealed batch back in the WAL, and an
        // unreadable entry below the floor (never replayed, never sealed).
        let db = &store.h.core.db;
        db.insert(T::Wal, &key, &sealed_value).unwrap();
        db.insert(T::Wal, &0u64.to_be_bytes(), b"not a batch")
            .unwrap();
        db.flush().unwrap();
        store.close().unwrap();
        drop(store);

        let store = Store::open(dir.path(), config()).unwrap();
        assert_eq!(store.stats().head_events, 2);
        let mut want: Vec<String> = (0..3).map(|i| format!("a-{i}")).collect();
        want.extend((0..2).map(|i| format!("b-{i}")));
        assert_eq!(raw_ids(&store), want);
        let db = &store.h.core.db;
        assert_eq!(db.get(T::Wal, &key).unwrap(), None, "sealed entry removed");
        let report = store.verify().unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(report.problems[0].0.starts_with("wal/"));
        // The unsealed batch is still replayed, and sealed exactly once.
        store.seal(now).unwrap();
        store.close().unwrap();
        drop(store);
        let store = Store::open(dir.path(), config()).unwrap();
        assert_eq!(store.stats().head_events, 0);
        assert_eq!(raw_ids(&store), want);
    }
}
