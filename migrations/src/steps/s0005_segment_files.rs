//! 0005 segment files: sealed segment bytes move out of sled into
//! append-only files of the store's own, `<store>/segments/*.seg`; the
//! value of tree `segments` becomes a location record (file number,
//! offset, length; frame version 0x81) instead of the framed segment.
//!
//! Nothing is rewritten through [`KvStore`] here: the bytes go to files,
//! which a `KvStore` cannot write, so `sextant-storage` moves them itself
//! at every open, after the migrations ran: per batch, the bytes are
//! appended and fsynced first, then one transaction replaces the inline
//! values by their locations. An interrupted move is finished by the next
//! open (values still inline are moved again; bytes appended for them but
//! never referenced are deleted with their file). The version bump makes
//! an older build refuse the store: it would read location records as
//! segments.

use crate::{KvStore, Step};

pub(crate) const SEGMENT_FILES: Step = Step {
    version: 5,
    name: "0005_segment_files",
    apply,
};

fn apply(_store: &mut dyn KvStore) -> Result<(), String> {
    Ok(())
}
