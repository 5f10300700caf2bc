//! The open out-of-order chunk of a series: a small sorted buffer of unique samples (Prometheus's
//! `OOOChunk`), cut into an immutable XOR chunk when it reaches `out_of_order_cap_max` samples.

use super::chunk_file::HeadChunks;
use super::series::SealedChunk;
use crate::chunkenc::XorChunk;

/// How many of the newest samples a lookup or insert scans before a binary search of the rest.
const TAIL_SCAN: usize = 4;

/// Sorted, timestamp-unique samples.
#[derive(Debug)]
pub struct OooChunk {
    samples: Vec<(i64, f64)>,
    /// The newest sample's timestamp (`i64::MIN` when empty). Kept beside the buffer's address: a
    /// sample newer than every buffered one (most late samples) is known absent, and appended,
    /// without reading the buffer — a wait for main memory when the series is cold.
    max_t: i64,
}

impl Default for OooChunk {
    fn default() -> OooChunk {
        OooChunk { samples: Vec::new(), max_t: i64::MIN }
    }
}

impl OooChunk {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Inserts a sample; returns false (and keeps the stored one) if the timestamp is already present.
    pub fn insert(&mut self, t: i64, v: f64) -> bool {
        if t > self.max_t {
            self.samples.push((t, v));
            self.max_t = t;
            return true;
        }
        match self.search(t) {
            Ok(_) => false,
            Err(i) => {
                self.samples.insert(i, (t, v));
                true
            }
        }
    }

    /// The value at exactly `t`.
    pub fn get(&self, t: i64) -> Option<f64> {
        if t > self.max_t {
            return None;
        }
        self.search(t).ok().and_then(|i| self.samples.get(i)).map(|s| s.1)
    }

    /// Where `t` is (`Ok`) or would be inserted (`Err`), as `binary_search` answers.
    ///
    /// Late samples mostly land at or near the end of the buffer, so the newest few are scanned
    /// first: a binary search would start in the middle and fetch several cache lines one after
    /// another, each a wait for main memory when the series is cold.
    fn search(&self, t: i64) -> Result<usize, usize> {
        let n = self.samples.len();
        let older = n.saturating_sub(TAIL_SCAN);
        for (i, &(st, _)) in self.samples.iter().enumerate().rev().take(TAIL_SCAN) {
            if st == t {
                return Ok(i);
            }
            if st < t {
                return Err(i + 1);
            }
        }
        self.samples.get(..older).map_or(Err(0), |o| o.binary_search_by_key(&t, |s| s.0))
    }

    /// The samples, sorted.
    pub fn samples(&self) -> &[(i64, f64)] {
        &self.samples
    }

    /// First and last timestamps.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        Some((self.samples.first()?.0, self.samples.last()?.0))
    }

    /// Encodes the samples into an immutable XOR chunk (moved to the head chunk files when `chunks`
    /// is given) and empties the buffer.
    pub(crate) fn seal(&mut self, chunks: Option<&HeadChunks>) -> Option<SealedChunk> {
        let (min_t, max_t) = self.time_range()?;
        let mut c = XorChunk::new();
        for &(t, v) in &self.samples {
            c.push(t, v);
        }
        self.samples.clear();
        self.max_t = i64::MIN;
        Some(SealedChunk::seal(min_t, max_t, c.bytes(), chunks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #[test]
        fn behaves_like_first_wins_map(ops in proptest::collection::vec((-50i64..50, -5.0f64..5.0), 0..100)) {
            let mut c = OooChunk::default();
            let mut model = BTreeMap::new();
            for (t, v) in ops {
                let inserted = c.insert(t, v);
                prop_assert_eq!(inserted, !model.contains_key(&t));
                model.entry(t).or_insert(v);
            }
            for t in -51i64..51 {
                prop_assert_eq!(c.get(t), model.get(&t).copied());
            }
            let want: Vec<(i64, f64)> = model.into_iter().collect();
            prop_assert_eq!(c.samples(), &want[..]);
        }

        /// Sealing empties the buffer: later samples, older or newer than the sealed ones, are kept
        /// sorted and found.
        #[test]
        fn sealing_starts_over(ops in proptest::collection::vec(proptest::option::weighted(0.9, -50i64..50), 0..100)) {
            let mut c = OooChunk::default();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Some(t) => {
                        prop_assert_eq!(c.insert(t, t as f64), model.insert(t, t as f64).is_none());
                    }
                    None => {
                        let sealed = c.seal(None);
                        prop_assert_eq!(sealed.map(|s| (s.min_t, s.max_t)), model.first_key_value().zip(model.last_key_value()).map(|((a, _), (b, _))| (*a, *b)));
                        model.clear();
                    }
                }
            }
            for t in -51i64..51 {
                prop_assert_eq!(c.get(t), model.get(&t).copied());
            }
            let want: Vec<(i64, f64)> = model.into_iter().collect();
            prop_assert_eq!(c.samples(), &want[..]);
        }
    }
}
