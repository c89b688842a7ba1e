//! The query API. See lib.rs.

use std::collections::BTreeMap;

use sextant_model::{Dim, TimeRange};
use sextant_storage::{ErrorKind, RowFilter, Space, StorageError, Store, WriteSet};

use crate::acc::{Acc, Needs};
use crate::exec::{collect, Grid, Query};
use crate::source::DataSource;

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
    /// A named thing (a pinned baseline) does not exist.
    #[error("no {what} named {name:?}")]
    NotFound { what: &'static str, name: String },
    /// A stored value (a pinned baseline) does not decode.
    #[error("corrupted {what} {name:?}: {reason}")]
    Corrupted {
        what: &'static str,
        name: String,
        reason: String,
    },
    #[error("reading storage: {0}")]
    Storage(#[from] StorageError),
}

impl QueryError {
    /// The class of failure (the server maps it to an HTTP status).
    pub fn kind(&self) -> ErrorKind {
        match self {
            QueryError::InvalidInput { .. } => ErrorKind::InvalidInput,
            QueryError::NotFound { .. } => ErrorKind::NotFound,
            QueryError::Corrupted { .. } => ErrorKind::Corrupted,
            QueryError::Storage(e) => e.kind(),
        }
    }

    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> QueryError {
        QueryError::InvalidInput {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Most points a series answer may hold (steps × 1 per group).
pub const MAX_SERIES_POINTS: usize = 10_000;

/// The seed's window: calls with `timestamp > now − window_minutes` and at
/// most `now`, as a half-open range `[now − window + 1 ms, now + 1 ms)`.
pub fn window_range(now_ms: i64, window_minutes: u32) -> TimeRange {
    let window_ms = i64::from(window_minutes) * sextant_model::MINUTE_MS;
    TimeRange::new(now_ms - window_ms + 1, now_ms + 1)
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
    /// Sorted by labels; without group_by exactly one series.
    pub series: Vec<Series>,
    pub partial: bool,
    /// Which part could not be answered, when `partial`.
    pub coverage_note: Option<String>,
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
    /// The seed's reason strings, e.g. `refusal_rate_change: 0.05 -> 0.30`,
    /// for the seed's three signals first (in the seed's order), then one
    /// per other drifted signal.
    pub reasons: Vec<String>,
    /// True when part of either window could not be answered (past retention).
    pub partial: bool,
}

/// The seed's `metrics` object of `GET /v1/drift`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeedDriftMetrics {
    pub baseline_refusal_rate: f64,
    pub current_refusal_rate: f64,
    pub baseline_avg_length: f64,
    pub current_avg_length: f64,
}

impl DriftReport {
    pub fn signal(&self, name: &str) -> Option<&DriftSignal> {
        self.signals.iter().find(|s| s.name == name)
    }

    /// The seed's `insufficient_data` test: fewer than `min_samples` quality
    /// records on either side (the seed's three signals all count quality records).
    pub fn seed_insufficient_data(&self) -> bool {
        self.signal("refusal_rate")
            .is_none_or(|s| s.status == SignalStatus::InsufficientData)
    }

    /// The seed's `metrics` object; `None` when [`Self::seed_insufficient_data`].
    pub fn seed_metrics(&self) -> Option<SeedDriftMetrics> {
        if self.seed_insufficient_data() {
            return None;
        }
        let refusal = self.signal("refusal_rate")?;
        let length = self.signal("avg_response_length")?;
        Some(SeedDriftMetrics {
            baseline_refusal_rate: refusal.baseline?,
            current_refusal_rate: refusal.current?,
            baseline_avg_length: length.baseline?,
            current_avg_length: length.current?,
        })
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
    compiled: crate::quality::Compiled,
}

impl QualityAnalyzer {
    /// Compiles the patterns once; an invalid pattern is an `InvalidInput` naming it.
    pub fn new(config: &QualityConfig) -> Result<QualityAnalyzer, QueryError> {
        Ok(QualityAnalyzer {
            compiled: crate::quality::Compiled::new(config)?,
        })
    }

    /// The seed's `analyze_response`: same answers for the same text. The
    /// query is accepted for the seed's signature and not used (nor is it by the seed).
    pub fn analyze(&self, response: &str, _query: Option<&str>) -> QualityAnalysis {
        self.compiled.analyze(response)
    }
}

/// The query engine over one store.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    store: Store,
}

impl QueryEngine {
    pub fn new(store: Store) -> QueryEngine {
        QueryEngine { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn summary(&self, req: &SummaryRequest) -> Result<SummaryResult, QueryError> {
        summary_on(&self.store, req)
    }

    /// A summary holding only the listed `METRICS` (and count, errors,
    /// finish reasons): cheaper when percentiles of only one kind are needed,
    /// e.g. by an alert rule. An unknown name is `InvalidInput`.
    pub fn summary_for(
        &self,
        req: &SummaryRequest,
        metrics: &[&str],
    ) -> Result<SummaryResult, QueryError> {
        summary_metrics_on(&self.store, req, metrics)
    }

    pub fn series(&self, req: &SeriesRequest) -> Result<SeriesResult, QueryError> {
        series_on(&self.store, req)
    }

    pub fn drift(&self, req: &DriftRequest) -> Result<DriftReport, QueryError> {
        let baseline = match &req.baseline {
            Baseline::Named(name) => self
                .baselines()?
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, r)| r)
                .ok_or_else(|| QueryError::NotFound {
                    what: "baseline",
                    name: name.clone(),
                })?,
            other => resolve_baseline(req.current, other)?,
        };
        drift_on(&self.store, req, baseline)
    }

    /// Pins a named baseline range (persisted; survives restart).
    pub fn save_baseline(&self, name: &str, range: TimeRange) -> Result<(), QueryError> {
        check_baseline_name(name)?;
        check_range(range)?;
        if range.is_empty() {
            return Err(QueryError::invalid(
                "range",
                "a baseline range must not be empty",
            ));
        }
        let mut ws = WriteSet::default();
        ws.put(Space::Baselines, name.as_bytes(), encode_baseline(range));
        self.store.kv_commit(ws)?;
        Ok(())
    }

    /// Every pinned baseline, by name.
    pub fn baselines(&self) -> Result<Vec<(String, TimeRange)>, QueryError> {
        self.store
            .kv_scan(Space::Baselines, b"")?
            .into_iter()
            .map(|(k, v)| {
                let name = String::from_utf8_lossy(&k).into_owned();
                let range = decode_baseline(&v).map_err(|reason| QueryError::Corrupted {
                    what: "baseline",
                    name: name.clone(),
                    reason,
                })?;
                Ok((name, range))
            })
            .collect()
    }

    /// Removes a pinned baseline; false when there was none.
    pub fn delete_baseline(&self, name: &str) -> Result<bool, QueryError> {
        if self
            .store
            .kv_get(Space::Baselines, name.as_bytes())?
            .is_none()
        {
            return Ok(false);
        }
        let mut ws = WriteSet::default();
        ws.delete(Space::Baselines, name.as_bytes());
        self.store.kv_commit(ws)?;
        Ok(true)
    }
}

/// Baseline value layout: version byte 1, then `from_ms` and `to_ms` as i64 big-endian.
pub(crate) fn encode_baseline(range: TimeRange) -> Vec<u8> {
    let mut v = Vec::with_capacity(17);
    v.push(1u8);
    v.extend_from_slice(&range.from_ms.to_be_bytes());
    v.extend_from_slice(&range.to_ms.to_be_bytes());
    v
}

pub(crate) fn decode_baseline(bytes: &[u8]) -> Result<TimeRange, String> {
    match bytes {
        [1, rest @ ..] if rest.len() == 16 => {
            let mut a = [0u8; 8];
            let mut b = [0u8; 8];
            a.copy_from_slice(&rest[..8]);
            b.copy_from_slice(&rest[8..]);
            Ok(TimeRange::new(i64::from_be_bytes(a), i64::from_be_bytes(b)))
        }
        [1, ..] => Err(format!("expected 17 bytes, found {}", bytes.len())),
        [v, ..] => Err(format!("unknown baseline format version {v}")),
        [] => Err("empty value".into()),
    }
}

fn check_baseline_name(name: &str) -> Result<(), QueryError> {
    if name.is_empty() || name.len() > 200 {
        return Err(QueryError::invalid(
            "name",
            "a baseline name must be 1 to 200 bytes",
        ));
    }
    Ok(())
}

fn check_range(range: TimeRange) -> Result<(), QueryError> {
    let limit = crate::plan::TS_LIMIT;
    if range.from_ms.abs() > limit {
        return Err(QueryError::invalid("from", "timestamp out of range"));
    }
    if range.to_ms.abs() > limit {
        return Err(QueryError::invalid("to", "timestamp out of range"));
    }
    if range.to_ms < range.from_ms {
        return Err(QueryError::invalid("to", "must not be before from"));
    }
    Ok(())
}

/// The baseline range of an offset or explicit baseline.
pub(crate) fn resolve_baseline(current: TimeRange, b: &Baseline) -> Result<TimeRange, QueryError> {
    match b {
        Baseline::Offset(off) => {
            if *off <= 0 || *off > crate::plan::TS_LIMIT {
                return Err(QueryError::invalid(
                    "baseline",
                    "the offset must be positive",
                ));
            }
            Ok(TimeRange::new(current.from_ms - off, current.to_ms - off))
        }
        Baseline::Range(r) => Ok(*r),
        Baseline::Named(name) => Err(QueryError::NotFound {
            what: "baseline",
            name: name.clone(),
        }),
    }
}

fn labels_map(group_by: &[Dim], values: &[String]) -> BTreeMap<String, String> {
    group_by
        .iter()
        .zip(values)
        .map(|(d, v)| (d.name(), v.clone()))
        .collect()
}

pub(crate) fn summary_on(
    src: &dyn DataSource,
    req: &SummaryRequest,
) -> Result<SummaryResult, QueryError> {
    summary_with(src, req, METRICS)
}

pub(crate) fn summary_metrics_on(
    src: &dyn DataSource,
    req: &SummaryRequest,
    metrics: &[&str],
) -> Result<SummaryResult, QueryError> {
    let names = metrics
        .iter()
        .map(|m| {
            METRICS
                .iter()
                .copied()
                .find(|x| x == m)
                .ok_or_else(|| QueryError::invalid("metric", format!("unknown metric {m:?}")))
        })
        .collect::<Result<Vec<&'static str>, QueryError>>()?;
    summary_with(src, req, &names)
}

fn summary_with(
    src: &dyn DataSource,
    req: &SummaryRequest,
    names: &[&'static str],
) -> Result<SummaryResult, QueryError> {
    let needs = Needs {
        finish_reasons: true,
        ..Needs::for_metrics(names.iter().copied())
    };
    check_range(req.range)?;
    let collected = collect(
        src,
        &Query {
            grid: Grid::single(req.range),
            filter: &req.filter,
            group_by: &req.group_by,
            exact: req.exact,
            needs,
            finish: None,
        },
    )?;
    let note = collected.coverage_note();
    let mut groups: Vec<Summary> = collected
        .groups
        .iter()
        .enumerate()
        .map(|(g, (values, _))| {
            let empty = Acc::new(needs);
            let acc = collected.acc(g, 0).unwrap_or(&empty);
            summary_of(labels_map(&req.group_by, values), acc, names)
        })
        .collect();
    if req.group_by.is_empty() && groups.is_empty() {
        groups.push(summary_of(BTreeMap::new(), &Acc::new(needs), names));
    }
    groups.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(SummaryResult {
        groups,
        partial: note.is_some(),
        coverage_note: note,
    })
}

fn summary_of(labels: BTreeMap<String, String>, acc: &Acc, names: &[&'static str]) -> Summary {
    Summary {
        labels,
        count: acc.count,
        errors: acc.errors,
        metrics: acc.metrics(names),
        finish_reasons: acc.finish_reasons.clone(),
    }
}

pub(crate) fn series_on(
    src: &dyn DataSource,
    req: &SeriesRequest,
) -> Result<SeriesResult, QueryError> {
    check_range(req.range)?;
    let Some(&metric) = METRICS.iter().find(|m| **m == req.metric) else {
        return Err(QueryError::invalid(
            "metric",
            format!("unknown metric {:?}", req.metric),
        ));
    };
    if req.step_ms <= 0 || req.step_ms % sextant_model::MINUTE_MS != 0 {
        return Err(QueryError::invalid(
            "step",
            "must be a positive whole number of minutes",
        ));
    }
    let grid = Grid::steps(req.range, req.step_ms);
    if grid.n > MAX_SERIES_POINTS {
        return Err(QueryError::invalid(
            "step",
            format!(
                "{} points exceed the limit of {MAX_SERIES_POINTS}; use a larger step",
                grid.n
            ),
        ));
    }
    let mut needs = Needs::for_metric(metric);
    // A percentile reads its distribution alone.
    needs.digests_only = needs.latency || needs.ttft;
    let collected = collect(
        src,
        &Query {
            grid,
            filter: &req.filter,
            group_by: &req.group_by,
            exact: false,
            needs,
            // The one metric read below, as METRICS' `&'static str`.
            finish: METRICS.iter().copied().find(|m| *m == metric),
        },
    )?;
    let note = collected.coverage_note();
    let empty_value = Acc::new(needs).metric(metric);
    let points_of = |g: Option<usize>| -> Vec<(i64, Option<f64>)> {
        (0..grid.n)
            .map(|i| {
                let t = req.range.from_ms + i as i64 * req.step_ms;
                let acc = g.and_then(|g| collected.acc(g, i));
                (t, acc.map_or(empty_value, |a| a.metric(metric)))
            })
            .collect()
    };
    let mut series: Vec<Series> = collected
        .groups
        .iter()
        .enumerate()
        .map(|(g, (values, _))| Series {
            labels: labels_map(&req.group_by, values),
            points: points_of(Some(g)),
        })
        .collect();
    if req.group_by.is_empty() && series.is_empty() {
        series.push(Series {
            labels: BTreeMap::new(),
            points: points_of(None),
        });
    }
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(SeriesResult {
        metric: metric.to_string(),
        step_ms: req.step_ms,
        series,
        partial: note.is_some(),
        coverage_note: note,
    })
}

fn window_acc(
    src: &dyn DataSource,
    range: TimeRange,
    filter: &RowFilter,
) -> Result<(Acc, bool), QueryError> {
    check_range(range)?;
    let needs = Needs {
        latency: true,
        ..Needs::default()
    };
    let mut c = collect(
        src,
        &Query {
            grid: Grid::single(range),
            filter,
            group_by: &[],
            exact: false,
            needs,
            finish: None,
        },
    )?;
    let partial = !c.missing.is_empty();
    let acc = match c.groups.iter().position(|(labels, _)| labels.is_empty()) {
        Some(g) => c.take_acc(g, 0, needs),
        None => Acc::new(needs),
    };
    Ok((acc, partial))
}

pub(crate) fn drift_on(
    src: &dyn DataSource,
    req: &DriftRequest,
    baseline: TimeRange,
) -> Result<DriftReport, QueryError> {
    let (cur, cur_partial) = window_acc(src, req.current, &req.filter)?;
    let (base, base_partial) = window_acc(src, baseline, &req.filter)?;
    let c = crate::drift::compare(&base, &cur, &req.config);
    Ok(DriftReport {
        current: req.current,
        baseline,
        signals: c.signals,
        drift_detected: c.drift_detected,
        insufficient_data: c.insufficient_data,
        reasons: c.reasons,
        partial: cur_partial || base_partial,
    })
}
