//! Shared helpers for the storage integration tests: deterministic event
//! generators and a store opener with maintenance driven by hand.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use sextant_model::{Batch, Feedback, LlmCall, Quality, Span, SpanKind, SpanStatus};
use sextant_storage::{Store, StoreConfig};

/// 2026-06-01T00:00:00Z: a base time well inside the accepted window.
pub const BASE_MS: i64 = 1_780_272_000_000;

pub const MODELS: [&str; 3] = ["gpt-4o", "claude-3-5-sonnet", "llama-3-70b"];
pub const ENDPOINTS: [&str; 2] = ["chat", "summarize"];

pub fn config() -> StoreConfig {
    StoreConfig {
        background_maintenance: false,
        ..StoreConfig::default()
    }
}

pub fn open(dir: &Path) -> Store {
    Store::open(dir, config()).expect("open store")
}

/// A realistic call with a unique request id derived from `n`.
pub fn call(rng: &mut fastrand::Rng, n: u64, ts_ms: i64) -> LlmCall {
    let model = MODELS[rng.usize(..MODELS.len())];
    let prompt = rng.u64(10..4000);
    let completion = rng.u64(1..1000);
    LlmCall {
        request_id: format!(
            "{:08x}-0000-4000-8000-{:012x}",
            n >> 32,
            n & 0xffff_ffff_ffff
        ),
        timestamp_ms: ts_ms,
        model: model.to_string(),
        provider: "openai".into(),
        endpoint: ENDPOINTS[rng.usize(..ENDPOINTS.len())].to_string(),
        latency_ms: (rng.f64() * 3.0 + 4.0).exp().round() / 1.0 + rng.u32(0..1000) as f64 / 1000.0,
        time_to_first_token_ms: if rng.bool() {
            Some(rng.u32(10..900) as f64)
        } else {
            None
        },
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        cached_input_tokens: prompt / 4,
        reasoning_tokens: 0,
        cost_usd: if rng.u8(..10) == 0 {
            None
        } else {
            Some(rng.u32(1..100_000) as f64 / 1e6)
        },
        finish_reason: ["stop", "length", ""][rng.usize(..3)].to_string(),
        error: if rng.u8(..20) == 0 {
            Some("rate limited".into())
        } else {
            None
        },
        user_id: Some(format!("user-{}", rng.u32(..300))),
        session_id: None,
        trace_id: None,
        span_id: None,
        tags: if rng.bool() {
            [("team".to_string(), "search".to_string())].into()
        } else {
            Default::default()
        },
    }
}

pub fn quality(rng: &mut fastrand::Rng, request_id: &str, ts_ms: i64) -> Quality {
    Quality {
        request_id: request_id.to_string(),
        timestamp_ms: ts_ms,
        response_length: rng.u64(1..5000),
        has_refusal: rng.u8(..10) == 0,
        has_hallucination_markers: rng.u8(..5) == 0,
        sentiment_score: rng.i32(-1000..1000) as f64 / 1000.0,
        factual_accuracy: if rng.bool() {
            Some(rng.u32(0..=1000) as f64 / 1000.0)
        } else {
            None
        },
    }
}

pub fn feedback(rng: &mut fastrand::Rng, request_id: &str, ts_ms: i64) -> Feedback {
    Feedback {
        request_id: request_id.to_string(),
        timestamp_ms: ts_ms,
        rating: rng.i64(1..=5),
        comment: if rng.bool() { Some("ok".into()) } else { None },
    }
}

pub fn span(trace: &str, i: u32, start_ms: i64) -> Span {
    Span {
        trace_id: trace.to_string(),
        span_id: format!("span-{i:04}"),
        parent_span_id: if i == 0 {
            None
        } else {
            Some("span-0000".into())
        },
        name: if i == 0 {
            "chain".into()
        } else {
            format!("step-{i}")
        },
        kind: if i == 0 {
            SpanKind::Chain
        } else {
            SpanKind::Llm
        },
        start_unix_nano: (start_ms as u64) * 1_000_000 + i as u64 * 1000,
        end_unix_nano: (start_ms as u64) * 1_000_000 + i as u64 * 1000 + 5_000_000,
        status: SpanStatus::Ok,
        error: None,
        attributes: [(
            "gen_ai.request.model".to_string(),
            serde_json::json!("gpt-4o"),
        )]
        .into(),
        events: vec![],
    }
}

/// Counts and exact sums of a set of calls, to compare against rollups or scans.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sums {
    pub count: u64,
    pub errors: u64,
    pub total_tokens: u64,
    pub cost_nano_usd: u128,
    pub cost_unknown: u64,
    pub latency_sum_us: u128,
}

impl Sums {
    pub fn add(&mut self, c: &LlmCall) {
        self.count += 1;
        self.errors += c.is_error() as u64;
        self.total_tokens += c.total_tokens;
        match c.cost_usd {
            Some(x) => self.cost_nano_usd += (x * 1e9).round() as u128,
            None => self.cost_unknown += 1,
        }
        self.latency_sum_us += (c.latency_ms * 1000.0).round() as u128;
    }

    pub fn add_rollup(&mut self, r: &sextant_storage::Rollup) {
        self.count += r.count;
        self.errors += r.errors;
        self.total_tokens += r.total_tokens;
        self.cost_nano_usd += r.cost_nano_usd;
        self.cost_unknown += r.cost_unknown;
        self.latency_sum_us += r.latency_sum_us;
    }
}

pub fn batch_of(calls: Vec<LlmCall>) -> Batch {
    Batch::from_calls(calls)
}
