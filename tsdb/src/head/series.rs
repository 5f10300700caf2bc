//! One series of the head: [`MemSeries`] (reference, labels, WAL state) and its samples,
//! [`SeriesData`]: in-order chunks ([`super::in_order`]) and out-of-order data ([`super::ooo`]),
//! native histograms ([`super::histograms`]), and how a sample is applied to them.
//!
//! Locking: a series' samples are behind its own `Mutex<SeriesData>`, held only for one append or one
//! read snapshot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::chunk_file::HeadChunks;
use super::histograms::HistData;
use super::in_order::{compute_chunk_end_time, first_chunk_end, push_exact, OpenChunk, SealedChunk};
use super::ooo::OooData;
use super::placement::{placement, Limits, Placement, SeriesTail};
use crate::chunkenc::XorChunk;
use crate::histogram::HistogramValue;
use crate::intervals::{Interval, Intervals};
use crate::labels::Labels;

/// [`crate::chunk::SAMPLES_PER_CHUNK`] as an XOR chunk's sample count.
const SAMPLES_PER_CHUNK: u16 = crate::chunk::SAMPLES_PER_CHUNK as u16;

/// Identifies a series in the head; also the series' key in the WAL. Never reused while the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesRef(pub u64);

/// What applying samples needs besides the series: limits and where sealed chunks go.
#[derive(Clone, Copy)]
pub(crate) struct ApplyCtx<'a> {
    /// In-order appends below this go out of order.
    pub min_valid_t: i64,
    /// Chunk range (block range) in ms.
    pub chunk_range: i64,
    /// Capacity of the open out-of-order chunk.
    pub ooo_cap: usize,
    /// Where sealed in-order chunks are moved (None: kept in memory).
    pub chunks: Option<&'a HeadChunks>,
}

/// What applying a sample did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Appended to the in-order chunk.
    InOrder,
    /// Inserted into the out-of-order chunk.
    OutOfOrder,
    /// Identical sample already stored: nothing changed.
    AlreadyStored,
    /// A different value is stored at this timestamp: the stored one was kept.
    Conflict,
}

/// The samples of one series. All fields are guarded by `MemSeries::data`.
pub(crate) struct SeriesData {
    /// Sealed in-order chunks, ordered by time, not overlapping.
    pub(super) sealed: Vec<SealedChunk>,
    /// The open in-order chunk.
    pub(super) open: Option<OpenChunk>,
    /// Timestamp at which the open chunk is cut (Prometheus's `nextAt`).
    pub(super) next_at: i64,
    /// Last in-order value.
    pub(super) last_value: f64,
    /// Out-of-order samples, if any ever arrived.
    pub(super) ooo: Option<Box<OooData>>,
    /// What few series have: deleted intervals and native histograms, behind one pointer so that a
    /// series' state stays in its allocation's size class.
    rare: Option<Box<Rare>>,
}

/// The parts of a series' state that few series have.
#[derive(Default)]
struct Rare {
    /// Deleted intervals (the head's tombstones): reads and compaction leave out the samples
    /// there, also those that arrive after the deletion. Shared with the chunks of read snapshots.
    deleted: Option<Arc<Intervals>>,
    /// Native histogram samples, if any ever arrived: kept apart from the float samples and judged
    /// apart from them (a float and a histogram at one timestamp are both kept), so the float path
    /// does not pay for them (see [`super::histograms`]).
    hist: Option<HistData>,
}

impl SeriesData {
    fn new() -> SeriesData {
        SeriesData { sealed: Vec::new(), open: None, next_at: i64::MIN, last_value: 0.0, ooo: None, rare: None }
    }

    /// Deletes the samples of `iv` (merged with the intervals already deleted).
    pub fn add_deleted(&mut self, iv: Interval) {
        let rare = self.rare.get_or_insert_with(Box::default);
        Arc::make_mut(rare.deleted.get_or_insert_with(Default::default)).add(iv);
    }

    /// The deleted intervals, if any.
    pub fn deleted(&self) -> Option<&Arc<Intervals>> {
        self.rare.as_ref().and_then(|r| r.deleted.as_ref())
    }

    /// The native histograms, if any ever arrived.
    pub(crate) fn hist(&self) -> Option<&HistData> {
        self.rare.as_ref().and_then(|r| r.hist.as_ref())
    }

    /// The native histograms, if any ever arrived, for changing them.
    pub(crate) fn hist_mut(&mut self) -> Option<&mut HistData> {
        self.rare.as_mut().and_then(|r| r.hist.as_mut())
    }

    /// The native histograms, created empty if none arrived yet.
    pub(crate) fn hist_or_insert(&mut self) -> &mut HistData {
        self.rare.get_or_insert_with(Box::default).hist.get_or_insert_with(HistData::default)
    }

    /// Forgets deleted intervals before `t` (the series' data there has gone into a block).
    pub fn truncate_deleted_before(&mut self, t: i64) {
        if let Some(r) = &mut self.rare {
            if let Some(d) = &mut r.deleted {
                Arc::make_mut(d).truncate_before(t);
                if d.is_empty() {
                    r.deleted = None;
                }
            }
            if r.deleted.is_none() && r.hist.is_none() {
                self.rare = None;
            }
        }
    }

    /// True if a chunk overlapping `[mint, maxt]` is not wholly deleted: whether the series API lists
    /// the series for that range (Prometheus's rule, by chunk time ranges, not by sample).
    pub fn has_chunk_in(&self, mint: i64, maxt: i64) -> bool {
        let Some(d) = self.deleted() else {
            return self.time_range().is_some_and(|(a, b)| a <= maxt && b >= mint);
        };
        let live = |a: i64, b: i64| a <= maxt && b >= mint && !d.covers(a, b);
        self.sealed.iter().any(|c| live(c.min_t, c.max_t))
            || self.open.as_ref().is_some_and(|c| live(c.min_t(), c.max_t))
            || self.ooo.as_ref().is_some_and(|o| {
                o.sealed().iter().any(|c| live(c.min_t, c.max_t))
                    || o.open.time_range().is_some_and(|(a, b)| live(a, b))
            })
            || self.hist().is_some_and(|h| {
                h.sealed.iter().any(|c| live(c.min_t, c.max_t))
                    || h.open.as_ref().is_some_and(|c| live(c.min_t, c.max_t))
                    || h.ooo.keys().any(|&t| live(t, t))
            })
    }

    /// The newest in-order sample's timestamp and value.
    pub fn tail(&self) -> Option<SeriesTail> {
        let max_t = match &self.open {
            Some(c) => c.max_t,
            None => self.sealed.last()?.max_t,
        };
        Some(SeriesTail { max_t, last_value: self.last_value })
    }

    /// Address of the open chunk's last byte (where the next append writes), or 0: a prefetch hint only.
    pub fn append_addr(&self) -> usize {
        self.open.as_ref().map_or(0, |c| c.chunk.bytes().as_ptr_range().end as usize).saturating_sub(1)
    }

    /// Appends `(t, v)` to the in-order chunks, cutting a new chunk where Prometheus would, and once
    /// more per chunk range at this series' own offset (`cut_seed`, see [`first_chunk_end`]).
    /// The caller guarantees `t` is newer than the last in-order sample.
    pub fn append_in_order(&mut self, t: i64, v: f64, chunk_range: i64, chunks: Option<&HeadChunks>, cut_seed: u32) {
        let cut = match &mut self.open {
            None => true,
            Some(c) => {
                let n = c.chunk.num_samples();
                if n == SAMPLES_PER_CHUNK / 4 {
                    self.next_at = compute_chunk_end_time(c.min_t(), c.max_t, self.next_at);
                }
                // Prometheus 2.42's rule (later versions also cut at ~1 KiB of chunk bytes).
                t >= self.next_at || n >= 2 * SAMPLES_PER_CHUNK
            }
        };
        if cut {
            if let Some(old) = self.open.take() {
                push_exact(&mut self.sealed, SealedChunk::seal(old.min_t(), old.max_t, old.chunk.bytes(), chunks));
            }
            self.open = Some(OpenChunk { chunk: XorChunk::new(), max_t: t });
            self.next_at = first_chunk_end(t, chunk_range, cut_seed);
        }
        if let Some(c) = &mut self.open {
            c.chunk.push(t, v);
            c.max_t = t;
        }
        self.last_value = v;
    }

    /// Inserts `(t, v)` into the out-of-order chunk, sealing it first when it holds `cap` samples.
    /// The caller has checked that no sealed out-of-order chunk holds `t` (the buffer keeps a sample
    /// it already holds at `t`).
    pub fn insert_ooo(&mut self, t: i64, v: f64, cap: usize, chunks: Option<&HeadChunks>) {
        let ooo = self.ooo.get_or_insert_with(Box::default);
        if ooo.open.len() >= cap {
            ooo.seal_open(chunks);
        }
        ooo.insert_open(t, v, chunks);
    }

    /// Stores a sample already in the WAL (from a commit or from WAL replay) where [`placement`] with
    /// [`Limits::accept_all`] puts it: rejects nothing for age, since a sample that reached the WAL
    /// is kept.
    ///
    /// At a timestamp already held, the first stored value stays: at the newest in-order timestamp
    /// and among late samples. A late sample is compared with the series' other late samples only,
    /// not with its in-order chunks (nor does Prometheus compare them), because that would decode
    /// the open chunk of a cold series for every late sample. A late sample at a timestamp the
    /// in-order chunks also hold is stored beside it, and reads and compaction keep the in-order
    /// one, which was stored first (an in-order sample is newer than the series' newest when it
    /// arrives, so it cannot follow a late sample at its timestamp).
    ///
    /// [`placement`]: super::placement::placement
    ///
    /// `cut_seed` is the series' [`MemSeries::cut_seed`].
    pub fn apply(&mut self, t: i64, v: f64, ctx: &ApplyCtx<'_>, cut_seed: u32) -> Applied {
        match placement(t, v, self.tail(), Limits::accept_all(ctx.min_valid_t)) {
            Ok(Placement::InOrder) => {
                self.append_in_order(t, v, ctx.chunk_range, ctx.chunks, cut_seed);
                Applied::InOrder
            }
            Ok(Placement::Duplicate) => Applied::AlreadyStored,
            Ok(Placement::OutOfOrder) => match self.ooo.as_ref().and_then(|o| o.value_at(t)) {
                Some(existing) if existing.to_bits() == v.to_bits() => Applied::AlreadyStored,
                Some(_) => Applied::Conflict,
                None => {
                    self.insert_ooo(t, v, ctx.ooo_cap, ctx.chunks);
                    Applied::OutOfOrder
                }
            },
            // Only a different value at the newest in-order timestamp is refused by these limits.
            Err(_) => Applied::Conflict,
        }
    }

    /// Stores a native histogram already in the WAL, as [`SeriesData::apply`] stores a float
    /// sample (see [`HistData::apply`]); the series' float samples are not consulted.
    pub fn apply_histogram(&mut self, t: i64, v: HistogramValue, ctx: &ApplyCtx<'_>) -> Applied {
        self.hist_or_insert().apply(t, v, ctx.min_valid_t, ctx.chunk_range)
    }

    /// The newest in-order histogram's timestamp and value.
    pub(crate) fn hist_tail(&self) -> Option<(i64, &HistogramValue)> {
        self.hist().and_then(HistData::tail)
    }

    /// Number of chunks (in-order and out-of-order, open and sealed; late histograms count as one).
    pub fn chunk_count(&self) -> usize {
        let ooo = self.ooo.as_ref().map_or(0, |o| o.sealed().len() + usize::from(!o.open.is_empty()));
        let hist = self.hist().map_or(0, HistData::chunk_count);
        self.sealed.len() + usize::from(self.open.is_some()) + ooo + hist
    }

    /// Oldest and newest timestamps held, in-order and out-of-order.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let mut lo = i64::MAX;
        let mut hi = i64::MIN;
        let mut see = |a: i64, b: i64| {
            lo = lo.min(a);
            hi = hi.max(b);
        };
        for c in &self.sealed {
            see(c.min_t, c.max_t);
        }
        if let Some(c) = &self.open {
            see(c.min_t(), c.max_t);
        }
        if let Some(o) = &self.ooo {
            for c in o.sealed() {
                see(c.min_t, c.max_t);
            }
            if let Some((a, b)) = o.open.time_range() {
                see(a, b);
            }
        }
        if let Some((a, b)) = self.hist().and_then(HistData::time_range) {
            see(a, b);
        }
        (lo <= hi).then_some((lo, hi))
    }
}

/// One series of the head.
pub struct MemSeries {
    /// Its reference.
    pub sref: SeriesRef,
    /// Its labels.
    pub labels: Labels,
    /// True once a series record for it is in the WAL.
    pub(crate) logged: AtomicBool,
    /// Spreads this series' chunk cuts over the chunk range (see [`first_chunk_end`]); 0: cut only
    /// where Prometheus 2.42 would. Beside `logged`, which every commit reads anyway, and outside
    /// the samples' state, whose size decides the allocation's size class.
    pub(crate) cut_seed: u32,
    pub(crate) data: Mutex<SeriesData>,
}

impl MemSeries {
    /// Hints the CPU to fetch this series' lock and sample state (see [`crate::prefetch`]).
    pub(crate) fn prefetch(&self) {
        // Every line of the lock and the state: a field on a line left out is a wait later.
        let start = std::ptr::from_ref(&self.data) as usize;
        crate::prefetch::read_range(start, start + std::mem::size_of::<Mutex<SeriesData>>());
    }

    /// Hints the CPU to fetch what a query reads first: this series' fields, lock and state, and
    /// its labels (see [`crate::prefetch`]).
    pub(crate) fn prefetch_for_read(&self) {
        let start = std::ptr::from_ref(self) as usize;
        crate::prefetch::read_range(start, start + std::mem::size_of::<MemSeries>());
        self.labels.prefetch();
    }

    /// Hints the CPU to fetch what this series' state points to and a query reads next: the open
    /// chunk's first bytes and the out-of-order data. Skipped if the lock is held elsewhere; best
    /// issued a little after [`MemSeries::prefetch_for_read`], once the state is in cache.
    pub(crate) fn prefetch_chunks(&self) {
        let Ok(d) = self.data.try_lock() else { return };
        if let Some(c) = &d.open {
            let b = c.chunk.bytes();
            let start = b.as_ptr() as usize;
            crate::prefetch::read_range(start, start + b.len().min(256));
        }
        if let Some(o) = d.ooo.as_deref() {
            crate::prefetch::read(std::ptr::from_ref::<OooData>(o) as usize);
        }
    }

    pub(crate) fn new(sref: SeriesRef, labels: Labels, logged: bool) -> MemSeries {
        // References are dense; mixing spreads consecutive series over the whole range. Never 0.
        let cut_seed = ((sref.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33) as u32) | 1;
        MemSeries { sref, labels, logged: AtomicBool::new(logged), cut_seed, data: Mutex::new(SeriesData::new()) }
    }

    /// Locks the series' samples. A poisoned lock is recovered: the data is only ever mutated by
    /// non-panicking code paths.
    pub(crate) fn lock(&self) -> MutexGuard<'_, SeriesData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_logged(&self) -> bool {
        self.logged.load(Ordering::Acquire)
    }

    pub(crate) fn set_logged(&self) {
        self.logged.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunkenc::XorIter;

    const H2: i64 = 2 * 3_600_000;
    const MIN: i64 = 60_000;

    fn ctx(ooo_cap: usize) -> ApplyCtx<'static> {
        ApplyCtx { min_valid_t: i64::MIN, chunk_range: H2, ooo_cap, chunks: None }
    }

    #[test]
    fn a_series_fits_a_192_byte_allocation() {
        // `Arc<MemSeries>` is one allocation per series: the 16-byte reference counts plus the
        // series. Allocators round it up (glibc adds an 8-byte header in 16-byte steps, mimalloc's
        // classes around it are 160, 192 and 224 bytes); at 100k series each step is ~2–3 MiB of RSS.
        assert!(std::mem::size_of::<MemSeries>() + 16 <= 192, "{}", std::mem::size_of::<MemSeries>());
    }

    #[test]
    fn chunks_cut_like_prometheus() {
        let mut d = SeriesData::new();
        // 15s scrape for 4h from a 2h boundary: Prometheus cuts at 120 samples and at the 2h boundary.
        for i in 0..960 {
            d.append_in_order(H2 + i * 15_000, i as f64, H2, None, 0);
        }
        assert_eq!(d.sealed.len() + 1, 8);
        for c in &d.sealed {
            assert_eq!(XorIter::new(&c.bytes().unwrap()).count(), 120);
        }
        // No chunk crosses a 2h boundary.
        assert!(d.sealed.iter().all(|c| c.min_t / H2 == c.max_t / H2));
    }

    #[test]
    fn staggered_series_cut_once_more_per_range_at_their_own_offset() {
        // 60s scrapes for 4h from a 2h boundary: Prometheus's rule alone gives one chunk per range.
        let cut_points = |seed: u32| {
            let mut d = SeriesData::new();
            for i in 0..240 {
                d.append_in_order(H2 + i * MIN, i as f64, H2, None, seed);
            }
            let total: usize = d.sealed.iter().map(|c| XorIter::new(&c.bytes().unwrap()).count()).sum::<usize>()
                + d.open.as_ref().map_or(0, |c| usize::from(c.chunk.num_samples()));
            assert_eq!(total, 240);
            assert_eq!(d.sealed.len() + 1, if seed == 0 { 2 } else { 4 }, "seed {seed}");
            // No chunk crosses a 2h boundary, none is shorter than a quarter of the range.
            for c in &d.sealed {
                assert_eq!(c.min_t / H2, c.max_t / H2);
                assert!(c.max_t - c.min_t + MIN >= H2 / 4, "seed {seed}: {c:?}");
            }
            d.sealed.iter().map(|c| c.max_t).collect::<Vec<_>>()
        };
        assert_eq!(cut_points(0), vec![2 * H2 - MIN]);
        let (a, b) = (cut_points(12_345), cut_points(4_000_000));
        assert_ne!(a.first(), b.first(), "different seeds cut at different points");
        assert!(a.contains(&(2 * H2 - MIN)) && b.contains(&(2 * H2 - MIN)), "both still cut at the range boundary");
    }

    #[test]
    fn apply_dedupes_and_routes() {
        let mut d = SeriesData::new();
        assert_eq!(d.apply(100, 1.0, &ctx(32), 0), Applied::InOrder);
        assert_eq!(d.apply(200, 2.0, &ctx(32), 0), Applied::InOrder);
        assert_eq!(d.apply(200, 2.0, &ctx(32), 0), Applied::AlreadyStored);
        assert_eq!(d.apply(200, 3.0, &ctx(32), 0), Applied::Conflict);
        assert_eq!(d.apply(150, 1.5, &ctx(32), 0), Applied::OutOfOrder);
        assert_eq!(d.apply(150, 1.5, &ctx(32), 0), Applied::AlreadyStored);
        assert_eq!(d.apply(150, 2.5, &ctx(32), 0), Applied::Conflict);
        let late = |d: &SeriesData, t| d.ooo.as_ref().and_then(|o| o.value_at(t));
        assert_eq!(late(&d, 150), Some(1.5));
        // A late sample is not checked against the in-order chunks: stored beside the in-order one.
        assert_eq!(d.apply(100, 9.0, &ctx(32), 0), Applied::OutOfOrder);
        assert_eq!(late(&d, 100), Some(9.0));
        assert_eq!(d.apply(100, 7.0, &ctx(32), 0), Applied::Conflict);
        assert_eq!(late(&d, 101), None);
    }

    #[test]
    fn ooo_chunk_is_sealed_at_cap() {
        let mut d = SeriesData::new();
        d.apply(1_000_000, 0.0, &ctx(4), 0);
        for t in 0..10 {
            assert_eq!(d.apply(t * 10, t as f64, &ctx(4), 0), Applied::OutOfOrder);
        }
        let ooo = d.ooo.as_ref().unwrap();
        assert_eq!(ooo.sealed().len(), 2);
        assert_eq!(ooo.open.len(), 2);
        for t in 0..10 {
            assert_eq!(ooo.value_at(t * 10), Some(t as f64));
        }
        for t in 0..10 {
            assert_eq!(d.apply(t * 10, -1.0, &ctx(4), 0), Applied::Conflict, "sealed chunks are checked too");
        }
    }
}
