//! Aggregation operators (`sum`, `avg`, …, `topk`, `quantile`, `count_values`) with `by`/`without`,
//! evaluated per step like Prometheus 2.42's `aggregation`.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::parser::ast::LabelModifier;
use promql_parser::parser::AggregateExpr;

use promql_parser::parser::Expr;

use super::annotations::{self, Annotations};
use super::functions::{self, quantile};
use super::gosort;
use super::histogram;
use super::stream::{Collect, SeriesSink};
use super::value::{format_float_plain, FloatHistogram, LabelsBuilder};
use super::{unwrap_parens, Evaluator, Labels, Sample, Val, METRIC_NAME};
use crate::error::{QueryError, Result};

/// Most `(group, step)` accumulators a fused aggregation allocates (24 bytes each); the series of
/// groups beyond that are collected per step instead. Unit tests use a handful, so that every
/// aggregation they evaluate also runs the mixed path.
const FUSED_MAX_CELLS: usize = if cfg!(test) { 8 } else { 1 << 22 };

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

/// The running value of one group at one step, for the operations that fold values.
#[derive(Clone, Copy)]
struct Cell {
    value: f64,
    mean: f64,
    /// Samples folded in; 0 = the group has no sample at this step yet.
    count: usize,
}

impl Cell {
    const EMPTY: Cell = Cell { value: 0.0, mean: 0.0, count: 0 };

    /// The cell after its first sample.
    fn first(op: Agg, v: f64) -> Cell {
        let value = match op {
            Agg::Stddev | Agg::Stdvar => 0.0,
            Agg::Group => 1.0,
            _ => v,
        };
        Cell { value, mean: v, count: 1 }
    }

    /// Folds in a further sample (Prometheus 2.42's `aggregation`, sample by sample).
    fn add(&mut self, op: Agg, v: f64) {
        match op {
            Agg::Sum => self.value += v,
            Agg::Avg => {
                self.count += 1;
                if self.mean.is_infinite() {
                    if v.is_infinite() && (self.mean > 0.0) == (v > 0.0) {
                        return;
                    }
                    if !v.is_infinite() && !v.is_nan() {
                        return;
                    }
                }
                let c = self.count as f64;
                self.mean += v / c - self.mean / c;
            }
            Agg::Group => {}
            Agg::Max => {
                if self.value < v || self.value.is_nan() {
                    self.value = v;
                }
            }
            Agg::Min => {
                if self.value > v || self.value.is_nan() {
                    self.value = v;
                }
            }
            Agg::Count | Agg::CountValues => self.count += 1,
            Agg::Stddev | Agg::Stdvar => {
                self.count += 1;
                let delta = v - self.mean;
                self.mean += delta / self.count as f64;
                self.value += delta * (v - self.mean);
            }
            Agg::Topk | Agg::Bottomk | Agg::Quantile => {}
        }
    }

    /// The group's result (for the folding operations).
    fn result(&self, op: Agg) -> f64 {
        match op {
            Agg::Avg => self.mean,
            Agg::Count | Agg::CountValues => self.count as f64,
            Agg::Stdvar => self.value / self.count as f64,
            Agg::Stddev => (self.value / self.count as f64).sqrt(),
            _ => self.value,
        }
    }
}

struct Group {
    labels: Arc<Labels>,
    cell: Cell,
    items: Vec<Sample>,
    /// The histograms of `sum`/`avg` (the group's floats are in `cell`).
    hist: Option<HistAcc>,
}

/// The running `sum` or `avg` of a group's histograms at one step (Prometheus's incremental mean
/// for `avg`). `None` once two histograms could not be combined: the group has no result then.
struct HistAcc {
    h: Option<FloatHistogram>,
    n: usize,
}

impl HistAcc {
    fn first(h: &FloatHistogram) -> HistAcc {
        HistAcc { h: Some(h.clone()), n: 1 }
    }

    fn add(&mut self, op: Agg, h: &FloatHistogram) {
        self.n += 1;
        let Some(acc) = self.h.as_mut() else { return };
        let ok = if op == Agg::Avg {
            let n = self.n as f64;
            let mut left = h.clone();
            histogram::div(&mut left, n);
            let mut right = acc.clone();
            histogram::div(&mut right, n);
            histogram::sub(&mut left, &right).and_then(|()| histogram::add(acc, &left))
        } else {
            histogram::add(acc, h)
        };
        if ok.is_err() {
            self.h = None;
        }
    }

    fn result(self) -> Option<FloatHistogram> {
        let mut h = self.h?;
        histogram::compact(&mut h);
        Some(h)
    }
}

/// The result of a folding aggregation for a group with float cell `cell` (`has_float`: it took
/// floats) and histograms `hist`: mixed groups have none (Prometheus drops them with a warning).
fn fold_result(
    op: Agg,
    labels: Arc<Labels>,
    cell: &Cell,
    has_float: bool,
    hist: Option<HistAcc>,
    notes: &Annotations,
) -> Option<Sample> {
    match hist {
        None => Some(Sample::float(labels, cell.result(op))),
        Some(_) if has_float => {
            notes.add(annotations::MIXED_FLOATS_HISTOGRAMS_AGG);
            None
        }
        Some(acc) => {
            let h = acc.result();
            if h.is_none() {
                notes.add(annotations::INCOMPATIBLE_CUSTOM_BUCKETS_AGG);
            }
            h.map(|h| Sample::histogram(labels, h))
        }
    }
}

/// Whether `op` takes histogram samples: `sum` and `avg` add them, `count` and `group` count
/// them; the others ignore them (as Prometheus does, with a warning).
fn takes_histograms(op: Agg) -> bool {
    matches!(op, Agg::Sum | Agg::Avg | Agg::Count | Agg::Group)
}

/// The order of Prometheus's `topk` heap (`vectorByValueHeap`: least on top, NaN below all) or
/// `bottomk` heap (`reverse`, `vectorByReverseValueHeap`: greatest on top, NaN above all).
fn heap_less(reverse: bool) -> impl Fn(&Sample, &Sample) -> bool {
    move |a, b| a.v.is_nan() || if reverse { a.v > b.v } else { a.v < b.v }
}

/// Offers `s` to a group's `topk`/`bottomk` heap of at most `k` samples, as Prometheus 2.42
/// does: it enters if the heap is not full, or if it beats the top (or the top is NaN), and then
/// the top leaves (replaced in place when `k` is 1). Which of equal values stay, and their order,
/// follows from these steps.
fn heap_offer(heap: &mut Vec<Sample>, s: Sample, k: usize, reverse: bool) {
    let less = heap_less(reverse);
    let Some(top) = heap.first().map(|t| t.v) else {
        heap.push(s);
        return;
    };
    let beats = if reverse { top > s.v } else { top < s.v };
    if heap.len() < k || beats || top.is_nan() {
        if heap.len() >= k {
            if k == 1 {
                heap[0] = s;
                return;
            }
            gosort::heap_pop(heap, &less);
        }
        gosort::heap_push(heap, s, &less);
    }
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
            return Err(QueryError::exec(format!("invalid label name {value_label:?}")));
        }
        if !without {
            grouping.push(value_label.clone());
        }
    }
    let mut keys = GroupKeys::new(without, grouping);
    // Fused keys are computed from the input series' labels, `__name__` included: fine unless
    // `by` lists `__name__` (a range function drops it from its output).
    if op.folds() && (without || !keys.by_name()) {
        let mut sink = Fused::new(op, n, &mut keys, Arc::clone(&ev.annotations));
        if stream_input(ev, &a.expr, &mut sink)? {
            return sink.finish();
        }
    }
    let Val::Vector(input) = ev.eval(&a.expr)? else {
        return Err(QueryError::BadData("aggregation expects an instant vector".into()));
    };
    let mut out = Vec::with_capacity(n);
    // Label sets recur across steps; a one-step (instant) evaluation would only fill the cache.
    let cache = n > 1 && op != Agg::CountValues;
    for (k, vec) in input.into_iter().enumerate() {
        ev.check_timeout()?;
        let param = params.get(k).copied().unwrap_or(f64::NAN);
        out.push(aggregate_step(op, vec, param, &value_label, cache, &mut keys, &ev.annotations)?);
    }
    Ok(Val::Vector(out))
}

impl Agg {
    /// The operator's name.
    fn name(self) -> &'static str {
        match self {
            Agg::Sum => "sum",
            Agg::Avg => "avg",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Count => "count",
            Agg::Group => "group",
            Agg::Stddev => "stddev",
            Agg::Stdvar => "stdvar",
            Agg::Topk => "topk",
            Agg::Bottomk => "bottomk",
            Agg::Quantile => "quantile",
            Agg::CountValues => "count_values",
        }
    }

    /// Whether the operation folds values into one number per group (no parameter, no items).
    fn folds(self) -> bool {
        matches!(self, Agg::Sum | Agg::Avg | Agg::Min | Agg::Max | Agg::Count | Agg::Group | Agg::Stddev | Agg::Stdvar)
    }
}

/// Streams `expr` into `sink` if it is a selector or a range function that can stream (see
/// [`functions::stream_range_call`]); `false` (with nothing evaluated) otherwise.
fn stream_input(ev: &mut Evaluator<'_>, expr: &Expr, sink: &mut dyn SeriesSink) -> Result<bool> {
    match unwrap_parens(expr) {
        Expr::VectorSelector(vs) => {
            ev.stream_vector_selector(vs, false, sink)?;
            Ok(true)
        }
        Expr::Call(c) => functions::stream_range_call(ev, c, sink),
        _ => Ok(false),
    }
}

/// A folding aggregation fed one input series at a time: one [`Cell`] per group and step, so the
/// input's per-step vectors are never built. Values reach a cell in input order, as they would
/// through [`aggregate_step`], and each step lists its groups in order of first appearance.
///
/// Memory is bounded by the groups, not the input: when a new group would take the cells past
/// [`FUSED_MAX_CELLS`], the series of that group and of every later new group are collected per step
/// and aggregated as usual, while series of groups that already have cells are still folded into them.
struct Fused<'k> {
    op: Agg,
    steps: usize,
    keys: &'k mut GroupKeys,
    /// Cells by group id, then step (allocated when the group first appears).
    cells: Vec<Vec<Cell>>,
    /// Group ids per step, in order of first appearance.
    order: Vec<Vec<usize>>,
    /// Groups that have cells.
    cell_groups: usize,
    /// The series of groups without cells, once cells would take too much memory.
    collect: Option<Collect>,
    /// Histograms of `sum`/`avg` by group id and step (groups with cells only).
    hcells: HashMap<(usize, usize), HistAcc>,
    /// Where the aggregation notes what it dropped.
    notes: Arc<Annotations>,
}

impl<'k> Fused<'k> {
    fn new(op: Agg, steps: usize, keys: &'k mut GroupKeys, notes: Arc<Annotations>) -> Fused<'k> {
        let order = (0..steps).map(|_| Vec::new()).collect();
        Fused {
            op,
            steps,
            keys,
            cells: Vec::new(),
            order,
            cell_groups: 0,
            collect: None,
            hcells: HashMap::new(),
            notes,
        }
    }

    fn finish(self) -> Result<Val> {
        let Fused { op, steps, keys, cells, order, collect, mut hcells, notes, .. } = self;
        let mut out: Vec<Vec<Sample>> = order
            .into_iter()
            .enumerate()
            .map(|(k, ids)| {
                ids.into_iter()
                    .filter_map(|id| {
                        let cell = cells.get(id)?.get(k)?;
                        let labels = keys.labels.get(id).cloned().unwrap_or_default();
                        let hist = if hcells.is_empty() { None } else { hcells.remove(&(id, k)) };
                        fold_result(op, labels, cell, cell.count > 0, hist, &notes)
                    })
                    .collect()
            })
            .collect();
        if let Some(c) = collect {
            // The collected series belong to groups without cells: their results follow.
            let cache = steps > 1;
            for (step, vec) in out.iter_mut().zip(c.finish()?) {
                step.extend(aggregate_step(op, vec, f64::NAN, "", cache, keys, &notes)?);
            }
        }
        Ok(Val::Vector(out))
    }
}

impl SeriesSink for Fused<'_> {
    /// `count` and `group` into a single group give the same result in any order (the input
    /// order decides the order of several groups, and the sum of floats).
    fn needs_order(&self) -> bool {
        !(matches!(self.op, Agg::Count | Agg::Group) && self.keys.single_group())
    }

    fn begin(&mut self, _series: usize) {}

    fn histograms(&mut self, labels: &Labels, drop_name: bool, points: &[(usize, FloatHistogram)]) -> Result<()> {
        match self.op {
            Agg::Count | Agg::Group => {
                let zeros: Vec<(usize, f64)> = points.iter().map(|p| (p.0, 0.0)).collect();
                return self.series(labels, drop_name, &zeros);
            }
            Agg::Sum | Agg::Avg => {}
            _ => {
                self.notes.add(annotations::histogram_ignored_in_aggregation(self.op.name()));
                return Ok(());
            }
        }
        let Some(id) = self.cells_of(labels) else {
            return self.collect.get_or_insert_with(|| Collect::new(self.steps)).histograms(labels, drop_name, points);
        };
        for (k, h) in points {
            let key = (id, *k);
            match self.hcells.get_mut(&key) {
                Some(acc) => acc.add(self.op, h),
                None => {
                    let float_seen = self.cells.get(id).and_then(|c| c.get(*k)).is_some_and(|c| c.count > 0);
                    if !float_seen {
                        if let Some(o) = self.order.get_mut(*k) {
                            o.push(id);
                        }
                    }
                    self.hcells.insert(key, HistAcc::first(h));
                }
            }
        }
        Ok(())
    }

    fn series(&mut self, labels: &Labels, drop_name: bool, points: &[(usize, f64)]) -> Result<()> {
        let Some(id) = self.cells_of(labels) else {
            return self.collect.get_or_insert_with(|| Collect::new(self.steps)).series(labels, drop_name, points);
        };
        let Some(cells) = self.cells.get_mut(id) else {
            return Ok(());
        };
        for &(k, v) in points {
            let Some(cell) = cells.get_mut(k) else { continue };
            if cell.count == 0 {
                *cell = Cell::first(self.op, v);
                if self.hcells.is_empty() || !self.hcells.contains_key(&(id, k)) {
                    if let Some(o) = self.order.get_mut(k) {
                        o.push(id);
                    }
                }
            } else {
                cell.add(self.op, v);
            }
        }
        Ok(())
    }
}

impl Fused<'_> {
    /// The group id of `labels` with its cells allocated, or `None` if its series are collected.
    fn cells_of(&mut self, labels: &Labels) -> Option<usize> {
        // `__name__` is never part of the key here (see `eval_aggregate`), dropped or not.
        let id = self.keys.id_of(labels);
        let has_cells = self.cells.get(id).is_some_and(|c| !c.is_empty());
        if !has_cells {
            let full = (self.cell_groups + 1).saturating_mul(self.steps) > FUSED_MAX_CELLS;
            if full || self.collect.is_some() {
                return None;
            }
            if self.cells.len() <= id {
                self.cells.resize_with(id + 1, Vec::new);
            }
            if let Some(cells) = self.cells.get_mut(id) {
                *cells = vec![Cell::EMPTY; self.steps];
                self.cell_groups += 1;
            }
        }
        Some(id)
    }
}

/// Assigns each input label set its group: the grouping key is computed once per distinct label
/// set (the same `Arc` recurs at every step) instead of once per sample.
struct GroupKeys {
    without: bool,
    /// Names whose values form the key (`by`), or are left out of it (`without`, plus `__name__`).
    names: Vec<String>,
    grouping: Vec<String>,
    /// Group id of an input label set, by `Arc` address (unique, so Fx hashing suffices); the `Arc`
    /// kept here pins the address.
    by_ptr: HashMap<*const Labels, (Arc<Labels>, usize), rustc_hash::FxBuildHasher>,
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

    /// Whether every label set falls into one group (`by ()` or no grouping).
    fn single_group(&self) -> bool {
        !self.without && self.grouping.is_empty()
    }

    /// Whether `__name__` is one of the grouping labels.
    fn by_name(&self) -> bool {
        self.grouping.iter().any(|n| n == METRIC_NAME)
    }

    /// Group id of `labels`; `cache` remembers it per `Arc` (off for one-off label sets).
    fn id(&mut self, labels: &Arc<Labels>, cache: bool) -> usize {
        if cache {
            if let Some(&(_, id)) = self.by_ptr.get(&Arc::as_ptr(labels)) {
                return id;
            }
        }
        let id = self.id_of(labels);
        if cache {
            self.by_ptr.insert(Arc::as_ptr(labels), (Arc::clone(labels), id));
        }
        id
    }

    /// Group id of `labels`, computed from its values.
    fn id_of(&mut self, labels: &Labels) -> usize {
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
        id
    }
}

fn aggregate_step(
    op: Agg,
    vec: Vec<Sample>,
    param: f64,
    value_label: &str,
    cache: bool,
    keys: &mut GroupKeys,
    notes: &Annotations,
) -> Result<Vec<Sample>> {
    let mut k = 0usize;
    if matches!(op, Agg::Topk | Agg::Bottomk) {
        if param.is_nan() || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&param) {
            return Err(QueryError::exec(format!("Scalar value {} overflows int64", super::format_float(param))));
        }
        let kk = param.trunc() as i64;
        if kk < 1 {
            return Ok(Vec::new());
        }
        k = usize::try_from(kk).unwrap_or(usize::MAX);
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut group_ids: Vec<usize> = Vec::new();
    let sum_hists = matches!(op, Agg::Sum | Agg::Avg);
    for mut s in vec {
        if s.h.is_some() && !takes_histograms(op) {
            notes.add(annotations::histogram_ignored_in_aggregation(op.name()));
            continue;
        }
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
                let (cell, hist) = match &s.h {
                    Some(h) if sum_hists => (Cell::EMPTY, Some(HistAcc::first(h))),
                    _ => (Cell::first(op, s.v), None),
                };
                let mut g = Group { labels, cell, items: Vec::new(), hist };
                if matches!(op, Agg::Topk | Agg::Bottomk | Agg::Quantile) {
                    g.items.push(s);
                }
                groups.push(g);
            }
            Some(i) => {
                let Some(g) = groups.get_mut(i) else { continue };
                if matches!(op, Agg::Topk | Agg::Bottomk) {
                    heap_offer(&mut g.items, s, k, op == Agg::Bottomk);
                } else if op == Agg::Quantile {
                    g.items.push(s);
                } else if let (Some(h), true) = (&s.h, sum_hists) {
                    match &mut g.hist {
                        Some(acc) => acc.add(op, h),
                        None => g.hist = Some(HistAcc::first(h)),
                    }
                } else if g.cell.count == 0 {
                    g.cell = Cell::first(op, s.v);
                } else {
                    g.cell.add(op, s.v);
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
            Agg::Quantile => {
                let vals: Vec<f64> = g.items.iter().map(|s| s.v).collect();
                quantile(param, vals)
            }
            Agg::Topk | Agg::Bottomk => {
                // The heap, reversed by Go's sort: largest (topk) or smallest (bottomk) first.
                let less = heap_less(op == Agg::Bottomk);
                gosort::sort(&mut g.items, &|a, b| less(b, a));
                out.extend(g.items);
                continue;
            }
            _ => {
                let has_float = g.cell.count > 0;
                out.extend(fold_result(op, g.labels, &g.cell, has_float, g.hist, notes));
                continue;
            }
        };
        out.push(Sample::float(g.labels, v));
    }
    Ok(out)
}

pub(crate) use tsdb::labels::is_valid_label_name;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::mem::MemStorage;
    use crate::engine::value::STALE_NAN_BITS;
    use crate::engine::{Engine, EngineOptions, QueryValue};

    /// Counters and gauges with resets, NaN, infinities, signed zeros, stale markers and gaps;
    /// enough series for range functions to split them across threads.
    fn storage() -> MemStorage {
        let mut st = MemStorage::default();
        let special = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.0, f64::from_bits(STALE_NAN_BITS)];
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for i in 0..80u64 {
            let pairs = [("__name__", "m".to_string()), ("g", format!("g{}", i % 3)), ("i", i.to_string())];
            let labels = Labels::from_pairs(&pairs);
            let mut counter = 0.0;
            for k in 0..120i64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x.is_multiple_of(11) {
                    continue; // a gap
                }
                counter += (x % 1000) as f64 / 7.0;
                if x.is_multiple_of(97) {
                    counter = 0.0; // a reset
                }
                let v = match x % 53 {
                    0 if i % 4 == 1 => special[(x / 53) as usize % special.len()],
                    _ => counter,
                };
                st.add(labels.clone(), k * 15_000 + (x % 3000) as i64, v);
            }
        }
        st
    }

    fn range(st: &MemStorage, q: &str, step: i64) -> Vec<(String, Vec<(i64, u64)>)> {
        let expr = crate::parser::parse(q).unwrap();
        let v = Engine::new(EngineOptions::default()).range(st, &expr, 0, 1_800_000, step, None).unwrap();
        let QueryValue::Matrix(m) = v else { panic!("{q}: not a matrix") };
        m.into_iter().map(|s| (s.labels.to_string(), s.points.iter().map(|p| (p.0, p.1.to_bits())).collect())).collect()
    }

    fn instant(st: &MemStorage, q: &str, t: i64) -> Vec<(String, u64)> {
        let expr = crate::parser::parse(q).unwrap();
        let v = Engine::new(EngineOptions::default()).instant(st, &expr, t, None).unwrap();
        let QueryValue::Vector { samples, .. } = v else { panic!("{q}: not a vector") };
        samples.into_iter().map(|s| (s.labels.to_string(), s.v.to_bits())).collect()
    }

    /// `topk`/`bottomk` keep and order equal values as Prometheus 2.42's heaps and sort do
    /// (answers taken from Prometheus 2.42 on the same series).
    #[test]
    fn topk_bottomk_ties_follow_prometheus_heaps() {
        let mut st = MemStorage::default();
        for (n, v) in [("a", 5.0), ("b", 5.0), ("c", 7.0), ("d", 1.0)] {
            st.add(Labels::from_pairs(&[("__name__", "t"), ("n", n)]), 0, v);
        }
        let names = |q: &str| -> Vec<String> {
            let expr = crate::parser::parse(q).unwrap();
            let v = Engine::new(EngineOptions::default()).instant(&st, &expr, 0, None).unwrap();
            let QueryValue::Vector { samples, .. } = v else { panic!("{q}: not a vector") };
            samples.iter().map(|s| s.labels.get("n").unwrap_or_default().to_string()).collect()
        };
        assert_eq!(names("topk(2, t)"), ["c", "b"]);
        assert_eq!(names("bottomk(2, t)"), ["d", "b"]);
        assert_eq!(names("topk(1, t)"), ["c"]);
        assert_eq!(names("bottomk(1, t)"), ["d"]);
    }

    /// The fused path (selector or range function straight into the aggregation) gives the same
    /// bits, and instant results the same order, as the collected path (forced by a regex on the
    /// name, which the fused path refuses, or by a double negation).
    #[test]
    fn fused_aggregation_matches_collected() {
        let st = storage();
        for op in ["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar"] {
            for grouping in ["", "by (g)", "without (i)", "by (i)", "without (g, i)"] {
                for f in ["rate", "increase", "delta", "avg_over_time", "max_over_time", "last_over_time"] {
                    let fused = format!("{op} {grouping} ({f}(m[1m]))");
                    let collected = format!("{op} {grouping} ({f}({{__name__=~\"m\"}}[1m]))");
                    for step in [15_000, 7_000, 60_000] {
                        assert_eq!(range(&st, &fused, step), range(&st, &collected, step), "{fused} step {step}");
                    }
                    for t in [0, 61_000, 900_000, 1_900_000] {
                        assert_eq!(instant(&st, &fused, t), instant(&st, &collected, t), "{fused} at {t}");
                    }
                }
                let fused = format!("{op} {grouping} (m)");
                let collected = format!("{op} {grouping} (-(-m))");
                assert_eq!(range(&st, &fused, 15_000), range(&st, &collected, 15_000), "{fused}");
                for t in [0, 900_000, 1_900_000] {
                    assert_eq!(instant(&st, &fused, t), instant(&st, &collected, t), "{fused} at {t}");
                }
            }
        }
    }

    /// A range function at the top of a range query builds its result series directly
    /// (`stream::SeriesOut`), with the same series and bits as the collected path (forced by
    /// `unless vector(0)`, which removes nothing: its one element has no labels).
    #[test]
    fn top_level_range_function_matches_collected() {
        let st = storage();
        for f in [
            "rate",
            "increase",
            "delta",
            "irate",
            "idelta",
            "deriv",
            "resets",
            "changes",
            "avg_over_time",
            "max_over_time",
            "last_over_time",
            "present_over_time",
        ] {
            let streamed = format!("{f}(m[1m])");
            let collected = format!("{f}(m[1m]) unless vector(0)");
            for step in [15_000, 7_000, 60_000] {
                let got = range(&st, &streamed, step);
                assert!(!got.is_empty(), "{streamed}");
                assert_eq!(got, range(&st, &collected, step), "{streamed} step {step}");
            }
        }
    }

    /// Past the cell budget the fused sink collects per step instead, with the same results.
    #[test]
    fn fused_sink_over_budget_collects() {
        let st = storage();
        let expr = crate::parser::parse("sum by (g) (rate(m[1m]))").unwrap();
        let Expr::Aggregate(a) = &expr else { panic!("not an aggregation") };
        let run = |series_hint: Option<usize>| {
            let engine = Engine::new(EngineOptions::default());
            let mut ev = engine.evaluator(&st, 0, 1_800_000, 15_000, None);
            let mut keys = GroupKeys::new(false, vec!["g".to_string()]);
            let mut sink = Fused::new(Agg::Sum, ev.steps(), &mut keys, Arc::default());
            if let Some(n) = series_hint {
                sink.begin(n);
            }
            assert!(stream_input(&mut ev, &a.expr, &mut sink).unwrap());
            let Val::Vector(v) = sink.finish().unwrap() else { panic!("not a vector") };
            v.into_iter()
                .map(|s| s.into_iter().map(|s| (s.labels.to_string(), s.v.to_bits())).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(None), run(Some(usize::MAX)));
    }
}
