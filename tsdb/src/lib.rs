//! Strata's storage engine.
//!
//! Layout:
//! - [`labels`]: validated, sorted label sets and matchers.
//! - [`chunkenc`]: Prometheus-compatible XOR (Gorilla) chunks; no I/O, no locks.
//! - [`chunk`]: a series' chunks as readers, compaction and the block writer pass them around.
//! - [`intervals`]: deleted time intervals of a series (tombstones), as readers apply them.
//! - [`merge`]: the one first-wins merge of a series' chunks into sorted samples.
//! - [`block`]: Prometheus-compatible persisted blocks (meta.json, index, chunks, tombstones).
//! - [`head`]: the in-memory head block: series, in-order and out-of-order chunks, postings, WAL.
//! - [`record`]: the tsdb's WAL record formats.
//! - [`db`]: the data directory as a whole: head, blocks, compaction, retention.
//! - [`exemplars`]: a bounded in-memory circular buffer of remote-written exemplars.
//! - [`metadata`]: the latest type/help/unit per metric family, persisted beside the blocks.
//! - [`delay_compact`]: which blocks compaction may use while a shipper has not uploaded them.
//! - [`snapshot`]: snapshots of the data directory (hard-linked blocks plus the head as a block).
//! - `pending_reads`: the open readers and the block list each took, which head truncation waits for.
//! - [`querier`]: reading series and samples back, merged, sorted and deduplicated.
//! - [`error`]: server faults ([`Error`]) apart from per-sample rejections ([`AppendError`]).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod block;
pub mod chunk;
pub mod chunkenc;
pub mod db;
pub mod delay_compact;
pub mod error;
pub mod exemplars;
pub mod head;
pub mod histogram;
pub mod intervals;
pub mod labels;
pub mod merge;
pub mod metadata;
mod pending_reads;
mod prefetch;
pub mod querier;
pub mod recode;
pub mod record;
pub mod snapshot;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod varint;

pub use db::{Db, DbOptions};
pub use error::{AppendError, Error, RejectReason, Result};
pub use head::{Head, Options};
pub use labels::{Labels, MatchType, Matcher};
pub use querier::{Querier, Series};
pub use wal::SyncTicket;
