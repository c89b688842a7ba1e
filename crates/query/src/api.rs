//! The query API. See lib.rs.

use std::collections::BTreeMap;

use sextant_model::{Dim, TimeRange};
use sextant_storage::{RowFilter, StorageError, Store};

/// Every metric name a summary, a series or an alert rule may name. Names are
/// the seed's summary fields plus extensions; units are in the names.
pub const METRICS: &[&str] = &[
    "count",
    "errors",
    "error_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_avg_ms",
    "latency_min_ms",
    "latency_max_ms",
    "ttft_p50_ms",
    "ttft_p95_ms",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "avg_prompt_tokens",
    "avg_completion_tokens",
    "avg_tokens",
    "total_cost_usd",
    "avg_cost_usd",
    "cost_unknown_count",
    "quality_count",
    "refusal_rate",
    "hedging_rate",
    "avg_response_length",
    "avg_sentiment",
    "avg_factual_accuracy",
    "feedback_count",
    "avg_rating",
];

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A request parameter is out of range or unknown; `field` names it.
    #[error("invalid {field}: {message}")]
    InvalidInput { field: String, message: String },
    #[error("reading storage: {0}")]
    Storage(#[from] StorageError),
}

/// A summary over `[range.from_ms, range.to_ms)`.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRequest {
    pub range: TimeRange,
    pub filter: RowFilter,
    /// Empty: one overall group.
    pub group_by: Vec<Dim>,
    /// Compute from raw rows (exact percentiles) where raw data is retained.
    pub exact: bool,
}

/// One group's summary. Metrics that need at least one sample are `None`
/// when there is none.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// group_by dim name → value; empty without group_by.
    pub labels: BTreeMap<String, String>,
    pub count: u64,
    pub errors: u64,
    /// Every `METRICS` name → value (absent: no samples for it).
    pub metrics: BTreeMap<&'static str, f64>,
    /// Calls per finish reason.
    pub finish_reasons: BTreeMap<String, u64>,
}

impl Summary {
    /// The value of a `METRICS` name.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied()
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SummaryResult {
    /// Sorted by labels. Without group_by exactly one entry (count 0 when empty).
    pub groups: Vec<Summary>,
    /// True when part of the range could not be answered (the data it needs is
    /// past retention); `coverage_note` says which part.
    pub partial: bool,
    pub coverage_note: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRequest {
    /// A `METRICS` name.
    pub metric: String,
    pub range: TimeRange,
    /// Step, ms; a multiple of one minute.
    pub step_ms: i64,
    pub filter: RowFilter,
    pub group_by: Vec<Dim>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    /// (step start Unix ms, value or None when no samples), oldest first, one per step.
    pub points: Vec<(i64, Option<f64>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeriesResult {
    pub metric: String,
    pub step_ms: i64,
    pub series: Vec<Series>,
    pub partial: bool,
}

/// What the current window is compared against.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    /// The current window shifted back by this many ms (e.g. 7 days).
    Offset(i64),
    Range(TimeRange),
    /// A baseline pinned with [`QueryEngine::save_baseline`].
    Named(String),
}

/// Thresholds; defaults are the seed's.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftConfig {
    /// Absolute change in refusal rate. Default 0.10.
    pub refusal_rate_abs: f64,
    /// Relative change in average response length. Default 0.30.
    pub length_rel: f64,
    /// Absolute change in hedging rate. Default 0.15.
    pub hedging_rate_abs: f64,
    /// Absolute change in error rate. Default 0.05.
    pub error_rate_abs: f64,
    /// KS distance between latency distributions. Default 0.2.
    pub latency_ks: f64,
    /// Relative change in tokens per call. Default 0.30.
    pub tokens_rel: f64,
    /// Relative change in cost per call. Default 0.30.
    pub cost_rel: f64,
    /// Absolute change in average rating. Default 0.5.
    pub rating_abs: f64,
    /// Rate signals drift only when the two-proportion z-test p-value is below this. Default 0.05.
    pub p_value: f64,
    /// Minimum samples per side. Default 10 (the seed's).
    pub min_samples: u64,
}

impl Default for DriftConfig {
    fn default() -> DriftConfig {
        DriftConfig {
            refusal_rate_abs: 0.10,
            length_rel: 0.30,
            hedging_rate_abs: 0.15,
            error_rate_abs: 0.05,
            latency_ks: 0.2,
            tokens_rel: 0.30,
            cost_rel: 0.30,
            rating_abs: 0.5,
            p_value: 0.05,
            min_samples: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DriftRequest {
    pub current: TimeRange,
    pub baseline: Baseline,
    pub filter: RowFilter,
    pub config: DriftConfig,
}

#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalStatus {
    Ok,
    InsufficientData,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DriftSignal {
    /// refusal_rate, hedging_rate, avg_response_length, error_rate, latency,
    /// tokens_per_call, cost_per_call, avg_rating.
    pub name: &'static str,
    pub baseline: Option<f64>,
    pub current: Option<f64>,
    /// current − baseline (absolute signals) or (current − baseline)/baseline (relative ones).
    pub change: Option<f64>,
    /// The compared statistic (|change|, or the KS distance for latency).
    pub statistic: Option<f64>,
    pub threshold: f64,
    /// Two-proportion z-test p-value (rate signals only).
    pub p_value: Option<f64>,
    pub drifted: bool,
    pub status: SignalStatus,
    pub baseline_samples: u64,
    pub current_samples: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DriftReport {
    pub current: TimeRange,
    pub baseline: TimeRange,
    pub signals: Vec<DriftSignal>,
    pub drift_detected: bool,
    /// True when no signal had enough data (the seed's `insufficient_data`).
    pub insufficient_data: bool,
    /// The seed's reason strings, e.g. `refusal_rate_change: 0.05 -> 0.30`.
    pub reasons: Vec<String>,
}

impl DriftReport {
    pub fn signal(&self, name: &str) -> Option<&DriftSignal> {
        self.signals.iter().find(|s| s.name == name)
    }
}

/// Pattern lists; defaults are the seed's exact lists (case-insensitive).
#[derive(Debug, Clone, PartialEq)]
pub struct QualityConfig {
    pub refusal_patterns: Vec<String>,
    pub hedging_patterns: Vec<String>,
    pub positive_words: Vec<String>,
    pub negative_words: Vec<String>,
}

impl Default for QualityConfig {
    fn default() -> QualityConfig {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        QualityConfig {
            refusal_patterns: s(&[
                r"I cannot",
                r"I'm unable to",
                r"I don't have access",
                r"I apologize, but",
                r"As an AI",
                r"I'm not able to",
            ]),
            hedging_patterns: s(&[
                r"I think",
                r"I believe",
                r"probably",
                r"might be",
                r"I'm not sure",
                r"as far as I know",
            ]),
            positive_words: s(&["good", "great", "excellent", "helpful", "correct"]),
            negative_words: s(&["bad", "wrong", "error", "incorrect", "sorry"]),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QualityAnalysis {
    /// Characters (Unicode scalar values), as Python's `len`.
    pub response_length: u64,
    pub has_refusal: bool,
    pub has_hallucination_markers: bool,
    pub sentiment_score: f64,
}

/// Compiled quality patterns.
#[derive(Debug, Clone)]
pub struct QualityAnalyzer {
    _private: (),
}

#[allow(unused_variables)]
impl QualityAnalyzer {
    /// Compiles the patterns once; an invalid pattern is an `InvalidInput` naming it.
    pub fn new(config: &QualityConfig) -> Result<QualityAnalyzer, QueryError> {
        unimplemented!()
    }

    /// The seed's `analyze_response`: same answers for the same text.
    pub fn analyze(&self, response: &str, query: Option<&str>) -> QualityAnalysis {
        unimplemented!()
    }
}

/// The query engine over one store.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    store: Store,
}

#[allow(unused_variables)]
impl QueryEngine {
    pub fn new(store: Store) -> QueryEngine {
        QueryEngine { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn summary(&self, req: &SummaryRequest) -> Result<SummaryResult, QueryError> {
        unimplemented!()
    }

    pub fn series(&self, req: &SeriesRequest) -> Result<SeriesResult, QueryError> {
        unimplemented!()
    }

    pub fn drift(&self, req: &DriftRequest) -> Result<DriftReport, QueryError> {
        unimplemented!()
    }

    /// Pins a named baseline range (persisted; survives restart).
    pub fn save_baseline(&self, name: &str, range: TimeRange) -> Result<(), QueryError> {
        unimplemented!()
    }

    /// Every pinned baseline, by name.
    pub fn baselines(&self) -> Result<Vec<(String, TimeRange)>, QueryError> {
        unimplemented!()
    }

    /// Removes a pinned baseline; false when there was none.
    pub fn delete_baseline(&self, name: &str) -> Result<bool, QueryError> {
        unimplemented!()
    }
}
