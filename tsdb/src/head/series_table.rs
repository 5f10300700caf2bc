//! The head's series table: [`StripeSeries`], sharded maps that find a series by label hash (an
//! open-addressing table per shard) or by reference.
//!
//! Locking: a shard is locked only to look up, insert or remove a series; a series' samples are
//! behind its own lock (see [`super::series::MemSeries`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use super::series::{MemSeries, SeriesRef};
use crate::labels::Labels;

/// Integer keys (series references, (handle, timestamp) pairs) are dense or already well spread:
/// Fx hashing (one multiplication per integer) instead of SipHash keeps them off the append path's
/// profile.
pub(crate) type BuildIntHasher = rustc_hash::FxBuildHasher;
type RefMap = HashMap<SeriesRef, Arc<MemSeries>, BuildIntHasher>;

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

    #[test]
    fn two_hash_shard_slots_fit_a_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
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
