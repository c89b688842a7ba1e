//! An in-memory store of pre-built rollups and raw calls, answering the same
//! queries as [`crate::QueryEngine`] through the same planner and executor.
//!
//! For benchmarks (years of rollups without ingesting hundreds of millions of
//! events) and tests. Not a production store: nothing is persisted.
//!
//! **Invariant:** what it answers depends only on what was inserted and on
//! the coverage set with [`MemoryStore::set_coverage`]; the planner decides
//! which tier is read, exactly as over a real store.

use std::collections::BTreeMap;

use sextant_model::{Dim, Feedback, LlmCall, Quality, Tier, TimeRange};
use sextant_storage::{Coverage, GroupKey, RequestRef, Rollup, RowFilter, StorageError};

use crate::api::{
    drift_on, series_on, summary_on, DriftReport, DriftRequest, QueryError, SeriesRequest,
    SeriesResult, SummaryRequest, SummaryResult,
};
use crate::source::{DataSource, RollupFn};

/// Rollups per tier plus raw calls. Raw quality and feedback rows are not
/// held: rollups carry them.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    dims: Vec<Dim>,
    /// Indexed by tier: minute, hour, day, week.
    rollups: [BTreeMap<(i64, GroupKey), Rollup>; 4],
    calls: Vec<LlmCall>,
    sorted: bool,
    coverage: Coverage,
}

fn tier_index(t: Tier) -> usize {
    match t {
        Tier::Minute => 0,
        Tier::Hour => 1,
        Tier::Day => 2,
        // Tier::Week (`Tier` is non-exhaustive).
        _ => 3,
    }
}

impl MemoryStore {
    /// An empty store whose rollups are grouped by `dims`; coverage: everything.
    pub fn new(dims: Vec<Dim>) -> MemoryStore {
        MemoryStore {
            dims,
            rollups: Default::default(),
            calls: Vec::new(),
            sorted: true,
            coverage: Coverage {
                raw_from_ms: i64::MIN / 4,
                minute_from_ms: i64::MIN / 4,
                hour_from_ms: i64::MIN / 4,
                hour_until_ms: i64::MAX / 4,
                day_from_ms: i64::MIN / 4,
                day_until_ms: i64::MAX / 4,
                week_from_ms: i64::MIN / 4,
                week_until_ms: i64::MAX / 4,
            },
        }
    }

    pub fn set_coverage(&mut self, coverage: Coverage) {
        self.coverage = coverage;
    }

    /// Merges `rollup` into the bucket `(tier, bucket_start_ms, group)`.
    ///
    /// The bucket is kept as [`sextant_storage::Store::rollups`] hands rollups
    /// out: decoded from its encoding, its digests undecoded stored runs (so
    /// reads pay the same digest decoding as over the real store).
    pub fn add_rollup(
        &mut self,
        tier: Tier,
        bucket_start_ms: i64,
        group: GroupKey,
        rollup: &Rollup,
    ) {
        let map = &mut self.rollups[tier_index(tier)];
        let key = (bucket_start_ms, group);
        let mut merged = map
            .remove(&key)
            .unwrap_or_else(|| Rollup::new(rollup.digest_size));
        merged.merge(rollup);
        merged.compress_digests();
        let stored = Rollup::decode(&merged.encode()).unwrap_or(merged);
        map.insert(key, stored);
    }

    pub fn add_calls(&mut self, calls: impl IntoIterator<Item = LlmCall>) {
        self.calls.extend(calls);
        self.sorted = false;
    }

    /// Sorts the raw calls by timestamp (done once after loading).
    pub fn finish_loading(&mut self) {
        if !self.sorted {
            self.calls.sort_by_key(|c| c.timestamp_ms);
            self.sorted = true;
        }
    }

    pub fn summary(&self, req: &SummaryRequest) -> Result<SummaryResult, QueryError> {
        summary_on(self, req)
    }

    /// See [`crate::QueryEngine::summary_for`].
    pub fn summary_for(
        &self,
        req: &SummaryRequest,
        metrics: &[&str],
    ) -> Result<SummaryResult, QueryError> {
        crate::api::summary_metrics_on(self, req, metrics)
    }

    pub fn series(&self, req: &SeriesRequest) -> Result<SeriesResult, QueryError> {
        series_on(self, req)
    }

    /// Drift of `req.current` against the explicit `baseline` range.
    pub fn drift(
        &self,
        req: &DriftRequest,
        baseline: TimeRange,
    ) -> Result<DriftReport, QueryError> {
        drift_on(self, req, baseline)
    }

    fn key_passes(&self, filter: &RowFilter, key: &GroupKey) -> bool {
        filter.equals.iter().all(|(d, values)| {
            let v = self
                .dims
                .iter()
                .position(|x| x == d)
                .and_then(|i| key.0.get(i))
                .map_or("", String::as_str);
            values.iter().any(|x| x == v)
        })
    }

    fn calls_in(&self, range: TimeRange) -> &[LlmCall] {
        assert!(self.sorted, "MemoryStore::finish_loading was not called");
        let a = self
            .calls
            .partition_point(|c| c.timestamp_ms < range.from_ms);
        let b = self.calls.partition_point(|c| c.timestamp_ms < range.to_ms);
        &self.calls[a..b.max(a)]
    }
}

impl DataSource for MemoryStore {
    fn coverage(&self) -> Coverage {
        self.coverage
    }

    fn rollup_dims(&self) -> Vec<Dim> {
        self.dims.clone()
    }

    fn rollups(
        &self,
        tier: Tier,
        range: TimeRange,
        filter: &RowFilter,
        f: &mut RollupFn<'_>,
    ) -> Result<(), StorageError> {
        if range.is_empty() {
            return Ok(());
        }
        let lo = (range.from_ms, GroupKey::default());
        let hi = (range.to_ms, GroupKey::default());
        for ((b, key), r) in self.rollups[tier_index(tier)].range(lo..hi) {
            if self.key_passes(filter, key) {
                f(*b, key, r);
            }
        }
        Ok(())
    }

    fn scan_calls(
        &self,
        range: TimeRange,
        filter: &RowFilter,
        f: &mut dyn FnMut(&LlmCall),
    ) -> Result<(), StorageError> {
        for c in self.calls_in(range) {
            if filter.matches(c) {
                f(c);
            }
        }
        Ok(())
    }

    fn scan_quality(
        &self,
        _range: TimeRange,
        _f: &mut dyn FnMut(&Quality, Option<&RequestRef>),
    ) -> Result<(), StorageError> {
        Ok(())
    }

    fn scan_feedback(
        &self,
        _range: TimeRange,
        _f: &mut dyn FnMut(&Feedback, Option<&RequestRef>),
    ) -> Result<(), StorageError> {
        Ok(())
    }
}
