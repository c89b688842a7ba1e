//! Bad input across every endpoint: each case is a 4xx with a JSON error,
//! the server stays healthy, and stored data is unchanged.

use sextant_tests::{json, now_ms, Server, Value};

const BIN: &str = env!("CARGO_BIN_EXE_sextant-under-test");

const CONFIG: &str = "[server]\nmax_body_bytes = 65536\nmax_batch_items = 100\n";

fn metric() -> Value {
    json!({"request_id": "ok-1", "model": "gpt-4o", "latency_ms": 10.0, "prompt_tokens": 1,
           "completion_tokens": 1, "finish_reason": "stop"})
}

fn with(key: &str, v: Value) -> Vec<u8> {
    let mut m = metric();
    m[key] = v;
    m.to_string().into_bytes()
}

fn without(key: &str) -> Vec<u8> {
    let mut m = metric();
    m.as_object_mut().unwrap().remove(key);
    m.to_string().into_bytes()
}

fn j(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

struct Case {
    method: &'static str,
    path: String,
    content_type: &'static str,
    extra: Option<(&'static str, &'static str)>,
    body: Vec<u8>,
    status: u16,
}

fn case(method: &'static str, path: &str, body: Vec<u8>, status: u16) -> Case {
    Case {
        method,
        path: path.to_string(),
        content_type: "application/json",
        extra: None,
        body,
        status,
    }
}

fn cases() -> Vec<Case> {
    let now = now_ms();
    let span = |patch: Value| {
        let mut s = json!({"trace_id": "t", "span_id": "s", "name": "chain.x", "start_time": now - 10, "end_time": now});
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                s.as_object_mut().unwrap().remove(k);
            } else {
                s[k] = v.clone();
            }
        }
        j(json!([s]))
    };
    let mut c = vec![
        // POST /v1/metrics
        case("POST", "/v1/metrics", b"{\"request_id\":".to_vec(), 400),
        case("POST", "/v1/metrics", Vec::new(), 400),
        case("POST", "/v1/metrics", j(json!([1, 2])), 422),
        case("POST", "/v1/metrics", b"null".to_vec(), 422),
        case("POST", "/v1/metrics", without("request_id"), 422),
        case("POST", "/v1/metrics", without("model"), 422),
        case("POST", "/v1/metrics", without("latency_ms"), 422),
        case("POST", "/v1/metrics", without("prompt_tokens"), 422),
        case("POST", "/v1/metrics", without("completion_tokens"), 422),
        case("POST", "/v1/metrics", without("finish_reason"), 422),
        case("POST", "/v1/metrics", with("latency_ms", json!("fast")), 422),
        case("POST", "/v1/metrics", with("latency_ms", json!(-1)), 422),
        case("POST", "/v1/metrics", with("latency_ms", json!(1e300)), 422),
        case("POST", "/v1/metrics", with("prompt_tokens", json!(-5)), 422),
        case("POST", "/v1/metrics", with("prompt_tokens", json!(1.5)), 422),
        case("POST", "/v1/metrics", with("prompt_tokens", json!(1e20)), 422),
        case("POST", "/v1/metrics", with("completion_tokens", json!(true)), 422),
        case("POST", "/v1/metrics", with("request_id", json!("")), 422),
        case("POST", "/v1/metrics", with("request_id", json!("x".repeat(10_000))), 422),
        case("POST", "/v1/metrics", with("request_id", json!("a\u{0}b")), 422),
        case("POST", "/v1/metrics", with("model", json!("m".repeat(10_000))), 422),
        case("POST", "/v1/metrics", with("tags", json!("team=search")), 422),
        case("POST", "/v1/metrics", with("tags", json!({"a": {"b": 1}})), 422),
        case("POST", "/v1/metrics", with("timestamp", json!(now + 3_600_000)), 422),
        case("POST", "/v1/metrics", with("timestamp", json!("yesterday")), 422),
        case("POST", "/v1/metrics", with("timestamp", json!("1900-01-01T00:00:00Z")), 422),
        case("POST", "/v1/metrics", with("cost_usd", json!(-0.5)), 422),
        case("POST", "/v1/metrics", with("cached_input_tokens", json!(5)), 422),
        case("POST", "/v1/metrics", with("error", json!(42)), 422),
        case("POST", "/v1/metrics", with("user_id", json!({"id": 1})), 422),
        case("POST", "/v1/metrics", br#"{"request_id":"x","model":"m","latency_ms":NaN,"prompt_tokens":1,"completion_tokens":1,"finish_reason":"s"}"#.to_vec(), 400),
        case("POST", "/v1/metrics", b"{\"request_id\":\"\xff\xfe\"}".to_vec(), 400),
        case("POST", "/v1/metrics", "[".repeat(10_000).into_bytes(), 400),
        case("POST", "/v1/metrics", vec![b' '; 70_000], 413),
        Case { content_type: "text/plain", ..case("POST", "/v1/metrics", j(metric()), 415) },
        Case { content_type: "application/x-www-form-urlencoded", ..case("POST", "/v1/metrics", b"a=1".to_vec(), 415) },
        // POST /v1/metrics/batch
        case("POST", "/v1/metrics/batch", j(json!([])), 422),
        case("POST", "/v1/metrics/batch", j(json!([{"model": "x"}, 3])), 422),
        case("POST", "/v1/metrics/batch", b"[1, 2".to_vec(), 400),
        case("POST", "/v1/metrics/batch", j(Value::Array(vec![metric(); 101])), 413),
        Case { extra: Some(("content-encoding", "gzip")), ..case("POST", "/v1/metrics/batch", b"not gzip at all".to_vec(), 400) },
        Case { extra: Some(("content-encoding", "br")), ..case("POST", "/v1/metrics/batch", j(json!([metric()])), 415) },
        // POST /v1/quality, /v1/feedback
        case("POST", "/v1/quality", j(json!({"request_id": "q"})), 422),
        case("POST", "/v1/quality", j(json!({"request_id": "q", "response": 5})), 422),
        case("POST", "/v1/quality", j(json!({"response": "hi"})), 422),
        case("POST", "/v1/feedback", j(json!({"request_id": "f", "rating": 4.5})), 422),
        case("POST", "/v1/feedback", j(json!({"request_id": "f", "rating": 1e12})), 422),
        case("POST", "/v1/feedback", j(json!({"request_id": "f", "rating": "5"})), 422),
        case("POST", "/v1/feedback", j(json!({"rating": 5})), 422),
        // POST /v1/spans
        case("POST", "/v1/spans", j(json!({"spans": 3})), 422),
        case("POST", "/v1/spans", span(json!({"end_time": now - 100})), 422),
        case("POST", "/v1/spans", span(json!({"trace_id": null})), 422),
        case("POST", "/v1/spans", span(json!({"status": "weird"})), 422),
        case("POST", "/v1/spans", span(json!({"kind": "database"})), 422),
        // POST /v1/traces (OTLP)
        Case { content_type: "application/x-protobuf", ..case("POST", "/v1/traces", vec![0xff, 0xff, 0xff, 0xff, 0x0f], 400) },
        Case { content_type: "text/plain", ..case("POST", "/v1/traces", b"hello".to_vec(), 415) },
        case("POST", "/v1/traces", b"{\"resourceSpans\": [".to_vec(), 400),
        case("POST", "/v1/traces", j(json!({"resourceSpans": 7})), 400),
        // Queries
        case("GET", "/v1/summary?window_minutes=abc", vec![], 400),
        case("GET", "/v1/summary?window_minutes=-5", vec![], 400),
        case("GET", "/v1/summary?window_minutes=0", vec![], 400),
        case("GET", "/v1/summary?window_minutes=99999999999999999999", vec![], 400),
        case("GET", "/v1/summary?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z", vec![], 400),
        case("GET", "/v1/summary?group_by=colour", vec![], 400),
        case("GET", "/v1/summary?exact=maybe", vec![], 400),
        case("GET", "/v1/summary?error=perhaps", vec![], 400),
        case("GET", "/v1/query", vec![], 400),
        case("GET", "/v1/query?metric=bogus", vec![], 400),
        case("GET", "/v1/query?metric=count&step=5x", vec![], 400),
        case("GET", "/v1/query?metric=count&window_minutes=525600&step=1m", vec![], 400),
        case("GET", "/v1/alerts?hours=abc", vec![], 400),
        case("GET", "/v1/alerts?hours=0", vec![], 400),
        case("GET", "/v1/traces?limit=0", vec![], 400),
        case("GET", "/v1/traces?limit=many", vec![], 400),
        case("GET", "/v1/drift?window_minutes=x", vec![], 400),
        case("GET", "/v1/drift?baseline=7x", vec![], 400),
        case("GET", "/v1/drift?refusal_rate_abs=-1", vec![], 400),
        // Rules, silences, baselines
        case("POST", "/v1/rules", j(json!({"name": "r", "metric": "error_rate", "threshold": 1})), 422),
        case("POST", "/v1/rules", j(json!({"name": "r", "metric": "error_rate", "op": ">", "threshold": 1, "colour": "red"})), 422),
        case("POST", "/v1/rules", b"{".to_vec(), 400),
        case("GET", "/v1/rules/no-such-rule", vec![], 404),
        case("POST", "/v1/silences", j(json!({"starts_ms": 10, "ends_ms": 5})), 422),
        case("POST", "/v1/drift/baselines", j(json!({"name": "b", "from": now, "to": now - 1000})), 422),
        case("POST", "/v1/drift/baselines", j(json!({"name": "b"})), 422),
        case("DELETE", "/v1/drift/baselines/none-such", vec![], 404),
        // Routing
        case("GET", "/v1/nope", vec![], 404),
        case("DELETE", "/v1/metrics", vec![], 405),
    ];
    c.push(case(
        "GET",
        &format!("/v1/traces/{}", "t".repeat(600)),
        vec![],
        404,
    ));
    c
}

#[test]
fn every_bad_input_is_a_4xx_json_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), CONFIG);
    assert_eq!(s.post("/v1/metrics", &metric()).status, 200);
    let from = now_ms() - 3_600_000;
    let to = now_ms() + 3_600_000;
    let state = |s: &Server| {
        (
            s.get(&format!("/v1/summary?from={from}&to={to}&exact=true"))
                .body,
            s.get("/v1/traces?limit=100").body,
            s.get("/v1/rules").body,
            s.get("/v1/drift/baselines").body,
        )
    };
    let before = state(&s);
    let cases = cases();
    assert!(cases.len() >= 50, "{} cases", cases.len());
    for (i, c) in cases.iter().enumerate() {
        let mut headers = vec![("content-type", c.content_type)];
        if let Some(e) = c.extra {
            headers.push(e);
        }
        let r = s.raw(c.method, &c.path, &headers, c.body.clone());
        let shown: String = String::from_utf8_lossy(&c.body).chars().take(80).collect();
        assert_eq!(
            r.status,
            c.status,
            "case {i}: {} {} {shown}: {}",
            c.method,
            &c.path[..c.path.len().min(80)],
            r.text
        );
        let err = &r.body["error"];
        assert!(
            err.is_string()
                || (err["code"].is_string()
                    && err["message"].is_string()
                    && err.get("field").is_some()),
            "case {i}: not a JSON error: {}",
            r.text
        );
        assert_eq!(s.get("/health").status, 200, "case {i} hurt the server");
    }
    assert_eq!(state(&s), before, "bad input changed stored data");
}
