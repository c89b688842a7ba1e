//! The engine's view of segments: encode sorted calls into one value, decode
//! a value back into the calls matching a range and filter. The one place
//! the engine calls the segment codec (`codec/`).
//!
//! Dictionary entries are stored in tree `dict` as `id (u32 BE)` →
//! framed UTF-8 string. **Invariant:** the entries a segment introduces are
//! written in the same transaction as the segment.

use sextant_model::{LlmCall, TimeRange};

use crate::api::RowFilter;
use crate::codec::{decode_segment, encode_segment_refs, Dict};
use crate::error::CodecError;
use crate::frame::{frame, unframe};

/// Most rows in one segment; bigger heads are sealed into several.
pub(crate) const SEGMENT_MAX_ROWS: usize = 65_536;

/// Version byte of dictionary entry frames.
const DICT_VERSION: u8 = 1;

/// New dictionary entries (key, value) a segment needs stored with it.
pub(crate) type DictEntries = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Default)]
pub(crate) struct SegmentCodec {
    dict: Dict,
}

fn decode_dict_entry(key: &[u8], value: &[u8]) -> Result<(u32, String), CodecError> {
    let id: [u8; 4] = key.try_into().map_err(|_| {
        CodecError::new("dictionary key", format!("{} bytes, expected 4", key.len()))
    })?;
    let s = unframe("dictionary entry", DICT_VERSION, value)?;
    let s =
        std::str::from_utf8(s).map_err(|e| CodecError::new("dictionary entry", e.to_string()))?;
    Ok((u32::from_be_bytes(id), s.to_string()))
}

impl SegmentCodec {
    /// Loads the persistent dictionary.
    pub(crate) fn load(
        entries: impl Iterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<SegmentCodec, CodecError> {
        let mut parsed = Vec::new();
        for (k, v) in entries {
            parsed.push(decode_dict_entry(&k, &v)?);
        }
        Ok(SegmentCodec {
            dict: Dict::from_entries(parsed)?,
        })
    }

    /// Borrowed `calls` sorted by timestamp.
    pub(crate) fn encode_refs(&mut self, calls: &[&LlmCall]) -> (Vec<u8>, DictEntries) {
        let bytes = encode_segment_refs(calls, &mut self.dict);
        let entries = self
            .dict
            .take_pending()
            .into_iter()
            .map(|(id, s)| (id.to_be_bytes().to_vec(), frame(DICT_VERSION, s.as_bytes())))
            .collect();
        (bytes, entries)
    }

    pub(crate) fn decode(
        &self,
        bytes: &[u8],
        range: TimeRange,
        filter: &RowFilter,
    ) -> Result<Vec<LlmCall>, CodecError> {
        decode_segment(bytes, &self.dict, range, filter)
    }

    /// Checks a dictionary entry.
    pub(crate) fn verify_dict_entry(&self, key: &[u8], value: &[u8]) -> Result<(), CodecError> {
        let (id, s) = decode_dict_entry(key, value)?;
        match self.dict.get(id) {
            Some(known) if known == s => Ok(()),
            _ => Err(CodecError::new(
                "dictionary entry",
                format!("id {id} disagrees with the loaded dictionary"),
            )),
        }
    }

    /// Per-column encoded sizes of a segment, bytes.
    pub(crate) fn column_sizes(bytes: &[u8]) -> Result<Vec<(String, usize)>, CodecError> {
        crate::codec::column_sizes(bytes)
    }
}
