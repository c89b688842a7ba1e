//! sextant-storage: the storage engine. The only crate that touches sled or files.
//!
//! **Architecture Invariant:** every sled call lives in the `db` module, behind
//! typed tree definitions; a second backend is a change to that module only.
//!
//! **Invariant:** an append is acknowledged only after the WAL holds it durably
//! (in `Durability::Batch`), and after a crash at any instant reopening yields
//! every acknowledged event exactly once, in raw data and in rollups.

mod api;
mod codec;
mod config;
mod db;
mod error;
mod frame;
mod handle_cache;
mod numbered;
mod rollup;
mod run_files;
mod seg_files;
mod store;

pub use api::{
    Coverage, GroupKey, MaintenanceReport, RequestRef, RowFilter, SegmentFileStats, Space,
    StoreStats, TraceSummary, VerifyReport, WriteSet,
};
pub use config::{DigestSizes, Durability, Retention, StoreConfig};
pub use error::{CodecError, ErrorKind, Result, StorageError};
pub use rollup::{
    dequantize_mean, Digest, DigestField, DigestRef, Rollup, RollupTotals, RollupView,
};
pub use store::{PartSink, Store};

/// The on-disk format version this build writes.
pub const FORMAT_VERSION: u32 = 8;
