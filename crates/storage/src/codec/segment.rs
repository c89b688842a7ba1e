//! The columnar segment: an immutable, time-sorted block of `LlmCall`s.
//!
//! Layout (inside [`frame::frame`] with version [`SEGMENT_VERSION`]; see
//! `docs/format/segment.md`): `[rows: varint][min_ts_ms: zigzag varint]
//! [max_ts_ms: zigzag varint][column count: varint]`, then per column
//! `[column id u8][body length: varint]`, then the bodies in that order.
//!
//! **Invariants:** rows are sorted by timestamp (stable, so equal timestamps
//! keep their input order); `min_ts_ms`/`max_ts_ms` are the first and last
//! timestamps; every string column refers to ids of the [`Dict`] the segment
//! was encoded with, whose new entries the engine persists in the same
//! transaction; `rows` ≤ payload length (each row's request id takes ≥ 1 byte),
//! so no decoder allocates more than a small multiple of the input size.

use std::collections::{HashMap, HashSet};

use roaring::RoaringBitmap;
use sextant_model::{Dim, LlmCall, TimeRange};

use super::bitmap::Partition;
use super::bytes::{put_ivarint, put_varint, Reader};
use super::dict::Dict;
use super::floats::{put_floats, read_floats};
use super::ids::{read_ids, IdColumn};
use super::ints::{put_ints, put_u64s, read_ints, read_u64s};
use crate::api::RowFilter;
use crate::error::CodecError;
use crate::frame;

/// Version byte of the segment frame.
pub(crate) const SEGMENT_VERSION: u8 = 1;

const WHAT: &str = "segment";

/// Column ids, in the order they are written.
const COLUMNS: [(u8, &str); 20] = [
    (1, "timestamp_ms"),
    (2, "request_id"),
    (3, "model"),
    (4, "provider"),
    (5, "endpoint"),
    (6, "finish_reason"),
    (7, "latency_ms"),
    (8, "time_to_first_token_ms"),
    (9, "prompt_tokens"),
    (10, "completion_tokens"),
    (11, "total_tokens"),
    (12, "cached_input_tokens"),
    (13, "reasoning_tokens"),
    (14, "cost_usd"),
    (15, "error"),
    (16, "user_id"),
    (17, "session_id"),
    (18, "trace_id"),
    (19, "span_id"),
    (20, "tags"),
];

fn col_name(id: u8) -> &'static str {
    COLUMNS
        .iter()
        .find(|c| c.0 == id)
        .map(|c| c.1)
        .unwrap_or("unknown")
}

/// What a segment holds, readable without decoding its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) rows: u32,
    /// Earliest timestamp, Unix ms (0 for an empty segment).
    pub(crate) min_ts_ms: i64,
    /// Latest timestamp, Unix ms, inclusive (0 for an empty segment).
    pub(crate) max_ts_ms: i64,
    /// Size of the framed segment, bytes.
    pub(crate) bytes: usize,
}

// ---------------------------------------------------------------- columns

/// Most distinct values a [`Classes`] finds by linear scan before it
/// switches to a hash map.
const SMALL_CLASSES: usize = 16;

/// The distinct strings of one column in order of first appearance (its
/// classes) and each row's class. A handful of values is found by a linear
/// scan of the few candidates, more through a hash map keyed by the borrowed
/// string; nothing is copied. The dictionary sees each distinct string once
/// per segment ([`Classes::dict_ids`], in class order — the order interning
/// row by row would hand out ids in).
struct Classes<'a> {
    strs: Vec<&'a str>,
    map: Option<HashMap<&'a str, u32>>,
}

impl<'a> Classes<'a> {
    fn new() -> Classes<'a> {
        Classes {
            strs: Vec::new(),
            map: None,
        }
    }

    /// The class of `s`, creating it if new.
    fn class(&mut self, s: &'a str) -> u32 {
        let next = self.strs.len() as u32;
        if let Some(map) = &mut self.map {
            let c = *map.entry(s).or_insert(next);
            if c == next {
                self.strs.push(s);
            }
            return c;
        }
        if let Some(c) = self.strs.iter().position(|&x| x == s) {
            return c as u32;
        }
        self.strs.push(s);
        if self.strs.len() > SMALL_CLASSES {
            let mut map = HashMap::with_capacity(self.strs.len() * 2);
            for (i, &x) in self.strs.iter().enumerate() {
                map.insert(x, i as u32);
            }
            self.map = Some(map);
        }
        next
    }

    fn len(&self) -> usize {
        self.strs.len()
    }

    /// The dictionary id of every class, interned in class order.
    fn dict_ids(&self, dict: &mut Dict) -> Vec<u32> {
        self.strs.iter().map(|s| dict.intern(s)).collect()
    }
}

/// Dictionary ids of an optional column from its classes.
fn opt_dict_ids(values: &[u32], classes: &[Option<u32>]) -> Vec<Option<u32>> {
    classes
        .iter()
        .map(|c| c.map(|c| values[c as usize]))
        .collect()
}

/// A low-cardinality string column whose per-value row sets *are* the
/// column (the per-dimension index costs nothing extra). `[mode u8]`, then
/// mode 0: `[k: varint][k dict ids: varint][partition of k classes]`;
/// mode 1 (the value is a function of the model column, e.g. provider):
/// `[k: varint = the model column's k][k dict ids: varint]`, the value of
/// each model class — the model's row sets are reused.
///
/// `values` are the dict ids of the column's classes (distinct, in order of
/// first appearance), `classes` each row's class; `parent` the model
/// column's row classes and class count.
fn put_dim(out: &mut Vec<u8>, values: &[u32], classes: &[u32], parent: Option<(&[u32], usize)>) {
    if let Some((pclasses, pk)) = parent {
        let mut map: Vec<Option<u32>> = vec![None; pk];
        let functional = pclasses.iter().zip(classes).all(|(&p, &c)| {
            let slot = &mut map[p as usize];
            *slot.get_or_insert(c) == c
        });
        if functional {
            out.push(1);
            put_varint(out, map.len() as u64);
            for v in map {
                put_varint(out, u64::from(v.map_or(0, |c| values[c as usize])));
            }
            return;
        }
    }
    out.push(0);
    put_varint(out, values.len() as u64);
    for &v in values {
        put_varint(out, u64::from(v));
    }
    Partition::build(classes, values.len()).put(out);
}

struct DimCol {
    /// The dict id of each class of `part`.
    values: Vec<u32>,
    part: Partition,
}

fn read_dim(r: &mut Reader<'_>, n: usize, parent: Option<&DimCol>) -> Result<DimCol, CodecError> {
    let mode = r.u8()?;
    let k = r.count(r.remaining(), "dimension value")?;
    let mut values = Vec::with_capacity(k);
    for _ in 0..k {
        values.push(dict_id(r)?);
    }
    let part = match (mode, parent) {
        (0, _) => Partition::read(r, n)?,
        (1, Some(p)) => p.part.clone(),
        _ => return Err(r.err(format!("unknown dimension column mode {mode}"))),
    };
    if part.classes() != k {
        return Err(r.err("dimension value count disagrees with its row sets"));
    }
    Ok(DimCol { values, part })
}

impl DimCol {
    fn ids(&self) -> Vec<u32> {
        self.part
            .class_of()
            .into_iter()
            .map(|c| self.values[c as usize])
            .collect()
    }

    /// Rows whose value is one of `wanted`.
    fn rows_matching(&self, dict: &Dict, wanted: &[String]) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for (c, &id) in self.values.iter().enumerate() {
            if dict.get(id).is_some_and(|s| wanted.iter().any(|w| w == s)) {
                out |= self.part.rows(c);
            }
        }
        out
    }
}

fn dict_id(r: &mut Reader<'_>) -> Result<u32, CodecError> {
    u32::try_from(r.varint()?).map_err(|_| r.err("dictionary id exceeds u32"))
}

/// `[partition: 0 absent, 1 present][integer column of the present values]`.
fn put_opt_ids(out: &mut Vec<u8>, ids: &[Option<u32>]) {
    let classes: Vec<u32> = ids.iter().map(|x| u32::from(x.is_some())).collect();
    Partition::build(&classes, if ids.is_empty() { 0 } else { 2 }).put(out);
    let present: Vec<i64> = ids.iter().flatten().map(|&x| i64::from(x)).collect();
    put_ints(out, &present);
}

fn read_opt_ids(r: &mut Reader<'_>, n: usize) -> Result<Vec<Option<u32>>, CodecError> {
    let part = read_classes(r, n, 2)?;
    let classes = part.class_of();
    let present = classes.iter().filter(|&&c| c == 1).count();
    let mut vals = read_ints(r, present)?.into_iter();
    classes
        .into_iter()
        .map(|c| {
            if c == 0 {
                return Ok(None);
            }
            let v = vals.next().unwrap_or(0);
            u32::try_from(v)
                .map(Some)
                .map_err(|_| r.err("dictionary id exceeds u32"))
        })
        .collect()
}

fn read_classes(r: &mut Reader<'_>, n: usize, k: usize) -> Result<Partition, CodecError> {
    let p = Partition::read(r, n)?;
    if n > 0 && p.classes() != k {
        return Err(r.err(format!("{} classes (expected {k})", p.classes())));
    }
    Ok(p)
}

fn put_opt_floats(out: &mut Vec<u8>, v: &[Option<f64>]) {
    let classes: Vec<u32> = v.iter().map(|x| u32::from(x.is_some())).collect();
    Partition::build(&classes, if v.is_empty() { 0 } else { 2 }).put(out);
    let present: Vec<f64> = v.iter().flatten().copied().collect();
    put_floats(out, &present);
}

fn read_opt_floats(r: &mut Reader<'_>, n: usize) -> Result<Vec<Option<f64>>, CodecError> {
    let classes = read_classes(r, n, 2)?.class_of();
    let present = classes.iter().filter(|&&c| c == 1).count();
    let mut vals = read_floats(r, present)?.into_iter();
    Ok(classes
        .into_iter()
        .map(|c| if c == 0 { None } else { vals.next() })
        .collect())
}

// ------------------------------------------------------------------ cost

/// Per-model prices (USD per million tokens): input, cached input, output,
/// reasoning.
type Coeffs = [f64; 4];

/// The cost formula of `sextant_model::Price::cost`, term for term, so a
/// cost computed from a price table is reproduced bit-exactly from its
/// tokens. A mismatch only costs space: such rows are stored explicitly.
fn predict(k: &Coeffs, prompt: u64, completion: u64, cached: u64, reasoning: u64) -> f64 {
    let cached = cached.min(prompt);
    let fresh = prompt - cached;
    let reasoning = reasoning.min(completion);
    let plain = completion - reasoning;
    let per = |tokens: u64, price: f64| tokens as f64 * price / 1_000_000.0;
    per(fresh, k[0]) + per(cached, k[1]) + per(plain, k[2]) + per(reasoning, k[3])
}

fn nice(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

struct TokRow {
    p: u64,
    c: u64,
    cached: u64,
    reasoning: u64,
    cost: f64,
}

/// Guesses a model's prices from its rows; the caller verifies them.
fn fit(rows: &[TokRow]) -> Option<Coeffs> {
    let plain: Vec<&TokRow> = rows
        .iter()
        .filter(|r| r.cached == 0 && r.reasoning == 0 && r.cost.is_finite())
        .take(64)
        .collect();
    // The rows that pin the cached-input and reasoning prices do not depend
    // on the pair below: find them once.
    let cached_row = rows.iter().find(|r| r.cached > 0 && r.reasoning == 0);
    let reasoning_row = rows.iter().find(|r| r.reasoning > 0);
    let mut best: Option<(usize, Coeffs)> = None;
    for (i, r1) in plain.iter().enumerate().take(8) {
        for r2 in plain.iter().skip(i + 1).take(8) {
            let (p1, c1, p2, c2) = (r1.p as f64, r1.c as f64, r2.p as f64, r2.c as f64);
            let det = p1 * c2 - p2 * c1;
            if det.abs() < 1e-9 {
                continue;
            }
            let a = nice((r1.cost * c2 - r2.cost * c1) / det * 1e6);
            let b = nice((p1 * r2.cost - p2 * r1.cost) / det * 1e6);
            let mut k = [a, a, b, b];
            if let Some(r) = cached_row {
                let rest = predict(&[a, 0.0, b, b], r.p, r.c, r.cached, 0);
                k[1] = nice((r.cost - rest) * 1e6 / r.cached.min(r.p) as f64);
            }
            if let Some(r) = reasoning_row {
                let rest = predict(&[a, k[1], b, 0.0], r.p, r.c, r.cached, r.reasoning);
                k[3] = nice((r.cost - rest) * 1e6 / r.reasoning.min(r.c) as f64);
            }
            let hits = rows
                .iter()
                .take(256)
                .filter(|r| {
                    predict(&k, r.p, r.c, r.cached, r.reasoning).to_bits() == r.cost.to_bits()
                })
                .count();
            if best.is_none_or(|b| hits > b.0) {
                best = Some((hits, k));
            }
        }
    }
    best.filter(|b| b.0 > 0).map(|b| b.1)
}

/// Token columns of a segment, in row order.
struct Tokens<'a> {
    prompt: &'a [u64],
    completion: &'a [u64],
    cached: &'a [u64],
    reasoning: &'a [u64],
}

/// `[m: varint][m × (model dict id: varint, 4 × f64 LE)][partition: 0 none,
/// 1 predicted from the model's prices, 2 explicit][float column of the
/// explicit costs]`. `model_classes` is each row's model class,
/// `model_values` the dict id of each class.
fn put_cost(
    out: &mut Vec<u8>,
    costs: &[Option<f64>],
    t: &Tokens<'_>,
    model_classes: &[u32],
    model_values: &[u32],
) {
    let mut by_model: Vec<Vec<TokRow>> = (0..model_values.len()).map(|_| Vec::new()).collect();
    for (i, (&cost, &m)) in costs.iter().zip(model_classes).enumerate() {
        if let Some(cost) = cost {
            by_model[m as usize].push(TokRow {
                p: t.prompt[i],
                c: t.completion[i],
                cached: t.cached[i],
                reasoning: t.reasoning[i],
                cost,
            });
        }
    }
    let coeffs: Vec<Option<Coeffs>> = by_model
        .iter()
        .map(|rows| if rows.len() >= 4 { fit(rows) } else { None })
        .collect();
    drop(by_model);
    let mut models: Vec<(u32, Coeffs)> = coeffs
        .iter()
        .zip(model_values)
        .filter_map(|(k, &m)| k.map(|k| (m, k)))
        .collect();
    models.sort_by_key(|m| m.0);
    let mut classes = Vec::with_capacity(costs.len());
    let mut explicit = Vec::new();
    for (i, (&cost, &m)) in costs.iter().zip(model_classes).enumerate() {
        classes.push(match cost {
            None => 0,
            Some(v) => {
                let predicted = coeffs[m as usize].map(|k| {
                    predict(
                        &k,
                        t.prompt[i],
                        t.completion[i],
                        t.cached[i],
                        t.reasoning[i],
                    )
                });
                if predicted.is_some_and(|p| p.to_bits() == v.to_bits()) {
                    1
                } else {
                    explicit.push(v);
                    2
                }
            }
        });
    }
    put_varint(out, models.len() as u64);
    for (m, k) in &models {
        put_varint(out, u64::from(*m));
        for x in k {
            out.extend_from_slice(&x.to_bits().to_le_bytes());
        }
    }
    Partition::build(&classes, if costs.is_empty() { 0 } else { 3 }).put(out);
    put_floats(out, &explicit);
}

fn read_cost(
    r: &mut Reader<'_>,
    n: usize,
    calls: &[LlmCall],
    model_ids: &[u32],
) -> Result<Vec<Option<f64>>, CodecError> {
    let m = r.count(r.remaining() / 33, "priced model")?;
    let mut coeffs: HashMap<u32, Coeffs> = HashMap::with_capacity(m);
    for _ in 0..m {
        let id = dict_id(r)?;
        let mut k = [0.0; 4];
        for x in k.iter_mut() {
            *x = f64::from_bits(r.u64_le()?);
        }
        coeffs.insert(id, k);
    }
    let classes = read_classes(r, n, 3)?.class_of();
    let explicit = classes.iter().filter(|&&c| c == 2).count();
    let mut vals = read_floats(r, explicit)?.into_iter();
    classes
        .iter()
        .enumerate()
        .map(|(i, &c)| match c {
            0 => Ok(None),
            1 => {
                let k = coeffs
                    .get(&model_ids[i])
                    .ok_or_else(|| r.err("predicted cost for a model without prices"))?;
                let t = &calls[i];
                Ok(Some(predict(
                    k,
                    t.prompt_tokens,
                    t.completion_tokens,
                    t.cached_input_tokens,
                    t.reasoning_tokens,
                )))
            }
            _ => Ok(vals.next()),
        })
        .collect()
}

// --------------------------------------------------------------- encode

/// The columns of a segment, split from the rows in one pass (each row is
/// visited once: rows are large and their strings scattered, so a pass per
/// column would fetch every row from memory twenty times).
struct Split<'a> {
    ts: Vec<i64>,
    request_id: IdColumn,
    /// model, provider, endpoint, finish_reason: classes and row classes.
    dims: [(Classes<'a>, Vec<u32>); 4],
    lat: Vec<f64>,
    ttft: Vec<Option<f64>>,
    prompt: Vec<u64>,
    completion: Vec<u64>,
    /// total − (prompt + completion), wrapping.
    total: Vec<u64>,
    cached: Vec<u64>,
    reasoning: Vec<u64>,
    cost: Vec<Option<f64>>,
    /// 0 absent, 1 `Some("")`, 2 a message (class of `msgs`).
    err_classes: Vec<u32>,
    msgs: Classes<'a>,
    msg_classes: Vec<u32>,
    user: (Classes<'a>, Vec<Option<u32>>),
    session: (Classes<'a>, Vec<Option<u32>>),
    trace: IdColumn,
    span: IdColumn,
    tag_keys: Classes<'a>,
    /// Per tag key (class of `tag_keys`): the values' classes and each row's.
    tags: Vec<(Classes<'a>, Vec<Option<u32>>)>,
}

impl<'a> Split<'a> {
    fn new(rows: impl ExactSizeIterator<Item = &'a LlmCall>) -> Split<'a> {
        let n = rows.len();
        let dim = || (Classes::new(), Vec::with_capacity(n));
        let mut s = Split {
            ts: Vec::with_capacity(n),
            request_id: IdColumn::with_capacity(n),
            dims: [dim(), dim(), dim(), dim()],
            lat: Vec::with_capacity(n),
            ttft: Vec::with_capacity(n),
            prompt: Vec::with_capacity(n),
            completion: Vec::with_capacity(n),
            total: Vec::with_capacity(n),
            cached: Vec::with_capacity(n),
            reasoning: Vec::with_capacity(n),
            cost: Vec::with_capacity(n),
            err_classes: Vec::with_capacity(n),
            msgs: Classes::new(),
            msg_classes: Vec::new(),
            user: dim_opt(n),
            session: dim_opt(n),
            trace: IdColumn::with_capacity(n),
            span: IdColumn::with_capacity(n),
            tag_keys: Classes::new(),
            tags: Vec::new(),
        };
        for (row, c) in rows.enumerate() {
            s.ts.push(c.timestamp_ms);
            s.request_id.push(Some(&c.request_id));
            for (d, v) in
                s.dims
                    .iter_mut()
                    .zip([&c.model, &c.provider, &c.endpoint, &c.finish_reason])
            {
                d.1.push(d.0.class(v));
            }
            s.lat.push(c.latency_ms);
            s.ttft.push(c.time_to_first_token_ms);
            s.prompt.push(c.prompt_tokens);
            s.completion.push(c.completion_tokens);
            s.total.push(
                c.total_tokens
                    .wrapping_sub(c.prompt_tokens.wrapping_add(c.completion_tokens)),
            );
            s.cached.push(c.cached_input_tokens);
            s.reasoning.push(c.reasoning_tokens);
            s.cost.push(c.cost_usd);
            s.err_classes.push(match c.error.as_deref() {
                None => 0,
                Some("") => 1,
                Some(e) => {
                    s.msg_classes.push(s.msgs.class(e));
                    2
                }
            });
            for (d, v) in [(&mut s.user, &c.user_id), (&mut s.session, &c.session_id)] {
                d.1.push(v.as_deref().map(|v| d.0.class(v)));
            }
            s.trace.push(c.trace_id.as_deref());
            s.span.push(c.span_id.as_deref());
            for (key, value) in &c.tags {
                let k = s.tag_keys.class(key) as usize;
                if k == s.tags.len() {
                    s.tags.push((Classes::new(), vec![None; n]));
                }
                let (values, col) = &mut s.tags[k];
                col[row] = Some(values.class(value));
            }
        }
        s
    }
}

fn dim_opt<'a>(n: usize) -> (Classes<'a>, Vec<Option<u32>>) {
    (Classes::new(), Vec::with_capacity(n))
}

/// Encodes `calls` (any order) as one framed segment, interning strings in `dict`.
#[cfg(test)]
pub(crate) fn encode_segment(calls: &[LlmCall], dict: &mut Dict) -> Vec<u8> {
    let rows: Vec<&LlmCall> = calls.iter().collect();
    encode_segment_refs(&rows, dict)
}

/// [`encode_segment`] of borrowed calls (any order), so a caller need not
/// clone calls to sort them.
pub(crate) fn encode_segment_refs(calls: &[&LlmCall], dict: &mut Dict) -> Vec<u8> {
    let s = if calls
        .windows(2)
        .all(|w| w[0].timestamp_ms <= w[1].timestamp_ms)
    {
        Split::new(calls.iter().copied())
    } else {
        let mut rows: Vec<&LlmCall> = calls.to_vec();
        rows.sort_by_key(|c| c.timestamp_ms);
        Split::new(rows.into_iter())
    };
    let n = s.ts.len();
    let mut cols: Vec<(u8, Vec<u8>)> = Vec::with_capacity(COLUMNS.len());
    let mut col = |id: u8, f: &mut dyn FnMut(&mut Vec<u8>)| {
        let mut b = Vec::new();
        f(&mut b);
        cols.push((id, b));
    };

    // Dictionary ids are handed out column by column in the order below,
    // each column's values in order of first appearance: exactly as
    // interning row by row would.
    let dim_ids: Vec<Vec<u32>> = s.dims.iter().map(|d| d.0.dict_ids(dict)).collect();
    let msg_ids = s.msgs.dict_ids(dict);
    let user = opt_dict_ids(&s.user.0.dict_ids(dict), &s.user.1);
    let session = opt_dict_ids(&s.session.0.dict_ids(dict), &s.session.1);
    let (model_values, model_classes) = (&dim_ids[0], &s.dims[0].1);

    col(1, &mut |b| put_ints(b, &s.ts));
    col(2, &mut |b| s.request_id.put(b));
    col(3, &mut |b| put_dim(b, model_values, model_classes, None));
    let parent = Some((model_classes.as_slice(), model_values.len()));
    for (i, id) in [(1, 4), (2, 5), (3, 6)] {
        col(id, &mut |b| put_dim(b, &dim_ids[i], &s.dims[i].1, parent));
    }
    col(7, &mut |b| put_floats(b, &s.lat));
    col(8, &mut |b| put_opt_floats(b, &s.ttft));
    col(9, &mut |b| put_u64s(b, &s.prompt));
    col(10, &mut |b| put_u64s(b, &s.completion));
    col(11, &mut |b| put_u64s(b, &s.total));
    col(12, &mut |b| put_u64s(b, &s.cached));
    col(13, &mut |b| put_u64s(b, &s.reasoning));
    let tokens = Tokens {
        prompt: &s.prompt,
        completion: &s.completion,
        cached: &s.cached,
        reasoning: &s.reasoning,
    };
    col(14, &mut |b| {
        put_cost(b, &s.cost, &tokens, model_classes, model_values)
    });
    // error: 0 absent, 1 Some(""), 2 Some(message) — class 2 is the error bitmap.
    let err_ids: Vec<i64> = s
        .msg_classes
        .iter()
        .map(|&c| i64::from(msg_ids[c as usize]))
        .collect();
    col(15, &mut |b| {
        Partition::build(&s.err_classes, if n == 0 { 0 } else { 3 }).put(b);
        put_ints(b, &err_ids);
    });
    col(16, &mut |b| put_opt_ids(b, &user));
    col(17, &mut |b| put_opt_ids(b, &session));
    col(18, &mut |b| s.trace.put(b));
    col(19, &mut |b| s.span.put(b));
    // tags: [keys: varint] then per key (sorted) [key dict id: varint][body
    // length: varint][optional-id column of the values].
    let mut order: Vec<usize> = (0..s.tag_keys.len()).collect();
    order.sort_unstable_by_key(|&k| s.tag_keys.strs[k]);
    let mut tag_bytes = Vec::new();
    put_varint(&mut tag_bytes, order.len() as u64);
    let mut body = Vec::new();
    for k in order {
        put_varint(&mut tag_bytes, u64::from(dict.intern(s.tag_keys.strs[k])));
        let (values, classes) = &s.tags[k];
        let vals = opt_dict_ids(&values.dict_ids(dict), classes);
        body.clear();
        put_opt_ids(&mut body, &vals);
        put_varint(&mut tag_bytes, body.len() as u64);
        tag_bytes.extend_from_slice(&body);
    }
    col(20, &mut |b| b.extend_from_slice(&tag_bytes));

    let mut payload = Vec::new();
    put_varint(&mut payload, n as u64);
    put_ivarint(&mut payload, s.ts.first().copied().unwrap_or(0));
    put_ivarint(&mut payload, s.ts.last().copied().unwrap_or(0));
    put_varint(&mut payload, cols.len() as u64);
    for (id, body) in &cols {
        payload.push(*id);
        put_varint(&mut payload, body.len() as u64);
    }
    for (_, body) in cols {
        payload.extend(body);
    }
    frame::frame(SEGMENT_VERSION, &payload)
}

// --------------------------------------------------------------- decode

struct Parsed<'a> {
    header: SegmentHeader,
    /// Column bodies by column id.
    cols: HashMap<u8, &'a [u8]>,
    /// (column id, body length) in stored order.
    sizes: Vec<(u8, usize)>,
    header_len: usize,
}

fn parse(bytes: &[u8]) -> Result<Parsed<'_>, CodecError> {
    let payload = frame::unframe(WHAT, SEGMENT_VERSION, bytes)?;
    let mut r = Reader::new(WHAT, payload);
    let rows = r.count(payload.len(), "row")?;
    let min_ts_ms = r.ivarint()?;
    let max_ts_ms = r.ivarint()?;
    let ncols = r.count(r.remaining() / 2, "column")?;
    let mut sizes = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        let id = r.u8()?;
        if col_name(id) == "unknown" {
            return Err(r.err(format!("unknown column id {id}")));
        }
        let len = r.count(r.remaining(), "column byte")?;
        sizes.push((id, len));
    }
    let header_len = payload.len() - r.remaining() + frame::FRAME_HEADER;
    let mut cols = HashMap::with_capacity(ncols);
    for &(id, len) in &sizes {
        if cols.insert(id, r.take(len)?).is_some() {
            return Err(r.err(format!("column {} appears twice", col_name(id))));
        }
    }
    r.finish()?;
    Ok(Parsed {
        header: SegmentHeader {
            rows: u32::try_from(rows).map_err(|_| CodecError::new(WHAT, "too many rows"))?,
            min_ts_ms,
            max_ts_ms,
            bytes: bytes.len(),
        },
        cols,
        sizes,
        header_len,
    })
}

impl Parsed<'_> {
    fn reader(&self, id: u8) -> Result<Reader<'_>, CodecError> {
        let name = col_name(id);
        self.cols
            .get(&id)
            .map(|b| Reader::new(name, b))
            .ok_or_else(|| CodecError::new(WHAT, format!("column {name} is missing")))
    }

    /// Runs `f` over a whole column and checks it consumed every byte.
    fn column<T>(
        &self,
        id: u8,
        f: impl FnOnce(&mut Reader<'_>) -> Result<T, CodecError>,
    ) -> Result<T, CodecError> {
        let mut r = self.reader(id)?;
        let v = f(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

/// The header of a framed segment (checks the frame, decodes no column).
pub(crate) fn read_header(bytes: &[u8]) -> Result<SegmentHeader, CodecError> {
    Ok(parse(bytes)?.header)
}

/// Bytes per column of a framed segment, in stored order; `"header"` covers
/// the frame, the header and the column directory.
pub(crate) fn column_sizes(bytes: &[u8]) -> Result<Vec<(String, usize)>, CodecError> {
    let p = parse(bytes)?;
    let mut out = vec![("header".to_string(), p.header_len)];
    out.extend(
        p.sizes
            .iter()
            .map(|&(id, len)| (col_name(id).to_string(), len)),
    );
    Ok(out)
}

fn string(dict: &Dict, id: u32, what: &str) -> Result<String, CodecError> {
    dict.get(id)
        .map(str::to_owned)
        .ok_or_else(|| CodecError::new(what, format!("dictionary id {id} is unknown")))
}

/// Decodes the rows of a framed segment that fall in `range` and match `filter`, in time order.
pub(crate) fn decode_segment(
    bytes: &[u8],
    dict: &Dict,
    range: TimeRange,
    filter: &RowFilter,
) -> Result<Vec<LlmCall>, CodecError> {
    let p = parse(bytes)?;
    let n = p.header.rows as usize;
    let ts = p.column(1, |r| read_ints(r, n))?;
    if ts.windows(2).any(|w| w[0] > w[1]) {
        return Err(CodecError::new("timestamp_ms", "timestamps are not sorted"));
    }
    if n > 0 && (ts[0] != p.header.min_ts_ms || ts[n - 1] != p.header.max_ts_ms) {
        return Err(CodecError::new(
            WHAT,
            "header time bounds disagree with the rows",
        ));
    }
    let lo = ts.partition_point(|&t| t < range.from_ms);
    let hi = ts.partition_point(|&t| t < range.to_ms).max(lo);
    let mut sel = RoaringBitmap::new();
    sel.insert_range(lo as u32..hi as u32);

    // Prune with the stored row sets before decoding anything else.
    let mut dims: HashMap<u8, DimCol> = HashMap::new();
    let model_dim = p.column(3, |r| read_dim(r, n, None))?;
    for id in 4..=6u8 {
        dims.insert(id, p.column(id, |r| read_dim(r, n, Some(&model_dim)))?);
    }
    dims.insert(3, model_dim);
    let err_part = p.reader(15).and_then(|mut r| read_classes(&mut r, n, 3))?;
    match filter.error {
        Some(true) => sel &= err_part.rows(2),
        Some(false) => sel -= err_part.rows(2),
        None => {}
    }
    for (dim, wanted) in &filter.equals {
        let id = match dim {
            Dim::Model => 3,
            Dim::Provider => 4,
            Dim::Endpoint => 5,
            Dim::FinishReason => 6,
            _ => continue,
        };
        if let Some(d) = dims.get(&id) {
            sel &= d.rows_matching(dict, wanted);
        }
    }
    if sel.is_empty() {
        return Ok(Vec::new());
    }

    // Decode the rest and materialise the selected rows.
    let rid = p.column(2, |r| read_ids(r, n))?;
    let ids_of = |id: u8| dims.get(&id).map(DimCol::ids).unwrap_or_default();
    let (model, provider, endpoint, finish) = (ids_of(3), ids_of(4), ids_of(5), ids_of(6));
    let lat = p.column(7, |r| read_floats(r, n))?;
    let ttft = p.column(8, |r| read_opt_floats(r, n))?;
    let prompt = p.column(9, |r| read_u64s(r, n))?;
    let completion = p.column(10, |r| read_u64s(r, n))?;
    let total = p.column(11, |r| read_u64s(r, n))?;
    let cached = p.column(12, |r| read_u64s(r, n))?;
    let reasoning = p.column(13, |r| read_u64s(r, n))?;
    let errors = p.column(15, |r| {
        let classes = read_classes(r, n, 3)?.class_of();
        let k = classes.iter().filter(|&&c| c == 2).count();
        let mut ids = read_ints(r, k)?.into_iter();
        classes
            .into_iter()
            .map(|c| match c {
                0 => Ok(None),
                1 => Ok(Some(String::new())),
                _ => {
                    let id = u32::try_from(ids.next().unwrap_or(-1))
                        .map_err(|_| r.err("bad error id"))?;
                    string(dict, id, "error").map(Some)
                }
            })
            .collect::<Result<Vec<_>, CodecError>>()
    })?;
    let users = p.column(16, |r| read_opt_ids(r, n))?;
    let sessions = p.column(17, |r| read_opt_ids(r, n))?;
    let traces = p.column(18, |r| read_ids(r, n))?;
    let spans = p.column(19, |r| read_ids(r, n))?;
    let tags = p.column(20, |r| {
        let k = r.count(r.remaining(), "tag key")?;
        let mut out = Vec::with_capacity(k);
        for _ in 0..k {
            let key = string(dict, dict_id(r)?, "tag key")?;
            let body = r.bytes()?;
            let mut br = Reader::new("tag values", body);
            let vals = read_opt_ids(&mut br, n)?;
            br.finish()?;
            out.push((key, vals));
        }
        Ok(out)
    })?;

    // Prune by the high-cardinality dims on dict ids before materialising.
    let opt_match = |sel: &RoaringBitmap, vals: &[Option<u32>], wanted: &[String]| {
        let ids: HashSet<u32> = wanted.iter().filter_map(|w| dict.lookup(w)).collect();
        let absent_matches = wanted.iter().any(String::is_empty);
        sel.iter()
            .filter(|&row| match vals[row as usize] {
                None => absent_matches,
                Some(id) => ids.contains(&id),
            })
            .collect::<RoaringBitmap>()
    };
    for (dim, wanted) in &filter.equals {
        let keep = match dim {
            Dim::UserId => opt_match(&sel, &users, wanted),
            Dim::SessionId => opt_match(&sel, &sessions, wanted),
            Dim::Tag(key) => match tags.iter().find(|t| &t.0 == key) {
                Some((_, vals)) => opt_match(&sel, vals, wanted),
                None if wanted.iter().any(String::is_empty) => sel.clone(),
                None => RoaringBitmap::new(),
            },
            _ => continue,
        };
        sel &= keep;
    }

    let mut calls = Vec::with_capacity(sel.len() as usize);
    let mut rows_sel = Vec::with_capacity(sel.len() as usize);
    for row in &sel {
        let i = row as usize;
        let opt = |v: Option<u32>, what: &str| v.map(|id| string(dict, id, what)).transpose();
        let mut call = LlmCall {
            request_id: rid[i]
                .clone()
                .ok_or_else(|| CodecError::new("request_id", "absent"))?,
            timestamp_ms: ts[i],
            model: string(dict, model[i], "model")?,
            provider: string(dict, provider[i], "provider")?,
            endpoint: string(dict, endpoint[i], "endpoint")?,
            latency_ms: lat[i],
            time_to_first_token_ms: ttft[i],
            prompt_tokens: prompt[i],
            completion_tokens: completion[i],
            total_tokens: total[i].wrapping_add(prompt[i].wrapping_add(completion[i])),
            cached_input_tokens: cached[i],
            reasoning_tokens: reasoning[i],
            cost_usd: None,
            finish_reason: string(dict, finish[i], "finish_reason")?,
            error: errors[i].clone(),
            user_id: opt(users[i], "user_id")?,
            session_id: opt(sessions[i], "session_id")?,
            trace_id: traces[i].clone(),
            span_id: spans[i].clone(),
            tags: Default::default(),
        };
        for (key, vals) in &tags {
            if let Some(v) = vals[i] {
                call.tags.insert(key.clone(), string(dict, v, "tag value")?);
            }
        }
        calls.push(call);
        rows_sel.push(i);
    }
    // Costs need the tokens and models: decode them against the full columns.
    let token_rows: Vec<LlmCall> = (0..n)
        .map(|i| LlmCall {
            prompt_tokens: prompt[i],
            completion_tokens: completion[i],
            cached_input_tokens: cached[i],
            reasoning_tokens: reasoning[i],
            ..LlmCall::default()
        })
        .collect();
    let costs = p.column(14, |r| read_cost(r, n, &token_rows, &model))?;
    for (call, &i) in calls.iter_mut().zip(&rows_sel) {
        call.cost_usd = costs[i];
    }
    calls.retain(|c| filter.matches(c));
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_number_values_in_order_of_first_appearance_past_the_linear_scan() {
        let strs: Vec<String> = (0..3 * SMALL_CLASSES).map(|i| format!("v{i}")).collect();
        let rows: Vec<&str> = (0..200)
            .map(|i| strs[(i * 7) % strs.len()].as_str())
            .collect();
        let mut c = Classes::new();
        let classes: Vec<u32> = rows.iter().map(|s| c.class(s)).collect();
        let mut first: Vec<&str> = Vec::new();
        for s in &rows {
            if !first.contains(s) {
                first.push(s);
            }
        }
        assert_eq!(c.strs, first);
        for (s, &k) in rows.iter().zip(&classes) {
            assert_eq!(c.strs[k as usize], *s);
        }
        let mut dict = Dict::new();
        let ids = c.dict_ids(&mut dict);
        assert_eq!(ids, (0..first.len() as u32).collect::<Vec<_>>());
    }
}
