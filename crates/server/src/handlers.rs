//! HTTP handlers: seed-compatible endpoints and extensions (docs/api.md).
//!
//! Invariants: a handler validates everything before it appends, so a
//! rejected request writes nothing; a batch appends its valid items in one
//! `Store::append` (acknowledged together); responses keep the seed's field
//! names, extensions are extra fields only.

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sextant_alert::{HistoryQuery, Rule, Silence};
use sextant_model::{
    format_rfc3339_ms, now_ms, parse_timestamp, Batch, Dim, LlmCall, Quality, TimeRange, DAY_MS,
    MINUTE_MS,
};
use sextant_query::{Baseline, DriftReport, SeriesRequest, Summary, SummaryRequest, METRICS};
use sextant_storage::RowFilter;

use crate::app::{is_json, path_param, Body, Params, Shared};
use crate::dto::{self, IngestCtx};
use crate::error::ApiError;
use crate::json::CallItem;
use crate::otlp;
use crate::telemetry::Gauges;

type BodyResult = Result<Bytes, BytesRejection>;
type PathResult = Result<Path<String>, PathRejection>;

fn ctx(state: &Shared, now: i64) -> IngestCtx<'_> {
    IngestCtx {
        now_ms: now,
        limits: &state.limits,
        prices: &state.prices,
    }
}

fn json_body(state: &Shared, headers: &HeaderMap, raw: BodyResult) -> Result<Value, ApiError> {
    let body = Body::read(raw, headers, state.max_body_bytes)?;
    body.require_json()?;
    dto::parse_json(&body.bytes)
}

fn recorded(request_id: &str) -> Json<Value> {
    Json(json!({"status": "recorded", "request_id": request_id}))
}

fn count_rejected(state: &Shared, n: u64) {
    state.telemetry.rejected.fetch_add(n, Ordering::Relaxed);
}

// ---- health & self-metrics ----

pub(crate) async fn health() -> Json<Value> {
    Json(json!({"status": "healthy"}))
}

pub(crate) async fn prometheus(State(state): State<Shared>) -> Response {
    let s = state.store.stats();
    let a = state.alerting.stats();
    let g = Gauges {
        wal_bytes: s.wal_bytes,
        wal_batches: s.wal_batches,
        head_events: s.head_events,
        segments: s.segments,
        sealed_events_total: s.sealed_events_total,
        outbox_depth: a.outbox_depth,
        notifications_sent_total: a.notifications_sent_total,
        notifications_failed_total: a.notifications_failed_total,
        eval_last_cycle_seconds: a.last_cycle_ms / 1000.0,
        eval_cycles_total: a.cycles_total,
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.telemetry.render(&g),
    )
        .into_response()
}

// ---- ingest ----

pub(crate) async fn post_metrics(
    State(state): State<Shared>,
    headers: HeaderMap,
    raw: BodyResult,
) -> Result<Json<Value>, ApiError> {
    let body = Body::read(raw, &headers, state.max_body_bytes)?;
    body.require_json()?;
    let item = dto::parse_call_item(&body.bytes)?;
    let call = dto::call_from_item(&item, ctx(&state, now_ms()))
        .inspect_err(|_| count_rejected(&state, 1))?;
    let id = call.request_id.clone();
    state.telemetry.batch_items.observe(1.0);
    state.append(Batch::from_calls(vec![call])).await?;
    Ok(recorded(&id))
}

/// Decodes a batch body record by record, straight from its bytes, into
/// the valid calls and the errors of the invalid items (by index): a JSON
/// array, or NDJSON (one document per non-empty line; a line that does not
/// parse is that item's error). No array of documents is built in between.
fn decode_batch(
    body: &Body,
    ctx: IngestCtx<'_>,
    max_items: usize,
) -> Result<(Vec<LlmCall>, Vec<Value>), ApiError> {
    let ndjson_type = matches!(
        body.content_type.as_deref(),
        Some(
            "application/x-ndjson"
                | "application/ndjson"
                | "application/jsonl"
                | "application/json-lines"
                | "application/jsonlines"
        )
    );
    if !ndjson_type {
        body.require_json()?;
    }
    // ~300 bytes a record: reserve once instead of growing a large vector.
    let mut calls = Vec::with_capacity((body.bytes.len() / 256).clamp(1, max_items.max(1)));
    let mut errors = Vec::new();
    let mut take = |i: usize, item: Result<CallItem<'_>, ApiError>| {
        if i >= max_items {
            return; // counted only: the whole batch is refused below
        }
        match item.and_then(|v| dto::call_from_item(&v, ctx)) {
            Ok(c) => calls.push(c),
            Err(e) => errors.push(item_error(i, &e)),
        }
    };
    let first = body.bytes.iter().find(|b| !b.is_ascii_whitespace());
    let n = match first {
        None => return Err(ApiError::malformed("the body is empty")),
        Some(b'[') if !ndjson_type => {
            let mut i = 0;
            dto::for_each_call_item(&body.bytes, |item| {
                take(i, Ok(item));
                i += 1;
            })?
        }
        Some(_) => {
            let mut n = 0;
            for line in body
                .bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            {
                take(n, dto::parse_call_item(line));
                n += 1;
            }
            n
        }
    };
    if n == 0 {
        return Err(ApiError::invalid("items", "the batch is empty"));
    }
    if n > max_items {
        return Err(ApiError::TooLarge {
            limit: max_items,
            field: Some("items".into()),
        });
    }
    Ok((calls, errors))
}

fn item_error(index: usize, e: &ApiError) -> Value {
    let mut v = e.body();
    v["index"] = json!(index);
    v
}

pub(crate) async fn post_metrics_batch(
    State(state): State<Shared>,
    headers: HeaderMap,
    raw: BodyResult,
) -> Result<Response, ApiError> {
    let body = Body::read(raw, &headers, state.max_body_bytes)?;
    let started = Instant::now();
    let (calls, errors) = decode_batch(&body, ctx(&state, now_ms()), state.max_batch_items)?;
    drop(body);
    state
        .telemetry
        .decode_seconds
        .observe(started.elapsed().as_secs_f64());
    count_rejected(&state, errors.len() as u64);
    let accepted = calls.len();
    state.telemetry.batch_items.observe(accepted as f64);
    if accepted == 0 {
        let e = ApiError::invalid("items", "every item of the batch is invalid");
        let mut v = e.body();
        v["accepted"] = json!(0);
        v["rejected"] = json!(errors.len());
        v["errors"] = Value::Array(errors);
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(v)).into_response());
    }
    state.append(Batch::from_calls(calls)).await?;
    let status = if errors.is_empty() {
        "recorded"
    } else {
        "partial"
    };
    Ok(Json(json!({
        "status": status,
        "accepted": accepted,
        "rejected": errors.len(),
        "errors": errors,
    }))
    .into_response())
}

pub(crate) async fn post_quality(
    State(state): State<Shared>,
    headers: HeaderMap,
    raw: BodyResult,
) -> Result<Json<Value>, ApiError> {
    let v = json_body(&state, &headers, raw)?;
    let now = now_ms();
    let req = dto::parse_quality(&v, ctx(&state, now))?;
    let a = state.analyzer.analyze(&req.response, req.query.as_deref());
    let q = Quality {
        request_id: req.request_id.clone(),
        timestamp_ms: req.timestamp_ms,
        response_length: a.response_length,
        has_refusal: a.has_refusal,
        has_hallucination_markers: a.has_hallucination_markers,
        sentiment_score: a.sentiment_score,
        factual_accuracy: None,
    };
    q.validate(now, &state.limits)?;
    let answer = json!({
        "request_id": req.request_id,
        "response_length": a.response_length,
        "has_refusal": a.has_refusal,
        "has_hallucination_markers": a.has_hallucination_markers,
        "sentiment_score": a.sentiment_score,
    });
    match (&state.judge, req.ground_truth) {
        (Some(_), Some(truth)) => {
            // One record per analysis: it is appended once the judge answered
            // (or failed), so summaries never count the same response twice.
            let st = state.clone();
            let response = req.response;
            let mut answer = answer;
            answer["factual_accuracy_pending"] = json!(true);
            state
                .judge_tasks
                .lock()
                .spawn(judge_then_append(st, q, response, truth));
            reap_judge_tasks(&state);
            Ok(Json(answer))
        }
        _ => {
            state
                .append(Batch {
                    quality: vec![q],
                    ..Batch::default()
                })
                .await?;
            Ok(Json(answer))
        }
    }
}

fn reap_judge_tasks(state: &Shared) {
    let mut tasks = state.judge_tasks.lock();
    while tasks.try_join_next().is_some() {}
}

async fn judge_then_append(state: Shared, mut q: Quality, response: String, truth: String) {
    let Some(judge) = state.judge.clone() else {
        return;
    };
    let score = match state.judge_slots.acquire().await {
        Ok(_permit) => judge.score(&response, &truth).await,
        Err(_) => return,
    };
    match score {
        Ok(s) => {
            state.telemetry.judge_ok.fetch_add(1, Ordering::Relaxed);
            q.factual_accuracy = Some(s);
        }
        Err(e) => {
            state.telemetry.judge_failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(request_id = %q.request_id, error = %e, "factual-accuracy judge failed; storing the record without a score");
        }
    }
    if let Err(e) = state
        .append(Batch {
            quality: vec![q],
            ..Batch::default()
        })
        .await
    {
        tracing::error!(error = %e, "storing a judged quality record failed");
    }
}

pub(crate) async fn post_feedback(
    State(state): State<Shared>,
    headers: HeaderMap,
    raw: BodyResult,
) -> Result<Json<Value>, ApiError> {
    let v = json_body(&state, &headers, raw)?;
    let f = dto::parse_feedback(&v, ctx(&state, now_ms()))?;
    let id = f.request_id.clone();
    state
        .append(Batch {
            feedback: vec![f],
            ..Batch::default()
        })
        .await?;
    Ok(recorded(&id))
}

pub(crate) async fn post_spans(
    State(state): State<Shared>,
    headers: HeaderMap,
    raw: BodyResult,
) -> Result<Json<Value>, ApiError> {
    let v = json_body(&state, &headers, raw)?;
    let items = match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("spans") {
            Some(Value::Array(a)) => a,
            _ => return Err(ApiError::missing("spans")),
        },
        other => {
            return Err(ApiError::invalid(
                "spans",
                format!(
                    "the body must be an array of spans or {{\"spans\": [...]}}, not {}",
                    dto::type_name(&other)
                ),
            ))
        }
    };
    if items.is_empty() {
        return Err(ApiError::invalid("spans", "must not be empty"));
    }
    if items.len() > state.max_batch_items {
        return Err(ApiError::TooLarge {
            limit: state.max_batch_items,
            field: Some("spans".into()),
        });
    }
    let now = now_ms();
    let mut batch = Batch::default();
    for (i, item) in items.iter().enumerate() {
        let span = dto::parse_span(item, ctx(&state, now)).map_err(|e| match e {
            ApiError::Invalid {
                code,
                field,
                message,
            } => ApiError::Invalid {
                code,
                field: format!("spans[{i}].{field}"),
                message,
            },
            other => other,
        })?;
        if let Some(mut call) = otlp::llm_call_from_span(&span) {
            dto::price_call(&mut call, &state.prices);
            if call.validate(now, &state.limits).is_ok() {
                batch.calls.push(call);
            }
        }
        batch.spans.push(span);
    }
    let (spans, calls) = (batch.spans.len(), batch.calls.len());
    state.telemetry.batch_items.observe(spans as f64);
    state.append(batch).await?;
    Ok(Json(
        json!({"status": "recorded", "spans": spans, "llm_calls": calls}),
    ))
}

/// `POST /v1/traces`: OTLP/HTTP export, protobuf or JSON.
pub(crate) async fn post_otlp(
    State(state): State<Shared>,
    headers: HeaderMap,
    raw: BodyResult,
) -> Result<Response, ApiError> {
    let body = Body::read(raw, &headers, state.max_body_bytes)?;
    let protobuf = match body.content_type.as_deref() {
        Some("application/x-protobuf" | "application/protobuf") => true,
        Some(t) if is_json(t) => false,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "OTLP content-type {:?} is not supported; use application/x-protobuf or application/json",
                other.unwrap_or("")
            )))
        }
    };
    let decoded = if protobuf {
        otlp::decode_protobuf(&body.bytes)
    } else {
        otlp::decode_json(&body.bytes)
    }
    .map_err(|e| ApiError::malformed(e.0))?;
    let now = now_ms();
    let mut rejected = decoded.rejected;
    let mut batch = Batch::default();
    for span in decoded.spans {
        if let Err(e) = span.validate(now, &state.limits) {
            rejected.push(format!("span {}: {e}", span.span_id));
            continue;
        }
        if let Some(mut call) = otlp::llm_call_from_span(&span) {
            dto::price_call(&mut call, &state.prices);
            match call.validate(now, &state.limits) {
                Ok(()) => batch.calls.push(call),
                Err(e) => {
                    rejected.push(format!(
                        "span {}: its LLM call is invalid: {e}",
                        span.span_id
                    ));
                    continue;
                }
            }
        }
        batch.spans.push(span);
    }
    count_rejected(&state, rejected.len() as u64);
    state
        .telemetry
        .batch_items
        .observe(batch.spans.len() as f64);
    state.append(batch).await?;
    let n = rejected.len() as i64;
    let mut message = rejected.into_iter().take(5).collect::<Vec<_>>().join("; ");
    if n > 5 {
        message.push_str(&format!("; and {} more", n - 5));
    }
    if protobuf {
        Ok((
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            otlp::encode_protobuf_response(n, &message),
        )
            .into_response())
    } else {
        Ok(Json(otlp::json_response(n, &message)).into_response())
    }
}

// ---- traces ----

fn span_json(s: &sextant_model::Span) -> Value {
    json!({
        "span_id": s.span_id,
        "parent_span_id": s.parent_span_id,
        "name": s.name,
        "duration_ms": s.duration_ms(),
        "status": s.status.as_str(),
        "attributes": s.attributes,
        "kind": s.kind.as_str(),
        "start_time": format_rfc3339_ms((s.start_unix_nano / 1_000_000) as i64),
        "end_time": format_rfc3339_ms((s.end_unix_nano / 1_000_000) as i64),
        "start_unix_nano": s.start_unix_nano.to_string(),
        "end_unix_nano": s.end_unix_nano.to_string(),
        "error": s.error,
        "events": s.events.iter().map(|e| json!({
            "name": e.name,
            "timestamp": format_rfc3339_ms((e.time_unix_nano / 1_000_000) as i64),
            "attributes": e.attributes,
        })).collect::<Vec<_>>(),
    })
}

pub(crate) async fn get_trace(
    State(state): State<Shared>,
    id: PathResult,
) -> Result<Json<Value>, ApiError> {
    let id = path_param(id)?;
    if id.is_empty() || id.len() > state.limits.max_id_bytes {
        return Err(ApiError::TraceNotFound);
    }
    let tid = id.clone();
    let spans = state.query(move |s| Ok(s.store.trace(&tid)?)).await?;
    if spans.is_empty() {
        return Err(ApiError::TraceNotFound);
    }
    Ok(Json(json!({
        "trace_id": id,
        "spans": spans.iter().map(span_json).collect::<Vec<_>>(),
    })))
}

pub(crate) async fn recent_traces(
    State(state): State<Shared>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref());
    let limit = int_param(&p, "limit", 20, 1, 1000)? as usize;
    let traces = state
        .query(move |s| Ok(s.store.recent_traces(limit)?))
        .await?;
    Ok(Json(json!({
        "count": traces.len(),
        "traces": traces.iter().map(|t| json!({
            "trace_id": t.trace_id,
            "start_time": format_rfc3339_ms((t.start_unix_nano / 1_000_000) as i64),
            "root_name": t.root_name,
        })).collect::<Vec<_>>(),
    })))
}

// ---- query parameters ----

fn int_param(p: &Params, key: &str, default: i64, min: i64, max: i64) -> Result<i64, ApiError> {
    match p.get(key) {
        None => Ok(default),
        Some(v) => {
            let n: i64 = v
                .trim()
                .parse()
                .map_err(|_| ApiError::param(key, format!("{key} must be an integer")))?;
            if n < min || n > max {
                return Err(ApiError::param(
                    key,
                    format!("{key} must be between {min} and {max}"),
                ));
            }
            Ok(n)
        }
    }
}

fn bool_param(p: &Params, key: &str) -> Result<Option<bool>, ApiError> {
    match p.get(key) {
        None => Ok(None),
        Some("true" | "1" | "yes") => Ok(Some(true)),
        Some("false" | "0" | "no") => Ok(Some(false)),
        Some(_) => Err(ApiError::param(key, format!("{key} must be true or false"))),
    }
}

fn time_param(p: &Params, key: &str) -> Result<Option<i64>, ApiError> {
    match p.get(key) {
        None => Ok(None),
        Some(v) => parse_timestamp(v)
            .map(Some)
            .ok_or_else(|| ApiError::param(key, format!("{key} must be RFC 3339 or Unix ms"))),
    }
}

/// Longest window a query may name (100 years), minutes.
const MAX_WINDOW_MINUTES: i64 = 100 * 366 * 24 * 60;

/// `from`/`to` (replace `window_minutes`), else the last `window_minutes`.
fn range_param(p: &Params, now: i64) -> Result<TimeRange, ApiError> {
    let window = int_param(p, "window_minutes", 60, 1, MAX_WINDOW_MINUTES)?;
    let to = time_param(p, "to")?.unwrap_or(now.saturating_add(1));
    let from = match time_param(p, "from")? {
        Some(f) => f,
        None => to.saturating_sub(window * MINUTE_MS),
    };
    if from >= to {
        return Err(ApiError::param("from", "from must be before to"));
    }
    Ok(TimeRange::new(from, to))
}

fn split_list(values: Vec<&str>) -> Vec<&str> {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

const FILTER_DIMS: &[&str] = &[
    "model",
    "endpoint",
    "provider",
    "finish_reason",
    "user_id",
    "session_id",
];

fn filter_param(p: &Params) -> Result<RowFilter, ApiError> {
    let mut filter = RowFilter {
        equals: Vec::new(),
        error: bool_param(p, "error")?,
    };
    let mut keys: Vec<&str> = p.0.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        if FILTER_DIMS.contains(&key) || key.starts_with("tag.") {
            let dim = Dim::parse(key)
                .ok_or_else(|| ApiError::param(key, "tag filters need a key: tag.<key>=<value>"))?;
            let values: Vec<String> = p.all(key).into_iter().map(String::from).collect();
            filter.equals.push((dim, values));
        }
    }
    Ok(filter)
}

fn group_by_param(p: &Params, key: &str) -> Result<Vec<Dim>, ApiError> {
    let mut dims = Vec::new();
    for name in split_list(p.all(key)) {
        let d = Dim::parse(name).ok_or_else(|| {
            ApiError::param(key, format!("{name:?} is not a dimension (model, endpoint, provider, finish_reason, user_id, session_id, tag.<key>)"))
        })?;
        if !dims.contains(&d) {
            dims.push(d);
        }
    }
    if dims.len() > 4 {
        return Err(ApiError::param(key, "at most 4 group_by dimensions"));
    }
    Ok(dims)
}

/// `5m`, `1h`, `1d`, `90s` or plain seconds → ms.
fn duration_param(v: &str, key: &str) -> Result<i64, ApiError> {
    let v = v.trim();
    let (num, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| ApiError::param(key, format!("{key} must look like 90s, 5m, 1h or 7d")))?;
    let unit_ms = match unit {
        "s" => 1000,
        "m" => MINUTE_MS,
        "h" => 60 * MINUTE_MS,
        "d" => DAY_MS,
        "w" => 7 * DAY_MS,
        _ => {
            return Err(ApiError::param(
                key,
                format!("{key} must look like 90s, 5m, 1h or 7d"),
            ))
        }
    };
    n.checked_mul(unit_ms)
        .filter(|ms| *ms > 0 && *ms <= MAX_WINDOW_MINUTES * MINUTE_MS)
        .ok_or_else(|| ApiError::param(key, format!("{key} is out of range")))
}

// ---- summary & series ----

/// A summary group as JSON: count/errors as integers, every metric, finish reasons.
fn summary_json(s: &Summary) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("count".into(), json!(s.count));
    m.insert("errors".into(), json!(s.errors));
    for (k, v) in &s.metrics {
        if *k == "count" || *k == "errors" {
            continue;
        }
        m.insert((*k).to_string(), num(*v));
    }
    m.insert("finish_reasons".into(), json!(s.finish_reasons));
    m
}

/// Quality and feedback metrics, which exist without any call.
const QUALITY_METRICS: &[&str] = &[
    "quality_count",
    "refusal_rate",
    "hedging_rate",
    "avg_response_length",
    "avg_sentiment",
    "avg_factual_accuracy",
    "feedback_count",
    "avg_rating",
];

/// The seed's `{"count": 0}`, plus quality/feedback metrics when there are some.
fn empty_summary_json(s: &Summary) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("count".into(), json!(0));
    for k in QUALITY_METRICS {
        if let Some(v) = s.metric(k) {
            if s.metric("quality_count").unwrap_or(0.0) > 0.0
                || s.metric("feedback_count").unwrap_or(0.0) > 0.0
            {
                m.insert((*k).to_string(), num(v));
            }
        }
    }
    Value::Object(m)
}

fn num(v: f64) -> Value {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

pub(crate) async fn summary(
    State(state): State<Shared>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref());
    let range = range_param(&p, now_ms())?;
    let req = SummaryRequest {
        range,
        filter: filter_param(&p)?,
        group_by: group_by_param(&p, "group_by")?,
        exact: bool_param(&p, "exact")?.unwrap_or(false),
    };
    let grouped = !req.group_by.is_empty();
    let result = state.query(move |s| Ok(s.engine.summary(&req)?)).await?;
    let mut out = if grouped {
        let groups: Vec<Value> = result
            .groups
            .iter()
            .map(|g| {
                let mut m = summary_json(g);
                m.insert("labels".into(), json!(g.labels));
                Value::Object(m)
            })
            .collect();
        json!({"groups": groups})
    } else {
        match result.groups.first() {
            Some(g) if g.count > 0 => Value::Object(summary_json(g)),
            Some(g) => empty_summary_json(g),
            None => json!({"count": 0}),
        }
    };
    out["from"] = json!(format_rfc3339_ms(range.from_ms));
    out["to"] = json!(format_rfc3339_ms(range.to_ms));
    if result.partial {
        out["partial"] = json!(true);
        out["coverage_note"] = json!(result.coverage_note);
    }
    Ok(Json(out))
}

pub(crate) async fn series(
    State(state): State<Shared>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref());
    let metric = p
        .get("metric")
        .ok_or_else(|| ApiError::param("metric", "metric is required"))?;
    if !METRICS.contains(&metric) {
        return Err(ApiError::param(
            "metric",
            format!("unknown metric {metric:?}; one of {}", METRICS.join(", ")),
        ));
    }
    let range = range_param(&p, now_ms())?;
    let step_ms = match p.get("step") {
        Some(s) => duration_param(s, "step")?,
        None => (range.duration_ms() / 60).max(MINUTE_MS),
    };
    let step_ms = if step_ms % MINUTE_MS == 0 {
        step_ms
    } else if p.get("step").is_some() {
        return Err(ApiError::param(
            "step",
            "step must be a whole number of minutes",
        ));
    } else {
        (step_ms / MINUTE_MS + 1) * MINUTE_MS
    };
    if range.duration_ms() / step_ms > 10_000 {
        return Err(ApiError::param(
            "step",
            "at most 10,000 points per series; use a larger step",
        ));
    }
    let req = SeriesRequest {
        metric: metric.to_string(),
        range,
        step_ms,
        filter: filter_param(&p)?,
        group_by: group_by_param(&p, "group_by")?,
    };
    let r = state.query(move |s| Ok(s.engine.series(&req)?)).await?;
    Ok(Json(json!({
        "metric": r.metric,
        "step_seconds": r.step_ms / 1000,
        "partial": r.partial,
        "series": r.series.iter().map(|s| json!({
            "labels": s.labels,
            "points": s.points.iter().map(|(t, v)| json!([t, v.map(num)])).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })))
}

// ---- drift ----

fn drift_json(r: &DriftReport) -> Value {
    let sig = |name: &str| r.signal(name);
    let base = |name: &str| {
        sig(name)
            .and_then(|s| s.baseline)
            .map(num)
            .unwrap_or(Value::Null)
    };
    let cur = |name: &str| {
        sig(name)
            .and_then(|s| s.current)
            .map(num)
            .unwrap_or(Value::Null)
    };
    let mut out = json!({
        "drift_detected": r.drift_detected,
        "reasons": r.reasons,
        "metrics": {
            "baseline_refusal_rate": base("refusal_rate"),
            "current_refusal_rate": cur("refusal_rate"),
            "baseline_avg_length": base("avg_response_length"),
            "current_avg_length": cur("avg_response_length"),
            "baseline_hallucination_rate": base("hedging_rate"),
            "current_hallucination_rate": cur("hedging_rate"),
        },
        "current": {"from": format_rfc3339_ms(r.current.from_ms), "to": format_rfc3339_ms(r.current.to_ms)},
        "baseline": {"from": format_rfc3339_ms(r.baseline.from_ms), "to": format_rfc3339_ms(r.baseline.to_ms)},
        "signals": r.signals.iter().map(|s| json!({
            "name": s.name,
            "baseline": s.baseline.map(num),
            "current": s.current.map(num),
            "change": s.change.map(num),
            "statistic": s.statistic.map(num),
            "threshold": num(s.threshold),
            "p_value": s.p_value.map(num),
            "drifted": s.drifted,
            "status": match s.status { sextant_query::SignalStatus::Ok => "ok", _ => "insufficient_data" },
            "baseline_samples": s.baseline_samples,
            "current_samples": s.current_samples,
        })).collect::<Vec<_>>(),
    });
    if r.insufficient_data {
        out["drift_detected"] = json!(false);
        out["reason"] = json!("insufficient_data");
    }
    out
}

pub(crate) async fn drift(
    State(state): State<Shared>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref());
    let current = range_param(&p, now_ms())?;
    let explicit_range = match (
        time_param(&p, "baseline_from")?,
        time_param(&p, "baseline_to")?,
    ) {
        (Some(f), Some(t)) if f < t => Some(TimeRange::new(f, t)),
        (None, None) => None,
        _ => {
            return Err(ApiError::param(
                "baseline_from",
                "baseline_from and baseline_to go together, from before to",
            ))
        }
    };
    let name = p.get("baseline_name").map(String::from);
    let offset = p
        .get("baseline")
        .map(|v| duration_param(v, "baseline"))
        .transpose()?;
    let baseline = match (explicit_range, name, offset) {
        (Some(r), None, None) => Baseline::Range(r),
        (None, Some(n), None) => Baseline::Named(n),
        (None, None, Some(o)) => Baseline::Offset(o),
        (None, None, None) => Baseline::Offset(current.duration_ms()),
        _ => {
            return Err(ApiError::param(
                "baseline",
                "give one of baseline, baseline_from/baseline_to, baseline_name",
            ))
        }
    };
    let mut config = state.drift.clone();
    for (key, slot) in [
        ("refusal_rate_abs", &mut config.refusal_rate_abs),
        ("length_rel", &mut config.length_rel),
        ("hedging_rate_abs", &mut config.hedging_rate_abs),
        ("error_rate_abs", &mut config.error_rate_abs),
        ("latency_ks", &mut config.latency_ks),
        ("tokens_rel", &mut config.tokens_rel),
        ("cost_rel", &mut config.cost_rel),
        ("rating_abs", &mut config.rating_abs),
        ("p_value", &mut config.p_value),
    ] {
        if let Some(v) = p.get(key) {
            let f: f64 = v
                .parse()
                .map_err(|_| ApiError::param(key, format!("{key} must be a number")))?;
            if !f.is_finite() || !(0.0..=1e9).contains(&f) {
                return Err(ApiError::param(
                    key,
                    format!("{key} must be a finite non-negative number"),
                ));
            }
            *slot = f;
        }
    }
    config.min_samples = int_param(
        &p,
        "min_samples",
        config.min_samples as i64,
        1,
        1_000_000_000,
    )? as u64;
    let req = sextant_query::DriftRequest {
        current,
        baseline,
        filter: filter_param(&p)?,
        config,
    };
    let r = state.query(move |s| Ok(s.engine.drift(&req)?)).await?;
    Ok(Json(drift_json(&r)))
}

pub(crate) async fn list_baselines(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    let b = state.query(|s| Ok(s.engine.baselines()?)).await?;
    Ok(Json(json!({"baselines": b.iter().map(|(n, r)| json!({
        "name": n, "from": format_rfc3339_ms(r.from_ms), "to": format_rfc3339_ms(r.to_ms),
    })).collect::<Vec<_>>()})))
}

pub(crate) async fn save_baseline(
    State(state): State<Shared>,
    headers: HeaderMap,
    raw: BodyResult,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let v = json_body(&state, &headers, raw)?;
    let f = dto::Fields::new(&v, "body")?;
    let name = f.req_str("name")?;
    if name.is_empty() || name.len() > 128 || name.contains('/') {
        return Err(ApiError::invalid(
            "name",
            "must be 1–128 characters without '/'",
        ));
    }
    let from = f
        .opt_timestamp("from")?
        .ok_or_else(|| ApiError::missing("from"))?;
    let to = f
        .opt_timestamp("to")?
        .ok_or_else(|| ApiError::missing("to"))?;
    if from >= to {
        return Err(ApiError::invalid("from", "must be before to"));
    }
    let n = name.clone();
    state
        .query(move |s| Ok(s.engine.save_baseline(&n, TimeRange::new(from, to))?))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "from": format_rfc3339_ms(from), "to": format_rfc3339_ms(to)})),
    ))
}

pub(crate) async fn delete_baseline(
    State(state): State<Shared>,
    name: PathResult,
) -> Result<Json<Value>, ApiError> {
    let name = path_param(name)?;
    let n = name.clone();
    let existed = state
        .query(move |s| Ok(s.engine.delete_baseline(&n)?))
        .await?;
    if !existed {
        return Err(ApiError::NotFound {
            code: "not_found",
            message: format!("no baseline named {name}"),
        });
    }
    Ok(Json(json!({"status": "deleted", "name": name})))
}

// ---- alerts ----

fn history_json(h: &sextant_alert::HistoryEntry) -> Value {
    json!({
        "id": h.id,
        "name": h.name,
        "severity": h.severity,
        "message": h.message,
        "timestamp": format_rfc3339_ms(h.timestamp_ms),
        "kind": h.kind,
        "labels": h.labels,
        "value": h.value.map(num),
        "threshold": h.threshold.map(num),
    })
}

/// The seed's `GET /v1/alerts?hours=`: alerts that fired in the last `hours`.
pub(crate) async fn seed_alerts(
    State(state): State<Shared>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref());
    let hours = int_param(&p, "hours", 24, 1, 24 * 366 * 10)?;
    let now = now_ms();
    let hq = HistoryQuery {
        from_ms: now - hours * 60 * MINUTE_MS,
        to_ms: now + 1,
        rule: None,
        kinds: vec!["firing".into()],
        limit: 10_000,
    };
    let alerts = state.query(move |s| Ok(s.alerting.history(&hq)?)).await?;
    Ok(Json(json!({
        "count": alerts.len(),
        "alerts": alerts.iter().map(|a| json!({
            "id": a.id, "name": a.name, "severity": a.severity, "message": a.message,
            "timestamp": format_rfc3339_ms(a.timestamp_ms),
        })).collect::<Vec<_>>(),
    })))
}

pub(crate) async fn alert_history(
    State(state): State<Shared>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let p = Params::parse(q.as_deref());
    let now = now_ms();
    let range = if p.get("from").is_some() || p.get("to").is_some() {
        range_param(&p, now)?
    } else {
        let hours = int_param(&p, "hours", 24, 1, 24 * 366 * 10)?;
        TimeRange::new(now - hours * 60 * MINUTE_MS, now + 1)
    };
    let hq = HistoryQuery {
        from_ms: range.from_ms,
        to_ms: range.to_ms,
        rule: p.get("rule").map(String::from),
        kinds: split_list(p.all("kind"))
            .into_iter()
            .map(String::from)
            .collect(),
        limit: int_param(&p, "limit", 1000, 1, 100_000)? as usize,
    };
    let h = state.query(move |s| Ok(s.alerting.history(&hq)?)).await?;
    Ok(Json(
        json!({"count": h.len(), "history": h.iter().map(history_json).collect::<Vec<_>>()}),
    ))
}

pub(crate) async fn alert_instances(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    let v = state.query(|s| Ok(s.alerting.instances()?)).await?;
    Ok(Json(json!({"count": v.len(), "instances": v})))
}

/// Parses a JSON body into a serde type, naming the field serde complains about.
fn typed_body<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| {
        let msg = e.to_string();
        let field = msg
            .split('`')
            .nth(1)
            .map(String::from)
            .unwrap_or_else(|| "body".into());
        ApiError::invalid(field, msg)
    })
}

pub(crate) async fn list_rules(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    let rules = state.query(|s| Ok(s.alerting.rules()?)).await?;
    Ok(Json(json!({"count": rules.len(), "rules": rules})))
}

pub(crate) async fn get_rule(
    State(state): State<Shared>,
    name: PathResult,
) -> Result<Json<Rule>, ApiError> {
    let name = path_param(name)?;
    Ok(Json(
        state.query(move |s| Ok(s.alerting.rule(&name)?)).await?,
    ))
}

pub(crate) async fn create_rule(
    State(state): State<Shared>,
    headers: HeaderMap,
    raw: BodyResult,
) -> Result<(StatusCode, Json<Rule>), ApiError> {
    let rule: Rule = typed_body(json_body(&state, &headers, raw)?)?;
    let r = state
        .query(move |s| Ok(s.alerting.create_rule(rule)?))
        .await?;
    Ok((StatusCode::CREATED, Json(r)))
}

pub(crate) async fn update_rule(
    State(state): State<Shared>,
    name: PathResult,
    headers: HeaderMap,
    raw: BodyResult,
) -> Result<Json<Rule>, ApiError> {
    let name = path_param(name)?;
    let rule: Rule = typed_body(json_body(&state, &headers, raw)?)?;
    Ok(Json(
        state
            .query(move |s| Ok(s.alerting.update_rule(&name, rule)?))
            .await?,
    ))
}

pub(crate) async fn delete_rule(
    State(state): State<Shared>,
    name: PathResult,
) -> Result<Json<Value>, ApiError> {
    let name = path_param(name)?;
    let n = name.clone();
    state
        .query(move |s| Ok(s.alerting.delete_rule(&n)?))
        .await?;
    Ok(Json(json!({"status": "deleted", "name": name})))
}

pub(crate) async fn list_silences(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    let v = state.query(|s| Ok(s.alerting.silences()?)).await?;
    Ok(Json(json!({"count": v.len(), "silences": v})))
}

pub(crate) async fn create_silence(
    State(state): State<Shared>,
    headers: HeaderMap,
    raw: BodyResult,
) -> Result<(StatusCode, Json<Silence>), ApiError> {
    let s: Silence = typed_body(json_body(&state, &headers, raw)?)?;
    if s.ends_ms <= s.starts_ms {
        return Err(ApiError::invalid("ends_ms", "must be after starts_ms"));
    }
    let r = state
        .query(move |st| Ok(st.alerting.create_silence(s)?))
        .await?;
    Ok((StatusCode::CREATED, Json(r)))
}

pub(crate) async fn delete_silence(
    State(state): State<Shared>,
    id: PathResult,
) -> Result<Json<Value>, ApiError> {
    let id = path_param(id)?;
    let i = id.clone();
    state
        .query(move |s| Ok(s.alerting.delete_silence(&i)?))
        .await?;
    Ok(Json(json!({"status": "deleted", "id": id})))
}

pub(crate) async fn list_notifiers(State(state): State<Shared>) -> Json<Value> {
    let n = state.alerting.notifiers();
    Json(
        json!({"notifiers": n.iter().map(|(name, kind)| json!({"name": name, "kind": kind})).collect::<Vec<_>>()}),
    )
}

// ---- pricing ----

pub(crate) fn pricing_json(prices: &sextant_model::PriceTable) -> Value {
    let mut list: Vec<_> = prices.prices().iter().collect();
    list.sort_by(|a, b| {
        a.model
            .cmp(&b.model)
            .then(a.valid_from_ms.cmp(&b.valid_from_ms))
    });
    json!({
        "unit": "USD per million tokens",
        "prices": list.iter().map(|p| json!({
            "model": p.model,
            "input_per_mtok": p.input_per_mtok,
            "output_per_mtok": p.output_per_mtok,
            "cached_input_per_mtok": p.cached_input_per_mtok.unwrap_or(p.input_per_mtok),
            "reasoning_per_mtok": p.reasoning_per_mtok.unwrap_or(p.output_per_mtok),
            "valid_from": format_rfc3339_ms(p.valid_from_ms),
        })).collect::<Vec<_>>(),
    })
}

pub(crate) async fn pricing(State(state): State<Shared>) -> Json<Value> {
    Json(pricing_json(&state.prices))
}

/// Models with calls whose cost is unknown, over `from`/`to` or the last
/// `window_minutes` (default 7 days).
pub(crate) async fn unpriced(
    State(state): State<Shared>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let mut p = Params::parse(q.as_deref());
    if p.get("window_minutes").is_none() && p.get("from").is_none() {
        p.0.push(("window_minutes".into(), (7 * 24 * 60).to_string()));
    }
    let range = range_param(&p, now_ms())?;
    let req = SummaryRequest {
        range,
        filter: RowFilter::default(),
        group_by: vec![Dim::Model],
        exact: false,
    };
    let r = state.query(move |s| Ok(s.engine.summary(&req)?)).await?;
    let mut models: Vec<(String, u64, u64)> = r
        .groups
        .iter()
        .filter_map(|g| {
            let unknown = g.metric("cost_unknown_count").unwrap_or(0.0) as u64;
            (unknown > 0).then(|| {
                (
                    g.labels.get("model").cloned().unwrap_or_default(),
                    unknown,
                    g.count,
                )
            })
        })
        .collect();
    models.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let list: Vec<Value> = models
        .iter()
        .map(|(m, u, c)| json!({"model": m, "calls_without_price": u, "calls": c}))
        .collect();
    Ok(Json(json!({
        "from": format_rfc3339_ms(range.from_ms),
        "to": format_rfc3339_ms(range.to_ms),
        "count": list.len(),
        "models": list,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Params;

    #[test]
    fn durations_parse_with_units_and_reject_nonsense() {
        assert_eq!(duration_param("5m", "step").unwrap(), 5 * MINUTE_MS);
        assert_eq!(duration_param("7d", "baseline").unwrap(), 7 * DAY_MS);
        assert_eq!(duration_param("120", "step").unwrap(), 120_000);
        for bad in ["", "5x", "-5m", "m", "0m", "99999999999999999d"] {
            assert!(duration_param(bad, "step").is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_default_to_the_last_window_and_reject_inverted() {
        let now = 1_800_000_000_000;
        let r = range_param(&Params::parse(None), now).unwrap();
        assert_eq!(r.duration_ms(), 60 * MINUTE_MS);
        assert!(r.contains(now));
        let r = range_param(&Params::parse(Some("window_minutes=5")), now).unwrap();
        assert_eq!(r.duration_ms(), 5 * MINUTE_MS);
        for bad in [
            "window_minutes=0",
            "window_minutes=-3",
            "window_minutes=abc",
            "window_minutes=1e9999",
            "from=2027-01-02T00:00:00Z&to=2027-01-01T00:00:00Z",
            "from=yesterday",
        ] {
            let e = range_param(&Params::parse(Some(bad)), now).unwrap_err();
            assert_eq!(e.kind().status(), StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.field().is_some(), "{bad}");
        }
    }

    #[test]
    fn filters_and_group_by_parse_dims_and_tags() {
        let p = Params::parse(Some("model=gpt-4o&model=o3&tag.team=search&error=true&group_by=model,endpoint&window_minutes=5"));
        let f = filter_param(&p).unwrap();
        assert_eq!(f.error, Some(true));
        assert!(f
            .equals
            .contains(&(Dim::Model, vec!["gpt-4o".into(), "o3".into()])));
        assert!(f
            .equals
            .contains(&(Dim::Tag("team".into()), vec!["search".into()])));
        assert_eq!(
            group_by_param(&p, "group_by").unwrap(),
            vec![Dim::Model, Dim::Endpoint]
        );
        assert!(group_by_param(&Params::parse(Some("group_by=colour")), "group_by").is_err());
        assert!(filter_param(&Params::parse(Some("tag.=x"))).is_err());
        assert!(filter_param(&Params::parse(Some("error=maybe"))).is_err());
    }

    #[test]
    fn pricing_lists_every_price_with_effective_cached_and_reasoning() {
        let v = pricing_json(&sextant_model::PriceTable::default());
        let prices = v["prices"].as_array().unwrap();
        let g = prices.iter().find(|p| p["model"] == "gpt-4-turbo").unwrap();
        assert_eq!(g["input_per_mtok"], 10.0);
        assert_eq!(
            g["cached_input_per_mtok"], 10.0,
            "no cached price: billed at the input price"
        );
        assert_eq!(g["valid_from"], "1970-01-01T00:00:00.000Z");
        let models: Vec<_> = prices
            .iter()
            .map(|p| p["model"].as_str().unwrap())
            .collect();
        let mut sorted = models.clone();
        sorted.sort();
        assert_eq!(models, sorted);
    }
}
