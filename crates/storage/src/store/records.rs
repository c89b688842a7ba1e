//! Value encodings owned by the engine: WAL batches, quality/feedback rows,
//! spans and their keys, request-index entries, segment summaries.
//!
//! **Invariant:** every value is framed (version + CRC-32, `frame.rs`);
//! decoders check the frame first and never panic on bad bytes.

use serde::{Deserialize, Serialize};
use sextant_model::{Batch, Feedback, LlmCall, Quality, Span};

use crate::api::{GroupKey, RequestRef};
use crate::db::{get_str, put_str, ts_from_key, ts_key, u64_from};
use crate::error::CodecError;
use crate::frame::{frame, unframe};

/// Version byte of WAL, row and span frames.
pub(crate) const RECORD_VERSION: u8 = 1;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 1 << 30 }>()
}

#[derive(Serialize)]
struct WalRef<'a> {
    calls: &'a [LlmCall],
    quality: &'a [Quality],
    feedback: &'a [Feedback],
    /// Spans as JSON (their attributes are JSON values).
    spans_json: Vec<u8>,
}

#[derive(Deserialize)]
struct WalOwned {
    calls: Vec<LlmCall>,
    quality: Vec<Quality>,
    feedback: Vec<Feedback>,
    spans_json: Vec<u8>,
}

pub(crate) fn encode_wal(batch: &Batch) -> Vec<u8> {
    let spans_json = if batch.spans.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(&batch.spans).unwrap_or_default()
    };
    let r = WalRef {
        calls: &batch.calls,
        quality: &batch.quality,
        feedback: &batch.feedback,
        spans_json,
    };
    let payload = bincode::serde::encode_to_vec(&r, bincode_config()).unwrap_or_default();
    frame(RECORD_VERSION, &payload)
}

pub(crate) fn decode_wal(bytes: &[u8]) -> Result<Batch, CodecError> {
    let payload = unframe("wal batch", RECORD_VERSION, bytes)?;
    let (w, _): (WalOwned, usize) = bincode::serde::decode_from_slice(payload, bincode_config())
        .map_err(|e| CodecError::new("wal batch", e.to_string()))?;
    let spans = if w.spans_json.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&w.spans_json)
            .map_err(|e| CodecError::new("wal batch spans", e.to_string()))?
    };
    Ok(Batch {
        calls: w.calls,
        spans,
        quality: w.quality,
        feedback: w.feedback,
    })
}

pub(crate) fn encode_row<T: Serialize>(row: &T) -> Vec<u8> {
    frame(
        RECORD_VERSION,
        &bincode::serde::encode_to_vec(row, bincode_config()).unwrap_or_default(),
    )
}

pub(crate) fn decode_row<T: for<'de> Deserialize<'de>>(
    what: &str,
    bytes: &[u8],
) -> Result<T, CodecError> {
    let payload = unframe(what, RECORD_VERSION, bytes)?;
    bincode::serde::decode_from_slice(payload, bincode_config())
        .map(|(v, _)| v)
        .map_err(|e| CodecError::new(what, e.to_string()))
}

// ---- spans ----

/// `trace_id 0x00`: the prefix of every span key of one trace.
pub(crate) fn trace_prefix(trace_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(trace_id.len() + 1);
    k.extend_from_slice(trace_id.as_bytes());
    k.push(0);
    k
}

/// `trace_id 0x00 start_ns(u64 BE) span_id`. Ids never contain NUL (validated).
pub(crate) fn span_key(s: &Span) -> Vec<u8> {
    let mut k = trace_prefix(&s.trace_id);
    k.extend_from_slice(&s.start_unix_nano.to_be_bytes());
    k.extend_from_slice(s.span_id.as_bytes());
    k
}

/// `start_ns(u64 BE) trace_id 0x00 span_id`.
pub(crate) fn span_time_key(s: &Span) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + s.trace_id.len() + s.span_id.len());
    k.extend_from_slice(&s.start_unix_nano.to_be_bytes());
    k.extend_from_slice(s.trace_id.as_bytes());
    k.push(0);
    k.extend_from_slice(s.span_id.as_bytes());
    k
}

/// (start ns, trace id, span key) from a time-index key.
pub(crate) fn parse_span_time_key(k: &[u8]) -> Option<(u64, String, Vec<u8>)> {
    let start = u64_from(k)?;
    let rest = k.get(8..)?;
    let nul = rest.iter().position(|b| *b == 0)?;
    let trace_id = std::str::from_utf8(&rest[..nul]).ok()?.to_string();
    let span_id = &rest[nul + 1..];
    let mut sk = trace_prefix(&trace_id);
    sk.extend_from_slice(&start.to_be_bytes());
    sk.extend_from_slice(span_id);
    Some((start, trace_id, sk))
}

pub(crate) fn encode_span(s: &Span) -> Vec<u8> {
    frame(RECORD_VERSION, &serde_json::to_vec(s).unwrap_or_default())
}

pub(crate) fn decode_span(bytes: &[u8]) -> Result<Span, CodecError> {
    let payload = unframe("span", RECORD_VERSION, bytes)?;
    serde_json::from_slice(payload).map_err(|e| CodecError::new("span", e.to_string()))
}

// ---- request index ----

/// `ts_key(timestamp) (u16 len + value)*`, unframed: a format version 1
/// request-index entry (tree `requests`; read, no longer written).
#[cfg(test)]
pub(crate) fn encode_request(r: &RequestRef) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + r.group.0.iter().map(|s| s.len() + 2).sum::<usize>());
    v.extend_from_slice(&ts_key(r.timestamp_ms));
    for s in &r.group.0 {
        put_str(&mut v, s);
    }
    v
}

pub(crate) fn decode_request(b: &[u8]) -> Result<RequestRef, CodecError> {
    let bad = || CodecError::new("request index entry", "truncated or not UTF-8");
    let timestamp_ms = ts_from_key(b).ok_or_else(bad)?;
    let mut pos = 8;
    let mut group = Vec::new();
    while pos < b.len() {
        group.push(get_str(b, &mut pos).ok_or_else(bad)?);
    }
    Ok(RequestRef {
        timestamp_ms,
        group: GroupKey(group),
    })
}

// ---- rollup keys ----

/// `ts_key(bucket start) (u16 len + group value)*`.
pub(crate) fn rollup_key(bucket_ms: i64, group: &GroupKey) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + group.0.iter().map(|s| s.len() + 2).sum::<usize>());
    k.extend_from_slice(&ts_key(bucket_ms));
    for s in &group.0 {
        put_str(&mut k, s);
    }
    k
}

pub(crate) fn parse_rollup_key(k: &[u8]) -> Option<(i64, GroupKey)> {
    let bucket = ts_from_key(k)?;
    let mut pos = 8;
    let mut g = Vec::new();
    while pos < k.len() {
        g.push(get_str(k, &mut pos)?);
    }
    Some((bucket, GroupKey(g)))
}

// ---- segment summaries ----

/// What the engine keeps in memory about a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegMeta {
    pub(crate) id: u64,
    /// Unix ms, inclusive.
    pub(crate) min_ts: i64,
    /// Unix ms, inclusive.
    pub(crate) max_ts: i64,
    pub(crate) rows: u64,
}

impl SegMeta {
    /// `ts_key(max_ts) id(u64 BE)`: retention deletes a key-ordered prefix.
    pub(crate) fn key(&self) -> Vec<u8> {
        let mut k = ts_key(self.max_ts).to_vec();
        k.extend_from_slice(&self.id.to_be_bytes());
        k
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(32);
        v.extend_from_slice(&self.id.to_be_bytes());
        v.extend_from_slice(&ts_key(self.min_ts));
        v.extend_from_slice(&ts_key(self.max_ts));
        v.extend_from_slice(&self.rows.to_be_bytes());
        frame(RECORD_VERSION, &v)
    }

    pub(crate) fn decode(b: &[u8]) -> Result<SegMeta, CodecError> {
        let p = unframe("segment summary", RECORD_VERSION, b)?;
        let bad = || CodecError::new("segment summary", "truncated");
        if p.len() != 32 {
            return Err(bad());
        }
        Ok(SegMeta {
            id: u64_from(p).ok_or_else(bad)?,
            min_ts: ts_from_key(&p[8..]).ok_or_else(bad)?,
            max_ts: ts_from_key(&p[16..]).ok_or_else(bad)?,
            rows: u64_from(&p[24..]).ok_or_else(bad)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_batch_round_trips_and_rejects_flipped_bytes() {
        let mut batch = Batch::default();
        batch.calls.push(LlmCall {
            request_id: "r1".into(),
            timestamp_ms: 5,
            model: "m".into(),
            latency_ms: 1.5,
            cost_usd: Some(0.25),
            tags: [("k".to_string(), "v".to_string())].into(),
            ..LlmCall::default()
        });
        batch.spans.push(Span {
            trace_id: "t".into(),
            span_id: "s".into(),
            attributes: [("a".to_string(), serde_json::json!({"x": [1, 2]}))].into(),
            ..Span::default()
        });
        batch.quality.push(Quality {
            request_id: "r1".into(),
            factual_accuracy: Some(0.5),
            ..Quality::default()
        });
        let bytes = encode_wal(&batch);
        assert_eq!(decode_wal(&bytes).unwrap(), batch);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode_wal(&bad).is_err());
        }
        assert!(decode_wal(&bytes[..bytes.len() / 2]).is_err());
    }

    #[test]
    fn rollup_and_request_keys_round_trip() {
        let g = GroupKey(vec!["gpt-4o".into(), "".into()]);
        assert_eq!(
            parse_rollup_key(&rollup_key(-60_000, &g)),
            Some((-60_000, g.clone()))
        );
        let r = RequestRef {
            timestamp_ms: 42,
            group: g,
        };
        assert_eq!(decode_request(&encode_request(&r)).unwrap(), r);
        assert!(decode_request(&[1, 2, 3]).is_err());
    }

    #[test]
    fn span_time_key_points_at_the_span_key() {
        let s = Span {
            trace_id: "abc".into(),
            span_id: "s1".into(),
            start_unix_nano: 77,
            ..Span::default()
        };
        let (start, tid, sk) = parse_span_time_key(&span_time_key(&s)).unwrap();
        assert_eq!((start, tid.as_str(), sk), (77, "abc", span_key(&s)));
    }
}
