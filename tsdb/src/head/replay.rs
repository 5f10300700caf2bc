//! WAL replay on startup: rebuilds series and samples from the newest checkpoint and the WAL segments
//! after it, in WAL order, with progress in the log.
//!
//! Replay applies samples with the same rules as a commit (`SeriesData::apply`), so memory after a
//! restart holds exactly what was acknowledged: identical samples once, and nothing rejected for age
//! (everything in the WAL was accepted before it was written). Samples that a block already holds
//! because the crash came between writing the block and checkpointing are skipped ([`ReplaySkip`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::checkpoint;
use super::series::{Applied, MemSeries, SeriesRef};
use super::{Head, ReplaySkip};
use crate::error::{Error, Result};
use crate::record::{self, RefSample};

/// Replays the newest checkpoint and the WAL segments from it on into `head`.
pub(crate) fn replay(head: &Head, wal_dir: &Path, skips: &[ReplaySkip]) -> Result<()> {
    let started = Instant::now();
    let mut st = Replay { head, skips, by_ref: HashMap::new(), max_ref: 0, series: 0, samples: 0, skipped: 0, unknown_refs: 0, bad_records: 0 };
    let mut from = 0;
    if let Some((n, dir)) = checkpoint::newest(wal_dir)? {
        tracing::info!(checkpoint = n, "replaying wal checkpoint");
        st.read_all(wal::Reader::open(&dir)?, Some(n))?;
        from = n;
    }
    st.read_all(wal::Reader::open_range(wal_dir, wal::SegmentIndex(from))?, None)?;
    head.next_ref.fetch_max(st.max_ref + 1, Ordering::AcqRel);
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        series = st.series,
        samples = st.samples,
        skipped_in_blocks = st.skipped,
        unknown_refs = st.unknown_refs,
        bad_records = st.bad_records,
        duration_secs = secs,
        samples_per_sec = (st.samples as f64 / secs.max(1e-9)) as u64,
        "wal replay done"
    );
    Ok(())
}

struct Replay<'a> {
    head: &'a Head,
    skips: &'a [ReplaySkip],
    by_ref: HashMap<u64, Arc<MemSeries>>,
    max_ref: u64,
    series: u64,
    samples: u64,
    skipped: u64,
    unknown_refs: u64,
    bad_records: u64,
}

impl Replay<'_> {
    /// Reads every record of `reader`. `fixed_position` is the checkpoint's index for a checkpoint,
    /// None for WAL segments (the record's own segment is its position).
    fn read_all(&mut self, mut reader: wal::Reader, fixed_position: Option<u32>) -> Result<()> {
        let total = reader.segment_count();
        let mut samples: Vec<RefSample> = Vec::new();
        let mut seg_seen = 0usize;
        let mut seg_started = Instant::now();
        let mut seg_samples = self.samples;
        loop {
            samples.clear();
            let decoded = match reader.next_record() {
                None => break,
                Some(Ok(rec)) => record::decode(rec, &mut samples),
                Some(Err(wal::Error::Corruption { segment, offset, reason })) => {
                    // open() repaired the tail; damage here is in an earlier segment and was not cut
                    // because data follows it. Refuse to start rather than drop acknowledged data.
                    return Err(Error::Corruption { what: format!("wal segment {segment} offset {offset}"), reason });
                }
                Some(Err(e)) => return Err(e.into()),
            };
            // The record has been copied out; the reader now reports its segment.
            let position = fixed_position.unwrap_or(reader.position().0 .0);
            let seg = reader.current_segment_number();
            if fixed_position.is_none() && seg != seg_seen {
                if seg_seen != 0 {
                    log_progress(seg_seen, total, self.samples - seg_samples, seg_started);
                }
                seg_seen = seg;
                seg_started = Instant::now();
                seg_samples = self.samples;
            }
            match decoded {
                Ok(Some(series)) => self.add_series(series)?,
                Ok(None) => self.apply_samples(&samples, position),
                Err(e) => {
                    self.bad_records += 1;
                    tracing::warn!(error = %e, position, "skipping undecodable wal record");
                }
            }
        }
        if seg_seen != 0 {
            log_progress(seg_seen, total, self.samples - seg_samples, seg_started);
        }
        Ok(())
    }

    fn add_series(&mut self, series: Vec<(u64, crate::labels::Labels)>) -> Result<()> {
        for (sref, labels) in series {
            if sref > u64::from(u32::MAX) {
                return Err(Error::Corruption {
                    what: "wal series record".into(),
                    reason: format!("series reference {sref} exceeds 32 bits"),
                });
            }
            self.max_ref = self.max_ref.max(sref);
            let (s, created) = self.head.series.get_or_create(labels.stable_hash(), labels.packed(), || {
                Arc::new(MemSeries::new(SeriesRef(sref), labels.clone(), true))
            });
            if created {
                self.head.register(&s);
                self.series += 1;
            }
            self.by_ref.insert(sref, s);
        }
        Ok(())
    }

    fn apply_samples(&mut self, samples: &[RefSample], position: u32) {
        let head = self.head;
        let (chunk_range, cap) = (head.opts.chunk_range_ms, head.opts.ooo_cap_max);
        let mut i = 0;
        while let Some(first) = samples.get(i) {
            let sref = first.sref;
            let Some(s) = self.by_ref.get(&sref) else {
                self.unknown_refs += 1;
                i += 1;
                continue;
            };
            let mut data = s.lock();
            let (mut lo, mut hi) = (i64::MAX, i64::MIN);
            while let Some(smp) = samples.get(i) {
                if smp.sref != sref {
                    break;
                }
                i += 1;
                if self.skips.iter().any(|k| position < k.before_segment && smp.t >= k.mint && smp.t < k.maxt) {
                    self.skipped += 1;
                    continue;
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
                self.samples += 1;
            }
            drop(data);
            if hi != i64::MIN {
                head.observe_time(hi);
                head.observe_time(lo);
            }
        }
    }
}

fn log_progress(i: usize, n: usize, samples: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        segment = format!("{i}/{n}"),
        samples,
        samples_per_sec = (samples as f64 / secs.max(1e-9)) as u64,
        "wal replay progress"
    );
}
