//! Exemplars: a bounded in-memory circular buffer, as Prometheus's `CircularExemplarStorage`.
//!
//! Holds the newest [`ExemplarStore::capacity`] exemplars of all series together; a new exemplar
//! overwrites the oldest. Per series it keeps the newest exemplar timestamp: an exemplar older than
//! that is out of order and refused, one equal to the series' newest (same timestamp, value and
//! labels) is a duplicate and not stored again, as in Prometheus. Capacity 0 turns storage off.
//! The store itself keeps nothing on disk: the head writes committed exemplars to the WAL, and WAL
//! replay and checkpoints bring them back after a restart (see `tsdb::head`).
//!
//! One mutex guards the buffer: appends take it once per request batch, queries scan the buffer
//! under it (a linear scan of at most the capacity).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::labels::{Labels, Matcher};

/// Default capacity (Prometheus's `--storage.exemplars.exemplars-limit` default).
pub const DEFAULT_CAPACITY: usize = 100_000;
/// Most bytes of an exemplar's label names and values together (Prometheus: 128 runes).
pub const MAX_LABELS_CHARS: usize = 128;

/// One exemplar.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// Exemplar labels (e.g. a trace id), sorted by name.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub t: i64,
}

/// Why an exemplar was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ExemplarError {
    /// Storage is off (capacity 0).
    #[error("exemplar storage is disabled")]
    Disabled,
    /// Older than the series' newest exemplar.
    #[error("out of order exemplar")]
    OutOfOrder,
    /// The same as the series' newest exemplar.
    #[error("duplicate exemplar")]
    Duplicate,
    /// Labels longer than [`MAX_LABELS_CHARS`] characters together.
    #[error("exemplar label set is longer than {MAX_LABELS_CHARS} characters")]
    LabelsTooLong,
}

struct Entry {
    series: Arc<Labels>,
    exemplar: Exemplar,
}

#[derive(Default)]
struct Ring {
    entries: Vec<Entry>,
    /// Where the next exemplar goes once `entries` is full.
    next: usize,
    /// Per series held: its label set (shared by its entries), newest exemplar, entries held.
    series: HashMap<Labels, (Arc<Labels>, i64, usize)>,
}

/// The exemplar buffer (see the module docs).
pub struct ExemplarStore {
    capacity: usize,
    ring: Mutex<Ring>,
    appended: AtomicU64,
    refused: AtomicU64,
}

impl std::fmt::Debug for ExemplarStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExemplarStore").field("capacity", &self.capacity).finish()
    }
}

impl ExemplarStore {
    /// A store holding at most `capacity` exemplars (0: none).
    pub fn new(capacity: usize) -> ExemplarStore {
        ExemplarStore { capacity, ring: Mutex::default(), appended: AtomicU64::new(0), refused: AtomicU64::new(0) }
    }

    /// Most exemplars held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Exemplars held now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True if none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Exemplars stored and refused so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.appended.load(Ordering::Relaxed), self.refused.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds exemplars of `series`, in order; returns one result per exemplar.
    pub fn append(&self, series: &Labels, exemplars: Vec<Exemplar>) -> Vec<Result<(), ExemplarError>> {
        if self.capacity == 0 {
            self.refused.fetch_add(exemplars.len() as u64, Ordering::Relaxed);
            return vec![Err(ExemplarError::Disabled); exemplars.len()];
        }
        let mut ring = self.lock();
        let mut results = Vec::with_capacity(exemplars.len());
        for e in exemplars {
            let r = ring.add(self.capacity, series, e);
            let counter = if r.is_ok() { &self.appended } else { &self.refused };
            counter.fetch_add(1, Ordering::Relaxed);
            results.push(r);
        }
        results
    }

    /// Whether [`ExemplarStore::append`] would refuse `e` for `series` now, and why (the same
    /// checks, nothing stored). A refusal is counted as [`ExemplarStore::append`] counts one: this
    /// is where the head's appender refuses exemplars before they reach the WAL.
    pub fn check(&self, series: &Labels, e: &Exemplar) -> Result<(), ExemplarError> {
        let checked = if self.capacity == 0 {
            Err(ExemplarError::Disabled)
        } else {
            let mut e = e.clone();
            e.labels.sort();
            self.lock().check(series, &e)
        };
        if checked.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        checked
    }

    /// Every exemplar held with its series, oldest first: appended in this order to an empty store,
    /// they are all taken again (a WAL checkpoint writes them so).
    pub fn entries_oldest_first(&self) -> Vec<(Labels, Exemplar)> {
        let ring = self.lock();
        let (newer, older) = ring.entries.split_at(ring.next.min(ring.entries.len()));
        older.iter().chain(newer).map(|e| (e.series.as_ref().clone(), e.exemplar.clone())).collect()
    }

    /// The exemplars in `[mint, maxt]` of the series matching any of `matcher_sets`, per series
    /// (sorted by labels), each series' exemplars by time.
    pub fn select(&self, matcher_sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<(Labels, Vec<Exemplar>)> {
        let ring = self.lock();
        let mut by_series: HashMap<&Labels, Vec<Exemplar>> = HashMap::new();
        for entry in &ring.entries {
            let e = &entry.exemplar;
            if e.t < mint || e.t > maxt {
                continue;
            }
            let labels = entry.series.as_ref();
            if matcher_sets.iter().any(|ms| ms.iter().all(|m| m.matches_labels(labels))) {
                by_series.entry(labels).or_default().push(e.clone());
            }
        }
        let mut out: Vec<(Labels, Vec<Exemplar>)> = by_series
            .into_iter()
            .map(|(l, mut es)| {
                es.sort_by_key(|e| e.t);
                (l.clone(), es)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

impl Ring {
    /// Whether `e` (labels sorted) would be refused for `series` now, and why.
    fn check(&self, series: &Labels, e: &Exemplar) -> Result<(), ExemplarError> {
        let chars: usize = e.labels.iter().map(|(n, v)| n.chars().count() + v.chars().count()).sum();
        if chars > MAX_LABELS_CHARS {
            return Err(ExemplarError::LabelsTooLong);
        }
        if let Some((shared, newest, _)) = self.series.get(series) {
            if e.t < *newest {
                return Err(ExemplarError::OutOfOrder);
            }
            if e.t == *newest {
                let same = self.entries.iter().rev().any(|x| {
                    Arc::ptr_eq(&x.series, shared)
                        && x.exemplar.t == e.t
                        && x.exemplar.value.to_bits() == e.value.to_bits()
                        && x.exemplar.labels == e.labels
                });
                if same {
                    return Err(ExemplarError::Duplicate);
                }
            }
        }
        Ok(())
    }

    fn add(&mut self, capacity: usize, series: &Labels, mut e: Exemplar) -> Result<(), ExemplarError> {
        e.labels.sort();
        self.check(series, &e)?;
        let shared = match self.series.get_mut(series) {
            Some((shared, newest, _)) => {
                *newest = e.t;
                Arc::clone(shared)
            }
            None => {
                let shared = Arc::new(series.clone());
                self.series.insert(series.clone(), (Arc::clone(&shared), e.t, 0));
                shared
            }
        };
        if let Some((_, _, held)) = self.series.get_mut(series) {
            *held += 1;
        }
        let entry = Entry { series: shared, exemplar: e };
        if self.entries.len() < capacity {
            self.entries.push(entry);
            return Ok(());
        }
        let at = self.next;
        self.next = (self.next + 1) % capacity;
        if let Some(slot) = self.entries.get_mut(at) {
            let old = std::mem::replace(slot, entry);
            let gone = match self.series.get_mut(old.series.as_ref()) {
                Some((_, _, held)) => {
                    *held = held.saturating_sub(1);
                    *held == 0
                }
                None => false,
            };
            if gone {
                self.series.remove(old.series.as_ref());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(t: i64, v: f64, trace: &str) -> Exemplar {
        Exemplar { labels: vec![("trace_id".into(), trace.into())], value: v, t }
    }

    fn labels(name: &str) -> Labels {
        Labels::from_pairs(&[("__name__", name)]).unwrap()
    }

    #[test]
    fn orders_deduplicates_and_overwrites_the_oldest() {
        let s = ExemplarStore::new(3);
        let a = labels("a");
        let r = s.append(&a, vec![ex(10, 1.0, "x"), ex(10, 1.0, "x"), ex(5, 1.0, "y"), ex(20, 2.0, "z")]);
        assert_eq!(r, [Ok(()), Err(ExemplarError::Duplicate), Err(ExemplarError::OutOfOrder), Ok(())]);
        let b = labels("b");
        s.append(&b, vec![ex(1, 9.0, "b1"), ex(2, 9.0, "b2")]);
        // Capacity 3: a@10 was overwritten by b@2.
        let all = s.select(&[vec![Matcher::new(crate::MatchType::Regex, "__name__", ".+").unwrap()]], 0, 100);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].1.iter().map(|e| e.t).collect::<Vec<_>>(), [20]);
        assert_eq!(all[1].1.iter().map(|e| e.t).collect::<Vec<_>>(), [1, 2]);
        let only_b = s.select(&[vec![Matcher::equal("__name__", "b")]], 2, 2);
        assert_eq!(only_b[0].1, [ex(2, 9.0, "b2")]);
        assert_eq!(s.counts(), (4, 2));
        // A series whose exemplars were all overwritten is forgotten: an older one is accepted.
        s.append(&b, vec![ex(3, 1.0, "b3"), ex(4, 1.0, "b4")]);
        assert_eq!(s.append(&a, vec![ex(15, 1.0, "old")]), [Ok(())]);
    }

    #[test]
    fn disabled_and_long_labels() {
        let off = ExemplarStore::new(0);
        assert_eq!(off.append(&labels("a"), vec![ex(1, 1.0, "x")]), [Err(ExemplarError::Disabled)]);
        let s = ExemplarStore::new(10);
        let long = "x".repeat(MAX_LABELS_CHARS);
        assert_eq!(s.append(&labels("a"), vec![ex(1, 1.0, &long)]), [Err(ExemplarError::LabelsTooLong)]);
        assert!(s.is_empty());
    }
}
