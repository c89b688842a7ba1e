//! Store configuration. Every option has its default in its doc comment.

use sextant_model::{Dim, DAY_MS, HOUR_MS};

/// When an append is acknowledged.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync (sled `flush`) before acknowledging; one flush covers every batch
    /// waiting (group commit). The default.
    Batch,
    /// Acknowledge once the batch is in sled's memory; fsync every
    /// `interval_ms`. A crash loses at most the last `interval_ms` of acks.
    Interval { interval_ms: u64 },
}

/// How long each tier is kept, ms; `None` = forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Raw segments (and quality/feedback rows). Default 30 days.
    pub raw_ms: Option<i64>,
    /// Minute rollups. Default 30 days.
    pub minute_ms: Option<i64>,
    /// Hour rollups. Default 400 days.
    pub hour_ms: Option<i64>,
    /// Day rollups. Default forever. Days are deleted only once their
    /// week is rolled up, so a shorter value keeps them up to ~7 days more.
    pub day_ms: Option<i64>,
    /// Week rollups. Default forever.
    pub week_ms: Option<i64>,
    /// Traces. Default 30 days.
    pub traces_ms: Option<i64>,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            raw_ms: Some(30 * DAY_MS),
            minute_ms: Some(30 * DAY_MS),
            hour_ms: Some(400 * DAY_MS),
            day_ms: None,
            week_ms: None,
            traces_ms: Some(30 * DAY_MS),
        }
    }
}

/// t-digest sizes (maximum centroids) per tier: bigger is more accurate and
/// larger on disk. See docs/format.md for the accuracy each size buys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestSizes {
    /// Default 50.
    pub minute: usize,
    /// Default 200 (100 gives p50 rank errors up to 0.011 per hour; see
    /// docs/format/rollup.md).
    pub hour: usize,
    /// Default 200.
    pub day: usize,
    /// Default 200.
    pub week: usize,
}

impl Default for DigestSizes {
    fn default() -> DigestSizes {
        DigestSizes {
            minute: 50,
            hour: 200,
            day: 200,
            week: 200,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Default [`Durability::Batch`].
    pub durability: Durability,
    /// Dimensions rollups are grouped by, in key order. Default `[Model, Endpoint]`.
    /// Fixed when a store is created; reopening with other dims is an error.
    pub rollup_dims: Vec<Dim>,
    pub retention: Retention,
    pub digest_sizes: DigestSizes,
    /// Seal the head when it holds this many events. Default 200,000.
    pub seal_max_events: usize,
    /// Seal the head when its oldest unsealed event arrived this long ago, ms. Default 60,000.
    pub seal_max_age_ms: i64,
    /// Hours, days and weeks are rolled up once they closed this long ago, ms. Default 120,000.
    pub downsample_grace_ms: i64,
    /// Run seal / downsample / retention in a background thread. Default true;
    /// tests drive them by hand with an injected clock.
    pub background_maintenance: bool,
    /// Minute rollups of this most recent window (ending at the newest
    /// stored minute) are also held in memory, byte for byte with their
    /// latency and ttft digests decoded, and read from there, ms. Default 90,000,000 (25 hours: a last-24-hours query stays
    /// covered). 0 disables the mirror.
    pub hot_minutes_window_ms: i64,
    /// At most this many bytes of minute rollups (keys + values + decoded
    /// digests, 4 bytes per centroid mean and weight, + ~220 per entry) are
    /// held in memory; the oldest minutes leave first. Default
    /// 134,217,728 (128 MiB). 0 disables the mirror.
    pub hot_minutes_max_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            durability: Durability::Batch,
            rollup_dims: vec![Dim::Model, Dim::Endpoint],
            retention: Retention::default(),
            digest_sizes: DigestSizes::default(),
            seal_max_events: 200_000,
            seal_max_age_ms: 60_000,
            downsample_grace_ms: 120_000,
            background_maintenance: true,
            hot_minutes_window_ms: 25 * HOUR_MS,
            hot_minutes_max_bytes: 128 << 20,
        }
    }
}
