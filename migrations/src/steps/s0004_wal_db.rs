//! 0004 WAL database: the WAL moves from tree `wal` of the main sled
//! database into a sled database of its own, `<store>/wal/` (tree `wal`,
//! same keys and values).
//!
//! Nothing is rewritten through [`KvStore`] here: the two databases share
//! no transaction, so `sextant-storage` moves the entries itself at every
//! open, after the migrations ran (copies made durable first, originals
//! removed after; an interrupted move is finished by the next open). The
//! version bump makes an older build refuse the store: it would look for
//! unsealed batches in the main database and silently miss them.

use crate::{KvStore, Step};

pub(crate) const WAL_DB: Step = Step {
    version: 4,
    name: "0004_wal_db",
    apply,
};

fn apply(_store: &mut dyn KvStore) -> Result<(), String> {
    Ok(())
}
