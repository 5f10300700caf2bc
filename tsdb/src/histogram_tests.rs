//! Tests of histogram validation: each rule of Prometheus's `Validate`, and no panic on any input.

use super::*;
use proptest::prelude::*;

fn span(offset: i32, length: u32) -> Span {
    Span { offset, length }
}

fn valid() -> Histogram {
    Histogram {
        schema: 3,
        zero_threshold: 0.001,
        zero_count: 2,
        count: 2 + 3 + 5 + 1,
        sum: 12.5,
        positive_spans: vec![span(-2, 1), span(1, 1)],
        positive_buckets: vec![3, 2],
        negative_spans: vec![span(0, 1)],
        negative_buckets: vec![1],
        ..Histogram::default()
    }
}

fn custom() -> Histogram {
    Histogram {
        schema: CUSTOM_BUCKETS_SCHEMA,
        count: 4,
        sum: 3.0,
        positive_spans: vec![span(0, 2), span(1, 1)],
        positive_buckets: vec![1, 1, -1],
        custom_values: vec![0.1, 1.0, 10.0],
        ..Histogram::default()
    }
}

#[test]
fn valid_histograms_pass() {
    assert_eq!(valid().validate(), Ok(()));
    assert_eq!(valid().to_float().validate(), Ok(()));
    assert_eq!(custom().validate(), Ok(()));
    assert_eq!(custom().to_float().validate(), Ok(()));
    // A NaN sum allows more observations than the buckets hold.
    let h = Histogram { sum: f64::NAN, count: 100, ..valid() };
    assert_eq!(h.validate(), Ok(()));
}

#[test]
fn each_rule_is_named() {
    use HistogramError as E;
    use Side::*;
    let cases: Vec<(Histogram, HistogramError)> = vec![
        (Histogram { schema: 9, ..valid() }, E::InvalidSchema { schema: 9 }),
        (Histogram { schema: -5, ..valid() }, E::InvalidSchema { schema: -5 }),
        (
            Histogram { positive_spans: vec![span(0, 1), span(-1, 1)], ..valid() },
            E::SpanNegativeOffset { side: Positive, span: 2, offset: -1 },
        ),
        (
            Histogram { negative_spans: vec![span(0, 2)], ..valid() },
            E::SpansBucketsMismatch { side: Negative, spans: 2, buckets: 1 },
        ),
        (
            Histogram { positive_buckets: vec![3, -4], ..valid() },
            E::NegativeBucketCount { side: Positive, bucket: 2, count: -1.0 },
        ),
        (Histogram { count: 12, ..valid() }, E::CountMismatch { in_buckets: 11, count: 12 }),
        (Histogram { sum: f64::NAN, count: 10, ..valid() }, E::CountNotBigEnough { in_buckets: 11, count: 10 }),
        (Histogram { custom_values: vec![1.0], ..valid() }, E::ExponentialSchemaCustomBounds),
        (Histogram { custom_values: vec![0.1, f64::NAN, 10.0], ..custom() }, E::CustomBoundNaN { index: 2 }),
        (
            Histogram { custom_values: vec![0.1, 0.1, 10.0], ..custom() },
            E::CustomBoundsNotIncreasing { index: 2, prev: 0.1, curr: 0.1 },
        ),
        (Histogram { custom_values: vec![0.1, 1.0, f64::INFINITY], ..custom() }, E::CustomBoundInfinite),
        (Histogram { custom_values: vec![0.1, 1.0], ..custom() }, E::CustomBoundsTooFew { bounds: 2, span_length: 4 }),
        (
            Histogram { positive_spans: vec![span(-1, 2), span(1, 1)], ..custom() },
            E::SpanNegativeOffset { side: Positive, span: 1, offset: -1 },
        ),
        (Histogram { zero_count: 1, count: 5, ..custom() }, E::CustomBucketsZeroCount),
        (Histogram { zero_threshold: 0.5, ..custom() }, E::CustomBucketsZeroThreshold),
        (Histogram { negative_spans: vec![span(0, 0)], ..custom() }, E::CustomBucketsNegativeSpans),
        (Histogram { negative_buckets: vec![0], ..custom() }, E::CustomBucketsNegativeBuckets),
    ];
    for (h, want) in cases {
        assert_eq!(h.validate(), Err(want.clone()), "{h:?}");
        // The message names the problem.
        assert!(!want.to_string().is_empty());
    }
}

#[test]
fn float_rules() {
    use HistogramError as E;
    let f = valid().to_float();
    assert_eq!(FloatHistogram { count: -1.0, ..f.clone() }.validate(), Err(E::NegativeCount { count: -1.0 }));
    assert_eq!(FloatHistogram { zero_count: -2.0, ..f.clone() }.validate(), Err(E::NegativeZeroCount { count: -2.0 }));
    assert_eq!(
        FloatHistogram { negative_buckets: vec![-0.5], ..f.clone() }.validate(),
        Err(E::NegativeBucketCount { side: Side::Negative, bucket: 1, count: -0.5 })
    );
    // Float counts are not compared with the buckets' total.
    assert_eq!(FloatHistogram { count: 1e9, ..f }.validate(), Ok(()));
}

fn arb_spans() -> impl Strategy<Value = Vec<Span>> {
    proptest::collection::vec((any::<i32>(), any::<u32>()).prop_map(|(o, l)| span(o, l)), 0..4)
}

proptest! {
    #[test]
    fn validate_never_panics(
        schema in prop_oneof![any::<i32>(), -6i32..10, Just(-53)],
        zero_count in any::<u64>(),
        count in any::<u64>(),
        sum in any::<f64>(),
        zero_threshold in any::<f64>(),
        ps in arb_spans(),
        ns in arb_spans(),
        pb in proptest::collection::vec(any::<i64>(), 0..6),
        nb in proptest::collection::vec(any::<i64>(), 0..6),
        cv in proptest::collection::vec(any::<f64>(), 0..6),
    ) {
        let h = Histogram {
            counter_reset_hint: CounterResetHint::Unknown,
            schema, zero_threshold, zero_count, count, sum,
            positive_spans: ps, negative_spans: ns, positive_buckets: pb, negative_buckets: nb, custom_values: cv,
        };
        let _ = h.validate();
        let _ = h.to_float().validate();
    }
}

#[test]
fn reduce_resolution_merges_buckets() {
    // Schema 1 buckets -1, 0 and 3 (upper bounds 2^-0.5, 1, 2^1.5) fall in schema 0 buckets 0, 0, 2.
    let mut h = Histogram {
        schema: 1,
        count: 7,
        positive_spans: vec![span(-1, 2), span(2, 1)],
        positive_buckets: vec![1, 1, 2],
        negative_spans: vec![span(3, 2)],
        negative_buckets: vec![5, -5],
        ..Histogram::default()
    };
    let mut f = h.to_float();
    h.reduce_resolution(0).unwrap();
    assert_eq!(
        (h.schema, h.positive_spans.clone(), h.positive_buckets.clone()),
        (0, vec![span(0, 1), span(1, 1)], vec![3, 1])
    );
    // Negative buckets 3 and 4 become 2 and 2.
    assert_eq!((h.negative_spans.clone(), h.negative_buckets.clone()), (vec![span(2, 1)], vec![5]));
    f.reduce_resolution(0).unwrap();
    assert_eq!(f, h.to_float());
    // Two steps equal one.
    let mut g = Histogram { schema: 3, positive_spans: vec![span(-9, 20)], positive_buckets: vec![1; 20], ..h.clone() };
    let mut once = g.clone();
    once.reduce_resolution(0).unwrap();
    g.reduce_resolution(2).unwrap();
    g.reduce_resolution(0).unwrap();
    assert_eq!(g, once);
    assert!(matches!(
        Histogram { schema: 9, positive_spans: vec![span(0, 1), span(-2, 1)], positive_buckets: vec![1, 0], ..h }
            .reduce_resolution(8),
        Err(HistogramError::SpanNegativeOffset { .. })
    ));
}
