//! What goes into a WAL checkpoint: a series record for every series, a chunks record with every
//! chunk still in the head, histogram chunks records with the sealed native histogram chunks and
//! histograms records with the histograms of the open histogram chunks and the late ones (as
//! samples: replay re-encodes them; each series' chunks are written before its samples), a
//! tombstones record with the deleted intervals of the series
//! that hold samples, and exemplars records with the exemplar store's exemplars of the series in
//! the head, so WAL segments before the checkpoint can be deleted and a restart loads
//! chunks instead of re-appending samples. Written after each head compaction, when the WAL since the
//! last checkpoint grows past a size, and at shutdown. Where a checkpoint lives and how it is put in
//! place (written aside, synced, renamed: a crash leaves either the old checkpoint and segments, or
//! the new checkpoint) is the `wal` crate's [`wal::checkpoint`].

use super::histograms::HistData;
use super::in_order::SealedChunk;
use super::Head;
use crate::chunk::ChunkData;
use crate::chunkenc::num_samples;
use crate::error::{Error, Result};
use crate::record::{self, SeriesChunks, SeriesHistogramChunks, StoredChunk, StoredHistogramChunk};

const SERIES_PER_RECORD: usize = 1_000;
/// A sealed chunk read back for a checkpoint: min time, max time, where its bytes are in the buffer.
type ReadSpan = (i64, i64, std::ops::Range<usize>);
/// A chunks record is flushed once it holds this many bytes.
const CHUNK_RECORD_BYTES: usize = 1 << 20;

impl Head {
    /// Cuts a WAL segment and writes a checkpoint at it (see [`Head::checkpoint`]).
    pub fn checkpoint_now(&self) -> Result<()> {
        let Some(wal) = self.wal() else { return Ok(()) };
        let (cut, ()) = wal.cut_segment_with(|_| self.relog_series())?;
        self.checkpoint(cut.0)
    }

    /// Makes the next commit of every series write its series record again. Called at a segment cut
    /// that a checkpoint follows, and after replay: the segments from then on name every series
    /// they hold samples of, so a checkpoint found damaged at startup loses only what it alone held.
    /// Costs one series record per active series per checkpoint.
    pub(crate) fn relog_series(&self) {
        self.series_maps().for_each(|s| s.logged.store(false, std::sync::atomic::Ordering::Release));
    }

    /// Bytes of WAL segments on disk, less what re-logging the series after the last checkpoint
    /// added: about what a restart would replay sample by sample. Without the deduction, a head
    /// whose series records outweigh the size limit would checkpoint again right after each one.
    pub fn wal_bytes_since_checkpoint(&self) -> u64 {
        let bytes = self.wal().and_then(|w| w.segments_bytes().ok()).unwrap_or(0);
        bytes.saturating_sub(self.relog_bytes.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Writes `checkpoint.<cut>` from memory, then deletes WAL segments before `cut` and older
    /// checkpoints. Appends may continue meanwhile (their samples are in segments >= `cut`; if they
    /// also land in the checkpoint, replay stores them once).
    pub fn checkpoint(&self, cut: u32) -> Result<()> {
        let Some(wal) = self.wal() else { return Ok(()) };
        let wal_dir = wal.dir().to_owned();
        let tmp_dir = wal::checkpoint::tmp_dir(&wal_dir, wal::SegmentIndex(cut))?;
        let started = std::time::Instant::now();
        let (n_series, n_samples, n_histograms, n_exemplars) = {
            let opts = wal::Options { sync: wal::SyncPolicy::Never, ..wal::Options::default() };
            let (cp, _) = wal::Wal::open(&tmp_dir, opts)?;
            let mut series_rec = Vec::new();
            let mut samples_rec = Vec::new();
            let (mut n_series, mut n_samples, mut in_rec) = (0u64, 0u64, 0usize);
            let mut failed: Option<Error> = None;
            let flush = |rec: &mut Vec<u8>, failed: &mut Option<Error>| {
                if !rec.is_empty() && failed.is_none() {
                    if let Err(e) = cp.log(&[rec.as_slice()], || ()) {
                        *failed = Some(e.into());
                    }
                }
                rec.clear();
            };
            // Series first, so every sample's series is known when replayed.
            self.series_maps().for_each(|s| {
                record::encode_series(&mut series_rec, s.sref.0, &s.labels);
                n_series += 1;
                in_rec += 1;
                if in_rec >= SERIES_PER_RECORD {
                    flush(&mut series_rec, &mut failed);
                    in_rec = 0;
                }
            });
            flush(&mut series_rec, &mut failed);
            let series_bytes = cp.bytes_written();
            let mut scratch: Vec<u8> = Vec::new();
            let mut spans: Vec<ReadSpan> = Vec::new();
            let mut stones_rec: Vec<u8> = Vec::new();
            let mut hist_rec = record::HistogramsRecord::default();
            let mut hist_chunks_rec: Vec<u8> = Vec::new();
            let (mut n_histograms, mut n_exemplars) = (0u64, 0u64);
            // A series' sealed histogram chunks go before its other histograms: replay installs the
            // chunks, then appends the rest after them.
            let flush_hist = |chunks: &mut Vec<u8>, rec: &mut record::HistogramsRecord, failed: &mut Option<Error>| {
                for bytes in [chunks.as_slice(), rec.as_bytes()] {
                    if !bytes.is_empty() && failed.is_none() {
                        if let Err(e) = cp.log(&[bytes], || ()) {
                            *failed = Some(e.into());
                        }
                    }
                }
                chunks.clear();
                *rec = record::HistogramsRecord::default();
            };
            self.series_maps().for_each(|s| {
                if failed.is_some() {
                    return;
                }
                let data = s.lock();
                // Sealed chunks (most of them moved to the head chunk files) are read back into one
                // buffer reused for every series: no allocation per chunk.
                scratch.clear();
                spans.clear();
                let read = read_sealed(&data.sealed, &mut scratch, &mut spans).and_then(|()| {
                    data.ooo.as_ref().map_or(Ok(()), |o| read_sealed(o.sealed(), &mut scratch, &mut spans))
                });
                if let Err(e) = read {
                    failed = Some(e);
                    return;
                }
                let stored = |c: &ReadSpan| StoredChunk {
                    min_t: c.0,
                    max_t: c.1,
                    bytes: scratch.get(c.2.clone()).unwrap_or_default(),
                };
                let (sealed, ooo_sealed) = spans.split_at(data.sealed.len().min(spans.len()));
                let entry = SeriesChunks {
                    sref: s.sref.0,
                    next_at: data.next_at,
                    last_value: data.last_value,
                    sealed: sealed.iter().map(stored).collect(),
                    open: data.open.as_ref().map(|c| StoredChunk {
                        min_t: c.min_t(),
                        max_t: c.max_t,
                        bytes: c.chunk.bytes(),
                    }),
                    ooo_sealed: ooo_sealed.iter().map(stored).collect(),
                    ooo_open: data.ooo.as_ref().map(|o| o.open.samples().collect()).unwrap_or_default(),
                };
                let floats = !(entry.sealed.is_empty()
                    && entry.open.is_none()
                    && entry.ooo_sealed.is_empty()
                    && entry.ooo_open.is_empty());
                let hists = match data.hist().map(HistData::checkpoint_parts).transpose() {
                    Ok(h) => h,
                    Err(e) => {
                        failed = Some(e);
                        return;
                    }
                };
                let no_hists =
                    hists.as_ref().is_none_or(|h| h.sealed.is_empty() && h.open.is_empty() && h.late.is_empty());
                if !floats && no_hists {
                    return;
                }
                for iv in data.deleted().map(|d| d.as_slice()).unwrap_or_default() {
                    record::encode_tombstone(&mut stones_rec, s.sref.0, *iv);
                }
                if let Some(h) = &hists {
                    if !h.sealed.is_empty() {
                        let chunks = h
                            .sealed
                            .iter()
                            .filter_map(|c| match &c.data {
                                ChunkData::Histogram(b) => Some((false, c, b)),
                                ChunkData::FloatHistogram(b) => Some((true, c, b)),
                                _ => None,
                            })
                            .map(|(float, c, b)| StoredHistogramChunk {
                                float,
                                min_t: c.min_t,
                                max_t: c.max_t,
                                bytes: b,
                            })
                            .collect();
                        record::encode_histogram_chunks(
                            &mut hist_chunks_rec,
                            &SeriesHistogramChunks { sref: s.sref.0, chunks },
                        );
                        n_histograms += h
                            .sealed
                            .iter()
                            .filter_map(|c| c.data.bytes())
                            .map(|b| u64::from(num_samples(b)))
                            .sum::<u64>();
                    }
                    for (t, v) in &h.open {
                        hist_rec.push(s.sref.0, *t, v);
                    }
                    for &(t, v) in &h.late {
                        hist_rec.push_encoded(s.sref.0, t, v);
                    }
                    n_histograms += (h.open.len() + h.late.len()) as u64;
                }
                if hist_rec.as_bytes().len() >= CHUNK_RECORD_BYTES || hist_chunks_rec.len() >= CHUNK_RECORD_BYTES {
                    flush_hist(&mut hist_chunks_rec, &mut hist_rec, &mut failed);
                }
                if !floats {
                    return;
                }
                n_samples += entry
                    .sealed
                    .iter()
                    .chain(&entry.open)
                    .chain(&entry.ooo_sealed)
                    .map(|c| u64::from(num_samples(c.bytes)))
                    .sum::<u64>()
                    + entry.ooo_open.len() as u64;
                record::encode_chunks(&mut samples_rec, &entry);
                drop(entry);
                drop(data);
                if samples_rec.len() >= CHUNK_RECORD_BYTES {
                    flush(&mut samples_rec, &mut failed);
                }
            });
            flush(&mut samples_rec, &mut failed);
            flush_hist(&mut hist_chunks_rec, &mut hist_rec, &mut failed);
            // Exemplars of the series still in the head, oldest first, so that replay takes them all.
            let mut exemplars_rec = record::ExemplarsRecord::default();
            for (labels, e) in self.exemplar_store().map(|st| st.entries_oldest_first()).unwrap_or_default() {
                if let Some(s) = self.series_maps().get_by_packed(labels.stable_hash(), labels.packed()) {
                    exemplars_rec.push(s.sref.0, &e);
                    n_exemplars += 1;
                }
                if exemplars_rec.as_bytes().len() >= CHUNK_RECORD_BYTES {
                    flush(&mut exemplars_rec_bytes(&mut exemplars_rec), &mut failed);
                }
            }
            flush(&mut exemplars_rec_bytes(&mut exemplars_rec), &mut failed);
            flush(&mut stones_rec, &mut failed);
            if let Some(e) = failed {
                return Err(e);
            }
            cp.close()?;
            self.relog_bytes.store(series_bytes, std::sync::atomic::Ordering::Relaxed);
            (n_series, n_samples, n_histograms, n_exemplars)
        };
        wal::checkpoint::commit(&wal_dir, wal::SegmentIndex(cut))?;
        let removed = wal.truncate_before(wal::SegmentIndex(cut))?;
        wal::checkpoint::remove_before(&wal_dir, wal::SegmentIndex(cut))?;
        tracing::info!(
            checkpoint = cut,
            series = n_series,
            samples = n_samples,
            histograms = n_histograms,
            exemplars = n_exemplars,
            segments_removed = removed,
            duration_secs = started.elapsed().as_secs_f64(),
            "wal checkpoint written"
        );
        Ok(())
    }
}

/// Takes the record's bytes, leaving it empty.
fn exemplars_rec_bytes(rec: &mut record::ExemplarsRecord) -> Vec<u8> {
    std::mem::take(rec).as_bytes().to_vec()
}

/// Appends the bytes of `chunks` to `buf` and their spans to `spans`.
fn read_sealed(chunks: &[SealedChunk], buf: &mut Vec<u8>, spans: &mut Vec<ReadSpan>) -> Result<()> {
    for c in chunks {
        let at = buf.len();
        c.read_into(buf)?;
        spans.push((c.min_t, c.max_t, at..buf.len()));
    }
    Ok(())
}
