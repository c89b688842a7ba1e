//! A realistic LLM-call workload shared by the storage benches: a few
//! models and endpoints, lognormal latencies, UUID request ids, a few
//! hundred users, no trace ids.

use sextant_model::LlmCall;

const MODELS: [(&str, &str); 4] = [
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("claude-3-5-sonnet", "anthropic"),
    ("llama-3-70b", "meta"),
];
const ENDPOINTS: [&str; 3] = ["chat", "summarize", "classify"];

fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(1e-12);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn uuid(rng: &mut fastrand::Rng) -> String {
    let a = rng.u128(..);
    let h = format!("{a:032x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// One call at `ts_ms`.
pub(crate) fn call(rng: &mut fastrand::Rng, ts_ms: i64) -> LlmCall {
    let (model, provider) = MODELS[rng.usize(..MODELS.len())];
    let prompt = (normal(rng) * 0.8 + 6.0).exp().round().min(100_000.0) as u64;
    let completion = (normal(rng) * 0.7 + 5.0).exp().round().min(100_000.0) as u64;
    let latency = ((normal(rng) * 0.5 + 7.0).exp() * 1000.0).round() / 1000.0;
    let error = rng.u8(..50) == 0;
    LlmCall {
        request_id: uuid(rng),
        timestamp_ms: ts_ms,
        model: model.into(),
        provider: provider.into(),
        endpoint: ENDPOINTS[rng.usize(..ENDPOINTS.len())].into(),
        latency_ms: latency,
        time_to_first_token_ms: if rng.bool() {
            Some((latency * 0.2).round())
        } else {
            None
        },
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        cached_input_tokens: if rng.u8(..4) == 0 { prompt / 2 } else { 0 },
        reasoning_tokens: 0,
        cost_usd: Some(
            ((prompt as f64 * 2.5 + completion as f64 * 10.0) / 1e6 * 1e9).round() / 1e9,
        ),
        finish_reason: if error {
            String::new()
        } else if rng.u8(..10) == 0 {
            "length".into()
        } else {
            "stop".into()
        },
        error: if error {
            Some("rate_limit_exceeded".into())
        } else {
            None
        },
        user_id: Some(format!("user-{}", rng.u32(..300))),
        session_id: None,
        trace_id: None,
        span_id: None,
        tags: Default::default(),
    }
}

/// `n` calls spread evenly over `[start_ms, start_ms + span_ms)`.
pub(crate) fn calls(
    rng: &mut fastrand::Rng,
    n: usize,
    start_ms: i64,
    span_ms: i64,
) -> Vec<LlmCall> {
    (0..n)
        .map(|i| call(rng, start_ms + (i as i64 * span_ms) / n.max(1) as i64))
        .collect()
}
