//! sextant-query: windowed summaries, time series, drift and quality signals.
//!
//! Answers every question from the coarsest storage tier that is exact for it
//! (day, hour, minute rollups), and from raw rows only for unaligned edges and
//! non-rollup dimensions. Pure over the storage read API: no HTTP, no sled.
//!
//! OWNER: query helper. This file defines the contract the alert and server
//! crates code against; the implementation fills in the bodies.

mod api;

pub use api::{
    Baseline, DriftConfig, DriftReport, DriftRequest, DriftSignal, QualityAnalysis, QualityConfig,
    QualityAnalyzer, QueryEngine, QueryError, Series, SeriesRequest, SeriesResult, SignalStatus,
    Summary, SummaryRequest, SummaryResult, METRICS,
};
