//! Where rule values come from. [`MetricSource`] is the evaluator's only
//! input besides the clock; [`QuerySource`] answers it from the query engine,
//! running one summary per distinct (window, filters, group_by) per cycle so
//! rules that share a shape share a query.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Arc;

use sextant_model::{Dim, TimeRange};
use sextant_query::{
    Baseline, DriftConfig, DriftRequest, QueryEngine, SignalStatus, SummaryRequest,
};
use sextant_storage::RowFilter;

use crate::api::Rule;
use crate::machine::{GroupObservation, Labels, MetricValues, Observation, RuleResult};

/// Answers every rule of one evaluation cycle.
pub trait MetricSource: Send + Sync + Debug {
    /// One result per rule, in the order of `rules`, over the window ending at `now_ms`.
    fn observe(&self, rules: &[&Rule], now_ms: i64) -> Vec<RuleResult>;

    /// The same answers as [`observe`](MetricSource::observe), but with each
    /// group's labels behind an `Arc`, so rules reading the same query share
    /// one copy instead of receiving one each (1,000 rules × 20 groups would
    /// otherwise copy 20,000 label maps per cycle). The evaluator calls this
    /// first and falls back to `observe` on `None` (the default).
    fn observe_shared(&self, _rules: &[&Rule], _now_ms: i64) -> Option<Vec<SharedRuleResult>> {
        None
    }
}

/// One group of a rule's result, its labels shared (see
/// [`MetricSource::observe_shared`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SharedGroup {
    pub labels: Arc<Labels>,
    pub observation: Observation,
    /// Other metrics of the same group (optional; for templates).
    pub metrics: Option<MetricValues>,
}

impl From<GroupObservation> for SharedGroup {
    fn from(g: GroupObservation) -> SharedGroup {
        SharedGroup {
            labels: Arc::new(g.labels),
            observation: g.observation,
            metrics: g.metrics,
        }
    }
}

/// A rule's result with shared labels.
pub type SharedRuleResult = Result<Vec<SharedGroup>, String>;

/// What the evaluator needs of a group, owned or shared.
pub(crate) trait Group {
    fn labels(&self) -> &Labels;
    fn observation(&self) -> &Observation;
    fn metrics(&self) -> Option<&MetricValues>;
    fn into_labels(self) -> Labels;
}

impl Group for GroupObservation {
    fn labels(&self) -> &Labels {
        &self.labels
    }
    fn observation(&self) -> &Observation {
        &self.observation
    }
    fn metrics(&self) -> Option<&MetricValues> {
        self.metrics.as_ref()
    }
    fn into_labels(self) -> Labels {
        self.labels
    }
}

impl Group for SharedGroup {
    fn labels(&self) -> &Labels {
        &self.labels
    }
    fn observation(&self) -> &Observation {
        &self.observation
    }
    fn metrics(&self) -> Option<&MetricValues> {
        self.metrics.as_ref()
    }
    fn into_labels(self) -> Labels {
        Arc::unwrap_or_clone(self.labels)
    }
}

/// Drift baselines for `drift.*` rules: the same window 7 days earlier.
const DRIFT_BASELINE_OFFSET_MS: i64 = 7 * 86_400_000;

/// [`MetricSource`] over a [`QueryEngine`].
#[derive(Debug, Clone)]
pub struct QuerySource {
    engine: QueryEngine,
}

impl QuerySource {
    pub fn new(engine: QueryEngine) -> QuerySource {
        QuerySource { engine }
    }
}

pub(crate) fn row_filter(filters: &BTreeMap<String, String>) -> RowFilter {
    let mut f = RowFilter::default();
    for (k, v) in filters {
        if k == "error" {
            f.error = Some(v == "true");
        } else if let Some(d) = Dim::parse(k) {
            f.equals.push((d, vec![v.clone()]));
        }
    }
    f
}

/// The sample count behind a metric: quality and feedback metrics count
/// their own records, everything else counts calls.
fn samples_for(metric: &str, count: u64, metrics: &BTreeMap<&'static str, f64>) -> u64 {
    let from = |name: &str| metrics.get(name).map_or(0, |v| v.max(0.0) as u64);
    match metric {
        "refusal_rate"
        | "hedging_rate"
        | "avg_response_length"
        | "avg_sentiment"
        | "avg_factual_accuracy" => from("quality_count"),
        "avg_rating" => from("feedback_count"),
        _ => count,
    }
}

type ShapeKey = (u32, Vec<(String, String)>, Vec<String>);
type ShapeGroups = Result<Vec<(Arc<Labels>, u64, MetricValues)>, String>;

impl MetricSource for QuerySource {
    fn observe(&self, rules: &[&Rule], now_ms: i64) -> Vec<RuleResult> {
        self.answer(
            rules,
            now_ms,
            |labels, observation, metrics| GroupObservation {
                labels: Labels::clone(labels),
                observation,
                metrics: Some(metrics.clone()),
            },
            |g| g,
        )
    }

    fn observe_shared(&self, rules: &[&Rule], now_ms: i64) -> Option<Vec<SharedRuleResult>> {
        Some(self.answer(
            rules,
            now_ms,
            |labels, observation, metrics| SharedGroup {
                labels: labels.clone(),
                observation,
                metrics: Some(metrics.clone()),
            },
            SharedGroup::from,
        ))
    }
}

impl QuerySource {
    /// Answers `rules`, one summary per distinct shape; `make` builds a
    /// group of a summary-backed rule, `from_drift` converts a drift rule's.
    fn answer<G>(
        &self,
        rules: &[&Rule],
        now_ms: i64,
        make: impl Fn(&Arc<Labels>, Observation, &MetricValues) -> G,
        from_drift: impl Fn(GroupObservation) -> G,
    ) -> Vec<Result<Vec<G>, String>> {
        let mut cache: HashMap<ShapeKey, ShapeGroups> = HashMap::new();
        rules
            .iter()
            .map(|rule| {
                let from_ms = now_ms - i64::from(rule.window_minutes) * 60_000;
                if let Some(signal) = rule.metric.strip_prefix("drift.") {
                    return self
                        .drift(rule, signal, TimeRange::new(from_ms, now_ms))
                        .map(|gs| gs.into_iter().map(&from_drift).collect());
                }
                let key: ShapeKey = (
                    rule.window_minutes,
                    rule.filters
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    rule.group_by.clone(),
                );
                let groups = cache.entry(key).or_insert_with(|| {
                    let req = SummaryRequest {
                        range: TimeRange::new(from_ms, now_ms),
                        filter: row_filter(&rule.filters),
                        group_by: rule.group_by.iter().filter_map(|d| Dim::parse(d)).collect(),
                        exact: false,
                    };
                    self.engine
                        .summary(&req)
                        .map(|r| {
                            r.groups
                                .into_iter()
                                .map(|g| (Arc::new(g.labels), g.count, Arc::new(g.metrics)))
                                .collect()
                        })
                        .map_err(|e| e.to_string())
                });
                match groups {
                    Err(e) => Err(e.clone()),
                    Ok(groups) => Ok(groups
                        .iter()
                        .map(|(labels, count, metrics)| {
                            let observation = match metrics.get(rule.metric.as_str()) {
                                Some(v) => Observation::Value {
                                    value: *v,
                                    samples: samples_for(&rule.metric, *count, metrics),
                                },
                                None => Observation::NoData,
                            };
                            make(labels, observation, metrics)
                        })
                        .collect()),
                }
            })
            .collect()
    }
}

impl QuerySource {
    fn drift(&self, rule: &Rule, signal: &str, current: TimeRange) -> RuleResult {
        let req = DriftRequest {
            current,
            baseline: Baseline::Offset(DRIFT_BASELINE_OFFSET_MS),
            filter: row_filter(&rule.filters),
            config: DriftConfig::default(),
        };
        let report = self.engine.drift(&req).map_err(|e| e.to_string())?;
        let observation = match report.signal(signal) {
            Some(s) if s.status == SignalStatus::Ok => match s.statistic {
                Some(v) => Observation::Value {
                    value: v,
                    samples: s.current_samples,
                },
                None => Observation::NoData,
            },
            _ => Observation::NoData,
        };
        Ok(vec![GroupObservation {
            labels: Labels::new(),
            observation,
            metrics: None,
        }])
    }
}
