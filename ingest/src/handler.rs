//! The axum handler for `POST /api/v1/write`.
//!
//! Checks the headers before doing any work, takes the body (bounded by the router's
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
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::{debug, error, info, warn};

use crate::convert::{self, Outcome};
use crate::decode;
use crate::error::{Error, Result};
use crate::{IngestState, Limits};

/// Decompression buffers up to this size are kept per ingest thread for the next request.
const KEEP_BUFFER_MAX_BYTES: usize = 16 << 20;

thread_local! {
    static PAYLOAD_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

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
    let result = handle(&state, &headers, body).await;
    let status = match &result {
        Ok(_) => StatusCode::NO_CONTENT,
        Err(e) => e.status(),
    };
    state.metrics().response(status);
    let elapsed_us = started.elapsed().as_micros() as u64;
    match result {
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
                exemplars_ignored = o.summary.exemplars,
                metadata_ignored = o.summary.metadata,
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
                native_histograms = report.count(Reason::NativeHistogram),
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
    }
}

async fn handle(
    state: &IngestState,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Outcome> {
    let encoding =
        header_str(headers, &header::CONTENT_ENCODING).map_err(|value| Error::UnsupportedContentEncoding { value })?;
    decode::check_content_encoding(encoding)?;
    let content_type =
        header_str(headers, &header::CONTENT_TYPE).map_err(|value| Error::UnsupportedContentType { value })?;
    decode::check_content_type(content_type)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::BodyTooLarge { limit: state.limits.max_compressed_bytes }
        } else {
            Error::BodyRead { reason: rejection.body_text() }
        }
    })?;
    let head = Arc::clone(&state.head);
    let limits = state.limits;
    let syncer = state.syncer.clone();
    let in_flight = syncer.as_ref().map(wal::SyncWaiter::begin);
    let (answer, answered) = tokio::sync::oneshot::channel::<Result<Outcome>>();
    // Acknowledge (even a partial rejection) only once the stored samples are durable: the pool
    // thread answers at once only if there is nothing to wait for, else the sync waiter answers after
    // the fsync. Either way the pool thread goes on to the next request.
    state.pool.submit(move || {
        let processed = process(&head, limits, &body);
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
    if outcome.report.is_empty() {
        Ok(outcome)
    } else {
        Err(Error::Rejected(Box::new(outcome.report)))
    }
}

/// A WAL that could not make a batch durable: 503 once closed, else 500.
fn storage_error(e: wal::Error) -> Error {
    Error::from(match e {
        wal::Error::Closed => tsdb::Error::Closed,
        e => tsdb::Error::from(e),
    })
}

/// Decompress, decode, append, commit (without waiting for the fsync). Blocking.
fn process(head: &tsdb::Head, limits: Limits, body: &[u8]) -> Result<(Outcome, Option<tsdb::SyncTicket>)> {
    let mut buf = PAYLOAD_BUF.try_with(RefCell::take).unwrap_or_default();
    let result = decode::decompress(body, limits.max_decompressed_bytes, &mut buf)
        .and_then(|()| convert::append_request_unsynced(head, &buf));
    if buf.capacity() <= KEEP_BUFFER_MAX_BYTES {
        // Kept with its stale bytes: `decompress` overwrites them and zero-fills only growth.
        let _ = PAYLOAD_BUF.try_with(|b| b.replace(buf));
    }
    result
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
