//! Segmented write-ahead log. Knows nothing of the TSDB: records are opaque byte strings.
//!
//! # Layout
//!
//! - [`error`]: the crate's [`Error`] and [`Result`].
//! - `segment`: segment file names, listing, creation, fsync of files and the directory.
//! - `record`: fragment framing, pure functions on byte slices.
//! - `writer`: [`Wal`], group commit, rotation, [`SyncPolicy`].
//! - `reader`: [`Reader`], records across segments in order.
//! - `repair`: cutting a torn or corrupt tail at open ([`RepairReport`]).
//! - `waiter`: [`SyncWaiter`], one thread waiting for group-commit fsyncs on behalf of writers.
//! - [`checkpoint`]: the checkpoint directories inside a WAL directory: names, listing, committing
//!   a new one, setting a damaged one aside.
//!
//! # On-disk format
//!
//! The same framing as Prometheus's `tsdb/wlog`, except that the checksum is CRC32 (IEEE,
//! `crc32fast`) rather than CRC32C, and the compression bits are never set.
//!
//! A WAL is a directory of segment files named by their index zero-padded to 8 digits
//! (`00000000`, `00000001`, …), consecutive, with no header. A segment is a sequence of 32 KiB
//! pages; only the last page of a segment may be short. A page holds fragments:
//!
//! ```text
//!  0        1        2        3        4        5        6        7
//! +--------+--------+--------+--------+--------+--------+--------+------------------+
//! |  type  |   len (u16 BE)  |          crc32 (u32 BE)           | payload[len] ... |
//! +--------+--------+--------+--------+--------+--------+--------+------------------+
//!
//! type (u8): bits 7..3 reserved, must be 0; bits 2..0 kind:
//!   0 padding  the rest of the page is zeros
//!   1 full     a whole record
//!   2 first    ┐
//!   3 middle   ├ a record split across pages: first middle* last
//!   4 last     ┘
//! crc32: IEEE CRC32 of the payload bytes only.
//! ```
//!
//! A fragment never crosses a page: when fewer than 8 bytes remain in a page (7 for an empty
//! record) the rest of the page is zero padding. A record never crosses a segment: when it does
//! not fit in what is left of the current segment, a new segment is cut first. Zero bytes where
//! a fragment would start (for example a preallocated or zero-filled tail) read as padding.
//!
//! # Recovery
//!
//! [`Wal::open`] scans all segments. A torn tail (nothing readable after the damage in its
//! segment) is cut, also in a segment followed by newer ones, as a failed write leaves it. Other
//! damage cuts its segment at the unreadable record and deletes every later segment. Then a new
//! segment is started. [`Reader`] replays what is left. No byte sequence on disk makes either
//! panic. A [`Wal`] whose write or fsync failed (full disk, I/O error) recovers without a restart
//! once the disk accepts writes again (see `writer`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod checkpoint;
pub mod error;
pub mod histogram;
mod reader;
pub mod record;
mod repair;
mod segment;
mod waiter;
mod writer;

#[cfg(test)]
mod tests;

pub use error::{Error, Result};
pub use reader::Reader;
pub use repair::RepairReport;
pub use segment::SegmentIndex;
pub use waiter::{Continuation, InFlight, SyncWaiter};
pub use writer::{Options, SyncPolicy, SyncTicket, Wal, DEFAULT_SEGMENT_SIZE_BYTES};
