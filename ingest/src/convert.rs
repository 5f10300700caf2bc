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

use tsdb::exemplars::Exemplar;
use tsdb::head::{Appender, CommitStats, PreparedSeries};
use tsdb::{AppendError, Head, RejectReason};

use crate::decode::{self, SeriesView, WalkSummary};
use crate::error::Result;
use crate::report::{write_labels, Reason, Report};

/// What one request did.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Decompressed payload size.
    pub payload_bytes: usize,
    /// What the request carried.
    pub summary: WalkSummary,
    /// Float samples accepted (queued for commit, or identical to a stored sample).
    pub accepted: u64,
    /// Native histogram samples accepted (likewise).
    pub histograms_accepted: u64,
    /// Rejected samples; empty if all were accepted.
    pub report: Report,
    /// What the commit did.
    pub commit: CommitStats,
    /// Exemplars the commit wrote to the WAL and the exemplar store took (see [`tsdb::exemplars`]).
    pub exemplars_stored: u64,
}

impl Outcome {
    /// The outcome of a committed request of `payload_bytes` that `accepted` these.
    pub(crate) fn new(
        payload_bytes: usize,
        summary: WalkSummary,
        accepted: Appended,
        report: Report,
        commit: CommitStats,
    ) -> Outcome {
        Outcome {
            payload_bytes,
            summary,
            accepted: accepted.samples,
            histograms_accepted: accepted.histograms,
            report,
            exemplars_stored: commit.exemplars_stored,
            commit,
        }
    }
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
            RejectReason::InvalidHistogram => Reason::InvalidHistogram,
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
    let mut accepted = Appended::default();
    // Each series is looked up two steps late, its memory fetched meanwhile: when it is decoded its
    // labels are packed and hashed and its series-map slot requested; one series later the slot is
    // read and the series' labels and state requested; one more series later it is looked up and its
    // samples appended. The staging slots are used in turn rather than moved (moving them costs a
    // memcpy per series).
    let mut staged: [Staged<'_>; 3] = Default::default();
    let mut next = 0usize;
    let walked = decode::walk(payload, &mut labels, |pairs, series| {
        let (fill, probe, waiting) = roles(&mut staged, next);
        if series.has_samples() {
            app.prepare_series(pairs, &mut fill.prepared);
        }
        // Keep the pairs; the walk refills the (cleared) vector it gets back.
        std::mem::swap(pairs, &mut fill.pairs);
        fill.view = Some(*series);
        if probe.view.is_some_and(|v| v.has_samples()) {
            app.probe_series(&probe.prepared);
        }
        accepted.add(waiting.append(&mut app, &mut report));
        next = (next + 1) % 3;
    });
    if walked.is_ok() {
        // The last two series, oldest first (the slot `next` is empty: its series was appended).
        let (_, last, older) = roles(&mut staged, next);
        accepted.add(older.append(&mut app, &mut report));
        accepted.add(last.append(&mut app, &mut report));
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
    let outcome = Outcome::new(payload.len(), summary, accepted, report, commit);
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
    fn append(&mut self, app: &mut Appender<'_>, report: &mut Report) -> Appended {
        let Some(view) = self.view.take() else {
            return Appended::default();
        };
        let n = append_series(app, &self.pairs, &self.prepared, &view, None, &|| view.exemplars_v1(), report);
        self.pairs.clear();
        n
    }
}

/// What one series (or request) had accepted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    /// Float samples.
    pub samples: u64,
    /// Native histogram samples.
    pub histograms: u64,
}

impl Appended {
    pub(crate) fn add(&mut self, other: Appended) {
        self.samples += other.samples;
        self.histograms += other.histograms;
    }
}

/// Appends one series' float samples, then its native histograms, then (if any sample or
/// histogram was accepted) its exemplars (`exemplars` reads them; exemplars the store would refuse
/// are dropped without failing the request, as in Prometheus's receiver). `prepared` comes from
/// [`Appender::prepare_series`] on `pairs`, unless the series has neither samples nor histograms.
/// `created_t`: the series' created timestamp when a zero sample is to be ingested there
/// (remote-write 2.0 with `created-timestamp-zero-ingestion`), appended first where
/// [`created_zero_sample`](crate::convert_v2::created_zero_sample) allows it.
pub(crate) fn append_series(
    app: &mut Appender<'_>,
    pairs: &[(&[u8], &[u8])],
    prepared: &PreparedSeries,
    series: &SeriesView<'_>,
    created_t: Option<i64>,
    exemplars: &dyn Fn() -> Vec<Exemplar>,
    report: &mut Report,
) -> Appended {
    let (n, nh) = (series.num_samples, series.num_histograms);
    if n + nh == 0 {
        return Appended::default();
    }
    let h = match app.series_prepared(prepared, pairs) {
        Ok(h) => h,
        Err(e) => {
            report.reject(Reason::InvalidLabels, n + nh, |out| {
                write_labels_lossy(out, pairs);
                let first_t = series.samples().next().map(|(t, _)| t).or(series.first_histogram_t);
                describe_count(out, n + nh, first_t);
                let _ = write!(out, ": {}", AppendError::InvalidLabels(e));
            });
            return Appended::default();
        }
    };
    if let (Some(ct), Some((first_t, _))) = (created_t, series.samples().next()) {
        if crate::convert_v2::created_zero_sample(ct, first_t, app.newest_t(h)) {
            // Rejections of the zero sample are ignored (see `created_zero_sample`).
            let _ = app.append(h, ct, 0.0);
        }
    }
    let mut accepted = Appended::default();
    for (t, v) in series.samples() {
        match app.append(h, t, v) {
            Ok(()) => accepted.samples += 1,
            Err(e) => report.reject(e.reason().into(), 1, |out| {
                write_series_labels(out, pairs);
                let _ = write!(out, " @{t}: {e}");
            }),
        }
    }
    // Only series that carry histograms are walked again for them (floats pay nothing).
    for s in series.histograms().take(usize::try_from(nh).unwrap_or(usize::MAX)) {
        let t = s.t;
        match app.append_histogram(h, t, s.value) {
            Ok(()) => accepted.histograms += 1,
            Err(e) => report.reject(e.reason().into(), 1, |out| {
                write_series_labels(out, pairs);
                let _ = write!(out, " @{t}: {e}");
            }),
        }
    }
    if series.num_exemplars > 0 && accepted != Appended::default() {
        for e in exemplars() {
            // Refused exemplars (storage off, out of order, duplicate) never fail the request.
            let _ = app.append_exemplar(h, e);
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
