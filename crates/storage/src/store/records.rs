//! Value encodings owned by the engine: WAL batches, quality/feedback rows,
//! spans and their keys, request-index entries, segment summaries.
//!
//! **Invariant:** every value is framed (version + CRC-32, `frame.rs`);
//! decoders check the frame first and never panic on bad bytes.

use serde::{Deserialize, Serialize};
use sextant_model::{Batch, Feedback, LlmCall, Quality, Span};

use crate::api::{GroupKey, RequestRef};
use crate::codec::{put_bytes, Reader};
use crate::db::{get_str, put_str, ts_from_key, ts_key, u64_from};
use crate::error::CodecError;
use crate::frame::{frame, frame_in_place, unframe, FRAME_HEADER};

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

/// Version byte of WAL batches written now (see docs/format.md, "wal").
/// Version 1 (bincode of the whole batch) is still read.
pub(crate) const WAL_VERSION: u8 = 2;

/// Encodes a batch as a version-2 WAL value: the calls section (see
/// [`wal2`]), then a varint length and the other event kinds as a
/// version-1 payload without calls (empty when there are none).
pub(crate) fn encode_wal(batch: &Batch) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER + 256 + batch.calls.len() * 64);
    out.resize(FRAME_HEADER, 0);
    wal2::put_calls(&mut out, &batch.calls);
    let rest = if batch.quality.is_empty() && batch.feedback.is_empty() && batch.spans.is_empty() {
        Vec::new()
    } else {
        wal_v1_payload(&[], batch)
    };
    put_bytes(&mut out, &rest);
    frame_in_place(WAL_VERSION, &mut out);
    out
}

/// The version-1 payload: bincode of [`WalRef`] (`calls` and the rest of `batch`).
fn wal_v1_payload(calls: &[LlmCall], batch: &Batch) -> Vec<u8> {
    let spans_json = if batch.spans.is_empty() {
        Vec::new()
    } else {
        serde_json::to_vec(&batch.spans).unwrap_or_default()
    };
    let r = WalRef {
        calls,
        quality: &batch.quality,
        feedback: &batch.feedback,
        spans_json,
    };
    bincode::serde::encode_to_vec(&r, bincode_config()).unwrap_or_default()
}

/// A version-1 WAL value (what this engine wrote before version 2).
#[cfg(test)]
pub(crate) fn encode_wal_v1(batch: &Batch) -> Vec<u8> {
    frame(RECORD_VERSION, &wal_v1_payload(&batch.calls, batch))
}

fn decode_wal_v1_payload(payload: &[u8]) -> Result<Batch, CodecError> {
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

pub(crate) fn decode_wal(bytes: &[u8]) -> Result<Batch, CodecError> {
    match bytes.first() {
        Some(&RECORD_VERSION) => {
            decode_wal_v1_payload(unframe("wal batch", RECORD_VERSION, bytes)?)
        }
        _ => {
            let payload = unframe("wal batch", WAL_VERSION, bytes)?;
            let mut r = Reader::new("wal batch", payload);
            let calls = wal2::read_calls(&mut r)?;
            let rest = r.bytes()?;
            r.finish()?;
            let mut batch = if rest.is_empty() {
                Batch::default()
            } else {
                decode_wal_v1_payload(rest)?
            };
            if !batch.calls.is_empty() {
                return Err(CodecError::new("wal batch", "calls in the v1 section"));
            }
            batch.calls = calls;
            Ok(batch)
        }
    }
}

/// The calls section of a version-2 WAL value.
///
/// `varint n_strings, (varint len, UTF-8)*` — the batch's string table —
/// then `varint n_calls` and per call: `varint flags`; the request id (16
/// bytes when it is a lowercase canonical UUID, flag `UUID`, else varint
/// length + UTF-8); `ivarint` timestamp delta from the previous call (the
/// first from 0); model, provider, endpoint, finish_reason as string
/// indexes; latency as f64 LE bits; ttft and cost as f64 LE bits when
/// flagged; prompt, completion, total, cached-input, reasoning tokens as
/// varints; error, user, session, trace and span ids as string indexes when
/// flagged; when `TAGS` is flagged, `varint n` and `n` (key, value) string
/// index pairs.
mod wal2 {
    use std::collections::{BTreeMap, HashMap};

    use sextant_model::LlmCall;

    use crate::codec::{put_ivarint, put_varint, Reader};
    use crate::error::CodecError;
    use crate::store::head::FxBuild;

    const TTFT: u64 = 1;
    const COST: u64 = 1 << 1;
    const ERROR: u64 = 1 << 2;
    const USER: u64 = 1 << 3;
    const SESSION: u64 = 1 << 4;
    const TRACE: u64 = 1 << 5;
    const SPAN: u64 = 1 << 6;
    const TAGS: u64 = 1 << 7;
    const UUID: u64 = 1 << 8;
    const ALL: u64 = (1 << 9) - 1;

    /// Fewest bytes one encoded call takes (flags, id length, ts, 4
    /// indexes, latency, 5 token counts).
    const MIN_CALL_BYTES: usize = 1 + 1 + 1 + 4 + 8 + 5;

    #[derive(Default)]
    struct Table<'a> {
        ids: HashMap<&'a str, u32, FxBuild>,
        strings: Vec<&'a str>,
    }

    impl<'a> Table<'a> {
        fn index(&mut self, s: &'a str) -> u64 {
            let next = self.strings.len() as u32;
            let i = *self.ids.entry(s).or_insert(next);
            if i == next {
                self.strings.push(s);
            }
            u64::from(i)
        }
    }

    /// Lowercase hex digit → value; anything else → 0xff.
    const HEX_VAL: [u8; 256] = {
        let mut t = [0xffu8; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    };

    /// Offsets of the 16 hex digit pairs in a canonical UUID.
    const UUID_PAIRS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

    /// The 16 bytes of a lowercase canonical UUID (8-4-4-4-12), which
    /// [`format_uuid`] turns back into exactly `s`. Branch-free over the
    /// digits (ids are random: a per-digit branch mispredicts).
    fn parse_uuid(s: &str) -> Option<[u8; 16]> {
        let b: &[u8; 36] = s.as_bytes().try_into().ok()?;
        if b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
            return None;
        }
        let mut out = [0u8; 16];
        let mut bad = 0u8;
        for (o, &at) in out.iter_mut().zip(&UUID_PAIRS) {
            let (h, l) = (HEX_VAL[usize::from(b[at])], HEX_VAL[usize::from(b[at + 1])]);
            bad |= h | l;
            *o = (h << 4) | (l & 15);
        }
        (bad & 0xf0 == 0).then_some(out)
    }

    fn format_uuid(raw: &[u8]) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut b = *b"00000000-0000-0000-0000-000000000000";
        for (&x, &at) in raw.iter().zip(&UUID_PAIRS) {
            b[at] = HEX[usize::from(x >> 4)];
            b[at + 1] = HEX[usize::from(x & 15)];
        }
        // Only ASCII hex digits and dashes: always valid UTF-8.
        String::from_utf8(b.to_vec()).unwrap_or_default()
    }

    pub(super) fn put_calls(out: &mut Vec<u8>, calls: &[LlmCall]) {
        let mut table = Table::default();
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let body = &mut *out;
        put_varint(body, calls.len() as u64);
        let mut prev_ts = 0i64;
        for c in calls {
            let uuid = parse_uuid(&c.request_id);
            let flags = [
                (c.time_to_first_token_ms.is_some(), TTFT),
                (c.cost_usd.is_some(), COST),
                (c.error.is_some(), ERROR),
                (c.user_id.is_some(), USER),
                (c.session_id.is_some(), SESSION),
                (c.trace_id.is_some(), TRACE),
                (c.span_id.is_some(), SPAN),
                (!c.tags.is_empty(), TAGS),
                (uuid.is_some(), UUID),
            ]
            .iter()
            .fold(0, |f, &(on, bit)| if on { f | bit } else { f });
            put_varint(body, flags);
            match uuid {
                Some(raw) => body.extend_from_slice(&raw),
                None => {
                    put_varint(body, c.request_id.len() as u64);
                    body.extend_from_slice(c.request_id.as_bytes());
                }
            }
            put_ivarint(body, c.timestamp_ms.wrapping_sub(prev_ts));
            prev_ts = c.timestamp_ms;
            for s in [&c.model, &c.provider, &c.endpoint, &c.finish_reason] {
                put_varint(body, table.index(s));
            }
            body.extend_from_slice(&c.latency_ms.to_bits().to_le_bytes());
            for v in [c.time_to_first_token_ms, c.cost_usd].into_iter().flatten() {
                body.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            for v in [
                c.prompt_tokens,
                c.completion_tokens,
                c.total_tokens,
                c.cached_input_tokens,
                c.reasoning_tokens,
            ] {
                put_varint(body, v);
            }
            for s in [&c.error, &c.user_id, &c.session_id, &c.trace_id, &c.span_id]
                .into_iter()
                .flatten()
            {
                put_varint(body, table.index(s));
            }
            if !c.tags.is_empty() {
                put_varint(body, c.tags.len() as u64);
                for (k, v) in &c.tags {
                    put_varint(body, table.index(k));
                    put_varint(body, table.index(v));
                }
            }
        }
        // Lengths over 4 GiB cannot be written; such a batch could not be
        // stored in one sled value anyway.
        let body_len = (out.len() - len_at - 4) as u32;
        out[len_at..len_at + 4].copy_from_slice(&body_len.to_le_bytes());
        put_varint(out, table.strings.len() as u64);
        for s in &table.strings {
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
    }

    fn f64_le(r: &mut Reader<'_>) -> Result<f64, CodecError> {
        Ok(f64::from_bits(r.u64_le()?))
    }

    pub(super) fn read_calls(outer: &mut Reader<'_>) -> Result<Vec<LlmCall>, CodecError> {
        let len = outer.take(4)?;
        let body_len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let mut body = Reader::new("wal batch calls", outer.take(body_len)?);
        let r = outer;
        let n_strings = r.count(r.remaining(), "string table")?;
        let mut strings: Vec<&str> = Vec::with_capacity(n_strings);
        for _ in 0..n_strings {
            let b = r.bytes()?;
            strings.push(std::str::from_utf8(b).map_err(|e| r.err(e.to_string()))?);
        }
        let string = |r: &mut Reader<'_>| -> Result<String, CodecError> {
            let i = r.varint()?;
            match usize::try_from(i).ok().and_then(|i| strings.get(i)) {
                Some(s) => Ok((*s).to_owned()),
                None => Err(r.err(format!("string index {i} of {}", strings.len()))),
            }
        };
        let r = &mut body;
        let n = r.count(r.remaining() / MIN_CALL_BYTES, "call")?;
        let mut calls = Vec::with_capacity(n);
        let mut prev_ts = 0i64;
        for _ in 0..n {
            let flags = r.varint()?;
            if flags & !ALL != 0 {
                return Err(r.err(format!("unknown call flags {flags:#x}")));
            }
            let request_id = if flags & UUID != 0 {
                format_uuid(r.take(16)?)
            } else {
                let b = r.bytes()?;
                std::str::from_utf8(b)
                    .map_err(|e| r.err(e.to_string()))?
                    .to_owned()
            };
            let timestamp_ms = prev_ts.wrapping_add(r.ivarint()?);
            prev_ts = timestamp_ms;
            let model = string(r)?;
            let provider = string(r)?;
            let endpoint = string(r)?;
            let finish_reason = string(r)?;
            let latency_ms = f64_le(r)?;
            let time_to_first_token_ms = if flags & TTFT != 0 {
                Some(f64_le(r)?)
            } else {
                None
            };
            let cost_usd = if flags & COST != 0 {
                Some(f64_le(r)?)
            } else {
                None
            };
            let prompt_tokens = r.varint()?;
            let completion_tokens = r.varint()?;
            let total_tokens = r.varint()?;
            let cached_input_tokens = r.varint()?;
            let reasoning_tokens = r.varint()?;
            let opt = |bit: u64, r: &mut Reader<'_>| -> Result<Option<String>, CodecError> {
                if flags & bit != 0 {
                    string(r).map(Some)
                } else {
                    Ok(None)
                }
            };
            let error = opt(ERROR, r)?;
            let user_id = opt(USER, r)?;
            let session_id = opt(SESSION, r)?;
            let trace_id = opt(TRACE, r)?;
            let span_id = opt(SPAN, r)?;
            let mut tags = BTreeMap::new();
            if flags & TAGS != 0 {
                let nt = r.count(r.remaining() / 2, "tag")?;
                for _ in 0..nt {
                    let k = string(r)?;
                    let v = string(r)?;
                    tags.insert(k, v);
                }
            }
            calls.push(LlmCall {
                request_id,
                timestamp_ms,
                model,
                provider,
                endpoint,
                latency_ms,
                time_to_first_token_ms,
                prompt_tokens,
                completion_tokens,
                total_tokens,
                cached_input_tokens,
                reasoning_tokens,
                cost_usd,
                finish_reason,
                error,
                user_id,
                session_id,
                trace_id,
                span_id,
                tags,
            });
        }
        r.finish()?;
        Ok(calls)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn uuid_form_round_trips_only_when_canonical_lowercase() {
            let u = "0123abcd-4567-89ab-cdef-0123456789ab";
            assert_eq!(parse_uuid(u).map(|r| format_uuid(&r)).as_deref(), Some(u));
            for s in [
                "0123ABCD-4567-89ab-cdef-0123456789ab",
                "0123abcd-4567-89ab-cdef-0123456789a",
                "0123abcd-4567-89ab-cdef-0123456789abc",
                "0123abcd_4567-89ab-cdef-0123456789ab",
                "0123abcd-4567-89ab-cdef-0123456789ag",
                "0123abcd4-567-89ab-cdef-0123456789ab",
                "",
            ] {
                assert_eq!(parse_uuid(s), None, "{s}");
            }
        }
    }
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

    fn full_batch() -> Batch {
        let mut batch = Batch::default();
        batch.calls.push(LlmCall {
            request_id: "0123abcd-4567-89ab-cdef-0123456789ab".into(),
            timestamp_ms: 1_700_000_000_000,
            model: "gpt-4o".into(),
            provider: "openai".into(),
            endpoint: "chat".into(),
            latency_ms: 812.125,
            time_to_first_token_ms: Some(90.5),
            prompt_tokens: 1200,
            completion_tokens: 300,
            total_tokens: 1500,
            cached_input_tokens: 600,
            reasoning_tokens: 7,
            cost_usd: Some(0.012_345),
            finish_reason: "stop".into(),
            error: Some("rate_limit".into()),
            user_id: Some("user-1".into()),
            session_id: Some("s-1".into()),
            trace_id: Some("t-1".into()),
            span_id: Some("sp-1".into()),
            tags: [
                ("team".to_string(), "search".to_string()),
                ("k".into(), "".into()),
            ]
            .into(),
        });
        // Not canonical UUIDs (upper case, plain string), an earlier
        // timestamp (negative delta) and no optional fields.
        for (id, ts) in [("0123ABCD-4567-89AB-CDEF-0123456789AB", -5), ("req-7", 3)] {
            batch.calls.push(LlmCall {
                request_id: id.into(),
                timestamp_ms: ts,
                model: "gpt-4o".into(),
                latency_ms: 0.0,
                ..LlmCall::default()
            });
        }
        batch.quality.push(Quality {
            request_id: "req-7".into(),
            factual_accuracy: Some(0.5),
            ..Quality::default()
        });
        batch.feedback.push(Feedback {
            request_id: "req-7".into(),
            rating: -1,
            comment: Some("meh".into()),
            ..Feedback::default()
        });
        batch
    }

    #[test]
    fn wal_v2_round_trips_every_call_field() {
        let batch = full_batch();
        let bytes = encode_wal(&batch);
        assert_eq!(bytes[0], WAL_VERSION);
        assert_eq!(decode_wal(&bytes).unwrap(), batch);
        let calls_only = Batch::from_calls(batch.calls.clone());
        assert_eq!(decode_wal(&encode_wal(&calls_only)).unwrap(), calls_only);
        assert_eq!(
            decode_wal(&encode_wal(&Batch::default())).unwrap(),
            Batch::default()
        );
    }

    #[test]
    fn wal_v1_values_still_decode() {
        let batch = full_batch();
        let v1 = encode_wal_v1(&batch);
        assert_eq!(v1[0], RECORD_VERSION);
        assert_eq!(decode_wal(&v1).unwrap(), batch);
    }

    #[test]
    fn wal_v2_decoder_rejects_unknown_versions_and_truncation() {
        let bytes = encode_wal(&full_batch());
        let mut other = bytes.clone();
        other[0] = 3;
        assert!(decode_wal(&other).is_err());
        // Re-framed (valid checksum) prefixes of the payload: every cut is an error.
        for cut in 0..bytes.len() - FRAME_HEADER {
            let v = frame(WAL_VERSION, &bytes[FRAME_HEADER..FRAME_HEADER + cut]);
            assert!(decode_wal(&v).is_err(), "cut at {cut}");
        }
    }

    proptest::proptest! {
        #[test]
        fn wal_v2_decoder_never_panics_on_checksummed_garbage(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            flip in 0usize..4096,
            mask in 1u8..=255,
        ) {
            let _ = decode_wal(&frame(WAL_VERSION, &payload));
            // And single-byte changes of a real payload, checksum fixed up.
            let good = encode_wal(&full_batch());
            let mut p = good[FRAME_HEADER..].to_vec();
            let i = flip % p.len();
            p[i] ^= mask;
            let _ = decode_wal(&frame(WAL_VERSION, &p));
        }
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
