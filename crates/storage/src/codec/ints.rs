//! Integer columns: a transform (none, delta, delta-of-delta) followed by a
//! packing (zigzag varint, or frame-of-reference bit-packing in blocks of
//! [`BLOCK`] values). The encoder tries all six and keeps the smallest.
//!
//! Layout: `[tag u8 = transform << 2 | packing]`, then the first `transform`
//! transformed values (the seeds: first value, first delta) as zigzag
//! varints, then the rest: for packing 0, one zigzag varint per value; for
//! packing 1, per block `[min: zigzag varint][width u8 ≤ 64][packed
//! (value − min) as u64, width bits each]`; for packing 2 (all equal), the
//! one value as a zigzag varint (nothing when no values remain).
//! The value count is not stored: the caller knows it.
//!
//! u64 values are stored through `as i64` (bit-preserving); every transform
//! uses wrapping arithmetic, so any i64/u64 sequence round-trips exactly.

use super::bits::{pack, packed_len, unpack, width};
use super::bytes::{put_ivarint, zigzag, Reader};
use crate::error::CodecError;

/// Values per bit-packed block.
pub(crate) const BLOCK: usize = 128;

fn transform(values: &[i64], order: u8) -> Vec<i64> {
    let mut v = values.to_vec();
    for _ in 0..order {
        let mut prev = 0i64;
        for x in v.iter_mut() {
            let cur = *x;
            *x = cur.wrapping_sub(prev);
            prev = cur;
        }
    }
    v
}

fn untransform(v: &mut [i64], order: u8) {
    for _ in 0..order {
        let mut acc = 0i64;
        for x in v.iter_mut() {
            acc = acc.wrapping_add(*x);
            *x = acc;
        }
    }
}

fn put_packed(out: &mut Vec<u8>, v: &[i64]) {
    for block in v.chunks(BLOCK) {
        let min = *block.iter().min().unwrap_or(&0);
        let max = *block.iter().max().unwrap_or(&0);
        let w = width(max.wrapping_sub(min) as u64);
        put_ivarint(out, min);
        out.push(w as u8);
        out.extend(pack(block.iter().map(|x| x.wrapping_sub(min) as u64), w));
    }
}

fn put_varints(out: &mut Vec<u8>, v: &[i64]) {
    for &x in v {
        put_ivarint(out, x);
    }
}

/// Bytes of `x` as a zigzag varint.
fn ivarint_len(x: i64) -> usize {
    (width(zigzag(x)).max(1) as usize).div_ceil(7)
}

/// Bytes the values after the seeds take under `packing`; `None` when the
/// packing does not apply (2 needs all values equal).
fn rest_len(rest: &[i64], packing: u8) -> Option<usize> {
    match packing {
        0 => Some(rest.iter().map(|&x| ivarint_len(x)).sum()),
        1 => Some(
            rest.chunks(BLOCK)
                .map(|block| {
                    let min = *block.iter().min().unwrap_or(&0);
                    let max = *block.iter().max().unwrap_or(&0);
                    let w = width(max.wrapping_sub(min) as u64);
                    ivarint_len(min) + 1 + packed_len(block.len(), w)
                })
                .sum(),
        ),
        _ => match rest.first() {
            Some(&x) if rest.iter().any(|&y| y != x) => None,
            Some(&x) => Some(ivarint_len(x)),
            None => Some(0),
        },
    }
}

/// Appends the smallest encoding of `values` (the first of the smallest in
/// transform-then-packing order). Sizes are computed without encoding; only
/// the winner is written.
pub(crate) fn put_ints(out: &mut Vec<u8>, values: &[i64]) {
    let mut t = values.to_vec();
    // (size, order, packing) of the best so far.
    let mut best: Option<(usize, u8, u8)> = None;
    for order in 0..3u8 {
        if order > 0 {
            let mut prev = 0i64;
            for x in t.iter_mut() {
                let cur = *x;
                *x = cur.wrapping_sub(prev);
                prev = cur;
            }
        }
        let (seeds, rest) = t.split_at(usize::from(order).min(t.len()));
        let head = 1 + seeds.iter().map(|&x| ivarint_len(x)).sum::<usize>();
        for packing in 0..3u8 {
            let Some(len) = rest_len(rest, packing) else {
                continue;
            };
            if best.is_none_or(|b| head + len < b.0) {
                best = Some((head + len, order, packing));
            }
        }
    }
    let Some((_, order, packing)) = best else {
        return;
    };
    let t = transform(values, order);
    let (seeds, rest) = t.split_at(usize::from(order).min(t.len()));
    out.push((order << 2) | packing);
    put_varints(out, seeds);
    match packing {
        0 => put_varints(out, rest),
        1 => put_packed(out, rest),
        _ => {
            if let Some(&x) = rest.first() {
                put_ivarint(out, x);
            }
        }
    }
}

pub(crate) fn put_u64s(out: &mut Vec<u8>, values: &[u64]) {
    let v: Vec<i64> = values.iter().map(|&x| x as i64).collect();
    put_ints(out, &v);
}

/// Reads `n` values written by [`put_ints`].
pub(crate) fn read_ints(r: &mut Reader<'_>, n: usize) -> Result<Vec<i64>, CodecError> {
    let tag = r.u8()?;
    let (order, packing) = (tag >> 2, tag & 3);
    if order > 2 || packing > 2 {
        return Err(r.err(format!("unknown integer encoding tag {tag}")));
    }
    let seeds = usize::from(order).min(n);
    if seeds > r.remaining() {
        return Err(r.err("integer column seeds are missing"));
    }
    let mut v = Vec::with_capacity(seeds);
    for _ in 0..seeds {
        v.push(r.ivarint()?);
    }
    let n = n - seeds;
    if packing == 2 {
        if n > 0 {
            let x = r.ivarint()?;
            v.resize(seeds + n, x);
        }
    } else if packing == 0 {
        if n > r.remaining() {
            return Err(r.err(format!("{n} varints cannot fit in {} bytes", r.remaining())));
        }
        v.reserve_exact(n);
        for _ in 0..n {
            v.push(r.ivarint()?);
        }
    } else {
        let blocks = n.div_ceil(BLOCK);
        if blocks.saturating_mul(2) > r.remaining() {
            return Err(r.err(format!(
                "{blocks} blocks cannot fit in {} bytes",
                r.remaining()
            )));
        }
        v.reserve_exact(n);
        let mut left = n;
        while left > 0 {
            let len = left.min(BLOCK);
            let min = r.ivarint()?;
            let w = u32::from(r.u8()?);
            if w > 64 {
                return Err(r.err(format!("bit width {w} > 64")));
            }
            let bytes = r.take(packed_len(len, w))?;
            unpack("integer block", bytes, len, w, |x| {
                v.push(min.wrapping_add(x as i64))
            })?;
            left -= len;
        }
    }
    untransform(&mut v, order);
    Ok(v)
}

pub(crate) fn read_u64s(r: &mut Reader<'_>, n: usize) -> Result<Vec<u64>, CodecError> {
    Ok(read_ints(r, n)?.into_iter().map(|x| x as u64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The encoder before sizes were computed: writes all nine candidates.
    fn put_ints_reference(out: &mut Vec<u8>, values: &[i64]) {
        let mut best: Option<Vec<u8>> = None;
        for order in 0..3u8 {
            let t = transform(values, order);
            let (seeds, rest) = t.split_at(usize::from(order).min(t.len()));
            for packing in 0..3u8 {
                let mut buf = vec![(order << 2) | packing];
                put_varints(&mut buf, seeds);
                match packing {
                    0 => put_varints(&mut buf, rest),
                    1 => put_packed(&mut buf, rest),
                    _ => {
                        if rest.iter().any(|&x| x != rest[0]) {
                            continue;
                        }
                        if let Some(&x) = rest.first() {
                            put_ivarint(&mut buf, x);
                        }
                    }
                }
                if best.as_ref().is_none_or(|b| buf.len() < b.len()) {
                    best = Some(buf);
                }
            }
        }
        out.extend(best.unwrap_or_default());
    }

    fn round_trip(v: &[i64]) -> Vec<i64> {
        let mut out = Vec::new();
        put_ints(&mut out, v);
        let mut r = Reader::new("t", &out);
        let got = read_ints(&mut r, v.len()).unwrap();
        r.finish().unwrap();
        got
    }

    fn edge_i64() -> impl Strategy<Value = i64> {
        prop_oneof![
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
            Just(0i64),
            -1000i64..1000,
        ]
    }

    proptest! {
        #[test]
        fn int_column_round_trips_any_i64(v in proptest::collection::vec(edge_i64(), 0..400)) {
            prop_assert_eq!(round_trip(&v), v);
        }

        #[test]
        fn int_column_is_the_smallest_of_all_candidates(v in proptest::collection::vec(prop_oneof![edge_i64(), 0i64..300, Just(7i64)], 0..400), step in 0i64..5000) {
            let mut out = Vec::new();
            put_ints(&mut out, &v);
            let mut want = Vec::new();
            put_ints_reference(&mut want, &v);
            prop_assert_eq!(&out, &want);
            // Regular series (delta and delta-of-delta wins).
            let series: Vec<i64> = v.iter().scan(0i64, |acc, &x| { *acc = acc.wrapping_add(step).wrapping_add(x % 3); Some(*acc) }).collect();
            let (mut out, mut want) = (Vec::new(), Vec::new());
            put_ints(&mut out, &series);
            put_ints_reference(&mut want, &series);
            prop_assert_eq!(out, want);
        }

        #[test]
        fn u64_column_round_trips_extremes(v in proptest::collection::vec(prop_oneof![any::<u64>(), Just(u64::MAX), Just(0u64)], 0..300)) {
            let mut out = Vec::new();
            put_u64s(&mut out, &v);
            let got = read_u64s(&mut Reader::new("t", &out), v.len()).unwrap();
            prop_assert_eq!(got, v);
        }

        #[test]
        fn int_decoder_rejects_or_survives_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..64), n in 0usize..5000) {
            let _ = read_ints(&mut Reader::new("t", &b), n);
        }
    }

    #[test]
    fn empty_single_and_regular_columns() {
        assert_eq!(round_trip(&[]), Vec::<i64>::new());
        assert_eq!(round_trip(&[i64::MIN]), vec![i64::MIN]);
        // A regular series is constant after delta-of-delta: tiny.
        let regular: Vec<i64> = (0..10_000).map(|i| 1_700_000_000_000 + 1000 * i).collect();
        let mut out = Vec::new();
        put_ints(&mut out, &regular);
        assert!(out.len() < 300, "{} bytes", out.len());
        assert_eq!(round_trip(&regular), regular);
    }

    #[test]
    fn truncated_int_column_is_an_error() {
        let v: Vec<i64> = (0..300).map(|i| i * i * 7919).collect();
        let mut out = Vec::new();
        put_ints(&mut out, &v);
        for cut in 0..out.len() {
            assert!(read_ints(&mut Reader::new("t", &out[..cut]), v.len()).is_err());
        }
    }
}
