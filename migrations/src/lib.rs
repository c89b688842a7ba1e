//! sextant-migrations: numbered on-disk format steps.
//!
//! OWNER: engine helper.
