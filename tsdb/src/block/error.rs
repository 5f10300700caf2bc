//! Errors of block reading and writing, convertible into [`crate::Error`].

use std::borrow::Cow;
use std::path::PathBuf;

/// Why a block could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// A file or directory operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A block file's bytes are not what the format says.
    #[error("corrupt {path} at offset {offset}: {reason}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset in the file where decoding failed (0 when unknown or file-wide).
        offset: u64,
        /// What was wrong.
        reason: Cow<'static, str>,
    },
    /// `meta.json` is not valid JSON of the expected shape.
    #[error("meta.json {path}: {source}")]
    Meta {
        /// The meta.json path.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// Reading the series to write failed (e.g. a head chunk file could not be read).
    #[error("reading the input of a block: {source}")]
    Input {
        /// Why.
        source: Box<crate::Error>,
    },
    /// The caller handed the writer data that breaks the format's rules (unsorted series, overlapping chunks…).
    #[error("invalid block input: {reason}")]
    InvalidInput {
        /// What was wrong.
        reason: String,
    },
}

/// Result of block operations.
pub type Result<T> = std::result::Result<T, BlockError>;

impl BlockError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> BlockError {
        let path = path.into();
        move |source| BlockError::Io { op, path, source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, c: Corrupt) -> BlockError {
        BlockError::Corruption { path: path.into(), offset: c.offset, reason: Cow::Borrowed(c.reason) }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> BlockError {
        BlockError::InvalidInput { reason: reason.into() }
    }

    /// True if the error says the bytes on disk are damaged (as opposed to I/O or caller errors).
    pub fn is_corruption(&self) -> bool {
        matches!(self, BlockError::Corruption { .. } | BlockError::Meta { .. })
    }
}

/// A decoding failure without its file: cheap to build, the caller adds the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt {
    pub offset: u64,
    pub reason: &'static str,
}

impl Corrupt {
    pub(crate) fn at(offset: usize, reason: &'static str) -> Corrupt {
        Corrupt { offset: offset as u64, reason }
    }
}

impl From<BlockError> for crate::Error {
    fn from(e: BlockError) -> crate::Error {
        match e {
            BlockError::Io { op, path, source } => crate::Error::Io { op, path, source },
            BlockError::Corruption { path, offset, reason } => crate::Error::Corruption {
                what: format!("{} (offset {offset})", path.display()),
                reason: reason.into_owned(),
            },
            BlockError::Meta { path, source } => {
                crate::Error::Corruption { what: path.display().to_string(), reason: source.to_string() }
            }
            BlockError::Input { source } => *source,
            BlockError::InvalidInput { reason } => crate::Error::Io {
                op: "write block",
                path: PathBuf::new(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, reason),
            },
        }
    }
}
