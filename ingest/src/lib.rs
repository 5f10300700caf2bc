//! Prometheus remote-write 1.0 and 2.0 receiver: `POST /api/v1/write`.
//!
//! A request is a snappy block (not framed) holding a protobuf `prometheus.WriteRequest` (1.0) or
//! `io.prometheus.write.v2.Request` (2.0), told apart by `Content-Type`'s `proto` parameter. It is
//! decoded in one pass straight from the decompressed buffer (label pairs are borrowed, never copied
//! into `String`s), grouped by series, appended through one [`tsdb::head::Appender`] and committed once
//! (one WAL append, at most one shared fsync).
//!
//! Answers, following the remote-write spec (4xx = do not retry, 5xx = retry):
//!
//! | status | when |
//! |---|---|
//! | 204 | every sample accepted (identical re-sent samples count as accepted) |
//! | 400 | bad snappy (including a declared length the block cannot expand to), bad protobuf, unreadable body, or some samples rejected (invalid labels, out of bounds/order, too old, duplicate, invalid native histogram, a 2.0 series with a symbol reference out of range) — the valid samples of the request **are** stored; the plain-text body names the first rejections |
//! | 413 | compressed body over [`Limits::max_compressed_bytes`], or declared decompressed size over [`Limits::max_decompressed_bytes`] |
//! | 415 | `Content-Encoding` other than `snappy`, or `Content-Type` other than `application/x-protobuf[;proto=prometheus.WriteRequest]` or `application/x-protobuf;proto=io.prometheus.write.v2.Request` (both may be absent: 1.0, snappy) |
//! | 500 / 503 | storage failed (WAL I/O) / storage closed; nothing was acknowledged |
//!
//! 2.0 answers (2xx and 4xx after negotiation, 5xx too) carry `X-Prometheus-Remote-Write-Samples-Written`,
//! `-Histograms-Written` and `-Exemplars-Written`: the float samples, native histograms and
//! exemplars stored. Metric metadata (1.0 `metadata`, 2.0 series metadata) goes to the
//! [`tsdb::metadata::MetadataStore`] given with [`IngestState::with_metadata`]. Exemplars of series
//! with an accepted sample or histogram are committed with the samples (the WAL, then the head's
//! exemplar store, [`tsdb::head::Options::exemplars`]); a refused exemplar never fails a request.
//!
//! Layout:
//! - [`proto`]: prost structs, the reference definition of the messages (used to encode in tests/benches).
//! - [`decode`]: pure — header checks, limits, snappy, the borrowing protobuf walk.
//! - [`convert`]: walk → appender, gathering rejections into a [`Report`]. Blocking.
//! - [`convert_v2`]: the same for 2.0 requests (symbol references, created timestamps, metadata).
//! - [`proto_v2`]: prost structs of the 2.0 messages (tests and benches encode with them).
//! - `handler`: the axum handler; runs [`convert`] on the ingest pool, which hands the commit's fsync
//!   wait to the WAL's [`wal::SyncWaiter`] (see [`GROUP_WAIT`]).
//! - `pool`: the ingest pool, one thread per core.
//! - [`error`]: [`Error`] and its single mapping to HTTP.
//! - [`metrics`]: request counters for the server's `/metrics`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod convert;
pub mod convert_v2;
pub mod decode;
pub mod error;
mod handler;
pub mod metrics;
mod pool;
pub mod proto;
pub mod proto_v2;
pub mod report;

use std::sync::Arc;
use std::time::Duration;

/// How long the WAL's sync waiter holds an fsync back for requests that are being appended right
/// now, so that one fsync covers them too: at 500-sample requests this halved the fsyncs (and the
/// kernel time they cost) at unchanged throughput for 2000-sample requests. A request is answered
/// from the waiter thread once its batch is durable, so no thread waits per request: waiting on
/// tokio's blocking pool woke a blocking thread per request and the handler's worker twice, a large
/// part of the server's CPU with Prometheus agents' 500-sample requests (docs/BENCHMARKS.md).
pub const GROUP_WAIT: Duration = Duration::from_micros(800);

use axum::extract::DefaultBodyLimit;
use axum::routing::post;

pub use error::{Error, Result};
pub use metrics::{IngestMetrics, MetricsSnapshot};
pub use report::{Reason, Report};

/// The path of the remote-write endpoint.
pub const WRITE_PATH: &str = "/api/v1/write";
/// Default [`Limits::max_compressed_bytes`]: 32 MiB.
pub const DEFAULT_MAX_COMPRESSED_BYTES: usize = 32 << 20;
/// Default [`Limits::max_decompressed_bytes`]: 256 MiB.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 256 << 20;

/// Size limits of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body (snappy-compressed), in bytes; larger → 413.
    pub max_compressed_bytes: usize,
    /// Largest decompressed size a body may declare, in bytes; larger → 413, checked before allocating.
    pub max_decompressed_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_compressed_bytes: DEFAULT_MAX_COMPRESSED_BYTES,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}

/// Shared state of the remote-write endpoint. Cheap to clone.
#[derive(Clone)]
pub struct IngestState {
    /// The head samples are appended to (already replayed).
    pub head: Arc<tsdb::Head>,
    /// Request size limits.
    pub limits: Limits,
    metrics: Arc<IngestMetrics>,
    pool: Arc<pool::IngestPool>,
    /// Answers requests once their WAL batch is fsynced; `None` without a WAL.
    syncer: Option<wal::SyncWaiter>,
    /// Where metric metadata from requests goes; `None` drops it.
    metadata: Option<Arc<tsdb::metadata::MetadataStore>>,
    /// Prometheus's `created-timestamp-zero-ingestion` feature (remote-write 2.0 only).
    created_timestamp_zero_ingestion: bool,
}

impl IngestState {
    /// State with fresh counters, an ingest pool of one thread per core and a WAL sync waiter thread.
    /// Fails only if the OS refuses to start a thread.
    pub fn new(head: Arc<tsdb::Head>, limits: Limits) -> std::io::Result<IngestState> {
        Ok(IngestState {
            syncer: head.shared_wal().map(|w| wal::SyncWaiter::start(w, GROUP_WAIT)).transpose()?,
            head,
            limits,
            metrics: Arc::default(),
            pool: Arc::new(pool::IngestPool::per_core()?),
            metadata: None,
            created_timestamp_zero_ingestion: false,
        })
    }

    /// Records the metric metadata of requests (1.0 `metadata`, 2.0 series metadata) in `store`.
    #[must_use]
    pub fn with_metadata(mut self, store: Arc<tsdb::metadata::MetadataStore>) -> IngestState {
        self.metadata = Some(store);
        self
    }

    /// Turns on Prometheus's `created-timestamp-zero-ingestion` for 2.0 requests: a zero sample at a
    /// series' created timestamp ([`convert_v2::created_zero_sample`]).
    #[must_use]
    pub fn with_created_timestamp_zero_ingestion(mut self, on: bool) -> IngestState {
        self.created_timestamp_zero_ingestion = on;
        self
    }

    /// The endpoint's counters (the server renders them on `/metrics`).
    pub fn metrics(&self) -> &Arc<IngestMetrics> {
        &self.metrics
    }
}

/// The remote-write router: `POST /api/v1/write`, with the body limit set from `state.limits`.
pub fn router(state: IngestState) -> axum::Router {
    let limit = state.limits.max_compressed_bytes;
    axum::Router::new().route(WRITE_PATH, post(handler::write)).layer(DefaultBodyLimit::max(limit)).with_state(state)
}
