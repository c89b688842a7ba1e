//! Segment-level tests: exact round trips, filtered decode against
//! `RowFilter::matches`, corruption, and the on-disk size of a realistic workload.

use std::collections::BTreeMap;

use proptest::prelude::*;
use sextant_model::{Dim, LlmCall, PriceTable, TimeRange};

use super::segment::{column_sizes, decode_segment, encode_segment, read_header};
use super::Dict;
use crate::api::RowFilter;
use crate::frame;

const ALL: TimeRange = TimeRange {
    from_ms: i64::MIN,
    to_ms: i64::MAX,
};

/// A call with its floats replaced by their bits, so NaN payloads and −0.0 compare exactly.
fn exact(c: &LlmCall) -> (LlmCall, u64, Option<u64>, Option<u64>) {
    let mut z = c.clone();
    z.latency_ms = 0.0;
    z.time_to_first_token_ms = None;
    z.cost_usd = None;
    (
        z,
        c.latency_ms.to_bits(),
        c.time_to_first_token_ms.map(f64::to_bits),
        c.cost_usd.map(f64::to_bits),
    )
}

fn exact_all(v: &[LlmCall]) -> Vec<(LlmCall, u64, Option<u64>, Option<u64>)> {
    v.iter().map(exact).collect()
}

fn sorted(v: &[LlmCall]) -> Vec<LlmCall> {
    let mut v = v.to_vec();
    v.sort_by_key(|c| c.timestamp_ms);
    v
}

fn edge_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(5e-324),
        (0i64..100_000).prop_map(|x| x as f64 / 10.0),
    ]
}

fn small_str() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("gpt-4o".to_string()),
        Just("claude-3-5-sonnet".to_string()),
        "[a-z]{1,3}",
        ".{0,6}",
    ]
}

fn id_str() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[0-9a-f]{32}",
        "[0-9a-f]{16}",
        "[0-9A-Za-z-]{0,20}",
    ]
}

fn edge_u64() -> impl Strategy<Value = u64> {
    prop_oneof![any::<u64>(), Just(u64::MAX), Just(0u64), 0u64..5000]
}

prop_compose! {
    fn arb_call()(
        request_id in id_str(),
        timestamp_ms in prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX - 1), 1_700_000_000_000i64..1_700_000_100_000],
        model in small_str(), provider in small_str(), endpoint in small_str(), finish_reason in small_str(),
        latency_ms in edge_f64(),
        ttft in proptest::option::of(edge_f64()),
        tokens in (edge_u64(), edge_u64(), edge_u64(), edge_u64(), edge_u64()),
        cost_usd in proptest::option::of(edge_f64()),
        error in proptest::option::of(small_str()),
        user_id in proptest::option::of(small_str()),
        session_id in proptest::option::of(small_str()),
        trace_id in proptest::option::of(id_str()),
        span_id in proptest::option::of(id_str()),
        tags in proptest::collection::btree_map(small_str(), small_str(), 0..3),
    ) -> LlmCall {
        LlmCall {
            request_id, timestamp_ms, model, provider, endpoint, latency_ms,
            time_to_first_token_ms: ttft,
            prompt_tokens: tokens.0, completion_tokens: tokens.1, total_tokens: tokens.2,
            cached_input_tokens: tokens.3, reasoning_tokens: tokens.4,
            cost_usd, finish_reason, error, user_id, session_id, trace_id, span_id, tags,
        }
    }
}

fn arb_filter() -> impl Strategy<Value = RowFilter> {
    let dim = prop_oneof![
        Just(Dim::Model),
        Just(Dim::Endpoint),
        Just(Dim::Provider),
        Just(Dim::FinishReason),
        Just(Dim::UserId),
        Just(Dim::SessionId),
        small_str().prop_map(Dim::Tag),
    ];
    (
        proptest::collection::vec((dim, proptest::collection::vec(small_str(), 0..3)), 0..3),
        proptest::option::of(any::<bool>()),
    )
        .prop_map(|(equals, error)| RowFilter { equals, error })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn segment_round_trips_every_field_exactly(calls in proptest::collection::vec(arb_call(), 0..40)) {
        let mut dict = Dict::new();
        let bytes = encode_segment(&calls, &mut dict);
        let h = read_header(&bytes).unwrap();
        prop_assert_eq!(h.rows as usize, calls.len());
        let got = decode_segment(&bytes, &dict, ALL, &RowFilter::default()).unwrap();
        let want = sorted(&calls);
        prop_assert_eq!(exact_all(&got), exact_all(&want));
        if let (Some(first), Some(last)) = (want.first(), want.last()) {
            prop_assert_eq!((h.min_ts_ms, h.max_ts_ms), (first.timestamp_ms, last.timestamp_ms));
        }
        // A dictionary reloaded from its pending entries decodes the same.
        let reloaded = Dict::from_entries(dict.take_pending()).unwrap();
        let again = decode_segment(&bytes, &reloaded, ALL, &RowFilter::default()).unwrap();
        prop_assert_eq!(exact_all(&again), exact_all(&want));
    }

    #[test]
    fn filtered_decode_equals_row_filter_on_full_decode(
        calls in proptest::collection::vec(arb_call(), 0..40),
        filter in arb_filter(),
        bounds in (1_700_000_000_000i64..1_700_000_100_000, 0i64..100_000),
    ) {
        let mut dict = Dict::new();
        let bytes = encode_segment(&calls, &mut dict);
        let range = TimeRange::new(bounds.0, bounds.0 + bounds.1);
        let want: Vec<LlmCall> = decode_segment(&bytes, &dict, ALL, &RowFilter::default())
            .unwrap()
            .into_iter()
            .filter(|c| range.contains(c.timestamp_ms) && filter.matches(c))
            .collect();
        let got = decode_segment(&bytes, &dict, range, &filter).unwrap();
        prop_assert_eq!(exact_all(&got), exact_all(&want));
    }

    #[test]
    fn corrupted_payload_with_valid_checksum_never_panics(
        calls in proptest::collection::vec(arb_call(), 1..12),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut dict = Dict::new();
        let bytes = encode_segment(&calls, &mut dict);
        let mut payload = bytes[frame::FRAME_HEADER..].to_vec();
        for (i, x) in flips {
            let i = i.index(payload.len());
            payload[i] ^= x.max(1);
        }
        let bad = frame::frame(bytes[0], &payload);
        let _ = read_header(&bad);
        let _ = column_sizes(&bad);
        let _ = decode_segment(&bad, &dict, ALL, &RowFilter::default());
    }

    #[test]
    fn random_bytes_are_rejected(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        let dict = Dict::new();
        prop_assert!(decode_segment(&b, &dict, ALL, &RowFilter::default()).is_err());
        prop_assert!(read_header(&b).is_err());
    }
}

#[test]
fn every_truncation_of_a_segment_is_an_error() {
    let calls = workload(300, 7, true);
    let mut dict = Dict::new();
    let bytes = encode_segment(&calls, &mut dict);
    for cut in 0..bytes.len() {
        assert!(decode_segment(&bytes[..cut], &dict, ALL, &RowFilter::default()).is_err());
        assert!(read_header(&bytes[..cut]).is_err());
    }
}

#[test]
fn empty_and_single_row_segments_round_trip() {
    let mut dict = Dict::new();
    let bytes = encode_segment(&[], &mut dict);
    assert_eq!(read_header(&bytes).unwrap().rows, 0);
    assert!(decode_segment(&bytes, &dict, ALL, &RowFilter::default())
        .unwrap()
        .is_empty());
    let one = LlmCall {
        request_id: String::new(),
        latency_ms: -0.0,
        error: Some(String::new()),
        tags: BTreeMap::from([(String::new(), String::new())]),
        ..LlmCall::default()
    };
    let bytes = encode_segment(std::slice::from_ref(&one), &mut dict);
    let got = decode_segment(&bytes, &dict, ALL, &RowFilter::default()).unwrap();
    assert_eq!(exact_all(&got), exact_all(&[one]));
}

#[test]
fn segment_with_an_unknown_dictionary_id_is_an_error() {
    let calls = workload(50, 3, true);
    let mut dict = Dict::new();
    let bytes = encode_segment(&calls, &mut dict);
    assert!(decode_segment(&bytes, &Dict::new(), ALL, &RowFilter::default()).is_err());
}

#[test]
fn computed_costs_are_stored_by_their_prices_not_as_floats() {
    let calls = workload(5000, 11, true);
    let mut dict = Dict::new();
    let bytes = encode_segment(&calls, &mut dict);
    let sizes = column_sizes(&bytes).unwrap();
    let cost = sizes.iter().find(|c| c.0 == "cost_usd").unwrap().1;
    assert!(cost < 400, "cost column is {cost} bytes for 5000 rows");
    let got = decode_segment(&bytes, &dict, ALL, &RowFilter::default()).unwrap();
    assert_eq!(exact_all(&got), exact_all(&sorted(&calls)));
}

// ------------------------------------------------------------- workload

fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = rng.f64().max(1e-300);
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn lognormal(rng: &mut fastrand::Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

fn uuid_v4(rng: &mut fastrand::Rng) -> String {
    let x = rng.u128(..);
    let x = (x & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{x:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The realistic workload of the size target: a few models and endpoints,
/// lognormal latencies (rounded to 0.1 ms when `rounded`), ttft on half the
/// calls, lognormal tokens, price-table costs, 300 users, UUIDv4 ids, 10–1,000
/// events/s with jitter, mostly "stop", ~2% errors, 0–2 tags.
pub(super) fn workload(n: usize, seed: u64, rounded: bool) -> Vec<LlmCall> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let prices = PriceTable::default();
    let models = [
        ("gpt-4o", "openai", 40),
        ("gpt-4o-mini", "openai", 30),
        ("claude-3-5-sonnet", "anthropic", 20),
        ("gemini-2.0-flash", "google", 10),
    ];
    let endpoints = ["chat", "summarize", "search", "classify"];
    let errors = [
        "rate_limit_exceeded",
        "timeout",
        "context_length_exceeded",
        "internal_server_error",
        "invalid_request",
    ];
    let round = |x: f64| {
        if rounded {
            (x * 10.0).round() / 10.0
        } else {
            x
        }
    };
    let mut t = 1_760_000_000_000f64;
    (0..n)
        .map(|i| {
            // Rate drifts between ~10 and ~1,000 events/s.
            let rate = 10f64.powf(2.0 + (i as f64 / 5000.0).sin());
            t += -rng.f64().max(1e-12).ln() * 1000.0 / rate;
            let timestamp_ms = t as i64 + rng.i64(-20..=20);
            let pick = rng.u32(0..100);
            let (model, provider, _) = *models
                .iter()
                .scan(0, |acc, m| {
                    *acc += m.2;
                    Some((*acc, m))
                })
                .find(|(acc, _)| pick < *acc)
                .map(|x| x.1)
                .unwrap_or(&models[0]);
            let prompt_tokens = lognormal(&mut rng, 800.0, 0.8).round().max(1.0) as u64;
            let completion_tokens = lognormal(&mut rng, 250.0, 0.7).round().max(1.0) as u64;
            let is_err = rng.u32(0..100) < 2;
            let mut tags = BTreeMap::new();
            if rng.u32(0..10) < 6 {
                tags.insert("env".into(), ["prod", "staging"][rng.usize(0..2)].into());
            }
            if rng.u32(0..10) < 4 {
                tags.insert("feature".into(), format!("f{}", rng.u32(0..5)));
            }
            let mut call = LlmCall {
                request_id: uuid_v4(&mut rng),
                timestamp_ms,
                model: model.into(),
                provider: provider.into(),
                endpoint: endpoints[rng.usize(0..endpoints.len())].into(),
                latency_ms: round(lognormal(&mut rng, 900.0, 0.6)),
                time_to_first_token_ms: rng.bool().then(|| round(lognormal(&mut rng, 250.0, 0.5))),
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens + completion_tokens,
                finish_reason: if is_err {
                    String::new()
                } else {
                    match rng.u32(0..100) {
                        0..=94 => "stop",
                        95..=98 => "length",
                        _ => "tool_calls",
                    }
                    .into()
                },
                error: is_err.then(|| errors[rng.usize(0..errors.len())].to_string()),
                user_id: Some(format!("user-{}", rng.u32(0..300))),
                tags,
                ..LlmCall::default()
            };
            call.cost_usd = prices.cost(&call);
            call
        })
        .collect()
}

fn measure(rounded: bool) -> f64 {
    let n = 100_000;
    let calls = workload(n, 42, rounded);
    let mut dict = Dict::new();
    let t0 = std::time::Instant::now();
    let bytes = encode_segment(&calls, &mut dict);
    let enc = t0.elapsed();
    let t0 = std::time::Instant::now();
    let got = decode_segment(&bytes, &dict, ALL, &RowFilter::default()).unwrap();
    let dec = t0.elapsed();
    assert_eq!(exact_all(&got), exact_all(&sorted(&calls)));
    let per = bytes.len() as f64 / n as f64;
    println!(
        "workload rounded={rounded}: {} rows, {} bytes, {per:.2} bytes/event (encode {enc:?}, decode {dec:?})",
        n,
        bytes.len()
    );
    for (name, size) in column_sizes(&bytes).unwrap() {
        println!(
            "  {name:<24} {size:>9} B  {:>6.2} B/event",
            size as f64 / n as f64
        );
    }
    per
}

/// Documented bound (docs/format/segment.md): ≤ 26.5 bytes/event including the
/// 16-byte request id for the realistic workload with latencies rounded to 0.1 ms.
#[test]
fn realistic_workload_fits_the_documented_size_bound() {
    let rounded = measure(true);
    assert!(rounded <= 26.5, "{rounded:.2} bytes/event");
    let unrounded = measure(false);
    assert!(unrounded <= 35.0, "{unrounded:.2} bytes/event unrounded");
}
