//! One decoded remote-write 2.0 request → one appender transaction, like [`crate::convert`] for 1.0.
//!
//! Each series' label references are resolved by the walk into the same borrowed pairs a 1.0 series
//! has, so lookup (with the 1.0 path's prefetching two series ahead), validation and sorting are
//! the 1.0 path's. Per series, in the order of Prometheus's 2.0 receiver: a series with a bad
//! symbol reference is rejected whole; the rest goes through the 1.0 path's per-series append
//! ([`convert::append_series`]): with [`Options::created_timestamp_zero_ingestion`] a zero sample
//! is appended at the created timestamp (see [`created_zero_sample`]); then the float samples, the
//! native histograms and the exemplars (written to the WAL with the samples; an exemplar the
//! store refuses does not fail the request). Metadata is gathered and recorded once the commit
//! succeeded, in one batch.
//!
//! A series without samples (metadata only) writes nothing to the head. Blocking, like
//! [`crate::convert`].

use std::fmt::Write as _;

use tsdb::head::{Appender, PreparedSeries};
use tsdb::metadata::{MetadataStore, MetricType, Update};
use tsdb::Head;

use crate::convert::{self, roles, write_labels_lossy, Appended, Outcome};
use crate::decode::v2::{self, SeriesV2};
use crate::error::Result;
use crate::report::{Reason, Report};

/// What the 2.0 path does beyond the samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'m> {
    /// Prometheus's `created-timestamp-zero-ingestion` feature (see [`created_zero_sample`]).
    pub created_timestamp_zero_ingestion: bool,
    /// Where series metadata goes; `None` drops it.
    pub metadata: Option<&'m MetadataStore>,
}

/// Whether a series' created timestamp `ct` yields a zero sample before its first sample at
/// `first_t`, given the series' newest timestamp: Prometheus's rule (`AppendCTZeroSample`, used by
/// its 2.0 receiver for the first sample of each series) — a created timestamp and a first sample
/// timestamp are both set, the created one is older than the first sample, and it would be in order
/// (newer than anything the series holds). A created timestamp that fails this is ignored, never an
/// error: a sender cannot know whether an earlier request already carried it.
pub fn created_zero_sample(ct: i64, first_t: i64, newest: Option<i64>) -> bool {
    ct != 0 && first_t != 0 && ct < first_t && newest.is_none_or(|n| ct > n)
}

/// Appends every valid sample of a decompressed 2.0 `Request` payload to `head` and commits without
/// waiting for the fsync (see [`crate::convert::append_request_unsynced`]; same `Err` cases, with
/// [`crate::Error::ProtobufV2`] for a malformed payload).
pub fn append_request_unsynced(
    head: &Head,
    payload: &[u8],
    opts: Options<'_>,
) -> Result<(Outcome, Option<tsdb::SyncTicket>)> {
    let mut app = head.appender();
    let (mut symbols, mut labels) = (Vec::new(), Vec::new());
    let mut acc = Gathered::default();
    let mut index = 0u64;
    // The 1.0 path's pipeline (see `crate::convert`): each series is looked up two series after it
    // was decoded, its series-map slot and then its state fetched meanwhile. Series are appended in
    // request order.
    let mut staged: [Staged<'_>; 3] = Default::default();
    let mut next = 0usize;
    let walked = v2::walk(payload, &mut symbols, &mut labels, |pairs, series, symbols| {
        let (fill, probe, waiting) = roles(&mut staged, next);
        if needs_lookup(series) {
            app.prepare_series(pairs, &mut fill.prepared);
        }
        // Keep the pairs; the walk refills the (cleared) vector it gets back.
        std::mem::swap(pairs, &mut fill.pairs);
        fill.series = Some(*series);
        fill.index = index;
        index += 1;
        if probe.series.as_ref().is_some_and(needs_lookup) {
            app.probe_series(&probe.prepared);
        }
        waiting.append(&mut app, symbols, opts, &mut acc);
        next = (next + 1) % 3;
    });
    if walked.is_ok() {
        // The last two series, oldest first (the slot `next` is empty: its series was appended).
        let (_, last, older) = roles(&mut staged, next);
        older.append(&mut app, &symbols, opts, &mut acc);
        last.append(&mut app, &symbols, opts, &mut acc);
    }
    let Gathered { accepted, mut report, updates } = acc;
    let summary = match walked {
        Ok(s) => s,
        Err(e) => {
            app.rollback();
            return Err(e.into());
        }
    };
    report.set_received(summary.samples + summary.histograms);
    let (commit, ticket) = app.commit_unsynced()?;
    if let Some(store) = opts.metadata {
        if !updates.is_empty() {
            store.update(updates);
        }
    }
    let outcome = Outcome::new(payload.len(), summary, accepted, report, commit);
    Ok((outcome, ticket))
}

/// What the series of a request gathered for after the commit.
#[derive(Default)]
struct Gathered<'a> {
    accepted: Appended,
    report: Report,
    updates: Vec<Update<'a>>,
}

/// True if the series' samples need its series looked up.
fn needs_lookup(series: &SeriesV2<'_>) -> bool {
    series.invalid.is_none() && series.view.has_samples()
}

/// A series decoded (and prepared for lookup if [`needs_lookup`]), waiting for its turn.
#[derive(Default)]
struct Staged<'a> {
    pairs: Vec<(&'a [u8], &'a [u8])>,
    series: Option<SeriesV2<'a>>,
    prepared: PreparedSeries,
    index: u64,
}

impl<'a> Staged<'a> {
    /// Appends the staged series, if any, gathers its exemplars and metadata, and leaves `self`
    /// empty for reuse.
    fn append(&mut self, app: &mut Appender<'_>, symbols: &[&'a [u8]], opts: Options<'_>, acc: &mut Gathered<'a>) {
        let Some(series) = self.series.take() else {
            return;
        };
        let pairs = &self.pairs;
        let exemplars = || series.view.exemplars_v2(symbols);
        let n = append_series(app, pairs, &self.prepared, &series, self.index, opts, &exemplars, &mut acc.report);
        acc.accepted.add(n);
        if series.invalid.is_none() && opts.metadata.is_some() {
            if let Some(u) = metadata_update(pairs, &series) {
                acc.updates.push(u);
            }
        }
        self.pairs.clear();
    }
}

/// The metadata update a series carries, keyed by its metric family (its `__name__`, without a
/// classic histogram's or summary's series suffix).
fn metadata_update<'a>(pairs: &[(&'a [u8], &'a [u8])], series: &SeriesV2<'a>) -> Option<Update<'a>> {
    let m = series.metadata?;
    let name = pairs.iter().find(|(n, _)| *n == b"__name__").map(|(_, v)| *v)?;
    let kind = MetricType::from_proto(m.kind);
    Some(Update { family: kind.family_name(name), kind, help: m.help, unit: m.unit })
}

/// Appends one series (`prepared` from [`Appender::prepare_series`] on `pairs` if [`needs_lookup`]);
/// returns what was accepted.
#[allow(clippy::too_many_arguments, reason = "one series' parts, passed through from the pipeline")]
fn append_series(
    app: &mut Appender<'_>,
    pairs: &[(&[u8], &[u8])],
    prepared: &PreparedSeries,
    series: &SeriesV2<'_>,
    index: u64,
    opts: Options<'_>,
    exemplars: &dyn Fn() -> Vec<tsdb::exemplars::Exemplar>,
    report: &mut Report,
) -> Appended {
    let view = &series.view;
    if let Some(invalid) = series.invalid {
        let n = view.num_samples + view.num_histograms;
        report.reject(Reason::InvalidReference, n, |out| {
            let _ = write!(out, "series #{index} ");
            write_labels_lossy(out, pairs);
            let _ = write!(out, ": {invalid}");
        });
        return Appended::default();
    }
    let created_t = (opts.created_timestamp_zero_ingestion && series.created_t != 0).then_some(series.created_t);
    convert::append_series(app, pairs, prepared, view, created_t, exemplars, report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_zero_sample_rule() {
        // (ct, first_t, newest, expected)
        let cases = [
            (0, 100, None, false),
            (50, 0, None, false),
            (50, 100, None, true),
            (100, 100, None, false),
            (150, 100, None, false),
            (50, 100, Some(40), true),
            (50, 100, Some(50), false),
            (50, 100, Some(60), false),
        ];
        for (ct, first, newest, want) in cases {
            assert_eq!(created_zero_sample(ct, first, newest), want, "{ct} {first} {newest:?}");
        }
    }
}
