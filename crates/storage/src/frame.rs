//! Framing for every stored value: `[version u8][crc32 u32 LE][payload]`.
//!
//! **Invariant:** every segment, rollup, WAL batch and dictionary value is
//! framed; [`unframe`] checks the version and the CRC-32 (IEEE, over the
//! payload) before any decoder sees the payload.

use crate::error::CodecError;

/// Bytes of framing before the payload.
pub(crate) const FRAME_HEADER: usize = 5;

pub(crate) fn frame(version: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.push(version);
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Frames `buf` in place: its first [`FRAME_HEADER`] bytes (reserved by the
/// caller) become the header of the payload that follows them.
pub(crate) fn frame_in_place(version: u8, buf: &mut [u8]) {
    if buf.len() < FRAME_HEADER {
        return;
    }
    let crc = crc32fast::hash(&buf[FRAME_HEADER..]);
    buf[0] = version;
    buf[1..FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Returns the payload after checking version and checksum.
pub(crate) fn unframe<'a>(
    what: &str,
    version: u8,
    bytes: &'a [u8],
) -> Result<&'a [u8], CodecError> {
    if bytes.len() < FRAME_HEADER {
        return Err(CodecError::new(
            what,
            format!("{} bytes is shorter than the frame header", bytes.len()),
        ));
    }
    if bytes[0] != version {
        return Err(CodecError::new(
            what,
            format!("format version {} (expected {version})", bytes[0]),
        ));
    }
    let want = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let payload = &bytes[FRAME_HEADER..];
    let got = crc32fast::hash(payload);
    if got != want {
        return Err(CodecError::new(
            what,
            format!("checksum mismatch (stored {want:08x}, computed {got:08x})"),
        ));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unframe_rejects_any_single_flipped_byte() {
        let framed = frame(1, b"hello rollup");
        assert_eq!(unframe("t", 1, &framed).unwrap(), b"hello rollup");
        for i in 0..framed.len() {
            let mut bad = framed.clone();
            bad[i] ^= 0x40;
            assert!(unframe("t", 1, &bad).is_err(), "flip at {i} went unnoticed");
        }
        assert!(unframe("t", 1, &framed[..3]).is_err());
    }
}
