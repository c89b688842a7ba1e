//! 0001 initial: an empty store gets format version 1.
//!
//! Version 1's trees are created empty by the storage engine on open; this
//! step records the creation time so a store's age is known, and the
//! runner writes the version itself.

use crate::{KvStore, Step, META_TREE};

pub(crate) const INITIAL: Step = Step {
    version: 1,
    name: "0001_initial",
    apply,
};

fn apply(store: &mut dyn KvStore) -> Result<(), String> {
    if store.get(META_TREE, b"created_by")?.is_none() {
        store.put(META_TREE, b"created_by", b"sextant format 1")?;
    }
    Ok(())
}
