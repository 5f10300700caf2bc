use super::*;
use proptest::prelude::*;

fn hist(schema: i32, pos: &[(i32, f64)], neg: &[(i32, f64)], zero: f64, zt: f64) -> FloatHistogram {
    let mut h = FloatHistogram { schema, zero_count: zero, zero_threshold: zt, ..FloatHistogram::default() };
    set_sides(&mut h, pos, neg);
    h.count = zero + pos.iter().chain(neg).map(|p| p.1).sum::<f64>();
    h.sum = 1.0;
    h
}

#[test]
fn layout_round_trips() {
    let pairs = vec![(-2, 1.0), (-1, 2.0), (3, 0.0), (4, 5.0)];
    let (spans, buckets) = layout(&pairs);
    assert_eq!(spans, vec![Span { offset: -2, length: 2 }, Span { offset: 3, length: 2 }]);
    assert_eq!(indexed(&spans, &buckets), pairs);
}

#[test]
fn add_reduces_to_the_lower_schema() {
    // Schema -1 bucket 1 is (1, 4]; schema 0 buckets 1 and 2 are (1, 2] and (2, 4].
    let mut a = hist(-1, &[(1, 1.0)], &[], 0.0, 0.0);
    let b = hist(0, &[(1, 2.0), (2, 2.0)], &[], 0.0, 0.0);
    add(&mut a, &b).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.schema, -1);
    assert_eq!(indexed(&a.positive_spans, &a.positive_buckets), vec![(1, 5.0)]);
    assert_eq!(a.count, 5.0);
}

#[test]
fn add_widens_the_zero_bucket() {
    // Threshold 1.5 falls inside populated bucket (1, 2]: widened to 2, which takes buckets 0 and 1.
    let mut a = hist(0, &[(0, 1.0), (1, 1.0), (2, 1.0)], &[], 0.0, 0.0);
    let b = hist(0, &[(3, 1.0)], &[], 2.0, 1.5);
    add(&mut a, &b).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.zero_threshold, 2.0);
    assert_eq!(a.zero_count, 4.0);
    assert_eq!(indexed(&a.positive_spans, &a.positive_buckets), vec![(2, 1.0), (3, 1.0)]);
}

#[test]
fn custom_buckets_must_match() {
    let mut a = hist(-53, &[(0, 1.0)], &[], 0.0, 0.0);
    a.custom_values = vec![1.0];
    let mut b = a.clone();
    b.custom_values = vec![2.0];
    assert_eq!(add(&mut a, &b), Err(CombineError::IncompatibleBuckets));
}

#[test]
fn resets_are_detected() {
    let prev = hist(0, &[(0, 2.0), (1, 2.0)], &[], 0.0, 0.0);
    let grown = hist(0, &[(0, 3.0), (1, 2.0), (5, 1.0)], &[], 0.0, 0.0);
    assert!(!detect_reset(&grown, &prev));
    let lost = hist(0, &[(0, 5.0)], &[], 0.0, 0.0);
    assert!(detect_reset(&lost, &prev));
    let finer = hist(1, &[(0, 5.0), (1, 5.0), (2, 5.0)], &[], 0.0, 0.0);
    assert!(detect_reset(&finer, &prev));
}

#[test]
fn quantile_interpolates_in_the_bucket() {
    // 1 in (0.5, 1], 2 in (1, 2], 1 in (2, 4]: the median is in the middle of (1, 2].
    let h = hist(0, &[(0, 1.0), (1, 2.0), (2, 1.0)], &[], 0.0, 0.0);
    assert_eq!(quantile(0.5, &h), 1.5);
    assert_eq!(quantile(1.5, &h), f64::INFINITY);
    assert_eq!(quantile(-0.5, &h), f64::NEG_INFINITY);
    assert_eq!(fraction(1.0, 2.0, &h), 0.5);
    assert_eq!(fraction(0.0, 8.0, &h), 1.0);
}

#[test]
fn stdvar_uses_bucket_midpoints() {
    // Four observations of ~1 in one narrow bucket: tiny variance around a mean of 1.
    let h = FloatHistogram { count: 4.0, sum: 4.0, ..hist(8, &[(0, 4.0)], &[], 0.0, 0.0) };
    assert!(stdvar(&h) < 1e-4);
}

/// Populated buckets above the zero bucket's threshold of 0.001 (schema 0 and 1: index > -9).
fn arb_side() -> impl Strategy<Value = Vec<(i32, f64)>> {
    proptest::collection::btree_map(-8i32..20, 1u32..100, 0..10)
        .prop_map(|m| m.into_iter().map(|(i, c)| (i, f64::from(c))).collect())
}

proptest! {
    #[test]
    fn add_then_sub_is_identity_on_equal_layouts(pos in arb_side(), neg in arb_side(), z in 0u32..10,
        scale in 0u32..5) {
        let a = hist(1, &pos, &neg, f64::from(z), 0.001);
        let mut b = a.clone();
        mul(&mut b, f64::from(scale));
        let mut c = a.clone();
        add(&mut c, &b).unwrap_or_else(|e| panic!("{e}"));
        sub(&mut c, &b).unwrap_or_else(|e| panic!("{e}"));
        prop_assert!(equals(&c, &a), "{c:?} != {a:?}");
    }

    #[test]
    fn quantile_is_monotonic_in_q(pos in arb_side(), neg in arb_side(), z in 0u32..10,
        q1 in 0.0f64..=1.0, q2 in 0.0f64..=1.0) {
        let h = hist(0, &pos, &neg, f64::from(z), 0.001);
        prop_assume!(h.count > 0.0);
        let (lo, hi) = if q1 <= q2 { (q1, q2) } else { (q2, q1) };
        prop_assert!(quantile(lo, &h) <= quantile(hi, &h), "q {lo} {hi}");
    }
}
