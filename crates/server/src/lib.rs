//! sextant-server: the HTTP API (seed-compatible plus extensions), OTLP ingest,
//! configuration and the `sextant` command-line binary.
//!
//! **API Boundary:** only this crate knows HTTP, JSON DTOs and axum. Layers
//! below are reached through `sextant_storage::Store`, `sextant_query` and
//! `sextant_alert` only.
//!
//! Module map: `config` (the TOML file), `cli` (clap commands), `app`
//! (state, router, body/query plumbing, serve + shutdown), `handlers`
//! (one function per endpoint), `dto` (JSON → domain, field-named errors),
//! `json` (the one-pass borrowed view of metrics records `dto` reads),
//! `otlp` (OTLP protobuf/JSON decoding, gen_ai → `LlmCall`), `auth` (API
//! keys), `error` (the one `ApiError` and its `IntoResponse`), `telemetry`
//! (`/metrics`), `judge` (factual-accuracy LLM judge).

mod app;
mod auth;
mod cli;
mod config;
mod dto;
mod error;
mod handlers;
mod json;
mod judge;
mod otlp;
mod telemetry;

pub use auth::{Keys, Scope};
pub use cli::{main, Cli, Command};
pub use config::{
    AuthSection, Config, ConfigError, DriftSection, JudgeSection, LogSection, PriceEntry,
    PricingSection, QualitySection, RetentionSection, ServerSection, StorageSection,
};
pub use error::{ApiError, ApiErrorKind};
