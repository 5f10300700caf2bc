//! Helpers for tests and benchmarks of this and other crates (feature `testing`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::error::AppendError;

use crate::head::{Head, Options};

/// A head in a fresh temporary directory, removed when the returned guard drops.
pub fn temp_head(opts: Options) -> (tempfile::TempDir, Arc<Head>) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("cannot create temp dir: {e}"),
    };
    let head = match Head::open(dir.path(), opts) {
        Ok(h) => h,
        Err(e) => panic!("cannot open head: {e}"),
    };
    (dir, head)
}

/// Options for an in-memory head (no WAL) with the given out-of-order window.
pub fn memory_options(ooo_window_ms: i64) -> Options {
    Options { ooo_time_window_ms: ooo_window_ms, wal: None, ..Options::default() }
}

/// A database (head and blocks, no background compaction) in a fresh temporary directory.
pub fn temp_db(head: Options) -> (tempfile::TempDir, Arc<crate::Db>) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("cannot create temp dir: {e}"),
    };
    let opts = crate::DbOptions { head, ..crate::DbOptions::default() };
    let db = match crate::Db::open(dir.path(), opts) {
        Ok(d) => d,
        Err(e) => panic!("cannot open db: {e}"),
    };
    (dir, db)
}

/// A model of the head's write rules, for checking the head (and the server) sample by sample: per
/// series, every stored sample (the first stored at a timestamp wins) and the newest in-order one;
/// per request, the limits seen when it started and what it queued. Written from the rules —
/// Prometheus's `appendable` plus Strata's 400s — not from the code it checks. Series are numbered
/// by the caller; no creation grace period is modelled (use timestamps near the wall clock).
#[derive(Debug, Default)]
pub struct WriteModel {
    window: i64,
    chunk_range: i64,
    head_max: Option<i64>,
    stored: HashMap<usize, BTreeMap<i64, u64>>,
    in_order_max: HashMap<usize, (i64, u64)>,
}

impl WriteModel {
    /// A model of an empty head with this out-of-order window and chunk range (ms).
    pub fn new(window: i64, chunk_range: i64) -> WriteModel {
        WriteModel { window, chunk_range, ..WriteModel::default() }
    }

    /// Applies one request of `(series, t, v)`; returns each sample's outcome.
    pub fn request(&mut self, samples: &[(usize, i64, f64)]) -> Vec<Result<(), AppendError>> {
        let head_max = self.head_max.unwrap_or(i64::MIN);
        let min_valid = if self.head_max.is_some() { head_max - self.chunk_range / 2 } else { i64::MIN };
        let mut queued: HashMap<(usize, i64), u64> = HashMap::new();
        let mut newest = i64::MIN;
        let out = samples
            .iter()
            .map(|&(s, t, v)| {
                let r = self.one(s, t, v, (head_max, min_valid), &mut queued);
                if r.is_ok() {
                    newest = newest.max(t);
                }
                r
            })
            .collect();
        if newest != i64::MIN {
            self.head_max = Some(self.head_max.map_or(newest, |m| m.max(newest)));
        }
        out
    }

    /// The samples series `s` holds, as `(t, value bits)`, oldest first.
    pub fn stored(&self, s: usize) -> Vec<(i64, u64)> {
        self.stored.get(&s).map(|m| m.iter().map(|(&t, &b)| (t, b)).collect()).unwrap_or_default()
    }

    fn one(
        &mut self,
        s: usize,
        t: i64,
        v: f64,
        (head_max, min_valid): (i64, i64),
        queued: &mut HashMap<(usize, i64), u64>,
    ) -> Result<(), AppendError> {
        let bits = v.to_bits();
        let duplicate = |existing: u64| {
            if existing == bits {
                Ok(())
            } else {
                Err(AppendError::Duplicate { t, existing: f64::from_bits(existing), new: v })
            }
        };
        let w = self.window;
        if w == 0 && t < min_valid {
            return Err(AppendError::OutOfBounds);
        }
        let tail = self.in_order_max.get(&s).copied();
        if t >= min_valid {
            match tail {
                Some((mt, mv)) if t == mt => return duplicate(mv),
                Some((mt, _)) if t < mt => {}
                _ => {
                    self.in_order_max.insert(s, (t, bits));
                    self.stored.entry(s).or_default().entry(t).or_insert(bits);
                    queued.insert((s, t), bits);
                    return Ok(());
                }
            }
        }
        if w > 0 {
            if t < head_max.saturating_sub(w) {
                return Err(AppendError::TooOld);
            }
            if let Some(&q) = queued.get(&(s, t)) {
                return duplicate(q);
            }
            queued.insert((s, t), bits);
            // Late: stored unless a sample is stored at t already (the first stays).
            self.stored.entry(s).or_default().entry(t).or_insert(bits);
            return Ok(());
        }
        if t < min_valid {
            return Err(AppendError::OutOfBounds);
        }
        Err(AppendError::OutOfOrder)
    }
}
