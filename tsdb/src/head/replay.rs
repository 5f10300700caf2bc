//! WAL replay on startup: rebuilds series and samples from the newest checkpoint and the WAL segments
//! after it, in WAL order, with progress in the log.
//!
//! A checkpoint's chunks are installed as they are (no re-encoding). WAL samples are applied with the
//! same rules as a commit (`SeriesData::apply`, with the in-order floor computed once per record as a
//! commit computes it once per batch), so memory after a restart holds exactly what was acknowledged:
//! identical samples once, nothing rejected for age (everything in the WAL was accepted before it was
//! written). Samples that a block already holds because the crash came between writing the block and
//! checkpointing are skipped ([`ReplaySkip`]). Tombstones records delete their intervals from their
//! series whatever the order of records: a deleted interval also hides samples appended after it. Samples further ahead of the wall clock than the
//! creation grace period are dropped and counted in the log: a head that such a sample poisoned
//! (its max time far ahead makes every other sample too old) recovers at the next start.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::append::HistogramCounts;
use super::in_order::{OpenChunk, SealedChunk};
use super::ooo::OooChunk;
use super::ooo::OooData;
use super::series::{Applied, MemSeries, SeriesData, SeriesRef};
use super::{Head, ReplaySkip};
use crate::chunk::{ChunkBytes, ChunkData, ChunkMeta};
use crate::chunkenc::{num_samples, XorChunk, XorIter};
use crate::error::{Error, Result};
use crate::record::{self, Record, RefExemplar, RefHistogram, RefSample, SeriesChunks, SeriesHistogramChunks};

/// Series references below this are looked up in a dense table; larger ones in a map.
const DENSE_REFS: u64 = 1 << 24;

/// Replays the newest checkpoint and the WAL segments from it on into `head`.
pub(crate) fn replay(head: &Head, wal_dir: &Path, skips: &[ReplaySkip]) -> Result<()> {
    let started = Instant::now();
    let mut st = Replay {
        head,
        skips,
        dense: Vec::new(),
        sparse: HashMap::new(),
        max_ref: 0,
        series: 0,
        samples: 0,
        chunk_samples: 0,
        skipped: 0,
        unknown_refs: 0,
        tombstones: 0,
        histograms: 0,
        exemplars: 0,
        exemplars_refused: 0,
        bad_records: 0,
        max_future_t: head.max_future_time(),
        future_dropped: 0,
    };
    let mut from = wal::SegmentIndex(0);
    if let Some(cp) = wal::checkpoint::newest(wal_dir)? {
        tracing::info!(checkpoint = %cp.dir.display(), "replaying wal checkpoint");
        let read = wal::Reader::open(&cp.dir).map_err(Error::from).and_then(|r| st.read_all(r, Some(cp.index.0)));
        let read = match read {
            Err(Error::Wal(e @ wal::Error::NonSequentialSegments { .. })) => {
                Err(Error::Corruption { what: cp.dir.display().to_string(), reason: e.to_string() })
            }
            other => other,
        };
        match read {
            Ok(()) => from = cp.index,
            Err(Error::Corruption { what, reason }) => {
                // What was read before the damage stays; every segment still on disk is replayed
                // (those before the checkpoint, if a crash left any, hold part of what it lost).
                let aside = wal::checkpoint::set_aside(wal_dir, &cp)?;
                tracing::error!(
                    checkpoint = %cp.dir.display(),
                    moved_to = %aside.display(),
                    damage = %what,
                    reason,
                    "wal checkpoint is damaged: set aside; replaying the wal segments that remain"
                );
            }
            Err(e) => return Err(e),
        }
    }
    st.read_all(wal::Reader::open_range(wal_dir, from)?, None)?;
    head.next_ref.fetch_max(st.max_ref + 1, Ordering::AcqRel);
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        series = st.series,
        samples = st.samples,
        samples_from_checkpoint_chunks = st.chunk_samples,
        skipped_in_blocks = st.skipped,
        unknown_refs = st.unknown_refs,
        tombstones = st.tombstones,
        histograms = st.histograms,
        exemplars = st.exemplars,
        exemplars_refused = st.exemplars_refused,
        bad_records = st.bad_records,
        dropped_too_far_in_future = st.future_dropped,
        duration_secs = secs,
        samples_per_sec = (st.samples as f64 / secs.max(1e-9)) as u64,
        "wal replay done"
    );
    Ok(())
}

struct Replay<'a> {
    head: &'a Head,
    skips: &'a [ReplaySkip],
    /// Series by reference, for references below [`DENSE_REFS`].
    dense: Vec<Option<Arc<MemSeries>>>,
    sparse: HashMap<u64, Arc<MemSeries>>,
    max_ref: u64,
    series: u64,
    samples: u64,
    chunk_samples: u64,
    skipped: u64,
    unknown_refs: u64,
    /// Deleted intervals read.
    tombstones: u64,
    /// Histogram samples applied.
    histograms: u64,
    /// Exemplars the exemplar store took, and refused.
    exemplars: u64,
    exemplars_refused: u64,
    bad_records: u64,
    /// Samples newer than this are dropped (see the module docs).
    max_future_t: i64,
    future_dropped: u64,
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
            let seg = reader.current_segment_number();
            let (segment, rec) = match reader.next_record_in_segment() {
                None => break,
                Some(Ok(r)) => r,
                Some(Err(wal::Error::Corruption { path, offset, reason, .. })) => {
                    return Err(Error::Corruption { what: format!("{} offset {offset}", path.display()), reason });
                }
                Some(Err(e)) => return Err(e.into()),
            };
            let position = fixed_position.unwrap_or(segment.0);
            if fixed_position.is_none() && seg != seg_seen {
                if seg_seen != 0 {
                    log_progress(seg_seen, total, self.samples - seg_samples, seg_started);
                }
                seg_seen = seg;
                seg_started = Instant::now();
                seg_samples = self.samples;
            }
            match record::decode(rec, &mut samples) {
                Ok(Record::Series(series)) => self.add_series(series)?,
                Ok(Record::Samples) => self.apply_samples(&samples, position),
                Ok(Record::Chunks(chunks)) => {
                    for c in chunks {
                        self.install_chunks(&c, position)?;
                    }
                }
                Ok(Record::Tombstones(stones)) => self.apply_tombstones(&stones),
                Ok(Record::Histograms(hs)) => self.apply_histograms(hs, position, fixed_position.is_some()),
                Ok(Record::Exemplars(es)) => self.apply_exemplars(es),
                Ok(Record::HistogramChunks(chunks)) => {
                    for c in chunks {
                        self.install_histogram_chunks(&c, position)?;
                    }
                }
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

    fn lookup(&self, sref: u64) -> Option<&Arc<MemSeries>> {
        if sref < DENSE_REFS {
            self.dense.get(usize::try_from(sref).ok()?)?.as_ref()
        } else {
            self.sparse.get(&sref)
        }
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
            if sref < DENSE_REFS {
                let i = sref as usize;
                if self.dense.len() <= i {
                    self.dense.resize(i + 1, None);
                }
                if let Some(slot) = self.dense.get_mut(i) {
                    *slot = Some(s);
                }
            } else {
                self.sparse.insert(sref, s);
            }
        }
        Ok(())
    }

    /// Counts a record naming a series the replay does not know, and keeps its reference from being
    /// handed out again (references above 32 bits were never allocated and are ignored).
    fn note_unknown_ref(&mut self, sref: u64) {
        if sref <= u64::from(u32::MAX) {
            self.max_ref = self.max_ref.max(sref);
        }
        self.unknown_refs += 1;
    }

    fn skipped_at(&self, position: u32, t: i64) -> bool {
        self.skips.iter().any(|k| position < k.before_segment && t >= k.mint && t < k.maxt)
    }

    fn apply_samples(&mut self, samples: &[RefSample], position: u32) {
        let head = self.head;
        let ctx = head.apply_ctx();
        let check_skips = self.skips.iter().any(|k| position < k.before_segment);
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        let (mut in_order, mut ooo, mut dedup, mut conflicts) = (0u64, 0u64, 0u64, 0u64);
        let mut i = 0;
        while let Some(first) = samples.get(i) {
            let sref = first.sref;
            let Some(s) = self.lookup(sref).cloned() else {
                // A series removed from the head before the checkpoint (its samples are in blocks).
                // Its reference must not be handed out again while a record still names it.
                self.note_unknown_ref(sref);
                i += 1;
                continue;
            };
            let mut data = s.lock();
            while let Some(smp) = samples.get(i) {
                if smp.sref != sref {
                    break;
                }
                i += 1;
                if check_skips && self.skipped_at(position, smp.t) {
                    self.skipped += 1;
                    continue;
                }
                if smp.t > self.max_future_t {
                    self.future_dropped += 1;
                    continue;
                }
                match data.apply(smp.t, smp.v, &ctx, s.cut_seed) {
                    Applied::InOrder => in_order += 1,
                    Applied::OutOfOrder => ooo += 1,
                    Applied::AlreadyStored => dedup += 1,
                    Applied::Conflict => conflicts += 1,
                }
                lo = lo.min(smp.t);
                hi = hi.max(smp.t);
                self.samples += 1;
            }
        }
        if hi != i64::MIN {
            head.observe_time(hi);
            head.observe_time(lo);
        }
        let st = &head.stats;
        st.samples_in_order.fetch_add(in_order, Ordering::Relaxed);
        st.samples_out_of_order.fetch_add(ooo, Ordering::Relaxed);
        st.samples_deduplicated.fetch_add(dedup, Ordering::Relaxed);
        st.commit_conflicts.fetch_add(conflicts, Ordering::Relaxed);
    }

    /// Applies a histograms record as a commit applies its histograms (`HistData::apply`), with the
    /// skips and the future bound of float samples.
    ///
    /// A checkpoint's histograms are what the head held, in-order ones oldest first: they go back
    /// in order down to the newest block's end (as a checkpoint's float chunks are installed as
    /// they are), not only down to the head's newest sample minus half a range, below which
    /// replayed samples otherwise go among the late ones.
    fn apply_histograms(&mut self, hs: Vec<RefHistogram>, position: u32, from_checkpoint: bool) {
        let head = self.head;
        let mut ctx = head.apply_ctx();
        if from_checkpoint {
            ctx.min_valid_t = head.min_valid_floor();
        }
        let check_skips = self.skips.iter().any(|k| position < k.before_segment);
        let mut counts = HistogramCounts::default();
        let mut it = hs.into_iter().peekable();
        while let Some(first) = it.next() {
            let sref = first.sref;
            let Some(s) = self.lookup(sref).cloned() else {
                self.note_unknown_ref(sref);
                while it.next_if(|h| h.sref == sref).is_some() {}
                continue;
            };
            let mut data = s.lock();
            let mut next = Some(first);
            while let Some(h) = next.take() {
                if check_skips && self.skipped_at(position, h.t) {
                    self.skipped += 1;
                } else if h.t > self.max_future_t {
                    self.future_dropped += 1;
                } else {
                    counts.add(h.t, data.apply_histogram(h.t, h.v, &ctx));
                    self.histograms += 1;
                }
                next = it.next_if(|n| n.sref == sref);
            }
        }
        counts.publish(head);
    }

    /// Gives the exemplars of an exemplars record to the head's exemplar store (if it has one), as
    /// the commit that wrote them did; those the store refuses now (it already holds them, or newer
    /// ones of their series) are counted.
    fn apply_exemplars(&mut self, es: Vec<RefExemplar>) {
        let Some(store) = self.head.exemplar_store().cloned() else { return };
        for e in es {
            match self.lookup(e.sref).cloned() {
                Some(s) => {
                    for r in store.append(&s.labels, vec![e.exemplar]) {
                        match r {
                            Ok(()) => self.exemplars += 1,
                            Err(_) => self.exemplars_refused += 1,
                        }
                    }
                }
                None => self.note_unknown_ref(e.sref),
            }
        }
    }

    /// Deletes the intervals of a tombstones record from their series. An interval of a series the
    /// replay does not know (removed before the checkpoint: its samples are in blocks) is dropped.
    fn apply_tombstones(&mut self, stones: &[(u64, crate::intervals::Interval)]) {
        for &(sref, iv) in stones {
            match self.lookup(sref).cloned() {
                Some(s) => s.lock().add_deleted(iv),
                None => self.note_unknown_ref(sref),
            }
            self.tombstones += 1;
        }
    }

    /// Installs a series' chunks from a checkpoint into an empty series. If the series already holds
    /// data, or part of the chunks is already in a block, the chunks' samples are applied instead.
    fn install_chunks(&mut self, c: &SeriesChunks<'_>, position: u32) -> Result<()> {
        let Some(s) = self.lookup(c.sref).cloned() else {
            self.note_unknown_ref(c.sref);
            return Ok(());
        };
        let all_chunks = || c.sealed.iter().chain(&c.open).chain(&c.ooo_sealed);
        let needs_skip = all_chunks()
            .any(|ch| self.range_skipped(position, ch.min_t, ch.max_t) || ch.max_t > self.max_future_t)
            || c.ooo_open.iter().any(|&(t, _)| self.skipped_at(position, t) || t > self.max_future_t);
        let mut data = s.lock();
        if needs_skip || !is_empty(&data) {
            drop(data);
            let mut samples = Vec::new();
            for ch in all_chunks() {
                samples.extend(XorIter::new(ch.bytes).map(|(t, v)| RefSample { sref: c.sref, t, v }));
            }
            samples.extend(c.ooo_open.iter().map(|&(t, v)| RefSample { sref: c.sref, t, v }));
            samples.sort_by_key(|s| s.t);
            self.apply_samples(&samples, position);
            return Ok(());
        }
        let corrupt = |e: crate::chunkenc::ChunkError| Error::Corruption {
            what: format!("checkpoint chunk of series {} (checkpoint of segment {position:08})", c.sref),
            reason: e.to_string(),
        };
        let chunks = self.head.head_chunks();
        data.sealed = c.sealed.iter().map(|ch| SealedChunk::seal(ch.min_t, ch.max_t, ch.bytes, chunks)).collect();
        data.open = match &c.open {
            Some(ch) => {
                let chunk = XorChunk::from_bytes(ch.bytes.to_vec()).map_err(corrupt)?;
                // The chunk knows its own time range; an empty one is no open chunk at all.
                chunk.last_time().map(|max_t| OpenChunk { chunk, max_t })
            }
            None => None,
        };
        data.next_at = c.next_at;
        data.last_value = c.last_value;
        if !c.ooo_sealed.is_empty() || !c.ooo_open.is_empty() {
            let sealed =
                c.ooo_sealed.iter().map(|ch| SealedChunk::seal(ch.min_t, ch.max_t, ch.bytes, chunks)).collect();
            let mut ooo = OooData::new(OooChunk::default(), sealed);
            for &(t, v) in &c.ooo_open {
                ooo.insert_open(t, v, chunks);
            }
            data.ooo = Some(Box::new(ooo));
        }
        let n: u64 = all_chunks().map(|ch| u64::from(num_samples(ch.bytes))).sum::<u64>() + c.ooo_open.len() as u64;
        let range = data.time_range();
        drop(data);
        if let Some((lo, hi)) = range {
            self.head.observe_time(hi);
            self.head.observe_time(lo);
        }
        self.samples += n;
        self.chunk_samples += n;
        Ok(())
    }

    /// Installs a series' sealed histogram chunks from a checkpoint into a series without
    /// histograms (the histograms of its open chunk and its late ones follow in histograms
    /// records). If the series already holds histograms, or part of the chunks is skipped or too
    /// far in the future, the chunks' histograms are applied one by one instead (each chunk's
    /// counter-reset header carried as its first histogram's hint).
    fn install_histogram_chunks(&mut self, c: &SeriesHistogramChunks<'_>, position: u32) -> Result<()> {
        let Some(s) = self.lookup(c.sref).cloned() else {
            self.note_unknown_ref(c.sref);
            return Ok(());
        };
        let metas: Vec<ChunkMeta> = c
            .chunks
            .iter()
            .map(|ch| {
                let bytes = ChunkBytes::from(ch.bytes);
                let data = if ch.float { ChunkData::FloatHistogram(bytes) } else { ChunkData::Histogram(bytes) };
                ChunkMeta::new(ch.min_t, ch.max_t, data)
            })
            .collect();
        let needs_skip =
            c.chunks.iter().any(|ch| self.range_skipped(position, ch.min_t, ch.max_t) || ch.max_t > self.max_future_t);
        let mut data = s.lock();
        let corrupt = |e: crate::chunk::DecodeError| Error::Corruption {
            what: format!("checkpoint histogram chunk of series {} (checkpoint of segment {position:08})", c.sref),
            reason: e.to_string(),
        };
        if needs_skip || data.hist().is_some_and(|h| h.time_range().is_some()) {
            drop(data);
            let mut hs = Vec::new();
            for m in &metas {
                let all = super::histograms::reappendable(m).map_err(corrupt)?;
                hs.extend(all.into_iter().map(|(t, v)| RefHistogram { sref: c.sref, t, v }));
            }
            self.apply_histograms(hs, position, true);
            return Ok(());
        }
        let n: u64 = c.chunks.iter().map(|ch| u64::from(num_samples(ch.bytes))).sum();
        let range = c.chunks.first().zip(c.chunks.last()).map(|(a, b)| (a.min_t, b.max_t));
        data.hist_or_insert().install_sealed(metas).map_err(corrupt)?;
        drop(data);
        if let Some((lo, hi)) = range {
            self.head.observe_time(hi);
            self.head.observe_time(lo);
        }
        self.histograms += n;
        Ok(())
    }

    /// True if a skip rule covers any part of the chunk's time range.
    fn range_skipped(&self, position: u32, min_t: i64, max_t: i64) -> bool {
        self.skips.iter().any(|k| position < k.before_segment && min_t < k.maxt && max_t >= k.mint)
    }
}

fn is_empty(d: &SeriesData) -> bool {
    d.sealed.is_empty() && d.open.is_none() && d.ooo.is_none()
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
