//! sextant-model: Sextant's domain types, time buckets, pricing and validation.
//!
//! **Architecture Invariant:** this crate is pure — no I/O, no sled, no tokio.
//! Every event that reaches storage has passed [`LlmCall::validate`] (or its
//! sibling for the other event kinds); storage never re-checks ranges.
//!
//! Times are Unix milliseconds, UTC (`i64`), except span boundaries, which are
//! Unix nanoseconds (`u64`) as in OpenTelemetry.

mod event;
mod pricing;
mod time;
mod validate;

pub use event::{Batch, Feedback, LlmCall, Quality, Span, SpanEvent, SpanKind, SpanStatus};
pub use pricing::{Price, PriceTable};
pub use time::{
    format_rfc3339_ms, now_ms, parse_timestamp, Tier, TimeRange, DAY_MS, HOUR_MS, MINUTE_MS,
    WEEK_MS, WEEK_OFFSET_MS,
};
pub use validate::{Limits, ValidationError};

/// A dimension an `LlmCall` can be filtered or grouped by.
///
/// `Model`, `Endpoint` and `Provider` are the usual rollup dimensions; the
/// others are high-cardinality and served from raw rows.
#[non_exhaustive]
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Dim {
    Model,
    Endpoint,
    Provider,
    FinishReason,
    UserId,
    SessionId,
    /// A tag key: `tag.<key>`.
    Tag(String),
}

impl Dim {
    /// Parses `model`, `endpoint`, `provider`, `finish_reason`, `user_id`,
    /// `session_id` or `tag.<key>`.
    pub fn parse(s: &str) -> Option<Dim> {
        Some(match s {
            "model" => Dim::Model,
            "endpoint" => Dim::Endpoint,
            "provider" => Dim::Provider,
            "finish_reason" => Dim::FinishReason,
            "user_id" => Dim::UserId,
            "session_id" => Dim::SessionId,
            _ => {
                let key = s.strip_prefix("tag.")?;
                if key.is_empty() {
                    return None;
                }
                Dim::Tag(key.to_string())
            }
        })
    }

    /// The name `parse` accepts.
    pub fn name(&self) -> String {
        match self {
            Dim::Model => "model".into(),
            Dim::Endpoint => "endpoint".into(),
            Dim::Provider => "provider".into(),
            Dim::FinishReason => "finish_reason".into(),
            Dim::UserId => "user_id".into(),
            Dim::SessionId => "session_id".into(),
            Dim::Tag(k) => format!("tag.{k}"),
        }
    }

    /// The value of this dimension on a call; absent optional values read as "".
    pub fn value_of<'a>(&self, call: &'a LlmCall) -> &'a str {
        match self {
            Dim::Model => &call.model,
            Dim::Endpoint => &call.endpoint,
            Dim::Provider => &call.provider,
            Dim::FinishReason => &call.finish_reason,
            Dim::UserId => call.user_id.as_deref().unwrap_or(""),
            Dim::SessionId => call.session_id.as_deref().unwrap_or(""),
            Dim::Tag(k) => call.tags.get(k).map(String::as_str).unwrap_or(""),
        }
    }
}
