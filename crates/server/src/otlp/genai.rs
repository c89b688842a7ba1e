//! gen_ai semantic conventions (old and new names) and the seed's `llm.*`
//! attributes → one `LlmCall` per LLM span.
//!
//! Name pairs, new name first (the first present wins):
//! provider `gen_ai.provider.name` / `gen_ai.system`; input tokens
//! `gen_ai.usage.input_tokens` / `gen_ai.usage.prompt_tokens` / `llm.prompt_tokens`;
//! output tokens `gen_ai.usage.output_tokens` / `gen_ai.usage.completion_tokens` /
//! `llm.completion_tokens`; cached `gen_ai.usage.cache_read.input_tokens` /
//! `gen_ai.usage.cache_read_input_tokens`; reasoning
//! `gen_ai.usage.reasoning.output_tokens` / `gen_ai.usage.reasoning_tokens`;
//! finish reason: first of `gen_ai.response.finish_reasons`; session
//! `gen_ai.conversation.id` / `session.id`; time to first token
//! `gen_ai.response.time_to_first_chunk` (seconds, as the semconv's durations);
//! error: the span's error status, else `error.type`.
//! Invariant: agent and tool spans (`invoke_agent`, `create_agent`,
//! `execute_tool`) never yield a call, so their aggregated usage is not counted twice.

use std::collections::BTreeMap;

use serde_json::Value;
use sextant_model::{LlmCall, Span, SpanStatus};

type Attrs = BTreeMap<String, Value>;

fn str_attr<'a>(a: &'a Attrs, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| a.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
}

fn num_attr(a: &Attrs, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| match a.get(*k)? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn tokens(a: &Attrs, keys: &[&str]) -> u64 {
    num_attr(a, keys)
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v.min(u64::MAX as f64) as u64)
        .unwrap_or(0)
}

const MODEL_KEYS: &[&str] = &["gen_ai.response.model", "gen_ai.request.model", "llm.model"];

/// True when the attributes describe a model call.
pub(super) fn is_llm(a: &Attrs) -> bool {
    if let Some(op) = str_attr(a, &["gen_ai.operation.name"]) {
        if matches!(op, "execute_tool" | "invoke_agent" | "create_agent") {
            return false;
        }
    }
    str_attr(a, MODEL_KEYS).is_some()
}

/// The call an LLM span stands for, or `None` for other spans. Costs are
/// filled in by the caller (price table), unless the span carries one.
pub(crate) fn llm_call_from_span(span: &Span) -> Option<LlmCall> {
    let a = &span.attributes;
    if !is_llm(a) {
        return None;
    }
    let model = str_attr(a, MODEL_KEYS)?.to_string();
    let prompt_tokens = tokens(
        a,
        &[
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens",
            "llm.prompt_tokens",
            "llm.usage.prompt_tokens",
        ],
    );
    let completion_tokens = tokens(
        a,
        &[
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.completion_tokens",
            "llm.usage.completion_tokens",
        ],
    );
    let total = num_attr(
        a,
        &[
            "llm.total_tokens",
            "llm.usage.total_tokens",
            "gen_ai.usage.total_tokens",
        ],
    )
    .filter(|v| v.is_finite() && *v >= 0.0)
    .map(|v| v as u64)
    .unwrap_or(prompt_tokens.saturating_add(completion_tokens));
    let finish_reason = match a.get("gen_ai.response.finish_reasons") {
        Some(Value::Array(v)) => v.iter().find_map(Value::as_str).unwrap_or("").to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => str_attr(a, &["llm.finish_reason"])
            .unwrap_or("")
            .to_string(),
    };
    let error = if span.status == SpanStatus::Error {
        Some(span.error.clone().unwrap_or_else(|| "error".into()))
    } else {
        str_attr(a, &["error.type"]).map(String::from)
    };
    let mut tags = BTreeMap::new();
    if let Some(svc) = str_attr(a, &["resource.service.name"]) {
        tags.insert("service".to_string(), svc.to_string());
    }
    Some(LlmCall {
        request_id: str_attr(a, &["sextant.request_id", "gen_ai.response.id"])
            .map(String::from)
            .unwrap_or_else(|| span.span_id.clone()),
        timestamp_ms: span.start_ms(),
        model,
        provider: str_attr(
            a,
            &["gen_ai.provider.name", "gen_ai.system", "llm.provider"],
        )
        .unwrap_or("")
        .to_string(),
        endpoint: str_attr(a, &["gen_ai.operation.name", "llm.operation"])
            .unwrap_or("")
            .to_string(),
        latency_ms: span.duration_ms(),
        time_to_first_token_ms: num_attr(a, &["gen_ai.response.time_to_first_chunk"])
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|s| s * 1000.0),
        prompt_tokens,
        completion_tokens,
        total_tokens: total,
        cached_input_tokens: tokens(
            a,
            &[
                "gen_ai.usage.cache_read.input_tokens",
                "gen_ai.usage.cache_read_input_tokens",
            ],
        )
        .min(prompt_tokens),
        reasoning_tokens: tokens(
            a,
            &[
                "gen_ai.usage.reasoning.output_tokens",
                "gen_ai.usage.reasoning_tokens",
            ],
        )
        .min(completion_tokens),
        cost_usd: num_attr(a, &["llm.cost_usd", "gen_ai.usage.cost"])
            .filter(|c| c.is_finite() && *c >= 0.0),
        finish_reason,
        error,
        user_id: str_attr(a, &["user.id", "enduser.id"]).map(String::from),
        session_id: str_attr(a, &["gen_ai.conversation.id", "session.id"]).map(String::from),
        trace_id: Some(span.trace_id.clone()),
        span_id: Some(span.span_id.clone()),
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use sextant_model::SpanKind;

    fn span(attrs: Value) -> Span {
        Span {
            trace_id: "t".into(),
            span_id: "s1".into(),
            name: "chat".into(),
            start_unix_nano: 1_700_000_000_000_000_000,
            end_unix_nano: 1_700_000_000_800_000_000,
            attributes: serde_json::from_value(attrs).unwrap(),
            ..Span::default()
        }
    }

    #[test]
    fn old_and_new_gen_ai_names_yield_the_same_call() {
        let old = span(json!({
            "gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.prompt_tokens": 100, "gen_ai.usage.completion_tokens": 20,
            "gen_ai.usage.cache_read_input_tokens": 40, "gen_ai.usage.reasoning_tokens": 5,
            "gen_ai.response.finish_reasons": ["stop"], "session.id": "c1",
            "gen_ai.operation.name": "chat"}));
        let new = span(json!({
            "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20,
            "gen_ai.usage.cache_read.input_tokens": 40, "gen_ai.usage.reasoning.output_tokens": 5,
            "gen_ai.response.finish_reasons": ["stop"], "gen_ai.conversation.id": "c1",
            "gen_ai.operation.name": "chat"}));
        let (a, b) = (
            llm_call_from_span(&old).unwrap(),
            llm_call_from_span(&new).unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a.provider, "openai");
        assert_eq!(
            (a.prompt_tokens, a.completion_tokens, a.total_tokens),
            (100, 20, 120)
        );
        assert_eq!((a.cached_input_tokens, a.reasoning_tokens), (40, 5));
        assert_eq!(a.finish_reason, "stop");
        assert_eq!(a.session_id.as_deref(), Some("c1"));
        assert_eq!(a.latency_ms, 800.0);
        assert_eq!(a.endpoint, "chat");
        assert_eq!(a.request_id, "s1");
    }

    #[test]
    fn response_model_ttft_and_error_type_are_read() {
        let s = span(
            json!({"gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
                            "gen_ai.response.time_to_first_chunk": 0.25, "error.type": "timeout"}),
        );
        let c = llm_call_from_span(&s).unwrap();
        assert_eq!(c.model, "gpt-4o-2024-08-06");
        assert_eq!(c.time_to_first_token_ms, Some(250.0));
        assert_eq!(c.error.as_deref(), Some("timeout"));
    }

    #[test]
    fn the_seeds_llm_attributes_yield_a_call() {
        let mut s = span(json!({"llm.model": "gpt-4o-mini", "llm.prompt_tokens": 10,
                                "llm.completion_tokens": 5, "llm.total_tokens": 15, "llm.cost_usd": 0.01}));
        s.kind = SpanKind::Llm;
        let c = llm_call_from_span(&s).unwrap();
        assert_eq!(
            (c.model.as_str(), c.total_tokens, c.cost_usd),
            ("gpt-4o-mini", 15, Some(0.01))
        );
    }

    #[test]
    fn tool_agent_and_plain_spans_yield_no_call() {
        for attrs in [
            json!({"gen_ai.operation.name": "execute_tool", "gen_ai.request.model": "gpt-4o"}),
            json!({"gen_ai.operation.name": "invoke_agent", "gen_ai.request.model": "gpt-4o",
                   "gen_ai.usage.input_tokens": 500}),
            json!({"http.method": "GET"}),
        ] {
            assert_eq!(llm_call_from_span(&span(attrs.clone())), None, "{attrs}");
        }
    }
}
