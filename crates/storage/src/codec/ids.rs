//! Id columns (request_id, trace_id, span_id): canonical hex ids as raw
//! bytes, anything else as a length-prefixed string.
//!
//! Kinds: 0 absent, 1 canonical lowercase UUID (8-4-4-4-12) as 16 bytes,
//! 2 lowercase 32-hex as 16 bytes, 3 lowercase 16-hex as 8 bytes, 4 other
//! string. Layout: `[kind partition (5 classes)][16-byte ids of kinds 1 and
//! 2, in row order][8-byte ids of kind 3][per kind-4 row: varint length,
//! UTF-8 bytes]`. A kind-1..3 id re-formats to exactly the original string,
//! which is why only lowercase canonical forms qualify.
//!
//! **Invariant:** every present id costs at least one byte (16, 8, or a
//! length varint), which bounds a segment's row count by its size.

use super::bitmap::Partition;
use super::bytes::{put_bytes, Reader};
use crate::error::CodecError;

const KINDS: usize = 5;

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Appends the bytes of the even-length lowercase hex `s` to `out`; false
/// (and `out` unchanged) if `s` is not such hex.
fn parse_hex(s: &[u8], out: &mut Vec<u8>) -> bool {
    if s.len() % 2 != 0 {
        return false;
    }
    let start = out.len();
    for pair in s.chunks_exact(2) {
        match (hex_val(pair[0]), hex_val(pair[1])) {
            (Some(hi), Some(lo)) => out.push((hi << 4) | lo),
            _ => {
                out.truncate(start);
                return false;
            }
        }
    }
    true
}

/// Appends the raw bytes of a canonical UUID (8-4-4-4-12 lowercase hex) to
/// `out`; false (and `out` unchanged) if `b` is not one.
fn parse_uuid(b: &[u8], out: &mut Vec<u8>) -> bool {
    if b.len() != 36 || [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
        return false;
    }
    let start = out.len();
    for part in [&b[0..8], &b[9..13], &b[14..18], &b[19..23], &b[24..36]] {
        if !parse_hex(part, out) {
            out.truncate(start);
            return false;
        }
    }
    true
}

/// Kind of one id, its raw bytes appended to the buffer of that kind:
/// `b16` (kinds 1, 2), `b8` (kind 3) or `strs` (kind 4, length-prefixed).
fn classify_into(s: Option<&str>, b16: &mut Vec<u8>, b8: &mut Vec<u8>, strs: &mut Vec<u8>) -> u32 {
    let Some(s) = s else { return 0 };
    let b = s.as_bytes();
    match b.len() {
        36 if parse_uuid(b, b16) => 1,
        32 if parse_hex(b, b16) => 2,
        16 if parse_hex(b, b8) => 3,
        _ => {
            put_bytes(strs, b);
            4
        }
    }
}

/// Kind and raw bytes of one id.
#[cfg(test)]
fn classify(s: Option<&str>) -> (u32, Vec<u8>) {
    let (mut b16, mut b8, mut strs) = (Vec::new(), Vec::new(), Vec::new());
    let k = classify_into(s, &mut b16, &mut b8, &mut strs);
    let raw = match k {
        1 | 2 => b16,
        3 => b8,
        4 => s.map(|s| s.as_bytes().to_vec()).unwrap_or_default(),
        _ => Vec::new(),
    };
    (k, raw)
}

fn to_hex(raw: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(raw.len() * 2 + 4);
    for &x in raw {
        s.push(HEX[usize::from(x >> 4)] as char);
        s.push(HEX[usize::from(x & 15)] as char);
    }
    s
}

fn to_uuid(raw: &[u8]) -> String {
    let h = to_hex(raw);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// An id column built one row at a time (each id is classified and its raw
/// bytes placed as it arrives).
#[derive(Debug, Default)]
pub(crate) struct IdColumn {
    kinds: Vec<u32>,
    b16: Vec<u8>,
    b8: Vec<u8>,
    strs: Vec<u8>,
}

impl IdColumn {
    pub(crate) fn with_capacity(n: usize) -> IdColumn {
        IdColumn {
            kinds: Vec::with_capacity(n),
            ..IdColumn::default()
        }
    }

    pub(crate) fn push(&mut self, id: Option<&str>) {
        let k = classify_into(id, &mut self.b16, &mut self.b8, &mut self.strs);
        self.kinds.push(k);
    }

    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        let k = if self.kinds.is_empty() { 0 } else { KINDS };
        Partition::build(&self.kinds, k).put(out);
        out.extend_from_slice(&self.b16);
        out.extend_from_slice(&self.b8);
        out.extend_from_slice(&self.strs);
    }
}

pub(crate) fn put_ids<'a>(out: &mut Vec<u8>, ids: impl ExactSizeIterator<Item = Option<&'a str>>) {
    let mut col = IdColumn::with_capacity(ids.len());
    for id in ids {
        col.push(id);
    }
    col.put(out);
}

pub(crate) fn read_ids(r: &mut Reader<'_>, n: usize) -> Result<Vec<Option<String>>, CodecError> {
    let p = Partition::read(r, n)?;
    if p.classes() != KINDS && n != 0 {
        return Err(r.err(format!("{} id kinds (expected {KINDS})", p.classes())));
    }
    let kinds = p.class_of();
    let n16 = kinds.iter().filter(|&&k| k == 1 || k == 2).count();
    let n8 = kinds.iter().filter(|&&k| k == 3).count();
    let mut b16 = r
        .take(
            n16.checked_mul(16)
                .ok_or_else(|| r.err("id count overflows"))?,
        )?
        .chunks(16);
    let mut b8 = r.take(n8 * 8)?.chunks(8);
    let mut out = Vec::with_capacity(n);
    for k in kinds {
        out.push(match k {
            0 => None,
            1 => Some(to_uuid(b16.next().unwrap_or_default())),
            2 => Some(to_hex(b16.next().unwrap_or_default())),
            3 => Some(to_hex(b8.next().unwrap_or_default())),
            _ => {
                let b = r.bytes()?;
                Some(
                    std::str::from_utf8(b)
                        .map_err(|_| r.err("id is not UTF-8"))?
                        .to_owned(),
                )
            }
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(ids: &[Option<String>]) -> Vec<Option<String>> {
        let mut out = Vec::new();
        put_ids(&mut out, ids.iter().map(|s| s.as_deref()));
        let mut r = Reader::new("t", &out);
        let got = read_ids(&mut r, ids.len()).unwrap();
        r.finish().unwrap();
        got
    }

    fn id() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}".prop_map(Some),
            "[0-9a-fA-F]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}".prop_map(Some),
            "[0-9a-f]{32}".prop_map(Some),
            "[0-9a-fA-F]{16}".prop_map(Some),
            "[0-9a-f-]{0,40}".prop_map(Some),
            ".{0,20}".prop_map(Some),
        ]
    }

    proptest! {
        #[test]
        fn id_column_round_trips_exactly(ids in proptest::collection::vec(id(), 0..60)) {
            prop_assert_eq!(round_trip(&ids), ids);
        }
    }

    #[test]
    fn canonical_ids_cost_their_raw_size() {
        let ids: Vec<Option<String>> = (0..100)
            .map(|i| Some(format!("{i:08x}-0000-4000-8000-{i:012x}")))
            .collect();
        let mut out = Vec::new();
        put_ids(&mut out, ids.iter().map(|s| s.as_deref()));
        assert!(out.len() <= 100 * 16 + 8, "{}", out.len());
        assert_eq!(round_trip(&ids), ids);
        // Upper-case hex does not re-format to itself, so it stays a string.
        assert_eq!(classify(Some("ABCDEF0123456789")).0, 4);
        assert_eq!(classify(Some("abcdef0123456789")).0, 3);
    }
}
