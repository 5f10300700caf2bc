//! Warnings and infos an evaluation collects about its input, reported beside the result as
//! Prometheus's annotations are (e.g. a mix of floats and histograms an aggregation dropped).

use std::sync::Mutex;

/// The distinct messages of one evaluation, in the order they first occurred. Shared by the
/// threads of a range function.
#[derive(Debug, Default)]
pub struct Annotations(Mutex<Vec<String>>);

impl Annotations {
    /// Adds `msg` unless it is there already.
    pub fn add(&self, msg: impl Into<String>) {
        let msg = msg.into();
        let mut all = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !all.contains(&msg) {
            all.push(msg);
        }
    }

    /// The messages.
    pub fn to_vec(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// A window of a range function (`rate`, `sum_over_time`, …) held floats and histograms.
pub fn mixed_floats_histograms(metric: &str) -> String {
    format!("PromQL warning: encountered a mix of histograms and floats for metric name {metric:?}")
}

/// A group of `sum` or `avg` held floats and histograms.
pub const MIXED_FLOATS_HISTOGRAMS_AGG: &str =
    "PromQL warning: encountered a mix of histograms and floats for aggregation";

/// `rate` or `increase` of histograms marked as gauges.
pub fn not_counter(metric: &str) -> String {
    format!("PromQL warning: this native histogram metric is not a counter: {metric:?}")
}

/// `delta` of histograms not marked as gauges.
pub fn not_gauge(metric: &str) -> String {
    format!("PromQL warning: this native histogram metric is not a gauge: {metric:?}")
}

/// Histograms whose custom buckets differ could not be combined.
pub fn incompatible_custom_buckets(metric: &str) -> String {
    format!("PromQL warning: vector contains histograms with incompatible custom buckets for metric name {metric:?}")
}

/// Histograms of an aggregation group whose custom buckets differ could not be added.
pub const INCOMPATIBLE_CUSTOM_BUCKETS_AGG: &str =
    "PromQL warning: vector contains histograms with incompatible custom buckets";

/// An aggregation of floats skipped histogram samples.
pub fn histogram_ignored_in_aggregation(op: &str) -> String {
    format!("PromQL info: ignored histogram in {op} aggregation")
}

/// A function of floats skipped the histograms of a range that held both.
pub fn histograms_ignored_in_mixed_range(metric: &str) -> String {
    format!(
        "PromQL info: ignored histograms in a range containing both floats and histograms for metric name {metric:?}"
    )
}

/// A binary operator met a float and a histogram (or two histograms) it cannot combine.
pub fn incompatible_types_in_binop(op: &str, lhs: &str, rhs: &str) -> String {
    format!("PromQL info: incompatible sample types encountered for binary operator {op:?}: {lhs} {op} {rhs}")
}
