//! The engine's view of segments: encode sorted calls into one value, decode
//! a value back into the calls matching a range and filter.
//!
//! This adapter is the one place the engine calls the segment codec.

use sextant_model::{LlmCall, TimeRange};

use crate::api::RowFilter;
use crate::error::CodecError;
use crate::store::records::{decode_row, encode_row};

/// Most rows in one segment; bigger heads are sealed into several.
pub(crate) const SEGMENT_MAX_ROWS: usize = 65_536;

/// New dictionary entries (key, value) a segment needs stored with it.
pub(crate) type DictEntries = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Default)]
pub(crate) struct SegmentCodec {}

impl SegmentCodec {
    /// Loads the persistent dictionary.
    pub(crate) fn load(_entries: impl Iterator<Item = (Vec<u8>, Vec<u8>)>) -> Result<SegmentCodec, CodecError> {
        Ok(SegmentCodec {})
    }

    /// `calls` sorted by timestamp.
    pub(crate) fn encode(&mut self, calls: &[LlmCall]) -> (Vec<u8>, DictEntries) {
        (encode_row(&calls), Vec::new())
    }

    pub(crate) fn decode(
        &self,
        bytes: &[u8],
        range: TimeRange,
        filter: &RowFilter,
    ) -> Result<Vec<LlmCall>, CodecError> {
        let calls: Vec<LlmCall> = decode_row("segment", bytes)?;
        Ok(calls
            .into_iter()
            .filter(|c| range.contains(c.timestamp_ms) && filter.matches(c))
            .collect())
    }

    /// Checks a dictionary entry.
    pub(crate) fn verify_dict_entry(&self, _key: &[u8], _value: &[u8]) -> Result<(), CodecError> {
        Ok(())
    }
}
