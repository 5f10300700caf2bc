//! `histogram-chunk`: [`tsdb::chunkenc::HistogramIter`] and [`tsdb::chunkenc::FloatHistogramIter`]
//! over arbitrary chunk bytes (three header bytes, then the bit stream), both decoders on every
//! input.
//!
//! Besides never panicking: what a decoder reads back from a chunk it decoded without error must,
//! appended to a new chunk, decode to the same histograms (float fields compared bit for bit,
//! except that a zero threshold or custom bound of -0.0 is stored as 0, as Prometheus stores
//! them), and such a chunk
//! reopened for appending ([`HistogramChunk::from_bytes`]) must read back the same histograms.

use tsdb::chunkenc::{FloatHistogramChunk, FloatHistogramIter, HistogramChunk, HistogramIter};
use tsdb::histogram::{CounterResetHint, FloatHistogram, Histogram, Span};

use super::Target;

pub(crate) struct HistogramChunkTarget;

fn hist(i: u64) -> Histogram {
    Histogram {
        schema: 3,
        zero_threshold: 2f64.powi(-128),
        zero_count: i,
        count: 3 * i + 2,
        sum: 1.5 * i as f64,
        positive_spans: vec![Span { offset: -2, length: 2 }, Span { offset: 3, length: 1 }],
        positive_buckets: vec![i as i64 + 1, 0, -(i as i64)],
        negative_spans: vec![Span { offset: 0, length: 1 }],
        negative_buckets: vec![i as i64 + 1],
        ..Histogram::default()
    }
}

fn int_chunk(hs: impl IntoIterator<Item = Histogram>) -> Vec<u8> {
    let mut c = HistogramChunk::default();
    for (t, h) in hs.into_iter().enumerate() {
        // The corpus histograms are consistent and monotonic: appends succeed.
        let _ = c.append(t as i64 * 15_000, &h);
    }
    c.bytes().to_vec()
}

fn float_chunk(hs: impl IntoIterator<Item = FloatHistogram>) -> Vec<u8> {
    let mut c = FloatHistogramChunk::default();
    for (t, h) in hs.into_iter().enumerate() {
        let _ = c.append(t as i64 * 15_000, &h);
    }
    c.bytes().to_vec()
}

/// A histogram's fields with floats as bits, hint left out (re-encoding may change it).
fn key_int(h: &Histogram) -> Vec<u64> {
    let mut k = vec![h.schema as u64, bound_key(h.zero_threshold), h.zero_count, h.count, h.sum.to_bits()];
    for s in h.positive_spans.iter().chain(&h.negative_spans) {
        k.extend([s.offset as u64, u64::from(s.length)]);
    }
    k.push(h.positive_spans.len() as u64);
    k.extend(h.positive_buckets.iter().chain(&h.negative_buckets).map(|&b| b as u64));
    k.extend(h.custom_values.iter().copied().map(bound_key));
    k
}

/// A zero threshold's or custom bound's bits, with -0.0 as 0.0.
fn bound_key(v: f64) -> u64 {
    if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

fn key_float(h: &FloatHistogram) -> Vec<u64> {
    let mut k = vec![h.schema as u64, bound_key(h.zero_threshold), h.zero_count.to_bits(), h.count.to_bits()];
    k.push(h.sum.to_bits());
    for s in h.positive_spans.iter().chain(&h.negative_spans) {
        k.extend([s.offset as u64, u64::from(s.length)]);
    }
    k.push(h.positive_spans.len() as u64);
    k.extend(h.positive_buckets.iter().chain(&h.negative_buckets).map(|v| v.to_bits()));
    k.extend(h.custom_values.iter().copied().map(bound_key));
    k
}

impl Target for HistogramChunkTarget {
    fn name(&self) -> &'static str {
        "histogram-chunk"
    }

    fn corpus(&mut self) -> Vec<Vec<u8>> {
        let nhcb = Histogram {
            schema: -53,
            count: 3,
            sum: 0.25,
            positive_spans: vec![Span { offset: 0, length: 3 }],
            positive_buckets: vec![1, 0, 0],
            custom_values: vec![0.1, 0.5, 1e9],
            ..Histogram::default()
        };
        vec![
            int_chunk((0..40).map(hist)),
            int_chunk([nhcb.clone(), Histogram { count: 4, positive_buckets: vec![1, 1, -1], ..nhcb.clone() }]),
            int_chunk([Histogram::default()]),
            float_chunk((0..40).map(|i| hist(i).to_float())),
            float_chunk([nhcb.to_float()]),
            vec![0, 0, 0],
        ]
    }

    fn run(&mut self, input: &[u8]) -> bool {
        let ints: Result<Vec<_>, _> = HistogramIter::new(input).collect();
        let floats: Result<Vec<_>, _> = FloatHistogramIter::new(input).collect();
        let accepted = ints.is_ok() || floats.is_ok();

        if let Ok(samples) = ints {
            let reopened = HistogramChunk::from_bytes(input.to_vec());
            let back: Vec<_> = reopened.iter().flat_map(|c| c.iter().collect::<Vec<_>>()).flatten().collect();
            assert!(
                back.len() == samples.len()
                    && back.iter().zip(&samples).all(|((t, a), (u, b))| t == u && key_int(a) == key_int(b)),
                "a reopened integer histogram chunk reads back other histograms"
            );
            let mut c = HistogramChunk::default();
            // As gauges nothing but a stale marker followed by a histogram makes the chunk cut.
            let fits = samples.iter().all(|(t, h)| {
                let h = Histogram { counter_reset_hint: CounterResetHint::Gauge, ..h.clone() };
                c.append(*t, &h).is_ok()
            });
            if fits {
                let again: Vec<_> = c.iter().collect::<Result<_, _>>().unwrap_or_default();
                assert_eq!(again.len(), samples.len(), "re-encoded integer histograms do not decode");
                for ((t, a), (u, b)) in samples.iter().zip(&again) {
                    assert!(t == u && key_int(a) == key_int(b), "integer histogram at {t} changed on re-encoding");
                }
            }
        }
        if let Ok(samples) = floats {
            let reopened = FloatHistogramChunk::from_bytes(input.to_vec());
            let back: Vec<_> = reopened.iter().flat_map(|c| c.iter().collect::<Vec<_>>()).flatten().collect();
            assert!(
                back.len() == samples.len()
                    && back.iter().zip(&samples).all(|((t, a), (u, b))| t == u && key_float(a) == key_float(b)),
                "a reopened float histogram chunk reads back other histograms"
            );
            let mut c = FloatHistogramChunk::default();
            let fits = samples.iter().all(|(t, h)| {
                let h = FloatHistogram { counter_reset_hint: CounterResetHint::Gauge, ..h.clone() };
                c.append(*t, &h).is_ok()
            });
            if fits {
                let again: Vec<_> = c.iter().collect::<Result<_, _>>().unwrap_or_default();
                assert_eq!(again.len(), samples.len(), "re-encoded float histograms do not decode");
                for ((t, a), (u, b)) in samples.iter().zip(&again) {
                    assert!(t == u && key_float(a) == key_float(b), "float histogram at {t} changed on re-encoding");
                }
            }
        }
        accepted
    }
}
