//! Bit streams and fixed-width bit-packing.
//!
//! Bits are written least-significant first into bytes filled from bit 0; a
//! value of width `w` occupies the next `w` bits. The final byte is padded
//! with zero bits.
//!
//! **Invariant:** [`BitReader`] fails (never panics) when asked for bits past
//! the end of its slice.

use crate::error::CodecError;

#[derive(Debug, Default)]
pub(crate) struct BitWriter {
    out: Vec<u8>,
    acc: u128,
    nbits: u32,
}

impl BitWriter {
    pub(crate) fn new() -> BitWriter {
        BitWriter::default()
    }

    /// Appends the low `w` bits of `v` (`w` ≤ 64).
    pub(crate) fn write(&mut self, v: u64, w: u32) {
        debug_assert!(w <= 64);
        if w == 0 {
            return;
        }
        let v = if w == 64 { v } else { v & ((1u64 << w) - 1) };
        self.acc |= u128::from(v) << self.nbits;
        self.nbits += w;
        while self.nbits >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.nbits -= 8;
        }
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.nbits > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

#[derive(Debug)]
pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    acc: u128,
    nbits: u32,
    what: &'a str,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(what: &'a str, bytes: &'a [u8]) -> BitReader<'a> {
        BitReader {
            bytes,
            pos: 0,
            acc: 0,
            nbits: 0,
            what,
        }
    }

    /// Bits not yet read.
    pub(crate) fn remaining_bits(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64 * 8 + u64::from(self.nbits)
    }

    pub(crate) fn read(&mut self, w: u32) -> Result<u64, CodecError> {
        if w == 0 {
            return Ok(0);
        }
        if w > 64 {
            return Err(CodecError::new(self.what, format!("bit width {w} > 64")));
        }
        while self.nbits < w {
            let b = *self
                .bytes
                .get(self.pos)
                .ok_or_else(|| CodecError::new(self.what, "bit stream ended early"))?;
            self.acc |= u128::from(b) << self.nbits;
            self.pos += 1;
            self.nbits += 8;
        }
        let v = if w == 64 {
            self.acc as u64
        } else {
            (self.acc as u64) & ((1u64 << w) - 1)
        };
        self.acc >>= w;
        self.nbits -= w;
        Ok(v)
    }

    pub(crate) fn bit(&mut self) -> Result<bool, CodecError> {
        Ok(self.read(1)? == 1)
    }
}

/// Bits needed to hold `v` (0 for 0).
pub(crate) fn width(v: u64) -> u32 {
    64 - v.leading_zeros()
}

/// Bytes that `n` values of width `w` occupy.
pub(crate) fn packed_len(n: usize, w: u32) -> usize {
    ((n as u128 * u128::from(w)).div_ceil(8)) as usize
}

pub(crate) fn pack(values: impl IntoIterator<Item = u64>, w: u32) -> Vec<u8> {
    let mut bw = BitWriter::new();
    for v in values {
        bw.write(v, w);
    }
    bw.finish()
}

/// Unpacks `n` values of width `w` from exactly [`packed_len`]`(n, w)` bytes.
pub(crate) fn unpack(
    what: &str,
    bytes: &[u8],
    n: usize,
    w: u32,
    mut f: impl FnMut(u64),
) -> Result<(), CodecError> {
    if bytes.len() != packed_len(n, w) {
        return Err(CodecError::new(
            what,
            "bit-packed block has the wrong length",
        ));
    }
    let mut r = BitReader::new(what, bytes);
    for _ in 0..n {
        f(r.read(w)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn bitpack_round_trips_at_every_width(vals in proptest::collection::vec(any::<u64>(), 0..200), w in 0u32..=64) {
            let mask = if w == 64 { u64::MAX } else { (1u64 << w) - 1 };
            let vals: Vec<u64> = vals.into_iter().map(|v| v & mask).collect();
            let bytes = pack(vals.iter().copied(), w);
            prop_assert_eq!(bytes.len(), packed_len(vals.len(), w));
            let mut got = Vec::new();
            unpack("t", &bytes, vals.len(), w, |v| got.push(v)).unwrap();
            prop_assert_eq!(got, vals);
        }
    }

    #[test]
    fn bit_reader_fails_past_the_end() {
        let mut r = BitReader::new("t", &[0xff]);
        assert_eq!(r.read(3).unwrap(), 7);
        assert!(r.read(6).is_err());
        assert!(BitReader::new("t", &[]).read(65).is_err());
    }
}
