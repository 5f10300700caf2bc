//! Query errors and their mapping to Prometheus's `errorType` and HTTP status.

use axum::http::StatusCode;

/// Everything a query or API request can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// Bad request parameters or a PromQL parse error (`bad_data`, 400).
    #[error("{0}")]
    BadData(String),
    /// A valid query using something Strata does not implement (`bad_data`, 400).
    #[error("not supported: {0}")]
    NotSupported(String),
    /// An evaluation error (`execution`, 422).
    #[error("{0}")]
    Execution(String),
    /// Too many samples loaded (`execution`, 422).
    #[error("query processing would load too many samples into memory in {0}")]
    TooManySamples(&'static str),
    /// The query ran longer than its timeout (`timeout`, 503).
    #[error("query timed out in {0}")]
    Timeout(&'static str),
    /// A server-side fault (`internal`, 500).
    #[error("{0}")]
    Internal(String),
}

/// Result alias.
pub type Result<T, E = QueryError> = std::result::Result<T, E>;

impl QueryError {
    /// Prometheus's `errorType` string.
    pub fn error_type(&self) -> &'static str {
        match self {
            QueryError::BadData(_) | QueryError::NotSupported(_) => "bad_data",
            QueryError::Execution(_) | QueryError::TooManySamples(_) => "execution",
            QueryError::Timeout(_) => "timeout",
            QueryError::Internal(_) => "internal",
        }
    }

    /// HTTP status Prometheus uses for this error type.
    pub fn status(&self) -> StatusCode {
        match self {
            QueryError::BadData(_) | QueryError::NotSupported(_) => StatusCode::BAD_REQUEST,
            QueryError::Execution(_) | QueryError::TooManySamples(_) => StatusCode::UNPROCESSABLE_ENTITY,
            QueryError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            QueryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Shorthand for an execution error.
    pub fn exec(msg: impl Into<String>) -> QueryError {
        QueryError::Execution(msg.into())
    }

    /// Shorthand for an unsupported feature.
    pub fn unsupported(msg: impl Into<String>) -> QueryError {
        QueryError::NotSupported(msg.into())
    }
}

impl From<crate::parser::ParseError> for QueryError {
    fn from(e: crate::parser::ParseError) -> Self {
        QueryError::BadData(e.msg)
    }
}
