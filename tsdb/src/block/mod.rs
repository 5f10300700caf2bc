//! Persisted blocks in Prometheus's on-disk format, readable by Prometheus, `promtool` and Thanos, and
//! blocks written by them readable here. See Prometheus's `tsdb/docs/format/`
//! (`index.md`, `chunks.md`, `tombstones.md`) and `tsdb/block.go`.
//!
//! ```text
//! <data>/<ULID>/                 one block, covering [minTime, maxTime)
//!     meta.json                  meta      — BlockMeta (ULID, time range, stats, compaction lineage)
//!     index                      index     — symbols, series (labels + chunk refs), postings, TOC
//!     chunks/000001 000002 …     chunks    — XOR and histogram chunks, ref = (segment << 32) | offset
//!     tombstones                 tombstones — deleted intervals per series (written empty; replaced by a deletion)
//! <data>/<ULID>.tmp-for-creation/ a block being written; renamed into place when complete
//! ```
//!
//! - [`write_block`] writes a block from sorted series; [`Block::open`] reads one.
//! - [`mmap`] is the crate's only `unsafe` code: read-only maps of immutable block files.
//! - Every decoder checks bounds, magic numbers, versions and CRC32C and returns
//!   [`BlockError::Corruption`] instead of panicking.

pub mod chunks;
mod encoding;
pub mod error;
pub mod index;
pub mod meta;
pub mod mmap;
pub mod reader;
pub mod tombstones;
pub mod ulid;
pub mod writer;

pub use error::{BlockError, Result};
pub use meta::{BlockDesc, BlockMeta, BlockStats, Compaction, StrataMeta};
pub use mmap::MappedSlice;
pub use reader::Block;
pub use ulid::Ulid;
pub use writer::{write_block, write_block_fallible, write_block_with, WriteOptions};

#[cfg(test)]
mod histogram_tests;
#[cfg(test)]
mod tests;
