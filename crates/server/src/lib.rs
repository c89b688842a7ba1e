//! sextant-server: the HTTP API (seed-compatible plus extensions), OTLP ingest,
//! configuration and the `sextant` command-line binary.
//!
//! **API Boundary:** only this crate knows HTTP, JSON DTOs and axum.
