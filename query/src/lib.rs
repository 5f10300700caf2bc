//! PromQL evaluation and the Prometheus HTTP query API.
//!
//! Layout:
//! - [`parser`]: PromQL text → AST (wrapper over the `promql-parser` crate).
//! - [`engine`]: the evaluator (Prometheus 2.x semantics) over a [`engine::Storage`].
//! - [`error`]: [`QueryError`], mapped to Prometheus's `errorType` and HTTP status.
#![forbid(unsafe_code)]

pub mod engine;
pub mod error;
pub mod parser;

pub use engine::{Engine, EngineOptions};
pub use error::QueryError;
