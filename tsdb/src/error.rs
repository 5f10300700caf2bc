//! Errors of the tsdb crate, split by who has to act: [`AppendError`] is the sender's mistake (one sample
//! rejected, the rest of the request goes on), [`Error`] is a server fault (the request must be retried).

use std::path::PathBuf;

use crate::histogram::HistogramError;
use crate::labels::LabelError;

/// A server-side fault: storage I/O, corruption, shutdown. Senders should retry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The write-ahead log failed.
    #[error("write-ahead log: {0}")]
    Wal(#[from] wal::Error),
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
    /// Bytes on disk are not what they should be.
    #[error("corruption in {what}: {reason}")]
    Corruption {
        /// Which file or record.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// A chunk's bytes could not be decoded.
    #[error("{0}")]
    Decode(#[from] crate::chunk::DecodeError),
    /// The head is closed.
    #[error("storage is closed")]
    Closed,
}

/// Maps an I/O error on `path` during `op` to [`Error::Io`]: `.map_err(io_error("rename", &path))`.
pub(crate) fn io_error<'p>(op: &'static str, path: &'p std::path::Path) -> impl FnOnce(std::io::Error) -> Error + 'p {
    move |source| Error::Io { op, path: path.to_owned(), source }
}

/// Result of tsdb operations that can fail on the server side.
pub type Result<T> = std::result::Result<T, Error>;

/// Why one sample was rejected. Texts follow Prometheus's so senders and operators recognise them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppendError {
    /// Older than the head accepts (window 0): `t < head max time − chunk range / 2`.
    #[error("out of bounds")]
    OutOfBounds,
    /// Older than the series' newest sample and out-of-order ingestion is off (window 0).
    #[error("out of order sample")]
    OutOfOrder,
    /// Older than the head's max time minus the out-of-order window.
    #[error("too old sample")]
    TooOld,
    /// A different value is already stored at this timestamp.
    #[error("duplicate sample for timestamp {t}; overrides not allowed: existing {existing}, new value {new}")]
    Duplicate {
        /// The timestamp.
        t: i64,
        /// The stored value.
        existing: f64,
        /// The rejected value.
        new: f64,
    },
    /// Newer than the wall clock plus the creation grace period.
    #[error("sample timestamp {t} too far in the future (newest accepted: {max_t}; the sender's clock is ahead?)")]
    TooFarInFuture {
        /// The timestamp.
        t: i64,
        /// The newest timestamp accepted when the request arrived.
        max_t: i64,
    },
    /// The label set is invalid.
    #[error("invalid labels: {0}")]
    InvalidLabels(#[from] LabelError),
    /// A different native histogram is already stored at this timestamp (Prometheus's "duplicate
    /// sample for timestamp" for histograms).
    #[error("duplicate sample for timestamp {t}; overrides not allowed: a different histogram is stored there")]
    DuplicateHistogram {
        /// The timestamp.
        t: i64,
    },
    /// The native histogram is invalid (Prometheus's `Validate` rules); the error names what is wrong.
    #[error("invalid histogram: {0}")]
    InvalidHistogram(#[from] HistogramError),
}

/// Reason codes for counting rejections (metrics, request summaries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// See [`AppendError::OutOfBounds`].
    OutOfBounds,
    /// See [`AppendError::OutOfOrder`].
    OutOfOrder,
    /// See [`AppendError::TooOld`].
    TooOld,
    /// See [`AppendError::Duplicate`].
    Duplicate,
    /// See [`AppendError::TooFarInFuture`].
    TooFarInFuture,
    /// See [`AppendError::InvalidLabels`].
    Invalid,
    /// See [`AppendError::InvalidHistogram`].
    InvalidHistogram,
}

impl AppendError {
    /// The reason code of this rejection.
    pub fn reason(&self) -> RejectReason {
        match self {
            AppendError::OutOfBounds => RejectReason::OutOfBounds,
            AppendError::OutOfOrder => RejectReason::OutOfOrder,
            AppendError::TooOld => RejectReason::TooOld,
            AppendError::Duplicate { .. } | AppendError::DuplicateHistogram { .. } => RejectReason::Duplicate,
            AppendError::TooFarInFuture { .. } => RejectReason::TooFarInFuture,
            AppendError::InvalidLabels(_) => RejectReason::Invalid,
            AppendError::InvalidHistogram(_) => RejectReason::InvalidHistogram,
        }
    }
}
