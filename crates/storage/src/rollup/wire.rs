//! Byte-level helpers for the rollup encoding: LEB128 varints (u64, u128),
//! zigzag for signed values, little-endian f64, and a bounds-checked reader.
//!
//! **Invariant:** [`Reader`] never panics and never allocates from an
//! untrusted length without first checking it against the bytes left.

use crate::error::CodecError;

pub(crate) fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_u128(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_i128(out: &mut Vec<u8>, v: i128) {
    put_u128(out, ((v << 1) ^ (v >> 127)) as u128);
}

pub(crate) fn put_i64(out: &mut Vec<u8>, v: i64) {
    put_u64(out, ((v << 1) ^ (v >> 63)) as u64);
}

pub(crate) fn put_f64(out: &mut Vec<u8>, v: f64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A cursor over untrusted bytes; every read is bounds-checked.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    what: &'static str,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'static str, buf: &'a [u8]) -> Reader<'a> {
        Reader { what, buf, pos: 0 }
    }

    pub(crate) fn err(&self, field: &str, reason: impl std::fmt::Display) -> CodecError {
        CodecError::new(
            self.what,
            format!("field {field} at byte {}: {reason}", self.pos),
        )
    }

    /// Runs `f` on the whole buffer and a cursor at the current position;
    /// the reader continues wherever `f` leaves the cursor (clamped to the end).
    pub(crate) fn with_cursor<T>(&mut self, f: impl FnOnce(&'a [u8], &mut usize) -> T) -> T {
        let mut pos = self.pos;
        let out = f(self.buf, &mut pos);
        self.pos = pos.min(self.buf.len());
        out
    }

    /// The whole buffer read.
    pub(crate) fn buf(&self) -> &'a [u8] {
        self.buf
    }

    /// Offset of the next byte to read.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_at_end(&self) -> bool {
        self.pos == self.buf.len()
    }

    fn byte(&mut self, field: &str) -> Result<u8, CodecError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.err(field, "unexpected end of bytes")),
        }
    }

    /// A varint of up to 128 bits (sums of a rollup: usually a few bytes).
    #[inline]
    pub(crate) fn u128(&mut self, field: &str) -> Result<u128, CodecError> {
        let start = self.pos;
        // Most stored numbers are small: one byte.
        if let Some(&b) = self.buf.get(start).filter(|&&b| b < 0x80) {
            self.pos = start + 1;
            return Ok(u128::from(b));
        }
        // Fast path: at most 9 bytes (63 bits), read straight from the slice.
        let mut v: u64 = 0;
        for (i, &b) in self.buf[start..].iter().take(9).enumerate() {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.pos = start + i + 1;
                return Ok(u128::from(v));
            }
        }
        self.u128_long(field)
    }

    #[inline(never)]
    fn u128_long(&mut self, field: &str) -> Result<u128, CodecError> {
        let mut v: u128 = 0;
        for i in 0..19u32 {
            let b = self.byte(field)?;
            let bits = u128::from(b & 0x7f);
            let shift = 7 * i;
            if shift == 126 && bits > 0b11 {
                return Err(self.err(field, "varint overflows 128 bits"));
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err(field, "varint longer than 19 bytes"))
    }

    #[inline]
    /// Steps over `n` consecutive varints without decoding them (only
    /// their ends are found: a byte below 0x80 ends one): eight bytes at a
    /// time while those hold fewer ends than are left, then byte by byte.
    pub(crate) fn skip_varints(&mut self, field: &str, n: usize) -> Result<(), CodecError> {
        let rest = &self.buf[self.pos..];
        let (mut left, mut i) = (n, 0);
        while let Some(chunk) = rest.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0x80; 8]));
            // One per byte below 0x80, summed by the multiply into the top byte.
            let ends = (((!word & 0x8080_8080_8080_8080) >> 7).wrapping_mul(0x0101_0101_0101_0101)
                >> 56) as usize;
            if ends >= left {
                break;
            }
            left -= ends;
            i += 8;
        }
        while left > 0 {
            let Some(&b) = rest.get(i) else {
                return Err(self.err(field, "varint cut off"));
            };
            left -= usize::from(b < 0x80);
            i += 1;
        }
        self.pos += i;
        Ok(())
    }

    pub(crate) fn u64(&mut self, field: &str) -> Result<u64, CodecError> {
        match varint(self.buf, &mut self.pos) {
            Some(v) => Ok(v),
            None => self.u64_slow(field),
        }
    }

    /// [`Reader::u64`] where [`varint`] failed (cut off, over 64 bits, or
    /// a non-minimal encoding over 10 bytes): read as a `u128`, so the
    /// accepted encodings and the error messages are `u128`'s.
    #[inline(never)]
    fn u64_slow(&mut self, field: &str) -> Result<u64, CodecError> {
        let v = self.u128(field)?;
        u64::try_from(v).map_err(|_| self.err(field, format!("{v} overflows u64")))
    }

    pub(crate) fn i128(&mut self, field: &str) -> Result<i128, CodecError> {
        let z = self.u128(field)?;
        Ok(((z >> 1) as i128) ^ -((z & 1) as i128))
    }

    pub(crate) fn i64(&mut self, field: &str) -> Result<i64, CodecError> {
        let z = self.u64(field)?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    pub(crate) fn f64(&mut self, field: &str) -> Result<f64, CodecError> {
        let bytes = self.bytes(field, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(bytes);
        Ok(f64::from_le_bytes(a))
    }

    pub(crate) fn bytes(&mut self, field: &str, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err(field, format!("length {n} runs past the end")))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }
}

/// Reads a LEB128 u64 at `*pos` (at most 10 bytes, no bits beyond 64);
/// `None`, with `*pos` unchanged, when it is cut off or too long.
#[inline(always)]
pub(crate) fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    match b.get(*pos) {
        Some(&first) if first < 0x80 => {
            *pos += 1;
            Some(u64::from(first))
        }
        Some(&first) => match b.get(*pos + 1) {
            Some(&second) if second < 0x80 => {
                *pos += 2;
                Some(u64::from(first & 0x7f) | u64::from(second) << 7)
            }
            _ => varint_long(b, pos),
        },
        None => None,
    }
}

#[inline(never)]
fn varint_long(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let byte = *b.get(*pos + i)?;
        let bits = u64::from(byte & 0x7f);
        if i == 9 && bits > 1 {
            return None;
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            *pos += i + 1;
            return Some(v);
        }
    }
    None
}

// ---------------------------------------------------------------------------
// Version 2 (docs/format/rollup.md): bit streams of Rice codes, and decimal numbers.

/// Bits of a Rice code of `v` with parameter `k`: the quotient `v >> k` in
/// unary (that many 0 bits, then a 1), then the low `k` bits of `v`.
#[inline]
pub(crate) fn rice_bits(v: u64, k: u32) -> u64 {
    (v >> k) + 1 + u64::from(k)
}

/// The parameter in `0..=max_k` that codes `values` in the fewest bits
/// (the smallest such), and that number of bits.
pub(crate) fn best_rice_k(values: impl Iterator<Item = u64> + Clone, max_k: u32) -> (u32, u64) {
    let mut best = (0, u64::MAX);
    for k in 0..=max_k {
        let bits = values.clone().map(|v| rice_bits(v, k)).sum::<u64>();
        if bits < best.1 {
            best = (k, bits);
        }
    }
    best
}

/// Writes bits least significant first: bit `i` of the stream is bit
/// `i % 8` of byte `i / 8`; the last byte is padded with 0 bits.
#[derive(Debug, Default)]
pub(crate) struct BitWriter {
    out: Vec<u8>,
    buf: u64,
    /// Bits held in `buf` (< 8 between calls).
    n: u32,
}

impl BitWriter {
    /// Appends the low `count` (≤ 56) bits of `bits`.
    #[inline]
    fn put(&mut self, bits: u64, count: u32) {
        debug_assert!(count <= 56);
        self.buf |= (bits & low_mask(count)) << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.buf as u8);
            self.buf >>= 8;
            self.n -= 8;
        }
    }

    /// Appends the Rice code of `v` with parameter `k` (≤ 52).
    pub(crate) fn rice(&mut self, v: u64, k: u32) {
        let mut q = v >> k;
        while q >= 32 {
            self.put(0, 32);
            q -= 32;
        }
        self.put(1 << q, q as u32 + 1);
        self.put(v, k);
    }

    /// The bytes written, the last one padded with 0 bits.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.buf as u8);
        }
        self.out
    }
}

#[inline]
fn low_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1 << bits) - 1
    }
}

/// Reads what [`BitWriter`] wrote, from untrusted bytes: never panics,
/// never reads past its slice (bits past its end read as 0, and a code
/// that reaches into them is `None`).
///
/// Invariant: bit `i < n` of `buf` is bit `8 × pos − n + i` of the stream;
/// the bits of `buf` above `n` are 0 or the stream's next bits. The loads
/// are the branch-light refill of F. Giesen's "reading bits in far too
/// many ways" (variant 4); the rare paths are plain functions of copies,
/// so a reader in a decoding loop stays in registers.
#[derive(Debug, Clone)]
pub(crate) struct BitReader<'a> {
    b: &'a [u8],
    /// Next byte to load into `buf` (may pass the end: zeros).
    pos: usize,
    buf: u64,
    n: u32,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> BitReader<'a> {
        BitReader {
            b,
            pos: 0,
            buf: 0,
            n: 0,
        }
    }

    /// Makes `n` ≥ 56 (at most 63).
    #[inline(always)]
    fn refill(&mut self) {
        let word = match self.b.get(self.pos..self.pos + 8) {
            Some(chunk) => u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])),
            None => tail_word(self.b, self.pos),
        };
        self.buf |= word << self.n;
        self.pos += ((63 - self.n) >> 3) as usize;
        self.n |= 56;
    }

    /// Bits read so far.
    #[inline(always)]
    fn consumed(&self) -> usize {
        8 * self.pos - self.n as usize
    }

    /// A Rice code with parameter `k` (≤ 56) whose quotient is at most
    /// `max_q`; `None` when the stream ends first or the quotient is larger.
    #[inline(always)]
    pub(crate) fn rice(&mut self, k: u32, max_q: u64) -> Option<u64> {
        if self.n < 56 {
            self.refill();
        }
        let tz = self.buf.trailing_zeros();
        let q = if tz < self.n {
            self.buf >>= tz + 1;
            self.n -= tz + 1;
            u64::from(tz)
        } else {
            let (q, pos, buf, n) = long_unary(self.b, self.pos, self.buf, self.n, max_q)?;
            (self.pos, self.buf, self.n) = (pos, buf, n);
            q
        };
        if q > max_q {
            return None;
        }
        if self.n < k {
            self.refill();
        }
        // k ≤ 56 ≤ n: the shifts are defined.
        let r = self.buf & low_mask(k);
        self.buf >>= k;
        self.n -= k;
        if self.consumed() > 8 * self.b.len() {
            return None;
        }
        Some(q << k | r)
    }

    /// True when what is left is at most 7 bits, all 0 (the padding of
    /// the last byte).
    pub(crate) fn at_padding(&self) -> bool {
        let Some(left) = (8 * self.b.len()).checked_sub(self.consumed()) else {
            return false;
        };
        // left < 8 ≤ 56 ≤ n once anything was read.
        left < 8 && (left == 0 || (left as u32 <= self.n && self.buf & low_mask(left as u32) == 0))
    }
}

/// The 8 bytes at `pos` of `b` (fewer than 8 left), zero past its end:
/// the last 8 bytes shifted down when `b` has 8.
#[inline]
fn tail_word(b: &[u8], pos: usize) -> u64 {
    let len = b.len();
    if pos >= len {
        return 0;
    }
    if let Some(last) = len.checked_sub(8).and_then(|at| b.get(at..)) {
        let word = u64::from_le_bytes(last.try_into().unwrap_or([0; 8]));
        // pos + 8 − len in 1..=7 (pos > len − 8, else the caller read 8).
        return word >> (8 * (pos + 8 - len).min(7));
    }
    b[pos..]
        .iter()
        .rev()
        .fold(0u64, |w, &byte| w << 8 | u64::from(byte))
}

/// A unary quotient that does not end within the `n` bits held: the
/// quotient and the reader's new `(pos, buf, n)`; `None` past the end of
/// `b` or above `max_q`.
#[inline(never)]
fn long_unary(
    b: &[u8],
    pos: usize,
    _buf: u64,
    n: u32,
    max_q: u64,
) -> Option<(u64, usize, u64, u32)> {
    let mut r = BitReader {
        b,
        pos,
        buf: 0,
        n: 0,
    };
    // The n bits held are all 0.
    let mut q = u64::from(n);
    loop {
        if q > max_q || r.pos > b.len() {
            return None;
        }
        r.refill();
        let tz = r.buf.trailing_zeros();
        if tz < r.n {
            r.buf >>= tz + 1;
            r.n -= tz + 1;
            return Some((q + u64::from(tz), r.pos, r.buf, r.n));
        }
        q += u64::from(r.n);
        r.buf = 0;
        r.n = 0;
    }
}

/// Powers of ten exact in f64, for decimal numbers.
const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// Tag of a number stored as its raw 8 bytes.
pub(crate) const NUM_RAW: u8 = 15;

/// How a finite `x` is stored: `(d, m)` when `x` is exactly `m / 10^d`
/// as the decoder computes it (`d` ≤ 9, the smallest such; `m` < 2^53; so
/// `x` is +0.0 or positive) — tag `d`, then `m` as a varint — else
/// `(NUM_RAW, 0)`: the 8 bytes of `x`.
pub(crate) fn num_tag(x: f64) -> (u8, u64) {
    if x.is_sign_positive() {
        for (d, &p) in POW10.iter().enumerate() {
            let m = (x * p).round();
            // x is finite and ≥ 0: m is never NaN (+inf when x × p overflows).
            if m >= (1u64 << 53) as f64 {
                break;
            }
            if (m / p).to_bits() == x.to_bits() {
                return (d as u8, m as u64);
            }
        }
    }
    (NUM_RAW, 0)
}

/// Writes the body of a number tagged by [`num_tag`].
pub(crate) fn put_num(out: &mut Vec<u8>, x: f64, (tag, m): (u8, u64)) {
    if tag == NUM_RAW {
        put_f64(out, x);
    } else {
        put_u64(out, m);
    }
}

impl Reader<'_> {
    /// The body of a number with `tag` (see [`num_tag`]); finite.
    pub(crate) fn num(&mut self, field: &str, tag: u8) -> Result<f64, CodecError> {
        let x = match tag {
            NUM_RAW => self.f64(field)?,
            d if (d as usize) < POW10.len() => self.u64(field)? as f64 / POW10[d as usize],
            _ => return Err(self.err(field, format!("number tag {tag}"))),
        };
        if x.is_finite() {
            Ok(x)
        } else {
            Err(self.err(field, format!("{x} is not finite")))
        }
    }

    /// Steps over the body of a number with `tag`, checking only its extent.
    pub(crate) fn skip_num(&mut self, field: &str, tag: u8) -> Result<(), CodecError> {
        match tag {
            NUM_RAW => self.bytes(field, 8).map(|_| ()),
            d if (d as usize) < POW10.len() => self.skip_varints(field, 1),
            _ => Err(self.err(field, format!("number tag {tag}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn varints_round_trip(a in any::<u64>(), b in any::<u128>(), c in any::<i128>(), d in any::<i64>()) {
            let mut out = Vec::new();
            put_u64(&mut out, a);
            put_u128(&mut out, b);
            put_i128(&mut out, c);
            put_i64(&mut out, d);
            let mut r = Reader::new("t", &out);
            prop_assert_eq!(r.u64("a").unwrap(), a);
            prop_assert_eq!(r.u128("b").unwrap(), b);
            prop_assert_eq!(r.i128("c").unwrap(), c);
            prop_assert_eq!(r.i64("d").unwrap(), d);
            prop_assert!(r.is_at_end());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// `u64`'s fast path accepts exactly what reading a `u128` and
        /// narrowing it accepts (non-minimal and cut-off encodings included),
        /// with the same value and end position.
        #[test]
        fn u64_reads_as_u128_narrowed(
            bytes in proptest::collection::vec(prop_oneof![any::<u8>(), Just(0x80u8), Just(0xffu8), Just(0u8)], 0..24),
        ) {
            let mut fast = Reader::new("t", &bytes);
            let mut slow = Reader::new("t", &bytes);
            let want = slow.u128("x").ok().and_then(|v| u64::try_from(v).ok());
            let got = fast.u64("x").ok();
            prop_assert_eq!(got, want);
            if got.is_some() {
                prop_assert_eq!(fast.pos(), slow.pos());
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Rice codes read back what was written, for any parameter, and
        /// a cut-off stream is `None` (never a panic, never a wrong value
        /// before the cut).
        #[test]
        fn rice_codes_round_trip_and_cut_streams_end(
            values in proptest::collection::vec(prop_oneof![0u64..4, 0u64..5000, 0u64..(1 << 24)], 0..200),
            k in 0u32..=24,
            cut in any::<prop::sample::Index>(),
        ) {
            let mut w = BitWriter::default();
            let mut bits = 0;
            for &v in &values {
                w.rice(v, k);
                bits += rice_bits(v, k);
            }
            let bytes = w.finish();
            prop_assert_eq!(bytes.len() as u64, bits.div_ceil(8));
            let mut r = BitReader::new(&bytes);
            for &v in &values {
                prop_assert_eq!(r.rice(k, u64::MAX >> k), Some(v));
            }
            prop_assert!(r.at_padding());
            let cut = cut.index(bytes.len() + 1);
            let mut r = BitReader::new(&bytes[..cut]);
            for &v in &values {
                match r.rice(k, u64::MAX >> k) {
                    Some(got) => prop_assert_eq!(got, v),
                    None => break,
                }
            }
            // A quotient above the limit is refused.
            if let Some(&v) = values.iter().find(|&&v| v >> k > 0) {
                let mut w = BitWriter::default();
                w.rice(v, k);
                let b = w.finish();
                prop_assert_eq!(BitReader::new(&b).rice(k, (v >> k) - 1), None);
            }
        }

        #[test]
        fn numbers_round_trip_bit_for_bit(
            x in prop_oneof![any::<f64>(), -1e6f64..1e6, (0u64..10_000_000).prop_map(|m| m as f64 / 1000.0), (0u64..100_000).prop_map(|m| m as f64)],
        ) {
            prop_assume!(x.is_finite());
            let t = num_tag(x);
            let mut out = Vec::new();
            put_num(&mut out, x, t);
            let mut r = Reader::new("t", &out);
            prop_assert_eq!(r.num("x", t.0).unwrap().to_bits(), x.to_bits());
            prop_assert!(r.is_at_end());
            let mut r = Reader::new("t", &out);
            r.skip_num("x", t.0).unwrap();
            prop_assert!(r.is_at_end());
        }
    }

    #[test]
    fn decimal_numbers_take_few_bytes() {
        for (x, tag, len) in [
            (0.0, 0, 1),
            (150.0, 0, 2),
            (1096.123, 3, 3),
            (0.1, 1, 1),
            (2.5, 1, 1),
            (-2.5, NUM_RAW, 8),
        ] {
            let t = num_tag(x);
            let mut out = Vec::new();
            put_num(&mut out, x, t);
            assert_eq!((t.0, out.len()), (tag, len), "{x}");
        }
        for x in [-0.0, 1.0 / 3.0, f64::MAX, 1e300] {
            assert_eq!(num_tag(x).0, NUM_RAW, "{x}");
        }
        let mut r = Reader::new("t", &[0u8; 9]);
        assert!(r.num("x", 12).is_err());
        let inf = f64::INFINITY.to_le_bytes();
        assert!(Reader::new("t", &inf).num("x", NUM_RAW).is_err());
    }

    #[test]
    fn overlong_varints_are_errors() {
        let bytes = [0xffu8; 20];
        assert!(Reader::new("t", &bytes).u128("x").is_err());
        let mut too_big = vec![0xffu8; 18];
        too_big.push(0x7f);
        assert!(Reader::new("t", &too_big).u128("x").is_err());
        let mut out = Vec::new();
        put_u128(&mut out, u128::from(u64::MAX) + 1);
        assert!(Reader::new("t", &out).u64("x").is_err());
    }
}
