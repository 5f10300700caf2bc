//! The head's side of compaction: take a consistent snapshot of everything the head holds in a time
//! range (in-order and out-of-order), and after the block is safely on disk, drop exactly what the
//! snapshot took.
//!
//! The snapshot is taken while the WAL's writer lock is held, right after a new WAL segment is cut,
//! so the block holds exactly the in-range samples of the WAL segments before the cut: a crash before
//! the checkpoint replays the old segments and skips that range (see `replay`). From the snapshot on,
//! in-order appends below the range's end are refused (or go out of order), so in-order chunks in the
//! range are frozen; out-of-order samples arriving later stay in the head for a later block.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::in_order::SealedChunk;
use super::series::{MemSeries, SeriesData};
use super::Head;
use crate::chunk::{ChunkData, ChunkMeta};
use crate::chunkenc::{XorChunk, XorIter};
use crate::error::Result;
use crate::histogram::HistogramValue;
use crate::intervals::Intervals;

use crate::labels::Labels;
use crate::merge::Merge;

/// What the head held in `[mint, maxt)` at one WAL position.
///
/// The snapshot records only *which* data it took: per series, whether its in-order chunks in the
/// range were taken and the timestamps of the out-of-order samples taken. The samples themselves are
/// read from the series one at a time while the block is written ([`RangeSnapshot::series_chunks`]),
/// so a compaction holds one series' samples at a time, not the whole range (a copy of the range's
/// out-of-order data, which must be merged sample by sample, would take ~16 bytes per sample). Reading later
/// reads the same samples: from the snapshot on, in-order appends below `maxt` are refused or go out
/// of order, so the in-order chunks in the range are frozen; out-of-order samples that arrive later
/// are told apart by their timestamps (a stored sample's value never changes, the first one wins).
pub struct RangeSnapshot {
    /// Range start (inclusive).
    pub mint: i64,
    /// Range end (exclusive).
    pub maxt: i64,
    /// Index of the WAL segment cut for this snapshot (None without a WAL).
    pub wal_cut: Option<u32>,
    /// Series with data in the range, sorted by labels.
    taken: Vec<Taken>,
    /// Late samples the merge left out for an earlier sample at their timestamp with another value
    /// (added to the head's stats once the block is durable: [`Head::truncate_snapshot`]).
    shadowed: AtomicU64,
}

impl RangeSnapshot {
    fn new(mint: i64, maxt: i64, wal_cut: Option<u32>, mut taken: Vec<Taken>) -> RangeSnapshot {
        taken.sort_by(|a, b| a.series.labels.cmp(&b.series.labels));
        RangeSnapshot { mint, maxt, wal_cut, taken, shadowed: AtomicU64::new(0) }
    }

    /// Number of series in the snapshot.
    pub fn num_series(&self) -> usize {
        self.taken.len()
    }

    /// The series in label order with their chunks in the range (sorted, not overlapping), read from
    /// the series (and the head chunk files) one series at a time.
    pub fn series_chunks(&self) -> impl Iterator<Item = Result<(Labels, Vec<ChunkMeta>)>> + '_ {
        self.taken.iter().map(|t| Ok((t.series.labels.clone(), t.chunks(self.mint, self.maxt, &self.shadowed)?)))
    }
}

struct Taken {
    series: Arc<MemSeries>,
    /// Whether in-order chunks in the range were taken.
    in_order: bool,
    /// Out-of-order timestamps taken, sorted.
    ooo_ts: Vec<i64>,
    /// Whether in-order histogram chunks in the range were taken.
    hist_in_order: bool,
    /// Late histogram timestamps taken, sorted.
    hist_ooo_ts: Vec<i64>,
}

/// A series' data in the range, copied out under its lock (chunk handles and small buffers only).
struct Copied {
    sealed: Vec<SealedChunk>,
    /// The open in-order chunk, if in the range: min time, max time, bytes.
    open: Option<(i64, i64, Arc<[u8]>)>,
    ooo_sealed: Vec<SealedChunk>,
    ooo_open: Vec<(i64, f64)>,
    /// The series' deleted intervals: their samples do not go into the block.
    deleted: Option<Arc<Intervals>>,
    /// In-order histogram chunks in the range (sealed ones shared, the open one copied).
    hist_chunks: Vec<ChunkMeta>,
    /// Late histograms taken.
    hist_ooo: Vec<(i64, HistogramValue)>,
}

impl Taken {
    /// The taken data of the series as chunks: in-order chunks as they are when nothing else was
    /// taken (marked with the series' deleted intervals, which the block writer then leaves out),
    /// else in-order and out-of-order samples merged into fresh non-overlapping chunks without the
    /// deleted samples.
    ///
    /// Native histogram chunks follow the same rules (in-order histogram chunks as they are, or
    /// merged with the late histograms taken into [`ChunkData::RawHistograms`] chunks); the list
    /// holds both kinds sorted by start time, each kind's chunks not overlapping each other.
    fn chunks(&self, mint: i64, maxt: i64, shadowed: &AtomicU64) -> Result<Vec<ChunkMeta>> {
        let mut c = self.copy(mint, maxt);
        let hist_chunks = std::mem::take(&mut c.hist_chunks);
        let hist_ooo = std::mem::take(&mut c.hist_ooo);
        let deleted = c.deleted.clone();
        let mut chunks = self.float_chunks(c, mint, maxt, shadowed)?;
        if !hist_chunks.is_empty() || !hist_ooo.is_empty() {
            chunks.extend(histogram_chunks(hist_chunks, hist_ooo, deleted.as_ref(), mint, maxt, shadowed)?);
            chunks.sort_by_key(|c| c.min_t);
        }
        Ok(chunks)
    }

    /// The float part of [`Taken::chunks`].
    fn float_chunks(&self, c: Copied, mint: i64, maxt: i64, shadowed: &AtomicU64) -> Result<Vec<ChunkMeta>> {
        // A chunk that straddles the range (only possible if the chunk range differs from the block
        // range) is re-encoded from its in-range samples like out-of-order data.
        let straddles = c
            .sealed
            .iter()
            .map(|s| (s.min_t, s.max_t))
            .chain(c.open.as_ref().map(|o| (o.0, o.1)))
            .any(|(lo, hi)| lo < mint || hi >= maxt);
        if self.ooo_ts.is_empty() && !straddles {
            let deleted = c.deleted.as_ref();
            let mut chunks = Vec::with_capacity(c.sealed.len() + 1);
            for s in &c.sealed {
                chunks.extend(
                    ChunkMeta::new(s.min_t, s.max_t, ChunkData::Xor(s.bytes()?.into())).without_deleted(deleted),
                );
            }
            if let Some((min_t, max_t, bytes)) = c.open {
                chunks.extend(ChunkMeta::new(min_t, max_t, ChunkData::Xor(bytes.into())).without_deleted(deleted));
            }
            return Ok(chunks);
        }
        // In-order chunks first: they win at equal timestamps. A late sample is not compared with
        // the in-order ones when it arrives; a different value is counted here.
        let mut sources: Vec<ChunkMeta> = Vec::with_capacity(c.sealed.len() + c.ooo_sealed.len() + 2);
        for s in &c.sealed {
            sources.push(ChunkMeta::new(s.min_t, s.max_t, ChunkData::Xor(s.bytes()?.into())));
        }
        if let Some((min_t, max_t, bytes)) = c.open {
            sources.push(ChunkMeta::new(min_t, max_t, ChunkData::Xor(bytes.into())));
        }
        // Out-of-order chunks hold only the samples the snapshot took.
        let taken = |&(t, _): &(i64, f64)| self.ooo_ts.binary_search(&t).is_ok();
        for s in &c.ooo_sealed {
            let chunk = ChunkMeta::new(s.min_t, s.max_t, ChunkData::Xor(s.bytes()?.into()));
            let mut it = Merge::new([&chunk], mint, maxt - 1);
            let kept: Vec<(i64, f64)> = it.by_ref().filter(taken).collect();
            if let Some(e) = it.error() {
                return Err(e.clone().into());
            }
            sources.extend(ChunkMeta::raw(&kept));
        }
        let ooo_open: Vec<(i64, f64)> = c.ooo_open.iter().copied().filter(taken).collect();
        sources.extend(ChunkMeta::raw(&ooo_open));
        let mut merged = Merge::new(&sources, mint, maxt - 1);
        let mut all: Vec<(i64, f64)> = merged.by_ref().collect();
        if let Some(d) = &c.deleted {
            all.retain(|&(t, _)| !d.contains(t));
        }
        if let Some(e) = merged.error() {
            return Err(e.clone().into());
        }
        if merged.shadowed() > 0 {
            shadowed.fetch_add(merged.shadowed(), Ordering::Relaxed);
        }
        Ok(ChunkMeta::raw_chunks(&all))
    }

    /// Copies what may be taken out of the series under its lock; chunk files are read after.
    fn copy(&self, mint: i64, maxt: i64) -> Copied {
        let d = self.series.lock();
        let mut c = Copied {
            sealed: Vec::new(),
            open: None,
            ooo_sealed: Vec::new(),
            ooo_open: Vec::new(),
            deleted: d.deleted().cloned(),
            hist_chunks: Vec::new(),
            hist_ooo: Vec::new(),
        };
        if let Some(h) = d.hist() {
            if self.hist_in_order {
                c.hist_chunks = h.in_order_chunks(mint, maxt - 1).collect();
            }
            if !self.hist_ooo_ts.is_empty() {
                c.hist_ooo = h.ooo_part(mint, maxt - 1);
                c.hist_ooo.retain(|(t, _)| self.hist_ooo_ts.binary_search(t).is_ok());
            }
        }
        if self.in_order {
            c.sealed = d.sealed.iter().filter(|s| in_range(s.min_t, s.max_t, mint, maxt)).cloned().collect();
            c.open = d
                .open
                .as_ref()
                .filter(|o| in_range(o.min_t(), o.max_t, mint, maxt))
                .map(|o| (o.min_t(), o.max_t, o.chunk.bytes().into()));
        }
        if let (false, Some(o)) = (self.ooo_ts.is_empty(), &d.ooo) {
            c.ooo_sealed = o.sealed().iter().filter(|s| in_range(s.min_t, s.max_t, mint, maxt)).cloned().collect();
            c.ooo_open = o.open.samples().filter(|&(t, _)| t >= mint && t < maxt).collect();
        }
        c
    }
}

impl Head {
    /// Snapshots `[mint, maxt)`, cutting a WAL segment so the snapshot matches a WAL position, and
    /// raises the in-order floor to `maxt`.
    pub fn snapshot_range(&self, mint: i64, maxt: i64) -> Result<RangeSnapshot> {
        let take = |cut: Option<u32>| {
            self.raise_min_valid_floor(maxt);
            (cut, self.take_range(mint, maxt))
        };
        let (wal_cut, taken) = match self.wal() {
            Some(wal) => {
                wal.cut_segment_with(|seg| {
                    // A checkpoint at this cut follows the block.
                    self.relog_series();
                    take(Some(seg.0))
                })?
                .1
            }
            None => take(None),
        };
        // Sorted after the WAL lock is released.
        Ok(RangeSnapshot::new(mint, maxt, wal_cut, taken?))
    }

    /// What every series holds in `[mint, maxt)`, in no order; the first series that cannot be read
    /// fails it.
    fn take_range(&self, mint: i64, maxt: i64) -> Result<Vec<Taken>> {
        let mut taken = Vec::new();
        let mut failed = None;
        self.series_maps().for_each(|s| {
            let data = s.lock();
            match taken_from(s, &data, mint, maxt) {
                Ok(t) => taken.extend(t),
                Err(e) => failed = Some(e),
            }
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(taken),
        }
    }

    /// Snapshots everything the head holds now (in-order and out-of-order) without changing the head
    /// or the WAL: no segment is cut and the in-order floor stays. Returns None for an empty head.
    /// The samples are read while the block is written, so samples appended meanwhile inside the range
    /// may be included; the caller keeps the head from being truncated until then.
    pub fn snapshot_all(&self) -> Result<Option<RangeSnapshot>> {
        let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
        self.series_maps().for_each(|s| {
            if let Some((lo, hi)) = s.lock().time_range() {
                mint = mint.min(lo);
                maxt = maxt.max(hi);
            }
        });
        if mint > maxt {
            return Ok(None);
        }
        let maxt = maxt.saturating_add(1);
        Ok(Some(RangeSnapshot::new(mint, maxt, None, self.take_range(mint, maxt)?)))
    }

    /// Drops from memory exactly what `snap` took (call after its block is durable), removes the
    /// series left without samples (see [`Head::gc_series`]), and recomputes the head's min time.
    pub fn truncate_snapshot(&self, snap: RangeSnapshot) {
        let cap = self.opts.ooo_cap_max;
        self.stats.samples_shadowed.fetch_add(snap.shadowed.load(Ordering::Relaxed), Ordering::Relaxed);
        for t in &snap.taken {
            let mut data = t.series.lock();
            if t.in_order {
                drop_in_order(&mut data, snap.mint, snap.maxt);
            }
            if !t.ooo_ts.is_empty() {
                drop_ooo(&mut data, &t.ooo_ts, cap);
            }
            if let Some(h) = data.hist_mut() {
                if t.hist_in_order {
                    h.drop_in_order(snap.mint, snap.maxt);
                }
                if !t.hist_ooo_ts.is_empty() {
                    h.drop_ooo(&t.hist_ooo_ts);
                }
            }
            // Intervals over ranges compacted before this one delete nothing that is still here.
            // Those inside this range stay: a late sample that arrived since the snapshot was
            // taken is still in the head, and a deletion before it hides it.
            data.truncate_deleted_before(snap.mint);
        }
        // The snapshot's own references would keep every series it took from being collected.
        drop(snap);
        self.gc_series();
        self.recompute_min_time();
    }

    /// Sets the head's min time to the oldest sample still held (i64::MAX when empty).
    pub(crate) fn recompute_min_time(&self) {
        let mut min = i64::MAX;
        self.series_maps().for_each(|s| {
            if let Some((lo, _)) = s.lock().time_range() {
                min = min.min(lo);
            }
        });
        self.min_t.store(min, Ordering::Release);
    }
}

/// A series' histograms taken into a block over `[mint, maxt)`: its in-order histogram chunks as
/// they are (marked with the deleted intervals) when no late histogram was taken and none straddles
/// the range, else the in-order and late histograms merged (the in-order one wins at a timestamp
/// both hold; a different late one is counted in `shadowed`) into raw chunks of
/// [`crate::chunk::SAMPLES_PER_CHUNK`] without the deleted ones.
fn histogram_chunks(
    in_order: Vec<ChunkMeta>,
    late: Vec<(i64, HistogramValue)>,
    deleted: Option<&Arc<Intervals>>,
    mint: i64,
    maxt: i64,
    shadowed: &AtomicU64,
) -> Result<Vec<ChunkMeta>> {
    let straddles = in_order.iter().any(|c| c.min_t < mint || c.max_t >= maxt);
    if late.is_empty() && !straddles {
        return Ok(in_order.into_iter().filter_map(|c| c.without_deleted(deleted)).collect());
    }
    let mut ordered: Vec<(i64, HistogramValue)> = Vec::new();
    for c in &in_order {
        let mut it = c.histograms(mint, maxt - 1);
        ordered.extend(it.by_ref());
        if let Some(e) = it.error() {
            return Err(crate::chunk::DecodeError::new(c, e.clone()).into());
        }
    }
    let mut all: Vec<(i64, HistogramValue)> = Vec::with_capacity(ordered.len() + late.len());
    let mut late = late.into_iter().peekable();
    let mut lost = 0u64;
    for (t, v) in ordered {
        while let Some(l) = late.next_if(|l| l.0 < t) {
            all.push(l);
        }
        if let Some((_, lv)) = late.next_if(|l| l.0 == t) {
            if !super::histograms::identical(&lv, &v) {
                lost += 1;
            }
        }
        all.push((t, v));
    }
    all.extend(late);
    if lost > 0 {
        shadowed.fetch_add(lost, Ordering::Relaxed);
    }
    if let Some(d) = deleted {
        all.retain(|(t, _)| !d.contains(*t));
    }
    Ok(all.chunks(crate::chunk::SAMPLES_PER_CHUNK).filter_map(ChunkMeta::raw_histograms).collect())
}

fn in_range(c_min: i64, c_max: i64, mint: i64, maxt: i64) -> bool {
    c_min < maxt && c_max >= mint
}

/// What a snapshot takes of one series: whether it has in-order chunks in the range, and the
/// timestamps of its out-of-order samples in the range (None if it has no data there).
fn taken_from(s: &Arc<MemSeries>, d: &SeriesData, mint: i64, maxt: i64) -> Result<Option<Taken>> {
    // In-order chunks never cross a chunk-range boundary, so each is wholly inside or outside.
    let in_order = d.sealed.iter().any(|c| in_range(c.min_t, c.max_t, mint, maxt))
        || d.open.as_ref().is_some_and(|c| in_range(c.min_t(), c.max_t, mint, maxt));
    let mut ooo_ts: Vec<i64> = Vec::new();
    if let Some(o) = &d.ooo {
        for c in o.sealed().iter().filter(|c| in_range(c.min_t, c.max_t, mint, maxt)) {
            ooo_ts.extend(XorIter::new(&c.bytes()?).map(|(t, _)| t).filter(|&t| t >= mint && t < maxt));
        }
        ooo_ts.extend(o.open.samples().map(|(t, _)| t).filter(|&t| t >= mint && t < maxt));
    }
    let (mut hist_in_order, mut hist_ooo_ts) = (false, Vec::new());
    if let Some(h) = d.hist() {
        hist_in_order = h.in_order_chunks_overlap(mint, maxt - 1);
        hist_ooo_ts = h.ooo.keys().copied().filter(|&t| t >= mint && t < maxt).collect();
    }
    if !in_order && ooo_ts.is_empty() && !hist_in_order && hist_ooo_ts.is_empty() {
        return Ok(None);
    }
    ooo_ts.sort_unstable();
    ooo_ts.dedup();
    ooo_ts.shrink_to_fit();
    Ok(Some(Taken { series: Arc::clone(s), in_order, ooo_ts, hist_in_order, hist_ooo_ts }))
}

fn drop_in_order(d: &mut SeriesData, mint: i64, maxt: i64) {
    d.sealed.retain(|c| !in_range(c.min_t, c.max_t, mint, maxt));
    if d.open.as_ref().is_some_and(|c| in_range(c.min_t(), c.max_t, mint, maxt)) {
        d.open = None;
    }
}

/// Removes the given out-of-order timestamps, re-sealing what remains into chunks of at most `cap`.
fn drop_ooo(d: &mut SeriesData, ts: &[i64], cap: usize) {
    let Some(o) = d.ooo.as_mut() else { return };
    let mut sorted = ts.to_vec();
    sorted.sort_unstable();
    let gone = |t: i64| sorted.binary_search(&t).is_ok();
    let mut keep: Vec<(i64, f64)> = Vec::new();
    let mut sealed: Vec<SealedChunk> = Vec::new();
    for c in o.take_sealed() {
        // A chunk that cannot be read (from the head chunk file) is kept as it is.
        let Ok(bytes) = c.bytes() else {
            sealed.push(c);
            continue;
        };
        if XorIter::new(&bytes).any(|(t, _)| gone(t)) {
            keep.extend(XorIter::new(&bytes).filter(|&(t, _)| !gone(t)));
        } else {
            sealed.push(c);
        }
    }
    keep.extend(o.open.samples().filter(|&(t, _)| !gone(t)));
    keep.sort_by_key(|s| s.0);
    let mut open = super::ooo::OooChunk::default();
    for part in keep.chunks(cap.max(1)) {
        let (Some(first), Some(last)) = (part.first(), part.last()) else { continue };
        let mut c = XorChunk::new();
        for &(t, v) in part {
            c.push(t, v);
        }
        sealed.push(SealedChunk::in_memory(first.0, last.0, c.into_bytes().into()));
    }
    // Keep the open buffer empty: everything remaining is sealed.
    std::mem::swap(&mut o.open, &mut open);
    o.set_sealed(sealed);
    if o.sealed().is_empty() && o.open.is_empty() {
        d.ooo = None;
    }
}
