//! sextant-query: windowed summaries, time series, drift and quality signals.
//!
//! Answers every question from the coarsest storage tier that is exact for it
//! (day, hour, minute rollups), and from raw rows only for unaligned edges and
//! non-rollup dimensions. Pure over the storage read API: no HTTP, no sled.
