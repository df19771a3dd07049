//! [`BlockError`]: everything that can go wrong writing or reading a block.
//!
//! Every variant names the file or block it concerns, so that a message on
//! the terminal says where to look. Reading a damaged block must end here,
//! never in a panic.

use std::io;
use std::path::PathBuf;

/// Why a block could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A file or directory operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The Parquet library could not write or read a file.
    #[error("{path}: parquet: {source}")]
    Parquet {
        /// The Parquet file concerned.
        path: PathBuf,
        /// The library's error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Building or reading Arrow arrays failed.
    #[error("{path}: arrow: {source}")]
    Arrow {
        /// The Parquet file concerned.
        path: PathBuf,
        /// The library's error.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// A file decoded, but its content is not what this format writes.
    #[error("{path}: corrupt block file: {detail}")]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// `meta.json` is not valid JSON or lacks a field.
    #[error("{path}: invalid block meta: {source}")]
    Meta {
        /// The `meta.json` concerned.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The block was written in a format this build does not read.
    #[error(
        "{path}: block format version {version:?} is not supported (this build reads {supported})"
    )]
    UnknownVersion {
        /// The `meta.json` concerned.
        path: PathBuf,
        /// The version it names.
        version: String,
        /// The versions this build reads.
        supported: &'static str,
    },
    /// The directory is not a finished block (e.g. a leftover `.tmp-*` dir).
    #[error("{path}: not a block: {reason}")]
    NotABlock {
        /// The directory concerned.
        path: PathBuf,
        /// Why it is not one.
        reason: String,
    },
    /// A block id that cannot name a directory.
    #[error("block id {id:?} is invalid: want 1 to 128 characters of A-Z, a-z, 0-9, '-' or '_', not starting with '-'")]
    InvalidId {
        /// The rejected id.
        id: String,
    },
    /// A block with this id already exists.
    #[error("{path}: a block with this id already exists")]
    Exists {
        /// The existing block directory.
        path: PathBuf,
    },
    /// [`write_block`](super::write_block) was given no spans.
    #[error("block {id}: no spans to write")]
    Empty {
        /// The block id.
        id: String,
    },
    /// An attribute value nests deeper than the block format stores.
    #[error("span {span} of trace {trace}: attribute {key:?} nests deeper than {max} levels")]
    ValueTooDeep {
        /// Trace id, hex.
        trace: String,
        /// Span id, hex.
        span: String,
        /// The attribute key.
        key: String,
        /// The nesting limit.
        max: usize,
    },
}

impl BlockError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> BlockError {
        BlockError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parquet(
        path: impl Into<PathBuf>,
        source: parquet::errors::ParquetError,
    ) -> BlockError {
        BlockError::Parquet {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn arrow(path: impl Into<PathBuf>, source: arrow_schema::ArrowError) -> BlockError {
        BlockError::Arrow {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, detail: impl Into<String>) -> BlockError {
        BlockError::Corrupt {
            path: path.into(),
            detail: detail.into(),
        }
    }
}
