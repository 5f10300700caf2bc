//! The head's side of compaction: take a consistent snapshot of everything the head holds in a time
//! range (in-order and out-of-order), and after the block is safely on disk, drop exactly what the
//! snapshot took.
//!
//! The snapshot is taken while the WAL's writer lock is held, right after a new WAL segment is cut,
//! so the block holds exactly the in-range samples of the WAL segments before the cut: a crash before
//! the checkpoint replays the old segments and skips that range (see `replay`). From the snapshot on,
//! in-order appends below the range's end are refused (or go out of order), so in-order chunks in the
//! range are frozen; out-of-order samples arriving later stay in the head for a later block.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::series::{MemSeries, SealedChunk, SeriesData};
use super::Head;
use crate::chunkenc::{XorChunk, XorIter};
use crate::error::Result;

use crate::labels::Labels;
use crate::querier::{ChunkData, ChunkMeta};

/// Samples per chunk when samples are re-encoded (Prometheus's `seriesToChunkEncoder` split).
const SAMPLES_PER_MERGED_CHUNK: usize = 120;

/// What the head held in `[mint, maxt)` at one WAL position.
pub struct RangeSnapshot {
    /// Range start (inclusive).
    pub mint: i64,
    /// Range end (exclusive).
    pub maxt: i64,
    /// Index of the WAL segment cut for this snapshot (None without a WAL).
    pub wal_cut: Option<u32>,
    /// Series with data in the range, sorted by labels, with non-overlapping chunks. Chunks moved to
    /// head chunk files are read only when [`RangeSnapshot::series_chunks`] reaches their series, so a
    /// snapshot costs little memory however much it covers.
    series: Vec<(Labels, Vec<SnapChunk>)>,
    /// Samples in the snapshot.
    pub num_samples: u64,
    taken: Vec<Taken>,
}

/// A chunk of a snapshot: ready, or a sealed head chunk still to be read.
enum SnapChunk {
    Ready(ChunkMeta),
    Sealed(SealedChunk),
}

impl SnapChunk {
    fn resolve(&self) -> Result<ChunkMeta> {
        match self {
            SnapChunk::Ready(c) => Ok(c.clone()),
            SnapChunk::Sealed(c) => Ok(ChunkMeta { min_t: c.min_t, max_t: c.max_t, data: ChunkData::Xor(c.bytes()?) }),
        }
    }
}

impl RangeSnapshot {
    /// Number of series in the snapshot.
    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// The series in label order with their chunks, reading chunks from head chunk files one series at
    /// a time.
    pub fn series_chunks(&self) -> impl Iterator<Item = Result<(Labels, Vec<ChunkMeta>)>> + '_ {
        self.series.iter().map(|(labels, chunks)| {
            let chunks = chunks.iter().map(SnapChunk::resolve).collect::<Result<Vec<_>>>()?;
            Ok((labels.clone(), chunks))
        })
    }
}

struct Taken {
    series: Arc<MemSeries>,
    /// Whether in-order chunks in the range were taken.
    in_order: bool,
    /// Out-of-order timestamps taken.
    ooo_ts: Vec<i64>,
}

impl Head {
    /// Snapshots `[mint, maxt)`, cutting a WAL segment so the snapshot matches a WAL position, and
    /// raises the in-order floor to `maxt`.
    pub fn snapshot_range(&self, mint: i64, maxt: i64) -> Result<RangeSnapshot> {
        let take = |cut: Option<u32>| {
            self.raise_min_valid_floor(maxt);
            let mut entries = Vec::new();
            let mut failed = None;
            self.series_maps().for_each(|s| {
                let data = s.lock();
                match snapshot_series(s, &data, mint, maxt) {
                    Ok(e) => entries.extend(e),
                    Err(e) => failed = Some(e),
                }
            });
            (cut, entries, failed)
        };
        let (wal_cut, mut entries, failed) = match self.wal() {
            Some(wal) => wal.cut_segment_with(|seg| take(Some(seg.0)))?.1,
            None => take(None),
        };
        if let Some(e) = failed {
            return Err(e);
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut snap = RangeSnapshot { mint, maxt, wal_cut, series: Vec::new(), num_samples: 0, taken: Vec::new() };
        for (labels, chunks, taken, n) in entries {
            snap.series.push((labels, chunks));
            snap.taken.push(taken);
            snap.num_samples += n;
        }
        Ok(snap)
    }

    /// Drops from memory exactly what `snap` took (call after its block is durable), removes the
    /// series left without samples (see [`Head::gc_series`]), and recomputes the head's min time.
    pub fn truncate_snapshot(&self, snap: RangeSnapshot) {
        let cap = self.opts.ooo_cap_max;
        for t in &snap.taken {
            let mut data = t.series.lock();
            if t.in_order {
                drop_in_order(&mut data, snap.mint, snap.maxt);
            }
            if !t.ooo_ts.is_empty() {
                drop_ooo(&mut data, &t.ooo_ts, cap);
            }
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

fn in_range(c_min: i64, c_max: i64, mint: i64, maxt: i64) -> bool {
    c_min < maxt && c_max >= mint
}

/// One series' part of a snapshot: its labels, chunks, what was taken, and the sample count.
type SeriesSnapshot = (Labels, Vec<SnapChunk>, Taken, u64);

fn snapshot_series(s: &Arc<MemSeries>, d: &SeriesData, mint: i64, maxt: i64) -> Result<Option<SeriesSnapshot>> {
    // In-order chunks never cross a chunk-range boundary, so each is wholly inside or outside.
    let sealed: Vec<&SealedChunk> = d.sealed.iter().filter(|c| in_range(c.min_t, c.max_t, mint, maxt)).collect();
    let open = d.open.as_ref().filter(|c| in_range(c.min_t(), c.max_t, mint, maxt));
    let mut ooo: Vec<(i64, f64)> = Vec::new();
    if let Some(o) = &d.ooo {
        for c in o.sealed.iter().filter(|c| in_range(c.min_t, c.max_t, mint, maxt)) {
            ooo.extend(XorIter::new(&c.bytes()?).filter(|&(t, _)| t >= mint && t < maxt));
        }
        ooo.extend(o.open.samples().iter().copied().filter(|&(t, _)| t >= mint && t < maxt));
    }
    let has_in_order = !sealed.is_empty() || open.is_some();
    if !has_in_order && ooo.is_empty() {
        return Ok(None);
    }
    let taken = Taken { series: Arc::clone(s), in_order: has_in_order, ooo_ts: ooo.iter().map(|s| s.0).collect() };
    // A chunk that straddles the range (only possible if the chunk range differs from the block
    // range) is re-encoded from its in-range samples like out-of-order data.
    let straddles = sealed.iter().map(|c| (c.min_t, c.max_t)).chain(open.map(|c| (c.min_t(), c.max_t))).any(|(lo, hi)| lo < mint || hi >= maxt);
    if ooo.is_empty() && !straddles {
        let mut n = u64::from(open.map_or(0, |c| c.chunk.num_samples()));
        let mut chunks: Vec<SnapChunk> = Vec::with_capacity(sealed.len() + 1);
        for c in sealed {
            n += u64::from(c.num_samples());
            chunks.push(SnapChunk::Sealed(c.clone()));
        }
        chunks.extend(open.map(|c| {
            SnapChunk::Ready(ChunkMeta { min_t: c.min_t(), max_t: c.max_t, data: ChunkData::Xor(c.chunk.bytes().into()) })
        }));
        return Ok(Some((s.labels.clone(), chunks, taken, n)));
    }
    // Merge in-order and out-of-order samples into fresh, non-overlapping chunks.
    let mut all: Vec<(i64, f64)> = Vec::new();
    for c in sealed {
        all.extend(XorIter::new(&c.bytes()?).filter(|&(t, _)| t >= mint && t < maxt));
    }
    if let Some(c) = open {
        all.extend(XorIter::new(c.chunk.bytes()).filter(|&(t, _)| t >= mint && t < maxt));
    }
    all.extend(ooo);
    // Stable: in-order samples come first and win at equal timestamps.
    all.sort_by_key(|s| s.0);
    all.dedup_by_key(|s| s.0);
    let n = all.len() as u64;
    let chunks = all
        .chunks(SAMPLES_PER_MERGED_CHUNK)
        .filter_map(|part| {
            let (first, last) = (part.first()?, part.last()?);
            Some(SnapChunk::Ready(ChunkMeta { min_t: first.0, max_t: last.0, data: ChunkData::Raw(part.into()) }))
        })
        .collect();
    Ok(Some((s.labels.clone(), chunks, taken, n)))
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
    for c in o.sealed.drain(..) {
        // Out-of-order chunks stay in memory, so reading cannot fail; keep a chunk that does.
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
    keep.extend(o.open.samples().iter().copied().filter(|&(t, _)| !gone(t)));
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
    o.sealed = sealed;
    if o.sealed.is_empty() && o.open.is_empty() {
        d.ooo = None;
    }
}
