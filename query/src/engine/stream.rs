//! Series-at-a-time output of selectors and range functions.
//!
//! A producer ([`super::Evaluator::stream_vector_selector`], [`super::Evaluator::stream_range_fn`])
//! reads one input series, computes its value at every step and hands the result to a
//! [`SeriesSink`] before reading the next, in the order the storage returned the series. A sink
//! either builds the per-step vectors the rest of the evaluator works on ([`Collect`]) or folds the
//! values straight into an aggregation (`aggregate::Fused`), so that `sum(rate(x[5m]))` never
//! materializes one sample per input series and step; a selector at the top of a range query
//! builds the result's series directly ([`SeriesOut`]). Sinks see the values of a step in the same
//! order a per-step vector would hold them, so results do not depend on which sink is used.

use std::collections::HashSet;
use std::sync::Arc;

use super::value::FloatHistogram;
use super::{check_duplicates, Labels, Sample, Series};
use crate::error::{QueryError, Result};

/// Receives an instant vector one input series at a time.
pub(crate) trait SeriesSink {
    /// Called once, before the first [`SeriesSink::series`], with the number of selected series
    /// (an upper bound of the calls that follow).
    fn begin(&mut self, _series: usize) {}

    /// Whether the result depends on the order of the input series (then they come sorted by
    /// labels).
    fn needs_order(&self) -> bool {
        true
    }

    /// The values of one input series: `(step, value)` pairs in step order, never empty. The
    /// output series' labels are `labels`, without `__name__` when `drop_name`.
    fn series(&mut self, labels: &Labels, drop_name: bool, points: &[(usize, f64)]) -> Result<()>;

    /// The histogram values of one input series, like [`SeriesSink::series`]; a series may have
    /// both kinds at different steps (each step holds one value per series).
    fn histograms(&mut self, labels: &Labels, drop_name: bool, points: &[(usize, FloatHistogram)]) -> Result<()>;
}

/// Builds per-step vectors, checking (like Prometheus) that a step never holds one label set
/// twice once `__name__` was dropped.
pub(crate) struct Collect {
    out: Vec<Vec<Sample>>,
    /// Output label sets seen, while they are all distinct (then no step can hold duplicates).
    seen: HashSet<Arc<Labels>>,
    distinct: bool,
}

impl Collect {
    /// A sink for `steps` steps.
    pub(crate) fn new(steps: usize) -> Collect {
        Collect { out: (0..steps).map(|_| Vec::new()).collect(), seen: HashSet::new(), distinct: true }
    }

    /// The per-step vectors; errors if a step holds a label set twice.
    pub(crate) fn finish(self) -> Result<Vec<Vec<Sample>>> {
        if !self.distinct {
            for v in &self.out {
                check_duplicates(v)?;
            }
        }
        Ok(self.out)
    }
}

impl Collect {
    /// The output labels of an input series.
    fn out_labels(&mut self, labels: &Labels, drop_name: bool) -> Arc<Labels> {
        let labels =
            if drop_name && labels.has_name() { Arc::new(labels.without_name()) } else { Arc::new(labels.clone()) };
        // Input series have distinct label sets; only dropping the name can make two equal.
        if drop_name && self.distinct && !self.seen.insert(Arc::clone(&labels)) {
            self.distinct = false;
        }
        labels
    }
}

impl SeriesSink for Collect {
    fn series(&mut self, labels: &Labels, drop_name: bool, points: &[(usize, f64)]) -> Result<()> {
        let labels = self.out_labels(labels, drop_name);
        for &(k, v) in points {
            if let Some(o) = self.out.get_mut(k) {
                o.push(Sample::float(Arc::clone(&labels), v));
            }
        }
        Ok(())
    }

    fn histograms(&mut self, labels: &Labels, drop_name: bool, points: &[(usize, FloatHistogram)]) -> Result<()> {
        let labels = self.out_labels(labels, drop_name);
        for (k, h) in points {
            if let Some(o) = self.out.get_mut(*k) {
                o.push(Sample::histogram(Arc::clone(&labels), h.clone()));
            }
        }
        Ok(())
    }
}

/// Builds a range query's result series directly from a selector's or a range function's series:
/// no per-step vectors to regroup by label set afterwards (for a one-series query that regrouping,
/// one small vector per step and a label-set hash per point, cost about as much as reading the
/// series). Each input series becomes one output series: their label sets are distinct, and stay
/// so without `__name__` because [`super::functions::stream_range_call`] streams a function that
/// drops it only over one metric name (checked here all the same).
pub(crate) struct SeriesOut {
    /// Each step's timestamp (ms).
    times: Vec<i64>,
    out: Vec<Series>,
    /// Output label sets, kept only once a name was dropped.
    seen: HashSet<Arc<Labels>>,
}

impl SeriesOut {
    /// A sink for steps at `times`.
    pub(crate) fn new(times: Vec<i64>) -> SeriesOut {
        SeriesOut { times, out: Vec::new(), seen: HashSet::new() }
    }

    /// The series, in the order they came (callers sort them).
    pub(crate) fn finish(self) -> Vec<Series> {
        self.out
    }
}

impl SeriesSink for SeriesOut {
    fn needs_order(&self) -> bool {
        false
    }

    fn series(&mut self, labels: &Labels, drop_name: bool, points: &[(usize, f64)]) -> Result<()> {
        let labels = self.out_labels(labels, drop_name)?;
        let times = &self.times;
        // Sized once: a vector grown point by point leaves freed smaller blocks behind in the heap.
        let mut out = Vec::with_capacity(points.len());
        out.extend(points.iter().filter_map(|&(k, v)| Some((*times.get(k)?, v))));
        self.push(labels, out, Vec::new());
        Ok(())
    }

    fn histograms(&mut self, labels: &Labels, drop_name: bool, points: &[(usize, FloatHistogram)]) -> Result<()> {
        let labels = self.out_labels(labels, drop_name)?;
        let times = &self.times;
        let hs: Vec<(i64, FloatHistogram)> =
            points.iter().filter_map(|(k, h)| Some((*times.get(*k)?, h.clone()))).collect();
        self.push(labels, Vec::new(), hs);
        Ok(())
    }
}

impl SeriesOut {
    /// Appends to the last series if it has these labels (a series with floats and histograms
    /// arrives in two calls), else starts a series.
    fn push(&mut self, labels: Arc<Labels>, points: Vec<(i64, f64)>, histograms: Vec<(i64, FloatHistogram)>) {
        if let Some(last) = self.out.last_mut().filter(|s| s.labels == labels) {
            last.points.extend(points);
            last.histograms.extend(histograms);
            return;
        }
        self.out.push(Series { labels, points, histograms });
    }

    /// The output labels of an input series.
    fn out_labels(&mut self, labels: &Labels, drop_name: bool) -> Result<Arc<Labels>> {
        let labels = if drop_name && labels.has_name() {
            let l = Arc::new(labels.without_name());
            // The second call for one series (its histograms after its floats) adds to it.
            let same_series = self.out.last().is_some_and(|s| s.labels == l);
            if !same_series && !self.seen.insert(Arc::clone(&l)) {
                // Cannot happen for what `stream_range_call` streams; Prometheus's error if it did.
                return Err(QueryError::exec("vector cannot contain metrics with the same labelset"));
            }
            l
        } else {
            Arc::new(labels.clone())
        };
        Ok(labels)
    }
}
