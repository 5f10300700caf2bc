//! The crate's single error type, [`Error`], and [`Result`].
//!
//! Owns only the error vocabulary: every variant carries its context (path, segment, offset)
//! so callers never have to parse a message. It must not depend on any other module.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in the WAL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("wal I/O error on {path}: {source}")]
    Io {
        /// File or directory the operation was on.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes on disk are not a valid WAL at `segment`/`offset`.
    #[error("wal corruption in {} at offset {offset}: {reason}", path.display())]
    Corruption {
        /// The segment file.
        path: PathBuf,
        /// Segment index the corruption was found in.
        segment: u32,
        /// Byte offset inside the segment: the start of the record that could not be read.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The WAL was closed; no more writes are accepted.
    #[error("wal is closed")]
    Closed,
    /// An earlier write or fsync failed and the WAL could not recover yet (see
    /// [`Wal`](crate::Wal)'s failure handling); it refuses writes until it does.
    #[error("wal cannot accept writes after an earlier error: {reason}")]
    Failed {
        /// The error that put the WAL in the failed state.
        reason: String,
    },
    /// The segment files in the directory are not numbered consecutively.
    #[error("wal segments are not sequential in {dir}: {previous} is followed by {next}")]
    NonSequentialSegments {
        /// The WAL directory.
        dir: PathBuf,
        /// The segment before the gap.
        previous: u32,
        /// The segment after the gap.
        next: u32,
    },
    /// The [`Options`](crate::Options) passed to [`Wal::open`](crate::Wal::open) are unusable.
    #[error("invalid wal options: {0}")]
    InvalidOptions(&'static str),
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
