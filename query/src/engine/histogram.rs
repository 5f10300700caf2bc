//! Arithmetic on native histograms with float counts as PromQL needs it: addition and subtraction
//! across schemas and zero-bucket widths, scaling, compaction, counter-reset detection, and the
//! estimates `histogram_quantile`, `histogram_fraction` and `histogram_stddev` take from buckets.
//!
//! Buckets are handled as `(index, count)` runs per side: Prometheus's span layout is rebuilt from
//! the indexes after an operation (consecutive indexes form one span). Exponential bucket `i` of
//! schema `s` covers `(2^((i-1)·2^-s), 2^(i·2^-s)]` on its side of zero; custom-bucket histograms
//! (schema -53) take their upper bounds from `custom_values`.

use tsdb::histogram::{is_custom_buckets_schema, CounterResetHint, FloatHistogram, Span};

/// Why two histograms cannot be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CombineError {
    /// Custom-bucket histograms with different bounds, or one custom and one exponential.
    #[error("histograms with incompatible custom buckets")]
    IncompatibleBuckets,
}

/// One bucket with its bounds (negative buckets have negative bounds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Observations in the bucket.
    pub count: f64,
}

/// The `(index, count)` pairs described by `spans` and `buckets`, in index order.
pub fn indexed(spans: &[Span], buckets: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(buckets.len());
    let mut idx = 0i32;
    let mut it = buckets.iter();
    for (n, s) in spans.iter().enumerate() {
        idx = if n == 0 { s.offset } else { idx.saturating_add(s.offset) };
        for _ in 0..s.length {
            match it.next() {
                Some(&c) => out.push((idx, c)),
                None => return out,
            }
            idx = idx.saturating_add(1);
        }
    }
    out
}

/// The spans and buckets of `(index, count)` pairs in index order: consecutive indexes share a span.
pub fn layout(pairs: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut next = 0i32;
    for (n, &(i, _)) in pairs.iter().enumerate() {
        match spans.last_mut() {
            Some(s) if i == next => s.length += 1,
            _ => spans.push(Span { offset: if n == 0 { i } else { i - next }, length: 1 }),
        }
        next = i.saturating_add(1);
    }
    (spans, pairs.iter().map(|p| p.1).collect())
}

/// Upper bound of exponential bucket `idx` in `schema` (Prometheus's `getBound`: the last finite
/// bucket ends at `f64::MAX`, the one after it at +Inf).
pub fn exp_bound(idx: i32, schema: i32) -> f64 {
    if schema < 0 {
        let exp = i64::from(idx) << (-schema);
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    let frac_idx = idx & ((1 << schema) - 1);
    let frac = (f64::from(frac_idx) / f64::from(1 << schema)).exp2() / 2.0;
    let exp = i64::from(idx >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

/// `f · 2^exp` without intermediate overflow.
fn ldexp(f: f64, exp: i64) -> f64 {
    let e = exp.clamp(-2200, 2200) as i32;
    // Split so that neither factor overflows on its own.
    let half = e / 2;
    f * 2f64.powi(half) * 2f64.powi(e - half)
}

/// Upper bound of positive bucket `idx` of `h`.
fn upper_bound(h: &FloatHistogram, idx: i32) -> f64 {
    if is_custom_buckets_schema(h.schema) {
        return usize::try_from(idx).ok().and_then(|i| h.custom_values.get(i).copied()).unwrap_or(f64::INFINITY);
    }
    exp_bound(idx, h.schema)
}

/// Lower bound of positive bucket `idx` of `h`.
fn lower_bound(h: &FloatHistogram, idx: i32) -> f64 {
    if is_custom_buckets_schema(h.schema) {
        if idx <= 0 {
            return f64::NEG_INFINITY;
        }
        return upper_bound(h, idx - 1);
    }
    exp_bound(idx - 1, h.schema)
}

/// Index in schema `to` of bucket `idx` of schema `from` (`to <= from`).
fn target_idx(idx: i32, from: i32, to: i32) -> i32 {
    ((idx - 1) >> (from - to)) + 1
}

/// Merges `(index, count)` pairs of schema `from` into schema `to` (`to <= from`).
fn reduce(pairs: &[(i32, f64)], from: i32, to: i32) -> Vec<(i32, f64)> {
    if to >= from {
        return pairs.to_vec();
    }
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(pairs.len());
    for &(i, c) in pairs {
        let t = target_idx(i, from, to);
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 += c,
            _ => out.push((t, c)),
        }
    }
    out
}

/// `(index, count)` pairs of one side of a histogram, in index order.
type Indexed = Vec<(i32, f64)>;

/// The positive and negative `(index, count)` pairs of `h`.
fn sides(h: &FloatHistogram) -> (Indexed, Indexed) {
    (indexed(&h.positive_spans, &h.positive_buckets), indexed(&h.negative_spans, &h.negative_buckets))
}

fn set_sides(h: &mut FloatHistogram, pos: &[(i32, f64)], neg: &[(i32, f64)]) {
    (h.positive_spans, h.positive_buckets) = layout(pos);
    (h.negative_spans, h.negative_buckets) = layout(neg);
}

/// Removes buckets with a count of zero (Prometheus's `Compact(0)`).
pub fn compact(h: &mut FloatHistogram) {
    let (mut pos, mut neg) = sides(h);
    pos.retain(|p| p.1 != 0.0);
    neg.retain(|p| p.1 != 0.0);
    set_sides(h, &pos, &neg);
}

/// Multiplies every count and the sum by `f`.
pub fn mul(h: &mut FloatHistogram, f: f64) {
    h.zero_count *= f;
    h.count *= f;
    h.sum *= f;
    h.positive_buckets.iter_mut().for_each(|b| *b *= f);
    h.negative_buckets.iter_mut().for_each(|b| *b *= f);
}

/// Divides every count and the sum by `d`.
pub fn div(h: &mut FloatHistogram, d: f64) {
    h.zero_count /= d;
    h.count /= d;
    h.sum /= d;
    h.positive_buckets.iter_mut().for_each(|b| *b /= d);
    h.negative_buckets.iter_mut().for_each(|b| *b /= d);
}

/// The zero count `h` has when its zero bucket is widened to at least `threshold`, and the
/// threshold it ends at: widened further to a bucket boundary when `threshold` falls inside a
/// populated bucket.
fn zero_count_for_threshold(h: &FloatHistogram, mut threshold: f64) -> (f64, f64) {
    if threshold == h.zero_threshold {
        return (h.zero_count, threshold);
    }
    let (pos, neg) = sides(h);
    'outer: loop {
        let mut count = h.zero_count;
        for &(i, c) in &pos {
            if lower_bound(h, i) >= threshold {
                break;
            }
            count += c;
            let upper = upper_bound(h, i);
            if upper > threshold {
                if c != 0.0 {
                    threshold = upper;
                }
                break;
            }
        }
        for &(i, c) in &neg {
            if lower_bound(h, i) >= threshold {
                break;
            }
            count += c;
            let upper = upper_bound(h, i);
            if upper > threshold {
                if c != 0.0 {
                    threshold = upper;
                    continue 'outer;
                }
                break;
            }
        }
        return (count, threshold);
    }
}

/// Widens `h`'s zero bucket to `threshold` (a value [`zero_count_for_threshold`] returned):
/// buckets inside it move into the zero count.
fn widen_zero_bucket(h: &mut FloatHistogram, count: f64, threshold: f64) {
    h.zero_count = count;
    h.zero_threshold = threshold;
    let (mut pos, mut neg) = sides(h);
    for side in [&mut pos, &mut neg] {
        for p in side.iter_mut() {
            if lower_bound(h, p.0) >= threshold {
                break;
            }
            p.1 = 0.0;
        }
    }
    pos.retain(|p| p.1 != 0.0);
    neg.retain(|p| p.1 != 0.0);
    set_sides(h, &pos, &neg);
}

/// Makes `h`'s zero bucket wide enough for `other`'s and returns `other`'s zero count for that
/// width (Prometheus's `reconcileZeroBuckets`).
fn reconcile_zero_buckets(h: &mut FloatHistogram, other: &FloatHistogram) -> f64 {
    let (mut other_count, mut other_threshold) = (other.zero_count, other.zero_threshold);
    while other_threshold != h.zero_threshold {
        if h.zero_threshold > other_threshold {
            (other_count, other_threshold) = zero_count_for_threshold(other, h.zero_threshold);
        }
        if other_threshold > h.zero_threshold {
            let (c, t) = zero_count_for_threshold(h, other_threshold);
            widen_zero_bucket(h, c, t);
        }
    }
    other_count
}

fn combine_hints(a: CounterResetHint, b: CounterResetHint) -> CounterResetHint {
    use CounterResetHint::*;
    match (a, b) {
        _ if a == b => a,
        (Gauge, _) | (_, Gauge) => Gauge,
        _ => Unknown,
    }
}

/// `h += other` (`negate`: `h -= other`), at the lower of both schemas and the wider zero bucket.
/// Buckets only one side has are kept; the result may hold empty buckets (see [`compact`]).
fn add_or_sub(h: &mut FloatHistogram, other: &FloatHistogram, negate: bool) -> Result<(), CombineError> {
    let (hc, oc) = (is_custom_buckets_schema(h.schema), is_custom_buckets_schema(other.schema));
    if hc != oc || (hc && h.custom_values != other.custom_values) {
        return Err(CombineError::IncompatibleBuckets);
    }
    if !negate {
        h.counter_reset_hint = combine_hints(h.counter_reset_hint, other.counter_reset_hint);
    }
    let other_zero = reconcile_zero_buckets(h, other);
    let sign = if negate { -1.0 } else { 1.0 };
    if negate {
        h.zero_count -= other_zero;
        h.count -= other.count;
        h.sum -= other.sum;
    } else {
        h.zero_count += other_zero;
        h.count += other.count;
        h.sum += other.sum;
    }
    let (hp, hn) = sides(h);
    let (op, on) = sides(other);
    let schema = h.schema.min(other.schema);
    let merge = |a: Vec<(i32, f64)>, b: Vec<(i32, f64)>| {
        let a = reduce(&a, h.schema, schema);
        let b = reduce(&b, other.schema, schema);
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            match (a.get(i), b.get(j)) {
                (Some(&x), Some(&y)) if x.0 == y.0 => {
                    out.push((x.0, if negate { x.1 - y.1 } else { x.1 + y.1 }));
                    i += 1;
                    j += 1;
                }
                (Some(&x), Some(&y)) if x.0 < y.0 => {
                    out.push(x);
                    i += 1;
                }
                (Some(&x), None) => {
                    out.push(x);
                    i += 1;
                }
                (_, Some(&y)) => {
                    out.push((y.0, sign * y.1));
                    j += 1;
                }
                (None, None) => break,
            }
        }
        out
    };
    let mut pos = merge(hp, op);
    let mut neg = merge(hn, on);
    h.schema = schema;
    // Buckets of `other` now inside the (widened) zero bucket were counted in its zero count.
    if !is_custom_buckets_schema(schema) && h.zero_threshold > 0.0 {
        let t = h.zero_threshold;
        pos.retain(|p| exp_bound(p.0, schema) > t);
        neg.retain(|p| exp_bound(p.0, schema) > t);
    }
    set_sides(h, &pos, &neg);
    Ok(())
}

/// `h += other` (Prometheus's `FloatHistogram.Add`).
pub fn add(h: &mut FloatHistogram, other: &FloatHistogram) -> Result<(), CombineError> {
    add_or_sub(h, other, false)
}

/// `h -= other` (Prometheus's `FloatHistogram.Sub`).
pub fn sub(h: &mut FloatHistogram, other: &FloatHistogram) -> Result<(), CombineError> {
    add_or_sub(h, other, true)
}

/// Whether `curr` follows a counter reset after `prev` (Prometheus's `DetectReset`): a count, the
/// zero count or a bucket decreased, a populated bucket disappeared, the schema rose or the zero
/// bucket shrank.
pub fn detect_reset(curr: &FloatHistogram, prev: &FloatHistogram) -> bool {
    match curr.counter_reset_hint {
        CounterResetHint::CounterReset => return true,
        CounterResetHint::NotCounterReset => return false,
        _ => {}
    }
    if curr.count < prev.count || curr.schema > prev.schema || curr.zero_threshold < prev.zero_threshold {
        return true;
    }
    if is_custom_buckets_schema(curr.schema) != is_custom_buckets_schema(prev.schema)
        || (is_custom_buckets_schema(curr.schema) && curr.custom_values != prev.custom_values)
    {
        return true;
    }
    let (prev_zero, threshold) = zero_count_for_threshold(prev, curr.zero_threshold);
    if threshold != curr.zero_threshold || curr.zero_count < prev_zero {
        return true;
    }
    let (cp, cn) = sides(curr);
    let (pp, pn) = sides(prev);
    for (c, p) in [(cp, pp), (cn, pn)] {
        let p = reduce(&p, prev.schema, curr.schema);
        let mut j = 0;
        for (i, pc) in p {
            if !is_custom_buckets_schema(curr.schema) && exp_bound(i, curr.schema) <= threshold {
                continue;
            }
            while c.get(j).is_some_and(|x| x.0 < i) {
                j += 1;
            }
            let cc = c.get(j).filter(|x| x.0 == i).map_or(0.0, |x| x.1);
            if cc < pc {
                return true;
            }
        }
    }
    false
}

/// All buckets from the most negative up (`reverse`: from the most positive down), with the zero
/// bucket (when populated) between the sides; bounds of buckets overlapping the zero bucket are
/// clipped to it (Prometheus's `AllBucketIterator`).
pub fn all_buckets(h: &FloatHistogram, reverse: bool) -> Vec<Bucket> {
    let (pos, neg) = sides(h);
    let t = h.zero_threshold;
    let mut out = Vec::with_capacity(pos.len() + neg.len() + 1);
    let mut negs: Vec<Bucket> = neg
        .iter()
        .map(|&(i, c)| {
            let mut upper = -lower_bound(h, i);
            if upper < 0.0 && upper > -t {
                upper = -t;
            }
            Bucket { lower: -upper_bound(h, i), upper, count: c }
        })
        .collect();
    let mut poss: Vec<Bucket> = pos
        .iter()
        .map(|&(i, c)| {
            let mut lower = lower_bound(h, i);
            if is_custom_buckets_schema(h.schema) {
                // The first custom bucket starts at -Inf (see `lower_bound`); no zero bucket.
            } else if lower > 0.0 && lower < t {
                lower = t;
            }
            Bucket { lower, upper: upper_bound(h, i), count: c }
        })
        .collect();
    let zero = (h.zero_count > 0.0).then_some(Bucket { lower: -t, upper: t, count: h.zero_count });
    if reverse {
        poss.reverse();
        out.extend(poss);
        out.extend(zero);
        out.extend(negs);
    } else {
        negs.reverse();
        out.extend(negs);
        out.extend(zero);
        out.extend(poss);
    }
    out
}

/// The zero bucket's bounds as the estimates use them: starting at 0 if the histogram has only
/// positive buckets, ending at 0 if only negative ones. A custom-bucket histogram's first bucket
/// (from -Inf) starts at 0 when its upper bound is not negative, like a classic histogram's.
fn clip_zero_bucket(h: &FloatHistogram, b: &mut Bucket) {
    if is_custom_buckets_schema(h.schema) {
        if b.lower == f64::NEG_INFINITY && b.upper >= 0.0 {
            b.lower = 0.0;
        }
        return;
    }
    if b.lower < 0.0 && b.upper > 0.0 {
        if h.negative_buckets.is_empty() && !h.positive_buckets.is_empty() {
            b.lower = 0.0;
        } else if h.positive_buckets.is_empty() && !h.negative_buckets.is_empty() {
            b.upper = 0.0;
        }
    }
}

/// The `q` quantile estimated from the buckets (Prometheus's `histogramQuantile`): linear
/// interpolation inside the bucket holding the rank.
pub fn quantile(q: f64, h: &FloatHistogram) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    if h.count == 0.0 || q.is_nan() {
        return f64::NAN;
    }
    let forward = h.sum.is_nan() || q < 0.5;
    let buckets = all_buckets(h, !forward);
    let mut rank = if forward { q * h.count } else { (1.0 - q) * h.count };
    let mut count = 0.0;
    let mut bucket = Bucket { lower: 0.0, upper: 0.0, count: 0.0 };
    for b in buckets {
        bucket = b;
        count += b.count;
        if count >= rank {
            break;
        }
    }
    if is_custom_buckets_schema(h.schema) {
        // The first bucket reaches down to -Inf, the last one up to +Inf: their finite bounds.
        if bucket.lower == f64::NEG_INFINITY && bucket.upper <= 0.0 {
            return bucket.upper;
        }
        if bucket.upper == f64::INFINITY {
            return bucket.lower;
        }
    }
    clip_zero_bucket(h, &mut bucket);
    if count > h.count {
        count = h.count;
    }
    if count < rank {
        return bucket.upper;
    }
    if forward {
        rank -= count - bucket.count;
    } else {
        rank = count - rank;
    }
    bucket.lower + (bucket.upper - bucket.lower) * (rank / bucket.count)
}

/// The estimated fraction of observations between `lower` and `upper` (Prometheus's
/// `histogramFraction`).
pub fn fraction(lower: f64, upper: f64, h: &FloatHistogram) -> f64 {
    if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for mut b in all_buckets(h, false) {
        clip_zero_bucket(h, &mut b);
        if !lower_set && b.lower >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && b.lower >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && b.lower < lower && b.upper > lower {
            lower_rank = rank + b.count * (lower - b.lower) / (b.upper - b.lower);
            lower_set = true;
        }
        if !upper_set && b.lower < upper && b.upper > upper {
            upper_rank = rank + b.count * (upper - b.lower) / (b.upper - b.lower);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank += b.count;
    }
    if !lower_set || lower_rank > h.count {
        lower_rank = h.count;
    }
    if !upper_set || upper_rank > h.count {
        upper_rank = h.count;
    }
    (upper_rank - lower_rank) / h.count
}

/// The estimated variance of the observations: each bucket's observations are taken at its
/// geometric mean (0 for a bucket containing 0), against the mean `sum / count`.
pub fn stdvar(h: &FloatHistogram) -> f64 {
    let mean = h.sum / h.count;
    let (mut var, mut c) = (0.0, 0.0);
    for b in all_buckets(h, false) {
        if b.count == 0.0 {
            continue;
        }
        let val = if b.lower <= 0.0 && 0.0 <= b.upper {
            0.0
        } else {
            let v = (b.upper * b.lower).sqrt();
            if b.upper < 0.0 {
                -v
            } else {
                v
            }
        };
        let delta = val - mean;
        (var, c) = super::functions::kahan_sum_inc(b.count * delta * delta, var, c);
    }
    (var + c) / h.count
}

/// Whether two histograms are equal as Prometheus's `Equals` sees them: same schema, zero
/// threshold, custom bounds and layout, and bit-equal counts and sum (the hint is not compared).
pub fn equals(a: &FloatHistogram, b: &FloatHistogram) -> bool {
    let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    a.schema == b.schema
        && a.zero_threshold == b.zero_threshold
        && a.zero_count.to_bits() == b.zero_count.to_bits()
        && a.count.to_bits() == b.count.to_bits()
        && a.sum.to_bits() == b.sum.to_bits()
        && a.custom_values == b.custom_values
        && layout(&indexed(&a.positive_spans, &a.positive_buckets)).0
            == layout(&indexed(&b.positive_spans, &b.positive_buckets)).0
        && layout(&indexed(&a.negative_spans, &a.negative_buckets)).0
            == layout(&indexed(&b.negative_spans, &b.negative_buckets)).0
        && bits(&a.positive_buckets) == bits(&b.positive_buckets)
        && bits(&a.negative_buckets) == bits(&b.negative_buckets)
}

#[cfg(test)]
#[path = "histogram_tests.rs"]
mod tests;
