//! The events Sextant ingests. Field docs carry units.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One LLM call (the seed's `LLMMetrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LlmCall {
    /// Caller-chosen id; UUID or hex ids are stored as 16 bytes.
    pub request_id: String,
    /// When the call happened: Unix ms, UTC.
    pub timestamp_ms: i64,
    pub model: String,
    /// e.g. "openai"; "" when unknown.
    pub provider: String,
    /// e.g. "chat.completions"; "" when unknown.
    pub endpoint: String,
    /// Whole-call latency, milliseconds.
    pub latency_ms: f64,
    /// Time to first token, milliseconds (streaming calls only).
    pub time_to_first_token_ms: Option<f64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Prompt tokens served from the provider's cache (a subset of `prompt_tokens`).
    pub cached_input_tokens: u64,
    /// Reasoning tokens (a subset of `completion_tokens`).
    pub reasoning_tokens: u64,
    /// US dollars; `None` = unknown (no price for the model), never 0 by default.
    pub cost_usd: Option<f64>,
    /// "" when unknown.
    pub finish_reason: String,
    /// Error message; `Some` marks the call as failed.
    pub error: Option<String>,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl LlmCall {
    /// True when the call failed (`error` present and non-empty, as the seed's truthiness test).
    pub fn is_error(&self) -> bool {
        self.error.as_deref().is_some_and(|e| !e.is_empty())
    }
}

/// What a span did.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    Llm,
    Chain,
    Retrieval,
    Tool,
    #[default]
    Other,
}

impl SpanKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            SpanKind::Llm => "llm",
            SpanKind::Chain => "chain",
            SpanKind::Retrieval => "retrieval",
            SpanKind::Tool => "tool",
            SpanKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<SpanKind> {
        Some(match s {
            "llm" => SpanKind::Llm,
            "chain" => SpanKind::Chain,
            "retrieval" => SpanKind::Retrieval,
            "tool" => SpanKind::Tool,
            "other" => SpanKind::Other,
            _ => return None,
        })
    }
}

/// A span's outcome.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpanStatus {
    #[default]
    Ok,
    Error,
}

impl SpanStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            SpanStatus::Ok => "ok",
            SpanStatus::Error => "error",
        }
    }
}

/// An event inside a span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SpanEvent {
    pub name: String,
    /// Unix ns, UTC.
    pub time_unix_nano: u64,
    pub attributes: BTreeMap<String, serde_json::Value>,
}

/// One span of a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    /// Unix ns, UTC.
    pub start_unix_nano: u64,
    /// Unix ns, UTC; equal to `start_unix_nano` for a span that never ended.
    pub end_unix_nano: u64,
    pub status: SpanStatus,
    pub error: Option<String>,
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// Oldest first.
    pub events: Vec<SpanEvent>,
}

impl Span {
    /// Duration in milliseconds (the seed's `duration_ms`).
    pub fn duration_ms(&self) -> f64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano) as f64 / 1e6
    }

    /// Start, Unix ms.
    pub fn start_ms(&self) -> i64 {
        (self.start_unix_nano / 1_000_000) as i64
    }
}

/// Response-quality signals for one call (the seed's `QualityMetrics`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Quality {
    pub request_id: String,
    /// Unix ms, UTC.
    pub timestamp_ms: i64,
    /// Characters (Unicode scalar values), as Python's `len(str)`.
    pub response_length: u64,
    pub has_refusal: bool,
    /// The seed's name for hedging phrases.
    pub has_hallucination_markers: bool,
    pub sentiment_score: f64,
    /// In [0, 1], from an LLM judge; `None` when not judged.
    pub factual_accuracy: Option<f64>,
}

/// User feedback for one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Feedback {
    pub request_id: String,
    /// Unix ms, UTC.
    pub timestamp_ms: i64,
    pub rating: i64,
    pub comment: Option<String>,
}

/// A unit of ingest: everything in it is acknowledged together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Batch {
    pub calls: Vec<LlmCall>,
    pub spans: Vec<Span>,
    pub quality: Vec<Quality>,
    pub feedback: Vec<Feedback>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
            && self.spans.is_empty()
            && self.quality.is_empty()
            && self.feedback.is_empty()
    }

    /// Number of events of every kind.
    pub fn len(&self) -> usize {
        self.calls.len() + self.spans.len() + self.quality.len() + self.feedback.len()
    }

    pub fn from_calls(calls: Vec<LlmCall>) -> Batch {
        Batch {
            calls,
            ..Batch::default()
        }
    }
}
