//! WAL replay on startup: rebuilds series and samples in WAL order, with progress in the log.
//!
//! Replay applies samples with the same rules as a commit (`SeriesData::apply`), so memory after a
//! restart holds exactly what was acknowledged: identical samples once, and nothing rejected for age
//! (everything in the WAL was accepted before it was written).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::series::{Applied, MemSeries, SeriesRef};
use super::Head;
use crate::error::{Error, Result};
use crate::record::{self, RefSample};

/// Replays every record of the WAL in `wal_dir` into `head`.
pub(crate) fn replay(head: &Head, wal_dir: &Path) -> Result<()> {
    let started = Instant::now();
    let mut reader = wal::Reader::open(wal_dir)?;
    let total_segments = reader.segment_count();
    let mut by_ref: HashMap<u64, Arc<MemSeries>> = HashMap::new();
    let mut samples: Vec<RefSample> = Vec::new();
    let (mut n_samples, mut n_series, mut unknown_refs, mut bad_records) = (0u64, 0u64, 0u64, 0u64);
    let mut max_ref = 0u64;
    let mut segment_seen = 0usize;
    let chunk_range = head.opts.chunk_range_ms;
    let cap = head.opts.ooo_cap_max;
    let mut seg_started = Instant::now();
    let mut seg_samples = 0u64;
    while let Some(rec) = reader.next_record() {
        let rec = match rec {
            Ok(r) => r,
            Err(wal::Error::Corruption { segment, offset, reason }) => {
                // open() repaired the tail; corruption here means damage in an earlier segment that
                // repair could not cut without losing later data. Refuse to start rather than drop it.
                return Err(Error::Corruption { what: format!("wal segment {segment} offset {offset}"), reason });
            }
            Err(e) => return Err(e.into()),
        };
        samples.clear();
        match record::decode(rec, &mut samples) {
            Ok(Some(series)) => {
                for (sref, labels) in series {
                    max_ref = max_ref.max(sref);
                    let (s, created) = head.series.get_or_create_labels(&labels, || {
                        Arc::new(MemSeries::new(SeriesRef(sref), labels.clone(), true))
                    });
                    if created {
                        if sref > u64::from(u32::MAX) {
                            return Err(Error::Corruption {
                                what: "wal series record".into(),
                                reason: format!("series reference {sref} exceeds 32 bits"),
                            });
                        }
                        head.register(&s);
                        n_series += 1;
                    }
                    by_ref.insert(sref, s);
                }
            }
            Ok(None) => {
                let mut i = 0;
                while let Some(first) = samples.get(i) {
                    let sref = first.sref;
                    let Some(s) = by_ref.get(&sref) else {
                        unknown_refs += 1;
                        i += 1;
                        continue;
                    };
                    let mut data = s.lock();
                    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
                    while let Some(smp) = samples.get(i) {
                        if smp.sref != sref {
                            break;
                        }
                        let counter = match data.apply(smp.t, smp.v, head.min_valid_time(), chunk_range, cap) {
                            Applied::InOrder => &head.stats.samples_in_order,
                            Applied::OutOfOrder => &head.stats.samples_out_of_order,
                            Applied::AlreadyStored => &head.stats.samples_deduplicated,
                            Applied::Conflict => &head.stats.commit_conflicts,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        lo = lo.min(smp.t);
                        hi = hi.max(smp.t);
                        i += 1;
                        n_samples += 1;
                        seg_samples += 1;
                    }
                    drop(data);
                    head.observe_time(hi);
                    head.observe_time(lo);
                }
            }
            Err(e) => {
                bad_records += 1;
                tracing::warn!(error = %e, segment = segment_seen, "skipping undecodable wal record");
            }
        }
        let seg = reader.current_segment_number();
        if seg != segment_seen {
            if segment_seen != 0 {
                log_segment(segment_seen, total_segments, seg_samples, seg_started);
            }
            segment_seen = seg;
            seg_started = Instant::now();
            seg_samples = 0;
        }
    }
    if segment_seen != 0 {
        log_segment(segment_seen, total_segments, seg_samples, seg_started);
    }
    head.next_ref.fetch_max(max_ref + 1, Ordering::AcqRel);
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        segments = total_segments,
        series = n_series,
        samples = n_samples,
        unknown_refs,
        bad_records,
        duration_secs = secs,
        samples_per_sec = (n_samples as f64 / secs.max(1e-9)) as u64,
        "wal replay done"
    );
    Ok(())
}

fn log_segment(i: usize, n: usize, samples: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        segment = format!("{i}/{n}"),
        samples,
        samples_per_sec = (samples as f64 / secs.max(1e-9)) as u64,
        "wal replay progress"
    );
}
