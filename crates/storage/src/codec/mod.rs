//! Column codecs and the columnar segment format (`docs/format/segment.md`).
//!
//! Role: turn a batch of `LlmCall`s into one immutable, compact, checksummed
//! segment and back, exactly (f64 bit for bit, `None` vs `Some("")`), and
//! answer time-range and dimension filters from per-dimension row sets
//! before decoding the other columns.
//!
//! **Invariant:** no decoder panics or allocates more than a small multiple
//! of its input on any bytes; every failure is a [`CodecError`].

// Until the engine (store.rs) calls this API, parts of it are unused outside tests.
#![allow(dead_code, unused_imports)]

mod bitmap;
mod bits;
mod bytes;
mod dict;
mod floats;
mod ids;
mod ints;
mod segment;
#[cfg(test)]
mod segment_tests;

pub(crate) use bits::BitWriter;
pub(crate) use bytes::{put_bytes, put_ivarint, put_varint, Reader};
pub(crate) use dict::Dict;
pub(crate) use segment::{
    column_sizes, decode_segment, encode_segment_refs, read_header, SegmentHeader, SEGMENT_VERSION,
};
