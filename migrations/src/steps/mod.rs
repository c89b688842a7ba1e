//! The numbered steps. Each file is one version; never edit a released step.

mod s0001_initial;
mod s0002_request_runs;
mod s0003_week_tier;
mod s0004_wal_db;
mod s0005_segment_files;
mod s0006_request_run_files;
mod s0007_request_fingerprints;
mod s0008_rollup_v2;

pub(crate) use s0001_initial::INITIAL;
pub(crate) use s0002_request_runs::REQUEST_RUNS;
pub(crate) use s0003_week_tier::WEEK_TIER;
pub(crate) use s0004_wal_db::WAL_DB;
pub(crate) use s0005_segment_files::SEGMENT_FILES;
pub(crate) use s0006_request_run_files::REQUEST_RUN_FILES;
pub(crate) use s0007_request_fingerprints::REQUEST_FINGERPRINTS;
pub(crate) use s0008_rollup_v2::ROLLUP_V2;
