//! API keys: each scope allowed and denied where it should be.

use sextant_tests::{json, Server};

const BIN: &str = env!("CARGO_BIN_EXE_sextant-under-test");

/// (method, path, body, key header, expected status)
type Case<'a> = (&'a str, &'a str, Vec<u8>, Option<(&'a str, String)>, u16);

const CONFIG: &str = r#"
[auth]
ingest_keys = ["ingest-secret-1"]
read_keys = ["read-secret-12"]
admin_keys = ["admin-secret-1"]
"#;

#[test]
fn each_scope_is_allowed_and_denied_where_it_should_be() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), CONFIG);
    let metric = json!({"request_id": "a1", "model": "gpt-4o", "latency_ms": 1.0,
                        "prompt_tokens": 1, "completion_tokens": 1, "finish_reason": "stop"});
    let rule = json!({"name": "auth_rule", "metric": "error_rate", "op": ">", "threshold": 0.5});
    let body = |v: &serde_json::Value| v.to_string().into_bytes();
    let json_ct = ("content-type", "application/json");
    let cases: Vec<Case> = vec![
        ("GET", "/health", vec![], None, 200),
        ("GET", "/v1/summary", vec![], None, 401),
        ("POST", "/v1/metrics", body(&metric), None, 401),
        (
            "GET",
            "/v1/summary",
            vec![],
            Some(("authorization", "Bearer wrong-key-000".into())),
            401,
        ),
        (
            "POST",
            "/v1/metrics",
            body(&metric),
            Some(("authorization", "Bearer ingest-secret-1".into())),
            200,
        ),
        (
            "POST",
            "/v1/metrics",
            body(&metric),
            Some(("x-api-key", "ingest-secret-1".into())),
            200,
        ),
        (
            "GET",
            "/v1/summary",
            vec![],
            Some(("authorization", "Bearer ingest-secret-1".into())),
            403,
        ),
        (
            "POST",
            "/v1/rules",
            body(&rule),
            Some(("authorization", "Bearer ingest-secret-1".into())),
            403,
        ),
        (
            "GET",
            "/v1/summary",
            vec![],
            Some(("authorization", "Bearer read-secret-12".into())),
            200,
        ),
        (
            "GET",
            "/metrics",
            vec![],
            Some(("x-api-key", "read-secret-12".into())),
            200,
        ),
        (
            "GET",
            "/v1/rules",
            vec![],
            Some(("x-api-key", "read-secret-12".into())),
            200,
        ),
        (
            "POST",
            "/v1/metrics",
            body(&metric),
            Some(("x-api-key", "read-secret-12".into())),
            403,
        ),
        (
            "POST",
            "/v1/rules",
            body(&rule),
            Some(("x-api-key", "read-secret-12".into())),
            403,
        ),
        (
            "POST",
            "/v1/rules",
            body(&rule),
            Some(("x-api-key", "admin-secret-1".into())),
            201,
        ),
        (
            "DELETE",
            "/v1/rules/auth_rule",
            vec![],
            Some(("x-api-key", "read-secret-12".into())),
            403,
        ),
        (
            "GET",
            "/v1/summary",
            vec![],
            Some(("x-api-key", "admin-secret-1".into())),
            200,
        ),
        (
            "POST",
            "/v1/metrics",
            body(&metric),
            Some(("x-api-key", "admin-secret-1".into())),
            200,
        ),
        (
            "DELETE",
            "/v1/rules/auth_rule",
            vec![],
            Some(("x-api-key", "admin-secret-1".into())),
            200,
        ),
    ];
    for (method, path, b, key, want) in cases {
        let mut headers = vec![json_ct];
        let kv;
        if let Some((k, v)) = &key {
            kv = (*k, v.as_str());
            headers.push(kv);
        }
        let r = s.raw(method, path, &headers, b);
        assert_eq!(r.status, want, "{method} {path} with {key:?}: {}", r.text);
        if want >= 400 {
            assert!(r.body["error"]["code"].is_string(), "{}", r.text);
        }
    }
}
