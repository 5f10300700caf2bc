//! PromQL evaluation and the Prometheus HTTP query API.
//!
//! Layout:
//! - [`complexity`]: bounds on a query's size and nesting (the parser and evaluator recurse).
//! - [`parser`]: PromQL text → AST (wrapper over the `promql-parser` crate).
//! - [`engine`]: the evaluator (Prometheus 2.x semantics) over a [`engine::Storage`].
//! - [`storage`]: the engine's storage over `tsdb::Head`.
//! - [`api`]: the `/api/v1` HTTP handlers and Prometheus's JSON; remote read ([`api::remote_read`]).
//! - [`error`]: [`QueryError`], mapped to Prometheus's `errorType` and HTTP status.
#![forbid(unsafe_code)]

pub mod api;
pub mod complexity;
pub mod engine;
pub mod error;
pub mod parser;
#[doc(hidden)]
pub mod promqltest;
pub mod storage;

pub use api::{router, status, QueryState};
pub use engine::{Engine, EngineOptions};
pub use error::QueryError;
