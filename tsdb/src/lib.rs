//! Strata's storage engine.
//!
//! Layout:
//! - [`labels`]: validated, sorted label sets and matchers.
//! - [`chunkenc`]: Prometheus-compatible XOR (Gorilla) chunks; no I/O, no locks.
//! - [`head`]: the in-memory head block: series, in-order and out-of-order chunks, postings, WAL.
//! - [`querier`]: reading series and samples back, merged, sorted and deduplicated.
#![deny(unsafe_code)]

pub mod chunkenc;
