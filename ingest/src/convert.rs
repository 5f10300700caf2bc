//! One decoded request → one appender transaction, gathering per-sample rejections.
//!
//! A single pass over the payload: each `TimeSeries` is looked up once (an existing series is found
//! from borrowed label pairs without allocating), its samples are appended straight from the buffer,
//! and the transaction is committed once at the end — one WAL append, at most one shared fsync.
//! Rejected samples do not stop the request: every valid sample is committed, and the rejections come
//! back in a [`Report`] for the 400 answer. A malformed payload rolls everything back.
//!
//! Blocking (a commit writes the WAL; the caller then waits for its fsync): never call it on the
//! async runtime.

use std::fmt::Write as _;

use tsdb::head::{Appender, CommitStats, PreparedSeries};
use tsdb::{AppendError, Head, RejectReason};

use crate::decode::{self, SeriesView, WalkSummary};
use crate::error::Result;
use crate::report::{write_labels, Reason, Report, NATIVE_HISTOGRAMS_UNSUPPORTED};

/// What one request did.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Decompressed payload size.
    pub payload_bytes: usize,
    /// What the request carried.
    pub summary: WalkSummary,
    /// Float samples accepted (queued for commit, or identical to a stored sample).
    pub accepted: u64,
    /// Rejected samples; empty if all were accepted.
    pub report: Report,
    /// What the commit did.
    pub commit: CommitStats,
    /// Exemplars stored (see [`tsdb::exemplars`]); set by the caller that stores them.
    pub exemplars_stored: u64,
}

impl From<RejectReason> for Reason {
    fn from(r: RejectReason) -> Reason {
        match r {
            RejectReason::OutOfBounds => Reason::OutOfBounds,
            RejectReason::OutOfOrder => Reason::OutOfOrder,
            RejectReason::TooOld => Reason::TooOld,
            RejectReason::Duplicate => Reason::Duplicate,
            RejectReason::TooFarInFuture => Reason::TooFarInFuture,
            RejectReason::Invalid => Reason::InvalidLabels,
            RejectReason::InvalidHistogram => Reason::NativeHistogram,
        }
    }
}

/// Appends every valid sample of a decompressed `WriteRequest` payload to `head` and commits,
/// without waiting for the WAL fsync: the samples may be acknowledged once [`Head::wait_synced`]
/// returns `Ok` for the ticket, if one is returned.
///
/// `Err` means nothing was committed: [`crate::Error::Protobuf`] for a malformed payload (the sender's
/// fault), [`crate::Error::Storage`] if the commit failed (a server fault). Series created before a
/// malformed part was found stay in the head without samples, as they do in Prometheus after a rollback.
pub fn append_request_unsynced(head: &Head, payload: &[u8]) -> Result<(Outcome, Option<tsdb::SyncTicket>)> {
    let mut app = head.appender();
    let mut labels = Vec::new();
    let mut report = Report::default();
    let mut accepted = 0u64;
    // Each series is looked up two steps late, its memory fetched meanwhile: when it is decoded its
    // labels are packed and hashed and its series-map slot requested; one series later the slot is
    // read and the series' labels and state requested; one more series later it is looked up and its
    // samples appended. The staging slots are used in turn rather than moved (moving them costs a
    // memcpy per series).
    let mut staged: [Staged<'_>; 3] = Default::default();
    let mut next = 0usize;
    let walked = decode::walk(payload, &mut labels, |pairs, series| {
        let (fill, probe, waiting) = roles(&mut staged, next);
        if series.num_samples > 0 {
            app.prepare_series(pairs, &mut fill.prepared);
        }
        // Keep the pairs; the walk refills the (cleared) vector it gets back.
        std::mem::swap(pairs, &mut fill.pairs);
        fill.view = Some(*series);
        if probe.view.is_some_and(|v| v.num_samples > 0) {
            app.probe_series(&probe.prepared);
        }
        accepted += waiting.append(&mut app, &mut report);
        next = (next + 1) % 3;
    });
    if walked.is_ok() {
        // The last two series, oldest first (the slot `next` is empty: its series was appended).
        let (_, last, older) = roles(&mut staged, next);
        accepted += older.append(&mut app, &mut report);
        accepted += last.append(&mut app, &mut report);
    }
    let summary = match walked {
        Ok(s) => s,
        Err(e) => {
            app.rollback();
            return Err(e.into());
        }
    };
    report.set_received(summary.samples + summary.histograms);
    let (commit, ticket) = app.commit_unsynced()?;
    let outcome = Outcome { payload_bytes: payload.len(), summary, accepted, report, commit, exemplars_stored: 0 };
    Ok((outcome, ticket))
}

/// The staging slots' roles when the series decoded next goes into slot `next`: `(fill, probe,
/// waiting)` — that slot (its previous series, three back, already appended), the slot of the series
/// decoded one before (slot requested, to be probed) and that of the one decoded two before (to be
/// looked up and appended).
pub(crate) fn roles<T>(staged: &mut [T; 3], next: usize) -> (&mut T, &mut T, &mut T) {
    let [a, b, c] = staged;
    match next {
        0 => (a, c, b),
        1 => (b, a, c),
        _ => (c, b, a),
    }
}

/// A series decoded and prepared for lookup, waiting for its turn to be appended.
#[derive(Default)]
struct Staged<'a> {
    pairs: Vec<(&'a [u8], &'a [u8])>,
    view: Option<SeriesView<'a>>,
    prepared: PreparedSeries,
}

impl Staged<'_> {
    /// Appends the staged series, if any (see [`append_series`]), and leaves `self` empty for reuse.
    fn append(&mut self, app: &mut Appender<'_>, report: &mut Report) -> u64 {
        let Some(view) = self.view.take() else {
            return 0;
        };
        let n = append_series(app, &self.pairs, &self.prepared, &view, None, report);
        self.pairs.clear();
        n
    }
}

/// Appends one series' samples (`prepared` from [`Appender::prepare_series`] on `pairs`, unless the
/// series has no float samples); returns how many were accepted. `created_t`: the series' created
/// timestamp when a zero sample is to be ingested there (remote-write 2.0 with
/// `created-timestamp-zero-ingestion`), appended first where
/// [`created_zero_sample`](crate::convert_v2::created_zero_sample) allows it.
pub(crate) fn append_series(
    app: &mut Appender<'_>,
    pairs: &[(&[u8], &[u8])],
    prepared: &PreparedSeries,
    series: &SeriesView<'_>,
    created_t: Option<i64>,
    report: &mut Report,
) -> u64 {
    if series.num_histograms > 0 {
        report.reject(Reason::NativeHistogram, series.num_histograms, |out| {
            write_labels_lossy(out, pairs);
            describe_count(out, series.num_histograms, series.first_histogram_t);
            let _ = write!(out, ": {NATIVE_HISTOGRAMS_UNSUPPORTED}");
        });
    }
    let n = series.num_samples;
    if n == 0 {
        return 0;
    }
    let h = match app.series_prepared(prepared, pairs) {
        Ok(h) => h,
        Err(e) => {
            report.reject(Reason::InvalidLabels, n, |out| {
                write_labels_lossy(out, pairs);
                describe_count(out, n, series.samples().next().map(|(t, _)| t));
                let _ = write!(out, ": {}", AppendError::InvalidLabels(e));
            });
            return 0;
        }
    };
    if let (Some(ct), Some((first_t, _))) = (created_t, series.samples().next()) {
        if crate::convert_v2::created_zero_sample(ct, first_t, app.newest_t(h)) {
            // Rejections of the zero sample are ignored (see `created_zero_sample`).
            let _ = app.append(h, ct, 0.0);
        }
    }
    let mut accepted = 0;
    for (t, v) in series.samples() {
        match app.append(h, t, v) {
            Ok(()) => accepted += 1,
            Err(e) => report.reject(e.reason().into(), 1, |out| {
                write_series_labels(out, pairs);
                let _ = write!(out, " @{t}: {e}");
            }),
        }
    }
    accepted
}

/// The pairs as sent, invalid UTF-8 replaced.
pub(crate) fn write_labels_lossy(out: &mut String, pairs: &[(&[u8], &[u8])]) {
    write_labels(out, pairs.iter().map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))));
}

/// The label set of a stored series, as the storage keeps it: sorted by name, empty values dropped.
pub(crate) fn write_series_labels(out: &mut String, pairs: &[(&[u8], &[u8])]) {
    let mut sorted: Vec<(&[u8], &[u8])> = pairs.iter().filter(|(_, v)| !v.is_empty()).copied().collect();
    sorted.sort_by_key(|(n, _)| *n);
    write_labels_lossy(out, &sorted);
}

pub(crate) fn describe_count(out: &mut String, n: u64, first_t: Option<i64>) {
    match (n, first_t) {
        (1, Some(t)) => {
            let _ = write!(out, " @{t}");
        }
        (n, Some(t)) => {
            let _ = write!(out, " {n} samples from @{t}");
        }
        (n, None) => {
            let _ = write!(out, " {n} samples");
        }
    }
}
