//! Request counters of the remote-write endpoint, owned by [`crate::IngestState`] and rendered by the
//! server's `/metrics`. Plain atomics: no registry, no globals, so tests and instances stay isolated.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::report::{Reason, Report};

/// Counters of the remote-write endpoint.
#[derive(Debug, Default)]
pub struct IngestMetrics {
    requests: AtomicU64,
    requests_client_error: AtomicU64,
    requests_server_error: AtomicU64,
    bytes_received: AtomicU64,
    bytes_decompressed: AtomicU64,
    samples_received: AtomicU64,
    samples_accepted: AtomicU64,
    histograms_received: AtomicU64,
    histograms_accepted: AtomicU64,
    exemplars_received: AtomicU64,
    metadata_received: AtomicU64,
    rejected: [AtomicU64; Reason::COUNT],
}

/// A point-in-time copy of [`IngestMetrics`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Requests received.
    pub requests: u64,
    /// Requests answered 4xx (including partial rejections).
    pub requests_client_error: u64,
    /// Requests answered 5xx.
    pub requests_server_error: u64,
    /// Compressed body bytes received.
    pub bytes_received: u64,
    /// Bytes after snappy decompression.
    pub bytes_decompressed: u64,
    /// Float samples received.
    pub samples_received: u64,
    /// Float samples accepted (stored, or identical to a stored sample).
    pub samples_accepted: u64,
    /// Native histogram samples received.
    pub histograms_received: u64,
    /// Native histogram samples accepted (stored, or identical to a stored one).
    pub histograms_accepted: u64,
    /// Exemplars received.
    pub exemplars_received: u64,
    /// Metric metadata entries received (1.0 entries, 2.0 series with metadata).
    pub metadata_received: u64,
    /// Samples rejected, indexed by [`Reason::index`].
    pub rejected: [u64; Reason::COUNT],
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl IngestMetrics {
    pub(crate) fn request(&self, compressed_bytes: usize) {
        add(&self.requests, 1);
        add(&self.bytes_received, compressed_bytes as u64);
    }

    pub(crate) fn response(&self, status: axum::http::StatusCode) {
        if status.is_client_error() {
            add(&self.requests_client_error, 1);
        } else if status.is_server_error() {
            add(&self.requests_server_error, 1);
        }
    }

    pub(crate) fn decoded(&self, o: &crate::convert::Outcome) {
        add(&self.bytes_decompressed, o.payload_bytes as u64);
        add(&self.samples_received, o.summary.samples);
        add(&self.samples_accepted, o.accepted);
        add(&self.histograms_received, o.summary.histograms);
        add(&self.histograms_accepted, o.histograms_accepted);
        add(&self.exemplars_received, o.summary.exemplars);
        add(&self.metadata_received, o.summary.metadata);
        self.rejections(&o.report);
    }

    fn rejections(&self, report: &Report) {
        for r in Reason::ALL {
            if let Some(c) = self.rejected.get(r.index()) {
                add(c, report.count(r));
            }
        }
    }

    /// Samples rejected for `reason` so far.
    pub fn rejected(&self, reason: Reason) -> u64 {
        self.rejected.get(reason.index()).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Copies every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            requests: l(&self.requests),
            requests_client_error: l(&self.requests_client_error),
            requests_server_error: l(&self.requests_server_error),
            bytes_received: l(&self.bytes_received),
            bytes_decompressed: l(&self.bytes_decompressed),
            samples_received: l(&self.samples_received),
            samples_accepted: l(&self.samples_accepted),
            histograms_received: l(&self.histograms_received),
            histograms_accepted: l(&self.histograms_accepted),
            exemplars_received: l(&self.exemplars_received),
            metadata_received: l(&self.metadata_received),
            rejected: std::array::from_fn(|i| self.rejected.get(i).map_or(0, l)),
        }
    }
}
