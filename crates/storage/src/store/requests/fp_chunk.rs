//! Request-index chunks of version 2 (format 7): entries keyed by a 64-bit
//! fingerprint of the request id instead of the id itself.
//!
//! Payload (framed, version 2; varints unsigned LEB128, `ivarint` zigzag):
//! `n varint` (entries, ≥ 1), `first u64 LE` (the smallest fingerprint),
//! `k u8` (Rice parameter, ≤ 63), `rice_len varint` (bytes of the Rice
//! stream), `base_ts ivarint`, `ts_bits u8`, `group_bits u8`, then the Rice
//! stream, the `n` timestamp deltas from `base_ts` at `ts_bits` each and
//! the `n` group indexes at `group_bits` each (both bit-packed, least
//! significant bit first, as in version 1).
//!
//! The Rice stream holds, for each fingerprint after the first, `d − 1`
//! where `d ≥ 1` is its difference to the previous one: `q = (d − 1) >> k`
//! zero bits, a one bit, then the low `k` bits of `d − 1`; bits least
//! significant first, the last byte padded with zero bits.
//!
//! **Invariant:** fingerprints in a chunk are strictly ascending; the
//! decoder checks that (no overflow, no repeat), that every section has
//! exactly its stated length and that the Rice stream ends in its last
//! byte with zero padding; it never panics on bad bytes.

use crate::codec::{put_ivarint, put_varint, BitWriter, Reader};
use crate::error::CodecError;
use crate::frame::{frame, unframe};

/// Frame version of fingerprint chunks.
pub(super) const VERSION: u8 = 2;

const WHAT: &str = "request index chunk";

/// One entry: (fingerprint, timestamp, group index in the run's table).
pub(super) type FpEntry = (u64, i64, u32);

/// Bits needed to hold `v` (0 for 0).
pub(super) fn width(v: u64) -> u32 {
    64 - v.leading_zeros()
}
/// Appends `q` zero bits (the unary part of a Rice code).
fn put_zeros(out: &mut BitWriter, mut q: u64) {
    while q >= 64 {
        out.write(0, 64);
        q -= 64;
    }
    out.write(0, q as u32);
}

/// The `w` bits (`w` ≤ 64) of `bytes` from bit `pos`; bits past the end
/// read as zero (callers check lengths first).
fn get_bits(bytes: &[u8], pos: usize, w: u32) -> u64 {
    if w == 0 {
        return 0;
    }
    let i = pos / 8;
    let mut b = [0u8; 16];
    if i < bytes.len() {
        let end = (i + 16).min(bytes.len());
        b[..end - i].copy_from_slice(&bytes[i..end]);
    }
    let v = (u128::from_le_bytes(b) >> (pos % 8)) as u64;
    if w == 64 {
        v
    } else {
        v & ((1u64 << w) - 1)
    }
}

/// Reads a Rice stream.
struct RiceIn<'a> {
    bytes: &'a [u8],
    /// Bit position.
    pos: usize,
    k: u32,
}

impl RiceIn<'_> {
    fn total(&self) -> usize {
        self.bytes.len() * 8
    }

    fn next(&mut self) -> Result<u64, CodecError> {
        // Fast path: the unary part and the low bits within one 8-byte
        // load (at least 57 bits from `pos`).
        let i = self.pos / 8;
        if let Some(b) = self.bytes.get(i..i + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            let w = u64::from_le_bytes(w) >> (self.pos % 8);
            let z = w.trailing_zeros();
            if z + 1 + self.k <= 57 {
                let r = (w >> (z + 1)) & ((1u64 << self.k) - 1);
                self.pos += (z + 1 + self.k) as usize;
                return Ok((u64::from(z) << self.k) | r);
            }
        }
        let mut q = 0u64;
        loop {
            if self.pos >= self.total() {
                return Err(CodecError::new(WHAT, "fingerprint stream ended early"));
            }
            let w = get_bits(self.bytes, self.pos, 64);
            if w != 0 {
                let z = w.trailing_zeros();
                q += u64::from(z);
                self.pos += z as usize + 1;
                break;
            }
            q += 64;
            self.pos += 64;
        }
        if self.pos + self.k as usize > self.total() {
            return Err(CodecError::new(WHAT, "fingerprint stream ended early"));
        }
        let r = get_bits(self.bytes, self.pos, self.k);
        self.pos += self.k as usize;
        if self.k > 0 && q >> (64 - self.k) != 0 {
            return Err(CodecError::new(WHAT, "fingerprint difference overflows"));
        }
        Ok((q << self.k) | r)
    }
}

/// The Rice parameter that codes `vals` in the fewest bits, among those
/// near log2 of their mean (which also bounds the unary parts: at most
/// 8 bits per value on average).
fn rice_k(vals: &[u64]) -> u32 {
    if vals.is_empty() {
        return 0;
    }
    let sum: u128 = vals.iter().map(|&v| u128::from(v)).sum();
    let mean = (sum / vals.len() as u128) as u64;
    let c = width(mean);
    let cost = |k: u32| -> u128 {
        vals.iter()
            .map(|&v| u128::from(v >> k) + 1 + u128::from(k))
            .sum()
    };
    (c.saturating_sub(3)..=(c + 1).min(63))
        .min_by_key(|&k| (cost(k), k))
        .unwrap_or(0)
}

/// Encodes entries sorted by fingerprint, without repeats (at least one).
pub(super) fn encode(entries: &[FpEntry], group_bits: u32) -> Vec<u8> {
    debug_assert!(!entries.is_empty());
    debug_assert!(entries.windows(2).all(|w| w[0].0 < w[1].0));
    let first = entries.first().map_or(0, |e| e.0);
    let gaps: Vec<u64> = entries
        .windows(2)
        .map(|w| w[1].0.wrapping_sub(w[0].0).wrapping_sub(1))
        .collect();
    let k = rice_k(&gaps);
    let mut rice = BitWriter::new();
    for &g in &gaps {
        put_zeros(&mut rice, g >> k);
        rice.write(1, 1);
        rice.write(g, k);
    }
    let rice = rice.finish();
    let base = entries.iter().map(|e| e.1).min().unwrap_or(0);
    let max = entries.iter().map(|e| e.1).max().unwrap_or(0);
    let ts_bits = width(max.wrapping_sub(base) as u64);
    let mut p = Vec::with_capacity(32 + rice.len() + entries.len() * 5);
    put_varint(&mut p, entries.len() as u64);
    p.extend_from_slice(&first.to_le_bytes());
    p.push(k as u8);
    put_varint(&mut p, rice.len() as u64);
    put_ivarint(&mut p, base);
    p.push(ts_bits as u8);
    p.push(group_bits as u8);
    p.extend_from_slice(&rice);
    let mut packed = BitWriter::new();
    for e in entries {
        packed.write(e.1.wrapping_sub(base) as u64, ts_bits);
    }
    p.extend_from_slice(&packed.finish());
    let mut packed = BitWriter::new();
    for e in entries {
        packed.write(u64::from(e.2), group_bits);
    }
    p.extend_from_slice(&packed.finish());
    frame(VERSION, &p)
}

/// A chunk's sections, parsed just enough to search it: the fingerprints
/// are decoded on demand ([`FpChunk::find`] stops at the one it looks for;
/// [`FpChunk::fps`] decodes and checks them all).
#[derive(Debug)]
pub(super) struct FpChunk<'a> {
    n: usize,
    first: u64,
    k: u32,
    rice: &'a [u8],
    base: i64,
    ts_bits: u32,
    group_bits: u32,
    ts: &'a [u8],
    groups: &'a [u8],
}

fn packed_len(n: usize, w: u32) -> usize {
    (n as u128 * u128::from(w)).div_ceil(8) as usize
}

impl<'a> FpChunk<'a> {
    pub(super) fn parse(bytes: &'a [u8]) -> Result<FpChunk<'a>, CodecError> {
        let p = unframe(WHAT, VERSION, bytes)?;
        let mut r = Reader::new(WHAT, p);
        let n = r.varint()?;
        let first = r.u64_le()?;
        let k = u32::from(r.u8()?);
        let rice_len = r.count(r.remaining(), "fingerprint stream byte")?;
        let base = r.ivarint()?;
        let ts_bits = u32::from(r.u8()?);
        let group_bits = u32::from(r.u8()?);
        if k > 63 || ts_bits > 64 || group_bits > 32 {
            return Err(r.err("bit width out of range"));
        }
        // Every fingerprint after the first costs at least one bit.
        if n == 0 || n - 1 > rice_len as u64 * 8 {
            return Err(r.err("entry count out of range"));
        }
        let n = n as usize;
        let rice = r.take(rice_len)?;
        let ts = r.take(packed_len(n, ts_bits))?;
        let groups = r.take(packed_len(n, group_bits))?;
        r.finish()?;
        Ok(FpChunk {
            n,
            first,
            k,
            rice,
            base,
            ts_bits,
            group_bits,
            ts,
            groups,
        })
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.n
    }

    pub(super) fn first(&self) -> u64 {
        self.first
    }

    /// Calls `f(i, fingerprint)` for the entries in order while it returns
    /// true; returns the decoder.
    fn walk(&self, mut f: impl FnMut(usize, u64) -> bool) -> Result<RiceIn<'a>, CodecError> {
        let mut s = RiceIn {
            bytes: self.rice,
            pos: 0,
            k: self.k,
        };
        let mut prev = self.first;
        if !f(0, prev) {
            return Ok(s);
        }
        for i in 1..self.n {
            prev = s
                .next()?
                .checked_add(1)
                .and_then(|d| prev.checked_add(d))
                .ok_or_else(|| CodecError::new(WHAT, "fingerprint overflows"))?;
            if !f(i, prev) {
                break;
            }
        }
        Ok(s)
    }

    /// The index of `fp`, decoding only the fingerprints up to it.
    pub(super) fn find(&self, fp: u64) -> Result<Option<usize>, CodecError> {
        let mut found = None;
        self.walk(|i, x| {
            if x == fp {
                found = Some(i);
            }
            x < fp
        })?;
        Ok(found)
    }

    /// Every fingerprint (strictly ascending), after checking that the
    /// stream holds exactly them.
    pub(super) fn fps(&self) -> Result<Vec<u64>, CodecError> {
        let mut fps = Vec::with_capacity(self.n);
        let s = self.walk(|_, x| {
            fps.push(x);
            true
        })?;
        // The stream ends in its last byte, padded with zero bits.
        if s.pos.div_ceil(8) != self.rice.len() || get_bits(self.rice, s.pos, 8) != 0 {
            return Err(CodecError::new(
                WHAT,
                "fingerprint stream has the wrong length",
            ));
        }
        Ok(fps)
    }

    pub(super) fn ts(&self, i: usize) -> i64 {
        self.base
            .wrapping_add(get_bits(self.ts, i * self.ts_bits as usize, self.ts_bits) as i64)
    }

    pub(super) fn group(&self, i: usize) -> u32 {
        get_bits(self.groups, i * self.group_bits as usize, self.group_bits) as u32
    }

    /// Every entry, in fingerprint order (the stream checked as by
    /// [`FpChunk::fps`]).
    pub(super) fn entries(&self) -> Result<Vec<FpEntry>, CodecError> {
        Ok(self
            .fps()?
            .into_iter()
            .enumerate()
            .map(|(i, fp)| (fp, self.ts(i), self.group(i)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Some fingerprint to look for, from the test's bytes.
    fn rng_fp(raw: &[u8]) -> u64 {
        raw.iter()
            .fold(0u64, |a, &b| a.rotate_left(8) ^ u64::from(b))
    }

    fn sorted(mut e: Vec<FpEntry>) -> Vec<FpEntry> {
        e.sort_by_key(|x| x.0);
        e.dedup_by_key(|x| x.0);
        e
    }

    /// Parses and decodes every entry (what verify and merges do).
    fn decode(v: &[u8]) -> Result<Vec<FpEntry>, CodecError> {
        FpChunk::parse(v)?.entries()
    }

    fn round_trip(entries: &[FpEntry], group_bits: u32) -> Vec<u8> {
        let v = encode(entries, group_bits);
        assert_eq!(decode(&v).unwrap(), entries);
        let c = FpChunk::parse(&v).unwrap();
        assert_eq!(c.len(), entries.len());
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(c.find(e.0).unwrap(), Some(i));
        }
        v
    }

    proptest! {
        #[test]
        fn chunks_round_trip(
            raw in proptest::collection::vec((any::<u64>(), any::<i64>(), 0u32..1000), 1..600),
            spread in 0u32..64,
            ts_span in 0u32..64,
        ) {
            // Fingerprints spread over 2^spread (dense to full range),
            // timestamps over 2^ts_span.
            let e: Vec<FpEntry> = raw
                .into_iter()
                .map(|(f, t, g)| {
                    let f = if spread == 0 { f } else { f >> spread };
                    let t = if ts_span == 0 { t } else { t >> ts_span };
                    (f, t, g)
                })
                .collect();
            let e = sorted(e);
            let gb = width(u64::from(e.iter().map(|x| x.2).max().unwrap()));
            let v = round_trip(&e, gb);
            // An absent fingerprint is not found.
            let c = FpChunk::parse(&v).unwrap();
            for x in [0u64, 1, u64::MAX, e[0].0.wrapping_add(1)] {
                prop_assert_eq!(c.find(x).unwrap().is_some(), e.iter().any(|y| y.0 == x));
            }
        }

        #[test]
        fn random_and_cut_bytes_are_errors_not_panics(
            raw in proptest::collection::vec(any::<u8>(), 0..300),
            version_ok in any::<bool>(),
        ) {
            // Random payloads behind a valid frame reach the decoder.
            let v = if version_ok { frame(VERSION, &raw) } else { raw.clone() };
            if let Ok(c) = FpChunk::parse(&v) {
                let _ = c.find(rng_fp(&raw));
                if let Ok(e) = c.entries() {
                    prop_assert!(e.windows(2).all(|w| w[0].0 < w[1].0));
                }
            }
        }
    }

    #[test]
    fn extremes_round_trip() {
        round_trip(&[(0, i64::MIN, 0)], 0);
        round_trip(&[(u64::MAX, i64::MAX, 7)], 3);
        round_trip(&[(0, i64::MIN, 0), (u64::MAX, i64::MAX, 1)], 1);
        round_trip(&[(5, 0, 0), (6, 0, 0), (7, 0, 0)], 0);
        let dense: Vec<FpEntry> = (0..512).map(|i| (i * 3, 1_000 + i as i64, 0)).collect();
        round_trip(&dense, 0);
    }

    #[test]
    fn damaged_chunks_are_errors() {
        let mut rng = fastrand::Rng::with_seed(1);
        let e = sorted(
            (0..512)
                .map(|_| (rng.u64(..), rng.i64(0..1 << 30), rng.u32(..5)))
                .collect(),
        );
        let v = encode(&e, 3);
        for cut in 0..v.len() {
            assert!(decode(&v[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..v.len() {
            let mut bad = v.clone();
            bad[i] ^= 0x10;
            assert!(decode(&bad).is_err(), "byte {i}");
        }
        // Well-framed payloads that lie: a count beyond the stream, a
        // stream with trailing bits, an overflowing difference.
        let payload = |n: u64, first: u64, k: u8, rice: &[u8]| {
            let mut p = Vec::new();
            put_varint(&mut p, n);
            p.extend_from_slice(&first.to_le_bytes());
            p.push(k);
            put_varint(&mut p, rice.len() as u64);
            put_ivarint(&mut p, 0);
            p.push(0);
            p.push(0);
            p.extend_from_slice(rice);
            frame(VERSION, &p)
        };
        assert!(decode(&payload(1, 9, 0, &[])).is_ok());
        assert!(decode(&payload(0, 9, 0, &[])).is_err());
        assert!(decode(&payload(2, 9, 0, &[])).is_err());
        assert!(decode(&payload(u64::MAX, 9, 0, &[1])).is_err());
        // `1`: one difference of 1 (q = 0, no low bits) — then padding.
        assert!(decode(&payload(2, 9, 0, &[0b1])).is_ok());
        assert!(decode(&payload(2, 9, 0, &[0b11])).is_err());
        assert!(decode(&payload(2, 9, 0, &[0b1, 0])).is_err());
        assert!(decode(&payload(2, u64::MAX, 0, &[0b1])).is_err());
        assert!(decode(&payload(2, 9, 64, &[0b1])).is_err());
        // A long unary run that never ends.
        assert!(decode(&payload(2, 9, 0, &[0; 40])).is_err());
        // q << k overflowing 64 bits: 2 zeros, a one, then 63 low bits.
        let mut o = BitWriter::new();
        put_zeros(&mut o, 2);
        o.write(1, 1);
        o.write(0, 63);
        assert!(decode(&payload(2, 0, 63, &o.finish())).is_err());
    }

    /// With random fingerprints of a run of `n`, an entry costs about
    /// 64 − log2(n) + 1.5 bits of fingerprint.
    #[test]
    fn random_fingerprints_cost_near_their_entropy() {
        let mut rng = fastrand::Rng::with_seed(2);
        let n_run: u64 = 1 << 20;
        // 512 consecutive fingerprints of a run of 2^20 random ones.
        let step = u64::MAX / n_run;
        let mut f = rng.u64(..1 << 40);
        let mut e = Vec::new();
        for _ in 0..512 {
            // Exponential gaps of mean `step`.
            let u = rng.f64().max(1e-300);
            f += (-(u.ln()) * step as f64) as u64 + 1;
            e.push((f, 0, 0));
        }
        let v = encode(&e, 0);
        let bits_per_entry = (v.len() * 8) as f64 / 512.0;
        // 44 + 1.5 bits + header; fixed-width deltas would take ~47.
        assert!(bits_per_entry < 46.5, "{bits_per_entry}");
        assert!(bits_per_entry > 44.0, "{bits_per_entry}");
    }
}
