//! An in-memory [`Storage`] for unit tests of the evaluator (not used by the server).

use std::collections::BTreeMap;

use promql_parser::label::Matcher;

use super::{FloatHistogram, Labels, Selected, Storage, StorageSeries};
use crate::error::Result;

/// The samples of one series: floats and native histograms, each sorted by time.
#[derive(Debug, Default, Clone)]
struct Samples {
    floats: Vec<(i64, f64)>,
    histograms: Vec<(i64, FloatHistogram)>,
}

/// Series kept in a sorted map.
#[derive(Debug, Default, Clone)]
pub struct MemStorage {
    series: BTreeMap<Labels, Samples>,
}

impl MemStorage {
    /// Adds a sample (kept sorted; a later write at the same timestamp wins).
    pub fn add(&mut self, labels: Labels, t: i64, v: f64) {
        let s = self.series.entry(labels).or_default();
        s.histograms.retain(|p| p.0 != t);
        match s.floats.binary_search_by_key(&t, |p| p.0) {
            Ok(i) => s.floats[i].1 = v,
            Err(i) => s.floats.insert(i, (t, v)),
        }
    }

    /// Adds a histogram sample (kept sorted; a later write at the same timestamp wins).
    pub fn add_histogram(&mut self, labels: Labels, t: i64, h: FloatHistogram) {
        let s = self.series.entry(labels).or_default();
        s.floats.retain(|p| p.0 != t);
        match s.histograms.binary_search_by_key(&t, |p| p.0) {
            Ok(i) => s.histograms[i].1 = h,
            Err(i) => s.histograms.insert(i, (t, h)),
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.series.clear();
    }
}

struct MemSeries<'a> {
    labels: &'a Labels,
    samples: &'a Samples,
}

impl StorageSeries for MemSeries<'_> {
    fn labels(&self) -> Labels {
        self.labels.clone()
    }
    fn samples(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) -> Result<()> {
        out.extend(self.samples.floats.iter().filter(|p| p.0 >= mint && p.0 <= maxt));
        Ok(())
    }
    fn histograms(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, FloatHistogram)>) -> Result<()> {
        out.extend(self.samples.histograms.iter().filter(|p| p.0 >= mint && p.0 <= maxt).cloned());
        Ok(())
    }
}

impl Storage for MemStorage {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Selected<'_>> {
        let in_range = |t: i64| t >= mint && t <= maxt;
        let series: Vec<MemSeries<'_>> = self
            .series
            .iter()
            .filter(|(l, _)| matchers.iter().all(|m| m.is_match(l.get(&m.name).unwrap_or(""))))
            .filter(|(_, s)| s.floats.iter().any(|p| in_range(p.0)) || s.histograms.iter().any(|p| in_range(p.0)))
            .map(|(l, s)| MemSeries { labels: l, samples: s })
            .collect();
        Ok(Box::new(series))
    }
}
