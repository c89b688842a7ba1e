//! OTLP/HTTP trace ingest: protobuf and JSON with old and new gen_ai names,
//! gzip, partial success, and a real OpenTelemetry SDK exporter.

use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::KeyValue as OtelKv;
use prost::Message;
use sextant_tests::otlp::{self, kv_int, kv_str, kv_strs};
use sextant_tests::{json, now_ms, Server};

const BIN: &str = env!("CARGO_BIN_EXE_sextant-under-test");

fn request(spans: Vec<otlp::Span>) -> otlp::ExportTraceServiceRequest {
    otlp::ExportTraceServiceRequest {
        resource_spans: vec![otlp::ResourceSpans {
            resource: Some(otlp::Resource {
                attributes: vec![kv_str("service.name", "chatbot")],
                dropped_attributes_count: 0,
            }),
            scope_spans: vec![otlp::ScopeSpans {
                scope: None,
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn llm_span(trace: u8, span: u8, attrs: Vec<otlp::KeyValue>) -> otlp::Span {
    let start = (now_ms() as u64 - 5_000) * 1_000_000;
    otlp::Span {
        trace_id: vec![trace; 16],
        span_id: vec![span; 8],
        name: "chat".into(),
        kind: 3,
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_200_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

fn old_names() -> Vec<otlp::KeyValue> {
    vec![
        kv_str("gen_ai.system", "openai"),
        kv_str("gen_ai.request.model", "gpt-4o"),
        kv_int("gen_ai.usage.prompt_tokens", 1000),
        kv_int("gen_ai.usage.completion_tokens", 200),
        kv_strs("gen_ai.response.finish_reasons", &["stop"]),
        kv_str("my.custom.attr", "kept"),
    ]
}

fn new_names() -> Vec<otlp::KeyValue> {
    vec![
        kv_str("gen_ai.provider.name", "openai"),
        kv_str("gen_ai.operation.name", "chat"),
        kv_str("gen_ai.request.model", "gpt-4o"),
        kv_int("gen_ai.usage.input_tokens", 1000),
        kv_int("gen_ai.usage.output_tokens", 200),
        kv_int("gen_ai.usage.cache_read.input_tokens", 400),
        kv_int("gen_ai.usage.reasoning.output_tokens", 50),
        kv_strs("gen_ai.response.finish_reasons", &["length"]),
        kv_str("gen_ai.conversation.id", "conv-1"),
    ]
}

#[test]
fn protobuf_and_json_exports_with_old_and_new_names_yield_traces_and_calls() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), "");
    // Protobuf, old names, gzip.
    let body = request(vec![llm_span(0xa1, 1, old_names())]).encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &body).unwrap();
    let r = s.raw(
        "POST",
        "/v1/traces",
        &[
            ("content-type", "application/x-protobuf"),
            ("content-encoding", "gzip"),
        ],
        gz.finish().unwrap(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // Protobuf, new names, plus one invalid span: partial success.
    let mut bad = llm_span(0xa2, 3, vec![]);
    bad.trace_id = vec![1, 2, 3];
    let body = request(vec![llm_span(0xa2, 2, new_names()), bad]).encode_to_vec();
    let r = s.raw(
        "POST",
        "/v1/traces",
        &[("content-type", "application/x-protobuf")],
        body,
    );
    assert_eq!(r.status, 200);
    let resp = otlp::ExportTraceServiceResponse::decode(r.text.as_bytes()).unwrap();
    assert_eq!(resp.partial_success.unwrap().rejected_spans, 1);

    // JSON, new names.
    let start = (now_ms() as u64 - 4_000) * 1_000_000;
    let j = json!({"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "chatbot"}}]},
        "scopeSpans": [{"scope": {"name": "manual"}, "spans": [{
            "traceId": "a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3", "spanId": "0303030303030303", "name": "chat claude",
            "kind": 3, "startTimeUnixNano": start.to_string(), "endTimeUnixNano": (start + 800_000_000).to_string(),
            "attributes": [
                {"key": "gen_ai.provider.name", "value": {"stringValue": "anthropic"}},
                {"key": "gen_ai.request.model", "value": {"stringValue": "claude-3-5-sonnet"}},
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "300"}},
                {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "30"}},
                {"key": "error.type", "value": {"stringValue": "overloaded"}}
            ],
            "status": {"code": 2, "message": "overloaded"}}]}]}]});
    let r = s.raw(
        "POST",
        "/v1/traces",
        &[("content-type", "application/json")],
        j.to_string().into_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, json!({}));

    let t = s.get(&format!("/v1/traces/{}", "a1".repeat(16))).body;
    let sp = &t["spans"][0];
    assert_eq!(sp["duration_ms"], 1200.0);
    assert_eq!(sp["attributes"]["my.custom.attr"], "kept");
    assert_eq!(sp["attributes"]["resource.service.name"], "chatbot");

    let g = s.get("/v1/summary?group_by=model").body;
    let groups = g["groups"].as_array().unwrap();
    let gpt = groups
        .iter()
        .find(|x| x["labels"]["model"] == "gpt-4o")
        .expect("gpt-4o calls");
    assert_eq!(gpt["count"], 2, "{g}");
    assert_eq!(gpt["prompt_tokens"], 2000.0);
    assert_eq!(gpt["finish_reasons"], json!({"stop": 1, "length": 1}));
    // new-name span: 600 fresh + 400 cached input, 150 + 50 reasoning output.
    let old_cost = 1000.0 * 2.5 / 1e6 + 200.0 * 10.0 / 1e6;
    let new_cost = 600.0 * 2.5 / 1e6 + 400.0 * 1.25 / 1e6 + 200.0 * 10.0 / 1e6;
    assert!(
        (gpt["total_cost_usd"].as_f64().unwrap() - old_cost - new_cost).abs() < 1e-12,
        "{gpt}"
    );
    let claude = groups
        .iter()
        .find(|x| x["labels"]["model"] == "claude-3-5-sonnet")
        .unwrap();
    assert_eq!(claude["errors"], 1);
    let by_provider = s.get("/v1/summary?provider=openai").body;
    assert_eq!(by_provider["count"], 2);
}

#[test]
fn opentelemetry_sdk_exporters_deliver_to_the_server() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(BIN, dir.path(), "");
    let mut trace_ids = Vec::new();
    for (protocol, model) in [
        (opentelemetry_otlp::Protocol::HttpBinary, "gpt-4o-mini"),
        (opentelemetry_otlp::Protocol::HttpJson, "o3-mini"),
    ] {
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .with_endpoint(s.url("/v1/traces"))
            .build()
            .expect("building the OTLP exporter");
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .build();
        let tracer = provider.tracer("sextant-e2e");
        let parent = tracer.start("invoke_agent support");
        let cx = opentelemetry::Context::current_with_span(parent);
        let mut child = tracer.start_with_context(format!("chat {model}"), &cx);
        child.set_attribute(OtelKv::new("gen_ai.operation.name", "chat"));
        child.set_attribute(OtelKv::new("gen_ai.provider.name", "openai"));
        child.set_attribute(OtelKv::new("gen_ai.request.model", model));
        child.set_attribute(OtelKv::new("gen_ai.usage.input_tokens", 120i64));
        child.set_attribute(OtelKv::new("gen_ai.usage.output_tokens", 40i64));
        trace_ids.push(format!("{:032x}", child.span_context().trace_id()));
        child.end();
        cx.span().end();
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    }
    for (id, model) in trace_ids.iter().zip(["gpt-4o-mini", "o3-mini"]) {
        let t = s.get(&format!("/v1/traces/{id}"));
        assert_eq!(t.status, 200, "{}", t.text);
        assert_eq!(t.body["spans"].as_array().unwrap().len(), 2, "{}", t.text);
        let sum = s.get(&format!("/v1/summary?model={model}")).body;
        assert_eq!(sum["count"], 1, "{model}: {sum}");
        assert_eq!(sum["avg_tokens"], 160.0);
    }
}
