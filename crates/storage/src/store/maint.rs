//! Sealing, downsampling and retention.
//!
//! Each job builds its whole write set first (reads only; sealing reads the
//! stored rollups it merges into), then commits it in ONE sled transaction
//! while holding the state write lock, so readers switch from the old view
//! to the new one at a single instant and a crash leaves either all of it
//! or none of it. All jobs hold `Core::maint`, so no two build at once.
//!
//! **Invariant (seal):** the transaction that writes a head's segments,
//! rollups and quality/feedback rows also advances `meta/wal_floor` past
//! that head's WAL entries and publishes the head's request-index run (whose chunks are
//! written just before, invisible until then; see `requests.rs`). The WAL
//! is its own database: the head's entries are deleted from it only after
//! that transaction is durable, and replay skips entries below the floor,
//! so after a crash replay re-adds exactly the batches not yet sealed.
//!
//! **Invariant (downsample):** hour (day, week) rollups exist only for
//! buckets below `wm.hour_until` (`wm.day_until`, `wm.week_until`), written
//! in the transaction that advances the watermark; a week is rolled from
//! its seven day rollups once all of them are below `wm.day_until`. A seal
//! merges late minute rollups into the hour, day and week buckets below
//! those watermarks in its own transaction.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use sextant_model::Tier;

use crate::api::{GroupKey, MaintenanceReport};
use crate::db::{ts_key, Bytes, Ops, T};
use crate::error::{hex, Result, StorageError};
use crate::rollup::Rollup;
use crate::seg_files::Location;
use crate::store::head::Head;
use crate::store::meta_keys as mk;
use crate::store::records::{encode_row, parse_rollup_key, rollup_key, SegMeta};
use crate::store::requests;
use crate::store::sealed;
use crate::store::segment::{SegmentCodec, SEGMENT_MAX_ROWS};
use crate::store::Core;

pub(crate) fn rollup_tree(tier: Tier) -> T {
    match tier {
        Tier::Minute => T::RollupMinute,
        Tier::Hour => T::RollupHour,
        Tier::Day => T::RollupDay,
        Tier::Week => T::RollupWeek,
        // `Tier` is non-exhaustive; a new tier needs its own tree here.
        _ => unreachable!("no rollup tree for {tier:?}"),
    }
}

/// Reloads the dictionary when dropped armed. `SegmentCodec::encode_refs`
/// hands each new dictionary entry out once, to be written by the seal
/// transaction of the segment that first uses it: if that transaction
/// never commits (any error between the encode and the commit), the
/// entries must be forgotten, or the next seal would reference ids whose
/// entries are never stored (a gap at the next open, or the id reassigned
/// to another string).
struct DictGuard<'a> {
    core: &'a Core,
    armed: bool,
}

impl DictGuard<'_> {
    /// The transaction that stores the entries committed.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for DictGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = self.core.reload_dict() {
                tracing::error!(error = %e, "reloading the segment dictionary after a failed seal");
            }
        }
    }
}

impl Core {
    pub(crate) fn digest_size(&self, tier: Tier) -> usize {
        match tier {
            Tier::Minute => self.config.digest_sizes.minute,
            Tier::Hour => self.config.digest_sizes.hour,
            Tier::Day => self.config.digest_sizes.day,
            Tier::Week => self.config.digest_sizes.week,
            _ => unreachable!("no digest size for {tier:?}"),
        }
    }

    /// Reads a stored rollup; a value that does not decode is an error
    /// naming its key (sealing stops rather than overwrite it).
    fn stored_rollup(&self, tier: Tier, key: &[u8]) -> Result<Option<Rollup>> {
        let t = rollup_tree(tier);
        match self.db.get(t, key)? {
            None => Ok(None),
            Some(v) => Rollup::decode(&v)
                .map(Some)
                .map_err(|e| StorageError::decode(t.name(), key, e)),
        }
    }

    pub(crate) fn seal(&self, _now_ms: i64) -> Result<MaintenanceReport> {
        let mut m = self.maint.lock();
        let snap: Arc<Head> = {
            let mut st = self.state.write();
            if st.sealing.is_none() {
                if st.head.is_empty() {
                    return Ok(MaintenanceReport::default());
                }
                let h = std::mem::take(&mut st.head);
                st.sealing = Some(Arc::new(h));
            }
            match &st.sealing {
                Some(h) => h.clone(),
                None => return Ok(MaintenanceReport::default()),
            }
        };
        let wm = self.state.read_recursive().wm;
        let t0 = std::time::Instant::now();
        let mut ops = Ops::default();
        let mut report = MaintenanceReport {
            sealed_events: snap.events() as u64,
            ..MaintenanceReport::default()
        };

        // Segments, oldest rows first (stable by timestamp; the head's calls
        // are borrowed, not copied).
        let calls: Vec<&sextant_model::LlmCall> = {
            let all: Vec<&sextant_model::LlmCall> = snap.calls.iter().collect();
            let mut order: Vec<(i64, u32)> = all
                .iter()
                .enumerate()
                .map(|(i, c)| (c.timestamp_ms, i as u32))
                .collect();
            order.sort_unstable();
            order.into_iter().map(|(_, i)| all[i as usize]).collect()
        };
        let mut next_id = m.next_segment_id;
        let mut new_segments = Vec::new();
        let mut seg_bytes = Vec::new();
        // From the first encode until the commit succeeds, every exit
        // reloads the dictionary (see [`DictGuard`]).
        let dict_guard = DictGuard {
            core: self,
            armed: true,
        };
        {
            let mut codec = self.codec.write();
            for chunk in calls.chunks(SEGMENT_MAX_ROWS) {
                let (bytes, dict) = codec.encode_refs(chunk);
                let meta = SegMeta {
                    id: next_id,
                    min_ts: chunk.first().map_or(0, |c| c.timestamp_ms),
                    max_ts: chunk.last().map_or(0, |c| c.timestamp_ms),
                    rows: chunk.len() as u64,
                };
                next_id += 1;
                for (k, v) in dict {
                    ops.put(T::Dict, k, v);
                }
                ops.put(T::SegmentMeta, meta.key(), meta.encode());
                seg_bytes.push(bytes);
                new_segments.push(meta);
            }
        }
        // The segments' bytes go to the segment files, durably, before the
        // transaction that references them (`seg_files.rs`, "seal").
        let seg_refs: Vec<&[u8]> = seg_bytes.iter().map(|b| b.as_slice()).collect();
        let locs = match self.segs.append(&seg_refs) {
            Ok(l) => l,
            // The dictionary guard forgets the entries handed out.
            Err(e) => return Err(sealed::write_err(e)),
        };
        drop(seg_refs);
        drop(seg_bytes);
        for (meta, loc) in new_segments.iter().zip(&locs) {
            ops.put(T::Segments, meta.key(), loc.encode());
        }
        report.segments_written = new_segments.len() as u64;
        let t_segments = t0.elapsed();
        ops.put(T::Meta, mk::NEXT_SEGMENT_ID, next_id.to_be_bytes().to_vec());

        // Rollups: minute always; hour/day/week for buckets already downsampled.
        let coarse = [
            (Tier::Hour, wm.hour_until),
            (Tier::Day, wm.day_until),
            (Tier::Week, wm.week_until),
        ];
        let mut late: [HashMap<(i64, GroupKey), Rollup>; 3] = Default::default();
        // Minute rollups the hot mirror holds (it is authoritative from
        // `hot_from`, which only grows), recorded in it after the commit.
        let hot_from = self.state.read_recursive().hot.from();
        let mut hot = Vec::new();
        for ((bucket, group), r) in snap.rollups() {
            let key = rollup_key(*bucket, group);
            let mut merged = self
                .stored_rollup(Tier::Minute, &key)?
                .unwrap_or_else(|| Rollup::new(self.digest_size(Tier::Minute)));
            merged.merge(r);
            let value = merged.encode();
            if *bucket >= hot_from {
                hot.push((key.clone(), Bytes::from(value.as_slice())));
            }
            ops.put(T::RollupMinute, key, value);
            for ((tier, until), acc) in coarse.iter().zip(late.iter_mut()) {
                let b = tier.floor(*bucket);
                if b < *until {
                    acc.entry((b, group.clone()))
                        .or_insert_with(|| Rollup::new(self.digest_size(*tier)))
                        .merge(r);
                }
            }
        }
        for ((tier, _), late) in coarse.into_iter().zip(late) {
            for ((bucket, group), r) in late {
                let key = rollup_key(bucket, &group);
                let mut merged = self
                    .stored_rollup(tier, &key)?
                    .unwrap_or_else(|| Rollup::new(self.digest_size(tier)));
                merged.merge(&r);
                merged.resize_digests(self.digest_size(tier));
                ops.put(rollup_tree(tier), key, merged.encode());
            }
        }

        let t_rollups = t0.elapsed();
        // The head's request-index run: its chunks are written now, in
        // plain batches (invisible until the directory entry that the seal
        // transaction writes; orphans of a crash are deleted at open), so
        // the transaction carries one small value instead of 10^5 entries.
        let (run_id, run_seq, fp) = {
            let mut st = self.state.write();
            let seq = st.requests.next_seq();
            (st.requests.take_id(), seq, st.requests.fp)
        };
        let (groups, entries) = snap.call_entries();
        let mut new_run = requests::run_of_calls(&fp, run_id, run_seq, groups, entries);
        let run_files = self.state.read_recursive().requests.files.clone();
        if !new_run.chunks.is_empty() {
            requests::write_file(&run_files, &mut new_run)?;
            requests::RequestIndex::publish(&mut ops, &new_run.run, run_id + 1);
        }
        let t_requests = t0.elapsed();
        for (k, q) in &snap.quality {
            ops.put(T::Quality, k.clone(), encode_row(q));
        }
        for (k, f) in &snap.feedback {
            ops.put(T::Feedback, k.clone(), encode_row(f));
        }
        if let Some(last) = snap.seqs.last() {
            ops.put(T::Meta, mk::WAL_FLOOR, (last + 1).to_be_bytes().to_vec());
        }

        let t_build = t0.elapsed();
        let lock_held;
        {
            let mut st = self.state.write();
            let t_lock = std::time::Instant::now();
            if let Err(e) = self.db.commit(&ops) {
                // The dictionary guard reloads the dictionary (after the
                // state lock is released: it was declared before). The
                // head stays in `sealing` (still read) and the next seal
                // retries it.
                drop(st);
                requests::delete_chunks(&self.db, &run_files, run_id)?;
                return Err(e);
            }
            dict_guard.disarm();
            for (s, loc) in new_segments.iter().zip(&locs) {
                st.segments.insert(
                    s.key(),
                    sealed::Sealed {
                        meta: *s,
                        loc: Some(*loc),
                    },
                );
            }
            if !new_run.chunks.is_empty() {
                st.requests.install(new_run.run);
            }
            st.hot.insert(hot);
            st.sealing = None;
            lock_held = t_lock.elapsed();
        }
        m.next_segment_id = next_id;
        self.segs.add_live(&locs);
        self.counters
            .sealed_events
            .fetch_add(report.sealed_events, Ordering::Relaxed);
        self.counters
            .wal_batches
            .fetch_sub(snap.seqs.len() as u64, Ordering::Relaxed);
        self.counters
            .wal_bytes
            .fetch_sub(snap.wal_bytes, Ordering::Relaxed);
        self.db.flush()?;
        // Only now, with the seal durable: the WAL is another database.
        let sealed: Vec<Vec<u8>> = snap.seqs.iter().map(|s| s.to_be_bytes().to_vec()).collect();
        self.db.remove_many(T::Wal, &sealed)?;
        tracing::debug!(
            events = report.sealed_events,
            segments_ms = t_segments.as_millis() as u64,
            rollups_ms = (t_rollups - t_segments).as_millis() as u64,
            requests_ms = (t_requests - t_rollups).as_millis() as u64,
            build_ms = t_build.as_millis() as u64,
            lock_held_ms = lock_held.as_millis() as u64,
            total_ms = t0.elapsed().as_millis() as u64,
            "sealed"
        );
        Ok(report)
    }

    /// Merges request-index runs while more than `requests::MAX_RUNS`
    /// exist, so a lookup reads at most that many chunks. Caller holds
    /// `maint`. Each merge: write the merged run's file (durably), then one
    /// transaction publishes it and tombstones its two sources, then (once
    /// that is flushed) their files and tombstones are deleted (finished at
    /// open after a crash).
    pub(crate) fn merge_request_runs(&self) -> Result<u64> {
        let mut merged = 0;
        loop {
            let (newer, older, id, fp) = {
                let mut st = self.state.write();
                let Some((a, b)) = st.requests.merge_candidate() else {
                    return Ok(merged);
                };
                (a, b, st.requests.take_id(), st.requests.fp)
            };
            let files = self.state.read_recursive().requests.files.clone();
            let mut run = requests::merge_runs(&self.db, &files, &fp, id, &newer, &older)?;
            requests::write_file(&files, &mut run)?;
            let mut ops = Ops::default();
            requests::RequestIndex::publish(&mut ops, &run.run, id + 1);
            for old in [&newer, &older] {
                ops.put(T::RequestRunDir, old.id.to_be_bytes().to_vec(), Vec::new());
            }
            {
                let mut st = self.state.write();
                self.db.commit(&ops)?;
                st.requests
                    .runs
                    .retain(|r| r.id != newer.id && r.id != older.id);
                st.requests.install(run.run);
            }
            self.db.flush()?;
            for old in [&newer, &older] {
                requests::delete_chunks(&self.db, &files, old.id)?;
                self.db
                    .remove_many(T::RequestRunDir, &[old.id.to_be_bytes().to_vec()])?;
            }
            merged += 1;
        }
    }

    /// Reloads the dictionary from sled, forgetting entries handed out by
    /// an encode whose transaction never committed.
    fn reload_dict(&self) -> Result<()> {
        let mut entries = Vec::new();
        for kv in self.db.range(T::Dict, ..) {
            let (k, v) = kv?;
            entries.push((k.to_vec(), v.to_vec()));
        }
        let codec = SegmentCodec::load(entries.into_iter()).map_err(|e| StorageError::Decode {
            tree: "dict",
            key: String::new(),
            source: e,
        })?;
        *self.codec.write() = codec;
        Ok(())
    }

    pub(crate) fn downsample(&self, now_ms: i64) -> Result<MaintenanceReport> {
        let _m = self.maint.lock();
        let wm = self.state.read_recursive().wm;
        let closed = now_ms.saturating_sub(self.config.downsample_grace_ms);
        let hour_target = Tier::Hour.floor(closed).max(wm.hour_until);
        let day_target = Tier::Day.floor(closed).min(hour_target).max(wm.day_until);
        // A week closes once all seven of its days are rolled up.
        let week_target = Tier::Week.floor(closed.min(day_target)).max(wm.week_until);
        let mut ops = Ops::default();
        let mut report = MaintenanceReport::default();

        // Hours from minute rollups in [hour_until, hour_target).
        let hours = self.roll_up(
            Tier::Minute,
            Tier::Hour,
            wm.hour_until,
            hour_target,
            &mut ops,
        )?;
        report.hours_rolled = hours;
        // Days from hour rollups in [day_until, day_target): the hours just
        // rolled are in `ops`, not yet in the tree, so read them from there.
        let days =
            self.roll_up_pending(Tier::Hour, Tier::Day, wm.day_until, day_target, &mut ops)?;
        report.days_rolled = days;
        // Weeks from day rollups in [week_until, week_target), the same way.
        // (`wm.day_from <= wm.week_until`: none of those days was deleted.)
        let weeks =
            self.roll_up_pending(Tier::Day, Tier::Week, wm.week_until, week_target, &mut ops)?;
        report.weeks_rolled = weeks;
        if hour_target == wm.hour_until
            && day_target == wm.day_until
            && week_target == wm.week_until
        {
            return Ok(report);
        }
        ops.put(T::Meta, mk::HOUR_UNTIL, ts_key(hour_target).to_vec());
        ops.put(T::Meta, mk::DAY_UNTIL, ts_key(day_target).to_vec());
        ops.put(T::Meta, mk::WEEK_UNTIL, ts_key(week_target).to_vec());
        let mut st = self.state.write();
        self.db.commit(&ops)?;
        st.wm.hour_until = hour_target;
        st.wm.day_until = day_target;
        st.wm.week_until = week_target;
        drop(st);
        self.db.flush()?;
        Ok(report)
    }

    /// Merges `from`-tier rollups with buckets in `[lo, hi)` into `to`-tier
    /// buckets, adding puts to `ops`; returns the buckets written.
    fn roll_up(&self, from: Tier, to: Tier, lo: i64, hi: i64, ops: &mut Ops) -> Result<u64> {
        if hi <= lo {
            return Ok(0);
        }
        let mut acc: BTreeMap<(i64, GroupKey), Rollup> = BTreeMap::new();
        let mut written = 0;
        let mut current: Option<i64> = None;
        let src = rollup_tree(from);
        for kv in self.db.range(src, ts_key(lo).to_vec()..ts_key(hi).to_vec()) {
            let (k, v) = kv?;
            let Some((bucket, group)) = parse_rollup_key(&k) else {
                tracing::error!(tree = src.name(), key = %hex(&k), "unparsable rollup key skipped");
                continue;
            };
            let r = match Rollup::decode(&v) {
                Ok(r) => r,
                Err(e) => return Err(StorageError::decode(src.name(), &k, e)),
            };
            let b = to.floor(bucket);
            if current.is_some_and(|c| c != b) {
                written += self.flush_acc(to, &mut acc, ops);
            }
            current = Some(b);
            acc.entry((b, group))
                .or_insert_with(|| Rollup::new(self.digest_size(to)))
                .merge(&r);
        }
        written += self.flush_acc(to, &mut acc, ops);
        Ok(written)
    }

    fn flush_acc(
        &self,
        to: Tier,
        acc: &mut BTreeMap<(i64, GroupKey), Rollup>,
        ops: &mut Ops,
    ) -> u64 {
        let n = acc.len() as u64;
        for ((b, g), mut r) in std::mem::take(acc) {
            r.resize_digests(self.digest_size(to));
            ops.put(rollup_tree(to), rollup_key(b, &g), r.encode());
        }
        n
    }

    /// Like [`Core::roll_up`], but the `from`-tier buckets may have been
    /// written to `ops` by this same pass (not yet committed): those are
    /// read from `ops`, the others from the tree.
    fn roll_up_pending(
        &self,
        from: Tier,
        to: Tier,
        lo: i64,
        hi: i64,
        ops: &mut Ops,
    ) -> Result<u64> {
        if hi <= lo {
            return Ok(0);
        }
        let src = rollup_tree(from);
        // `from` buckets just written (not yet committed) plus those stored.
        let mut pending: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for (t, k, v) in ops.iter() {
            if t == src {
                if let Some(v) = v {
                    pending.insert(k.to_vec(), v.to_vec());
                }
            }
        }
        let mut acc: BTreeMap<(i64, GroupKey), Rollup> = BTreeMap::new();
        let lo_k = ts_key(lo).to_vec();
        let hi_k = ts_key(hi).to_vec();
        let mut sources: BTreeMap<Vec<u8>, Vec<u8>> = pending
            .range(lo_k.clone()..hi_k.clone())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for kv in self.db.range(src, lo_k..hi_k) {
            let (k, v) = kv?;
            sources.entry(k.to_vec()).or_insert_with(|| v.to_vec());
        }
        for (k, v) in sources {
            let Some((bucket, group)) = parse_rollup_key(&k) else {
                continue;
            };
            let r = Rollup::decode(&v).map_err(|e| StorageError::decode(src.name(), &k, e))?;
            acc.entry((to.floor(bucket), group))
                .or_insert_with(|| Rollup::new(self.digest_size(to)))
                .merge(&r);
        }
        Ok(self.flush_acc(to, &mut acc, ops))
    }

    pub(crate) fn apply_retention(&self, now_ms: i64) -> Result<MaintenanceReport> {
        let _m = self.maint.lock();
        let wm = self.state.read_recursive().wm;
        let r = self.config.retention;
        let cut = |keep: Option<i64>, tier: Option<Tier>, old: i64| -> i64 {
            match keep {
                None => old,
                Some(ms) => {
                    let c = now_ms.saturating_sub(ms);
                    tier.map_or(c, |t| t.floor(c)).max(old)
                }
            }
        };
        let raw_from = cut(r.raw_ms, None, wm.raw_from);
        let minute_from = cut(r.minute_ms, Some(Tier::Minute), wm.minute_from);
        let hour_from = cut(r.hour_ms, Some(Tier::Hour), wm.hour_from);
        // Days wait for their week's rollup (`day_from <= week_until`).
        let day_from = cut(r.day_ms, Some(Tier::Day), wm.day_from)
            .min(wm.week_until)
            .max(wm.day_from);
        let week_from = cut(r.week_ms, Some(Tier::Week), wm.week_from);
        let traces_from = cut(r.traces_ms, None, wm.traces_from);

        let mut ops = Ops::default();
        let mut dead_segments = Vec::new();
        let mut dead_locs = Vec::new();
        let below = |ts: i64| ..ts_key(ts).to_vec();
        if raw_from > i64::MIN {
            // Segment keys start with the segment's max ts: a prefix range.
            for kv in self.db.range(T::SegmentMeta, below(raw_from)) {
                let (k, _) = kv?;
                // The file bytes are released once this deletion is durable.
                if let Some(v) = self.db.get(T::Segments, &k)? {
                    if let Ok(loc) = Location::decode(&v) {
                        dead_locs.push(loc);
                    }
                }
                ops.del(T::Segments, k.to_vec());
                ops.del(T::SegmentMeta, k.to_vec());
                dead_segments.push(k.to_vec());
            }
            for t in [T::Quality, T::Feedback] {
                for kv in self.db.range(t, below(raw_from)) {
                    ops.del(t, kv?.0.to_vec());
                }
            }
        }
        for (t, from) in [
            (T::RollupMinute, minute_from),
            (T::RollupHour, hour_from),
            (T::RollupDay, day_from),
            (T::RollupWeek, week_from),
        ] {
            if from > i64::MIN {
                for kv in self.db.range(t, below(from)) {
                    ops.del(t, kv?.0.to_vec());
                }
            }
        }
        if traces_from > 0 {
            let cutoff_ns = (traces_from as u64).saturating_mul(1_000_000);
            for kv in self
                .db
                .range(T::TraceTime, ..cutoff_ns.to_be_bytes().to_vec())
            {
                let (k, _) = kv?;
                if let Some((_, _, span_key)) = super::records::parse_span_time_key(&k) {
                    ops.del(T::Traces, span_key);
                }
                ops.del(T::TraceTime, k.to_vec());
            }
        }
        let report = MaintenanceReport {
            keys_expired: ops.len() as u64,
            ..MaintenanceReport::default()
        };
        for (k, v) in [
            (mk::RAW_FROM, raw_from),
            (mk::MINUTE_FROM, minute_from),
            (mk::HOUR_FROM, hour_from),
            (mk::DAY_FROM, day_from),
            (mk::WEEK_FROM, week_from),
            (mk::TRACES_FROM, traces_from),
        ] {
            ops.put(T::Meta, k, ts_key(v).to_vec());
        }
        let mut st = self.state.write();
        self.db.commit(&ops)?;
        for k in dead_segments {
            st.segments.remove(&k);
        }
        st.wm.raw_from = raw_from;
        st.wm.minute_from = minute_from;
        st.hot.remove_below(minute_from);
        st.wm.hour_from = hour_from;
        st.wm.day_from = day_from;
        st.wm.week_from = week_from;
        st.wm.traces_from = traces_from;
        drop(st);
        self.db.flush()?;
        // Only now, with the deletion durable, may a file whose segments
        // are all gone be deleted (`seg_files.rs`, "retention").
        self.segs.release(&dead_locs).map_err(sealed::write_err)?;
        Ok(report)
    }

    pub(crate) fn maintain(&self, now_ms: i64) -> Result<MaintenanceReport> {
        let due = {
            let st = self.state.read_recursive();
            st.sealing.is_some()
                || st.head.events() >= self.config.seal_max_events
                || st
                    .head
                    .first_applied_ms
                    .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.seal_max_age_ms)
        };
        let mut report = MaintenanceReport::default();
        if due {
            let s = self.seal(now_ms)?;
            report.sealed_events = s.sealed_events;
            report.segments_written = s.segments_written;
        }
        let d = self.downsample(now_ms)?;
        report.hours_rolled = d.hours_rolled;
        report.days_rolled = d.days_rolled;
        report.weeks_rolled = d.weeks_rolled;
        report.keys_expired = self.apply_retention(now_ms)?.keys_expired;
        let _m = self.maint.lock();
        self.merge_request_runs()?;
        Ok(report)
    }
}
