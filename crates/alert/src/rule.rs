//! Rule validation, compilation and the seed's default rules.
//!
//! **Invariant:** a [`CompiledRule`] exists only for a rule that passed
//! [`validate`]; every string field it carries (op, severity, no-data policy,
//! template) has been parsed once, so evaluation never re-parses or fails on them.

use std::collections::BTreeMap;

use sextant_query::METRICS;

use crate::api::{AlertError, Rule};
use crate::template::Template;

/// Drift signals a rule may name as `drift.<signal>`.
pub const DRIFT_SIGNALS: &[&str] = &[
    "refusal_rate",
    "hedging_rate",
    "avg_response_length",
    "error_rate",
    "latency",
    "tokens_per_call",
    "cost_per_call",
    "avg_rating",
];

/// Longest window a rule may aggregate over: 31 days, in minutes.
pub(crate) const MAX_WINDOW_MINUTES: u32 = 31 * 24 * 60;
/// Longest `for`, `keep_firing_for` or `repeat_interval`: 31 days, in seconds.
pub(crate) const MAX_DURATION_SECONDS: u64 = 31 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            _ => return None,
        })
    }

    pub(crate) fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub(crate) fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "info" => Severity::Info,
            "warning" => Severity::Warning,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoDataPolicy {
    Ok,
    KeepLast,
    Alert,
}

impl NoDataPolicy {
    fn parse(s: &str) -> Option<NoDataPolicy> {
        Some(match s {
            "ok" => NoDataPolicy::Ok,
            "keep_last" => NoDataPolicy::KeepLast,
            "alert" => NoDataPolicy::Alert,
            _ => return None,
        })
    }
}

/// A validated rule with its string fields parsed.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub(crate) rule: Rule,
    pub(crate) op: Op,
    pub(crate) severity: Severity,
    pub(crate) no_data: NoDataPolicy,
    pub(crate) template: Template,
    /// FNV-1a of the rule's JSON: instances evaluated under another
    /// fingerprint are reset.
    pub(crate) fingerprint: u64,
}

fn invalid(field: &str, message: impl Into<String>) -> AlertError {
    AlertError::InvalidInput {
        field: field.to_string(),
        message: message.into(),
    }
}

/// True for a metric name a rule may use.
pub(crate) fn is_known_metric(name: &str) -> bool {
    METRICS.contains(&name)
        || name
            .strip_prefix("drift.")
            .is_some_and(|s| DRIFT_SIGNALS.contains(&s))
}

/// Names a template may reference besides metrics.
pub(crate) const TEMPLATE_EXTRAS: &[&str] = &["value", "threshold", "name"];

/// Validates `rule`; `notifiers` are the configured notifier names.
pub(crate) fn validate(rule: &Rule, notifiers: &[String]) -> Result<CompiledRule, AlertError> {
    if rule.name.is_empty() || rule.name.len() > 200 {
        return Err(invalid("name", "must be 1 to 200 characters"));
    }
    if rule.name.chars().any(|c| c.is_control() || c == '/') {
        return Err(invalid(
            "name",
            "must not contain control characters or '/'",
        ));
    }
    if !is_known_metric(&rule.metric) {
        return Err(invalid(
            "metric",
            format!(
                "unknown metric {:?}; expected one of {} or drift.<{}>",
                rule.metric,
                METRICS.join(", "),
                DRIFT_SIGNALS.join("|")
            ),
        ));
    }
    if rule.window_minutes == 0 || rule.window_minutes > MAX_WINDOW_MINUTES {
        return Err(invalid(
            "window_minutes",
            format!("must be between 1 and {MAX_WINDOW_MINUTES}"),
        ));
    }
    for key in rule.filters.keys() {
        if key != "error" && sextant_model::Dim::parse(key).is_none() {
            return Err(invalid(
                "filters",
                format!("unknown filter {key:?}; expected model, endpoint, provider, finish_reason, user_id, session_id, tag.<key> or error"),
            ));
        }
    }
    if let Some(v) = rule.filters.get("error") {
        if v != "true" && v != "false" {
            return Err(invalid("filters", "error must be \"true\" or \"false\""));
        }
    }
    for dim in &rule.group_by {
        if sextant_model::Dim::parse(dim).is_none() {
            return Err(invalid("group_by", format!("unknown dimension {dim:?}")));
        }
    }
    if rule.metric.starts_with("drift.") && !rule.group_by.is_empty() {
        return Err(invalid("group_by", "drift metrics cannot be grouped"));
    }
    let op = Op::parse(&rule.op)
        .ok_or_else(|| invalid("op", format!("{:?} is not one of >, >=, <, <=", rule.op)))?;
    if !rule.threshold.is_finite() {
        return Err(invalid("threshold", "must be a finite number"));
    }
    if let Some(w) = rule.warning_threshold {
        if !w.is_finite() {
            return Err(invalid("warning_threshold", "must be a finite number"));
        }
        // The warning threshold must be reached before the main one.
        if w == rule.threshold || op.holds(w, rule.threshold) {
            return Err(invalid(
                "warning_threshold",
                format!(
                    "must be crossed before threshold {} (for op {} it must be {} than it)",
                    rule.threshold,
                    rule.op,
                    if matches!(op, Op::Gt | Op::Ge) {
                        "lower"
                    } else {
                        "higher"
                    }
                ),
            ));
        }
    }
    for (field, v) in [
        ("for_seconds", rule.for_seconds),
        ("keep_firing_for_seconds", rule.keep_firing_for_seconds),
        ("repeat_interval_seconds", rule.repeat_interval_seconds),
    ] {
        if v > MAX_DURATION_SECONDS {
            return Err(invalid(
                field,
                format!("{v} s is longer than the maximum {MAX_DURATION_SECONDS} s (31 days)"),
            ));
        }
    }
    if rule.min_samples > 1_000_000_000 {
        return Err(invalid("min_samples", "must be at most 1e9"));
    }
    let no_data = NoDataPolicy::parse(&rule.no_data).ok_or_else(|| {
        invalid(
            "no_data",
            format!("{:?} is not one of ok, keep_last, alert", rule.no_data),
        )
    })?;
    let severity = Severity::parse(&rule.severity).ok_or_else(|| {
        invalid(
            "severity",
            format!("{:?} is not one of info, warning, critical", rule.severity),
        )
    })?;
    let template = Template::parse(&rule.message).map_err(|e| invalid("message", e))?;
    for name in template.placeholders() {
        if !is_known_metric(name) && !TEMPLATE_EXTRAS.contains(&name) {
            return Err(invalid(
                "message",
                format!(
                    "unknown placeholder {{{name}}}; use a metric name, value, threshold or name"
                ),
            ));
        }
    }
    for n in &rule.notifiers {
        if !notifiers.contains(n) {
            return Err(invalid(
                "notifiers",
                format!("no notifier named {n:?} is configured"),
            ));
        }
    }
    for (k, v) in &rule.labels {
        if k.is_empty() || k.len() > 200 || v.len() > 1000 {
            return Err(invalid(
                "labels",
                "keys must be 1 to 200 bytes, values at most 1000",
            ));
        }
    }
    Ok(CompiledRule {
        fingerprint: fingerprint(rule),
        rule: rule.clone(),
        op,
        severity,
        no_data,
        template,
    })
}

impl CompiledRule {
    /// The rule as validated.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }
}

/// FNV-1a 64 of `bytes`: a stable, dependency-free hash for keys and fingerprints.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn fingerprint(rule: &Rule) -> u64 {
    fnv1a(&serde_json::to_vec(rule).unwrap_or_default())
}

/// The seed's six default rules (`create_default_alert_rules`): same metrics,
/// thresholds, severities and message templates; 5-minute window and the
/// seed's 5-minute cooldown as `repeat_interval_seconds`.
pub fn default_rules() -> Vec<Rule> {
    let r = |name: &str, metric: &str, threshold: f64, severity: &str, message: &str| Rule {
        name: name.into(),
        metric: metric.into(),
        window_minutes: 5,
        filters: BTreeMap::new(),
        group_by: Vec::new(),
        op: ">".into(),
        threshold,
        warning_threshold: None,
        for_seconds: 0,
        keep_firing_for_seconds: 0,
        repeat_interval_seconds: 300,
        min_samples: 0,
        no_data: "ok".into(),
        severity: severity.into(),
        labels: BTreeMap::new(),
        message: message.into(),
        notifiers: Vec::new(),
    };
    vec![
        r(
            "high_latency",
            "latency_p95_ms",
            5000.0,
            "warning",
            "High latency detected: P95 = {latency_p95_ms:.0f}ms",
        ),
        r(
            "critical_latency",
            "latency_p99_ms",
            10000.0,
            "critical",
            "Critical latency: P99 = {latency_p99_ms:.0f}ms",
        ),
        r(
            "high_error_rate",
            "error_rate",
            0.05,
            "warning",
            "High error rate: {error_rate:.1%}",
        ),
        r(
            "critical_error_rate",
            "error_rate",
            0.1,
            "critical",
            "Critical error rate: {error_rate:.1%}",
        ),
        r(
            "cost_spike",
            "total_cost_usd",
            100.0,
            "warning",
            "Cost spike: ${total_cost_usd:.2f} in monitoring window",
        ),
        r(
            "token_spike",
            "avg_tokens",
            10000.0,
            "warning",
            "High token usage: avg {avg_tokens:.0f} tokens per request",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Rule {
        default_rules().remove(0)
    }

    fn field_of(rule: &Rule) -> String {
        match validate(rule, &["ops".to_string()]) {
            Err(AlertError::InvalidInput { field, .. }) => field,
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => "ok".into(),
        }
    }

    #[test]
    fn default_rules_are_valid() {
        for r in default_rules() {
            validate(&r, &[]).unwrap();
        }
    }

    #[test]
    fn invalid_rules_name_the_offending_field() {
        type Edit = Box<dyn Fn(&mut Rule)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("metric", Box::new(|r| r.metric = "latency_p42".into())),
            ("metric", Box::new(|r| r.metric = "drift.nope".into())),
            ("op", Box::new(|r| r.op = "==".into())),
            ("threshold", Box::new(|r| r.threshold = f64::NAN)),
            (
                "warning_threshold",
                Box::new(|r| r.warning_threshold = Some(6000.0)),
            ),
            (
                "for_seconds",
                Box::new(|r| r.for_seconds = 10 * 365 * 86_400),
            ),
            (
                "keep_firing_for_seconds",
                Box::new(|r| r.keep_firing_for_seconds = u64::MAX),
            ),
            (
                "repeat_interval_seconds",
                Box::new(|r| r.repeat_interval_seconds = u64::MAX),
            ),
            ("window_minutes", Box::new(|r| r.window_minutes = 0)),
            ("no_data", Box::new(|r| r.no_data = "ignore".into())),
            ("severity", Box::new(|r| r.severity = "page".into())),
            (
                "message",
                Box::new(|r| r.message = "p95 {latency_p96_ms:.0f}".into()),
            ),
            (
                "message",
                Box::new(|r| r.message = "p95 {latency_p95_ms:.0q}".into()),
            ),
            (
                "message",
                Box::new(|r| r.message = "unclosed {latency_p95_ms".into()),
            ),
            (
                "notifiers",
                Box::new(|r| r.notifiers = vec!["pager".into()]),
            ),
            (
                "filters",
                Box::new(|r| {
                    r.filters.insert("colour".into(), "x".into());
                }),
            ),
            ("group_by", Box::new(|r| r.group_by = vec!["colour".into()])),
            ("name", Box::new(|r| r.name = String::new())),
        ];
        for (field, edit) in cases {
            let mut r = base();
            edit(&mut r);
            assert_eq!(field_of(&r), field, "rule {r:?}");
        }
        let mut ok = base();
        ok.notifiers = vec!["ops".into()];
        ok.warning_threshold = Some(3000.0);
        ok.group_by = vec!["model".into(), "tag.team".into()];
        ok.filters.insert("error".into(), "false".into());
        assert_eq!(field_of(&ok), "ok");
    }

    #[test]
    fn rule_json_uses_design_field_names_and_defaults() {
        let r: Rule = serde_json::from_str(
            r#"{"name":"p95_high","metric":"latency_p95_ms","op":">","threshold":5000}"#,
        )
        .unwrap();
        assert_eq!(r.window_minutes, 5);
        assert_eq!(r.repeat_interval_seconds, 300);
        assert_eq!(r.no_data, "ok");
        assert_eq!(r.severity, "warning");
        let bad = serde_json::from_str::<Rule>(
            r#"{"name":"x","metric":"count","op":">","threshold":1,"cooldown":5}"#,
        );
        assert!(bad.is_err());
    }
}
