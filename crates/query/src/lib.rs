//! sextant-query: windowed summaries, time series, drift and quality signals.
//!
//! Answers every question from the coarsest storage tier that is exact for it
//! (day, hour, minute rollups), and from raw rows only for unaligned edges and
//! non-rollup dimensions. Pure over the storage read API: no HTTP, no sled.
//!
//! Module map: `plan` (the pure tier planner), `acc` (the accumulator that
//! merges rollups and raw rows and computes every metric), `exec` (runs a
//! plan against storage, per group and series step), `drift` (signals and
//! tests), `quality` (the seed's response heuristics), `stats` (z-test, KS).
//!
//! **Invariant:** counts and sums are exact whichever tier serves them; an
//! answer that could not read part of its range says so (`partial`), never
//! undercounts silently.

mod acc;
mod api;
mod dist;
mod drift;
mod exec;
mod memory;
mod plan;
mod quality;
mod source;
mod stats;

pub use api::{
    window_range, Baseline, DriftConfig, DriftReport, DriftRequest, DriftSignal, QualityAnalysis,
    QualityAnalyzer, QualityConfig, QueryEngine, QueryError, SeedDriftMetrics, Series,
    SeriesRequest, SeriesResult, SignalStatus, Summary, SummaryRequest, SummaryResult,
    MAX_SERIES_POINTS, METRICS,
};
pub use memory::MemoryStore;
pub use plan::{plan, rollups_serve, Part, PartSource, Plan, RawReason};

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
