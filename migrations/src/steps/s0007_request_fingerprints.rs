//! 0007 request fingerprints: request-index runs written from now on hold
//! a 64-bit keyed fingerprint of each request id (SipHash-2-4 of the id's
//! sort key under a per-store random key, `meta/request_fp_key`) instead
//! of the id: chunk frame version 2, directory entry version 3.
//!
//! As for 0004–0006, nothing is rewritten here: `sextant-storage` creates
//! the key at the first open that finds none (written and flushed before
//! any run uses it), keeps reading the runs of sort keys an older build
//! wrote, and turns them into fingerprint runs when it merges them. The
//! version bump makes an older build refuse the store: it would skip the
//! version 3 entries as unreadable and silently miss the joins to their
//! calls.

use crate::{KvStore, Step};

pub(crate) const REQUEST_FINGERPRINTS: Step = Step {
    version: 7,
    name: "0007_request_fingerprints",
    apply,
};

fn apply(_store: &mut dyn KvStore) -> Result<(), String> {
    Ok(())
}
