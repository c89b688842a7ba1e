//! The server's shared state, the router, request plumbing (bodies, query
//! strings, auth middleware) and `serve` with graceful shutdown.
//!
//! Invariants: every store call that may block (append, scans) runs on the
//! blocking pool; every request body passes the size limit *after* gzip
//! decoding too; every rejection from axum's extractors is turned into an
//! [`ApiError`], so clients only ever see the one JSON error shape.

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use parking_lot::Mutex;
use sextant_alert::Alerting;
use sextant_model::{Batch, Limits, PriceTable};
use sextant_query::{DriftConfig, QualityAnalyzer, QueryEngine};
use sextant_storage::Store;
use tokio::task::JoinSet;

use crate::auth::{Keys, Scope};
use crate::config::Config;
use crate::error::ApiError;
use crate::handlers;
use crate::judge::Judge;
use crate::telemetry::Telemetry;

/// Everything a handler needs. Shared as `Arc<AppState>`.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) engine: QueryEngine,
    pub(crate) alerting: Alerting,
    pub(crate) analyzer: QualityAnalyzer,
    pub(crate) prices: PriceTable,
    pub(crate) limits: Limits,
    pub(crate) keys: Keys,
    pub(crate) drift: DriftConfig,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_batch_items: usize,
    pub(crate) telemetry: Telemetry,
    pub(crate) judge: Option<Judge>,
    pub(crate) judge_slots: tokio::sync::Semaphore,
    /// Background judge calls, awaited (bounded) at shutdown.
    pub(crate) judge_tasks: Mutex<JoinSet<()>>,
}

pub(crate) type Shared = Arc<AppState>;

impl AppState {
    /// Appends durably on the blocking pool, timing it.
    pub(crate) async fn append(self: &Arc<Self>, batch: Batch) -> Result<(), ApiError> {
        if batch.is_empty() {
            return Ok(());
        }
        let counts = [
            batch.calls.len(),
            batch.spans.len(),
            batch.quality.len(),
            batch.feedback.len(),
        ];
        let state = self.clone();
        let started = Instant::now();
        tokio::task::spawn_blocking(move || state.store.append(batch)).await??;
        self.telemetry
            .append_seconds
            .observe(started.elapsed().as_secs_f64());
        for (kind, n) in counts.into_iter().enumerate() {
            self.telemetry.ingested(kind, n as u64);
        }
        Ok(())
    }

    /// Runs a query on the blocking pool, timing it.
    pub(crate) async fn query<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
    {
        let state = self.clone();
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(move || f(&state)).await??;
        self.telemetry
            .query_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(out)
    }
}

/// A request body after size checks and gzip decoding.
#[derive(Debug)]
pub(crate) struct Body {
    pub(crate) bytes: Bytes,
    /// The media type, lower-cased, without parameters; None when absent.
    pub(crate) content_type: Option<String>,
}

impl Body {
    /// Reads the body extractor's result, applying `max_body_bytes` and gzip.
    pub(crate) fn read(
        raw: Result<Bytes, BytesRejection>,
        headers: &HeaderMap,
        max_body_bytes: usize,
    ) -> Result<Body, ApiError> {
        let bytes = raw.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge {
                    limit: max_body_bytes,
                    field: None,
                }
            } else {
                ApiError::malformed(format!("reading the body: {}", r.body_text()))
            }
        })?;
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let encoding = headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
        let bytes = match encoding.as_deref() {
            None | Some("") | Some("identity") => bytes,
            Some("gzip") | Some("x-gzip") => {
                let mut out = Vec::new();
                let limit = u64::try_from(max_body_bytes)
                    .unwrap_or(u64::MAX)
                    .saturating_add(1);
                flate2::read::GzDecoder::new(&bytes[..])
                    .take(limit)
                    .read_to_end(&mut out)
                    .map_err(|e| ApiError::malformed(format!("invalid gzip body: {e}")))?;
                if out.len() > max_body_bytes {
                    return Err(ApiError::TooLarge {
                        limit: max_body_bytes,
                        field: None,
                    });
                }
                Bytes::from(out)
            }
            Some(other) => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "content-encoding {other:?} is not supported; use gzip or none"
                )))
            }
        };
        Ok(Body {
            bytes,
            content_type,
        })
    }

    /// Requires a JSON body (absent content type is accepted as JSON, as the seed does).
    pub(crate) fn require_json(&self) -> Result<(), ApiError> {
        match self.content_type.as_deref() {
            None | Some("") => Ok(()),
            Some(t) if is_json(t) => Ok(()),
            Some(t) => Err(ApiError::UnsupportedMediaType(format!(
                "content-type {t:?} is not accepted; send application/json"
            ))),
        }
    }
}

pub(crate) fn is_json(t: &str) -> bool {
    t == "application/json" || t.ends_with("+json")
}

/// A path segment, with extractor failures mapped to the JSON error.
pub(crate) fn path_param(
    p: Result<axum::extract::Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    p.map(|p| p.0)
        .map_err(|e| ApiError::param("path", e.body_text()))
}

/// Query-string pairs, percent-decoded. Never fails: bytes that do not
/// decode to UTF-8 are replaced (and then fail the parameter's own parsing).
#[derive(Debug, Default)]
pub(crate) struct Params(pub(crate) Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> Params {
        let Some(raw) = raw else {
            return Params::default();
        };
        Params(
            raw.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The scope a request needs; None for `/health`.
fn scope_of(method: &Method, path: &str) -> Option<Scope> {
    if path == "/health" {
        return None;
    }
    const INGEST: &[&str] = &[
        "/v1/metrics",
        "/v1/metrics/batch",
        "/v1/quality",
        "/v1/feedback",
        "/v1/spans",
        "/v1/traces",
    ];
    if method == Method::POST && INGEST.contains(&path) {
        return Some(Scope::Ingest);
    }
    let admin_space = ["/v1/rules", "/v1/silences", "/v1/drift/baselines"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")));
    if admin_space && method != Method::GET && method != Method::HEAD {
        return Some(Scope::Admin);
    }
    Some(Scope::Read)
}

async fn auth_and_count(State(state): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(scope) = scope_of(req.method(), req.uri().path()) {
        if let Err(e) = state.keys.check(req.headers(), scope) {
            state
                .telemetry
                .requests_4xx
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return e.into_response();
        }
    }
    let resp = next.run(req).await;
    let status = resp.status();
    if status.is_client_error() {
        state
            .telemetry
            .requests_4xx
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    } else if status.is_server_error() {
        state
            .telemetry
            .requests_5xx
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    resp
}

async fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "not_found",
        message: "no such endpoint; see docs/api.md".into(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Every route of docs/api.md.
pub(crate) fn router(state: Shared) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/health", get(handlers::health))
        .route("/metrics", get(handlers::prometheus))
        .route("/v1/metrics", post(handlers::post_metrics))
        .route("/v1/metrics/batch", post(handlers::post_metrics_batch))
        .route("/v1/quality", post(handlers::post_quality))
        .route("/v1/feedback", post(handlers::post_feedback))
        .route("/v1/spans", post(handlers::post_spans))
        .route(
            "/v1/traces",
            post(handlers::post_otlp).get(handlers::recent_traces),
        )
        .route("/v1/traces/{trace_id}", get(handlers::get_trace))
        .route("/v1/summary", get(handlers::summary))
        .route("/v1/query", get(handlers::series))
        .route("/v1/drift", get(handlers::drift))
        .route(
            "/v1/drift/baselines",
            get(handlers::list_baselines).post(handlers::save_baseline),
        )
        .route(
            "/v1/drift/baselines/{name}",
            delete(handlers::delete_baseline),
        )
        .route("/v1/alerts", get(handlers::seed_alerts))
        .route("/v1/alerts/history", get(handlers::alert_history))
        .route("/v1/alerts/active", get(handlers::alert_instances))
        .route(
            "/v1/rules",
            get(handlers::list_rules).post(handlers::create_rule),
        )
        .route(
            "/v1/rules/{name}",
            get(handlers::get_rule)
                .put(handlers::update_rule)
                .delete(handlers::delete_rule),
        )
        .route(
            "/v1/silences",
            get(handlers::list_silences).post(handlers::create_silence),
        )
        .route("/v1/silences/{id}", delete(handlers::delete_silence))
        .route("/v1/notifiers", get(handlers::list_notifiers))
        .route("/v1/pricing", get(handlers::pricing))
        .route("/v1/pricing/unpriced", get(handlers::unpriced))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth_and_count,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Builds the state from an opened store.
pub(crate) fn build_state(
    config: &Config,
    store: Store,
    alerting: Alerting,
    engine: QueryEngine,
) -> anyhow::Result<Shared> {
    let analyzer = QualityAnalyzer::new(&config.quality_config())
        .map_err(|e| anyhow::anyhow!("[quality] patterns: {e}"))?;
    let judge = match &config.quality.judge {
        Some(j) => Some(Judge::new(j.clone()).map_err(|e| anyhow::anyhow!(e))?),
        None => None,
    };
    let slots = config
        .quality
        .judge
        .as_ref()
        .map(|j| j.max_concurrent)
        .unwrap_or(1);
    Ok(Arc::new(AppState {
        store,
        engine,
        alerting,
        analyzer,
        prices: config.price_table()?,
        limits: config.limits(),
        keys: Keys::new(&config.auth),
        drift: config.drift.to_drift_config(),
        max_body_bytes: config.server.max_body_bytes,
        max_batch_items: config.server.max_batch_items,
        telemetry: Telemetry::default(),
        judge,
        judge_slots: tokio::sync::Semaphore::new(slots),
        judge_tasks: Mutex::new(JoinSet::new()),
    }))
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}

/// `sextant serve`: opens everything, serves until a signal, then shuts
/// down in order — stop accepting, finish in-flight requests, stop the
/// evaluator, finish judge calls, close the store (everything acknowledged durable).
pub(crate) async fn serve(config: Config) -> anyhow::Result<()> {
    let addr: SocketAddr = config.listen_addr()?;
    let store_config = config.store_config()?;
    let dir = config.storage.data_dir.clone();
    std::fs::create_dir_all(&dir)
        .map_err(|e| anyhow::anyhow!("creating data dir {}: {e}", dir.display()))?;
    let store = tokio::task::spawn_blocking(move || Store::open(&dir, store_config))
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let engine = QueryEngine::new(store.clone());
    let alerting = {
        let (s, e, a, n) = (
            store.clone(),
            engine.clone(),
            config.alerting.clone(),
            config.notifier.clone(),
        );
        tokio::task::spawn_blocking(move || Alerting::open(s, e, a, n))
            .await?
            .map_err(|e| anyhow::anyhow!("opening alerting: {e}"))?
    };
    let state = build_state(&config, store.clone(), alerting.clone(), engine)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {bound}");
        let _ = out.flush();
    }
    tracing::info!(%bound, data_dir = %config.storage.data_dir.display(), "sextant serving");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let evaluator = tokio::spawn(alerting.run(stop_rx));

    let app = router(state.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| anyhow::anyhow!("serving: {e}"))?;

    let grace = Duration::from_secs(config.server.shutdown_timeout_seconds.max(1));
    let _ = stop_tx.send(true);
    if tokio::time::timeout(grace, evaluator).await.is_err() {
        tracing::warn!("the alert evaluator did not stop within the shutdown timeout");
    }
    let mut tasks = std::mem::take(&mut *state.judge_tasks.lock());
    if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!("abandoning judge calls still running at shutdown");
    }
    tokio::task::spawn_blocking(move || store.close())
        .await?
        .map_err(|e| anyhow::anyhow!("closing the store: {e}"))?;
    tracing::info!("sextant stopped cleanly");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_percent_and_plus_without_failing() {
        let p = Params::parse(Some("a=1&b=x+y&c=%41%zz&tag.team=search&d&e=%"));
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("x y"));
        assert_eq!(p.get("c"), Some("A%zz"));
        assert_eq!(p.get("tag.team"), Some("search"));
        assert_eq!(p.get("d"), Some(""));
        assert_eq!(p.get("e"), Some("%"));
        let p = Params::parse(Some("x=%FF%FE"));
        assert_eq!(p.get("x"), Some("\u{fffd}\u{fffd}"));
    }

    #[test]
    fn routes_need_their_scopes() {
        assert_eq!(scope_of(&Method::GET, "/health"), None);
        assert_eq!(scope_of(&Method::POST, "/v1/metrics"), Some(Scope::Ingest));
        assert_eq!(scope_of(&Method::POST, "/v1/traces"), Some(Scope::Ingest));
        assert_eq!(scope_of(&Method::GET, "/v1/traces"), Some(Scope::Read));
        assert_eq!(scope_of(&Method::GET, "/v1/rules"), Some(Scope::Read));
        assert_eq!(scope_of(&Method::POST, "/v1/rules"), Some(Scope::Admin));
        assert_eq!(scope_of(&Method::DELETE, "/v1/rules/x"), Some(Scope::Admin));
        assert_eq!(
            scope_of(&Method::POST, "/v1/drift/baselines"),
            Some(Scope::Admin)
        );
        assert_eq!(scope_of(&Method::GET, "/metrics"), Some(Scope::Read));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn gzip_bodies_are_decoded_within_the_limit() {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&vec![b'a'; 10_000]).unwrap();
        let gz = Bytes::from(enc.finish().unwrap());
        let h = headers(&[
            ("content-encoding", "gzip"),
            ("content-type", "application/json; charset=utf-8"),
        ]);
        let b = Body::read(Ok(gz.clone()), &h, 20_000).unwrap();
        assert_eq!(b.bytes.len(), 10_000);
        assert_eq!(b.content_type.as_deref(), Some("application/json"));
        let e = Body::read(Ok(gz), &h, 5_000).unwrap_err();
        assert_eq!(
            e.kind().status(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "a gzip bomb is cut at the limit"
        );
        let e = Body::read(Ok(Bytes::from_static(b"not gzip")), &h, 5_000).unwrap_err();
        assert_eq!(e.kind().status(), StatusCode::BAD_REQUEST);
        let br = headers(&[("content-encoding", "br")]);
        let e = Body::read(Ok(Bytes::from_static(b"x")), &br, 5_000).unwrap_err();
        assert_eq!(e.kind().status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn json_endpoints_accept_json_or_no_content_type_only() {
        let body = |ct: Option<&str>| Body {
            bytes: Bytes::new(),
            content_type: ct.map(String::from),
        };
        assert!(body(None).require_json().is_ok());
        assert!(body(Some("application/json")).require_json().is_ok());
        assert!(body(Some("application/vnd.api+json"))
            .require_json()
            .is_ok());
        assert!(body(Some("text/plain")).require_json().is_err());
        assert!(body(Some("application/x-www-form-urlencoded"))
            .require_json()
            .is_err());
    }
}
