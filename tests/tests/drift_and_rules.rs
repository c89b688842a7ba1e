//! Drift against offset and pinned baselines; rules, silences and history CRUD.

use sextant_tests::{json, now_ms, Server, Value};

const BIN: &str = env!("CARGO_BIN_EXE_sextant-under-test");

fn quality(s: &Server, id: String, ts: i64, text: &str) {
    let r = s.post(
        "/v1/quality",
        &json!({"request_id": id, "timestamp": ts, "response": text}),
    );
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn drift_detects_a_refusal_rise_against_offset_and_pinned_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), "");
    let now = now_ms();
    // Baseline hour (the hour before the current one): 5% refusals. Current hour: 40% refusals.
    for i in 0..40 {
        let text = if i % 20 == 0 {
            "I cannot help with that request at all."
        } else {
            "Here is a helpful answer for you."
        };
        quality(
            &s,
            format!("b{i}"),
            now - 2 * 3_600_000 + 30_000 + i * 60_000,
            text,
        );
    }
    for i in 0..40 {
        let text = if i % 5 < 2 {
            "I cannot help with that request at all."
        } else {
            "Here is a helpful answer for you."
        };
        quality(&s, format!("c{i}"), now - 3_000_000 + i * 60_000, text);
    }
    let d = s.get("/v1/drift?window_minutes=60&baseline=1h").body;
    assert_eq!(d["drift_detected"], true, "{d}");
    assert!(
        (d["metrics"]["baseline_refusal_rate"].as_f64().unwrap() - 0.05).abs() < 1e-9,
        "{d}"
    );
    assert!(
        (d["metrics"]["current_refusal_rate"].as_f64().unwrap() - 0.4).abs() < 1e-9,
        "{d}"
    );
    let reasons: Vec<&str> = d["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("refusal_rate_change: 0.05 -> 0.40")),
        "{reasons:?}"
    );

    // The same through a pinned baseline; then delete it.
    let r = s.post(
        "/v1/drift/baselines",
        &json!({"name": "last-week", "from": now - 2 * 3_600_000, "to": now - 3_600_000}),
    );
    assert_eq!(r.status, 201, "{}", r.text);
    let list = s.get("/v1/drift/baselines").body;
    assert_eq!(list["baselines"][0]["name"], "last-week");
    let d2 = s
        .get("/v1/drift?window_minutes=60&baseline_name=last-week")
        .body;
    assert_eq!(d2["drift_detected"], true, "{d2}");
    assert_eq!(
        s.raw("DELETE", "/v1/drift/baselines/last-week", &[], vec![])
            .status,
        200
    );
    assert_eq!(s.get("/v1/drift/baselines").body["baselines"], json!([]));
}

#[test]
fn rules_silences_and_history_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), "");
    let rules = s.get("/v1/rules").body;
    let names: Vec<&str> = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for seed in [
        "high_latency",
        "critical_latency",
        "high_error_rate",
        "critical_error_rate",
        "cost_spike",
        "token_spike",
    ] {
        assert!(names.contains(&seed), "{names:?}");
    }
    let rule = json!({"name": "p95_high", "metric": "latency_p95_ms", "window_minutes": 5,
        "filters": {"model": "gpt-4o"}, "group_by": ["model"], "op": ">", "threshold": 5000,
        "for_seconds": 60, "severity": "warning", "message": "P95 = {latency_p95_ms:.0f}ms"});
    let r = s.post("/v1/rules", &rule);
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(s.post("/v1/rules", &rule).status, 409);
    let got = s.get("/v1/rules/p95_high").body;
    assert_eq!(got["threshold"], 5000.0);
    let mut changed = rule.clone();
    changed["threshold"] = json!(7000);
    let r = s.raw(
        "PUT",
        "/v1/rules/p95_high",
        &[("content-type", "application/json")],
        changed.to_string().into_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(s.get("/v1/rules/p95_high").body["threshold"], 7000.0);
    assert_eq!(
        s.raw("DELETE", "/v1/rules/p95_high", &[], vec![]).status,
        200
    );
    assert_eq!(s.get("/v1/rules/p95_high").status, 404);

    let now = now_ms();
    let r = s.post("/v1/silences", &json!({"rule": "high_latency", "starts_ms": now, "ends_ms": now + 3_600_000, "comment": "deploy"}));
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(!id.is_empty());
    let list = s.get("/v1/silences").body;
    assert_eq!(list["count"], 1, "{list}");
    assert_eq!(
        s.raw("DELETE", &format!("/v1/silences/{id}"), &[], vec![])
            .status,
        200
    );
    assert_eq!(s.get("/v1/silences").body["count"], 0);

    let h = s.get("/v1/alerts/history?hours=1").body;
    assert!(h["history"].is_array(), "{h}");
    let a = s.get("/v1/alerts/active").body;
    assert!(a["instances"].is_array(), "{a}");
    let _: Value = s.get("/v1/notifiers").body;
}
