//! SipHash-2-4 (J.-P. Aumasson and D. J. Bernstein, "SipHash: a fast
//! short-input PRF", INDOCRYPT 2012): a 64-bit keyed hash whose outputs an
//! attacker who does not know the 128-bit key cannot predict, so inputs
//! cannot be chosen to collide. Used for request-index fingerprints
//! (format 7).
//!
//! **Invariant:** `siphash24(key, msg)` is the reference function with
//! `k0 = key[0..8]`, `k1 = key[8..16]` read little-endian, two compression
//! and four finalization rounds; the output's bytes in little-endian order
//! are the reference implementation's output bytes (checked against the
//! paper's test vectors below).

/// One SipRound over the state.
#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-2-4 of `msg` under `key`.
pub(crate) fn siphash24(key: &[u8; 16], msg: &[u8]) -> u64 {
    let mut k = [0u8; 8];
    k.copy_from_slice(&key[..8]);
    let k0 = u64::from_le_bytes(k);
    k.copy_from_slice(&key[8..]);
    let k1 = u64::from_le_bytes(k);
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut blocks = msg.chunks_exact(8);
    for b in &mut blocks {
        k.copy_from_slice(b);
        let m = u64::from_le_bytes(k);
        v[3] ^= m;
        round(&mut v);
        round(&mut v);
        v[0] ^= m;
    }
    // The last block: the remaining bytes, zero-padded, with the message
    // length (mod 256) in the top byte.
    let mut last = [0u8; 8];
    let tail = blocks.remainder();
    last[..tail.len()].copy_from_slice(tail);
    let m = u64::from_le_bytes(last) | ((msg.len() as u64) << 56);
    v[3] ^= m;
    round(&mut v);
    round(&mut v);
    v[0] ^= m;
    v[2] ^= 0xff;
    for _ in 0..4 {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference test vectors (the SipHash paper's `vectors.h`, also
    /// its Appendix A for 15 bytes): key `00 01 … 0f`, message `00 01 …
    /// (len − 1)`, output bytes as the reference code writes them.
    const VECTORS: [[u8; 8]; 18] = [
        [0x31, 0x0e, 0x0e, 0xdd, 0x47, 0xdb, 0x6f, 0x72],
        [0xfd, 0x67, 0xdc, 0x93, 0xc5, 0x39, 0xf8, 0x74],
        [0x5a, 0x4f, 0xa9, 0xd9, 0x09, 0x80, 0x6c, 0x0d],
        [0x2d, 0x7e, 0xfb, 0xd7, 0x96, 0x66, 0x67, 0x85],
        [0xb7, 0x87, 0x71, 0x27, 0xe0, 0x94, 0x27, 0xcf],
        [0x8d, 0xa6, 0x99, 0xcd, 0x64, 0x55, 0x76, 0x18],
        [0xce, 0xe3, 0xfe, 0x58, 0x6e, 0x46, 0xc9, 0xcb],
        [0x37, 0xd1, 0x01, 0x8b, 0xf5, 0x00, 0x02, 0xab],
        [0x62, 0x24, 0x93, 0x9a, 0x79, 0xf5, 0xf5, 0x93],
        [0xb0, 0xe4, 0xa9, 0x0b, 0xdf, 0x82, 0x00, 0x9e],
        [0xf3, 0xb9, 0xdd, 0x94, 0xc5, 0xbb, 0x5d, 0x7a],
        [0xa7, 0xad, 0x6b, 0x22, 0x46, 0x2f, 0xb3, 0xf4],
        [0xfb, 0xe5, 0x0e, 0x86, 0xbc, 0x8f, 0x1e, 0x75],
        [0x90, 0x3d, 0x84, 0xc0, 0x27, 0x56, 0xea, 0x14],
        [0xee, 0xf2, 0x7a, 0x8e, 0x90, 0xca, 0x23, 0xf7],
        [0xe5, 0x45, 0xbe, 0x49, 0x61, 0xca, 0x29, 0xa1],
        [0xdb, 0x9b, 0xc2, 0x57, 0x7f, 0xcc, 0x2a, 0x3f],
        [0x94, 0x47, 0xbe, 0x2c, 0xf5, 0xe9, 0x9a, 0x69],
    ];

    #[test]
    fn siphash24_matches_the_reference_vectors() {
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        for (len, want) in VECTORS.iter().enumerate() {
            let msg: Vec<u8> = (0..len as u8).collect();
            assert_eq!(siphash24(&key, &msg).to_le_bytes(), *want, "length {len}");
        }
        // Appendix A of the paper, as a 64-bit word.
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(siphash24(&key, &msg), 0xa129_ca61_49be_45e5);
    }

    /// The standard library's (deprecated) `SipHasher` is SipHash-2-4 too:
    /// both agree on random keys and messages of every length up to 64.
    #[test]
    #[allow(deprecated)]
    fn siphash24_agrees_with_std_on_random_inputs() {
        use std::hash::Hasher;
        let mut rng = fastrand::Rng::with_seed(24);
        for len in 0..=64usize {
            for _ in 0..8 {
                let key: [u8; 16] = std::array::from_fn(|_| rng.u8(..));
                let msg: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
                let mut k = [0u8; 8];
                k.copy_from_slice(&key[..8]);
                let k0 = u64::from_le_bytes(k);
                k.copy_from_slice(&key[8..]);
                let k1 = u64::from_le_bytes(k);
                let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
                h.write(&msg);
                assert_eq!(siphash24(&key, &msg), h.finish(), "length {len}");
            }
        }
    }
}
