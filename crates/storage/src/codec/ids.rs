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

fn parse_hex(s: &[u8], out: &mut Vec<u8>) -> bool {
    if s.len() % 2 != 0 || !s.iter().all(|&c| hex_val(c).is_some()) {
        return false;
    }
    for pair in s.chunks(2) {
        out.push((hex_val(pair[0]).unwrap_or(0) << 4) | hex_val(pair[1]).unwrap_or(0));
    }
    true
}

/// Kind and raw bytes of one id.
fn classify(s: Option<&str>) -> (u32, Vec<u8>) {
    let Some(s) = s else { return (0, Vec::new()) };
    let b = s.as_bytes();
    let mut raw = Vec::with_capacity(16);
    if b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-') {
        let hex: Vec<u8> = b.iter().copied().filter(|&c| c != b'-').collect();
        if hex.len() == 32 && parse_hex(&hex, &mut raw) {
            return (1, raw);
        }
        raw.clear();
    }
    if b.len() == 32 && parse_hex(b, &mut raw) {
        return (2, raw);
    }
    raw.clear();
    if b.len() == 16 && parse_hex(b, &mut raw) {
        return (3, raw);
    }
    (4, b.to_vec())
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

pub(crate) fn put_ids<'a>(out: &mut Vec<u8>, ids: impl Iterator<Item = Option<&'a str>>) {
    let mut kinds = Vec::new();
    let mut b16 = Vec::new();
    let mut b8 = Vec::new();
    let mut strs = Vec::new();
    for id in ids {
        let (k, raw) = classify(id);
        kinds.push(k);
        match k {
            1 | 2 => b16.extend(raw),
            3 => b8.extend(raw),
            4 => put_bytes(&mut strs, &raw),
            _ => {}
        }
    }
    Partition::build(&kinds, if kinds.is_empty() { 0 } else { KINDS }).put(out);
    out.extend(b16);
    out.extend(b8);
    out.extend(strs);
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
