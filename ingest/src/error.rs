//! The one error type of a remote-write request and its mapping to HTTP, in one place.
//!
//! Split by who has to act: the sender's mistakes are 4xx (senders must not retry them), server faults
//! are 5xx (senders retry with backoff). [`Error::is_client_error`] sorts them; [`IntoResponse`] maps them.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::decode::ProtoError;
use crate::report::Report;

/// Why a remote-write request was not answered with 204.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `Content-Type` is neither remote-write 1.0 nor 2.0 protobuf.
    #[error("unsupported Content-Type {value:?}: this endpoint accepts remote-write 1.0 (application/x-protobuf;proto=prometheus.WriteRequest) and 2.0 (application/x-protobuf;proto=io.prometheus.write.v2.Request)")]
    UnsupportedContentType {
        /// The header as sent.
        value: String,
    },
    /// `Content-Encoding` is not snappy.
    #[error("unsupported Content-Encoding {value:?}: this endpoint accepts snappy (block format)")]
    UnsupportedContentEncoding {
        /// The header as sent.
        value: String,
    },
    /// The compressed body is larger than [`crate::Limits::max_compressed_bytes`].
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body could not be read (connection error, malformed chunking).
    #[error("cannot read request body: {reason}")]
    BodyRead {
        /// What went wrong.
        reason: String,
    },
    /// The snappy block declares more than [`crate::Limits::max_decompressed_bytes`].
    #[error("snappy block declares {declared} decompressed bytes, over the limit of {limit} bytes")]
    DecompressedTooLarge {
        /// Length declared in the snappy header.
        declared: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The snappy block declares a decompressed length its size cannot produce
    /// ([`crate::decode::snappy_max_decompressed_len`]).
    #[error("invalid snappy block: it declares {declared} decompressed bytes, but {compressed} compressed bytes can expand to at most {possible} bytes")]
    SnappyLengthImpossible {
        /// Length declared in the snappy header.
        declared: usize,
        /// Size of the compressed body.
        compressed: usize,
        /// Most bytes `compressed` bytes can decompress to.
        possible: u64,
    },
    /// The body is not a valid snappy block.
    #[error("invalid snappy block: {0}")]
    Snappy(#[source] snap::Error),
    /// The decompressed body is not a valid protobuf `WriteRequest`.
    #[error("invalid protobuf WriteRequest: {0}")]
    Protobuf(#[from] ProtoError),
    /// The decompressed body is not a valid remote-write 2.0 `io.prometheus.write.v2.Request`.
    #[error("invalid protobuf io.prometheus.write.v2.Request: {0}")]
    ProtobufV2(#[from] crate::decode::v2::RequestError),
    /// Some samples were rejected (every valid sample of the request was stored).
    #[error("{0}")]
    Rejected(Box<Report>),
    /// Storage failed (WAL I/O, closed head); nothing of the request was acknowledged.
    #[error("storage error: {0}")]
    Storage(#[from] tsdb::Error),
    /// A bug or a panic in the request task.
    #[error("internal error: {reason}")]
    Internal {
        /// What went wrong.
        reason: String,
    },
}

/// Result of request processing.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::UnsupportedContentType { .. } | Error::UnsupportedContentEncoding { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Error::BodyTooLarge { .. } | Error::DecompressedTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyRead { .. }
            | Error::SnappyLengthImpossible { .. }
            | Error::Snappy(_)
            | Error::Protobuf(_)
            | Error::ProtobufV2(_)
            | Error::Rejected(_) => StatusCode::BAD_REQUEST,
            Error::Storage(tsdb::Error::Closed) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Storage(_) | Error::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// True if the sender is at fault (4xx: it must not retry); false for server faults (5xx: retry).
    pub fn is_client_error(&self) -> bool {
        self.status().is_client_error()
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut body = self.to_string();
        body.push('\n');
        (self.status(), [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
    }
}
