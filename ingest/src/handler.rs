//! The axum handler for `POST /api/v1/write`.
//!
//! Picks the protocol (1.0 or 2.0) from the headers before doing any work, takes the body (bounded by the router's
//! `DefaultBodyLimit`), then runs decompress + decode + append + commit on the ingest pool; the
//! answer comes back once the batch is fsynced (through the sync waiter thread if the fsync was not
//! already done), so a 2xx always means the samples are durable.
//! Every outcome goes through [`Error`]'s one `IntoResponse`. Logs one summary line per request:
//! debug on success, info for partial rejections, warn for undecodable requests, error for server
//! faults.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::{debug, error, info, warn};

use tsdb::metadata::{MetadataStore, MetricType, Update};

use crate::convert::{self, Outcome};
use crate::convert_v2;
use crate::decode::{self, Protocol};
use crate::error::{Error, Result};
use crate::{IngestState, Limits};

/// Decompression buffers up to this size are kept per ingest thread for the next request.
const KEEP_BUFFER_MAX_BYTES: usize = 16 << 20;

thread_local! {
    static PAYLOAD_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Response headers of remote-write 2.0: what the request stored.
pub const SAMPLES_WRITTEN_HEADER: &str = "x-prometheus-remote-write-samples-written";
/// See [`SAMPLES_WRITTEN_HEADER`].
pub const HISTOGRAMS_WRITTEN_HEADER: &str = "x-prometheus-remote-write-histograms-written";
/// See [`SAMPLES_WRITTEN_HEADER`].
pub const EXEMPLARS_WRITTEN_HEADER: &str = "x-prometheus-remote-write-exemplars-written";

/// `POST /api/v1/write`.
#[tracing::instrument(name = "remote_write", skip_all)]
pub(crate) async fn write(
    State(state): State<IngestState>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let compressed = body.as_ref().map_or(0, Bytes::len);
    state.metrics().request(compressed);
    let (protocol, result) = match negotiate(&headers) {
        Ok(p) => (Some(p), handle(&state, p, body).await),
        Err(e) => (None, Err(e)),
    };
    // Float samples stored (or identical to stored ones), also when others were rejected.
    let (written, histograms_written, exemplars_written) =
        result.as_ref().map_or((0, 0, 0), |o| (o.accepted, o.histograms_accepted, o.exemplars_stored));
    let result =
        result.and_then(|o| if o.report.is_empty() { Ok(o) } else { Err(Error::Rejected(Box::new(o.report))) });
    let status = match &result {
        Ok(_) => StatusCode::NO_CONTENT,
        Err(e) => e.status(),
    };
    state.metrics().response(status);
    let elapsed_us = started.elapsed().as_micros() as u64;
    let mut response = match result {
        Ok(o) => {
            debug!(
                bytes = compressed,
                payload_bytes = o.payload_bytes,
                series = o.summary.series,
                samples = o.summary.samples,
                in_order = o.commit.in_order,
                out_of_order = o.commit.out_of_order,
                deduplicated = o.commit.deduplicated,
                series_created = o.commit.series_created,
                exemplars_received = o.summary.exemplars,
                metadata = o.summary.metadata,
                elapsed_us,
                "remote-write request stored"
            );
            StatusCode::NO_CONTENT.into_response()
        }
        Err(Error::Rejected(report)) => {
            use crate::report::Reason;
            info!(
                bytes = compressed,
                received = report.received(),
                rejected = report.total(),
                out_of_bounds = report.count(Reason::OutOfBounds),
                out_of_order = report.count(Reason::OutOfOrder),
                too_old = report.count(Reason::TooOld),
                duplicate = report.count(Reason::Duplicate),
                invalid_labels = report.count(Reason::InvalidLabels),
                invalid_references = report.count(Reason::InvalidReference),
                invalid_histograms = report.count(Reason::InvalidHistogram),
                first = report.lines().first().map_or("", String::as_str),
                elapsed_us,
                "remote-write request partly rejected; valid samples stored"
            );
            Error::Rejected(report).into_response()
        }
        Err(e) if e.is_client_error() => {
            warn!(bytes = compressed, status = status.as_u16(), cause = %e, "remote-write request refused");
            e.into_response()
        }
        Err(e) => {
            error!(bytes = compressed, status = status.as_u16(), cause = %e, "remote-write request failed");
            e.into_response()
        }
    };
    if protocol == Some(Protocol::V2) {
        let h = response.headers_mut();
        h.insert(SAMPLES_WRITTEN_HEADER, HeaderValue::from(written));
        h.insert(HISTOGRAMS_WRITTEN_HEADER, HeaderValue::from(histograms_written));
        h.insert(EXEMPLARS_WRITTEN_HEADER, HeaderValue::from(exemplars_written));
    }
    response
}

/// The protocol of a request, from its `Content-Type` and `Content-Encoding` (415 if unsupported).
fn negotiate(headers: &HeaderMap) -> Result<Protocol> {
    let encoding =
        header_str(headers, &header::CONTENT_ENCODING).map_err(|value| Error::UnsupportedContentEncoding { value })?;
    decode::check_content_encoding(encoding)?;
    let content_type =
        header_str(headers, &header::CONTENT_TYPE).map_err(|value| Error::UnsupportedContentType { value })?;
    decode::check_content_type(content_type)
}

/// Runs a negotiated request; the outcome may hold rejections (the caller answers 400 then).
async fn handle(
    state: &IngestState,
    protocol: Protocol,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Outcome> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::BodyTooLarge { limit: state.limits.max_compressed_bytes }
        } else {
            Error::BodyRead { reason: rejection.body_text() }
        }
    })?;
    let head = Arc::clone(&state.head);
    let job = Job {
        limits: state.limits,
        protocol,
        metadata: state.metadata.clone(),
        created_timestamp_zero_ingestion: state.created_timestamp_zero_ingestion,
    };
    let syncer = state.syncer.clone();
    let in_flight = syncer.as_ref().map(wal::SyncWaiter::begin);
    let (answer, answered) = tokio::sync::oneshot::channel::<Result<Outcome>>();
    // Acknowledge (even a partial rejection) only once the stored samples are durable: the pool
    // thread answers at once only if there is nothing to wait for, else the sync waiter answers after
    // the fsync. Either way the pool thread goes on to the next request.
    state.pool.submit(move || {
        let processed = process(&head, &job, &body);
        // The batch is written: the sync waiter need not hold an fsync back for this request any more
        // (dropped before the ticket is queued, so the sync waiter never waits for its own ticket).
        drop(in_flight);
        match processed {
            Ok((outcome, Some(ticket))) => {
                let then: wal::Continuation = Box::new(move |synced| {
                    let _ = answer.send(synced.map(|()| outcome).map_err(storage_error));
                });
                match (&syncer, head.shared_wal()) {
                    (Some(s), _) => s.after_sync(ticket, then),
                    (None, Some(w)) => then(w.wait_synced(ticket)),
                    (None, None) => then(Ok(())),
                }
            }
            other => {
                let _ = answer.send(other.map(|(outcome, _)| outcome));
            }
        }
    });
    // A dropped sender means the job panicked (the pool or the sync waiter caught it).
    let outcome = answered.await.map_err(|_| Error::Internal { reason: "remote-write task panicked".into() })??;
    state.metrics().decoded(&outcome);
    Ok(outcome)
}

/// What a pool thread needs besides the head and the body.
struct Job {
    limits: Limits,
    protocol: Protocol,
    metadata: Option<Arc<MetadataStore>>,
    created_timestamp_zero_ingestion: bool,
}

/// A WAL that could not make a batch durable: 503 once closed, else 500.
fn storage_error(e: wal::Error) -> Error {
    Error::from(match e {
        wal::Error::Closed => tsdb::Error::Closed,
        e => tsdb::Error::from(e),
    })
}

/// Decompress, decode, append, commit (without waiting for the fsync). Blocking.
fn process(head: &tsdb::Head, job: &Job, body: &[u8]) -> Result<(Outcome, Option<tsdb::SyncTicket>)> {
    let mut buf = PAYLOAD_BUF.try_with(RefCell::take).unwrap_or_default();
    let result =
        decode::decompress(body, job.limits.max_decompressed_bytes, &mut buf).and_then(|()| match job.protocol {
            Protocol::V1 => {
                let appended = convert::append_request_unsynced(head, &buf);
                if let (Ok((outcome, _)), Some(store)) = (&appended, &job.metadata) {
                    if outcome.summary.metadata > 0 {
                        record_v1_metadata(store, &buf);
                    }
                }
                appended
            }
            Protocol::V2 => {
                let opts = convert_v2::Options {
                    created_timestamp_zero_ingestion: job.created_timestamp_zero_ingestion,
                    metadata: job.metadata.as_deref(),
                };
                convert_v2::append_request_unsynced(head, &buf, opts)
            }
        });
    if buf.capacity() <= KEEP_BUFFER_MAX_BYTES {
        // Kept with its stale bytes: `decompress` overwrites them and zero-fills only growth.
        let _ = PAYLOAD_BUF.try_with(|b| b.replace(buf));
    }
    result
}

/// Records a 1.0 request's metadata (the payload has been walked: it is well-formed).
fn record_v1_metadata(store: &MetadataStore, payload: &[u8]) {
    let mut updates = Vec::new();
    let walked = decode::metadata::walk_v1(payload, |m| {
        updates.push(Update { family: m.family, kind: MetricType::from_proto(m.kind), help: m.help, unit: m.unit });
    });
    match walked {
        Ok(()) => {
            store.update(updates);
        }
        Err(e) => warn!(cause = %e, "cannot read the metadata of a remote-write request"),
    }
}

/// A header as text; `Err` carries a printable form of a value that is not visible ASCII.
fn header_str<'h>(headers: &'h HeaderMap, name: &HeaderName) -> std::result::Result<Option<&'h str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => {
            v.to_str().map(Some).map_err(|_| tsdb::labels::clip(&String::from_utf8_lossy(v.as_bytes())).into_owned())
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_v2;
