//! The store: WAL, head, sealing, rollups, retention, traces, indexes.
//!
//! OWNER: engine helper. This file defines the contract; the implementation
//! fills in the bodies.

use std::path::Path;

use sextant_model::{Batch, Span, Tier, TimeRange};

use crate::api::*;
use crate::config::StoreConfig;
use crate::error::Result;
use crate::rollup::Rollup;

/// A handle to an open store. Cheap to clone; every clone shares one store.
#[derive(Debug, Clone)]
pub struct Store {
    _private: (),
}

#[allow(unused_variables)]
impl Store {
    /// Opens (creating if absent) the store in `dir`, running migrations and
    /// replaying the WAL into the head.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Store> {
        unimplemented!()
    }

    /// The dims rollup groups are keyed by (fixed at creation).
    pub fn rollup_dims(&self) -> &[sextant_model::Dim] {
        unimplemented!()
    }

    /// Validates and appends `batch`; returns once it is durable (per the
    /// configured durability). Readers see it as soon as this returns.
    pub fn append(&self, batch: Batch) -> Result<()> {
        unimplemented!()
    }

    /// Seals the head into a segment and rollups (everything appended so far).
    pub fn seal(&self, now_ms: i64) -> Result<MaintenanceReport> {
        unimplemented!()
    }

    /// Rolls closed hours and days up from minute rollups.
    pub fn downsample(&self, now_ms: i64) -> Result<MaintenanceReport> {
        unimplemented!()
    }

    /// Deletes what each tier's retention no longer keeps.
    pub fn apply_retention(&self, now_ms: i64) -> Result<MaintenanceReport> {
        unimplemented!()
    }

    /// Seal (when due), downsample and retention in one pass.
    pub fn maintain(&self, now_ms: i64) -> Result<MaintenanceReport> {
        unimplemented!()
    }

    /// Calls `f(bucket_start_ms, group, rollup)` for every bucket of `tier`
    /// whose start is in `range`, for groups matching `filter` (which must be
    /// served by rollups), including data still in the head. Oldest first.
    pub fn rollups(
        &self,
        tier: Tier,
        range: TimeRange,
        filter: &RowFilter,
        f: &mut dyn FnMut(i64, &GroupKey, &Rollup),
    ) -> Result<()> {
        unimplemented!()
    }

    /// Calls `f` for every raw call (sealed or in the head) with timestamp in
    /// `range` matching `filter`, pruned by segment bitmaps. Order unspecified.
    pub fn scan_calls(
        &self,
        range: TimeRange,
        filter: &RowFilter,
        f: &mut dyn FnMut(&sextant_model::LlmCall),
    ) -> Result<()> {
        unimplemented!()
    }

    /// Raw quality records in `range`, with the call each one belongs to (if known).
    pub fn scan_quality(
        &self,
        range: TimeRange,
        f: &mut dyn FnMut(&sextant_model::Quality, Option<&RequestRef>),
    ) -> Result<()> {
        unimplemented!()
    }

    /// Raw feedback in `range`, with the call each one belongs to (if known).
    pub fn scan_feedback(
        &self,
        range: TimeRange,
        f: &mut dyn FnMut(&sextant_model::Feedback, Option<&RequestRef>),
    ) -> Result<()> {
        unimplemented!()
    }

    /// What each tier covers now.
    pub fn coverage(&self) -> Coverage {
        unimplemented!()
    }

    /// The call with this request id, whatever its age.
    pub fn request(&self, request_id: &str) -> Result<Option<RequestRef>> {
        unimplemented!()
    }

    /// Every stored span of a trace, ordered by start; one range scan.
    pub fn trace(&self, trace_id: &str) -> Result<Vec<Span>> {
        unimplemented!()
    }

    /// The most recently started traces, newest first.
    pub fn recent_traces(&self, limit: usize) -> Result<Vec<TraceSummary>> {
        unimplemented!()
    }

    /// Atomically and durably applies `ws`.
    pub fn kv_commit(&self, ws: WriteSet) -> Result<()> {
        unimplemented!()
    }

    pub fn kv_get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        unimplemented!()
    }

    /// Every (key, value) in `space` whose key starts with `prefix`, in key order.
    pub fn kv_scan(&self, space: Space, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        unimplemented!()
    }

    /// Walks every segment and rollup, checking checksums and decoding.
    pub fn verify(&self) -> Result<VerifyReport> {
        unimplemented!()
    }

    pub fn stats(&self) -> StoreStats {
        unimplemented!()
    }

    /// Makes everything acknowledged durable and stops background work.
    pub fn close(&self) -> Result<()> {
        unimplemented!()
    }
}
