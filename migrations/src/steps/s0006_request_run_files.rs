//! 0006 request run files: the chunks of each request-index run move out
//! of tree `request_runs` into a file of their own,
//! `<store>/request_runs/<run id, 16 hex digits>.run`; the run's directory
//! entry (tree `request_run_dir`) becomes version 2, which adds each
//! chunk's length (its offsets in the file).
//!
//! As for 0004 and 0005, nothing is rewritten through [`KvStore`] here (a
//! `KvStore` cannot write files): `sextant-storage` moves every run whose
//! entry is still version 1 at each open, after the migrations ran — the
//! file first (fsynced), then the entry rewritten (flushed), then the
//! tree's chunks deleted; a move cut short is redone by the next open,
//! which first deletes every file without a version 2 entry. The version
//! bump makes an older build refuse the store: it would skip version 2
//! entries as unreadable and silently miss the joins to their calls.

use crate::{KvStore, Step};

pub(crate) const REQUEST_RUN_FILES: Step = Step {
    version: 6,
    name: "0006_request_run_files",
    apply,
};

fn apply(_store: &mut dyn KvStore) -> Result<(), String> {
    Ok(())
}
