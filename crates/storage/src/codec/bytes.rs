//! Byte-level primitives: LEB128 varints, zigzag, and a bounds-checked reader.
//!
//! **Invariant:** [`Reader`] never reads past its slice and never panics; every
//! failure is a [`CodecError`] naming the structure being decoded.

use crate::error::CodecError;

/// Maps signed to unsigned so small magnitudes get small codes: 0, -1, 1, -2 → 0, 1, 2, 3.
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends `v` as unsigned LEB128 (7 bits a byte, low group first, high bit = more).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_ivarint(out: &mut Vec<u8>, v: i64) {
    put_varint(out, zigzag(v));
}

/// Appends a varint length followed by the bytes.
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A cursor over untrusted bytes.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'a str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'a str, bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            bytes,
            pos: 0,
            what,
        }
    }

    pub(crate) fn err(&self, reason: impl Into<String>) -> CodecError {
        CodecError::new(
            self.what,
            format!("{} (at byte {})", reason.into(), self.pos),
        )
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn finish(&self) -> Result<(), CodecError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.err(format!("{} trailing bytes", self.remaining())))
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| self.err("unexpected end of data"))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.remaining() {
            return Err(self.err(format!("needs {n} bytes, {} remain", self.remaining())));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn u64_le(&mut self) -> Result<u64, CodecError> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }

    pub(crate) fn varint(&mut self) -> Result<u64, CodecError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            let part = u64::from(b & 0x7f);
            if i == 9 && part > 1 {
                return Err(self.err("varint overflows 64 bits"));
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    pub(crate) fn ivarint(&mut self) -> Result<i64, CodecError> {
        Ok(unzigzag(self.varint()?))
    }

    /// A count that must not exceed `max` (usually the bytes or rows left).
    pub(crate) fn count(&mut self, max: usize, of: &str) -> Result<usize, CodecError> {
        let n = self.varint()?;
        if n > max as u64 {
            return Err(self.err(format!("{of} count {n} exceeds the bound {max}")));
        }
        Ok(n as usize)
    }

    /// A varint length followed by that many bytes.
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.count(self.remaining(), "byte string")?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_and_zigzag_round_trip(v in any::<i64>(), u in any::<u64>()) {
            let mut out = Vec::new();
            put_ivarint(&mut out, v);
            put_varint(&mut out, u);
            let mut r = Reader::new("t", &out);
            prop_assert_eq!(r.ivarint().unwrap(), v);
            prop_assert_eq!(r.varint().unwrap(), u);
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn reader_never_panics_on_random_bytes(b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut r = Reader::new("t", &b);
            while r.varint().is_ok() {}
            let mut r = Reader::new("t", &b);
            let _ = r.bytes();
        }
    }

    #[test]
    fn zigzag_maps_extremes_and_small_magnitudes() {
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(unzigzag(zigzag(i64::MIN)), i64::MIN);
        assert_eq!(unzigzag(zigzag(i64::MAX)), i64::MAX);
        let mut out = Vec::new();
        put_varint(&mut out, u64::MAX);
        assert_eq!(out.len(), 10);
        // An 11th continuation byte is rejected.
        let bad = [0xffu8; 11];
        assert!(Reader::new("t", &bad).varint().is_err());
    }
}
