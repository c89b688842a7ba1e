//! The read interface the engine needs from storage, as a trait so the
//! executor can be tested against an in-memory model as well as the real
//! [`Store`].

use sextant_model::{Dim, Feedback, LlmCall, Quality, Tier, TimeRange};
use sextant_storage::{
    Coverage, GroupKey, PartSink, RequestRef, RollupView, RowFilter, StorageError, Store,
};

/// A rollup read's callback: an error (e.g. from decoding a digest of the
/// view) stops the read and is returned by it.
pub(crate) type RollupFn<'a> =
    dyn FnMut(i64, &GroupKey, &RollupView<'_>) -> Result<(), StorageError> + 'a;

/// What the executor reads. Mirrors `Store`'s read methods one for one.
pub(crate) trait DataSource: Sync {
    fn coverage(&self) -> Coverage;
    fn rollup_dims(&self) -> Vec<Dim>;
    fn rollups(
        &self,
        tier: Tier,
        range: TimeRange,
        filter: &RowFilter,
        f: &mut RollupFn<'_>,
    ) -> Result<(), StorageError>;
    fn scan_calls(
        &self,
        range: TimeRange,
        filter: &RowFilter,
        f: &mut dyn FnMut(&LlmCall),
    ) -> Result<(), StorageError>;
    /// Reads a raw part of a rollup-served query through minute rollups
    /// where they provably hold only events inside it (see
    /// [`Store::read_part`]). `Ok(false)`: not supported by this source; the
    /// caller scans raw rows instead.
    fn read_part(
        &self,
        _range: TimeRange,
        _filter: &RowFilter,
        _sink: &mut dyn PartSink,
    ) -> Result<bool, StorageError> {
        Ok(false)
    }
    fn scan_quality(
        &self,
        range: TimeRange,
        f: &mut dyn FnMut(&Quality, Option<&RequestRef>),
    ) -> Result<(), StorageError>;
    fn scan_feedback(
        &self,
        range: TimeRange,
        f: &mut dyn FnMut(&Feedback, Option<&RequestRef>),
    ) -> Result<(), StorageError>;
}

impl DataSource for Store {
    fn coverage(&self) -> Coverage {
        Store::coverage(self)
    }
    fn rollup_dims(&self) -> Vec<Dim> {
        Store::rollup_dims(self).to_vec()
    }
    fn rollups(
        &self,
        tier: Tier,
        range: TimeRange,
        filter: &RowFilter,
        f: &mut RollupFn<'_>,
    ) -> Result<(), StorageError> {
        Store::scan_rollups(self, tier, range, filter, f)
    }
    fn scan_calls(
        &self,
        range: TimeRange,
        filter: &RowFilter,
        f: &mut dyn FnMut(&LlmCall),
    ) -> Result<(), StorageError> {
        Store::scan_calls(self, range, filter, f)
    }
    fn read_part(
        &self,
        range: TimeRange,
        filter: &RowFilter,
        sink: &mut dyn PartSink,
    ) -> Result<bool, StorageError> {
        Store::read_part(self, range, filter, sink).map(|_| true)
    }
    fn scan_quality(
        &self,
        range: TimeRange,
        f: &mut dyn FnMut(&Quality, Option<&RequestRef>),
    ) -> Result<(), StorageError> {
        Store::scan_quality(self, range, f)
    }
    fn scan_feedback(
        &self,
        range: TimeRange,
        f: &mut dyn FnMut(&Feedback, Option<&RequestRef>),
    ) -> Result<(), StorageError> {
        Store::scan_feedback(self, range, f)
    }
}
