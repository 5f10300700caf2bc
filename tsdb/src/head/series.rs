//! In-memory series: [`MemSeries`] (one per label set) with its in-order and out-of-order chunks, and
//! [`StripeSeries`], the sharded maps that find a series by label hash or by reference.
//!
//! Locking: `StripeSeries` shards are locked only to look up or insert a series; a series' samples are
//! behind its own `Mutex<SeriesData>`, held only for one append or one read snapshot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::chunk_file::{DiskChunk, HeadChunks};
use crate::chunkenc::{XorChunk, XorIter};
use crate::error::Result;
use crate::labels::Labels;

use super::ooo::{Insert, OooChunk};
use super::placement::{placement, Limits, Placement, SeriesTail};

/// [`crate::chunk::SAMPLES_PER_CHUNK`] as an XOR chunk's sample count.
const SAMPLES_PER_CHUNK: u16 = crate::chunk::SAMPLES_PER_CHUNK as u16;

/// Identifies a series in the head; also the series' key in the WAL. Never reused while the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesRef(pub u64);

/// An immutable XOR chunk with its time range: in memory (shared with readers by `Arc`), or moved
/// to a head chunk file.
#[derive(Debug, Clone)]
pub struct SealedChunk {
    /// First timestamp.
    pub min_t: i64,
    /// Last timestamp.
    pub max_t: i64,
    /// Samples in the chunk (known without reading a chunk moved to disk).
    samples: u16,
    data: SealedData,
}

#[derive(Debug, Clone)]
enum SealedData {
    Memory(Arc<[u8]>),
    Disk(DiskChunk),
}

impl SealedChunk {
    /// A chunk kept in memory.
    pub fn in_memory(min_t: i64, max_t: i64, bytes: Arc<[u8]>) -> SealedChunk {
        SealedChunk { min_t, max_t, samples: crate::chunkenc::num_samples(&bytes), data: SealedData::Memory(bytes) }
    }

    /// Samples in the chunk.
    pub fn num_samples(&self) -> u16 {
        self.samples
    }

    /// A chunk written to `chunks` if given (and the write succeeds), else kept in memory.
    pub(crate) fn seal(min_t: i64, max_t: i64, bytes: &[u8], chunks: Option<&HeadChunks>) -> SealedChunk {
        match chunks.and_then(|c| c.write(bytes)) {
            Some(disk) => {
                SealedChunk { min_t, max_t, samples: crate::chunkenc::num_samples(bytes), data: SealedData::Disk(disk) }
            }
            None => SealedChunk::in_memory(min_t, max_t, bytes.into()),
        }
    }

    /// The Prometheus XOR chunk bytes (read from the chunk file if the chunk was moved there).
    pub fn bytes(&self) -> Result<Arc<[u8]>> {
        match &self.data {
            SealedData::Memory(b) => Ok(Arc::clone(b)),
            SealedData::Disk(d) => d.read(),
        }
    }

    /// Appends the chunk's bytes to `out` without allocating a buffer of their own (see
    /// [`SealedChunk::bytes`]); on error `out` is unchanged.
    pub fn read_into(&self, out: &mut Vec<u8>) -> Result<()> {
        match &self.data {
            SealedData::Memory(b) => {
                out.extend_from_slice(b);
                Ok(())
            }
            SealedData::Disk(d) => d.read_into(out),
        }
    }
}

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

/// The open in-order chunk.
pub(crate) struct OpenChunk {
    pub chunk: XorChunk,
    pub max_t: i64,
}

impl OpenChunk {
    /// Timestamp of the first sample (kept by the chunk itself rather than beside it: 8 bytes per
    /// series, which keep `MemSeries` in a smaller allocator size class).
    pub fn min_t(&self) -> i64 {
        self.chunk.first_time().unwrap_or(self.max_t)
    }
}

/// Out-of-order data of a series; allocated only once a series receives an out-of-order sample.
pub(crate) struct OooData {
    /// Sorted, unique samples not yet cut into a chunk (at most `ooo_cap_max`).
    pub open: OooChunk,
    /// Sealed out-of-order chunks; may overlap each other and the in-order chunks.
    sealed: Vec<SealedChunk>,
    /// No sealed chunk holds a sample newer than this: a late sample newer than every sealed one
    /// (the common case) is checked for duplicates without reading the chunk list.
    sealed_max_t: i64,
}

impl Default for OooData {
    fn default() -> OooData {
        OooData { open: OooChunk::default(), sealed: Vec::new(), sealed_max_t: i64::MIN }
    }
}

impl OooData {
    /// Out-of-order data holding the buffered samples `open` and the chunks `sealed`.
    pub(crate) fn new(open: OooChunk, sealed: Vec<SealedChunk>) -> OooData {
        let mut o = OooData { open, ..OooData::default() };
        o.set_sealed(sealed);
        o
    }

    /// The sealed chunks.
    pub(crate) fn sealed(&self) -> &[SealedChunk] {
        &self.sealed
    }

    /// Adds a sealed chunk.
    pub(crate) fn push_sealed(&mut self, c: SealedChunk) {
        self.sealed_max_t = self.sealed_max_t.max(c.max_t);
        push_exact(&mut self.sealed, c);
    }

    /// Replaces the sealed chunks.
    pub(crate) fn set_sealed(&mut self, sealed: Vec<SealedChunk>) {
        self.sealed_max_t = sealed.iter().map(|c| c.max_t).max().unwrap_or(i64::MIN);
        self.sealed = sealed;
    }

    /// Takes the sealed chunks out, leaving none.
    pub(crate) fn take_sealed(&mut self) -> Vec<SealedChunk> {
        self.sealed_max_t = i64::MIN;
        std::mem::take(&mut self.sealed)
    }

    /// Seals the open buffer (if it holds samples) into the sealed chunks.
    pub(crate) fn seal_open(&mut self, chunks: Option<&HeadChunks>) {
        if let Some(chunk) = self.open.seal(chunks) {
            self.push_sealed(chunk);
        }
    }

    /// Inserts `(t, v)` into the open buffer (a sample already buffered at `t` is kept); if `t` is
    /// too far from the buffered samples (see [`Insert::OutOfRange`]), they are sealed first.
    pub(crate) fn insert_open(&mut self, t: i64, v: f64, chunks: Option<&HeadChunks>) {
        if self.open.insert(t, v) == Insert::OutOfRange {
            self.seal_open(chunks);
            // Into an empty buffer: always added.
            let _ = self.open.insert(t, v);
        }
    }

    /// The sealed chunks overlapping `[mint, maxt]`; the list is not read when every chunk is older.
    pub(crate) fn sealed_overlapping(&self, mint: i64, maxt: i64) -> impl Iterator<Item = &SealedChunk> {
        let candidates: &[SealedChunk] = if mint > self.sealed_max_t { &[] } else { &self.sealed };
        candidates.iter().filter(move |c| c.min_t <= maxt && c.max_t >= mint)
    }

    /// The out-of-order value stored at exactly `t`. Reads neither the buffer nor the chunk list when
    /// `t` is newer than everything in them (the common case: late samples mostly arrive oldest first).
    pub(crate) fn value_at(&self, t: i64) -> Option<f64> {
        if let Some(v) = self.open.get(t) {
            return Some(v);
        }
        // A chunk that cannot be read counts as not holding `t` (the error is logged).
        self.sealed_overlapping(t, t).find_map(|c| match c.bytes() {
            Ok(b) => {
                let mut it = XorIter::new(&b);
                match it.seek(t) {
                    Some((st, v)) if st == t => Some(v),
                    _ => None,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read a head chunk");
                None
            }
        })
    }
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
    pub sealed: Vec<SealedChunk>,
    /// The open in-order chunk.
    pub open: Option<OpenChunk>,
    /// Timestamp at which the open chunk is cut (Prometheus's `nextAt`).
    pub next_at: i64,
    /// Last in-order value.
    pub last_value: f64,
    /// Out-of-order samples, if any ever arrived.
    pub ooo: Option<Box<OooData>>,
    /// Spreads this series' chunk cuts over the chunk range (see [`first_chunk_end`]); 0: cut only
    /// where Prometheus 2.42 would.
    pub cut_seed: u32,
}

impl SeriesData {
    fn new(cut_seed: u32) -> SeriesData {
        SeriesData { sealed: Vec::new(), open: None, next_at: i64::MIN, last_value: 0.0, ooo: None, cut_seed }
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
    /// more per chunk range at this series' own offset (see [`first_chunk_end`]).
    /// The caller guarantees `t` is newer than the last in-order sample.
    pub fn append_in_order(&mut self, t: i64, v: f64, chunk_range: i64, chunks: Option<&HeadChunks>) {
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
            self.next_at = first_chunk_end(t, chunk_range, self.cut_seed);
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
    pub fn apply(&mut self, t: i64, v: f64, ctx: &ApplyCtx<'_>) -> Applied {
        match placement(t, v, self.tail(), Limits::accept_all(ctx.min_valid_t)) {
            Ok(Placement::InOrder) => {
                self.append_in_order(t, v, ctx.chunk_range, ctx.chunks);
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

    /// Number of chunks (in-order and out-of-order, open and sealed).
    pub fn chunk_count(&self) -> usize {
        let ooo = self.ooo.as_ref().map_or(0, |o| o.sealed.len() + usize::from(!o.open.is_empty()));
        self.sealed.len() + usize::from(self.open.is_some()) + ooo
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
            for c in &o.sealed {
                see(c.min_t, c.max_t);
            }
            if let Some((a, b)) = o.open.time_range() {
                see(a, b);
            }
        }
        (lo <= hi).then_some((lo, hi))
    }
}

/// Pushes growing by a quarter instead of doubling: a series holds a handful of sealed chunks for
/// hours, and `Vec::push` would reserve room for four on the first one (~150 bytes per series).
fn push_exact<T>(v: &mut Vec<T>, item: T) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 4).max(1));
    }
    v.push(item);
}

/// Prometheus's `rangeForTimestamp`: the end of the chunk range `t` falls in.
pub fn range_for_timestamp(t: i64, width: i64) -> i64 {
    t.div_euclid(width).saturating_mul(width).saturating_add(width)
}

/// Where a chunk started at `t` ends at the latest: the end of `t`'s chunk range (Prometheus's
/// `rangeForTimestamp`), or, for a chunk started in the first part of the range, a point between a
/// quarter and three quarters into it chosen by `seed` (0: no such point).
///
/// Prometheus cuts every series' chunks at the same instants (range boundaries, and points spread
/// evenly between them), so every open chunk is full at once just before a boundary: the head's
/// memory peaks there at a full chunk per series, and every chunk is sealed in the same burst. A
/// second cut at a per-series offset makes the open chunks' fill uniform over series, so the peak
/// is about half as high, for one more (shorter) chunk per range. Chunks still never cross a range
/// boundary, so compaction still takes whole chunks into each block.
pub fn first_chunk_end(t: i64, width: i64, seed: u32) -> i64 {
    let end = range_for_timestamp(t, width);
    if seed == 0 || width < 4 {
        return end;
    }
    let start = end.saturating_sub(width);
    let cut = start.saturating_add(width / 4).saturating_add(i64::from(seed) % (width / 2).max(1));
    if t < cut {
        cut
    } else {
        end
    }
}

/// Prometheus's `computeChunkEndTime`: spread the rest of the range evenly over ~120-sample chunks.
pub fn compute_chunk_end_time(start: i64, cur: i64, max: i64) -> i64 {
    let denom = (cur.saturating_sub(start).saturating_add(1)).saturating_mul(4);
    if denom <= 0 {
        return max;
    }
    let n = max.saturating_sub(start) / denom;
    if n <= 1 {
        return max;
    }
    start + (max - start) / n
}

/// One series of the head.
pub struct MemSeries {
    /// Its reference.
    pub sref: SeriesRef,
    /// Its labels.
    pub labels: Labels,
    /// True once a series record for it is in the WAL.
    pub(crate) logged: AtomicBool,
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
        MemSeries { sref, labels, logged: AtomicBool::new(logged), data: Mutex::new(SeriesData::new(cut_seed)) }
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

/// Hashes integer keys (label hashes, series references, (handle, timestamp) pairs) with one
/// multiplication per integer: the keys are already well spread or dense, so SipHash would only cost
/// time on the append path. A single `u64` hashes to `v × K`; each further integer is mixed in.
#[derive(Default, Clone, Copy)]
pub struct U64Hasher(u64);

impl std::hash::Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(26) ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// `HashMap` hasher builder for [`U64Hasher`].
pub(crate) type BuildU64Hasher = std::hash::BuildHasherDefault<U64Hasher>;
type RefMap = HashMap<SeriesRef, Arc<MemSeries>, BuildU64Hasher>;

/// An occupied slot of a hash shard. The labels are a second reference to the series' own: with
/// their address in the slot, a lookup requests the labels and the series state from memory at the
/// same time, instead of first waiting for the series to learn where its labels are. 32 bytes, two
/// slots per cache line.
struct Entry {
    hash: u64,
    labels: Labels,
    series: Arc<MemSeries>,
}

impl Entry {
    /// Hints the CPU to fetch this series' sample state and all lines of its labels (at once, not one
    /// after the other as a comparison would).
    fn prefetch(&self) {
        self.series.prefetch();
        let range = self.labels.packed().as_ptr_range();
        crate::prefetch::read_range(range.start as usize, range.end as usize);
    }
}

type Slot = Option<Entry>;

/// Series by label hash: an open-addressing table whose slots hold the hash and the labels beside the
/// series, so a lookup touches one cache line of the table (a `HashMap` keeps control bytes and
/// entries apart: two).
/// Linear probing, at most half full. Equal hashes of different label sets (collisions) simply occupy
/// neighbouring slots, like any other probe. Removal shifts the rest of the probe run back (no
/// tombstones), so lookups stay as short as if the removed series had never been there.
#[derive(Default)]
struct HashShard {
    slots: Vec<Slot>,
    len: usize,
}

impl HashShard {
    fn slot_of(&self, hash: u64) -> usize {
        // The low bits chose the shard; the high bits spread series over this shard's slots.
        ((hash >> 32) as usize) & (self.slots.len().wrapping_sub(1))
    }

    /// The entries with this hash, in probe order, with their slot index: the probe run from the
    /// hash's home slot up to the first empty slot (there always is one: at most half full).
    fn with_hash(&self, hash: u64) -> WithHash<'_> {
        WithHash { slots: &self.slots, hash, i: self.slot_of(hash), mask: self.slots.len().wrapping_sub(1) }
    }

    /// Index of the slot holding the series with these packed labels.
    fn position(&self, hash: u64, packed: &[u8]) -> Option<usize> {
        self.with_hash(hash).find(|(_, e)| e.labels.packed() == packed).map(|(i, _)| i)
    }

    /// Empties slot `i` and moves later members of its probe run back into the gap (backward-shift
    /// deletion), so every remaining series is still reachable from its home slot without a gap.
    fn remove_at(&mut self, i: usize) -> Option<Arc<MemSeries>> {
        let mask = self.slots.len().wrapping_sub(1);
        let removed = self.slots.get_mut(i)?.take().map(|e| e.series);
        self.len -= usize::from(removed.is_some());
        let mut gap = i;
        let mut j = (i + 1) & mask;
        while let Some(Some(e)) = self.slots.get(j) {
            let home = self.slot_of(e.hash);
            // The entry at j may fill the gap if its home is not cyclically within (gap, j].
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(gap) & mask) {
                let moved = self.slots.get_mut(j).and_then(Option::take);
                if let Some(slot) = self.slots.get_mut(gap) {
                    *slot = moved;
                }
                gap = j;
            }
            j = (j + 1) & mask;
        }
        removed
    }

    /// The series whose packed labels are `packed` (compared bytewise in place).
    fn get(&self, hash: u64, packed: &[u8]) -> Option<&Arc<MemSeries>> {
        self.with_hash(hash).find_map(|(_, e)| {
            // Almost surely the series: its sample state is read next, fetch it while the labels
            // are compared (all of their lines at once, not one after the other).
            e.prefetch();
            (e.labels.packed() == packed).then_some(&e.series)
        })
    }

    /// Hints the CPU to fetch the labels and sample state of the first series with this hash, which a
    /// lookup of `hash` compares and then reads.
    fn probe(&self, hash: u64) {
        if let Some((_, e)) = self.with_hash(hash).next() {
            e.prefetch();
        }
    }

    /// Inserts a series known not to be present.
    fn insert(&mut self, hash: u64, s: Arc<MemSeries>) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.place(Entry { hash, labels: s.labels.clone(), series: s });
        self.len += 1;
    }

    fn place(&mut self, e: Entry) {
        let mask = self.slots.len() - 1;
        let mut i = self.slot_of(e.hash);
        // At most half full: a free slot is always found.
        while let Some(Some(_)) = self.slots.get(i) {
            i = (i + 1) & mask;
        }
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = Some(e);
        }
    }

    fn grow(&mut self) {
        let cap = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, (0..cap).map(|_| None).collect());
        for e in old.into_iter().flatten() {
            self.place(e);
        }
    }
}

/// Iterator of [`HashShard::with_hash`].
struct WithHash<'a> {
    slots: &'a [Slot],
    hash: u64,
    i: usize,
    mask: usize,
}

impl<'a> Iterator for WithHash<'a> {
    type Item = (usize, &'a Entry);

    fn next(&mut self) -> Option<(usize, &'a Entry)> {
        loop {
            // An empty slot ends the run; so does an empty table (no slot at all).
            let e = self.slots.get(self.i)?.as_ref()?;
            let i = self.i;
            self.i = (self.i + 1) & self.mask;
            if e.hash == self.hash {
                return Some((i, e));
            }
        }
    }
}

/// Where a hash shard's slot table is, readable without the shard's lock: for prefetch hints only.
/// Updated under the shard's write lock whenever the table moves; a reader may see the address and
/// mask of different tables, which only makes a hint point at the wrong line (see [`crate::prefetch`]).
#[derive(Default)]
struct SlotsHint {
    base: AtomicUsize,
    mask: AtomicUsize,
}

/// The sharded series maps: by label hash (for appends) and by reference (for reads and replay).
pub struct StripeSeries {
    by_hash: Vec<RwLock<HashShard>>,
    hints: Vec<SlotsHint>,
    by_ref: Vec<RwLock<RefMap>>,
    mask: usize,
}

impl StripeSeries {
    /// `stripes` is rounded up to a power of two.
    pub fn new(stripes: usize) -> StripeSeries {
        let n = stripes.max(1).next_power_of_two();
        StripeSeries {
            by_hash: (0..n).map(|_| RwLock::new(HashShard::default())).collect(),
            hints: (0..n).map(|_| SlotsHint::default()).collect(),
            by_ref: (0..n).map(|_| RwLock::new(RefMap::default())).collect(),
            mask: n - 1,
        }
    }

    fn hash_shard(&self, hash: u64) -> &RwLock<HashShard> {
        // `mask` < len by construction.
        &self.by_hash[(hash as usize) & self.mask]
    }

    fn ref_shard(&self, r: SeriesRef) -> &RwLock<RefMap> {
        &self.by_ref[(r.0 as usize) & self.mask]
    }

    /// Hints the CPU to fetch the slot where a lookup of `hash` starts, so that a lookup issued a
    /// little later does not wait for main memory (the slot tables of 100k series outgrow the caches).
    pub fn prefetch(&self, hash: u64) {
        let i = (hash as usize) & self.mask;
        if let Some(h) = self.hints.get(i) {
            let (base, mask) = (h.base.load(Ordering::Relaxed), h.mask.load(Ordering::Relaxed));
            if base != 0 {
                let slot = ((hash >> 32) as usize) & mask;
                crate::prefetch::read(base.wrapping_add(slot.wrapping_mul(std::mem::size_of::<Slot>())));
            }
        }
    }

    /// Hints the CPU to fetch what a lookup of `hash` compares and reads after the slot: the labels and
    /// sample state of the series there. Call it once the slot has been fetched (see
    /// [`StripeSeries::prefetch`]) and a little before the lookup.
    pub fn probe(&self, hash: u64) {
        self.hash_shard(hash).read().unwrap_or_else(|e| e.into_inner()).probe(hash);
    }

    /// Finds the series with these packed labels (see `labels::pack_sorted`), without allocating.
    pub fn get_by_packed(&self, hash: u64, packed: &[u8]) -> Option<Arc<MemSeries>> {
        let shard = self.hash_shard(hash).read().unwrap_or_else(|e| e.into_inner());
        shard.get(hash, packed).cloned()
    }

    /// Finds the series by reference.
    pub fn get_by_ref(&self, r: SeriesRef) -> Option<Arc<MemSeries>> {
        self.ref_shard(r).read().unwrap_or_else(|e| e.into_inner()).get(&r).cloned()
    }

    /// Returns the existing series with these labels, or inserts the one `make` builds.
    /// The bool is true if the series was created.
    pub fn get_or_create(
        &self,
        hash: u64,
        packed: &[u8],
        make: impl FnOnce() -> Arc<MemSeries>,
    ) -> (Arc<MemSeries>, bool) {
        let mut shard = self.hash_shard(hash).write().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = shard.get(hash, packed) {
            return (Arc::clone(s), false);
        }
        let s = make();
        shard.insert(hash, Arc::clone(&s));
        if let Some(h) = self.hints.get((hash as usize) & self.mask) {
            h.base.store(shard.slots.as_ptr() as usize, Ordering::Relaxed);
            h.mask.store(shard.slots.len().wrapping_sub(1), Ordering::Relaxed);
        }
        drop(shard);
        self.ref_shard(s.sref).write().unwrap_or_else(|e| e.into_inner()).insert(s.sref, Arc::clone(&s));
        (s, true)
    }

    /// Removes the series `r` (with these labels and label hash) if it holds no samples and nothing
    /// but the two maps holds it, and returns it; otherwise leaves it in place.
    ///
    /// An appender gets a series only from the by-hash map, under its shard's lock, and keeps its own
    /// reference until it has committed: while that shard's write lock is held, a reference count of
    /// exactly two (the two maps) means no appender can still add samples to this series, and none can
    /// find it afterwards. A reader that still holds it sees an empty series.
    pub(crate) fn remove_if_unused(&self, hash: u64, r: SeriesRef, labels: &Labels) -> Option<Arc<MemSeries>> {
        let mut shard = self.hash_shard(hash).write().unwrap_or_else(|e| e.into_inner());
        let i = shard.position(hash, labels.packed())?;
        let s = &shard.slots.get(i)?.as_ref()?.series;
        if s.sref != r || Arc::strong_count(s) != 2 || s.lock().time_range().is_some() {
            return None;
        }
        let s = shard.remove_at(i)?;
        drop(shard);
        self.ref_shard(r).write().unwrap_or_else(|e| e.into_inner()).remove(&r);
        Some(s)
    }

    /// Calls `f` on every series (shard by shard; series added meanwhile may or may not be seen).
    pub fn for_each(&self, mut f: impl FnMut(&Arc<MemSeries>)) {
        for shard in &self.by_ref {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            for s in shard.values() {
                f(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn out_of_order_data_fits_a_128_byte_allocation() {
        // Allocated for every series that receives a late sample; the next size class is 160 bytes.
        assert!(std::mem::size_of::<OooData>() <= 128, "{}", std::mem::size_of::<OooData>());
    }

    #[test]
    fn two_hash_shard_slots_fit_a_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
    }

    #[test]
    fn chunks_cut_like_prometheus() {
        let mut d = SeriesData::new(0);
        // 15s scrape for 4h from a 2h boundary: Prometheus cuts at 120 samples and at the 2h boundary.
        for i in 0..960 {
            d.append_in_order(H2 + i * 15_000, i as f64, H2, None);
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
            let mut d = SeriesData::new(seed);
            for i in 0..240 {
                d.append_in_order(H2 + i * MIN, i as f64, H2, None);
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
    fn first_chunk_end_stays_within_the_range() {
        assert_eq!(first_chunk_end(H2, H2, 0), 2 * H2);
        for seed in [1, 7, 12_345, u32::MAX] {
            let end = first_chunk_end(H2, H2, seed);
            assert!((H2 + H2 / 4..H2 + 3 * H2 / 4).contains(&end), "{seed}: {end}");
            // A chunk started after the offset runs to the range's end.
            assert_eq!(first_chunk_end(end, H2, seed), 2 * H2);
        }
        // Degenerate widths fall back to the range end without panicking.
        assert_eq!(first_chunk_end(5, 1, 9), range_for_timestamp(5, 1));
        assert_eq!(first_chunk_end(i64::MAX - 1, H2, 9), range_for_timestamp(i64::MAX - 1, H2));
    }

    #[test]
    fn apply_dedupes_and_routes() {
        let mut d = SeriesData::new(0);
        assert_eq!(d.apply(100, 1.0, &ctx(32)), Applied::InOrder);
        assert_eq!(d.apply(200, 2.0, &ctx(32)), Applied::InOrder);
        assert_eq!(d.apply(200, 2.0, &ctx(32)), Applied::AlreadyStored);
        assert_eq!(d.apply(200, 3.0, &ctx(32)), Applied::Conflict);
        assert_eq!(d.apply(150, 1.5, &ctx(32)), Applied::OutOfOrder);
        assert_eq!(d.apply(150, 1.5, &ctx(32)), Applied::AlreadyStored);
        assert_eq!(d.apply(150, 2.5, &ctx(32)), Applied::Conflict);
        let late = |d: &SeriesData, t| d.ooo.as_ref().and_then(|o| o.value_at(t));
        assert_eq!(late(&d, 150), Some(1.5));
        // A late sample is not checked against the in-order chunks: stored beside the in-order one.
        assert_eq!(d.apply(100, 9.0, &ctx(32)), Applied::OutOfOrder);
        assert_eq!(late(&d, 100), Some(9.0));
        assert_eq!(d.apply(100, 7.0, &ctx(32)), Applied::Conflict);
        assert_eq!(late(&d, 101), None);
    }

    #[test]
    fn ooo_chunk_is_sealed_at_cap() {
        let mut d = SeriesData::new(0);
        d.apply(1_000_000, 0.0, &ctx(4));
        for t in 0..10 {
            assert_eq!(d.apply(t * 10, t as f64, &ctx(4)), Applied::OutOfOrder);
        }
        let ooo = d.ooo.as_ref().unwrap();
        assert_eq!(ooo.sealed.len(), 2);
        assert_eq!(ooo.open.len(), 2);
        for t in 0..10 {
            assert_eq!(ooo.value_at(t * 10), Some(t as f64));
        }
        for t in 0..10 {
            assert_eq!(d.apply(t * 10, -1.0, &ctx(4)), Applied::Conflict, "sealed chunks are checked too");
        }
    }

    #[test]
    fn hash_shard_keeps_colliding_hashes_apart() {
        let mut shard = HashShard::default();
        let series = |i: u64| {
            let l = Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]).unwrap();
            Arc::new(MemSeries::new(SeriesRef(i), l, false))
        };
        // Same hash for every series, then many distinct ones (forces growth past probes).
        for i in 0..50 {
            let s = series(i);
            let hash = if i < 10 { 42 } else { i.wrapping_mul(0x9E37_79B9_7F4A_7C15) };
            assert!(shard.get(hash, s.labels.packed()).is_none());
            shard.insert(hash, s);
        }
        for i in 0..50 {
            let s = series(i);
            let hash = if i < 10 { 42 } else { i.wrapping_mul(0x9E37_79B9_7F4A_7C15) };
            assert_eq!(shard.get(hash, s.labels.packed()).map(|f| f.sref), Some(SeriesRef(i)));
        }
        assert!(shard.get(42, series(99).labels.packed()).is_none());
        assert!(shard.slots.len() >= 100);
    }

    proptest::proptest! {
        /// Inserts and removals in any order, with few distinct hashes (long, overlapping probe runs,
        /// wrapping around the table's end): the shard answers like a map.
        #[test]
        fn hash_shard_removal_keeps_every_other_series_reachable(
            ops in proptest::collection::vec((proptest::bool::weighted(0.6), 0u64..40), 0..300),
        ) {
            let mut shard = HashShard::default();
            let mut model = std::collections::BTreeSet::new();
            let series = |i: u64| {
                let l = Labels::from_pairs(&[("__name__", "m"), ("i", &i.to_string())]).unwrap();
                Arc::new(MemSeries::new(SeriesRef(i), l, false))
            };
            // Hashes whose slot bits (the high half) collide in groups and sit near the table's end.
            let hash = |i: u64| ((u64::MAX - i % 7) << 32) | i;
            for (insert, i) in ops {
                let s = series(i);
                let at = shard.position(hash(i), s.labels.packed());
                proptest::prop_assert_eq!(at.is_some(), model.contains(&i));
                match (insert, at) {
                    (true, None) => {
                        shard.insert(hash(i), s);
                        model.insert(i);
                    }
                    (false, Some(at)) => {
                        proptest::prop_assert_eq!(shard.remove_at(at).map(|r| r.sref), Some(SeriesRef(i)));
                        model.remove(&i);
                    }
                    _ => {}
                }
                proptest::prop_assert_eq!(shard.len, model.len());
                for j in 0..40 {
                    let found = shard.get(hash(j), series(j).labels.packed()).map(|f| f.sref);
                    proptest::prop_assert_eq!(found, model.contains(&j).then_some(SeriesRef(j)));
                }
            }
        }
    }

    #[test]
    fn chunk_end_time() {
        assert_eq!(range_for_timestamp(0, H2), H2);
        assert_eq!(range_for_timestamp(-1, H2), 0);
        assert_eq!(compute_chunk_end_time(0, 29 * 15_000, H2), H2 / 4);
    }

    proptest::proptest! {
        /// The hash shard answers like a map from label set to series while many label sets share
        /// a hash or a home slot, through inserts, removals (which shift probe runs back) and growth.
        #[test]
        fn hash_shard_behaves_like_a_map_under_collisions(ops in proptest::collection::vec((0u8..40, proptest::bool::weighted(0.7)), 0..200)) {
            // Few distinct hashes: equal hashes of different label sets, and different hashes with
            // the same home slot (the slot comes from the high half).
            let hash = |k: u8| (u64::from(k % 6) << 32) | u64::from(k % 4);
            let labels = |k: u8| Labels::from_sorted_unchecked(&[("k", &k.to_string())]);
            let mut shard = HashShard::default();
            let mut model: std::collections::BTreeMap<u8, u64> = std::collections::BTreeMap::new();
            for (n, (k, insert)) in ops.into_iter().enumerate() {
                let l = labels(k);
                let present = shard.position(hash(k), l.packed());
                proptest::prop_assert_eq!(present.is_some(), model.contains_key(&k));
                match (insert, present) {
                    (true, None) => {
                        shard.insert(hash(k), Arc::new(MemSeries::new(SeriesRef(n as u64), l, false)));
                        model.insert(k, n as u64);
                    }
                    (false, Some(i)) => {
                        let removed = shard.remove_at(i).map(|s| s.sref.0);
                        proptest::prop_assert_eq!(removed, model.remove(&k));
                    }
                    _ => {}
                }
                proptest::prop_assert_eq!(shard.len, model.len());
                for k in 0u8..40 {
                    let found = shard.get(hash(k), labels(k).packed()).map(|s| s.sref.0);
                    proptest::prop_assert_eq!(found, model.get(&k).copied());
                }
            }
        }
    }
}
