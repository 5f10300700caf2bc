//! Aggregation operators (`sum`, `avg`, …, `topk`, `quantile`, `count_values`) with `by`/`without`,
//! evaluated per step like Prometheus 2.42's `aggregation`.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::ast::LabelModifier;
use promql_parser::parser::AggregateExpr;

use super::functions::quantile;
use super::value::{format_float_plain, LabelsBuilder};
use super::{Evaluator, Labels, Sample, Val, METRIC_NAME};
use crate::error::{QueryError, Result};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Agg {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
    CountValues,
}

struct Group {
    labels: Arc<Labels>,
    value: f64,
    mean: f64,
    count: usize,
    items: Vec<Sample>,
}

pub(crate) fn eval_aggregate(ev: &mut Evaluator<'_>, a: &AggregateExpr) -> Result<Val> {
    let op = match a.op.to_string().as_str() {
        "sum" => Agg::Sum,
        "avg" => Agg::Avg,
        "min" => Agg::Min,
        "max" => Agg::Max,
        "count" => Agg::Count,
        "group" => Agg::Group,
        "stddev" => Agg::Stddev,
        "stdvar" => Agg::Stdvar,
        "topk" => Agg::Topk,
        "bottomk" => Agg::Bottomk,
        "quantile" => Agg::Quantile,
        "count_values" => Agg::CountValues,
        other => return Err(QueryError::unsupported(format!("aggregation {other}"))),
    };
    let (without, mut grouping): (bool, Vec<String>) = match &a.modifier {
        Some(LabelModifier::Include(ls)) => (false, ls.labels.clone()),
        Some(LabelModifier::Exclude(ls)) => (true, ls.labels.clone()),
        None => (false, Vec::new()),
    };
    let n = ev.steps();
    let mut params = vec![f64::NAN; n];
    let mut value_label = String::new();
    if let Some(p) = &a.param {
        match ev.eval(p)? {
            Val::Scalar(v) => params = v,
            Val::Str(s) => value_label = s,
            _ => return Err(QueryError::BadData("invalid aggregation parameter".into())),
        }
    }
    if op == Agg::CountValues {
        if !is_valid_label_name(&value_label) {
            return Err(QueryError::exec(format!(
                "invalid label name {value_label:?}"
            )));
        }
        if !without {
            grouping.push(value_label.clone());
        }
    }
    let Val::Vector(input) = ev.eval(&a.expr)? else {
        return Err(QueryError::BadData(
            "aggregation expects an instant vector".into(),
        ));
    };
    let mut out = Vec::with_capacity(n);
    let mut keys = GroupKeys::new(without, grouping);
    // Label sets recur across steps; a one-step (instant) evaluation would only fill the cache.
    let cache = n > 1 && op != Agg::CountValues;
    for (k, vec) in input.into_iter().enumerate() {
        ev.check_timeout()?;
        let param = params.get(k).copied().unwrap_or(f64::NAN);
        out.push(aggregate_step(op, vec, param, &value_label, cache, &mut keys)?);
    }
    Ok(Val::Vector(out))
}

/// Assigns each input label set its group: the grouping key is computed once per distinct label
/// set (the same `Arc` recurs at every step) instead of once per sample.
struct GroupKeys {
    without: bool,
    /// Names whose values form the key (`by`), or are left out of it (`without`, plus `__name__`).
    names: Vec<String>,
    grouping: Vec<String>,
    /// Group id of an input label set, by `Arc` address; the `Arc` kept here pins the address.
    by_ptr: HashMap<*const Labels, (Arc<Labels>, usize), BuildPtrHasher>,
    /// Group id by key.
    ids: HashMap<String, usize>,
    /// Output labels per group id.
    labels: Vec<Arc<Labels>>,
    /// Position of a group id in the current step's groups (`usize::MAX` if absent).
    slot: Vec<usize>,
    buf: String,
}

impl GroupKeys {
    fn new(without: bool, grouping: Vec<String>) -> GroupKeys {
        let mut names = grouping.clone();
        if without {
            names.push(METRIC_NAME.to_string());
        }
        GroupKeys {
            without,
            names,
            grouping,
            by_ptr: HashMap::default(),
            ids: HashMap::new(),
            labels: Vec::new(),
            slot: Vec::new(),
            buf: String::new(),
        }
    }

    /// Group id of `labels`; `cache` remembers it per `Arc` (off for one-off label sets).
    fn id(&mut self, labels: &Arc<Labels>, cache: bool) -> usize {
        if cache {
            if let Some(&(_, id)) = self.by_ptr.get(&Arc::as_ptr(labels)) {
                return id;
            }
        }
        self.buf.clear();
        labels.signature_into(&self.names, !self.without, &mut self.buf);
        let id = match self.ids.get(self.buf.as_str()) {
            Some(&id) => id,
            None => {
                let l = if self.without {
                    labels.without(&self.grouping).without_name()
                } else {
                    labels.only(&self.grouping)
                };
                let id = self.labels.len();
                self.labels.push(Arc::new(l));
                self.slot.push(usize::MAX);
                self.ids.insert(self.buf.clone(), id);
                id
            }
        };
        if cache {
            self.by_ptr
                .insert(Arc::as_ptr(labels), (Arc::clone(labels), id));
        }
        id
    }
}

/// Hashes pointer keys with one multiply (Fibonacci hashing); addresses are already unique.
#[derive(Default, Clone, Copy)]
struct BuildPtrHasher;

impl std::hash::BuildHasher for BuildPtrHasher {
    type Hasher = PtrHasher;
    fn build_hasher(&self) -> PtrHasher {
        PtrHasher(0)
    }
}

struct PtrHasher(u64);

impl std::hash::Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
}

fn aggregate_step(
    op: Agg,
    vec: Vec<Sample>,
    param: f64,
    value_label: &str,
    cache: bool,
    keys: &mut GroupKeys,
) -> Result<Vec<Sample>> {
    let mut k = 0usize;
    if matches!(op, Agg::Topk | Agg::Bottomk) {
        if param.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&param)
        {
            return Err(QueryError::exec(format!(
                "Scalar value {} overflows int64",
                super::format_float(param)
            )));
        }
        let kk = param.trunc() as i64;
        if kk < 1 {
            return Ok(Vec::new());
        }
        k = usize::try_from(kk).unwrap_or(usize::MAX);
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut group_ids: Vec<usize> = Vec::new();
    for mut s in vec {
        if op == Agg::CountValues {
            let mut b = LabelsBuilder::new((*s.labels).clone());
            b.set(value_label, &format_float_plain(s.v));
            s.labels = Arc::new(b.build());
        }
        let id = keys.id(&s.labels, cache);
        match keys.slot.get(id).copied().filter(|&i| i != usize::MAX) {
            None => {
                if let Some(slot) = keys.slot.get_mut(id) {
                    *slot = groups.len();
                }
                group_ids.push(id);
                let labels = keys.labels.get(id).cloned().unwrap_or_default();
                let value = match op {
                    Agg::Stddev | Agg::Stdvar => 0.0,
                    Agg::Group => 1.0,
                    _ => s.v,
                };
                let mut g = Group {
                    labels,
                    value,
                    mean: s.v,
                    count: 1,
                    items: Vec::new(),
                };
                if matches!(op, Agg::Topk | Agg::Bottomk | Agg::Quantile) {
                    g.items.push(s);
                }
                groups.push(g);
            }
            Some(i) => {
                let Some(g) = groups.get_mut(i) else { continue };
                let v = s.v;
                match op {
                    Agg::Sum => g.value += v,
                    Agg::Avg => {
                        g.count += 1;
                        if g.mean.is_infinite() {
                            if v.is_infinite() && (g.mean > 0.0) == (v > 0.0) {
                                continue;
                            }
                            if !v.is_infinite() && !v.is_nan() {
                                continue;
                            }
                        }
                        let c = g.count as f64;
                        g.mean += v / c - g.mean / c;
                    }
                    Agg::Group => {}
                    Agg::Max => {
                        if g.value < v || g.value.is_nan() {
                            g.value = v;
                        }
                    }
                    Agg::Min => {
                        if g.value > v || g.value.is_nan() {
                            g.value = v;
                        }
                    }
                    Agg::Count | Agg::CountValues => g.count += 1,
                    Agg::Stddev | Agg::Stdvar => {
                        g.count += 1;
                        let delta = v - g.mean;
                        g.mean += delta / g.count as f64;
                        g.value += delta * (v - g.mean);
                    }
                    Agg::Topk | Agg::Bottomk | Agg::Quantile => g.items.push(s),
                }
            }
        }
    }
    for id in group_ids {
        if let Some(slot) = keys.slot.get_mut(id) {
            *slot = usize::MAX;
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for mut g in groups {
        let v = match op {
            Agg::Avg => g.mean,
            Agg::Count | Agg::CountValues => g.count as f64,
            Agg::Stdvar => g.value / g.count as f64,
            Agg::Stddev => (g.value / g.count as f64).sqrt(),
            Agg::Quantile => {
                let vals: Vec<f64> = g.items.iter().map(|s| s.v).collect();
                quantile(param, vals)
            }
            Agg::Topk => {
                // Largest first; NaN counts as the smallest.
                g.items.sort_by(|a, b| cmp_nan_low(b.v, a.v));
                g.items.truncate(k);
                out.extend(g.items);
                continue;
            }
            Agg::Bottomk => {
                // Smallest first; NaN counts as the largest.
                g.items.sort_by(|a, b| cmp_nan_high(a.v, b.v));
                g.items.truncate(k);
                out.extend(g.items);
                continue;
            }
            _ => g.value,
        };
        out.push(Sample {
            labels: g.labels,
            v,
        });
    }
    Ok(out)
}

/// Orders with NaN below every number.
fn cmp_nan_low(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// Orders with NaN above every number.
fn cmp_nan_high(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    }
}

/// Prometheus's label name rule: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        _ => false,
    }
}
