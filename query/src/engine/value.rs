//! Value types of the evaluator: label sets, samples, per-step vectors and matrices.
//!
//! The engine's label sets share the storage's packed representation: a selector's series keep
//! the head's allocation, and engine-made label sets (without `__name__`, grouping results) are
//! packed without validation.

use std::fmt;
use std::sync::Arc;

pub use tsdb::histogram::FloatHistogram;

/// Name of the metric-name label.
pub const METRIC_NAME: &str = "__name__";

/// A label set sorted by name; names are unique and values non-empty.
///
/// Wraps the storage's packed form (one shared allocation), so a selector hands the head's label
/// set to the evaluator without copying it and cloning is a reference-count increment. Ordering is
/// Prometheus's `labels.Compare` (pairwise by name, then value), equality and hashing are on the
/// packed bytes (the encoding is unique per label set).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(tsdb::Labels);

impl Default for Labels {
    fn default() -> Self {
        Labels::empty()
    }
}

impl Labels {
    /// The empty label set.
    pub fn empty() -> Labels {
        Labels(tsdb::Labels::empty())
    }

    /// Builds a label set from pairs in any order; empty values are dropped; later duplicates win.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Labels {
        let mut b = LabelsBuilder::new(Labels::empty());
        for (n, v) in pairs {
            b.set(n.as_ref(), v.as_ref());
        }
        b.build()
    }

    /// Pairs are already sorted by name and unique.
    pub fn from_sorted(pairs: Vec<(String, String)>) -> Labels {
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        Labels(tsdb::Labels::from_sorted_unchecked(&refs))
    }

    /// Shares a storage label set (no copy).
    pub fn from_tsdb(l: &tsdb::Labels) -> Labels {
        Labels(l.clone())
    }

    fn from_sorted_refs(pairs: &[(&str, &str)]) -> Labels {
        Labels(tsdb::Labels::from_sorted_unchecked(pairs))
    }

    /// Iterates `(name, value)` in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter()
    }

    /// Value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        for (n, v) in self.0.iter() {
            match n.cmp(name) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Some(v),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A copy without `__name__`.
    pub fn without_name(&self) -> Labels {
        if !self.has_name() {
            return self.clone();
        }
        let keep: Vec<(&str, &str)> = self.iter().filter(|(n, _)| *n != METRIC_NAME).collect();
        Labels::from_sorted_refs(&keep)
    }

    /// A copy keeping only the given names.
    pub fn only(&self, names: &[String]) -> Labels {
        let keep: Vec<(&str, &str)> = self.iter().filter(|(n, _)| names.iter().any(|x| x == n)).collect();
        Labels::from_sorted_refs(&keep)
    }

    /// A copy without the given names.
    pub fn without(&self, names: &[String]) -> Labels {
        let keep: Vec<(&str, &str)> = self.iter().filter(|(n, _)| !names.iter().any(|x| x == n)).collect();
        Labels::from_sorted_refs(&keep)
    }

    /// Whether `__name__` is present.
    pub fn has_name(&self) -> bool {
        self.get(METRIC_NAME).is_some()
    }

    /// Key of the values of the given names (or of all names except the given ones when
    /// `include` is false), used for vector matching and grouping.
    pub fn signature(&self, names: &[String], include: bool) -> String {
        let mut s = String::new();
        self.signature_into(names, include, &mut s);
        s
    }

    /// [`Labels::signature`] appended to `s` (for reusing a buffer).
    pub fn signature_into(&self, names: &[String], include: bool, s: &mut String) {
        if include && names.is_empty() {
            return;
        }
        for (n, v) in self.iter() {
            let listed = names.iter().any(|x| x == n);
            if listed == include && (include || n != METRIC_NAME) {
                s.push_str(n);
                s.push('\u{ff}');
                s.push_str(v);
                s.push('\u{fe}');
            }
        }
    }

    /// The pairs as owned strings.
    pub fn pairs(&self) -> Vec<(String, String)> {
        self.0.to_pairs()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Edits a label set.
pub struct LabelsBuilder {
    pairs: Vec<(String, String)>,
}

impl LabelsBuilder {
    /// Starts from `base`.
    pub fn new(base: Labels) -> LabelsBuilder {
        LabelsBuilder { pairs: base.pairs() }
    }

    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        match self.pairs.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => {
                if value.is_empty() {
                    self.pairs.remove(i);
                } else if let Some(p) = self.pairs.get_mut(i) {
                    p.1 = value.to_string();
                }
            }
            Err(i) => {
                if !value.is_empty() {
                    self.pairs.insert(i, (name.to_string(), value.to_string()));
                }
            }
        }
        self
    }

    /// Deletes `name`.
    pub fn del(&mut self, name: &str) -> &mut Self {
        self.pairs.retain(|(n, _)| n != name);
        self
    }

    /// The result.
    pub fn build(self) -> Labels {
        Labels::from_sorted(self.pairs)
    }
}

/// One element of an instant vector: a float, or a native histogram (then `v` is unused).
#[derive(Debug, Clone)]
pub struct Sample {
    /// Labels (shared between steps).
    pub labels: Arc<Labels>,
    /// Value of a float sample.
    pub v: f64,
    /// The value of a histogram sample (boxed: float samples pay one pointer for it).
    pub h: Option<Box<FloatHistogram>>,
}

impl Sample {
    /// A float sample.
    pub fn float(labels: Arc<Labels>, v: f64) -> Sample {
        Sample { labels, v, h: None }
    }

    /// A histogram sample.
    pub fn histogram(labels: Arc<Labels>, h: FloatHistogram) -> Sample {
        Sample { labels, v: 0.0, h: Some(Box::new(h)) }
    }
}

/// A series of points, e.g. one element of a matrix result: float points and histogram points,
/// each sorted by time (a series has at most one of them at a time).
#[derive(Debug, Clone)]
pub struct Series {
    /// Labels.
    pub labels: Arc<Labels>,
    /// Float points sorted by time (ms).
    pub points: Vec<(i64, f64)>,
    /// Histogram points sorted by time (ms).
    pub histograms: Vec<(i64, FloatHistogram)>,
}

impl Series {
    /// A series of float points.
    pub fn floats(labels: Arc<Labels>, points: Vec<(i64, f64)>) -> Series {
        Series { labels, points, histograms: Vec::new() }
    }

    /// Whether the series has no points.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty() && self.histograms.is_empty()
    }

    /// Number of points of both kinds.
    pub fn len(&self) -> usize {
        self.points.len() + self.histograms.len()
    }
}

/// The result of a query.
#[derive(Debug, Clone)]
pub enum QueryValue {
    /// A scalar at time `t` (ms).
    Scalar { t: i64, v: f64 },
    /// A string at time `t` (ms).
    String { t: i64, s: String },
    /// An instant vector at time `t` (ms).
    Vector { t: i64, samples: Vec<Sample> },
    /// A matrix, series sorted by labels.
    Matrix(Vec<Series>),
}

/// Bits of Prometheus's stale marker (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is a stale marker (bit equality, not `is_nan`).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Formats a float like Go's `strconv.FormatFloat(v, 'f', -1, 64)` as Prometheus's JSON does:
/// exponent form for |v| < 1e-6 or |v| >= 1e21, `NaN`, `+Inf`, `-Inf`.
pub fn format_float(v: f64) -> String {
    let mut out = String::new();
    write_float(&mut out, v);
    out
}

/// Appends [`format_float`] of `v` to `out` (no allocation of its own outside exponent notation).
pub fn write_float(out: &mut String, v: f64) {
    let a = v.abs();
    if a.is_finite() && a != 0.0 && !(1e-6..1e21).contains(&a) {
        out.push_str(&format_float_exp(v));
        return;
    }
    write_float_plain(out, v);
}

/// Go's `'e'` shortest format: `1e-07`, `1.5e+21`.
fn format_float_exp(v: f64) -> String {
    let s = format!("{v:e}");
    match s.split_once('e') {
        Some((mant, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            if digits.len() < 2 {
                format!("{mant}e{sign}0{digits}")
            } else {
                format!("{mant}e{sign}{digits}")
            }
        }
        None => s,
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)` (used by `count_values` and `le` matching):
/// never an exponent.
pub fn format_float_plain(v: f64) -> String {
    let mut out = String::new();
    write_float_plain(&mut out, v);
    out
}

/// Appends [`format_float_plain`] of `v` to `out`.
pub fn write_float_plain(out: &mut String, v: f64) {
    use std::fmt::Write;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{v}");
    }
}

/// Formats a ms timestamp as Prometheus JSON does: seconds, then `.mmm` when ms != 0.
pub fn format_time(t: i64) -> String {
    let mut out = String::new();
    write_time(&mut out, t);
    out
}

/// Appends [`format_time`] of `t` to `out`.
pub fn write_time(out: &mut String, t: i64) {
    use std::fmt::Write;
    let a = t.unsigned_abs();
    let (s, ms) = (a / 1000, a % 1000);
    if t < 0 {
        out.push('-');
    }
    // Writing to a String cannot fail.
    let _ = if ms == 0 { write!(out, "{s}") } else { write!(out, "{s}.{ms:03}") };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_format_like_go() {
        for (v, s) in [
            (1.0, "1"),
            (0.5, "0.5"),
            (1e-7, "1e-07"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (123456789.0, "123456789"),
            (1e20, "100000000000000000000"),
            (0.000001, "0.000001"),
            (-2.5e-10, "-2.5e-10"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.0, "0"),
            (-0.0, "-0"),
        ] {
            assert_eq!(format_float(v), s, "{v}");
        }
    }

    #[test]
    fn times_format_like_prometheus() {
        assert_eq!(format_time(1_435_781_451_781), "1435781451.781");
        assert_eq!(format_time(1500), "1.500");
        assert_eq!(format_time(1050), "1.050");
        assert_eq!(format_time(-1500), "-1.500");
        assert_eq!(format_time(0), "0");
    }

    #[test]
    fn labels_order_and_edit() {
        let a = Labels::from_pairs(&[("b", "1"), ("a", "2"), ("c", "")]);
        assert_eq!(a.to_string(), "{a=\"2\", b=\"1\"}");
        let mut b = LabelsBuilder::new(a.clone());
        b.set("a", "").set("z", "9");
        assert_eq!(b.build().to_string(), "{b=\"1\", z=\"9\"}");
    }
}
