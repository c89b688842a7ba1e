//! Storage errors. One enum; variants are named after the failed operation.

use std::fmt;

/// What class of failure an error is; the server maps this to an HTTP status.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidInput,
    NotFound,
    Corrupted,
    Unavailable,
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Corrupted => "corrupted",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal",
        })
    }
}

/// A decoding failure: the bytes at `what` are not what the format says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupted {what}: {reason}")]
pub struct CodecError {
    /// Which structure failed to decode, e.g. "segment column latency_ms".
    pub what: String,
    pub reason: String,
}

impl CodecError {
    pub fn new(what: impl Into<String>, reason: impl Into<String>) -> CodecError {
        CodecError {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid input: {0}")]
    Invalid(#[from] sextant_model::ValidationError),
    #[error("opening the store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the store at {path} has format version {found}; this build reads up to {supported} — upgrade Sextant")]
    NewerFormat {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("migrating the store: {0}")]
    Migrate(String),
    #[error("reading segment {segment_id}: {source}")]
    ReadSegment {
        segment_id: u64,
        #[source]
        source: CodecError,
    },
    #[error("reading {tree} key {key}: {source}")]
    Decode {
        tree: &'static str,
        key: String,
        #[source]
        source: CodecError,
    },
    #[error("{op}: the database failed: {message}")]
    Db { op: &'static str, message: String },
    #[error("the store is shutting down")]
    ShuttingDown,
}

impl StorageError {
    /// A [`StorageError::Decode`] naming `tree` and `key` (as hex).
    pub(crate) fn decode(tree: &'static str, key: &[u8], source: CodecError) -> StorageError {
        StorageError::Decode {
            tree,
            key: hex(key),
            source,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::Invalid(_) => ErrorKind::InvalidInput,
            StorageError::NewerFormat { .. } | StorageError::Open { .. } => ErrorKind::Unavailable,
            StorageError::Migrate(_) => ErrorKind::Internal,
            StorageError::ReadSegment { .. } | StorageError::Decode { .. } => ErrorKind::Corrupted,
            StorageError::Db { .. } => ErrorKind::Internal,
            StorageError::ShuttingDown => ErrorKind::Unavailable,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Lowercase hex of `b` (keys in errors and reports).
pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
