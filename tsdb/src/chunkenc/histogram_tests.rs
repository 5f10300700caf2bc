//! Tests of the histogram chunks ([`HistogramChunk`], [`FloatHistogramChunk`]): golden
//! Prometheus bytes, round trips, chunk cutting and counter-reset headers, corrupt input.

use super::histogram_meta::{frexp, STALE_NAN_BITS};
use super::*;
use crate::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};
use proptest::prelude::*;

/// Packs a bit string ('0'/'1'; spaces ignored) MSB first into bytes, zero-padding the last one.
fn pack(bits: &str) -> Vec<u8> {
    let bits: Vec<u8> = bits.bytes().filter(|b| !b.is_ascii_whitespace()).map(|b| b - b'0').collect();
    bits.chunks(8).map(|c| c.iter().enumerate().fold(0u8, |acc, (i, &b)| acc | (b << (7 - i)))).collect()
}

/// `n` bits of `v`, MSB first, as a bit string.
fn bin(v: u64, n: u32) -> String {
    (0..n).rev().map(|i| if (v >> i) & 1 == 1 { '1' } else { '0' }).collect()
}

fn span(offset: i32, length: u32) -> Span {
    Span { offset, length }
}

fn int_h(count: u64, zero: u64, sum: f64, buckets: &[i64]) -> Histogram {
    Histogram {
        schema: 0,
        zero_threshold: 2f64.powi(-128),
        count,
        zero_count: zero,
        sum,
        positive_spans: vec![span(0, 2)],
        positive_buckets: buckets.to_vec(),
        ..Histogram::default()
    }
}

/// Hand derivation of Prometheus's bytes for two integer histograms (schema 0, zero threshold
/// 2^-128, one positive span {0, 2}), following `appendHistogram`, `writeHistogramChunkLayout`,
/// `putVarbitInt`/`putVarbitUint` and `xorWrite` in Prometheus's `tsdb/chunkenc`:
///
/// ```text
/// header             00 02 00        2 samples; flag byte: unknown counter reset (00xxxxxx)
/// zero threshold     01110100        frexp(2^-128) = 0.5 * 2^-127 -> byte -127 + 243 = 116
/// schema 0           0               varbit 0
/// positive spans     10 001          count 1 (varbit '10' + 3 bits)
///                    10 010 0        length 2, offset 0
/// negative spans     0               count 0
/// s0 t=1000          11110 001111101000   1000 fits 12 bits (-2047..2048), not 9
/// s0 count=7         10 111
/// s0 zero count=1    10 001
/// s0 sum=10.0        0x4024000000000000 as 64 raw bits
/// s0 buckets [2, 2]  10 010  10 010  (deltas: absolute 2, 4)
/// s1 t=2000          11110 001111101000   tΔ 1000, dod 1000
/// s1 count=8         10 001          countΔ 1, dod 1
/// s1 zero count=1    0               dod 0
/// s1 sum=11.5        11 01110 000010 11
///                                    10.0 ^ 11.5 = 0x0003000000000000: leading 14,
///                                    trailing 48, no window yet -> '11', 14, sig 2, bits '11'
/// s1 buckets [2, 3]  0  10 001       delta-encoded (absolute [2, 5]); bucket 0: Δ 0,
///                                    dod 0; bucket 1: Δ 1, dod 1
/// ```
#[test]
fn golden_integer_histogram_chunk() {
    let bits = [
        "01110100",
        "0",
        "10 001 10 010 0",
        "0",
        "11110 001111101000",
        "10 111",
        "10 001",
        &bin(0x4024_0000_0000_0000, 64),
        "10 010 10 010",
        "11110 001111101000",
        "10 001",
        "0",
        "11 01110 000010 11",
        "0 10 001",
    ]
    .concat();
    let mut want = vec![0x00, 0x02, 0x00];
    want.extend(pack(&bits));

    let mut c = HistogramChunk::default();
    c.append(1000, &int_h(7, 1, 10.0, &[2, 2])).unwrap();
    c.append(2000, &int_h(8, 1, 11.5, &[2, 3])).unwrap();
    assert_eq!(c.bytes(), &want[..], "\n got {:02x?}\nwant {want:02x?}", c.bytes());

    let got: Vec<_> = c.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], (1000, int_h(7, 1, 10.0, &[2, 2])));
    let mut second = int_h(8, 1, 11.5, &[2, 3]);
    second.counter_reset_hint = CounterResetHint::NotCounterReset;
    assert_eq!(got[1], (2000, second));
}

/// The float chunk of the same two histograms (absolute buckets [2, 4] then [2, 5]), following
/// `appendFloatHistogram` and `xorWrite`:
///
/// ```text
/// header, layout     as in the integer chunk
/// s0 t=1000          11110 001111101000
/// s0 count, zero count, sum, buckets: raw 64 bits each of 7.0, 1.0, 10.0, 2.0, 4.0
/// s1 t=2000          11110 001111101000
/// s1 count 8.0       11 01010 000100 1111   7.0 ^ 8.0 = 0x003c000000000000: leading 10,
///                                           trailing 50, sig 4
/// s1 zero count 1.0  0
/// s1 sum 11.5        11 01110 000010 11
/// s1 bucket 0 2.0    0
/// s1 bucket 1 5.0    11 01101 000001 1      4.0 ^ 5.0 = 0x0004000000000000: leading 13,
///                                           trailing 50, sig 1
/// ```
#[test]
fn golden_float_histogram_chunk() {
    let raw = |v: f64| bin(v.to_bits(), 64);
    let bits = [
        "01110100 0 10 001 10 010 0 0".to_string(),
        "11110 001111101000".into(),
        raw(7.0),
        raw(1.0),
        raw(10.0),
        raw(2.0),
        raw(4.0),
        "11110 001111101000".into(),
        "11 01010 000100 1111".into(),
        "0".into(),
        "11 01110 000010 11".into(),
        "0".into(),
        "11 01101 000001 1".into(),
    ]
    .concat();
    let mut want = vec![0x00, 0x02, 0x00];
    want.extend(pack(&bits));

    let mut c = FloatHistogramChunk::default();
    let a = int_h(7, 1, 10.0, &[2, 2]).to_float();
    let b = int_h(8, 1, 11.5, &[2, 3]).to_float();
    c.append(1000, &a).unwrap();
    c.append(2000, &b).unwrap();
    assert_eq!(c.bytes(), &want[..], "\n got {:02x?}\nwant {want:02x?}", c.bytes());
    let got: Vec<_> = c.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(got[0], (1000, a));
    assert_eq!(got[1], (2000, FloatHistogram { counter_reset_hint: CounterResetHint::NotCounterReset, ..b }));
}

/// A custom-buckets layout (schema -53) with a counter-reset header:
///
/// ```text
/// header             00 01 80        1 sample; flag 10xxxxxx: counter reset
/// zero threshold     00000000        0
/// schema -53         1110 111001011  fits 9 bits; 512 - 53 = 459
/// positive spans     10 001  10 011 0   one span {0, 3}
/// negative spans     0
/// custom bounds      10 010          2 bounds
///                    1110 111110101  0.5 * 1000 = 500, written + 1 = 501
///                    11110 001111101001   1.0 -> 1001
/// s0 t=0, count 3, zero count 0: 0  10 011  0
/// s0 sum 0.0         64 zero bits
/// s0 buckets [1, 0, 0]  10 001  0  0
/// ```
#[test]
fn golden_custom_buckets_layout() {
    let bits = [
        "00000000 1110 111001011 10 001 10 011 0 0",
        "10 010 1110 111110101 11110 001111101001",
        "0 10 011 0",
        &"0".repeat(64),
        "10 001 0 0",
    ]
    .concat();
    let mut want = vec![0x00, 0x01, 0x80];
    want.extend(pack(&bits));
    let h = Histogram {
        counter_reset_hint: CounterResetHint::CounterReset,
        schema: -53,
        count: 3,
        positive_spans: vec![span(0, 3)],
        positive_buckets: vec![1, 0, 0],
        custom_values: vec![0.5, 1.0],
        ..Histogram::default()
    };
    h.validate().unwrap();
    let mut c = HistogramChunk::default();
    c.append(0, &h).unwrap();
    assert_eq!(c.bytes(), &want[..]);
    assert_eq!(c.counter_reset_header(), CounterResetHeader::CounterReset);
    let (t, got) = c.iter().next().unwrap().unwrap();
    // The first sample of a chunk decodes with an unknown hint; the header carries the reset.
    assert_eq!((t, got), (0, Histogram { counter_reset_hint: CounterResetHint::Unknown, ..h }));
}

#[test]
fn frexp_matches_go() {
    assert_eq!(frexp(1.0), (0.5, 1));
    assert_eq!(frexp(2f64.powi(-128)), (0.5, -127));
    assert_eq!(frexp(0.75), (0.75, 0));
    assert_eq!(frexp(-3.0), (-0.75, 2));
    assert_eq!(frexp(f64::MIN_POSITIVE / 4.0), (0.5, -1023));
}

#[test]
fn zero_thresholds_round_trip() {
    for zt in [0.0, 2f64.powi(-242), 2f64.powi(-243), 1024.0, 2048.0, 0.001, 1e-300, f64::MIN_POSITIVE / 8.0] {
        let h = Histogram { zero_threshold: zt, ..Histogram::default() };
        let mut c = HistogramChunk::default();
        c.append(5, &h).unwrap();
        let (_, got) = c.iter().next().unwrap().unwrap();
        assert_eq!(got.zero_threshold.to_bits(), zt.to_bits(), "zero threshold {zt:e}");
    }
}

#[test]
fn custom_bounds_round_trip() {
    let bounds = vec![-1.5, 0.0, 0.001, 0.1234, 33554.43, 33554.431, 1e9, 7.0 / 3.0];
    let h = Histogram {
        schema: -53,
        positive_spans: vec![span(0, 1)],
        positive_buckets: vec![0],
        custom_values: bounds.clone(),
        ..Histogram::default()
    };
    let mut c = HistogramChunk::default();
    c.append(5, &h).unwrap();
    let (_, got) = c.iter().next().unwrap().unwrap();
    assert_eq!(got.custom_values, bounds);
}

/// Prometheus writes a custom bound of -0.0 as the whole number 0 (`putCustomBound` tests
/// `tf < 0`), so it reads back as +0.0.
#[test]
fn negative_zero_custom_bound_reads_as_zero() {
    let h = Histogram {
        schema: -53,
        positive_spans: vec![span(0, 1)],
        positive_buckets: vec![0],
        custom_values: vec![-0.0, 1.0],
        ..Histogram::default()
    };
    let mut c = HistogramChunk::default();
    c.append(5, &h).unwrap();
    let (_, got) = c.iter().next().unwrap().unwrap();
    assert_eq!(got.custom_values[0].to_bits(), 0.0f64.to_bits());
}

/// Likewise a zero threshold of -0.0 is written as the 0 byte (`putZeroThreshold` tests
/// `threshold == 0`).
#[test]
fn negative_zero_threshold_reads_as_zero() {
    let mut c = HistogramChunk::default();
    c.append(5, &Histogram { zero_threshold: -0.0, ..Histogram::default() }).unwrap();
    assert_eq!(c.bytes()[3], 0);
    let (_, got) = c.iter().next().unwrap().unwrap();
    assert_eq!(got.zero_threshold.to_bits(), 0.0f64.to_bits());
}

#[test]
fn cuts_on_layout_change_and_counter_reset() {
    let mut c = HistogramChunk::default();
    c.append(1, &int_h(7, 1, 10.0, &[2, 2])).unwrap();
    let cut = |r, h| Err(AppendError::Cut(CutChunk { reason: r, header: h }));

    let mut other_schema = int_h(7, 1, 10.0, &[2, 2]);
    other_schema.schema = 1;
    assert_eq!(c.append(2, &other_schema), cut(CutReason::LayoutChanged, CounterResetHeader::Unknown));
    // Count went down.
    assert_eq!(
        c.append(2, &int_h(6, 1, 10.0, &[2, 1])),
        cut(CutReason::CounterReset, CounterResetHeader::CounterReset)
    );
    // A bucket went down while the total went up.
    assert_eq!(
        c.append(2, &int_h(9, 4, 10.0, &[1, 2])),
        cut(CutReason::CounterReset, CounterResetHeader::CounterReset)
    );
    // A populated bucket disappeared.
    let mut fewer = int_h(8, 4, 10.0, &[4]);
    fewer.positive_spans = vec![span(1, 1)];
    assert_eq!(c.append(2, &fewer), cut(CutReason::CounterReset, CounterResetHeader::CounterReset));
    // A bucket was added: Prometheus recodes, here the chunk is cut with a "no reset" header.
    let mut more = int_h(10, 1, 10.0, &[2, 2, -1]);
    more.positive_spans = vec![span(0, 3)];
    assert_eq!(c.append(2, &more), cut(CutReason::SpansChanged, CounterResetHeader::NotCounterReset));
    // Same buckets spelled with a zero-length span are the same layout.
    let mut respelled = int_h(7, 1, 10.0, &[2, 2]);
    respelled.positive_spans = vec![span(0, 1), span(0, 0), span(0, 1)];
    assert_eq!(c.append(2, &respelled), Ok(()));
    // A gauge cannot join a counter chunk.
    let mut gauge = int_h(7, 1, 10.0, &[2, 2]);
    gauge.counter_reset_hint = CounterResetHint::Gauge;
    assert_eq!(c.append(3, &gauge), cut(CutReason::KindChanged, CounterResetHeader::Gauge));
    // After a stale marker a new chunk starts.
    let stale = Histogram { sum: f64::from_bits(STALE_NAN_BITS), ..Histogram::default() };
    assert_eq!(c.append(3, &stale), Ok(()));
    assert_eq!(c.append(4, &int_h(7, 1, 10.0, &[2, 2])), cut(CutReason::AfterStale, CounterResetHeader::Unknown));
    assert_eq!(c.num_samples(), 3);
    // Mismatched spans and buckets are refused.
    assert!(matches!(c.append(5, &int_h(7, 1, 10.0, &[2])), Err(AppendError::BucketsMismatch { .. })));
    // Nothing refused was written.
    let got: Vec<_> = c.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].1.sum.to_bits(), STALE_NAN_BITS);
}

#[test]
fn float_chunk_detects_resets() {
    let mut c = FloatHistogramChunk::default();
    c.append(1, &int_h(7, 1, 10.0, &[2, 2]).to_float()).unwrap();
    let mut down = int_h(7, 1, 10.0, &[3, 0]).to_float();
    down.count = 8.0;
    assert_eq!(
        c.append(2, &down),
        Err(AppendError::Cut(CutChunk { reason: CutReason::CounterReset, header: CounterResetHeader::CounterReset }))
    );
    let mut gauge = FloatHistogramChunk::default();
    let mut g = int_h(7, 1, 10.0, &[2, 2]).to_float();
    g.counter_reset_hint = CounterResetHint::Gauge;
    gauge.append(1, &g).unwrap();
    g.count = 1.0;
    g.positive_buckets = vec![0.0, 0.5];
    gauge.append(2, &g).unwrap();
    assert_eq!(gauge.counter_reset_header(), CounterResetHeader::Gauge);
    let got: Vec<_> = gauge.iter().collect::<Result<_, _>>().unwrap();
    assert_eq!(got[1], (2, g));
}

/// Layouts: a schema with spans, zero threshold and custom bounds matching it.
fn layout() -> impl Strategy<Value = (i32, f64, Vec<Span>, Vec<Span>, Vec<f64>)> {
    let spans = || proptest::collection::vec((0i32..4, 0u32..4), 0..4);
    let zt = prop_oneof![Just(0.0), Just(2f64.powi(-128)), Just(0.001), any::<f64>().prop_map(f64::abs)];
    prop_oneof![
        (-4i32..=8, zt, any::<i32>(), spans(), any::<i32>(), spans()).prop_map(|(s, zt, p0, p, n0, n)| {
            let first = |o: i32, v: Vec<(i32, u32)>| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, (off, len))| span(if i == 0 { o % 1000 } else { off }, len))
                    .collect()
            };
            (s, zt, first(p0, p), first(n0, n), Vec::new())
        }),
        (spans(), proptest::collection::vec(0.0f64..1e6, 0..12)).prop_map(|(p, mut bounds)| {
            bounds.sort_by(f64::total_cmp);
            bounds.dedup();
            let p = p.into_iter().map(|(o, l)| span(o, l)).collect();
            (-53, 0.0, p, Vec::new(), bounds)
        }),
    ]
}

fn sum_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => any::<f64>(),
        1 => Just(f64::NAN),
        1 => Just(f64::from_bits(0x7ff8_0000_0000_0001)),
    ]
}

/// Integer histograms of one layout: a counter (non-decreasing buckets) or a gauge (anything),
/// optionally ending in stale markers.
fn int_series() -> impl Strategy<Value = Vec<(i64, Histogram)>> {
    (layout(), any::<bool>(), 1usize..40, 0usize..3)
        .prop_flat_map(|((schema, zt, ps, ns, cv), gauge, n, stale)| {
            let np = crate::histogram::count_spans(&ps) as usize;
            let nn = crate::histogram::count_spans(&ns) as usize;
            let incr = if gauge { any::<u32>().boxed() } else { (0u32..1000).boxed() };
            let step = (
                any::<i32>(),
                proptest::collection::vec(incr.clone(), np),
                proptest::collection::vec(incr.clone(), nn),
                incr,
                sum_strategy(),
                any::<u64>(),
            );
            (proptest::collection::vec(step, n), Just((schema, zt, ps, ns, cv, gauge, stale)))
        })
        .prop_map(|(steps, (schema, zt, ps, ns, cv, gauge, stale))| {
            let mut t = 0i64;
            let (mut p, mut n, mut z) = (vec![0i64; steps[0].1.len()], vec![0i64; steps[0].2.len()], 0u64);
            let mut out = Vec::new();
            for (dt, pi, ni, zi, sum, raw_count) in steps {
                t = t.wrapping_add(i64::from(dt));
                let apply = |abs: &mut Vec<i64>, inc: &[u32]| {
                    for (a, &i) in abs.iter_mut().zip(inc) {
                        *a = if gauge { i64::from(i) } else { *a + i64::from(i) };
                    }
                };
                apply(&mut p, &pi);
                apply(&mut n, &ni);
                z = if gauge { u64::from(zi) } else { z + u64::from(zi) };
                let deltas =
                    |abs: &[i64]| abs.iter().scan(0, |prev, &a| Some(a - std::mem::replace(prev, a))).collect();
                let total = p.iter().chain(&n).map(|&c| c as u64).sum::<u64>() + z;
                out.push((
                    t,
                    Histogram {
                        counter_reset_hint: if gauge { CounterResetHint::Gauge } else { CounterResetHint::Unknown },
                        schema,
                        zero_threshold: zt,
                        zero_count: z,
                        count: if gauge { raw_count } else { total },
                        sum,
                        positive_spans: ps.clone(),
                        negative_spans: ns.clone(),
                        positive_buckets: deltas(&p),
                        negative_buckets: deltas(&n),
                        custom_values: cv.clone(),
                    },
                ));
            }
            for _ in 0..stale {
                t = t.wrapping_add(15);
                // A stale marker keeps the series' kind: a gauge chunk takes only gauge samples.
                let hint = if gauge { CounterResetHint::Gauge } else { CounterResetHint::Unknown };
                let sum = f64::from_bits(STALE_NAN_BITS);
                out.push((t, Histogram { counter_reset_hint: hint, sum, ..Histogram::default() }));
            }
            out
        })
}

/// What the iterator returns for `h` at position `i` of a chunk: stale markers carry only the
/// sum; hints are those the chunk format can express.
fn expected_int(h: &Histogram, i: usize) -> Histogram {
    if h.sum.to_bits() == STALE_NAN_BITS {
        return Histogram { sum: h.sum, ..Histogram::default() };
    }
    let hint = match h.counter_reset_hint {
        CounterResetHint::Gauge => CounterResetHint::Gauge,
        _ if i > 0 => CounterResetHint::NotCounterReset,
        _ => CounterResetHint::Unknown,
    };
    Histogram { counter_reset_hint: hint, ..h.clone() }
}

/// Float fields as bits, so that NaNs compare bit-exactly.
fn int_key(h: &Histogram) -> (Histogram, u64, u64, Vec<u64>) {
    let bits = (h.sum.to_bits(), h.zero_threshold.to_bits(), h.custom_values.iter().map(|v| v.to_bits()).collect());
    (Histogram { sum: 0.0, zero_threshold: 0.0, custom_values: Vec::new(), ..h.clone() }, bits.0, bits.1, bits.2)
}

fn float_key(h: &FloatHistogram) -> Vec<u64> {
    let mut k = vec![h.sum.to_bits(), h.count.to_bits(), h.zero_count.to_bits(), h.zero_threshold.to_bits()];
    k.push(h.schema as u64);
    k.push(h.counter_reset_hint as u64);
    for s in h.positive_spans.iter().chain(&h.negative_spans) {
        k.extend([s.offset as u64, u64::from(s.length)]);
    }
    k.extend(h.positive_buckets.iter().chain(&h.negative_buckets).chain(&h.custom_values).map(|v| v.to_bits()));
    k
}

/// Float histograms of one layout with arbitrary float values (gauges, so that nothing cuts).
fn float_series() -> impl Strategy<Value = Vec<(i64, FloatHistogram)>> {
    let any_f = || prop_oneof![4 => any::<f64>(), 1 => (0u32..100).prop_map(f64::from), 1 => Just(f64::NAN)];
    (layout(), 1usize..30).prop_flat_map(move |((schema, zt, ps, ns, cv), n)| {
        let np = crate::histogram::count_spans(&ps) as usize;
        let nn = crate::histogram::count_spans(&ns) as usize;
        let step = (
            any::<i64>(),
            any_f(),
            any_f(),
            sum_strategy(),
            proptest::collection::vec(any_f(), np),
            proptest::collection::vec(any_f(), nn),
        );
        proptest::collection::vec(step, n).prop_map(move |steps| {
            steps
                .into_iter()
                .map(|(t, count, zero_count, sum, pb, nb)| {
                    let h = FloatHistogram {
                        counter_reset_hint: CounterResetHint::Gauge,
                        schema,
                        zero_threshold: zt,
                        zero_count,
                        count,
                        sum,
                        positive_spans: ps.clone(),
                        negative_spans: ns.clone(),
                        positive_buckets: pb,
                        negative_buckets: nb,
                        custom_values: cv.clone(),
                    };
                    (t, h)
                })
                .collect()
        })
    })
}

/// About 64 lengths below `len`, always including the cut of just the last byte.
fn truncations(len: usize) -> impl Iterator<Item = usize> {
    (0..len).step_by(1 + len / 64).chain(len.checked_sub(1))
}

proptest! {
    #[test]
    fn integer_chunk_round_trip(series in int_series()) {
        let mut c = HistogramChunk::default();
        for (t, h) in &series {
            prop_assert_eq!(c.append(*t, h), Ok(()));
        }
        let got: Vec<_> = c.iter().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(got.len(), series.len());
        for (i, ((t, h), (gt, gh))) in series.iter().zip(&got).enumerate() {
            prop_assert_eq!(t, gt);
            prop_assert_eq!(int_key(&expected_int(h, i)), int_key(gh));
        }
        // Reopened after any prefix, the chunk appends the rest to the same bytes.
        let split = series.len() / 2;
        let mut first = HistogramChunk::default();
        for (t, h) in &series[..split] {
            prop_assert_eq!(first.append(*t, h), Ok(()));
        }
        let mut reopened = HistogramChunk::from_bytes(first.bytes().to_vec()).unwrap();
        for (t, h) in &series[split..] {
            prop_assert_eq!(reopened.append(*t, h), Ok(()));
        }
        prop_assert_eq!(reopened.bytes(), c.bytes());
        // Every truncation is reported, never a panic or a silently shorter chunk.
        let bytes = c.bytes();
        for len in truncations(bytes.len()) {
            let it = HistogramIter::new(&bytes[..len]);
            prop_assert!(it.take(series.len() + 1).any(|r| r.is_err()), "truncated to {} of {}", len, bytes.len());
        }
    }

    #[test]
    fn float_chunk_round_trip(series in float_series()) {
        let mut c = FloatHistogramChunk::default();
        for (t, h) in &series {
            prop_assert_eq!(c.append(*t, h), Ok(()));
        }
        let got: Vec<_> = c.iter().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(got.len(), series.len());
        for ((t, h), (gt, gh)) in series.iter().zip(&got) {
            prop_assert_eq!(t, gt);
            prop_assert_eq!(float_key(h), float_key(gh));
        }
        let split = series.len() / 2;
        let mut first = FloatHistogramChunk::default();
        for (t, h) in &series[..split] {
            prop_assert_eq!(first.append(*t, h), Ok(()));
        }
        let mut reopened = FloatHistogramChunk::from_bytes(first.bytes().to_vec()).unwrap();
        for (t, h) in &series[split..] {
            prop_assert_eq!(reopened.append(*t, h), Ok(()));
        }
        prop_assert_eq!(reopened.bytes(), c.bytes());
        let bytes = c.bytes();
        for len in truncations(bytes.len()) {
            let it = FloatHistogramIter::new(&bytes[..len]);
            prop_assert!(it.take(series.len() + 1).any(|r| r.is_err()), "truncated to {} of {}", len, bytes.len());
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        // Each sample consumes at least one bit, so both iterations are bounded by the input.
        let n = HistogramIter::new(&bytes).count();
        prop_assert!(n <= usize::from(u16::MAX) + 1);
        let n = FloatHistogramIter::new(&bytes).count();
        prop_assert!(n <= usize::from(u16::MAX) + 1);
    }

    #[test]
    fn bit_flips_never_panic(series in int_series(), flips in proptest::collection::vec(any::<prop::sample::Index>(), 1..4)) {
        let mut c = HistogramChunk::default();
        let mut fc = FloatHistogramChunk::default();
        for (t, h) in &series {
            prop_assert_eq!(c.append(*t, h), Ok(()));
            let mut f = h.to_float();
            f.counter_reset_hint = CounterResetHint::Gauge;
            prop_assert_eq!(fc.append(*t, &f), Ok(()));
        }
        for bytes in [c.bytes().to_vec(), fc.bytes().to_vec()] {
            let mut bytes = bytes;
            for f in &flips {
                let bit = f.index(bytes.len() * 8);
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
            for r in HistogramIter::new(&bytes) {
                let _ = r;
            }
            for r in FloatHistogramIter::new(&bytes) {
                let _ = r;
            }
        }
    }
}

#[test]
fn full_chunk_cuts_with_the_relation_to_its_last_sample() {
    let mut c = HistogramChunk::default();
    let h = |n: u64| Histogram { count: n, zero_count: n, ..Histogram::default() };
    for i in 0..u16::MAX {
        c.append(i64::from(i), &h(u64::from(i))).unwrap();
    }
    let cut = |reason, header| Err(AppendError::Cut(CutChunk { reason, header }));
    assert_eq!(c.append(1 << 20, &h(1 << 20)), cut(CutReason::Full, CounterResetHeader::NotCounterReset));
    assert_eq!(c.append(1 << 20, &h(0)), cut(CutReason::CounterReset, CounterResetHeader::CounterReset));
    assert_eq!(c.iter().count(), usize::from(u16::MAX));
}

/// Chunks may hold schemas up to 52; like Prometheus's iterators, reading reduces them to 8.
#[test]
fn schemas_above_8_read_as_8() {
    let h = Histogram {
        schema: 10,
        count: 6,
        positive_spans: vec![span(1, 4)],
        positive_buckets: vec![1, 0, 0, 0],
        ..Histogram::default()
    };
    let mut c = HistogramChunk::default();
    c.append(1, &h).unwrap();
    let mut want = h.clone();
    want.reduce_resolution(8).unwrap();
    assert_eq!(want.positive_spans, vec![span(1, 1)]);
    assert_eq!(c.iter().next(), Some(Ok((1, want))));

    let bad = Histogram { positive_spans: vec![span(1, 2), span(-3, 2)], ..h };
    let mut c = HistogramChunk::default();
    c.append(1, &bad).unwrap();
    assert_eq!(c.iter().next(), Some(Err(ChunkError::IrreducibleSchema { sample: 0, schema: 10 })));
    let mut f = FloatHistogramChunk::default();
    f.append(1, &bad.to_float()).unwrap();
    assert_eq!(f.iter().next(), Some(Err(ChunkError::IrreducibleSchema { sample: 0, schema: 10 })));
}
