//! An in-memory [`Storage`] for unit tests of the evaluator (not used by the server).

use std::collections::BTreeMap;

use promql_parser::label::Matcher;

use super::{Labels, Selected, Storage, StorageSeries};
use crate::error::Result;

/// Series kept in a sorted map.
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    series: BTreeMap<Labels, Vec<(i64, f64)>>,
}

impl MemStorage {
    /// Adds a sample (kept sorted; a later write at the same timestamp wins).
    pub fn add(&mut self, labels: Labels, t: i64, v: f64) {
        let s = self.series.entry(labels).or_default();
        match s.binary_search_by_key(&t, |p| p.0) {
            Ok(i) => s[i].1 = v,
            Err(i) => s.insert(i, (t, v)),
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.series.clear();
    }
}

struct MemSeries<'a> {
    labels: &'a Labels,
    samples: &'a [(i64, f64)],
}

impl StorageSeries for MemSeries<'_> {
    fn labels(&self) -> Labels {
        self.labels.clone()
    }
    fn samples(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) -> Result<()> {
        out.extend(self.samples.iter().filter(|p| p.0 >= mint && p.0 <= maxt));
        Ok(())
    }
}

impl Storage for MemStorage {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Selected<'_>> {
        let series: Vec<MemSeries<'_>> = self
            .series
            .iter()
            .filter(|(l, _)| matchers.iter().all(|m| m.is_match(l.get(&m.name).unwrap_or(""))))
            .filter(|(_, s)| s.iter().any(|p| p.0 >= mint && p.0 <= maxt))
            .map(|(l, s)| MemSeries { labels: l, samples: s })
            .collect();
        Ok(Box::new(series))
    }
}
