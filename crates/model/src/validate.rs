//! Validation at the ingest boundary. Nothing that fails here is ever written.

use crate::{Feedback, LlmCall, Quality, Span};

/// Bounds every event must respect. Defaults are documented per field.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Longest id (request, trace, span, user, session), bytes. Default 256.
    pub max_id_bytes: usize,
    /// Longest name (model, provider, endpoint, finish reason, tag key, span name), bytes. Default 256.
    pub max_name_bytes: usize,
    /// Longest free text (error, tag value, comment), bytes. Default 4096.
    pub max_text_bytes: usize,
    /// Most tags on one call. Default 64.
    pub max_tags: usize,
    /// Largest token count of any kind. Default 100,000,000.
    pub max_tokens: u64,
    /// Largest latency or TTFT, ms. Default 86,400,000 (one day).
    pub max_latency_ms: f64,
    /// Largest cost of one call, USD. Default 1,000,000.
    pub max_cost_usd: f64,
    /// How far in the future a timestamp may be, ms. Default 300,000 (5 minutes).
    pub max_future_ms: i64,
    /// How far in the past a timestamp may be, ms; older events are outside every
    /// retention tier. Default: 100 years.
    pub max_age_ms: i64,
    /// Largest serialized span attributes + events, bytes. Default 65,536.
    pub max_span_payload_bytes: usize,
    /// Rating bounds (inclusive). Default −1,000 ..= 1,000.
    pub rating_range: (i64, i64),
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_id_bytes: 256,
            max_name_bytes: 256,
            max_text_bytes: 4096,
            max_tags: 64,
            max_tokens: 100_000_000,
            max_latency_ms: 86_400_000.0,
            max_cost_usd: 1_000_000.0,
            max_future_ms: 300_000,
            max_age_ms: 100 * 366 * crate::DAY_MS,
            max_span_payload_bytes: 65_536,
            rating_range: (-1000, 1000),
        }
    }
}

/// Why an event was rejected; `field` names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
        ValidationError {
            field: field.into(),
            message: message.into(),
        }
    }
}

type Check = Result<(), ValidationError>;

fn id(field: &str, v: &str, l: &Limits) -> Check {
    if v.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    bounded(field, v, l.max_id_bytes)
}

fn opt_id(field: &str, v: &Option<String>, l: &Limits) -> Check {
    match v {
        Some(v) => id(field, v, l),
        None => Ok(()),
    }
}

fn bounded(field: &str, v: &str, max: usize) -> Check {
    if v.len() > max {
        return Err(ValidationError::new(
            field,
            format!("is {} bytes; at most {max} are allowed", v.len()),
        ));
    }
    if v.chars().any(|c| c == '\0') {
        return Err(ValidationError::new(
            field,
            "must not contain NUL characters",
        ));
    }
    Ok(())
}

fn millis(field: &str, v: f64, max: f64) -> Check {
    if !v.is_finite() {
        return Err(ValidationError::new(field, "must be a finite number"));
    }
    if v < 0.0 {
        return Err(ValidationError::new(field, "must not be negative"));
    }
    if v > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max}"),
        ));
    }
    Ok(())
}

fn tokens(field: &str, v: u64, l: &Limits) -> Check {
    if v > l.max_tokens {
        return Err(ValidationError::new(
            field,
            format!("must be at most {}", l.max_tokens),
        ));
    }
    Ok(())
}

fn timestamp(field: &str, ts_ms: i64, now_ms: i64, l: &Limits) -> Check {
    if ts_ms > now_ms.saturating_add(l.max_future_ms) {
        return Err(ValidationError::new(
            field,
            format!("is more than {} s in the future", l.max_future_ms / 1000),
        ));
    }
    if ts_ms < now_ms.saturating_sub(l.max_age_ms) {
        return Err(ValidationError::new(
            field,
            "is older than every retention tier keeps",
        ));
    }
    Ok(())
}

impl LlmCall {
    /// Checks every field against `limits`, with `now_ms` as the present.
    pub fn validate(&self, now_ms: i64, limits: &Limits) -> Check {
        id("request_id", &self.request_id, limits)?;
        timestamp("timestamp", self.timestamp_ms, now_ms, limits)?;
        if self.model.is_empty() {
            return Err(ValidationError::new("model", "must not be empty"));
        }
        bounded("model", &self.model, limits.max_name_bytes)?;
        bounded("provider", &self.provider, limits.max_name_bytes)?;
        bounded("endpoint", &self.endpoint, limits.max_name_bytes)?;
        bounded("finish_reason", &self.finish_reason, limits.max_name_bytes)?;
        millis("latency_ms", self.latency_ms, limits.max_latency_ms)?;
        if let Some(t) = self.time_to_first_token_ms {
            millis("time_to_first_token_ms", t, limits.max_latency_ms)?;
        }
        tokens("prompt_tokens", self.prompt_tokens, limits)?;
        tokens("completion_tokens", self.completion_tokens, limits)?;
        tokens("total_tokens", self.total_tokens, limits)?;
        tokens("cached_input_tokens", self.cached_input_tokens, limits)?;
        tokens("reasoning_tokens", self.reasoning_tokens, limits)?;
        if self.cached_input_tokens > self.prompt_tokens {
            return Err(ValidationError::new(
                "cached_input_tokens",
                "must not exceed prompt_tokens",
            ));
        }
        if let Some(c) = self.cost_usd {
            millis("cost_usd", c, limits.max_cost_usd)?;
        }
        if let Some(e) = &self.error {
            bounded("error", e, limits.max_text_bytes)?;
        }
        opt_id("user_id", &self.user_id, limits)?;
        opt_id("session_id", &self.session_id, limits)?;
        opt_id("trace_id", &self.trace_id, limits)?;
        opt_id("span_id", &self.span_id, limits)?;
        if self.tags.len() > limits.max_tags {
            return Err(ValidationError::new(
                "tags",
                format!("at most {} tags are allowed", limits.max_tags),
            ));
        }
        for (k, v) in &self.tags {
            if k.is_empty() {
                return Err(ValidationError::new("tags", "tag keys must not be empty"));
            }
            bounded("tags", k, limits.max_name_bytes)?;
            bounded("tags", v, limits.max_text_bytes)?;
        }
        Ok(())
    }
}

impl Span {
    pub fn validate(&self, now_ms: i64, limits: &Limits) -> Check {
        id("trace_id", &self.trace_id, limits)?;
        id("span_id", &self.span_id, limits)?;
        opt_id("parent_span_id", &self.parent_span_id, limits)?;
        bounded("name", &self.name, limits.max_name_bytes)?;
        if self.end_unix_nano < self.start_unix_nano {
            return Err(ValidationError::new(
                "end_time",
                "must not be before start_time",
            ));
        }
        let start_ms = i64::try_from(self.start_unix_nano / 1_000_000)
            .map_err(|_| ValidationError::new("start_time", "out of range"))?;
        timestamp("start_time", start_ms, now_ms, limits)?;
        if let Some(e) = &self.error {
            bounded("error", e, limits.max_text_bytes)?;
        }
        let payload = serde_json::to_vec(&(&self.attributes, &self.events))
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if payload > limits.max_span_payload_bytes {
            return Err(ValidationError::new(
                "attributes",
                format!(
                    "attributes and events are {payload} bytes; at most {} are allowed",
                    limits.max_span_payload_bytes
                ),
            ));
        }
        Ok(())
    }
}

impl Quality {
    pub fn validate(&self, now_ms: i64, limits: &Limits) -> Check {
        id("request_id", &self.request_id, limits)?;
        timestamp("timestamp", self.timestamp_ms, now_ms, limits)?;
        if !self.sentiment_score.is_finite() {
            return Err(ValidationError::new(
                "sentiment_score",
                "must be a finite number",
            ));
        }
        if let Some(a) = self.factual_accuracy {
            if !(0.0..=1.0).contains(&a) {
                return Err(ValidationError::new(
                    "factual_accuracy",
                    "must be in [0, 1]",
                ));
            }
        }
        Ok(())
    }
}

impl Feedback {
    pub fn validate(&self, now_ms: i64, limits: &Limits) -> Check {
        id("request_id", &self.request_id, limits)?;
        timestamp("timestamp", self.timestamp_ms, now_ms, limits)?;
        let (lo, hi) = limits.rating_range;
        if self.rating < lo || self.rating > hi {
            return Err(ValidationError::new(
                "rating",
                format!("must be between {lo} and {hi}"),
            ));
        }
        if let Some(c) = &self.comment {
            bounded("feedback", c, limits.max_text_bytes)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn call() -> LlmCall {
        LlmCall {
            request_id: "r1".into(),
            timestamp_ms: NOW,
            model: "gpt-4o".into(),
            latency_ms: 120.0,
            ..LlmCall::default()
        }
    }

    fn check(mutate: impl FnOnce(&mut LlmCall), field: Option<&str>) {
        let mut c = call();
        mutate(&mut c);
        let got = c.validate(NOW, &Limits::default()).err().map(|e| e.field);
        assert_eq!(got.as_deref(), field);
    }

    #[test]
    fn invalid_calls_are_rejected_naming_the_field() {
        check(|_| {}, None);
        check(|c| c.request_id.clear(), Some("request_id"));
        check(|c| c.model.clear(), Some("model"));
        check(|c| c.latency_ms = f64::NAN, Some("latency_ms"));
        check(|c| c.latency_ms = f64::INFINITY, Some("latency_ms"));
        check(|c| c.latency_ms = -1.0, Some("latency_ms"));
        check(|c| c.latency_ms = 1e12, Some("latency_ms"));
        check(
            |c| c.time_to_first_token_ms = Some(-0.5),
            Some("time_to_first_token_ms"),
        );
        check(|c| c.cost_usd = Some(f64::NAN), Some("cost_usd"));
        check(|c| c.prompt_tokens = u64::MAX, Some("prompt_tokens"));
        check(|c| c.cached_input_tokens = 5, Some("cached_input_tokens"));
        check(|c| c.timestamp_ms = NOW + 301_000, Some("timestamp"));
        check(|c| c.timestamp_ms = i64::MIN, Some("timestamp"));
        check(|c| c.model = "m".repeat(257), Some("model"));
        check(|c| c.user_id = Some(String::new()), Some("user_id"));
        check(|c| c.error = Some("e\0".into()), Some("error"));
        check(
            |c| {
                c.tags.insert(String::new(), "v".into());
            },
            Some("tags"),
        );
    }

    #[test]
    fn feedback_rating_and_quality_accuracy_are_bounded() {
        let f = Feedback {
            request_id: "r".into(),
            timestamp_ms: NOW,
            rating: 5000,
            comment: None,
        };
        assert_eq!(
            f.validate(NOW, &Limits::default()).unwrap_err().field,
            "rating"
        );
        let q = Quality {
            request_id: "r".into(),
            timestamp_ms: NOW,
            factual_accuracy: Some(1.5),
            ..Quality::default()
        };
        assert_eq!(
            q.validate(NOW, &Limits::default()).unwrap_err().field,
            "factual_accuracy"
        );
    }
}
