//! Request bodies → domain events, with errors that name the field.
//!
//! Every field is read through one set of rules ([`Field`]) over a
//! [`Scalar`] view of its JSON value, so a wrong type, a missing field or an
//! out-of-range number is a 422 naming exactly that field (a derive would
//! only say "at line 1 column 37"). Metrics records — the hot ingest path —
//! are decoded in one pass from the body's bytes ([`parse_call_item`]);
//! other bodies are parsed into a `serde_json::Value` first ([`Fields`]).
//! Unknown fields are ignored, as the seed's pydantic models do.
//! Invariant: a parsed event has passed `sextant_model`'s `validate`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use sextant_model::{
    parse_timestamp, Feedback, Limits, LlmCall, PriceTable, Span, SpanEvent, SpanKind, SpanStatus,
};

use crate::error::ApiError;
use crate::json::{CallItem, EachCallItem, Scalar, TagsField};

/// Integers above this (2^53) are not exactly representable as JSON numbers
/// parsed as floats; counts that large are rejected anyway by `Limits`.
const MAX_EXACT_FLOAT_INT: f64 = 9_007_199_254_740_992.0;

/// One named field's value (`None`, or `null`: absent) and the rules for
/// reading it as each type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field<'s, 'a> {
    key: &'s str,
    value: Option<&'s Scalar<'a>>,
}

impl<'s, 'a> Field<'s, 'a> {
    pub(crate) fn new(key: &'s str, value: Option<&'s Scalar<'a>>) -> Field<'s, 'a> {
        Field {
            key,
            value: value.filter(|v| **v != Scalar::Null),
        }
    }

    fn wrong(&self, want: &str, got: &Scalar<'_>) -> ApiError {
        wrong_type(self.key, want, got.type_name())
    }

    pub(crate) fn req_str(&self) -> Result<String, ApiError> {
        self.opt_str()?.ok_or_else(|| ApiError::missing(self.key))
    }

    pub(crate) fn opt_str(&self) -> Result<Option<String>, ApiError> {
        match self.value {
            None => Ok(None),
            Some(Scalar::Str(s)) => Ok(Some(s.as_ref().to_owned())),
            Some(other) => Err(self.wrong("a string", other)),
        }
    }

    pub(crate) fn req_f64(&self) -> Result<f64, ApiError> {
        self.opt_f64()?.ok_or_else(|| ApiError::missing(self.key))
    }

    pub(crate) fn opt_f64(&self) -> Result<Option<f64>, ApiError> {
        let f = match self.value {
            None => return Ok(None),
            Some(Scalar::U64(u)) => *u as f64,
            Some(Scalar::I64(i)) => *i as f64,
            Some(Scalar::F64(f)) => *f,
            Some(other) => return Err(self.wrong("a number", other)),
        };
        if f.is_finite() {
            Ok(Some(f))
        } else {
            Err(ApiError::invalid(self.key, "must be a finite number"))
        }
    }

    pub(crate) fn req_u64(&self) -> Result<u64, ApiError> {
        self.opt_u64()?.ok_or_else(|| ApiError::missing(self.key))
    }

    /// A non-negative integer; `10.0` is accepted as 10 (pydantic's lax mode).
    pub(crate) fn opt_u64(&self) -> Result<Option<u64>, ApiError> {
        let key = self.key;
        match self.value {
            None => Ok(None),
            Some(Scalar::U64(u)) => Ok(Some(*u)),
            Some(Scalar::I64(_)) => Err(ApiError::invalid(key, "must not be negative")),
            Some(Scalar::F64(f)) => {
                let f = *f;
                if !f.is_finite() {
                    Err(ApiError::invalid(key, "must be a finite number"))
                } else if f < 0.0 {
                    Err(ApiError::invalid(key, "must not be negative"))
                } else if f.fract() != 0.0 {
                    Err(ApiError::invalid(key, "must be an integer"))
                } else if f > MAX_EXACT_FLOAT_INT {
                    Err(ApiError::invalid(key, "is too large"))
                } else {
                    Ok(Some(f as u64))
                }
            }
            Some(other) => Err(self.wrong("an integer", other)),
        }
    }

    pub(crate) fn req_i64(&self) -> Result<i64, ApiError> {
        let key = self.key;
        let f = match self.value {
            None => return Err(ApiError::missing(key)),
            Some(Scalar::I64(i)) => return Ok(*i),
            Some(Scalar::U64(u)) => match i64::try_from(*u) {
                Ok(i) => return Ok(i),
                Err(_) => *u as f64,
            },
            Some(Scalar::F64(f)) => *f,
            Some(other) => return Err(self.wrong("an integer", other)),
        };
        if f.is_finite() && f.fract() == 0.0 && f.abs() <= MAX_EXACT_FLOAT_INT {
            Ok(f as i64)
        } else if f.is_finite() && f.fract() != 0.0 {
            Err(ApiError::invalid(key, "must be an integer"))
        } else {
            Err(ApiError::invalid(key, "is out of range"))
        }
    }

    /// RFC 3339 string, or Unix ms as an integer or a string of digits.
    pub(crate) fn opt_timestamp(&self) -> Result<Option<i64>, ApiError> {
        match self.value {
            None => Ok(None),
            Some(Scalar::Str(s)) => parse_timestamp(s).map(Some).ok_or_else(|| {
                ApiError::invalid(self.key, "must be RFC 3339 or integer Unix milliseconds")
            }),
            Some(Scalar::U64(_) | Scalar::I64(_) | Scalar::F64(_)) => self.req_i64().map(Some),
            Some(other) => Err(self.wrong("an RFC 3339 string or Unix ms", other)),
        }
    }
}

/// `tags`: an object of strings (numbers and booleans are kept as their text).
fn tags_field(
    key: &str,
    tags: Option<&TagsField<'_>>,
) -> Result<BTreeMap<String, String>, ApiError> {
    match tags {
        None | Some(TagsField::Other(Scalar::Null)) => Ok(BTreeMap::new()),
        Some(TagsField::Map(entries)) => {
            let mut out = BTreeMap::new();
            for (k, v) in entries {
                let v = match v {
                    Scalar::Str(s) => s.as_ref().to_owned(),
                    Scalar::U64(u) => u.to_string(),
                    Scalar::I64(i) => i.to_string(),
                    Scalar::F64(f) => serde_json::Number::from_f64(*f)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| f.to_string()),
                    Scalar::Bool(b) => b.to_string(),
                    other => {
                        return Err(wrong_type(
                            &format!("{key}.{k}"),
                            "a string, number or boolean",
                            other.type_name(),
                        ))
                    }
                };
                out.insert(k.as_ref().to_owned(), v);
            }
            Ok(out)
        }
        Some(TagsField::Other(other)) => {
            Err(wrong_type(key, "an object of strings", other.type_name()))
        }
    }
}

/// Reads typed fields out of one parsed JSON object.
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(v: &'a Value, what: &str) -> Result<Fields<'a>, ApiError> {
        match v {
            Value::Object(map) => Ok(Fields { map }),
            other => Err(ApiError::invalid(
                what,
                format!("must be a JSON object, not {}", type_name(other)),
            )),
        }
    }

    /// The value, treating `null` as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn with<T>(&self, key: &str, f: impl FnOnce(Field<'_, '_>) -> T) -> T {
        let s = self.map.get(key).map(Scalar::from_value);
        f(Field::new(key, s.as_ref()))
    }

    pub(crate) fn req_str(&self, key: &str) -> Result<String, ApiError> {
        self.with(key, |f| f.req_str())
    }

    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<String>, ApiError> {
        self.with(key, |f| f.opt_str())
    }

    pub(crate) fn opt_f64(&self, key: &str) -> Result<Option<f64>, ApiError> {
        self.with(key, |f| f.opt_f64())
    }

    pub(crate) fn req_i64(&self, key: &str) -> Result<i64, ApiError> {
        self.with(key, |f| f.req_i64())
    }

    pub(crate) fn opt_timestamp(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.with(key, |f| f.opt_timestamp())
    }

    pub(crate) fn opt_object(&self, key: &str) -> Result<BTreeMap<String, Value>, ApiError> {
        match self.get(key) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            Some(other) => Err(wrong_type(key, "an object", type_name(other))),
        }
    }
}

pub(crate) fn type_name(v: &Value) -> &'static str {
    Scalar::from_value(v).type_name()
}

fn wrong_type(key: &str, want: &str, got: &str) -> ApiError {
    ApiError::Invalid {
        code: "wrong_type",
        field: key.to_string(),
        message: format!("must be {want}, not {got}"),
    }
}

/// Parses a JSON body; a syntax error is a 400.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::malformed(
            "the body is empty; a JSON document is required",
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::malformed(format!("malformed JSON: {e}")))
}

/// What every ingest parser needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IngestCtx<'a> {
    /// Receive time, Unix ms: the default timestamp and the reference for age checks.
    pub(crate) now_ms: i64,
    pub(crate) limits: &'a Limits,
    pub(crate) prices: &'a PriceTable,
}

/// Fills a missing cost from the price table (caller-sent cost wins;
/// unknown model → `None`, never 0).
pub(crate) fn price_call(call: &mut LlmCall, prices: &PriceTable) {
    if call.cost_usd.is_none() {
        call.cost_usd = prices.cost(call);
    }
}

fn malformed(e: serde_json::Error) -> ApiError {
    ApiError::malformed(format!("malformed JSON: {e}"))
}

/// One metrics record straight from its bytes (a `POST /v1/metrics` body or
/// an NDJSON line); a syntax error is a 400.
pub(crate) fn parse_call_item(body: &[u8]) -> Result<CallItem<'_>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::malformed(
            "the body is empty; a JSON document is required",
        ));
    }
    serde_json::from_slice(body).map_err(malformed)
}

/// Calls `f(item)` for each record of a JSON array of metrics records, in
/// order, as it is decoded from the bytes; returns how many there were. A
/// syntax error anywhere is a 400 for the whole body.
pub(crate) fn for_each_call_item<'a>(
    body: &'a [u8],
    f: impl FnMut(CallItem<'a>),
) -> Result<usize, ApiError> {
    use serde::de::DeserializeSeed as _;
    let mut n = 0;
    let mut f = f;
    let mut de = serde_json::Deserializer::from_slice(body);
    EachCallItem(|item| {
        n += 1;
        f(item)
    })
    .deserialize(&mut de)
    .map_err(malformed)?;
    de.end().map_err(malformed)?;
    Ok(n)
}

/// The seed's `MetricsRequest` plus Sextant's optional extensions: field
/// rules, then pricing, then `LlmCall::validate`.
pub(crate) fn call_from_item(item: &CallItem<'_>, ctx: IngestCtx<'_>) -> Result<LlmCall, ApiError> {
    let f = match item {
        CallItem::Object(f) => f,
        CallItem::NotObject(t) => {
            return Err(ApiError::invalid(
                "body",
                format!("must be a JSON object, not {t}"),
            ))
        }
    };
    let prompt_tokens = Field::new("prompt_tokens", f.prompt_tokens.as_ref()).req_u64()?;
    let completion_tokens =
        Field::new("completion_tokens", f.completion_tokens.as_ref()).req_u64()?;
    let mut call = LlmCall {
        request_id: Field::new("request_id", f.request_id.as_ref()).req_str()?,
        timestamp_ms: Field::new("timestamp", f.timestamp.as_ref())
            .opt_timestamp()?
            .unwrap_or(ctx.now_ms),
        model: Field::new("model", f.model.as_ref()).req_str()?,
        provider: Field::new("provider", f.provider.as_ref())
            .opt_str()?
            .unwrap_or_default(),
        endpoint: Field::new("endpoint", f.endpoint.as_ref())
            .opt_str()?
            .unwrap_or_default(),
        latency_ms: Field::new("latency_ms", f.latency_ms.as_ref()).req_f64()?,
        time_to_first_token_ms: Field::new(
            "time_to_first_token_ms",
            f.time_to_first_token_ms.as_ref(),
        )
        .opt_f64()?,
        prompt_tokens,
        completion_tokens,
        total_tokens: match Field::new("total_tokens", f.total_tokens.as_ref()).opt_u64()? {
            Some(t) => t,
            None => prompt_tokens.saturating_add(completion_tokens),
        },
        cached_input_tokens: Field::new("cached_input_tokens", f.cached_input_tokens.as_ref())
            .opt_u64()?
            .unwrap_or(0),
        reasoning_tokens: Field::new("reasoning_tokens", f.reasoning_tokens.as_ref())
            .opt_u64()?
            .unwrap_or(0),
        cost_usd: Field::new("cost_usd", f.cost_usd.as_ref()).opt_f64()?,
        finish_reason: Field::new("finish_reason", f.finish_reason.as_ref()).req_str()?,
        error: Field::new("error", f.error.as_ref()).opt_str()?,
        user_id: Field::new("user_id", f.user_id.as_ref()).opt_str()?,
        session_id: Field::new("session_id", f.session_id.as_ref()).opt_str()?,
        trace_id: Field::new("trace_id", f.trace_id.as_ref()).opt_str()?,
        span_id: Field::new("span_id", f.span_id.as_ref()).opt_str()?,
        tags: tags_field("tags", f.tags.as_ref())?,
    };
    if call.reasoning_tokens > call.completion_tokens {
        return Err(ApiError::invalid(
            "reasoning_tokens",
            "must not exceed completion_tokens",
        ));
    }
    price_call(&mut call, ctx.prices);
    call.validate(ctx.now_ms, ctx.limits)?;
    Ok(call)
}

/// `POST /v1/quality`.
#[derive(Debug, Clone)]
pub(crate) struct QualityReq {
    pub(crate) request_id: String,
    pub(crate) response: String,
    pub(crate) query: Option<String>,
    pub(crate) ground_truth: Option<String>,
    pub(crate) timestamp_ms: i64,
}

/// Longest `response` / `ground_truth` accepted, bytes.
pub(crate) const MAX_RESPONSE_BYTES: usize = 1 << 20;

pub(crate) fn parse_quality(v: &Value, ctx: IngestCtx<'_>) -> Result<QualityReq, ApiError> {
    let f = Fields::new(v, "body")?;
    let r = QualityReq {
        request_id: f.req_str("request_id")?,
        response: f.req_str("response")?,
        query: f.opt_str("query")?,
        ground_truth: f.opt_str("ground_truth")?,
        timestamp_ms: f.opt_timestamp("timestamp")?.unwrap_or(ctx.now_ms),
    };
    for (name, text) in [
        ("response", Some(&r.response)),
        ("query", r.query.as_ref()),
        ("ground_truth", r.ground_truth.as_ref()),
    ] {
        if text.is_some_and(|t| t.len() > MAX_RESPONSE_BYTES) {
            return Err(ApiError::invalid(
                name,
                format!("is longer than {MAX_RESPONSE_BYTES} bytes"),
            ));
        }
    }
    Ok(r)
}

/// `POST /v1/feedback`.
pub(crate) fn parse_feedback(v: &Value, ctx: IngestCtx<'_>) -> Result<Feedback, ApiError> {
    let f = Fields::new(v, "body")?;
    let fb = Feedback {
        request_id: f.req_str("request_id")?,
        timestamp_ms: f.opt_timestamp("timestamp")?.unwrap_or(ctx.now_ms),
        rating: f.req_i64("rating")?,
        comment: f.opt_str("feedback")?,
    };
    fb.validate(ctx.now_ms, ctx.limits)?;
    Ok(fb)
}

/// One span in the seed's `Span` shape (times RFC 3339 or Unix ms).
pub(crate) fn parse_span(v: &Value, ctx: IngestCtx<'_>) -> Result<Span, ApiError> {
    let f = Fields::new(v, "span")?;
    let name = f.req_str("name")?;
    let start_ms = f
        .opt_timestamp("start_time")?
        .ok_or_else(|| ApiError::missing("start_time"))?;
    let end_ms = match f.opt_timestamp("end_time")? {
        Some(e) => e,
        None => match f.opt_f64("duration_ms")? {
            Some(d) if d >= 0.0 && d <= ctx.limits.max_latency_ms => {
                start_ms.saturating_add(d.round() as i64)
            }
            Some(_) => return Err(ApiError::invalid("duration_ms", "is out of range")),
            None => start_ms,
        },
    };
    let to_ns = |field: &str, ms: i64| -> Result<u64, ApiError> {
        u64::try_from(ms)
            .ok()
            .and_then(|ms| ms.checked_mul(1_000_000))
            .ok_or_else(|| ApiError::invalid(field, "is out of range"))
    };
    let kind = match f.opt_str("kind")? {
        Some(k) => SpanKind::parse(&k).ok_or_else(|| {
            ApiError::invalid("kind", "must be llm, chain, retrieval, tool or other")
        })?,
        None => kind_from_name(&name),
    };
    let status = match f.opt_str("status")?.as_deref() {
        None | Some("ok") => SpanStatus::Ok,
        Some("error") => SpanStatus::Error,
        Some(_) => return Err(ApiError::invalid("status", "must be \"ok\" or \"error\"")),
    };
    let mut events = Vec::new();
    match f.get("events") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, e) in items.iter().enumerate() {
                let ef = Fields::new(e, &format!("events[{i}]"))?;
                let ts = ef.opt_timestamp("timestamp")?.unwrap_or(start_ms);
                events.push(SpanEvent {
                    name: ef.opt_str("name")?.unwrap_or_default(),
                    time_unix_nano: to_ns("events.timestamp", ts)?,
                    attributes: ef.opt_object("attributes")?,
                });
            }
        }
        Some(other) => return Err(wrong_type("events", "an array", type_name(other))),
    }
    let span = Span {
        trace_id: f.req_str("trace_id")?,
        span_id: f.req_str("span_id")?,
        parent_span_id: f.opt_str("parent_span_id")?,
        name,
        kind,
        start_unix_nano: to_ns("start_time", start_ms)?,
        end_unix_nano: to_ns("end_time", end_ms)?,
        status,
        error: f.opt_str("error")?,
        attributes: f.opt_object("attributes")?,
        events,
    };
    span.validate(ctx.now_ms, ctx.limits)?;
    Ok(span)
}

/// The seed names spans `llm.*`, `chain.*`, `retrieval.*`, `tool.*`.
pub(crate) fn kind_from_name(name: &str) -> SpanKind {
    let prefix = name.split('.').next().unwrap_or("");
    SpanKind::parse(prefix).unwrap_or(SpanKind::Other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000_000;

    /// A record through the real path: serialized, decoded in one pass, read.
    fn parse_call(v: &Value, ctx: IngestCtx<'_>) -> Result<LlmCall, ApiError> {
        let bytes = serde_json::to_vec(v).unwrap();
        call_from_item(&parse_call_item(&bytes)?, ctx)
    }

    fn ctx<'a>(limits: &'a Limits, prices: &'a PriceTable) -> IngestCtx<'a> {
        IngestCtx {
            now_ms: NOW,
            limits,
            prices,
        }
    }

    fn seed_body() -> Value {
        json!({"request_id": "r1", "model": "gpt-4o", "latency_ms": 1234.5,
               "prompt_tokens": 1000, "completion_tokens": 500, "finish_reason": "stop",
               "error": null, "user_id": "u1"})
    }

    /// Parses a body with one field replaced (or removed when `value` is None)
    /// and returns the error's (status, field).
    fn check_call(key: &str, value: Option<Value>) -> Result<LlmCall, (u16, Option<String>)> {
        let (l, p) = (Limits::default(), PriceTable::default());
        let mut body = seed_body();
        match value {
            Some(v) => body[key] = v,
            None => {
                body.as_object_mut().unwrap().remove(key);
            }
        }
        parse_call(&body, ctx(&l, &p))
            .map_err(|e| (e.kind().status().as_u16(), e.field().map(String::from)))
    }

    #[test]
    fn seed_request_parses_with_seed_total_and_cost() {
        let (l, p) = (Limits::default(), PriceTable::default());
        let c = parse_call(&seed_body(), ctx(&l, &p)).unwrap();
        assert_eq!(c.total_tokens, 1500);
        assert_eq!(c.timestamp_ms, NOW);
        assert!((c.cost_usd.unwrap() - (0.0025 + 0.005)).abs() < 1e-12);
        assert_eq!(c.user_id.as_deref(), Some("u1"));
        assert_eq!(c.error, None);
    }

    #[test]
    fn caller_cost_wins_and_unknown_model_cost_is_unknown() {
        let c = check_call("cost_usd", Some(json!(0.5))).unwrap();
        assert_eq!(c.cost_usd, Some(0.5));
        let c = check_call("model", Some(json!("local-llama"))).unwrap();
        assert_eq!(c.cost_usd, None);
    }

    #[test]
    fn every_required_seed_field_is_named_when_missing() {
        for key in [
            "request_id",
            "model",
            "latency_ms",
            "prompt_tokens",
            "completion_tokens",
            "finish_reason",
        ] {
            assert_eq!(check_call(key, None).unwrap_err(), (422, Some(key.into())));
        }
    }

    #[test]
    fn wrong_types_and_bad_numbers_are_422_naming_the_field() {
        let cases = [
            ("latency_ms", json!("fast")),
            ("latency_ms", json!(-1)),
            ("latency_ms", json!(1e300)),
            ("prompt_tokens", json!(-5)),
            ("prompt_tokens", json!(1.5)),
            ("prompt_tokens", json!(1e30)),
            ("completion_tokens", json!("10")),
            ("request_id", json!(12)),
            ("request_id", json!("")),
            ("request_id", json!("x".repeat(10_000))),
            ("model", json!(["gpt"])),
            ("tags", json!("a=b")),
            ("timestamp", json!("yesterday")),
            ("timestamp", json!(NOW + 3_600_000)),
            ("cost_usd", json!(-0.1)),
            ("time_to_first_token_ms", json!(-3)),
        ];
        for (key, v) in cases {
            let err = check_call(key, Some(v.clone())).unwrap_err();
            assert_eq!(err.0, 422, "{key}={v}");
            assert_eq!(err.1.as_deref(), Some(key), "{key}={v}");
        }
    }

    #[test]
    fn timestamps_accept_rfc3339_and_unix_ms() {
        let c = check_call("timestamp", Some(json!("2027-01-15T08:00:00Z"))).unwrap();
        assert_eq!(
            c.timestamp_ms, NOW,
            "1,800,000,000 s is 2027-01-15T08:00:00Z"
        );
        let c = check_call("timestamp", Some(json!(NOW - 1000))).unwrap();
        assert_eq!(c.timestamp_ms, NOW - 1000);
        let c = check_call("timestamp", Some(json!((NOW - 1000).to_string()))).unwrap();
        assert_eq!(c.timestamp_ms, NOW - 1000);
    }

    #[test]
    fn a_body_that_is_not_an_object_is_422_and_bad_json_is_400() {
        let (l, p) = (Limits::default(), PriceTable::default());
        let e = parse_call(&json!([1, 2]), ctx(&l, &p)).unwrap_err();
        assert_eq!(e.kind().status().as_u16(), 422);
        assert_eq!(
            parse_json(b"{\"a\":").unwrap_err().kind().status().as_u16(),
            400
        );
        assert_eq!(parse_json(b"  ").unwrap_err().kind().status().as_u16(), 400);
    }

    #[test]
    fn seed_spans_parse_with_kind_from_name() {
        let (l, p) = (Limits::default(), PriceTable::default());
        let s = parse_span(
            &json!({"trace_id": "t", "span_id": "s", "parent_span_id": null,
                    "name": "llm.chat.completion", "start_time": NOW - 2000,
                    "end_time": NOW - 1000, "attributes": {"llm.model": "gpt-4o"},
                    "events": [{"name": "e", "timestamp": NOW - 1500}]}),
            ctx(&l, &p),
        )
        .unwrap();
        assert_eq!(s.kind, SpanKind::Llm);
        assert_eq!(s.duration_ms(), 1000.0);
        assert_eq!(s.events.len(), 1);
        let e = parse_span(
            &json!({"trace_id": "t", "span_id": "s", "name": "x",
                    "start_time": NOW, "end_time": NOW - 5}),
            ctx(&l, &p),
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("end_time"));
    }

    #[test]
    fn feedback_rating_must_be_an_integer_in_range() {
        let (l, p) = (Limits::default(), PriceTable::default());
        let ok = parse_feedback(
            &json!({"request_id": "r", "rating": 5, "feedback": "nice"}),
            ctx(&l, &p),
        )
        .unwrap();
        assert_eq!(ok.comment.as_deref(), Some("nice"));
        for bad in [json!(1.5), json!("5"), json!(1e12)] {
            let e = parse_feedback(&json!({"request_id": "r", "rating": bad}), ctx(&l, &p))
                .unwrap_err();
            assert_eq!(e.field(), Some("rating"), "{bad}");
        }
    }
}
