//! OTLP/HTTP trace ingest: protobuf and JSON bodies → `sextant_model::Span`s,
//! and gen_ai spans → `LlmCall`s.
//!
//! Invariants: decoding never panics on bad bytes (prost returns errors, and
//! its recursion limit bounds nested `AnyValue`s); a span that cannot be
//! converted is *rejected* and counted in the partial-success answer, the
//! others are kept; every attribute is kept on the span — resource attributes
//! under `resource.<key>`, the scope as `otel.scope.name` /
//! `otel.scope.version`, the OTel span kind as `otel.span_kind`.

mod genai;
pub(crate) mod proto;

use std::collections::BTreeMap;

use prost::Message;
use serde_json::{Map, Value};
use sextant_model::{Span, SpanEvent, SpanKind, SpanStatus};

pub(crate) use genai::llm_call_from_span;

/// A decoded export: the spans that converted, and why the others did not.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub(crate) spans: Vec<Span>,
    /// One message per rejected span.
    pub(crate) rejected: Vec<String>,
}

/// An OTLP body that cannot be read at all (400).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DecodeError(pub(crate) String);

const SPAN_KINDS: [&str; 6] = [
    "unspecified",
    "internal",
    "server",
    "client",
    "producer",
    "consumer",
];

/// Decodes `ExportTraceServiceRequest` protobuf bytes.
pub(crate) fn decode_protobuf(body: &[u8]) -> Result<Decoded, DecodeError> {
    let req = proto::ExportTraceServiceRequest::decode(body)
        .map_err(|e| DecodeError(format!("malformed OTLP protobuf: {e}")))?;
    let mut out = Decoded::default();
    for rs in req.resource_spans {
        let resource = rs
            .resource
            .map(|r| attrs_from_proto(r.attributes))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            let scope = ss.scope.map(|s| (s.name, s.version)).unwrap_or_default();
            for s in ss.spans {
                let raw = RawSpan {
                    trace_id: s.trace_id,
                    span_id: s.span_id,
                    parent_span_id: s.parent_span_id,
                    name: s.name,
                    kind: s.kind,
                    start: s.start_time_unix_nano,
                    end: s.end_time_unix_nano,
                    attributes: attrs_from_proto(s.attributes),
                    events: s
                        .events
                        .into_iter()
                        .map(|e| SpanEvent {
                            name: e.name,
                            time_unix_nano: e.time_unix_nano,
                            attributes: attrs_from_proto(e.attributes),
                        })
                        .collect(),
                    status_code: s.status.as_ref().map(|s| s.code).unwrap_or(0),
                    status_message: s.status.map(|s| s.message).unwrap_or_default(),
                };
                match raw.into_span(&resource, &scope) {
                    Ok(span) => out.spans.push(span),
                    Err(e) => out.rejected.push(e),
                }
            }
        }
    }
    Ok(out)
}

/// The protobuf partial-success answer.
pub(crate) fn encode_protobuf_response(rejected: i64, message: &str) -> Vec<u8> {
    let resp = proto::ExportTraceServiceResponse {
        partial_success: (rejected > 0).then(|| proto::ExportTracePartialSuccess {
            rejected_spans: rejected,
            error_message: message.to_string(),
        }),
    };
    resp.encode_to_vec()
}

/// The JSON partial-success answer (int64 as a string, per OTLP/JSON).
pub(crate) fn json_response(rejected: i64, message: &str) -> Value {
    if rejected == 0 {
        return serde_json::json!({});
    }
    serde_json::json!({"partialSuccess": {
        "rejectedSpans": rejected.to_string(),
        "errorMessage": message,
    }})
}

struct RawSpan {
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent_span_id: Vec<u8>,
    name: String,
    kind: i32,
    start: u64,
    end: u64,
    attributes: BTreeMap<String, Value>,
    events: Vec<SpanEvent>,
    status_code: i32,
    status_message: String,
}

impl RawSpan {
    fn into_span(
        self,
        resource: &BTreeMap<String, Value>,
        scope: &(String, String),
    ) -> Result<Span, String> {
        if self.trace_id.len() != 16 || self.trace_id.iter().all(|b| *b == 0) {
            return Err(format!(
                "span {:?}: traceId must be 16 bytes, not all zero",
                self.name
            ));
        }
        if self.span_id.len() != 8 || self.span_id.iter().all(|b| *b == 0) {
            return Err(format!(
                "span {:?}: spanId must be 8 bytes, not all zero",
                self.name
            ));
        }
        let mut attributes = self.attributes;
        for (k, v) in resource {
            attributes.insert(format!("resource.{k}"), v.clone());
        }
        if !scope.0.is_empty() {
            attributes.insert("otel.scope.name".into(), Value::String(scope.0.clone()));
        }
        if !scope.1.is_empty() {
            attributes.insert("otel.scope.version".into(), Value::String(scope.1.clone()));
        }
        if let Some(k) = usize::try_from(self.kind)
            .ok()
            .and_then(|k| SPAN_KINDS.get(k))
        {
            if self.kind != 0 {
                attributes.insert("otel.span_kind".into(), Value::String((*k).into()));
            }
        }
        let status = if self.status_code == 2 {
            SpanStatus::Error
        } else {
            SpanStatus::Ok
        };
        let error = match status {
            SpanStatus::Error => Some(if !self.status_message.is_empty() {
                self.status_message.clone()
            } else {
                attributes
                    .get("error.type")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_string()
            }),
            _ => None,
        };
        if !self.status_message.is_empty() && status != SpanStatus::Error {
            attributes.insert(
                "otel.status_description".into(),
                Value::String(self.status_message),
            );
        }
        let kind = span_kind(&self.name, &attributes);
        let parent = (!self.parent_span_id.is_empty()
            && self.parent_span_id.iter().any(|b| *b != 0))
        .then(|| hex(&self.parent_span_id));
        Ok(Span {
            trace_id: hex(&self.trace_id),
            span_id: hex(&self.span_id),
            parent_span_id: parent,
            name: self.name,
            kind,
            start_unix_nano: self.start,
            end_unix_nano: self.end.max(self.start),
            status,
            error,
            attributes,
            events: self.events,
        })
    }
}

/// Sextant's span kind: gen_ai operations and OpenInference / OpenLLMetry
/// kind attributes, else the seed's name prefixes.
fn span_kind(name: &str, attrs: &BTreeMap<String, Value>) -> SpanKind {
    let s = |k: &str| attrs.get(k).and_then(Value::as_str);
    if let Some(op) = s("gen_ai.operation.name") {
        return match op {
            "execute_tool" => SpanKind::Tool,
            "invoke_agent" | "create_agent" => SpanKind::Chain,
            _ => SpanKind::Llm,
        };
    }
    if let Some(k) = s("openinference.span.kind").or(s("traceloop.span.kind")) {
        match k.to_ascii_lowercase().as_str() {
            "llm" | "embedding" => return SpanKind::Llm,
            "chain" | "agent" | "workflow" | "task" => return SpanKind::Chain,
            "retriever" => return SpanKind::Retrieval,
            "tool" => return SpanKind::Tool,
            _ => {}
        }
    }
    if genai::is_llm(attrs) {
        return SpanKind::Llm;
    }
    crate::dto::kind_from_name(name)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn attrs_from_proto(kvs: Vec<proto::KeyValue>) -> BTreeMap<String, Value> {
    kvs.into_iter()
        .map(|kv| (kv.key, any_from_proto(kv.value)))
        .collect()
}

fn any_from_proto(v: Option<proto::AnyValue>) -> Value {
    use proto::any_value::Value as V;
    match v.and_then(|v| v.value) {
        None => Value::Null,
        Some(V::StringValue(s)) => Value::String(s),
        Some(V::BoolValue(b)) => Value::Bool(b),
        Some(V::IntValue(i)) => Value::from(i),
        Some(V::DoubleValue(d)) => float(d),
        Some(V::ArrayValue(a)) => Value::Array(
            a.values
                .into_iter()
                .map(|v| any_from_proto(Some(v)))
                .collect(),
        ),
        Some(V::KvlistValue(l)) => Value::Object(
            l.values
                .into_iter()
                .map(|kv| (kv.key, any_from_proto(kv.value)))
                .collect(),
        ),
        Some(V::BytesValue(b)) => Value::String(base64(&b)),
    }
}

/// JSON has no NaN or infinities: they are kept as strings.
fn float(d: f64) -> Value {
    serde_json::Number::from_f64(d)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(d.to_string()))
}

// ---- OTLP/JSON ----

/// A field by its lowerCamelCase name or its proto (snake_case) name.
fn field<'a>(o: &'a Map<String, Value>, camel: &str, snake: &str) -> Option<&'a Value> {
    o.get(camel)
        .or_else(|| o.get(snake))
        .filter(|v| !v.is_null())
}

fn array<'a>(o: &'a Map<String, Value>, camel: &str, snake: &str) -> Result<&'a [Value], String> {
    match field(o, camel, snake) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("{camel} must be an array")),
    }
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{what} must be an object"))
}

/// uint64/int64 as a JSON string or number.
fn u64_field(o: &Map<String, Value>, camel: &str, snake: &str) -> Result<u64, String> {
    match field(o, camel, snake) {
        None => Ok(0),
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| format!("{camel} must be a non-negative integer")),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| format!("{camel} must be a non-negative integer")),
        Some(_) => Err(format!("{camel} must be an integer")),
    }
}

fn id_field(o: &Map<String, Value>, camel: &str, snake: &str) -> Result<Vec<u8>, String> {
    match field(o, camel, snake) {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => unhex(s).ok_or_else(|| format!("{camel} must be hex")),
        Some(_) => Err(format!("{camel} must be a hex string")),
    }
}

fn enum_field(o: &Map<String, Value>, camel: &str, names: &[&str]) -> Result<i32, String> {
    match field(o, camel, camel) {
        None => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .ok_or_else(|| format!("{camel} must be an enum number")),
        Some(Value::String(s)) => names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|p| p as i32)
            .ok_or_else(|| format!("{camel}: unknown value {s:?}")),
        Some(_) => Err(format!("{camel} must be an enum")),
    }
}

fn attrs_from_json(list: &[Value], depth: usize) -> Result<BTreeMap<String, Value>, String> {
    let mut out = BTreeMap::new();
    for kv in list {
        let kv = object(kv, "attribute")?;
        let key = match kv.get("key") {
            Some(Value::String(k)) => k.clone(),
            _ => return Err("attribute key must be a string".into()),
        };
        let value = match kv.get("value") {
            None | Some(Value::Null) => Value::Null,
            Some(v) => any_from_json(v, depth + 1)?,
        };
        out.insert(key, value);
    }
    Ok(out)
}

const MAX_JSON_DEPTH: usize = 32;

fn any_from_json(v: &Value, depth: usize) -> Result<Value, String> {
    if depth > MAX_JSON_DEPTH {
        return Err("attribute values are nested too deeply".into());
    }
    let o = object(v, "attribute value")?;
    if let Some(s) = field(o, "stringValue", "string_value") {
        return Ok(Value::String(
            s.as_str()
                .ok_or("stringValue must be a string")?
                .to_string(),
        ));
    }
    if let Some(b) = field(o, "boolValue", "bool_value") {
        return Ok(Value::Bool(
            b.as_bool().ok_or("boolValue must be a boolean")?,
        ));
    }
    if let Some(i) = field(o, "intValue", "int_value") {
        let n = match i {
            Value::String(s) => s.parse::<i64>().map_err(|_| "intValue must be an int64")?,
            Value::Number(n) => n.as_i64().ok_or("intValue must be an int64")?,
            _ => return Err("intValue must be an int64".into()),
        };
        return Ok(Value::from(n));
    }
    if let Some(d) = field(o, "doubleValue", "double_value") {
        let f = match d {
            Value::Number(n) => n.as_f64().ok_or("doubleValue must be a number")?,
            Value::String(s) => s
                .parse::<f64>()
                .map_err(|_| "doubleValue must be a number")?,
            _ => return Err("doubleValue must be a number".into()),
        };
        return Ok(float(f));
    }
    if let Some(a) = field(o, "arrayValue", "array_value") {
        let a = object(a, "arrayValue")?;
        let values = array(a, "values", "values")?;
        return values
            .iter()
            .map(|v| any_from_json(v, depth + 1))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if let Some(l) = field(o, "kvlistValue", "kvlist_value") {
        let l = object(l, "kvlistValue")?;
        let values = array(l, "values", "values")?;
        return attrs_from_json(values, depth + 1).map(|m| Value::Object(m.into_iter().collect()));
    }
    if let Some(b) = field(o, "bytesValue", "bytes_value") {
        return Ok(Value::String(
            b.as_str().ok_or("bytesValue must be base64")?.to_string(),
        ));
    }
    Ok(Value::Null)
}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
pub(crate) fn decode_json(body: &[u8]) -> Result<Decoded, DecodeError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| DecodeError(format!("malformed OTLP JSON: {e}")))?;
    let top = object(&v, "the body").map_err(DecodeError)?;
    let mut out = Decoded::default();
    for rs in array(top, "resourceSpans", "resource_spans").map_err(DecodeError)? {
        let rs = object(rs, "resourceSpans[]").map_err(DecodeError)?;
        let resource = match field(rs, "resource", "resource") {
            Some(r) => {
                let r = object(r, "resource").map_err(DecodeError)?;
                attrs_from_json(
                    array(r, "attributes", "attributes").map_err(DecodeError)?,
                    0,
                )
                .map_err(DecodeError)?
            }
            None => BTreeMap::new(),
        };
        for ss in array(rs, "scopeSpans", "scope_spans").map_err(DecodeError)? {
            let ss = object(ss, "scopeSpans[]").map_err(DecodeError)?;
            let scope = match field(ss, "scope", "scope").and_then(Value::as_object) {
                Some(s) => (
                    s.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    s.get("version")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ),
                None => Default::default(),
            };
            for s in array(ss, "spans", "spans").map_err(DecodeError)? {
                match json_span(s).and_then(|raw| raw.into_span(&resource, &scope)) {
                    Ok(span) => out.spans.push(span),
                    Err(e) => out.rejected.push(e),
                }
            }
        }
    }
    Ok(out)
}

fn json_span(v: &Value) -> Result<RawSpan, String> {
    let o = object(v, "span")?;
    let name = field(o, "name", "name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut events = Vec::new();
    for e in array(o, "events", "events")? {
        let e = object(e, "event")?;
        events.push(SpanEvent {
            name: field(e, "name", "name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            time_unix_nano: u64_field(e, "timeUnixNano", "time_unix_nano")?,
            attributes: attrs_from_json(array(e, "attributes", "attributes")?, 0)?,
        });
    }
    let (status_code, status_message) = match field(o, "status", "status") {
        Some(s) => {
            let s = object(s, "status")?;
            (
                enum_field(
                    s,
                    "code",
                    &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"],
                )?,
                field(s, "message", "message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            )
        }
        None => (0, String::new()),
    };
    Ok(RawSpan {
        trace_id: id_field(o, "traceId", "trace_id")?,
        span_id: id_field(o, "spanId", "span_id")?,
        parent_span_id: id_field(o, "parentSpanId", "parent_span_id")?,
        name,
        kind: enum_field(
            o,
            "kind",
            &[
                "SPAN_KIND_UNSPECIFIED",
                "SPAN_KIND_INTERNAL",
                "SPAN_KIND_SERVER",
                "SPAN_KIND_CLIENT",
                "SPAN_KIND_PRODUCER",
                "SPAN_KIND_CONSUMER",
            ],
        )?,
        start: u64_field(o, "startTimeUnixNano", "start_time_unix_nano")?,
        end: u64_field(o, "endTimeUnixNano", "end_time_unix_nano")?,
        attributes: attrs_from_json(array(o, "attributes", "attributes")?, 0)?,
        events,
        status_code,
        status_message,
    })
}

#[cfg(test)]
mod tests {
    use super::proto::any_value::Value as V;
    use super::*;

    fn kv(k: &str, v: V) -> proto::KeyValue {
        proto::KeyValue {
            key: k.into(),
            value: Some(proto::AnyValue { value: Some(v) }),
        }
    }

    fn request(attrs: Vec<proto::KeyValue>) -> proto::ExportTraceServiceRequest {
        proto::ExportTraceServiceRequest {
            resource_spans: vec![proto::ResourceSpans {
                resource: Some(proto::Resource {
                    attributes: vec![kv("service.name", V::StringValue("svc".into()))],
                    dropped_attributes_count: 0,
                }),
                scope_spans: vec![proto::ScopeSpans {
                    scope: Some(proto::InstrumentationScope {
                        name: "lib".into(),
                        ..Default::default()
                    }),
                    spans: vec![proto::Span {
                        trace_id: vec![1; 16],
                        span_id: vec![2; 8],
                        parent_span_id: vec![3; 8],
                        name: "chat gpt-4o".into(),
                        kind: 3,
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        end_time_unix_nano: 1_700_000_001_500_000_000,
                        attributes: attrs,
                        status: Some(proto::Status {
                            code: 2,
                            message: "boom".into(),
                        }),
                        ..Default::default()
                    }],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    #[test]
    fn protobuf_spans_decode_with_every_attribute_kept() {
        let req = request(vec![
            kv("gen_ai.request.model", V::StringValue("gpt-4o".into())),
            kv("custom.number", V::IntValue(7)),
            kv(
                "custom.list",
                V::ArrayValue(proto::ArrayValue {
                    values: vec![proto::AnyValue {
                        value: Some(V::BoolValue(true)),
                    }],
                }),
            ),
            kv("custom.bytes", V::BytesValue(b"hi!".to_vec())),
        ]);
        let d = decode_protobuf(&req.encode_to_vec()).unwrap();
        assert!(d.rejected.is_empty());
        let s = &d.spans[0];
        assert_eq!(s.trace_id, "01".repeat(16));
        assert_eq!(s.span_id, "02".repeat(8));
        assert_eq!(s.parent_span_id.as_deref(), Some("0303030303030303"));
        assert_eq!(s.kind, SpanKind::Llm);
        assert_eq!(s.status, SpanStatus::Error);
        assert_eq!(s.error.as_deref(), Some("boom"));
        assert_eq!(s.duration_ms(), 1500.0);
        assert_eq!(s.attributes["custom.number"], 7);
        assert_eq!(s.attributes["custom.list"], serde_json::json!([true]));
        assert_eq!(s.attributes["custom.bytes"], "aGkh");
        assert_eq!(s.attributes["resource.service.name"], "svc");
        assert_eq!(s.attributes["otel.scope.name"], "lib");
        assert_eq!(s.attributes["otel.span_kind"], "client");
    }

    #[test]
    fn bad_ids_reject_the_span_not_the_request() {
        let mut req = request(vec![]);
        let good = req.resource_spans[0].scope_spans[0].spans[0].clone();
        let mut bad = good.clone();
        bad.trace_id = vec![1; 3];
        req.resource_spans[0].scope_spans[0].spans.push(bad);
        let d = decode_protobuf(&req.encode_to_vec()).unwrap();
        assert_eq!(d.spans.len(), 1);
        assert_eq!(d.rejected.len(), 1);
    }

    #[test]
    fn garbage_protobuf_is_an_error_not_a_panic() {
        for bytes in [
            &b"\xff\xff\xff\xff"[..],
            b"\x0a\xff\xff\xff\xff\x0f",
            b"hello world",
            &[0x0a, 0x05, 0x12, 0x03, 0x12, 0x01],
        ] {
            let _ = decode_protobuf(bytes);
        }
        // Deeply nested arrays hit prost's recursion limit instead of the stack.
        let mut v = proto::AnyValue {
            value: Some(V::StringValue("x".into())),
        };
        for _ in 0..200 {
            v = proto::AnyValue {
                value: Some(V::ArrayValue(proto::ArrayValue { values: vec![v] })),
            };
        }
        let req = request(vec![proto::KeyValue {
            key: "deep".into(),
            value: Some(v),
        }]);
        assert!(decode_protobuf(&req.encode_to_vec()).is_err());
    }

    #[test]
    fn json_export_decodes_hex_ids_camel_case_and_string_int64() {
        let body = serde_json::json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
            "scopeSpans": [{"scope": {"name": "lib"}, "spans": [{
                "traceId": "5b8efff798038103d269b633813fc60c",
                "spanId": "eee19b7ec3c1b174",
                "parentSpanId": "",
                "name": "chat",
                "kind": 3,
                "startTimeUnixNano": "1700000000000000000",
                "endTimeUnixNano": "1700000000250000000",
                "attributes": [
                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
                    {"key": "x.double", "value": {"doubleValue": 0.5}},
                    {"key": "x.kv", "value": {"kvlistValue": {"values": [{"key": "a", "value": {"boolValue": true}}]}}}
                ],
                "events": [{"timeUnixNano": "1700000000100000000", "name": "first_token"}],
                "status": {"code": "STATUS_CODE_OK"}
            }]}]
        }]});
        let d = decode_json(body.to_string().as_bytes()).unwrap();
        assert!(d.rejected.is_empty(), "{:?}", d.rejected);
        let s = &d.spans[0];
        assert_eq!(s.trace_id, "5b8efff798038103d269b633813fc60c");
        assert_eq!(s.parent_span_id, None);
        assert_eq!(s.duration_ms(), 250.0);
        assert_eq!(s.attributes["gen_ai.usage.input_tokens"], 12);
        assert_eq!(s.attributes["x.kv"], serde_json::json!({"a": true}));
        assert_eq!(s.events[0].time_unix_nano, 1_700_000_000_100_000_000);
        assert_eq!(s.status, SpanStatus::Ok);
    }

    #[test]
    fn json_structural_errors_are_errors_and_bad_spans_are_rejected() {
        assert!(decode_json(b"[1,2]").is_err());
        assert!(decode_json(b"{\"resourceSpans\": 3}").is_err());
        let d = decode_json(br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":"eee19b7ec3c1b174"}]}]}]}"#).unwrap();
        assert_eq!((d.spans.len(), d.rejected.len()), (0, 1));
    }

    #[test]
    fn partial_success_answers_follow_the_spec() {
        assert_eq!(json_response(0, ""), serde_json::json!({}));
        assert_eq!(
            json_response(2, "bad")["partialSuccess"]["rejectedSpans"],
            "2"
        );
        let bytes = encode_protobuf_response(3, "x");
        let r = proto::ExportTraceServiceResponse::decode(&bytes[..]).unwrap();
        assert_eq!(r.partial_success.unwrap().rejected_spans, 3);
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }
}
