//! Label sets and label matchers.
//!
//! A [`Labels`] is validated once, at the edge (remote-write), and is immutable afterwards: names are
//! non-empty and valid under the [`NameValidation`] scheme in force (by default any UTF-8, as in
//! Prometheus 3), values are UTF-8 (guaranteed by `&str`), names are unique, pairs are sorted by name, and
//! pairs with an empty value are dropped (Prometheus treats an empty value as "label absent").
//! The pairs are packed into one allocation: `[uvarint name_len][name][uvarint value_len][value]…`, so a
//! series costs one heap block for its labels, and lookups can hash and compare borrowed pairs against the
//! packed form without allocating.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

use crate::varint::put_uvarint;

/// The label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Why a label set was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// A label name is empty, or (under [`NameValidation::Legacy`]) does not match `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error("invalid label name {name:?}")]
    InvalidName {
        /// The offending name (clipped, see [`clip`]).
        name: String,
    },
    /// The same name appears twice.
    #[error("duplicate label name {name:?}")]
    DuplicateName {
        /// The repeated name (clipped, see [`clip`]).
        name: String,
    },
    /// No label with a non-empty value is left.
    #[error("empty label set")]
    Empty,
    /// The series has no `__name__` label.
    #[error("missing metric name (__name__ label)")]
    MissingMetricName,
    /// `__name__` is not a valid metric name under [`NameValidation::Legacy`] (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
    #[error("invalid metric name {name:?}")]
    InvalidMetricName {
        /// The offending metric name (clipped, see [`clip`]).
        name: String,
    },
    /// A label name or value is not valid UTF-8.
    #[error("label name or value is not valid UTF-8")]
    InvalidUtf8,
    /// The head has handed out every 32-bit series reference (a new series cannot be created).
    #[error("series reference space exhausted: no new series can be created")]
    SeriesRefsExhausted,
    /// A name or value is longer than the packed encoding allows.
    #[error("label {name:?} is too long ({len} bytes)")]
    TooLong {
        /// The name of the label (clipped, see [`clip`]).
        name: String,
        /// Its length in bytes.
        len: usize,
    },
}

/// Longest label name or value accepted, in bytes.
pub const MAX_LABEL_BYTES: usize = 1 << 20;

/// Longest prefix of a client-supplied name or value that error messages and logs repeat.
pub const ECHO_MAX_BYTES: usize = 128;

/// `s` as error messages and logs show it: whole if at most [`ECHO_MAX_BYTES`] long, else its first
/// [`ECHO_MAX_BYTES`] (cut at a character boundary) and `… (N bytes)` with the full length, so that a
/// huge label value sent by a client is not copied whole into answers and log lines.
pub fn clip(s: &str) -> std::borrow::Cow<'_, str> {
    clip_to(s, ECHO_MAX_BYTES)
}

/// [`clip`] at `max_bytes`, for whole messages that may quote client input in ways their producer
/// does not bound (a parser's error quoting a regular expression).
pub fn clip_to(s: &str, max_bytes: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max_bytes {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}… ({} bytes)", s.get(..end).unwrap_or_default(), s.len()))
}

/// Which metric and label names are accepted: Prometheus's name validation scheme
/// (`global.metric_name_validation_scheme`). Values are any UTF-8 under both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NameValidation {
    /// Any non-empty UTF-8 name (Prometheus 3's default).
    #[default]
    Utf8,
    /// Prometheus 2's rules: metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`.
    Legacy,
}

impl NameValidation {
    /// The scheme named as in Prometheus's configuration (`utf8` or `legacy`).
    pub fn from_name(name: &str) -> Option<NameValidation> {
        match name {
            "utf8" => Some(NameValidation::Utf8),
            "legacy" => Some(NameValidation::Legacy),
            _ => None,
        }
    }

    /// The scheme's name in Prometheus's configuration.
    pub fn name(self) -> &'static str {
        match self {
            NameValidation::Utf8 => "utf8",
            NameValidation::Legacy => "legacy",
        }
    }

    /// Whether `name` is a valid label name under this scheme.
    pub fn is_valid_label_name(self, name: &str) -> bool {
        match self {
            NameValidation::Utf8 => is_valid_label_name(name),
            NameValidation::Legacy => is_legacy_label_name(name),
        }
    }

    /// Whether `name` is a valid metric name (the value of `__name__`) under this scheme.
    pub fn is_valid_metric_name(self, name: &str) -> bool {
        match self {
            NameValidation::Utf8 => is_valid_metric_name(name),
            NameValidation::Legacy => is_legacy_metric_name(name),
        }
    }
}

/// Checks a label name as Prometheus 3 does by default (and always does in queries): non-empty; `&str`
/// guarantees UTF-8.
pub fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

/// Checks a metric name as Prometheus 3 does by default: non-empty UTF-8.
pub fn is_valid_metric_name(name: &str) -> bool {
    !name.is_empty()
}

/// Checks a label name against the legacy rule `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_legacy_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Checks a metric name against the legacy rule `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_legacy_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// An immutable, validated, sorted label set packed into one allocation. Cloning is cheap (an `Arc`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Labels {
    packed: Arc<[u8]>,
}

impl Labels {
    /// Hints the CPU to fetch the first lines of the packed labels (see [`crate::prefetch`]).
    pub(crate) fn prefetch(&self) {
        let start = self.packed.as_ptr() as usize;
        crate::prefetch::read_range(start, start + self.packed.len().min(128));
    }

    /// Validates and sorts `pairs` (any order) into a label set; empty values are dropped.
    /// Requires a valid `__name__`.
    pub fn from_pairs<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Result<Labels, LabelError> {
        let mut sorted: Vec<(&str, &str)> = Vec::with_capacity(pairs.len());
        for (n, v) in pairs {
            sorted.push((n.as_ref(), v.as_ref()));
        }
        let sorted = validate(&mut sorted, true, NameValidation::Utf8)?;
        Ok(Labels::from_sorted_unchecked(sorted))
    }

    /// Like [`Labels::from_pairs`] but does not require a metric name (used by queries and tests).
    pub fn from_pairs_unnamed<N: AsRef<str>, V: AsRef<str>>(pairs: &[(N, V)]) -> Result<Labels, LabelError> {
        let mut sorted: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_ref(), v.as_ref())).collect();
        let sorted = validate(&mut sorted, false, NameValidation::Utf8)?;
        Ok(Labels::from_sorted_unchecked(sorted))
    }

    /// Builds a label set from pairs already sorted by name, unique, with non-empty values.
    /// The caller vouches for validity (used after [`validate`] and when decoding our own WAL).
    pub fn from_sorted_unchecked(pairs: &[(&str, &str)]) -> Labels {
        let mut packed = Vec::new();
        pack_sorted(&mut packed, pairs);
        Labels { packed: packed.into() }
    }

    /// Builds a label set from bytes produced by [`pack_sorted`] of valid pairs.
    pub fn from_packed_unchecked(packed: &[u8]) -> Labels {
        Labels { packed: packed.into() }
    }

    /// The packed encoding (see [`pack_sorted`]).
    pub fn packed(&self) -> &[u8] {
        &self.packed
    }

    /// The empty label set.
    pub fn empty() -> Labels {
        Labels { packed: Arc::from(&[][..]) }
    }

    /// Iterates `(name, value)` pairs in name order.
    pub fn iter(&self) -> LabelsIter<'_> {
        LabelsIter { rest: &self.packed }
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True if there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.packed.is_empty()
    }

    /// Bytes used by the packed form (for memory accounting).
    pub fn packed_len(&self) -> usize {
        self.packed.len()
    }

    /// Hash of the label set: xxh3 of the packed encoding (what [`hash_packed`] computes).
    pub fn stable_hash(&self) -> u64 {
        hash_packed(&self.packed)
    }

    /// Collects the pairs into owned strings.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect()
    }

    /// A copy with the given names removed.
    pub fn without(&self, names: &[&str]) -> Labels {
        let keep: Vec<(&str, &str)> = self.iter().filter(|(n, _)| !names.contains(n)).collect();
        Labels::from_sorted_unchecked(&keep)
    }

    /// A copy keeping only the given names.
    pub fn only(&self, names: &[&str]) -> Labels {
        let keep: Vec<(&str, &str)> = self.iter().filter(|(n, _)| names.contains(n)).collect();
        Labels::from_sorted_unchecked(&keep)
    }
}

impl Ord for Labels {
    /// Prometheus's `labels.Compare`: pairwise by name, then value; a prefix sorts first. Names and
    /// values compare bytewise like `str`s, so the packed bytes are compared without UTF-8 decoding.
    ///
    /// Two encodings agree up to their first differing byte, and so do their length prefixes: the
    /// prefixes are walked (without comparing the bytes between them) to the name or value holding
    /// that byte, which alone decides.
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (&self.packed[..], &other.packed[..]);
        let Some(diff) = first_difference(a, b) else {
            // One is a prefix of the other, i.e. has a prefix of its pairs.
            return a.len().cmp(&b.len());
        };
        let mut at = 0;
        loop {
            let (Some((len_a, n_a)), Some((len_b, n_b))) =
                (a.get(at..).and_then(get_uvarint), b.get(at..).and_then(get_uvarint))
            else {
                return a.cmp(b); // Not a packed label set; cannot happen.
            };
            if len_a != len_b {
                // The difference is in the length prefix: compare the two strings.
                return a
                    .get(at + n_a..)
                    .and_then(|r| r.get(..len_a))
                    .cmp(&b.get(at + n_b..).and_then(|r| r.get(..len_b)));
            }
            at += n_a + len_a;
            if diff < at {
                return a.get(diff).cmp(&b.get(diff));
            }
        }
    }
}

/// Index of the first byte at which `a` and `b` differ, `None` if one is a prefix of the other.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    const WORD: usize = 8;
    let mut at = 0;
    for (x, y) in a.chunks_exact(WORD).zip(b.chunks_exact(WORD)) {
        let (Ok(x), Ok(y)) = (<[u8; WORD]>::try_from(x), <[u8; WORD]>::try_from(y)) else { break };
        let d = u64::from_le_bytes(x) ^ u64::from_le_bytes(y);
        if d != 0 {
            return Some(at + (d.trailing_zeros() / 8) as usize);
        }
        at += WORD;
    }
    let (ra, rb) = (a.get(at..)?, b.get(at..)?);
    ra.iter().zip(rb).position(|(x, y)| x != y).map(|i| at + i)
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Labels {
    /// Prometheus's text form: `{a="1", b="2"}`, with a name that is not a legacy label name quoted
    /// (`{"a.b"="1"}`), as Prometheus 3 writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if is_legacy_label_name(n) {
                write!(f, "{n}={v:?}")?;
            } else {
                write!(f, "{n:?}={v:?}")?;
            }
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Iterator over the pairs of a [`Labels`].
pub struct LabelsIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for LabelsIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let name = take_str(&mut self.rest)?;
        let value = take_str(&mut self.rest)?;
        Some((name, value))
    }
}

/// The next length-prefixed string of a packed label set, as bytes.
fn take_bytes<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, n) = get_uvarint(rest)?;
    let bytes = rest.get(n..n.checked_add(len)?)?;
    *rest = rest.get(n + len..)?;
    Some(bytes)
}

fn take_str<'a>(rest: &mut &'a [u8]) -> Option<&'a str> {
    // Packed bytes are only ever built from `&str`, so this cannot fail; stay panic-free regardless.
    std::str::from_utf8(take_bytes(rest)?).ok()
}

fn get_uvarint(b: &[u8]) -> Option<(usize, usize)> {
    let (v, n) = crate::varint::uvarint(b)?;
    Some((usize::try_from(v).ok()?, n))
}

/// Writes the packed encoding of sorted, validated pairs into `out` (cleared first):
/// `[uvarint name_len][name][uvarint value_len][value]…`. Reusing `out` allocates nothing.
pub fn pack_sorted<N: AsRef<[u8]>, V: AsRef<[u8]>>(out: &mut Vec<u8>, pairs: &[(N, V)]) {
    out.clear();
    for (n, v) in pairs {
        let (n, v) = (n.as_ref(), v.as_ref());
        put_uvarint(out, n.len() as u64);
        out.extend_from_slice(n);
        put_uvarint(out, v.len() as u64);
        out.extend_from_slice(v);
    }
}

/// Hash of a packed label set (one-shot xxh3).
pub fn hash_packed(packed: &[u8]) -> u64 {
    xxh3_64(packed)
}

/// Validates label pairs in place: drops empty values, sorts by name if needed, rejects names invalid
/// under `scheme` and duplicate names. Returns the validated slice (a prefix of `pairs`). Allocates
/// nothing. An empty `__name__` value counts as absent, so it fails as a missing metric name.
pub fn validate<'p, 'a>(
    pairs: &'p mut [(&'a str, &'a str)],
    require_name: bool,
    scheme: NameValidation,
) -> Result<&'p [(&'a str, &'a str)], LabelError> {
    // Move non-empty values to the front.
    let mut len = 0;
    for i in 0..pairs.len() {
        if !pairs[i].1.is_empty() {
            pairs.swap(len, i);
            len += 1;
        }
    }
    let pairs = &mut pairs[..len];
    if pairs.is_empty() {
        return Err(if require_name { LabelError::MissingMetricName } else { LabelError::Empty });
    }
    if !pairs.windows(2).all(|w| w[0].0 < w[1].0) {
        pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    let mut has_name = false;
    for (i, (n, v)) in pairs.iter().enumerate() {
        if n.len() > MAX_LABEL_BYTES || v.len() > MAX_LABEL_BYTES {
            return Err(LabelError::TooLong { name: clip(n).into_owned(), len: n.len().max(v.len()) });
        }
        if !scheme.is_valid_label_name(n) {
            return Err(LabelError::InvalidName { name: clip(n).into_owned() });
        }
        if i > 0 && pairs[i - 1].0 == *n {
            return Err(LabelError::DuplicateName { name: clip(n).into_owned() });
        }
        if *n == METRIC_NAME {
            if !scheme.is_valid_metric_name(v) {
                return Err(LabelError::InvalidMetricName { name: clip(v).into_owned() });
            }
            has_name = true;
        }
    }
    if require_name && !has_name {
        return Err(LabelError::MissingMetricName);
    }
    Ok(pairs)
}

/// How a [`Matcher`] compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchType {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored, like Prometheus)
    Regex,
    /// `!~` (fully anchored)
    NotRegex,
}

/// A label matcher such as `job=~"api|web"`. A missing label matches as the empty string, as in Prometheus.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// The value or pattern as written.
    pub value: String,
    /// The comparison.
    pub kind: MatchType,
    regex: Option<regex::Regex>,
}

/// A matcher's regular expression did not compile.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid regular expression {pattern:?}: {reason}")]
pub struct MatcherError {
    /// The pattern as written.
    pub pattern: String,
    /// Why it was rejected.
    pub reason: String,
}

impl Matcher {
    /// Builds a matcher; regexes are anchored at both ends as Prometheus 2.x does (`^(?:re)$`, so `.`
    /// does not match a newline).
    pub fn new(kind: MatchType, name: impl Into<String>, value: impl Into<String>) -> Result<Matcher, MatcherError> {
        let name = name.into();
        let value = value.into();
        let regex = match kind {
            MatchType::Regex | MatchType::NotRegex => Some(
                regex::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| MatcherError { pattern: value.clone(), reason: e.to_string() })?,
            ),
            _ => None,
        };
        Ok(Matcher { name, value, kind, regex })
    }

    /// Shorthand for an `=` matcher.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher { name: name.into(), value: value.into(), kind: MatchType::Equal, regex: None }
    }

    /// Does `value` (empty string for an absent label) match?
    pub fn matches(&self, value: &str) -> bool {
        match self.kind {
            MatchType::Equal => value == self.value,
            MatchType::NotEqual => value != self.value,
            MatchType::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchType::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    /// True if the matcher matches the empty string, i.e. also series without the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// Does the label set match?
    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.kind {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regex => "=~",
            MatchType::NotRegex => "!~",
        };
        write!(f, "{}{}{:?}", self.name, op, self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_text_and_marks_long_text() {
        assert_eq!(clip("up"), "up");
        let exact = "a".repeat(ECHO_MAX_BYTES);
        assert_eq!(clip(&exact), exact.as_str());
        let long = "a".repeat(ECHO_MAX_BYTES + 1);
        assert_eq!(clip(&long), format!("{}… ({} bytes)", "a".repeat(ECHO_MAX_BYTES), ECHO_MAX_BYTES + 1));
        // A multi-byte character across the cut is left out whole.
        let wide = format!("{}é", "a".repeat(ECHO_MAX_BYTES - 1));
        assert_eq!(clip(&wide), format!("{}… ({} bytes)", "a".repeat(ECHO_MAX_BYTES - 1), ECHO_MAX_BYTES + 1));
    }

    #[test]
    fn from_pairs_sorts_and_drops_empty() {
        let l = Labels::from_pairs(&[("job", "a"), ("__name__", "up"), ("empty", "")]).unwrap();
        assert_eq!(l.to_string(), r#"{__name__="up", job="a"}"#);
        assert_eq!(l.len(), 2);
        assert_eq!(l.get("job"), Some("a"));
        assert_eq!(l.get("empty"), None);
    }

    #[test]
    fn utf8_scheme_accepts_any_nonempty_name() {
        let l = Labels::from_pairs(&[("__name__", "resource.cpu.usage"), ("job.name", "x"), ("1x", "a"), ("ä-b", "c")])
            .unwrap();
        assert_eq!(l.get("job.name"), Some("x"));
        assert_eq!(l.to_string(), r#"{"1x"="a", __name__="resource.cpu.usage", "job.name"="x", "ä-b"="c"}"#);
        assert!(Labels::from_pairs(&[("__name__", "1up")]).is_ok());
        // What Prometheus 3 still refuses: empty names, duplicates, no metric name (an empty value is none).
        assert!(matches!(Labels::from_pairs(&[("__name__", "up"), ("", "a")]), Err(LabelError::InvalidName { .. })));
        assert!(matches!(
            Labels::from_pairs(&[("__name__", "up"), ("a.b", "1"), ("a.b", "2")]),
            Err(LabelError::DuplicateName { .. })
        ));
        assert!(matches!(Labels::from_pairs(&[("job.name", "x")]), Err(LabelError::MissingMetricName)));
        assert!(matches!(Labels::from_pairs(&[("__name__", ""), ("job", "x")]), Err(LabelError::MissingMetricName)));
    }

    #[test]
    fn legacy_scheme_keeps_prometheus_2_rules() {
        let check = |pairs: &[(&str, &str)]| {
            let mut pairs = pairs.to_vec();
            validate(&mut pairs, true, NameValidation::Legacy).map(|s| s.len())
        };
        assert!(matches!(check(&[("__name__", "up"), ("1x", "a")]), Err(LabelError::InvalidName { .. })));
        assert!(matches!(check(&[("__name__", "up"), ("a-b", "a")]), Err(LabelError::InvalidName { .. })));
        assert!(matches!(check(&[("__name__", "up"), ("job.name", "a")]), Err(LabelError::InvalidName { .. })));
        assert!(matches!(check(&[("__name__", "up"), ("", "a")]), Err(LabelError::InvalidName { .. })));
        assert!(matches!(check(&[("__name__", "up"), ("a", "1"), ("a", "2")]), Err(LabelError::DuplicateName { .. })));
        assert!(matches!(check(&[("job", "x")]), Err(LabelError::MissingMetricName)));
        assert!(matches!(check(&[("__name__", "1up")]), Err(LabelError::InvalidMetricName { .. })));
        assert!(matches!(check(&[("__name__", "a.b")]), Err(LabelError::InvalidMetricName { .. })));
        assert_eq!(check(&[("__name__", "a:b_c"), ("_x9", "v")]), Ok(2));
        assert!(matches!(check(&[("a:b", "v"), ("__name__", "m")]), Err(LabelError::InvalidName { .. })));
    }

    #[test]
    fn scheme_names_match_prometheus_config() {
        for scheme in [NameValidation::Utf8, NameValidation::Legacy] {
            assert_eq!(NameValidation::from_name(scheme.name()), Some(scheme));
        }
        assert_eq!(NameValidation::from_name("UTF8"), None);
        assert_eq!(NameValidation::default(), NameValidation::Utf8);
    }

    #[test]
    fn hash_and_eq_agree_with_pairs() {
        let l = Labels::from_pairs(&[("b", "2"), ("__name__", "m"), ("a", "1")]).unwrap();
        let pairs = [("__name__", "m"), ("a", "1"), ("b", "2")];
        let mut buf = Vec::new();
        pack_sorted(&mut buf, &pairs);
        assert_eq!(l.packed(), &buf[..]);
        assert_eq!(l.stable_hash(), hash_packed(&buf));
        assert_eq!(Labels::from_packed_unchecked(&buf), l);
        // Lengths are encoded: ("ab","c") differs from ("a","bc").
        let mut other = Vec::new();
        pack_sorted(&mut other, &[("a", "bc")]);
        pack_sorted(&mut buf, &[("ab", "c")]);
        assert_ne!(buf, other);
    }

    #[test]
    fn ordering_matches_prometheus() {
        let a = Labels::from_pairs_unnamed(&[("a", "1")]).unwrap();
        let b = Labels::from_pairs_unnamed(&[("a", "1"), ("b", "1")]).unwrap();
        let c = Labels::from_pairs_unnamed(&[("a", "2")]).unwrap();
        assert!(a < b && b < c);
    }

    #[test]
    fn packed_order_matches_labels_order() {
        let sets: Vec<Labels> = [
            vec![],
            vec![("a", "1")],
            vec![("a", "1"), ("b", "2")],
            vec![("a", "10")],
            vec![("a", "2")],
            vec![("ab", "1")],
            vec![("a", "1"), ("c", "")],
            vec![("b", "1")],
            vec![("a", "1"), ("b", "10")],
            vec![("__name__", "x"), ("a", "1")],
        ]
        .iter()
        .map(|p| Labels::from_sorted_unchecked(p))
        .collect();
        for x in &sets {
            for y in &sets {
                assert_eq!(x.cmp(y), x.to_pairs().cmp(&y.to_pairs()), "{x} vs {y}");
            }
        }
    }

    proptest::proptest! {
        /// Names and values from a small alphabet (so that prefixes and equal words are common),
        /// some longer than 127 bytes (two-byte length prefixes) or than a word.
        #[test]
        fn order_matches_pairwise_order(
            x in proptest::collection::btree_map("[ab_]{1,3}", "[ab]{0,12}|a{120,140}", 0..5),
            y in proptest::collection::btree_map("[ab_]{1,3}", "[ab]{0,12}|a{120,140}", 0..5),
        ) {
            let pairs = |m: &std::collections::BTreeMap<String, String>| -> Vec<(String, String)> {
                m.iter().filter(|(_, v)| !v.is_empty()).map(|(n, v)| (n.clone(), v.clone())).collect()
            };
            let packed = |p: &[(String, String)]| {
                let refs: Vec<(&str, &str)> = p.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                Labels::from_sorted_unchecked(&refs)
            };
            let (px, py) = (pairs(&x), pairs(&y));
            let (lx, ly) = (packed(&px), packed(&py));
            proptest::prop_assert_eq!(lx.cmp(&ly), px.cmp(&py));
            proptest::prop_assert_eq!(lx.cmp(&lx), std::cmp::Ordering::Equal);
        }
    }

    #[test]
    fn matchers() {
        let m = Matcher::new(MatchType::Regex, "job", "a|b").unwrap();
        assert!(m.matches("a") && !m.matches("ab") && !m.matches(""));
        let m = Matcher::new(MatchType::NotRegex, "job", "a.*").unwrap();
        assert!(!m.matches("abc") && m.matches("b") && m.matches_empty());
        let m = Matcher::new(MatchType::Regex, "x", "a.b").unwrap();
        assert!(m.matches("a-b") && !m.matches("a\nb"));
        assert!(Matcher::new(MatchType::Regex, "x", "(").is_err());
    }
}
