//! PromQL functions: the range functions (`rate`, `*_over_time`, …) as window computations over
//! plain sample slices, and the instant-vector functions applied per step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use promql_parser::parser::{Call, Expr};

use super::aggregate::is_valid_label_name;
use super::annotations::{self, Annotations};
use super::histogram;
use super::stream::{Collect, SeriesSink};
use super::value::{FloatHistogram, LabelsBuilder};
use super::{
    check_deadline, check_duplicates, drop_name_cached, unwrap_parens, Evaluator, Labels, PerWindow, Sample, Val,
    Window, WindowFn, WindowSpec, METRIC_NAME,
};
use crate::error::{QueryError, Result};
use tsdb::histogram::CounterResetHint;

/// Neumaier-compensated increment: returns the new sum and compensation.
pub fn kahan_sum_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() { c + ((sum - t) + inc) } else { c + ((inc - t) + sum) };
    (t, c)
}

/// φ-quantile of `values` with Prometheus's interpolation.
pub fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lo = rank.floor().max(0.0);
    let hi = (lo + 1.0).min(n - 1.0);
    let w = rank - rank.floor();
    let get = |i: f64| values.get(i as usize).copied().unwrap_or(f64::NAN);
    get(lo) * (1.0 - w) + get(hi) * w
}

/// `rate`/`increase`/`delta` with Prometheus 2.42's extrapolation.
pub fn extrapolated_rate(w: &Window<'_>, is_counter: bool, is_rate: bool) -> Option<f64> {
    Some(RateBase::new(w.points, is_counter)?.at(w.range_start, w.range_end, is_rate))
}

/// What [`extrapolated_rate`] computes from a window's samples alone, apart from what depends on
/// the window's bounds: consecutive steps often see the same samples and share it.
#[derive(Clone, Copy)]
struct RateBase {
    first_t: i64,
    last_t: i64,
    /// Increase (with counter resets added back) over the samples.
    result: f64,
    /// Seconds between the first and last sample.
    sampled: f64,
    /// Average seconds between samples.
    avg: f64,
    /// For a counter that would reach zero before the first sample: seconds until it does.
    dur_to_zero: Option<f64>,
}

impl RateBase {
    /// `None` for fewer than two samples.
    fn new(pts: &[(i64, f64)], is_counter: bool) -> Option<RateBase> {
        if pts.len() < 2 {
            return None;
        }
        let (first, last) = (pts.first()?, pts.last()?);
        let mut result = last.1 - first.1;
        if is_counter {
            let mut prev = 0.0;
            for p in pts {
                if p.1 < prev {
                    result += prev;
                }
                prev = p.1;
            }
        }
        let sampled = secs_between(last.0, first.0);
        let avg = sampled / (pts.len() - 1) as f64;
        let dur_to_zero = (is_counter && result > 0.0 && first.1 >= 0.0).then(|| sampled * (first.1 / result));
        Some(RateBase { first_t: first.0, last_t: last.0, result, sampled, avg, dur_to_zero })
    }

    /// The extrapolated increase (per second if `is_rate`) over `[range_start, range_end]`.
    fn at(&self, range_start: i64, range_end: i64, is_rate: bool) -> f64 {
        let mut dur_to_start = secs_between(self.first_t, range_start);
        let dur_to_end = secs_between(range_end, self.last_t);
        if let Some(dur_to_zero) = self.dur_to_zero {
            if dur_to_zero < dur_to_start {
                dur_to_start = dur_to_zero;
            }
        }
        let (avg, sampled) = (self.avg, self.sampled);
        let threshold = avg * 1.1;
        let mut interval = sampled;
        interval += if dur_to_start < threshold { dur_to_start } else { avg / 2.0 };
        interval += if dur_to_end < threshold { dur_to_end } else { avg / 2.0 };
        // Same operation order as Prometheus 2.42, so results agree to the last bit.
        let mut factor = interval / sampled;
        if is_rate {
            factor /= (range_end - range_start) as f64 / 1000.0;
        }
        self.result * factor
    }
}

/// `rate`, `increase` or `delta` over a whole series: [`extrapolated_rate`] at every step,
/// computing the sample-only part once per distinct window.
struct ExtrapolatedRate {
    is_counter: bool,
    is_rate: bool,
}

impl WindowFn for ExtrapolatedRate {
    fn series(&self, points: &[(i64, f64)], spec: &WindowSpec<'_>, outs: &mut Vec<(usize, f64)>) {
        let mut cached: Option<((usize, usize), Option<RateBase>)> = None;
        spec.for_each_window(points, |k, (a, b), range_start, range_end| {
            let base = match cached {
                Some((ab, base)) if ab == (a, b) => base,
                _ => {
                    let base = RateBase::new(points.get(a..b).unwrap_or_default(), self.is_counter);
                    cached = Some(((a, b), base));
                    base
                }
            };
            if let Some(base) = base {
                outs.push((k, base.at(range_start, range_end, self.is_rate)));
            }
        });
    }
}

/// What a range function does with histogram samples.
#[derive(Clone, Copy, PartialEq)]
enum HistKind {
    /// `rate`, `increase` (`counter`) or `delta`.
    Rate {
        counter: bool,
        rate: bool,
    },
    /// `irate` or `idelta`.
    Instant {
        rate: bool,
    },
    SumOverTime,
    AvgOverTime,
    CountOverTime,
    LastOverTime,
    PresentOverTime,
    /// `resets`: the floats' decreases plus the histograms' counter resets.
    Resets,
}

/// A range function of floats (`inner`) that also takes histograms, as Prometheus does: a window
/// with both kinds gives no result where the function cannot mix them (`rate`, `sum_over_time`,
/// …); one with histograms only gives a histogram.
struct WithHistograms<'a, F> {
    inner: &'a F,
    kind: HistKind,
    /// Where the function notes what it dropped.
    notes: &'a Annotations,
}

impl<F: WindowFn> WindowFn for WithHistograms<'_, F> {
    fn series(&self, points: &[(i64, f64)], spec: &WindowSpec<'_>, outs: &mut Vec<(usize, f64)>) {
        self.inner.series(points, spec, outs);
    }

    fn histograms(
        &self,
        labels: &Labels,
        floats: &[(i64, f64)],
        hists: &[(i64, FloatHistogram)],
        spec: &WindowSpec<'_>,
        outs: &mut Vec<(usize, f64)>,
        houts: &mut Vec<(usize, FloatHistogram)>,
    ) {
        let metric = labels.get(METRIC_NAME).unwrap_or("");
        let mut float_outs = Vec::new();
        self.inner.series(floats, spec, &mut float_outs);
        let mut float_out = float_outs.into_iter().peekable();
        let mut fwin: Vec<(usize, usize)> = vec![(0, 0); spec.times.len()];
        spec.for_each_window(floats, |k, ab, _, _| {
            if let Some(w) = fwin.get_mut(k) {
                *w = ab;
            }
        });
        let mut hwin: Vec<(usize, usize, i64, i64)> = vec![(0, 0, 0, 0); spec.times.len()];
        spec.for_each_window(&super::hist_times(hists), |k, (a, b), start, end| {
            if let Some(w) = hwin.get_mut(k) {
                *w = (a, b, start, end);
            }
        });
        for (k, (&(fa, fb), &(ha, hb, start, end))) in fwin.iter().zip(&hwin).enumerate() {
            let fv = loop {
                match float_out.peek() {
                    Some(&(j, _)) if j < k => {
                        float_out.next();
                    }
                    Some(&(j, v)) if j == k => break Some(v),
                    _ => break None,
                }
            };
            let fw = floats.get(fa..fb).unwrap_or_default();
            let hw = hists.get(ha..hb).unwrap_or_default();
            if hw.is_empty() {
                outs.extend(fv.map(|v| (k, v)));
                continue;
            }
            let mixed = !fw.is_empty();
            let mixed_note = || self.notes.add(annotations::mixed_floats_histograms(metric));
            match self.kind {
                HistKind::Rate { counter, rate } => {
                    if mixed {
                        mixed_note();
                        continue;
                    }
                    if hw.len() < 2 {
                        continue;
                    }
                    let gauge = |p: &(i64, FloatHistogram)| p.1.counter_reset_hint == CounterResetHint::Gauge;
                    if counter && hw.iter().any(gauge) {
                        self.notes.add(annotations::not_counter(metric));
                    }
                    let gauges = hw.first().is_some_and(gauge) && hw.last().is_some_and(gauge);
                    if !counter && !gauges {
                        self.notes.add(annotations::not_gauge(metric));
                    }
                    match histogram_rate(hw, counter, rate, start, end) {
                        Some(h) => houts.push((k, h)),
                        None => self.notes.add(annotations::incompatible_custom_buckets(metric)),
                    }
                }
                HistKind::Instant { rate } => {
                    let last_float = fw.last().map(|p| p.0);
                    let last_hist = hw.last().map(|p| p.0);
                    // The last two samples: two floats give a float, two histograms a histogram.
                    if last_float > last_hist {
                        if fw.len() >= 2 && fw.get(fw.len() - 2).map(|p| p.0) > last_hist {
                            outs.extend(fv.map(|v| (k, v)));
                        } else if fw.len() + hw.len() >= 2 {
                            mixed_note();
                        }
                    } else if hw.len() >= 2 && hw.get(hw.len() - 2).map(|p| p.0) > last_float {
                        let last_two = hw.get(hw.len() - 2..).unwrap_or_default();
                        let gauges = last_two.iter().filter(|p| p.1.counter_reset_hint == CounterResetHint::Gauge);
                        match (rate, gauges.count()) {
                            (true, 1..) => self.notes.add(annotations::not_counter(metric)),
                            (false, 0 | 1) => self.notes.add(annotations::not_gauge(metric)),
                            _ => {}
                        }
                        match instant_histogram(hw, rate) {
                            Some(h) => houts.push((k, h)),
                            None => self.notes.add(annotations::incompatible_custom_buckets(metric)),
                        }
                    } else if fw.len() + hw.len() >= 2 {
                        mixed_note();
                    }
                }
                HistKind::SumOverTime | HistKind::AvgOverTime => {
                    if mixed {
                        mixed_note();
                        continue;
                    }
                    match sum_histograms(hw, self.kind == HistKind::AvgOverTime) {
                        Some(h) => houts.push((k, h)),
                        None => self.notes.add(annotations::incompatible_custom_buckets(metric)),
                    }
                }
                HistKind::CountOverTime => outs.push((k, (fw.len() + hw.len()) as f64)),
                HistKind::PresentOverTime => outs.push((k, 1.0)),
                HistKind::Resets => {
                    let hist_resets = hw.windows(2).filter(|p| histogram::detect_reset(&p[1].1, &p[0].1)).count();
                    outs.push((k, (float_resets(fw) + hist_resets) as f64));
                }
                HistKind::LastOverTime => match (fw.last(), hw.last()) {
                    (Some(f), Some(h)) if f.0 > h.0 => outs.push((k, f.1)),
                    (_, Some(h)) => houts.push((k, h.1.clone())),
                    _ => {}
                },
            }
        }
    }
}

/// How often a float series decreases.
fn float_resets(points: &[(i64, f64)]) -> usize {
    points.windows(2).filter(|p| p[1].1 < p[0].1).count()
}

/// `rate`, `increase` or `delta` of histogram samples over `[range_start, range_end]` (at least
/// two): the last minus the first with counter resets added back, extrapolated to the range as
/// for floats (without the zero-point limit). `None` for fewer than two samples or histograms
/// whose buckets cannot be combined.
fn histogram_rate(
    hw: &[(i64, FloatHistogram)],
    counter: bool,
    is_rate: bool,
    range_start: i64,
    range_end: i64,
) -> Option<FloatHistogram> {
    if hw.len() < 2 {
        return None;
    }
    let (first, last) = (hw.first()?, hw.last()?);
    let min_schema = hw.iter().map(|p| p.1.schema).min()?;
    let mut h = last.1.clone();
    if h.schema > min_schema {
        h.reduce_resolution(min_schema).ok()?;
    }
    histogram::sub(&mut h, &first.1).ok()?;
    if counter {
        for w in hw.windows(2) {
            if histogram::detect_reset(&w[1].1, &w[0].1) {
                histogram::add(&mut h, &w[0].1).ok()?;
            }
        }
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    histogram::compact(&mut h);
    let sampled = secs_between(last.0, first.0);
    let avg = sampled / (hw.len() - 1) as f64;
    let threshold = avg * 1.1;
    let mut to_start = secs_between(first.0, range_start);
    let mut to_end = secs_between(range_end, last.0);
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut interval = sampled;
    interval += to_start;
    interval += to_end;
    let mut factor = interval / sampled;
    if is_rate {
        factor /= secs_between(range_end, range_start);
    }
    histogram::mul(&mut h, factor);
    Some(h)
}

/// `irate`/`idelta` of the last two histogram samples: their difference (`irate`: the last one
/// after a counter reset) per second for `irate`.
fn instant_histogram(hw: &[(i64, FloatHistogram)], is_rate: bool) -> Option<FloatHistogram> {
    let last = hw.last()?;
    let prev = hw.get(hw.len().checked_sub(2)?)?;
    let mut h = last.1.clone();
    if !(is_rate && histogram::detect_reset(&last.1, &prev.1)) {
        histogram::sub(&mut h, &prev.1).ok()?;
    }
    if is_rate {
        let dt = last.0 - prev.0;
        if dt == 0 {
            return None;
        }
        histogram::div(&mut h, dt as f64 / 1000.0);
    }
    h.counter_reset_hint = CounterResetHint::Gauge;
    histogram::compact(&mut h);
    Some(h)
}

/// The sum (`avg`: the incremental mean, as Prometheus computes it) of histogram samples.
fn sum_histograms(hw: &[(i64, FloatHistogram)], avg: bool) -> Option<FloatHistogram> {
    let (first, rest) = hw.split_first()?;
    let mut acc = first.1.clone();
    for (i, (_, h)) in rest.iter().enumerate() {
        if avg {
            let n = (i + 2) as f64;
            let mut left = h.clone();
            histogram::div(&mut left, n);
            let mut right = acc.clone();
            histogram::div(&mut right, n);
            histogram::sub(&mut left, &right).ok()?;
            histogram::add(&mut acc, &left).ok()?;
        } else {
            histogram::add(&mut acc, h).ok()?;
        }
    }
    histogram::compact(&mut acc);
    Some(acc)
}

/// `irate`/`idelta`.
pub fn instant_value(pts: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let last = pts.last()?;
    let prev = pts.get(pts.len() - 2)?;
    let mut v = if is_rate && last.1 < prev.1 { last.1 } else { last.1 - prev.1 };
    let dt = last.0 - prev.0;
    if dt == 0 {
        return None;
    }
    if is_rate {
        v /= dt as f64 / 1000.0;
    }
    Some(v)
}

/// `later - earlier` ms in seconds, exact in i128 (timestamps at the ends of the i64 range are
/// more than an i64 apart).
fn secs_between(later: i64, earlier: i64) -> f64 {
    (i128::from(later) - i128::from(earlier)) as f64 / 1000.0
}

/// Least-squares slope and intercept (at `intercept_t`, ms).
pub fn linear_regression(pts: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy, mut sxy, mut cxy, mut sx2, mut cx2) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let init_y = pts.first().map_or(f64::NAN, |p| p.1);
    let mut const_y = true;
    for (i, &(t, v)) in pts.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = secs_between(t, intercept_t);
        (sx, cx) = kahan_sum_inc(x, sx, cx);
        (sy, cy) = kahan_sum_inc(v, sy, cy);
        (sxy, cxy) = kahan_sum_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_sum_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    let intercept = sy / n - slope * sx / n;
    (slope, intercept)
}

fn avg_over_time(pts: &[(i64, f64)]) -> f64 {
    let (mut mean, mut count, mut c) = (0.0f64, 0.0f64, 0.0f64);
    for &(_, v) in pts {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_sum_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() {
        mean
    } else {
        mean + c
    }
}

fn sum_over_time(pts: &[(i64, f64)]) -> f64 {
    let (mut sum, mut c) = (0.0, 0.0);
    for &(_, v) in pts {
        (sum, c) = kahan_sum_inc(v, sum, c);
    }
    if sum.is_infinite() {
        sum
    } else {
        sum + c
    }
}

fn stdvar_over_time(pts: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in pts {
        count += 1.0;
        let delta = v - (mean + cmean);
        (mean, cmean) = kahan_sum_inc(delta / count, mean, cmean);
        (aux, caux) = kahan_sum_inc(delta * (v - (mean + cmean)), aux, caux);
    }
    (aux + caux) / count
}

fn holt_winters(pts: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if pts.len() < 2 {
        return None;
    }
    let trend = |i: usize, s0: f64, s1: f64, b: f64| {
        if i == 0 {
            b
        } else {
            tf * (s1 - s0) + (1.0 - tf) * b
        }
    };
    let (mut s0, mut s1) = (0.0, pts.first()?.1);
    let mut b = pts.get(1)?.1 - s1;
    for (i, p) in pts.iter().enumerate().skip(1) {
        let x = sf * p.1;
        b = trend(i - 1, s0, s1, b);
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = x + y;
    }
    Some(s1)
}

/// Go's `math.Max`/`math.Min`: NaN wins.
fn go_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

fn go_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn arg(c: &Call, i: usize) -> Result<&Expr> {
    c.args
        .args
        .get(i)
        .map(|b| &**b)
        .ok_or_else(|| QueryError::BadData(format!("missing argument {i} of {}", c.func.name)))
}

fn scalar_arg(ev: &mut Evaluator<'_>, c: &Call, i: usize) -> Result<Vec<f64>> {
    match ev.eval(arg(c, i)?)? {
        Val::Scalar(v) => Ok(v),
        _ => Err(QueryError::BadData(format!("expected scalar argument {i} of {}", c.func.name))),
    }
}

fn string_arg(c: &Call, i: usize) -> Result<String> {
    match unwrap_parens(arg(c, i)?) {
        Expr::StringLiteral(s) => Ok(s.val.clone()),
        _ => Err(QueryError::BadData(format!("expected string argument {i} of {}", c.func.name))),
    }
}

fn vector_arg(ev: &mut Evaluator<'_>, c: &Call, i: usize) -> Result<Vec<Vec<Sample>>> {
    match ev.eval(arg(c, i)?)? {
        Val::Vector(v) => Ok(v),
        _ => Err(QueryError::BadData(format!("expected instant vector argument {i} of {}", c.func.name))),
    }
}

/// Applies `f` to every float element, dropping `__name__`; `None` drops the element. Histogram
/// elements are dropped (as Prometheus's functions of floats do).
fn map_values(deadline: Instant, steps: Vec<Vec<Sample>>, mut f: impl FnMut(f64, usize) -> Option<f64>) -> Result<Val> {
    let mut cache = HashMap::new();
    let mut out = Vec::with_capacity(steps.len());
    for (k, vec) in steps.into_iter().enumerate() {
        check_deadline(deadline)?;
        let mut res = Vec::with_capacity(vec.len());
        for s in vec {
            if s.h.is_some() {
                continue;
            }
            if let Some(v) = f(s.v, k) {
                res.push(Sample::float(drop_name_cached(&mut cache, &s.labels), v));
            }
        }
        check_duplicates(&res)?;
        out.push(res);
    }
    Ok(Val::Vector(out))
}

/// Marks the steps at which any series has a value.
struct StepMarks(Vec<bool>);

impl SeriesSink for StepMarks {
    fn needs_order(&self) -> bool {
        false
    }

    fn series(&mut self, _labels: &Labels, _drop_name: bool, points: &[(usize, f64)]) -> Result<()> {
        for &(k, _) in points {
            if let Some(m) = self.0.get_mut(k) {
                *m = true;
            }
        }
        Ok(())
    }

    fn histograms(&mut self, _labels: &Labels, _drop_name: bool, points: &[(usize, FloatHistogram)]) -> Result<()> {
        for (k, _) in points {
            if let Some(m) = self.0.get_mut(*k) {
                *m = true;
            }
        }
        Ok(())
    }
}

/// Applies `f` to every histogram element, dropping `__name__`; float elements are dropped.
fn map_histograms(
    deadline: Instant,
    steps: Vec<Vec<Sample>>,
    f: impl Fn(&FloatHistogram, usize) -> f64,
) -> Result<Val> {
    let mut cache = HashMap::new();
    let mut out = Vec::with_capacity(steps.len());
    for (k, vec) in steps.into_iter().enumerate() {
        check_deadline(deadline)?;
        let res: Vec<Sample> = vec
            .iter()
            .filter_map(|s| Some(Sample::float(drop_name_cached(&mut cache, &s.labels), f(s.h.as_deref()?, k))))
            .collect();
        check_duplicates(&res)?;
        out.push(res);
    }
    Ok(Val::Vector(out))
}

/// Labels `absent()` reports for a selector argument.
fn absent_labels(e: &Expr) -> Labels {
    let vs = match e {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::empty(),
    };
    let mut b = LabelsBuilder::new(Labels::empty());
    let mut has: Vec<String> = Vec::new();
    let mut drop: Vec<String> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == METRIC_NAME {
            continue;
        }
        if m.op == promql_parser::label::MatchOp::Equal && !has.contains(&m.name) {
            b.set(&m.name, &m.value);
            has.push(m.name.clone());
        } else {
            drop.push(m.name.clone());
        }
    }
    for n in drop {
        b.del(&n);
    }
    b.build()
}

/// Civil date from days since 1970-01-01 (proleptic Gregorian).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn date_fn(name: &str, v: f64) -> f64 {
    let secs = v as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    match name {
        "day_of_month" => f64::from(d),
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "day_of_year" => {
            let (y0, _, _) = (y, 0, 0);
            let jan1 = days_from_civil(y0, 1, 1);
            (days - jan1 + 1) as f64
        }
        "days_in_month" => f64::from(match m {
            2 if is_leap(y) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }),
        "hour" => (sod / 3600) as f64,
        "minute" => (sod % 3600 / 60) as f64,
        "month" => f64::from(m),
        "year" => y as f64,
        _ => f64::NAN,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn math_fn(name: &str) -> Option<fn(f64) -> f64> {
    Some(match name {
        "abs" => f64::abs,
        "ceil" => f64::ceil,
        "floor" => f64::floor,
        "exp" => f64::exp,
        "ln" => f64::ln,
        "log2" => f64::log2,
        "log10" => f64::log10,
        "sqrt" => f64::sqrt,
        "sgn" => |v: f64| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                v
            }
        },
        "sin" => f64::sin,
        "cos" => f64::cos,
        "tan" => f64::tan,
        "asin" => f64::asin,
        "acos" => f64::acos,
        "atan" => f64::atan,
        "sinh" => f64::sinh,
        "cosh" => f64::cosh,
        "tanh" => f64::tanh,
        "asinh" => f64::asinh,
        "acosh" => f64::acosh,
        "atanh" => f64::atanh,
        "deg" => |v: f64| v * 180.0 / std::f64::consts::PI,
        "rad" => |v: f64| v * std::f64::consts::PI / 180.0,
        _ => return None,
    })
}

pub(crate) fn eval_call(ev: &mut Evaluator<'_>, c: &Call) -> Result<Val> {
    let name = c.func.name;
    let n = ev.steps();
    if let Some(f) = math_fn(name) {
        let v = vector_arg(ev, c, 0)?;
        return map_values(ev.deadline(), v, |x, _| Some(f(x)));
    }
    match name {
        "time" => Ok(Val::Scalar((0..n).map(|k| ev.ts(k) as f64 / 1000.0).collect())),
        "pi" => Ok(Val::Scalar(vec![std::f64::consts::PI; n])),
        "vector" => {
            let s = scalar_arg(ev, c, 0)?;
            let labels = Arc::new(Labels::empty());
            Ok(Val::Vector(s.into_iter().map(|v| vec![Sample::float(Arc::clone(&labels), v)]).collect()))
        }
        "scalar" => {
            let v = vector_arg(ev, c, 0)?;
            Ok(Val::Scalar(
                v.into_iter()
                    .map(|vec| if vec.len() == 1 && vec[0].h.is_none() { vec[0].v } else { f64::NAN })
                    .collect(),
            ))
        }
        "timestamp" => {
            if let Expr::VectorSelector(vs) = unwrap_parens(arg(c, 0)?) {
                let v = ev.eval_vector_selector(vs, true)?;
                return map_values(ev.deadline(), v, |x, _| Some(x));
            }
            let v = vector_arg(ev, c, 0)?;
            let times: Vec<f64> = (0..n).map(|k| ev.ts(k) as f64 / 1000.0).collect();
            map_values(ev.deadline(), v, |_, k| times.get(k).copied())
        }
        "round" => {
            let v = vector_arg(ev, c, 0)?;
            let to = if c.args.args.len() > 1 { scalar_arg(ev, c, 1)? } else { vec![1.0; n] };
            map_values(ev.deadline(), v, |x, k| {
                let inv = 1.0 / to.get(k).copied().unwrap_or(1.0);
                Some((x * inv + 0.5).floor() / inv)
            })
        }
        "clamp" => {
            let v = vector_arg(ev, c, 0)?;
            let lo = scalar_arg(ev, c, 1)?;
            let hi = scalar_arg(ev, c, 2)?;
            map_values(ev.deadline(), v, |x, k| {
                let (a, b) = (lo.get(k).copied().unwrap_or(f64::NAN), hi.get(k).copied().unwrap_or(f64::NAN));
                if b < a {
                    None
                } else {
                    Some(go_max(a, go_min(b, x)))
                }
            })
        }
        "clamp_min" => {
            let v = vector_arg(ev, c, 0)?;
            let lo = scalar_arg(ev, c, 1)?;
            map_values(ev.deadline(), v, |x, k| Some(go_max(x, lo.get(k).copied().unwrap_or(f64::NAN))))
        }
        "clamp_max" => {
            let v = vector_arg(ev, c, 0)?;
            let hi = scalar_arg(ev, c, 1)?;
            map_values(ev.deadline(), v, |x, k| Some(go_min(x, hi.get(k).copied().unwrap_or(f64::NAN))))
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute" | "month" | "year" => {
            if c.args.args.is_empty() {
                let labels = Arc::new(Labels::empty());
                return Ok(Val::Vector(
                    (0..n)
                        .map(|k| vec![Sample::float(Arc::clone(&labels), date_fn(name, ev.ts(k) as f64 / 1000.0))])
                        .collect(),
                ));
            }
            let v = vector_arg(ev, c, 0)?;
            map_values(ev.deadline(), v, |x, _| Some(date_fn(name, x)))
        }
        "sort" | "sort_desc" => {
            let v = vector_arg(ev, c, 0)?;
            let desc = name == "sort_desc";
            let mut out = Vec::with_capacity(v.len());
            // As Prometheus: Go's (unstable) sort, reversing the order of its value heaps; NaN
            // last either way, equal values in the order Go's sort leaves them.
            let less = |x: &Sample, y: &Sample| y.v.is_nan() || if desc { y.v < x.v } else { y.v > x.v };
            for mut vec in v {
                ev.check_timeout()?;
                super::gosort::sort(&mut vec, &less);
                out.push(vec);
            }
            Ok(Val::Vector(out))
        }
        "label_replace" => label_replace(ev, c),
        "label_join" => label_join(ev, c),
        "absent" => {
            let v = vector_arg(ev, c, 0)?;
            let labels = Arc::new(absent_labels(arg(c, 0)?));
            Ok(Val::Vector(
                v.into_iter()
                    .map(|vec| if vec.is_empty() { vec![Sample::float(Arc::clone(&labels), 1.0)] } else { Vec::new() })
                    .collect(),
            ))
        }
        "absent_over_time" => {
            // A window with a sample of either kind is present.
            let f = PerWindow(|w: &Window<'_>, _| (!w.points.is_empty()).then_some(1.0));
            let notes = Arc::clone(&ev.annotations);
            let f = WithHistograms { inner: &f, kind: HistKind::PresentOverTime, notes: &notes };
            let mut present = StepMarks(vec![false; n]);
            ev.stream_range_with(arg(c, 0)?, true, &f, &mut present)?;
            let labels = Arc::new(absent_labels(arg(c, 0)?));
            Ok(Val::Vector(
                present
                    .0
                    .into_iter()
                    .map(|p| if p { Vec::new() } else { vec![Sample::float(Arc::clone(&labels), 1.0)] })
                    .collect(),
            ))
        }
        "histogram_quantile" => histogram_quantile(ev, c),
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev" | "histogram_stdvar" => {
            let v = vector_arg(ev, c, 0)?;
            let f: fn(&FloatHistogram) -> f64 = match name {
                "histogram_count" => |h| h.count,
                "histogram_sum" => |h| h.sum,
                "histogram_avg" => |h| h.sum / h.count,
                "histogram_stddev" => |h| histogram::stdvar(h).sqrt(),
                _ => histogram::stdvar,
            };
            map_histograms(ev.deadline(), v, |h, _| f(h))
        }
        "histogram_fraction" => {
            let lower = scalar_arg(ev, c, 0)?;
            let upper = scalar_arg(ev, c, 1)?;
            let v = vector_arg(ev, c, 2)?;
            map_histograms(ev.deadline(), v, |h, k| {
                let at = |x: &[f64]| x.get(k).copied().unwrap_or(f64::NAN);
                histogram::fraction(at(&lower), at(&upper), h)
            })
        }
        _ => eval_range_call(ev, c),
    }
}

fn eval_range_call(ev: &mut Evaluator<'_>, c: &Call) -> Result<Val> {
    let mut sink = Collect::new(ev.steps());
    range_call(ev, c, &mut sink)?;
    Ok(Val::Vector(sink.finish()?))
}

/// The range-vector argument of the range functions [`range_call`] knows, and whether their
/// output drops `__name__`.
fn range_fn_arg(name: &str) -> Option<(usize, bool)> {
    Some(match name {
        "quantile_over_time" => (1, true),
        "last_over_time" => (0, false),
        "rate"
        | "increase"
        | "delta"
        | "irate"
        | "idelta"
        | "deriv"
        | "predict_linear"
        | "resets"
        | "changes"
        | "avg_over_time"
        | "sum_over_time"
        | "count_over_time"
        | "min_over_time"
        | "max_over_time"
        | "present_over_time"
        | "stdvar_over_time"
        | "stddev_over_time"
        | "double_exponential_smoothing" => (0, true),
        _ => return None,
    })
}

/// Streams a range function over a matrix selector into `sink` and returns `true`; returns
/// `false` without evaluating anything for other calls, and for a selector that may match several
/// metric names when the function drops `__name__`: two of its series could then become equal,
/// which is an error only [`Collect`] detects.
pub(crate) fn stream_range_call(ev: &mut Evaluator<'_>, c: &Call, sink: &mut dyn SeriesSink) -> Result<bool> {
    let Some((i, drop_name)) = range_fn_arg(c.func.name) else {
        return Ok(false);
    };
    let Expr::MatrixSelector(ms) = unwrap_parens(arg(c, i)?) else {
        return Ok(false);
    };
    let one_name = ms.vs.name.is_some()
        || ms
            .vs
            .matchers
            .matchers
            .iter()
            .any(|m| m.name == METRIC_NAME && m.op == promql_parser::label::MatchOp::Equal);
    if drop_name && !one_name {
        return Ok(false);
    }
    range_call(ev, c, sink)?;
    Ok(true)
}

/// Evaluates a range function into `sink`.
fn range_call(ev: &mut Evaluator<'_>, c: &Call, sink: &mut dyn SeriesSink) -> Result<()> {
    let name = c.func.name;
    let nonempty = |w: &Window<'_>| !w.points.is_empty();
    match name {
        "rate" | "increase" | "delta" => {
            let (counter, rate) = (name != "delta", name == "rate");
            let f = ExtrapolatedRate { is_counter: counter, is_rate: rate };
            let notes = Arc::clone(&ev.annotations);
            let f = WithHistograms { inner: &f, kind: HistKind::Rate { counter, rate }, notes: &notes };
            ev.stream_range_with(arg(c, 0)?, true, &f, sink)?
        }
        "irate" | "idelta" => {
            let rate = name == "irate";
            let f = PerWindow(move |w: &Window<'_>, _| instant_value(w.points, rate));
            let notes = Arc::clone(&ev.annotations);
            let f = WithHistograms { inner: &f, kind: HistKind::Instant { rate }, notes: &notes };
            ev.stream_range_with(arg(c, 0)?, true, &f, sink)?
        }
        "deriv" => ev.stream_range_fn(
            arg(c, 0)?,
            true,
            |w, _| (w.points.len() >= 2).then(|| linear_regression(w.points, w.points[0].0).0),
            sink,
        )?,
        "predict_linear" => {
            let d = scalar_arg(ev, c, 1)?;
            ev.stream_range_fn(
                arg(c, 0)?,
                true,
                |w, k| {
                    if w.points.len() < 2 {
                        return None;
                    }
                    let (slope, intercept) = linear_regression(w.points, w.eval_t);
                    Some(slope * d.get(k).copied().unwrap_or(f64::NAN) + intercept)
                },
                sink,
            )?
        }
        "resets" => {
            let f = PerWindow(|w: &Window<'_>, _| nonempty(w).then(|| float_resets(w.points) as f64));
            let notes = Arc::clone(&ev.annotations);
            let f = WithHistograms { inner: &f, kind: HistKind::Resets, notes: &notes };
            ev.stream_range_with(arg(c, 0)?, true, &f, sink)?
        }
        "changes" => ev.stream_range_fn(
            arg(c, 0)?,
            true,
            |w, _| {
                nonempty(w).then(|| {
                    w.points.windows(2).filter(|p| p[1].1 != p[0].1 && !(p[1].1.is_nan() && p[0].1.is_nan())).count()
                        as f64
                })
            },
            sink,
        )?,
        "avg_over_time" => {
            let f = PerWindow(|w: &Window<'_>, _| nonempty(w).then(|| avg_over_time(w.points)));
            let notes = Arc::clone(&ev.annotations);
            let f = WithHistograms { inner: &f, kind: HistKind::AvgOverTime, notes: &notes };
            ev.stream_range_with(arg(c, 0)?, true, &f, sink)?
        }
        "sum_over_time" => {
            let f = PerWindow(|w: &Window<'_>, _| nonempty(w).then(|| sum_over_time(w.points)));
            let notes = Arc::clone(&ev.annotations);
            let f = WithHistograms { inner: &f, kind: HistKind::SumOverTime, notes: &notes };
            ev.stream_range_with(arg(c, 0)?, true, &f, sink)?
        }
        "count_over_time" => {
            let f = PerWindow(|w: &Window<'_>, _| nonempty(w).then_some(w.points.len() as f64));
            let notes = Arc::clone(&ev.annotations);
            let f = WithHistograms { inner: &f, kind: HistKind::CountOverTime, notes: &notes };
            ev.stream_range_with(arg(c, 0)?, true, &f, sink)?
        }
        "min_over_time" => ev.stream_range_fn(
            arg(c, 0)?,
            true,
            |w, _| {
                let mut it = w.points.iter().map(|p| p.1);
                let first = it.next()?;
                Some(it.fold(first, |m, v| if v < m || m.is_nan() { v } else { m }))
            },
            sink,
        )?,
        "max_over_time" => ev.stream_range_fn(
            arg(c, 0)?,
            true,
            |w, _| {
                let mut it = w.points.iter().map(|p| p.1);
                let first = it.next()?;
                Some(it.fold(first, |m, v| if v > m || m.is_nan() { v } else { m }))
            },
            sink,
        )?,
        "last_over_time" => {
            let f = PerWindow(|w: &Window<'_>, _| w.points.last().map(|p| p.1));
            let notes = Arc::clone(&ev.annotations);
            let f = WithHistograms { inner: &f, kind: HistKind::LastOverTime, notes: &notes };
            ev.stream_range_with(arg(c, 0)?, false, &f, sink)?
        }
        "present_over_time" => {
            let f = PerWindow(|w: &Window<'_>, _| nonempty(w).then_some(1.0));
            let notes = Arc::clone(&ev.annotations);
            let f = WithHistograms { inner: &f, kind: HistKind::PresentOverTime, notes: &notes };
            ev.stream_range_with(arg(c, 0)?, true, &f, sink)?
        }
        "stdvar_over_time" => {
            ev.stream_range_fn(arg(c, 0)?, true, |w, _| nonempty(w).then(|| stdvar_over_time(w.points)), sink)?
        }
        "stddev_over_time" => {
            ev.stream_range_fn(arg(c, 0)?, true, |w, _| nonempty(w).then(|| stdvar_over_time(w.points).sqrt()), sink)?
        }
        "quantile_over_time" => {
            let q = scalar_arg(ev, c, 0)?;
            ev.stream_range_fn(
                arg(c, 1)?,
                true,
                |w, k| {
                    nonempty(w).then(|| {
                        quantile(q.get(k).copied().unwrap_or(f64::NAN), w.points.iter().map(|p| p.1).collect())
                    })
                },
                sink,
            )?
        }
        "double_exponential_smoothing" => {
            let sf = scalar_arg(ev, c, 1)?;
            let tf = scalar_arg(ev, c, 2)?;
            for (&s, &t) in sf.iter().zip(&tf) {
                if s <= 0.0 || s >= 1.0 {
                    return Err(QueryError::exec(format!(
                        "invalid smoothing factor. Expected: 0 < sf < 1, got: {s:.6}"
                    )));
                }
                if t <= 0.0 || t >= 1.0 {
                    return Err(QueryError::exec(format!("invalid trend factor. Expected: 0 < tf < 1, got: {t:.6}")));
                }
            }
            ev.stream_range_fn(
                arg(c, 0)?,
                true,
                |w, k| holt_winters(w.points, sf.get(k).copied().unwrap_or(0.5), tf.get(k).copied().unwrap_or(0.5)),
                sink,
            )?
        }
        other => return Err(QueryError::unsupported(format!("function {other}()"))),
    }
    Ok(())
}

fn label_replace(ev: &mut Evaluator<'_>, c: &Call) -> Result<Val> {
    let v = vector_arg(ev, c, 0)?;
    let dst = string_arg(c, 1)?;
    let repl = string_arg(c, 2)?;
    let src = string_arg(c, 3)?;
    let re_s = string_arg(c, 4)?;
    let re = regex::Regex::new(&format!("^(?:{re_s})$"))
        .map_err(|e| QueryError::exec(format!("invalid regular expression in label_replace(): {re_s}: {e}")))?;
    if !is_valid_label_name(&dst) {
        return Err(QueryError::exec(format!("invalid destination label name in label_replace(): {dst}")));
    }
    let mut cache: HashMap<*const Labels, Arc<Labels>> = HashMap::new();
    let mut out = Vec::with_capacity(v.len());
    for vec in v {
        ev.check_timeout()?;
        let mut res = Vec::with_capacity(vec.len());
        for s in vec {
            let labels = match cache.get(&Arc::as_ptr(&s.labels)) {
                Some(l) => Arc::clone(l),
                None => {
                    let src_val = s.labels.get(&src).unwrap_or("");
                    let l = match re.captures(src_val) {
                        Some(caps) => {
                            let mut res_s = String::new();
                            caps.expand(&repl, &mut res_s);
                            let mut b = LabelsBuilder::new((*s.labels).clone());
                            b.set(&dst, &res_s);
                            Arc::new(b.build())
                        }
                        None => Arc::clone(&s.labels),
                    };
                    cache.insert(Arc::as_ptr(&s.labels), Arc::clone(&l));
                    l
                }
            };
            res.push(Sample { labels, ..s });
        }
        check_duplicates(&res)?;
        out.push(res);
    }
    Ok(Val::Vector(out))
}

fn label_join(ev: &mut Evaluator<'_>, c: &Call) -> Result<Val> {
    let v = vector_arg(ev, c, 0)?;
    let dst = string_arg(c, 1)?;
    let sep = string_arg(c, 2)?;
    let mut srcs = Vec::new();
    for i in 3..c.args.args.len() {
        let s = string_arg(c, i)?;
        if !is_valid_label_name(&s) {
            return Err(QueryError::exec(format!("invalid source label name in label_join(): {s}")));
        }
        srcs.push(s);
    }
    if !is_valid_label_name(&dst) {
        return Err(QueryError::exec(format!("invalid destination label name in label_join(): {dst}")));
    }
    let mut out = Vec::with_capacity(v.len());
    for vec in v {
        ev.check_timeout()?;
        let mut res = Vec::with_capacity(vec.len());
        for s in vec {
            let joined = srcs.iter().map(|n| s.labels.get(n).unwrap_or("")).collect::<Vec<_>>().join(&sep);
            let mut b = LabelsBuilder::new((*s.labels).clone());
            b.set(&dst, &joined);
            res.push(Sample { labels: Arc::new(b.build()), ..s });
        }
        check_duplicates(&res)?;
        out.push(res);
    }
    Ok(Val::Vector(out))
}

/// Quantile over classic buckets `(upper bound, cumulative count)`.
pub fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    match buckets.last() {
        Some(b) if b.0 == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    // Coalesce equal upper bounds.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == b.0 => last.1 += b.1,
            _ => merged.push(b),
        }
    }
    // Ensure monotonic counts.
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let total = merged[merged.len() - 1].1;
    if total == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * total;
    let last_idx = merged.len() - 1;
    let b = merged[..last_idx].partition_point(|x| x.1 < rank);
    if b == last_idx {
        return merged[last_idx - 1].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let mut start = 0.0;
    let end = merged[b].0;
    let mut count = merged[b].1;
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// Output labels and `(upper bound, count)` buckets of one histogram.
type BucketGroup = (Arc<Labels>, Vec<(f64, f64)>);

fn histogram_quantile(ev: &mut Evaluator<'_>, c: &Call) -> Result<Val> {
    let q = scalar_arg(ev, c, 0)?;
    let v = vector_arg(ev, c, 1)?;
    let mut out = Vec::with_capacity(v.len());
    let le = ["le".to_string()];
    for (k, vec) in v.into_iter().enumerate() {
        ev.check_timeout()?;
        let mut groups: Vec<BucketGroup> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let qk = q.get(k).copied().unwrap_or(f64::NAN);
        let mut res: Vec<Sample> = Vec::new();
        for s in vec {
            if let Some(h) = &s.h {
                res.push(Sample::float(Arc::new(s.labels.without_name()), histogram::quantile(qk, h)));
                continue;
            }
            let Some(ub) = s.labels.get("le").and_then(parse_go_float) else {
                continue;
            };
            let mut key = String::new();
            for (n, v) in s.labels.iter() {
                if n != "le" {
                    key.push_str(n);
                    key.push('\u{ff}');
                    key.push_str(v);
                    key.push('\u{fe}');
                }
            }
            let i = *index.entry(key).or_insert_with(|| {
                groups.push((Arc::new(s.labels.without(&le).without_name()), Vec::new()));
                groups.len() - 1
            });
            if let Some(g) = groups.get_mut(i) {
                g.1.push((ub, s.v));
            }
        }
        res.extend(groups.into_iter().map(|(labels, b)| Sample::float(labels, bucket_quantile(qk, b))));
        check_duplicates(&res)?;
        out.push(res);
    }
    Ok(Val::Vector(out))
}

/// Parses a float as Go's `strconv.ParseFloat` would for common inputs (`+Inf`, `NaN`, …).
pub fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim_start_matches(['+', '-']);
    let lower = t.to_ascii_lowercase();
    let neg = s.starts_with('-');
    if lower == "inf" || lower == "infinity" {
        return Some(if neg { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if lower == "nan" {
        return Some(f64::NAN);
    }
    if let Some(body) = lower.strip_prefix("0x") {
        let v = if let Some((mant, exp)) = body.split_once('p') {
            let m = parse_hex_mantissa(mant)?;
            m * 2f64.powi(exp.parse::<i32>().ok()?)
        } else {
            u64::from_str_radix(body, 16).ok()? as f64
        };
        return Some(if neg { -v } else { v });
    }
    s.parse::<f64>().ok()
}

fn parse_hex_mantissa(m: &str) -> Option<f64> {
    let (i, f) = m.split_once('.').unwrap_or((m, ""));
    let mut v = if i.is_empty() { 0.0 } else { u64::from_str_radix(i, 16).ok()? as f64 };
    let mut scale = 1.0 / 16.0;
    for ch in f.chars() {
        v += f64::from(ch.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::PerWindow;

    /// `@` and offsets at the ends of the i64 range, ranges longer than it, and samples at its ends
    /// evaluate (to data or an error) without overflowing.
    #[test]
    fn times_at_the_ends_of_the_i64_range_do_not_overflow() {
        let mut st = crate::engine::mem::MemStorage::default();
        let up = crate::engine::Labels::from_pairs(&[("__name__", "up")]);
        let far = crate::engine::Labels::from_pairs(&[("__name__", "far")]);
        for t in 0..20 {
            st.add(up.clone(), t * 15_000, t as f64);
        }
        for (t, v) in [(i64::MIN, 1.0), (i64::MIN + 1, 2.0), (0, 3.0), (i64::MAX - 1, 4.0), (i64::MAX, 5.0)] {
            st.add(far.clone(), t, v);
        }
        let engine = crate::engine::Engine::default();
        for q in [
            "rate(up[1m] @ 144444444444700000300 offset -1m)",
            "up @ 9000000000000000 offset -1y",
            "up @ -9000000000000000 offset 1y",
            "up[5m] @ -9000000000000000 offset 1y",
            "max_over_time(up[5m:1m] @ -9000000000000000 offset 1y)",
            "rate(far[300000000y])",
            "deriv(far[300000000y] @ 9000000000000000)",
            "predict_linear(far[300000000y], 60)",
            "increase(far[300000000y] @ -9000000000000000)",
            "far offset -300000000y",
        ] {
            let e = crate::parser::parse(q).unwrap();
            let _ = engine.instant(&st, &e, 300_000, None);
            let _ = engine.instant(&st, &e, i64::MAX, None);
            let _ = engine.instant(&st, &e, i64::MIN, None);
            let _ = engine.range(&st, &e, 0, 300_000, 15_000, None);
        }
    }

    /// [`ExtrapolatedRate`] reuses a window's sample-only part across steps and gives the same
    /// bits as [`extrapolated_rate`] window by window, for steps finer and coarser than the
    /// samples, backwards-moving `@`-style times, resets, NaN and infinities.
    #[test]
    fn whole_series_rate_matches_per_window_rate() {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200 {
            let mut points = Vec::new();
            let (mut t, mut v) = (next() as i64 % 100_000, 0.0);
            for _ in 0..(next() % 60) {
                t += 1 + (next() % 40_000) as i64;
                v = match next() % 40 {
                    0 => 0.0,
                    1 => f64::NAN,
                    2 => f64::INFINITY,
                    3 => -v,
                    _ => v + (next() % 1000) as f64 / 3.0,
                };
                points.push((t, v));
            }
            let step = 1 + (next() % 30_000) as i64;
            let mut times: Vec<i64> = (0..100).map(|k| k * step).collect();
            if round % 5 == 0 {
                times.reverse();
            }
            let spec = WindowSpec {
                monotonic: times.windows(2).all(|w| w[0] <= w[1]),
                times: &times,
                range: 1 + (next() % 300_000) as i64,
                start: 0,
                interval: step,
            };
            for (is_counter, is_rate) in [(true, true), (true, false), (false, false)] {
                let (mut got, mut want) = (Vec::new(), Vec::new());
                ExtrapolatedRate { is_counter, is_rate }.series(&points, &spec, &mut got);
                PerWindow(|w: &Window<'_>, _| extrapolated_rate(w, is_counter, is_rate))
                    .series(&points, &spec, &mut want);
                let bits = |v: &[(usize, f64)]| v.iter().map(|p| (p.0, p.1.to_bits())).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "round {round}");
            }
        }
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(date_fn("days_in_month", 1_709_164_800.0), 29.0); // 2024-02-29
        assert_eq!(date_fn("day_of_week", 0.0), 4.0);
        assert_eq!(date_fn("day_of_year", 86_400.0 * 40.0), 41.0);
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile(0.5, vec![1.0, 2.0, 3.0, 4.0]), 2.5);
        assert_eq!(bucket_quantile(0.5, vec![(1.0, 1.0), (2.0, 3.0), (f64::INFINITY, 4.0)]), 1.5);
    }
}
