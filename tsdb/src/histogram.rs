//! Native histogram model: [`Histogram`] (integer counts, delta-encoded buckets) and
//! [`FloatHistogram`] (absolute float buckets), their [`Span`]s and [`CounterResetHint`], and
//! validation with the rules of Prometheus's `model/histogram` (`Validate`).
//!
//! Buckets are sparse: spans give runs of consecutive bucket indexes, the first span's offset is
//! the index of its first bucket, each later span's offset is the gap after the previous span.
//! Schema -4..=8 is exponential (bucket boundaries at powers of `2^(2^-schema)`); schema -53
//! ([`CUSTOM_BUCKETS_SCHEMA`]) has explicit upper bounds in `custom_values` and only positive
//! buckets (NHCB). Validation never panics: every sum wraps as Go's integer arithmetic does.

/// Smallest exponential schema accepted by validation.
pub const EXPONENTIAL_SCHEMA_MIN: i32 = -4;
/// Largest exponential schema accepted by validation.
pub const EXPONENTIAL_SCHEMA_MAX: i32 = 8;
/// Smallest schema a chunk may hold (reserved for future resolutions).
pub const EXPONENTIAL_SCHEMA_MIN_RESERVED: i32 = -9;
/// Largest schema a chunk may hold (reserved for future resolutions).
pub const EXPONENTIAL_SCHEMA_MAX_RESERVED: i32 = 52;
/// The schema of histograms with custom bucket bounds.
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// Whether `schema` is the custom-buckets schema.
pub fn is_custom_buckets_schema(schema: i32) -> bool {
    schema == CUSTOM_BUCKETS_SCHEMA
}

/// Whether `schema` is a valid exponential schema (-4..=8).
pub fn is_exponential_schema(schema: i32) -> bool {
    (EXPONENTIAL_SCHEMA_MIN..=EXPONENTIAL_SCHEMA_MAX).contains(&schema)
}

/// Whether a chunk may hold `schema`: custom buckets or an exponential schema in the reserved
/// range -9..=52 (Prometheus's `IsKnownSchema`).
pub fn is_known_schema(schema: i32) -> bool {
    is_custom_buckets_schema(schema)
        || (EXPONENTIAL_SCHEMA_MIN_RESERVED..=EXPONENTIAL_SCHEMA_MAX_RESERVED).contains(&schema)
}

/// A run of consecutive buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// For the first span, the index of its first bucket; for later ones, the number of empty
    /// buckets between the previous span and this one.
    pub offset: i32,
    /// Number of consecutive buckets.
    pub length: u32,
}

/// What is known about a counter reset between this histogram and the previous one of the series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CounterResetHint {
    /// Nothing is known; readers compare with the previous histogram.
    #[default]
    Unknown,
    /// There was a counter reset.
    CounterReset,
    /// There was no counter reset.
    NotCounterReset,
    /// The histogram is a gauge: counter resets do not apply.
    Gauge,
}

/// A native histogram with integer counts; buckets hold the delta to the previous bucket of the
/// same side (the first bucket holds its absolute count).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// Counter-reset knowledge.
    pub counter_reset_hint: CounterResetHint,
    /// Resolution: -4..=8 exponential, -53 custom buckets.
    pub schema: i32,
    /// Observations with an absolute value up to this land in the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: u64,
    /// Total observations.
    pub count: u64,
    /// Sum of observations (may be NaN, including the stale marker).
    pub sum: f64,
    /// Spans of the positive buckets.
    pub positive_spans: Vec<Span>,
    /// Spans of the negative buckets.
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts, delta encoded.
    pub positive_buckets: Vec<i64>,
    /// Negative bucket counts, delta encoded.
    pub negative_buckets: Vec<i64>,
    /// Upper bounds of the custom buckets (schema -53 only), strictly increasing, without +Inf.
    pub custom_values: Vec<f64>,
}

/// A native histogram with float counts; buckets hold absolute counts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FloatHistogram {
    /// Counter-reset knowledge.
    pub counter_reset_hint: CounterResetHint,
    /// Resolution: -4..=8 exponential, -53 custom buckets.
    pub schema: i32,
    /// Observations with an absolute value up to this land in the zero bucket.
    pub zero_threshold: f64,
    /// Observations in the zero bucket.
    pub zero_count: f64,
    /// Total observations.
    pub count: f64,
    /// Sum of observations.
    pub sum: f64,
    /// Spans of the positive buckets.
    pub positive_spans: Vec<Span>,
    /// Spans of the negative buckets.
    pub negative_spans: Vec<Span>,
    /// Positive bucket counts, absolute.
    pub positive_buckets: Vec<f64>,
    /// Negative bucket counts, absolute.
    pub negative_buckets: Vec<f64>,
    /// Upper bounds of the custom buckets (schema -53 only).
    pub custom_values: Vec<f64>,
}

/// Which bucket side a validation error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Positive buckets.
    Positive,
    /// Negative buckets.
    Negative,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Positive => "positive",
            Side::Negative => "negative",
        })
    }
}

/// Why a histogram is invalid (Prometheus's `Validate` errors).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[allow(missing_docs, reason = "each variant's message names its fields")]
pub enum HistogramError {
    #[error("histogram has an invalid schema {schema}, which must be between -4 and 8 for exponential buckets, or -53 for custom buckets")]
    InvalidSchema { schema: i32 },
    #[error("{side} side: span number {span} with offset {offset}: histogram has a span whose offset is negative")]
    SpanNegativeOffset { side: Side, span: usize, offset: i32 },
    #[error("{side} side: spans need {spans} buckets, have {buckets} buckets")]
    SpansBucketsMismatch { side: Side, spans: u64, buckets: usize },
    #[error("{side} side: bucket number {bucket} has observation count of {count}")]
    NegativeBucketCount { side: Side, bucket: usize, count: f64 },
    #[error("zero bucket has observation count of {count}")]
    NegativeZeroCount { count: f64 },
    #[error("observation count is {count}")]
    NegativeCount { count: f64 },
    #[error("{in_buckets} observations found in buckets, but the Count field is {count}")]
    CountMismatch { in_buckets: u64, count: u64 },
    #[error("{in_buckets} observations found in buckets, but the Count field is only {count} (sum is NaN)")]
    CountNotBigEnough { in_buckets: u64, count: u64 },
    #[error("custom buckets: bound number {index} is NaN")]
    CustomBoundNaN { index: usize },
    #[error("custom buckets: bounds must be strictly increasing, bound number {index} is {curr} after {prev}")]
    CustomBoundsNotIncreasing { index: usize, prev: f64, curr: f64 },
    #[error("custom buckets: last +Inf bound must not be explicitly defined")]
    CustomBoundInfinite,
    #[error(
        "custom buckets: only {bounds} custom bounds defined, insufficient for a total span length of {span_length}"
    )]
    CustomBoundsTooFew { bounds: usize, span_length: i64 },
    #[error("custom buckets: must have zero count of 0")]
    CustomBucketsZeroCount,
    #[error("custom buckets: must have zero threshold of 0")]
    CustomBucketsZeroThreshold,
    #[error("custom buckets: must not have negative spans")]
    CustomBucketsNegativeSpans,
    #[error("custom buckets: must not have negative buckets")]
    CustomBucketsNegativeBuckets,
    #[error("histogram with exponential schema must not have custom bounds")]
    ExponentialSchemaCustomBounds,
}

/// Checks that spans after the first have non-negative offsets and cover `buckets` buckets.
fn check_spans(side: Side, spans: &[Span], buckets: usize, first_may_be_negative: bool) -> Result<(), HistogramError> {
    let mut total = 0u64;
    for (n, span) in spans.iter().enumerate() {
        if (n > 0 || !first_may_be_negative) && span.offset < 0 {
            return Err(HistogramError::SpanNegativeOffset { side, span: n + 1, offset: span.offset });
        }
        total += u64::from(span.length);
    }
    if total != buckets as u64 {
        return Err(HistogramError::SpansBucketsMismatch { side, spans: total, buckets });
    }
    Ok(())
}

/// Checks custom bounds: no NaN, strictly increasing, no explicit +Inf, enough of them for the
/// spans (Prometheus's `checkHistogramCustomBounds`).
fn check_custom_bounds(bounds: &[f64], spans: &[Span], buckets: usize) -> Result<(), HistogramError> {
    let mut prev = f64::NEG_INFINITY;
    for (i, &curr) in bounds.iter().enumerate() {
        if curr.is_nan() {
            return Err(HistogramError::CustomBoundNaN { index: i + 1 });
        }
        if i > 0 && curr <= prev {
            return Err(HistogramError::CustomBoundsNotIncreasing { index: i + 1, prev, curr });
        }
        prev = curr;
    }
    if prev == f64::INFINITY {
        return Err(HistogramError::CustomBoundInfinite);
    }
    check_spans(Side::Positive, spans, buckets, false)?;
    let span_length: i64 = spans.iter().map(|s| i64::from(s.length) + i64::from(s.offset)).sum();
    if (bounds.len() as i64).saturating_add(1) < span_length {
        return Err(HistogramError::CustomBoundsTooFew { bounds: bounds.len(), span_length });
    }
    Ok(())
}

/// Sums delta-encoded buckets into `total`, failing on a negative absolute count. Wraps as Go does.
fn check_int_buckets(side: Side, buckets: &[i64], total: &mut u64) -> Result<(), HistogramError> {
    let mut last = 0i64;
    for (i, &delta) in buckets.iter().enumerate() {
        let c = last.wrapping_add(delta);
        if c < 0 {
            return Err(HistogramError::NegativeBucketCount { side, bucket: i + 1, count: c as f64 });
        }
        last = c;
        *total = total.wrapping_add(c as u64);
    }
    Ok(())
}

/// Fails on a negative (absolute) float bucket count.
fn check_float_buckets(side: Side, buckets: &[f64]) -> Result<(), HistogramError> {
    match buckets.iter().position(|&c| c < 0.0) {
        Some(i) => Err(HistogramError::NegativeBucketCount { side, bucket: i + 1, count: buckets[i] }),
        None => Ok(()),
    }
}

/// The custom-bucket rules shared by both histogram kinds.
fn check_custom_schema(
    custom_values: &[f64],
    positive_spans: &[Span],
    positive_buckets: usize,
    zero_count_is_zero: bool,
    zero_threshold: f64,
    negative_spans: &[Span],
    negative_buckets: usize,
) -> Result<(), HistogramError> {
    check_custom_bounds(custom_values, positive_spans, positive_buckets)?;
    if !zero_count_is_zero {
        return Err(HistogramError::CustomBucketsZeroCount);
    }
    if zero_threshold != 0.0 {
        return Err(HistogramError::CustomBucketsZeroThreshold);
    }
    if !negative_spans.is_empty() {
        return Err(HistogramError::CustomBucketsNegativeSpans);
    }
    if negative_buckets > 0 {
        return Err(HistogramError::CustomBucketsNegativeBuckets);
    }
    Ok(())
}

impl Histogram {
    /// Checks the histogram as Prometheus's `Histogram.Validate` does.
    pub fn validate(&self) -> Result<(), HistogramError> {
        let mut negative = 0u64;
        if is_custom_buckets_schema(self.schema) {
            check_custom_schema(
                &self.custom_values,
                &self.positive_spans,
                self.positive_buckets.len(),
                self.zero_count == 0,
                self.zero_threshold,
                &self.negative_spans,
                self.negative_buckets.len(),
            )?;
        } else if is_exponential_schema(self.schema) {
            check_spans(Side::Positive, &self.positive_spans, self.positive_buckets.len(), true)?;
            check_spans(Side::Negative, &self.negative_spans, self.negative_buckets.len(), true)?;
            check_int_buckets(Side::Negative, &self.negative_buckets, &mut negative)?;
            if !self.custom_values.is_empty() {
                return Err(HistogramError::ExponentialSchemaCustomBounds);
            }
        } else {
            return Err(HistogramError::InvalidSchema { schema: self.schema });
        }
        let mut positive = 0u64;
        check_int_buckets(Side::Positive, &self.positive_buckets, &mut positive)?;
        let in_buckets = negative.wrapping_add(positive).wrapping_add(self.zero_count);
        if self.sum.is_nan() {
            if in_buckets > self.count {
                return Err(HistogramError::CountNotBigEnough { in_buckets, count: self.count });
            }
        } else if in_buckets != self.count {
            return Err(HistogramError::CountMismatch { in_buckets, count: self.count });
        }
        Ok(())
    }

    /// The same histogram with float counts and absolute buckets.
    pub fn to_float(&self) -> FloatHistogram {
        FloatHistogram {
            counter_reset_hint: self.counter_reset_hint,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count as f64,
            count: self.count as f64,
            sum: self.sum,
            positive_spans: self.positive_spans.clone(),
            negative_spans: self.negative_spans.clone(),
            positive_buckets: absolute(&self.positive_buckets),
            negative_buckets: absolute(&self.negative_buckets),
            custom_values: self.custom_values.clone(),
        }
    }
}

/// Absolute float counts of delta-encoded integer buckets.
fn absolute(deltas: &[i64]) -> Vec<f64> {
    let mut current = 0i64;
    deltas
        .iter()
        .map(|&d| {
            current = current.wrapping_add(d);
            current as f64
        })
        .collect()
}

impl FloatHistogram {
    /// Checks the histogram as Prometheus's `FloatHistogram.Validate` does (no count-vs-buckets
    /// check: float counts may carry rounding error).
    pub fn validate(&self) -> Result<(), HistogramError> {
        if is_custom_buckets_schema(self.schema) {
            check_custom_schema(
                &self.custom_values,
                &self.positive_spans,
                self.positive_buckets.len(),
                self.zero_count == 0.0,
                self.zero_threshold,
                &self.negative_spans,
                self.negative_buckets.len(),
            )?;
        } else if is_exponential_schema(self.schema) {
            check_spans(Side::Positive, &self.positive_spans, self.positive_buckets.len(), true)?;
            check_spans(Side::Negative, &self.negative_spans, self.negative_buckets.len(), true)?;
            check_float_buckets(Side::Negative, &self.negative_buckets)?;
            if self.zero_count < 0.0 {
                return Err(HistogramError::NegativeZeroCount { count: self.zero_count });
            }
            if !self.custom_values.is_empty() {
                return Err(HistogramError::ExponentialSchemaCustomBounds);
            }
        } else {
            return Err(HistogramError::InvalidSchema { schema: self.schema });
        }
        if self.count < 0.0 {
            return Err(HistogramError::NegativeCount { count: self.count });
        }
        check_float_buckets(Side::Positive, &self.positive_buckets)
    }
}

/// Merges absolute bucket counts into the coarser schema `origin - shift` (Prometheus's
/// `reduceResolution`): bucket `i` joins bucket `((i - 1) >> shift) + 1`. Spans after the first
/// must have non-negative offsets; spans and counts must agree in number.
fn reduce_buckets<T: Copy>(
    side: Side,
    spans: &[Span],
    counts: &[T],
    shift: u32,
    add: impl Fn(T, T) -> T,
) -> Result<(Vec<Span>, Vec<T>), HistogramError> {
    check_spans(side, spans, counts.len(), true)?;
    let mut out_spans: Vec<Span> = Vec::new();
    let mut out: Vec<T> = Vec::new();
    let mut last = 0i64;
    let mut counts = counts.iter().copied();
    let mut idx = 0i64;
    for s in spans {
        idx += i64::from(s.offset);
        for _ in 0..s.length {
            let Some(c) = counts.next() else { break };
            let target = ((idx - 1) >> shift.min(63)) + 1;
            match (out_spans.last_mut(), out.last_mut()) {
                (Some(_), Some(prev)) if target == last => *prev = add(*prev, c),
                (Some(span), Some(_)) if target == last + 1 => {
                    span.length += 1;
                    out.push(c);
                }
                (Some(_), _) => {
                    out_spans.push(Span { offset: (target - last - 1) as i32, length: 1 });
                    out.push(c);
                }
                (None, _) => {
                    out_spans.push(Span { offset: target as i32, length: 1 });
                    out.push(c);
                }
            }
            last = target;
            idx += 1;
        }
    }
    Ok((out_spans, out))
}

fn absolute_ints(deltas: &[i64]) -> Vec<i64> {
    deltas
        .iter()
        .scan(0i64, |c, &d| {
            *c = c.wrapping_add(d);
            Some(*c)
        })
        .collect()
}

fn delta_ints(abs: &[i64]) -> Vec<i64> {
    abs.iter().scan(0i64, |prev, &a| Some(a.wrapping_sub(std::mem::replace(prev, a)))).collect()
}

impl Histogram {
    /// Lowers an exponential histogram's schema to `target`, merging buckets (Prometheus's
    /// `ReduceResolution`). Does nothing unless `target < schema` and both are exponential.
    pub fn reduce_resolution(&mut self, target: i32) -> Result<(), HistogramError> {
        if is_custom_buckets_schema(self.schema) || is_custom_buckets_schema(target) || target >= self.schema {
            return Ok(());
        }
        let shift = (i64::from(self.schema) - i64::from(target)) as u32;
        let add = |a: i64, b: i64| a.wrapping_add(b);
        let (ps, pb) =
            reduce_buckets(Side::Positive, &self.positive_spans, &absolute_ints(&self.positive_buckets), shift, add)?;
        let (ns, nb) =
            reduce_buckets(Side::Negative, &self.negative_spans, &absolute_ints(&self.negative_buckets), shift, add)?;
        (self.positive_spans, self.positive_buckets) = (ps, delta_ints(&pb));
        (self.negative_spans, self.negative_buckets) = (ns, delta_ints(&nb));
        self.schema = target;
        Ok(())
    }
}

impl FloatHistogram {
    /// Lowers an exponential histogram's schema to `target`, merging buckets (Prometheus's
    /// `ReduceResolution`). Does nothing unless `target < schema` and both are exponential.
    pub fn reduce_resolution(&mut self, target: i32) -> Result<(), HistogramError> {
        if is_custom_buckets_schema(self.schema) || is_custom_buckets_schema(target) || target >= self.schema {
            return Ok(());
        }
        let shift = (i64::from(self.schema) - i64::from(target)) as u32;
        let add = |a: f64, b: f64| a + b;
        let (ps, pb) = reduce_buckets(Side::Positive, &self.positive_spans, &self.positive_buckets, shift, add)?;
        let (ns, nb) = reduce_buckets(Side::Negative, &self.negative_spans, &self.negative_buckets, shift, add)?;
        (self.positive_spans, self.positive_buckets, self.negative_spans, self.negative_buckets) = (ps, pb, ns, nb);
        self.schema = target;
        Ok(())
    }
}

/// Number of buckets the spans describe.
pub fn count_spans(spans: &[Span]) -> u64 {
    spans.iter().map(|s| u64::from(s.length)).sum()
}

#[cfg(test)]
#[path = "histogram_tests.rs"]
mod tests;

/// The value of one native histogram sample as stored: integer counts (`Histogram`, Prometheus's
/// `histogram.Histogram`) or float counts (`FloatHistogram`). A series' chunks keep the kind they
/// were appended with; queries read both as [`FloatHistogram`].
#[derive(Debug, Clone, PartialEq)]
pub enum HistogramValue {
    /// Integer counts.
    Int(Histogram),
    /// Float counts.
    Float(FloatHistogram),
}

impl HistogramValue {
    /// The value with float counts (a clone for [`HistogramValue::Float`]).
    pub fn to_float(&self) -> FloatHistogram {
        match self {
            HistogramValue::Int(h) => h.to_float(),
            HistogramValue::Float(h) => h.clone(),
        }
    }

    /// Checks the value as Prometheus's `Validate` does for its kind.
    pub fn validate(&self) -> Result<(), HistogramError> {
        match self {
            HistogramValue::Int(h) => h.validate(),
            HistogramValue::Float(h) => h.validate(),
        }
    }

    /// The sum of observations: a stale marker (Prometheus's `value.StaleNaN`) in `sum` marks the
    /// sample stale.
    pub fn sum(&self) -> f64 {
        match self {
            HistogramValue::Int(h) => h.sum,
            HistogramValue::Float(h) => h.sum,
        }
    }
}
