//! Rejected samples of one request: counts by reason plus the first few described in full.
//!
//! Building a description allocates, so only the first [`MAX_REPORTED`] rejections get one; the rest
//! are only counted. The [`Report`]'s `Display` is the plain-text body of the 400 answer.

use std::fmt::{self, Write as _};

/// Rejections described line by line in a 400 body; the rest are summarized as "and N more".
pub const MAX_REPORTED: usize = 10;

/// Why samples were rejected (the request's own fault; never retried).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Older than the head accepts (out-of-order window 0).
    OutOfBounds,
    /// Older than the series' newest sample (out-of-order window 0).
    OutOfOrder,
    /// Older than the out-of-order window allows.
    TooOld,
    /// A different value is already stored at the timestamp.
    Duplicate,
    /// Newer than the wall clock plus the creation grace period.
    TooFarInFuture,
    /// The series' label set is invalid; all its samples are rejected.
    InvalidLabels,
    /// A native histogram that fails validation (counts, spans, schema).
    InvalidHistogram,
    /// A remote-write 2.0 series with a symbol reference out of range or an odd number of label
    /// references; all its samples are rejected.
    InvalidReference,
}

impl Reason {
    /// Number of reasons.
    pub const COUNT: usize = 8;
    /// All reasons, in index order.
    pub const ALL: [Reason; Reason::COUNT] = [
        Reason::OutOfBounds,
        Reason::OutOfOrder,
        Reason::TooOld,
        Reason::Duplicate,
        Reason::TooFarInFuture,
        Reason::InvalidLabels,
        Reason::InvalidHistogram,
        Reason::InvalidReference,
    ];

    /// Dense index, for counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Short snake_case name (metric label values).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::OutOfBounds => "out_of_bounds",
            Reason::OutOfOrder => "out_of_order",
            Reason::TooOld => "too_old",
            Reason::Duplicate => "duplicate",
            Reason::TooFarInFuture => "too_far_in_future",
            Reason::InvalidLabels => "invalid_labels",
            Reason::InvalidHistogram => "invalid_histogram",
            Reason::InvalidReference => "invalid_reference",
        }
    }
}

/// Rejections of one request.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    received: u64,
    counts: [u64; Reason::COUNT],
    lines: Vec<String>,
    /// Rejection events (a sample, or a whole series) that got no line.
    omitted: u64,
}

impl Report {
    /// An empty report for a request carrying `received` samples (floats and histograms).
    pub fn new(received: u64) -> Report {
        Report { received, ..Report::default() }
    }

    /// Sets the number of samples received (known once the whole request is walked).
    pub fn set_received(&mut self, received: u64) {
        self.received = received;
    }

    /// Records `n` samples rejected for `reason`; `describe` writes one line about them and is only
    /// called for the first [`MAX_REPORTED`] events.
    pub fn reject(&mut self, reason: Reason, n: u64, describe: impl FnOnce(&mut String)) {
        if let Some(c) = self.counts.get_mut(reason.index()) {
            *c += n;
        }
        if self.lines.len() < MAX_REPORTED {
            let mut line = String::new();
            describe(&mut line);
            self.lines.push(line);
        } else {
            self.omitted += 1;
        }
    }

    /// Samples rejected in total.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Samples rejected for `reason`.
    pub fn count(&self, reason: Reason) -> u64 {
        self.counts.get(reason.index()).copied().unwrap_or(0)
    }

    /// Samples received (floats and histograms).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// True if nothing was rejected.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// The described rejections.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

/// Writes `{a="1", b="2"}` for label pairs (Prometheus's text form, a name other than a legacy label
/// name quoted: `{"a.b"="1"}`), each name and value clipped to [`tsdb::labels::ECHO_MAX_BYTES`]
/// ([`tsdb::labels::clip`]).
pub fn write_labels<N: AsRef<str>, V: AsRef<str>>(out: &mut String, pairs: impl IntoIterator<Item = (N, V)>) {
    use tsdb::labels::clip;
    out.push('{');
    for (i, (n, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let n = n.as_ref();
        if tsdb::labels::is_legacy_label_name(n) {
            let _ = write!(out, "{}={:?}", clip(n), clip(v.as_ref()));
        } else {
            let _ = write!(out, "{:?}={:?}", clip(n), clip(v.as_ref()));
        }
    }
    out.push('}');
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total();
        write!(f, "rejected {total} of {} samples (", self.received)?;
        let mut first = true;
        for r in Reason::ALL {
            let n = self.count(r);
            if n > 0 {
                if !first {
                    f.write_str(", ")?;
                }
                first = false;
                write!(f, "{}: {n}", r.as_str())?;
            }
        }
        write!(f, "); the other {} were accepted", self.received.saturating_sub(total))?;
        for line in &self.lines {
            write!(f, "\n{line}")?;
        }
        if self.omitted > 0 {
            write!(f, "\nand {} more", self.omitted)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_first_rejections_then_counts_the_rest() {
        let mut r = Report::new(100);
        for i in 0..(MAX_REPORTED as i64 + 5) {
            r.reject(Reason::TooOld, 1, |out| {
                write_labels(out, [("__name__", "x")]);
                let _ = write!(out, " @{i}: too old sample");
            });
        }
        r.reject(Reason::InvalidLabels, 3, |_| panic!("not described beyond the limit"));
        assert_eq!(r.total(), 18);
        assert_eq!(r.count(Reason::TooOld), 15);
        let text = r.to_string();
        assert!(
            text.starts_with(
                "rejected 18 of 100 samples (too_old: 15, invalid_labels: 3); the other 82 were accepted\n"
            ),
            "{text}"
        );
        assert!(text.contains("{__name__=\"x\"} @0: too old sample"), "{text}");
        assert_eq!(text.lines().count(), 1 + MAX_REPORTED + 1);
        assert!(text.ends_with("and 6 more"), "{text}");
    }
}
