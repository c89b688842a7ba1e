//! Persistence: answers are the same after SIGTERM and after `kill -9`, and
//! feedback for a call ingested before the restart is joined to it.

use sextant_tests::{json, now_ms, Server, Value};

const BIN: &str = env!("CARGO_BIN_EXE_sextant-under-test");

fn call(i: usize, model: &str) -> Value {
    json!({"request_id": format!("p-{model}-{i}"), "model": model, "endpoint": "chat",
           "latency_ms": 100.0 + (i * 37 % 500) as f64, "prompt_tokens": 10 + i,
           "completion_tokens": 5, "finish_reason": "stop",
           "error": if i % 7 == 0 { Value::from("boom") } else { Value::Null }})
}

/// Everything a restart must not change.
fn snapshot(s: &Server, from: i64, to: i64) -> Vec<Value> {
    let mut out = Vec::new();
    for q in [
        format!("/v1/summary?from={from}&to={to}&exact=true"),
        format!("/v1/summary?from={from}&to={to}&group_by=model&exact=true"),
        "/v1/traces/persist-trace".to_string(),
    ] {
        let r = s.get(&q);
        assert_eq!(r.status, 200, "{q}: {}", r.text);
        out.push(r.body);
    }
    let mut plain = s.get(&format!("/v1/summary?from={from}&to={to}")).body;
    // Rollup-served percentiles are compared separately (within bound).
    for k in ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms"] {
        plain.as_object_mut().unwrap().remove(k);
    }
    out.push(plain);
    out
}

fn ingest(s: &Server, model: &str, n: usize) {
    let items: Vec<Value> = (0..n).map(|i| call(i, model)).collect();
    let r = s.post("/v1/metrics/batch", &Value::Array(items));
    assert_eq!(r.body["accepted"], n, "{}", r.text);
    let now = now_ms();
    let r = s.post(
        "/v1/spans",
        &json!([
            {"trace_id": "persist-trace", "span_id": format!("root-{model}"), "name": "chain.x",
             "start_time": now - 500, "end_time": now - 100},
        ]),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.post(
        "/v1/quality",
        &json!({"request_id": format!("p-{model}-1"), "response": "I think so."}),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn answers_survive_sigterm_and_kill9_and_late_feedback_joins() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start(BIN, dir.path(), "");
    let from = now_ms() - 3_600_000;
    let to = now_ms() + 3_600_000;
    ingest(&s, "model-a", 200);
    let before = snapshot(&s, from, to);

    let (status, logs) = s.stop();
    assert!(
        status.success(),
        "clean shutdown failed: {status:?}\n{logs}"
    );
    s.restart();
    assert_eq!(
        snapshot(&s, from, to),
        before,
        "answers changed across SIGTERM"
    );

    // kill -9 right after the acknowledgements.
    ingest(&s, "model-b", 300);
    let before = snapshot(&s, from, to);
    s.kill9();
    s.restart();
    assert_eq!(
        snapshot(&s, from, to),
        before,
        "answers changed across kill -9"
    );
    assert_eq!(before[0]["count"], 500);

    // Feedback for calls ingested before both restarts joins their model.
    for (id, rating) in [("p-model-a-3", 5), ("p-model-a-4", 3), ("p-model-b-9", 1)] {
        let r = s.post("/v1/feedback", &json!({"request_id": id, "rating": rating}));
        assert_eq!(r.status, 200);
    }
    let g = s
        .get(&format!("/v1/summary?from={from}&to={to}&group_by=model"))
        .body;
    let groups = g["groups"].as_array().unwrap();
    let a = groups
        .iter()
        .find(|x| x["labels"]["model"] == "model-a")
        .unwrap();
    let b = groups
        .iter()
        .find(|x| x["labels"]["model"] == "model-b")
        .unwrap();
    assert_eq!(a["feedback_count"], 2.0, "{g}");
    assert_eq!(a["avg_rating"], 4.0);
    assert_eq!(b["feedback_count"], 1.0);
    let (status, logs) = s.stop();
    assert!(status.success(), "{logs}");
}
