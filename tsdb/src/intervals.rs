//! Deleted time intervals of one series ([`Intervals`]): what a `delete_series` leaves behind, in a
//! block's `tombstones` file and in the head, until compaction or `clean_tombstones` rewrites the
//! data without the deleted samples. Readers filter samples through them
//! ([`crate::chunk::ChunkIter`]) and leave out chunks they cover whole.
//!
//! Intervals are closed (`[min_t, max_t]`, ms) and kept sorted and disjoint: adding one merges it
//! with those it overlaps or touches (timestamps are integers, so `[1, 5]` and `[6, 9]` are
//! `[1, 9]`), as Prometheus's `tombstones.Intervals.Add` does.

/// One deleted interval: samples with `min_t <= t <= max_t` are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    /// First deleted timestamp.
    pub min_t: i64,
    /// Last deleted timestamp (inclusive).
    pub max_t: i64,
}

impl Interval {
    /// The interval `[min_t, max_t]`.
    pub fn new(min_t: i64, max_t: i64) -> Interval {
        Interval { min_t, max_t }
    }

    /// True if `t` is inside.
    #[inline]
    pub fn contains(&self, t: i64) -> bool {
        self.min_t <= t && t <= self.max_t
    }
}

/// Sorted, disjoint, non-adjacent deleted intervals of one series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(Vec<Interval>);

impl Intervals {
    /// No intervals.
    pub fn new() -> Intervals {
        Intervals(Vec::new())
    }

    /// The intervals, sorted.
    pub fn as_slice(&self) -> &[Interval] {
        &self.0
    }

    /// Number of intervals (what `meta.json`'s `numTombstones` counts).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `iv` (ignored if `min_t > max_t`), merging it with every interval it overlaps or touches.
    pub fn add(&mut self, iv: Interval) {
        if iv.min_t > iv.max_t {
            return;
        }
        // First interval that ends at or after the one before `iv` starts (adjacent ones merge).
        let lo = self.0.partition_point(|x| x.max_t < iv.min_t.saturating_sub(1));
        // First interval that starts after the one after `iv` ends.
        let hi = self.0.partition_point(|x| x.min_t <= iv.max_t.saturating_add(1));
        if lo >= hi {
            self.0.insert(lo, iv);
            return;
        }
        let (Some(first), Some(last)) = (self.0.get(lo), self.0.get(hi - 1)) else { return };
        let merged = Interval { min_t: first.min_t.min(iv.min_t), max_t: last.max_t.max(iv.max_t) };
        self.0.splice(lo..hi, [merged]);
    }

    /// True if `t` is deleted.
    pub fn contains(&self, t: i64) -> bool {
        let i = self.0.partition_point(|x| x.max_t < t);
        self.0.get(i).is_some_and(|x| x.min_t <= t)
    }

    /// True if every timestamp of `[min_t, max_t]` is deleted (one interval holds both ends, as
    /// Prometheus's `IsSubrange`; intervals never touch, so that is the same as being covered).
    pub fn covers(&self, min_t: i64, max_t: i64) -> bool {
        let i = self.0.partition_point(|x| x.max_t < min_t);
        self.0.get(i).is_some_and(|x| x.min_t <= min_t && max_t <= x.max_t)
    }

    /// True if some timestamp of `[min_t, max_t]` is deleted.
    pub fn overlaps(&self, min_t: i64, max_t: i64) -> bool {
        let i = self.0.partition_point(|x| x.max_t < min_t);
        self.0.get(i).is_some_and(|x| x.min_t <= max_t)
    }

    /// Forgets what lies before `t` (the data there is gone): intervals ending before it are
    /// removed and one straddling it starts at `t`.
    pub fn truncate_before(&mut self, t: i64) {
        self.0.retain(|x| x.max_t >= t);
        if let Some(first) = self.0.first_mut() {
            first.min_t = first.min_t.max(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ivs(v: &[(i64, i64)]) -> Intervals {
        let mut out = Intervals::new();
        for &(a, b) in v {
            out.add(Interval::new(a, b));
        }
        out
    }

    #[test]
    fn add_merges_overlapping_and_touching_intervals() {
        let got = ivs(&[(10, 20), (30, 40), (21, 22), (50, 60), (5, 7)]);
        assert_eq!(
            got.as_slice(),
            [Interval::new(5, 7), Interval::new(10, 22), Interval::new(30, 40), Interval::new(50, 60)]
        );
        let got = ivs(&[(10, 20), (30, 40), (50, 60), (15, 55)]);
        assert_eq!(got.as_slice(), [Interval::new(10, 60)]);
        let got = ivs(&[(i64::MIN, 0), (1, i64::MAX)]);
        assert_eq!(got.as_slice(), [Interval::new(i64::MIN, i64::MAX)]);
        assert!(ivs(&[(5, 4)]).is_empty());
        let mut t = ivs(&[(0, 10), (20, 30)]);
        t.truncate_before(25);
        assert_eq!(t.as_slice(), [Interval::new(25, 30)]);
    }

    proptest! {
        /// Against a set of deleted timestamps: contains, covers, overlaps, and the invariant.
        #[test]
        fn matches_a_set_model(adds in prop::collection::vec((-50i64..50, 0i64..20), 0..12), q in -60i64..60, len in 0i64..30) {
            let mut m = std::collections::BTreeSet::new();
            let mut got = Intervals::new();
            for &(a, l) in &adds {
                got.add(Interval::new(a, a + l));
                m.extend(a..=a + l);
            }
            for w in got.as_slice().windows(2) {
                prop_assert!(w[0].max_t + 1 < w[1].min_t, "{:?}", got);
            }
            for t in -80..80 {
                prop_assert_eq!(got.contains(t), m.contains(&t));
            }
            prop_assert_eq!(got.covers(q, q + len), (q..=q + len).all(|t| m.contains(&t)));
            prop_assert_eq!(got.overlaps(q, q + len), (q..=q + len).any(|t| m.contains(&t)));
        }
    }
}
