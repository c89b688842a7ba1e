//! The seed's API, with the seed's request bodies: same fields, correct values.

use std::time::Duration;

use sextant_tests::{eventually, json, now_ms, seed_percentile, Server, Value};

const BIN: &str = env!("CARGO_BIN_EXE_sextant-under-test");

fn server(config: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), config);
    (dir, s)
}

/// The seed's `MetricsRequest` for call `i`.
fn seed_metric(i: usize) -> Value {
    json!({
        "request_id": format!("req-{i}"),
        "model": "gpt-4o",
        "latency_ms": 5.0 + 10.0 * i as f64,
        "prompt_tokens": 100 + i,
        "completion_tokens": 50,
        "finish_reason": "stop",
        "error": if i % 10 == 0 { Value::from("rate_limited") } else { Value::Null },
        "user_id": "user-1",
    })
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn seed_endpoints_answer_with_seed_fields_and_correct_values() {
    let (_d, s) = server("[alerting]\neval_interval_seconds = 1\n");
    assert_eq!(s.get("/health").body, json!({"status": "healthy"}));

    let empty = s.get("/v1/summary?window_minutes=60");
    assert_eq!(empty.status, 200);
    assert_eq!(empty.body["count"], 0);
    assert!(empty.body.get("latency_p50_ms").is_none(), "{}", empty.text);

    let n = 100;
    for i in 0..n {
        let r = s.post("/v1/metrics", &seed_metric(i));
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            r.body,
            json!({"status": "recorded", "request_id": format!("req-{i}")})
        );
    }
    let latencies: Vec<f64> = (0..n).map(|i| 5.0 + 10.0 * i as f64).collect();
    let tokens: Vec<f64> = (0..n).map(|i| (150 + i) as f64).collect();
    let cost: f64 = (0..n)
        .map(|i| (100 + i) as f64 / 1000.0 * 0.0025 + 50.0 / 1000.0 * 0.01)
        .sum();

    for query in [
        "/v1/summary",
        "/v1/summary?window_minutes=60",
        "/v1/summary?exact=true",
    ] {
        let b = s.get(query).body;
        assert_eq!(b["count"], 100, "{query}: {b}");
        assert_eq!(b["errors"], 10);
        assert!(close(b["error_rate"].as_f64().unwrap(), 0.1, 1e-12));
        let avg_tokens = tokens.iter().sum::<f64>() / n as f64;
        assert!(
            close(b["avg_tokens"].as_f64().unwrap(), avg_tokens, 1e-9),
            "{b}"
        );
        assert!(
            close(b["total_cost_usd"].as_f64().unwrap(), cost, 1e-9),
            "{b}"
        );
        for (field, q) in [
            ("latency_p50_ms", 0.5),
            ("latency_p95_ms", 0.95),
            ("latency_p99_ms", 0.99),
        ] {
            let want = seed_percentile(&latencies, q);
            let got = b[field].as_f64().unwrap();
            // Documented bound (docs/api.md): within 2% of the range of values,
            // i.e. one rank either side for this evenly spaced data.
            assert!(
                close(got, want, 0.02 * 990.0),
                "{query} {field}: {got} vs seed {want}"
            );
        }
    }

    // Quality: the seed's heuristics.
    let text =
        "I'm not sure, but I think the answer is probably 42. Sorry for the error, that was bad.";
    let r = s.post(
        "/v1/quality",
        &json!({"request_id": "req-1", "response": text, "query": "what?"}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let words = text.split_whitespace().count() as f64;
    assert_eq!(r.body["request_id"], "req-1");
    assert_eq!(r.body["response_length"], text.chars().count());
    assert_eq!(r.body["has_refusal"], false);
    assert_eq!(r.body["has_hallucination_markers"], true);
    assert!(
        close(
            r.body["sentiment_score"].as_f64().unwrap(),
            -3.0 / words,
            1e-12
        ),
        "{}",
        r.text
    );
    let r = s.post("/v1/quality", &json!({"request_id": "req-2", "response": "As an AI, I cannot help with that. Great question though!"}));
    assert_eq!(r.body["has_refusal"], true);
    assert_eq!(r.body["has_hallucination_markers"], false);

    let r = s.post(
        "/v1/feedback",
        &json!({"request_id": "req-3", "rating": 4, "feedback": "good"}),
    );
    assert_eq!(r.body, json!({"status": "recorded", "request_id": "req-3"}));

    let d = s.get("/v1/drift").body;
    assert_eq!(d["drift_detected"], false);
    assert_eq!(d["reason"], "insufficient_data", "{d}");

    // The seed's trace miss, exactly.
    let t = s.get("/v1/traces/no-such-trace");
    assert_eq!(t.status, 404);
    assert_eq!(t.body, json!({"error": "trace_not_found"}));

    // Seed-shaped spans.
    let now = now_ms();
    let spans = json!({"spans": [
        {"trace_id": "trace-a", "span_id": "s1", "parent_span_id": null, "name": "chain.rag_pipeline",
         "start_time": now - 3000, "end_time": now - 1000, "attributes": {"chain.name": "rag_pipeline"}},
        {"trace_id": "trace-a", "span_id": "s2", "parent_span_id": "s1", "name": "retrieval.vector_search",
         "start_time": now - 2900, "end_time": now - 2500, "attributes": {"retrieval.doc_count": 5}},
        {"trace_id": "trace-a", "span_id": "s3", "parent_span_id": "s1", "name": "llm.chat.completion",
         "start_time": now - 2400, "end_time": now - 1100, "status": "ok",
         "attributes": {"llm.model": "gpt-4o-mini", "llm.operation": "chat.completion",
                        "llm.prompt_tokens": 800, "llm.completion_tokens": 120, "llm.total_tokens": 920}}
    ]});
    let r = s.post("/v1/spans", &spans);
    assert_eq!(r.status, 200, "{}", r.text);
    let t = s.get("/v1/traces/trace-a").body;
    assert_eq!(t["trace_id"], "trace-a");
    let got = t["spans"].as_array().unwrap();
    assert_eq!(got.len(), 3, "{t}");
    assert_eq!(got[0]["span_id"], "s1");
    assert_eq!(got[0]["parent_span_id"], Value::Null);
    assert_eq!(got[0]["duration_ms"], 2000.0);
    assert_eq!(got[0]["status"], "ok");
    assert_eq!(got[2]["attributes"]["llm.total_tokens"], 920);
    for sp in got {
        for k in [
            "span_id",
            "parent_span_id",
            "name",
            "duration_ms",
            "status",
            "attributes",
        ] {
            assert!(sp.get(k).is_some(), "{k} missing in {sp}");
        }
    }
    // The LLM span also became a call.
    let b = s.get("/v1/summary?model=gpt-4o-mini").body;
    assert_eq!(b["count"], 1, "{b}");
    assert_eq!(b["avg_tokens"], 920.0);

    // Alerts: 10% errors fires the seed's high_error_rate rule.
    let alerts = eventually(Duration::from_secs(60), || {
        let a = s.get("/v1/alerts?hours=1").body;
        (a["count"].as_u64().unwrap_or(0) > 0).then_some(a)
    });
    let names: Vec<&str> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"high_error_rate"), "{alerts}");
    for a in alerts["alerts"].as_array().unwrap() {
        for k in ["id", "name", "severity", "message", "timestamp"] {
            assert!(a.get(k).is_some(), "{k} missing in {a}");
        }
    }
}

#[test]
fn batch_ingest_stores_valid_items_and_reports_invalid_ones_by_index() {
    let (_d, s) = server("");
    let mut items: Vec<Value> = (0..5).map(seed_metric).collect();
    items[2]["latency_ms"] = json!(-1);
    items[4].as_object_mut().unwrap().remove("model");
    let r = s.post("/v1/metrics/batch", &Value::Array(items.clone()));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["accepted"], 3);
    assert_eq!(r.body["rejected"], 2);
    assert_eq!(r.body["errors"][0]["index"], 2);
    assert_eq!(r.body["errors"][0]["error"]["field"], "latency_ms");
    assert_eq!(r.body["errors"][1]["index"], 4);
    assert_eq!(r.body["errors"][1]["error"]["field"], "model");
    // NDJSON, one line broken.
    let mut nd = String::new();
    for i in 10..13 {
        nd.push_str(&seed_metric(i).to_string());
        nd.push('\n');
    }
    nd.push_str("{\"request_id\": \n");
    let r = s.raw(
        "POST",
        "/v1/metrics/batch",
        &[("content-type", "application/x-ndjson")],
        nd.into_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        (r.body["accepted"].as_u64(), r.body["rejected"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(r.body["errors"][0]["index"], 3);
    assert_eq!(s.get("/v1/summary").body["count"], 6);
}

#[test]
fn summary_extensions_filter_group_and_take_explicit_ranges() {
    let (_d, s) = server("");
    let now = now_ms();
    let mut items = Vec::new();
    for i in 0..30 {
        let mut m = seed_metric(i);
        m["model"] = json!(if i % 3 == 0 { "gpt-4o-mini" } else { "gpt-4o" });
        m["endpoint"] = json!("chat");
        m["tags"] = json!({"team": if i % 2 == 0 { "search" } else { "ads" }});
        m["timestamp"] = json!(now - 10 * 60_000 + i as i64 * 1000);
        items.push(m);
    }
    // Back-filled two days ago (RFC 3339 and Unix ms).
    let old = now - 2 * 86_400_000;
    let mut m = seed_metric(99);
    m["timestamp"] = json!(old);
    items.push(m);
    assert_eq!(
        s.post("/v1/metrics/batch", &Value::Array(items)).body["accepted"],
        31
    );

    let g = s.get("/v1/summary?group_by=model").body;
    let groups = g["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{g}");
    let mini = groups
        .iter()
        .find(|x| x["labels"]["model"] == "gpt-4o-mini")
        .unwrap();
    assert_eq!(mini["count"], 10);
    assert_eq!(s.get("/v1/summary?tag.team=search").body["count"], 15);
    assert_eq!(s.get("/v1/summary?error=true").body["count"], 3);
    let from = old - 60_000;
    let to = old + 60_000;
    assert_eq!(
        s.get(&format!("/v1/summary?from={from}&to={to}")).body["count"],
        1
    );
    let q = s
        .get(&format!(
            "/v1/query?metric=count&from={}&to={}&step=5m",
            now - 15 * 60_000,
            now + 60_000
        ))
        .body;
    assert_eq!(q["metric"], "count");
    assert_eq!(q["step_seconds"], 300);
    let total: f64 = q["series"][0]["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p[1].as_f64())
        .sum();
    assert_eq!(total, 30.0, "{q}");
}

#[test]
fn pricing_endpoints_list_prices_and_unpriced_models() {
    let (_d, s) = server(
        "[[pricing.price]]\nmodel = \"house-llm\"\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n",
    );
    let p = s.get("/v1/pricing").body;
    let models: Vec<&str> = p["prices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["model"].as_str().unwrap())
        .collect();
    assert!(
        models.contains(&"house-llm") && models.contains(&"gpt-4o"),
        "{p}"
    );
    let mut a = seed_metric(1);
    a["model"] = json!("house-llm-v2");
    let mut b = seed_metric(2);
    b["model"] = json!("mystery-model");
    let mut c = seed_metric(3);
    c["model"] = json!("mystery-model");
    c["cost_usd"] = json!(0.5);
    for m in [a, b, c] {
        assert_eq!(s.post("/v1/metrics", &m).status, 200);
    }
    let u = s.get("/v1/pricing/unpriced").body;
    assert_eq!(
        u["models"],
        json!([{"model": "mystery-model", "calls_without_price": 1, "calls": 2}]),
        "{u}"
    );
    let sum = s.get("/v1/summary?model=house-llm-v2").body;
    assert!(
        close(
            sum["total_cost_usd"].as_f64().unwrap(),
            101.0 / 1e6 + 100.0 / 1e6,
            1e-12
        ),
        "{sum}"
    );
}
