//! Float columns, bit-exact: Gorilla XOR or decimal-scaled integers,
//! whichever is smaller, behind a 1-byte tag.
//!
//! * Tag 0, Gorilla: `[bit-stream byte length: varint][bits]`. The first value
//!   is 64 raw bits; each next value is XORed with the previous one: `0` for
//!   an equal value; `10` + the meaningful bits when they fit the previous
//!   window (leading/trailing zero counts); otherwise `11` + 6 bits leading
//!   zeros + 6 bits (meaningful length − 1) + the meaningful bits.
//! * Tag 1, decimal: `[k u8 ≤ 4][exceptions: varint count, then per exception
//!   (row − previous exception row: varint, f64 bits u64 LE)][integer column of
//!   n values]`. Row i decodes as `int_i as f64 / 10^k` unless it is an
//!   exception; exception slots hold the previous integer so deltas stay small.
//!   A value is stored as an integer only when that division reproduces its
//!   exact bits (so −0.0, NaN, ±inf and non-decimal values are exceptions).

use super::bits::{BitReader, BitWriter};
use super::bytes::{put_bytes, put_varint, Reader};
use super::ints::{put_ints, read_ints};
use crate::error::CodecError;

const POW10: [f64; 5] = [1.0, 10.0, 100.0, 1000.0, 10000.0];
/// Largest magnitude stored as a decimal integer (exactly representable in f64).
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

fn as_decimal(v: f64, k: usize) -> Option<i64> {
    if !v.is_finite() {
        return None;
    }
    let n = (v * POW10[k]).round();
    if n.abs() > MAX_EXACT {
        return None;
    }
    let i = n as i64;
    ((i as f64 / POW10[k]).to_bits() == v.to_bits()).then_some(i)
}

pub(crate) fn put_gorilla(out: &mut Vec<u8>, values: &[f64]) {
    let mut w = BitWriter::new();
    let mut prev = 0u64;
    let mut window: Option<(u32, u32)> = None;
    for (i, v) in values.iter().enumerate() {
        let bits = v.to_bits();
        if i == 0 {
            w.write(bits, 64);
            prev = bits;
            continue;
        }
        let x = bits ^ prev;
        prev = bits;
        if x == 0 {
            w.write(0, 1);
            continue;
        }
        let (lz, tz) = (x.leading_zeros(), x.trailing_zeros());
        match window {
            Some((plz, ptz)) if lz >= plz && tz >= ptz => {
                w.write(0b01, 2);
                w.write(x >> ptz, 64 - plz - ptz);
            }
            _ => {
                let len = 64 - lz - tz;
                w.write(0b11, 2);
                w.write(u64::from(lz), 6);
                w.write(u64::from(len - 1), 6);
                w.write(x >> tz, len);
                window = Some((lz, tz));
            }
        }
    }
    put_bytes(out, &w.finish());
}

fn read_gorilla(r: &mut Reader<'_>, n: usize) -> Result<Vec<f64>, CodecError> {
    let bytes = r.bytes()?;
    let mut br = BitReader::new("gorilla float column", bytes);
    if n as u64 > br.remaining_bits() {
        return Err(r.err(format!("{n} floats cannot fit in {} bytes", bytes.len())));
    }
    let mut out = Vec::with_capacity(n);
    let mut prev = 0u64;
    let mut window: Option<(u32, u32)> = None;
    for i in 0..n {
        if i == 0 {
            prev = br.read(64)?;
        } else if br.bit()? {
            let x = if !br.bit()? {
                let (plz, ptz) =
                    window.ok_or_else(|| r.err("gorilla window reused before it was set"))?;
                br.read(64 - plz - ptz)? << ptz
            } else {
                let lz = br.read(6)? as u32;
                let len = br.read(6)? as u32 + 1;
                if lz + len > 64 {
                    return Err(r.err("gorilla window exceeds 64 bits"));
                }
                let tz = 64 - lz - len;
                window = Some((lz, tz));
                br.read(len)? << tz
            };
            prev ^= x;
        }
        out.push(f64::from_bits(prev));
    }
    Ok(out)
}

fn put_decimal(out: &mut Vec<u8>, values: &[f64], k: usize) {
    out.push(k as u8);
    let mut ints = Vec::with_capacity(values.len());
    let mut exceptions = Vec::new();
    let mut last = 0i64;
    for (i, &v) in values.iter().enumerate() {
        match as_decimal(v, k) {
            Some(n) => {
                last = n;
                ints.push(n);
            }
            None => {
                exceptions.push((i, v.to_bits()));
                ints.push(last);
            }
        }
    }
    put_varint(out, exceptions.len() as u64);
    let mut prev = 0usize;
    for (i, bits) in exceptions {
        put_varint(out, (i - prev) as u64);
        out.extend_from_slice(&bits.to_le_bytes());
        prev = i;
    }
    put_ints(out, &ints);
}

fn read_decimal(r: &mut Reader<'_>, n: usize) -> Result<Vec<f64>, CodecError> {
    let k = usize::from(r.u8()?);
    if k >= POW10.len() {
        return Err(r.err(format!("decimal scale 10^{k} is out of range")));
    }
    let count = r.count(n.min(r.remaining() / 9), "float exception")?;
    let mut exceptions = Vec::with_capacity(count);
    let mut row = 0usize;
    for _ in 0..count {
        let step = r.varint()?;
        row = row
            .checked_add(usize::try_from(step).map_err(|_| r.err("exception row overflows"))?)
            .filter(|&x| x < n)
            .ok_or_else(|| r.err("exception row out of range"))?;
        exceptions.push((row, r.u64_le()?));
    }
    let ints = read_ints(r, n)?;
    let mut out: Vec<f64> = ints.into_iter().map(|x| x as f64 / POW10[k]).collect();
    for (i, bits) in exceptions {
        out[i] = f64::from_bits(bits);
    }
    Ok(out)
}

/// Appends the smaller of the Gorilla and decimal encodings of `values`.
pub(crate) fn put_floats(out: &mut Vec<u8>, values: &[f64]) {
    let mut g = vec![0u8];
    put_gorilla(&mut g, values);
    let best_k = (0..POW10.len())
        .min_by_key(|&k| {
            values
                .iter()
                .filter(|&&v| as_decimal(v, k).is_none())
                .count()
        })
        .unwrap_or(0);
    let mut d = vec![1u8];
    put_decimal(&mut d, values, best_k);
    out.extend(if d.len() < g.len() { d } else { g });
}

/// Reads `n` values written by [`put_floats`].
pub(crate) fn read_floats(r: &mut Reader<'_>, n: usize) -> Result<Vec<f64>, CodecError> {
    match r.u8()? {
        0 => read_gorilla(r, n),
        1 => read_decimal(r, n),
        t => Err(r.err(format!("unknown float encoding tag {t}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn edge_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::from_bits(0x7ff8_dead_beef_0001)),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(0.0),
            Just(f64::MIN_POSITIVE / 3.0),
            Just(f64::MAX),
            Just(f64::MIN),
            (0i64..100_000).prop_map(|x| x as f64 / 10.0),
            (0i64..100_000).prop_map(|x| x as f64 / 1000.0),
        ]
    }

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    fn check(v: &[f64]) {
        for enc in 0..3 {
            let mut out = Vec::new();
            match enc {
                0 => put_floats(&mut out, v),
                1 => {
                    out.push(0);
                    put_gorilla(&mut out, v)
                }
                _ => {
                    out.push(1);
                    put_decimal(&mut out, v, 1)
                }
            }
            let mut r = Reader::new("t", &out);
            let got = read_floats(&mut r, v.len()).unwrap();
            r.finish().unwrap();
            assert_eq!(bits(&got), bits(v), "encoding {enc}");
        }
    }

    proptest! {
        #[test]
        fn float_column_round_trips_bit_exactly(v in proptest::collection::vec(edge_f64(), 0..300)) {
            check(&v);
        }

        #[test]
        fn float_decoder_survives_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..64), n in 0usize..2000) {
            let _ = read_floats(&mut Reader::new("t", &b), n);
        }
    }

    #[test]
    fn rounded_values_take_the_decimal_path_and_are_small() {
        let v: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 50_000) as f64 / 10.0)
            .collect();
        check(&v);
        let mut out = Vec::new();
        put_floats(&mut out, &v);
        assert_eq!(out[0], 1);
        assert!(out.len() < 1000 * 3, "{} bytes", out.len());
        check(&[]);
        check(&[-0.0]);
        check(&[f64::NAN]);
    }

    #[test]
    fn truncated_float_column_is_an_error() {
        let v: Vec<f64> = (0..200).map(|i| (i as f64).sqrt()).collect();
        let mut out = Vec::new();
        put_floats(&mut out, &v);
        for cut in 0..out.len() {
            assert!(read_floats(&mut Reader::new("t", &out[..cut]), v.len()).is_err());
        }
    }
}
