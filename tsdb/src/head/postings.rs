//! In-memory postings: for every label pair, the bitmap of series references that carry it, plus the
//! bitmap of all series. Series references in the head fit in 32 bits (see `Head::next_ref`).
//!
//! Readers get owned bitmaps (clones or results of set operations), never views into the live maps.

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use croaring::Bitmap;

use crate::labels::{Labels, MatchType, Matcher};

/// Label name → label value → series references.
#[derive(Default)]
pub struct MemPostings {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    by_label: HashMap<Box<str>, HashMap<Box<str>, Bitmap>>,
    all: Bitmap,
}

impl MemPostings {
    /// Adds a series.
    pub fn add(&self, sref: u32, labels: &Labels) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for (n, v) in labels.iter() {
            let values = match g.by_label.get_mut(n) {
                Some(values) => values,
                None => g.by_label.entry(n.into()).or_default(),
            };
            match values.get_mut(v) {
                Some(b) => b.add(sref),
                None => {
                    let mut b = Bitmap::new();
                    b.add(sref);
                    values.insert(v.into(), b);
                }
            }
        }
        g.all.add(sref);
    }

    /// Removes a series added with these labels; label values and names left without series go too.
    pub fn remove(&self, sref: u32, labels: &Labels) {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for (n, v) in labels.iter() {
            let Some(values) = g.by_label.get_mut(n) else { continue };
            if let Some(b) = values.get_mut(v) {
                b.remove(sref);
                if b.is_empty() {
                    values.remove(v);
                }
            }
            if values.is_empty() {
                g.by_label.remove(n);
            }
        }
        g.all.remove(sref);
    }

    /// The series matching every matcher (Prometheus's `PostingsForMatchers`). An empty matcher list
    /// selects nothing; matchers that match the empty string also select series without the label.
    pub fn select(&self, matchers: &[Matcher]) -> Bitmap {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        if matchers.is_empty() {
            return Bitmap::new();
        }
        // Start from the intersection of matchers that don't match "", else from all series.
        let mut acc: Option<Bitmap> = None;
        let mut negatives: Vec<&Matcher> = Vec::new();
        for m in matchers {
            if m.matches_empty() {
                negatives.push(m);
                continue;
            }
            let b = g.matching(m);
            acc = Some(match acc {
                None => b,
                Some(a) => a.and(&b),
            });
            if acc.as_ref().is_some_and(|a| a.is_empty()) {
                return Bitmap::new();
            }
        }
        let mut acc = acc.unwrap_or_else(|| g.all.clone());
        for m in negatives {
            // A matcher matching "" keeps series without the label and those whose value matches:
            // remove the series whose value exists and does not match.
            let Some(values) = g.by_label.get(m.name.as_str()) else { continue };
            let mut remove = Bitmap::new();
            for (v, b) in values {
                if !m.matches(v) {
                    remove.or_inplace(b);
                }
            }
            acc.andnot_inplace(&remove);
        }
        acc
    }

    /// Label names of the selected series (all series if `among` is None), sorted.
    pub fn label_names(&self, among: Option<&Bitmap>) -> Vec<String> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<String> = g
            .by_label
            .iter()
            .filter(|(_, values)| match among {
                None => values.values().any(|b| !b.is_empty()),
                Some(sel) => values.values().any(|b| b.intersect(sel)),
            })
            .map(|(n, _)| n.to_string())
            .collect();
        out.sort_unstable();
        out
    }

    /// Values of label `name` among the selected series (all if None), sorted.
    pub fn label_values(&self, name: &str, among: Option<&Bitmap>) -> Vec<String> {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let Some(values) = g.by_label.get(name) else { return Vec::new() };
        let set: BTreeSet<&str> = values
            .iter()
            .filter(|(_, b)| match among {
                None => !b.is_empty(),
                Some(sel) => b.intersect(sel),
            })
            .map(|(v, _)| &**v)
            .collect();
        set.into_iter().map(str::to_owned).collect()
    }

    /// Number of distinct label pairs and of label names (for status endpoints).
    pub fn cardinality(&self) -> (usize, usize) {
        let g = self.inner.read().unwrap_or_else(|e| e.into_inner());
        (g.by_label.values().map(HashMap::len).sum(), g.by_label.len())
    }
}

impl Inner {
    /// Series whose label `m.name` has a value matching `m` (never matches absent labels).
    fn matching(&self, m: &Matcher) -> Bitmap {
        let Some(values) = self.by_label.get(m.name.as_str()) else { return Bitmap::new() };
        if m.kind == MatchType::Equal {
            return values.get(m.value.as_str()).cloned().unwrap_or_default();
        }
        let mut out = Bitmap::new();
        for (v, b) in values {
            if m.matches(v) {
                out.or_inplace(b);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs).unwrap()
    }

    #[test]
    fn select_follows_prometheus_empty_semantics() {
        let p = MemPostings::default();
        p.add(1, &l(&[("__name__", "up"), ("job", "a")]));
        p.add(2, &l(&[("__name__", "up"), ("job", "b")]));
        p.add(3, &l(&[("__name__", "up")]));
        let sel = |ms: Vec<Matcher>| p.select(&ms).iter().collect::<Vec<u32>>();
        assert_eq!(sel(vec![Matcher::equal("__name__", "up")]), vec![1, 2, 3]);
        assert_eq!(sel(vec![Matcher::equal("job", "a")]), vec![1]);
        assert_eq!(sel(vec![Matcher::new(MatchType::NotEqual, "job", "a").unwrap()]), vec![2, 3]);
        assert_eq!(sel(vec![Matcher::equal("__name__", "up"), Matcher::equal("job", "")]), vec![3]);
        assert_eq!(sel(vec![Matcher::new(MatchType::Regex, "job", "a|b").unwrap()]), vec![1, 2]);
        assert_eq!(sel(vec![Matcher::new(MatchType::NotRegex, "job", "a|").unwrap()]), vec![2]);
        assert_eq!(p.label_values("job", None), vec!["a", "b"]);
        assert_eq!(p.label_names(None), vec!["__name__", "job"]);

        p.remove(1, &l(&[("__name__", "up"), ("job", "a")]));
        assert_eq!(sel(vec![Matcher::equal("__name__", "up")]), vec![2, 3]);
        assert_eq!(sel(vec![Matcher::new(MatchType::Regex, "job", ".+").unwrap()]), vec![2]);
        assert_eq!(p.label_values("job", None), vec!["b"]);
        assert_eq!(p.cardinality(), (2, 2), "job=\"a\" is gone");
        p.remove(2, &l(&[("__name__", "up"), ("job", "b")]));
        assert_eq!(p.label_names(None), vec!["__name__"]);
        assert_eq!(p.cardinality(), (1, 1));
    }
}
