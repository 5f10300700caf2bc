//! Native histogram samples of a remote-write series: the `Histogram` message, which 1.0
//! (`prometheus.Histogram`, `TimeSeries` field 4) and 2.0 (`io.prometheus.write.v2.Histogram`,
//! field 3, plus `start_timestamp` = 17) number alike, read into [`tsdb::histogram::HistogramValue`].
//!
//! The walk reads every histogram once to check its wire format (a malformed one fails the request,
//! as prost's decoding would); [`Histograms`] reads them again when the series is appended. Whether
//! a histogram is a float histogram follows the `count` oneof, as Prometheus's
//! `IsFloatHistogram`: integer histograms take `*_deltas` and `zero_count_int`, float ones
//! `*_counts` and `zero_count_float`. Packed and unpacked repeated fields are both read.

use tsdb::histogram::{CounterResetHint, FloatHistogram, Histogram, HistogramValue, Span};

use super::{ProtoError, Reader, Result, WT_FIXED64, WT_LEN, WT_VARINT};

/// `Histogram.ResetHint` (1.0 and 2.0 number it alike).
fn reset_hint(v: u64) -> CounterResetHint {
    match v {
        1 => CounterResetHint::CounterReset,
        2 => CounterResetHint::NotCounterReset,
        3 => CounterResetHint::Gauge,
        _ => CounterResetHint::Unknown,
    }
}

fn zigzag32(v: u64) -> i32 {
    let v = v as u32;
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

fn zigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Which protocol's `Histogram`: 2.0 adds `start_timestamp` (field 17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

/// One decoded histogram sample.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSample {
    /// Timestamp (ms).
    pub t: i64,
    /// The histogram.
    pub value: HistogramValue,
    /// 2.0's `start_timestamp` (0 when absent or for 1.0).
    pub start_t: i64,
}

/// All fields of a `Histogram` message, both count kinds kept until the oneof is settled.
#[derive(Default)]
struct Fields {
    float: bool,
    count_int: u64,
    count_float: f64,
    sum: f64,
    schema: i32,
    zero_threshold: f64,
    zero_int: u64,
    zero_float: f64,
    neg_spans: Vec<Span>,
    neg_deltas: Vec<i64>,
    neg_counts: Vec<f64>,
    pos_spans: Vec<Span>,
    pos_deltas: Vec<i64>,
    pos_counts: Vec<f64>,
    hint: u64,
    t: i64,
    custom_values: Vec<f64>,
    start_t: i64,
}

/// Checks one `Histogram` message as [`parse`] reads it, without keeping its spans and buckets
/// (the walk's pass over every histogram, before the series is handed out); returns its timestamp.
pub(super) fn check(r: Reader<'_>, depth: u32, version: Version) -> Result<i64> {
    read_fields(r, depth, version, false).map(|f| f.t)
}

/// Reads one `Histogram` message.
pub(super) fn parse(r: Reader<'_>, depth: u32, version: Version) -> Result<HistogramSample> {
    let f = read_fields(r, depth, version, true)?;
    let counter_reset_hint = reset_hint(f.hint);
    let value = if f.float {
        HistogramValue::Float(FloatHistogram {
            counter_reset_hint,
            schema: f.schema,
            zero_threshold: f.zero_threshold,
            zero_count: f.zero_float,
            count: f.count_float,
            sum: f.sum,
            positive_spans: f.pos_spans,
            negative_spans: f.neg_spans,
            positive_buckets: f.pos_counts,
            negative_buckets: f.neg_counts,
            custom_values: f.custom_values,
        })
    } else {
        HistogramValue::Int(Histogram {
            counter_reset_hint,
            schema: f.schema,
            zero_threshold: f.zero_threshold,
            zero_count: f.zero_int,
            count: f.count_int,
            sum: f.sum,
            positive_spans: f.pos_spans,
            negative_spans: f.neg_spans,
            positive_buckets: f.pos_deltas,
            negative_buckets: f.neg_deltas,
            custom_values: f.custom_values,
        })
    };
    Ok(HistogramSample { t: f.t, value, start_t: f.start_t })
}

/// Reads the fields of one `Histogram` message; the repeated ones (spans, buckets, custom bounds)
/// are checked always and kept only if `keep`.
fn read_fields(mut r: Reader<'_>, depth: u32, version: Version, keep: bool) -> Result<Fields> {
    const MSG: &str = "Histogram";
    let mut f = Fields::default();
    while r.has_more() {
        let at = r.pos;
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect_wt(at, MSG, field, wt, WT_VARINT)?;
                f.count_int = r.varint()?;
                f.float = false;
            }
            2 => {
                r.expect_wt(at, MSG, field, wt, WT_FIXED64)?;
                f.count_float = f64::from_bits(r.fixed64()?);
                f.float = true;
            }
            3 => {
                r.expect_wt(at, MSG, field, wt, WT_FIXED64)?;
                f.sum = f64::from_bits(r.fixed64()?);
            }
            4 => {
                r.expect_wt(at, MSG, field, wt, WT_VARINT)?;
                f.schema = zigzag32(r.varint()?);
            }
            5 => {
                r.expect_wt(at, MSG, field, wt, WT_FIXED64)?;
                f.zero_threshold = f64::from_bits(r.fixed64()?);
            }
            6 => {
                r.expect_wt(at, MSG, field, wt, WT_VARINT)?;
                f.zero_int = r.varint()?;
                f.zero_float = 0.0;
            }
            7 => {
                r.expect_wt(at, MSG, field, wt, WT_FIXED64)?;
                f.zero_float = f64::from_bits(r.fixed64()?);
                f.zero_int = 0;
            }
            8 | 11 => {
                r.expect_wt(at, MSG, field, wt, WT_LEN)?;
                let sub = r.len_delimited()?;
                let inner = r.enter(at, depth)?;
                let span = parse_span(sub, inner)?;
                if keep {
                    if field == 8 { &mut f.neg_spans } else { &mut f.pos_spans }.push(span);
                }
            }
            9 | 12 => {
                let out = if field == 9 { &mut f.neg_deltas } else { &mut f.pos_deltas };
                repeated_varint(&mut r, at, field, wt, |v| {
                    if keep {
                        out.push(zigzag64(v))
                    }
                })?;
            }
            10 | 13 | 16 => {
                let out = match field {
                    10 => &mut f.neg_counts,
                    13 => &mut f.pos_counts,
                    _ => &mut f.custom_values,
                };
                repeated_double(&mut r, at, field, wt, |v| {
                    if keep {
                        out.push(v)
                    }
                })?;
            }
            14 => {
                r.expect_wt(at, MSG, field, wt, WT_VARINT)?;
                f.hint = r.varint()?;
            }
            15 => {
                r.expect_wt(at, MSG, field, wt, WT_VARINT)?;
                f.t = r.varint()? as i64;
            }
            17 if version == Version::V2 => {
                r.expect_wt(at, MSG, field, wt, WT_VARINT)?;
                f.start_t = r.varint()? as i64;
            }
            _ => r.skip(wt, field, depth)?,
        }
    }
    Ok(f)
}

/// A `BucketSpan`: sint32 offset = 1, uint32 length = 2.
fn parse_span(mut r: Reader<'_>, depth: u32) -> Result<Span> {
    let mut span = Span::default();
    while r.has_more() {
        let at = r.pos;
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect_wt(at, "BucketSpan", field, wt, WT_VARINT)?;
                span.offset = zigzag32(r.varint()?);
            }
            2 => {
                r.expect_wt(at, "BucketSpan", field, wt, WT_VARINT)?;
                span.length = r.varint()? as u32;
            }
            _ => r.skip(wt, field, depth)?,
        }
    }
    Ok(span)
}

/// A repeated varint field, packed or not.
fn repeated_varint(r: &mut Reader<'_>, at: usize, field: u32, wt: u8, mut each: impl FnMut(u64)) -> Result<()> {
    match wt {
        WT_LEN => {
            let mut packed = r.len_delimited()?;
            while packed.has_more() {
                each(packed.varint()?);
            }
            Ok(())
        }
        WT_VARINT => {
            each(r.varint()?);
            Ok(())
        }
        found => Err(wrong(r, at, field, found)),
    }
}

/// A repeated double field, packed or not.
fn repeated_double(r: &mut Reader<'_>, at: usize, field: u32, wt: u8, mut each: impl FnMut(f64)) -> Result<()> {
    match wt {
        WT_LEN => {
            let mut packed = r.len_delimited()?;
            while packed.has_more() {
                each(f64::from_bits(packed.fixed64()?));
            }
            Ok(())
        }
        WT_FIXED64 => {
            each(f64::from_bits(r.fixed64()?));
            Ok(())
        }
        found => Err(wrong(r, at, field, found)),
    }
}

fn wrong(r: &Reader<'_>, at: usize, field: u32, found: u8) -> ProtoError {
    r.err(at, super::ProtoErrorKind::WrongWireType { message: "Histogram", field, found })
}

/// A series' histogram samples in wire order. The walk checked them, so iteration cannot fail;
/// should it meet bad bytes anyway, it stops.
#[derive(Clone, Copy)]
pub struct Histograms<'a> {
    pub(super) msg: Reader<'a>,
    pub(super) depth: u32,
    /// The `TimeSeries` field number of histograms (1.0: 4, 2.0: 3).
    pub(super) field: u32,
    pub(super) version: Version,
}

impl Iterator for Histograms<'_> {
    type Item = HistogramSample;

    fn next(&mut self) -> Option<HistogramSample> {
        while self.msg.has_more() {
            let (field, wt) = self.msg.key().ok()?;
            if field == self.field && wt == WT_LEN {
                let sub = self.msg.len_delimited().ok()?;
                return parse(sub, self.depth.saturating_sub(1), self.version).ok();
            }
            self.msg.skip(wt, field, self.depth).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn decode(bytes: &[u8], version: Version) -> Result<HistogramSample> {
        parse(Reader::new(bytes), 100, version)
    }

    #[test]
    fn integer_histogram_as_prost_encodes_it() {
        let h = crate::proto::Histogram {
            count: Some(crate::proto::histogram::Count::CountInt(5)),
            sum: 12.5,
            schema: -2,
            zero_threshold: 0.001,
            zero_count: Some(crate::proto::histogram::ZeroCount::ZeroCountInt(1)),
            negative_spans: vec![crate::proto::BucketSpan { offset: -3, length: 1 }],
            negative_deltas: vec![1],
            positive_spans: vec![crate::proto::BucketSpan { offset: 0, length: 2 }],
            positive_deltas: vec![2, -1],
            reset_hint: 2,
            timestamp: 1_700_000_000_000,
            ..Default::default()
        };
        let got = decode(&h.encode_to_vec(), Version::V1).unwrap();
        assert_eq!(got.t, 1_700_000_000_000);
        let HistogramValue::Int(h) = got.value else { panic!("not an integer histogram") };
        assert_eq!((h.count, h.zero_count, h.schema, h.sum), (5, 1, -2, 12.5));
        assert_eq!(h.negative_spans, vec![Span { offset: -3, length: 1 }]);
        assert_eq!((&h.negative_buckets, &h.positive_buckets), (&vec![1], &vec![2, -1]));
        assert_eq!(h.counter_reset_hint, CounterResetHint::NotCounterReset);
        assert!(HistogramValue::Int(h).validate().is_ok());
    }

    #[test]
    fn float_histogram_follows_the_count_oneof() {
        let h = crate::proto::Histogram {
            count: Some(crate::proto::histogram::Count::CountFloat(3.5)),
            zero_count: Some(crate::proto::histogram::ZeroCount::ZeroCountFloat(0.5)),
            positive_spans: vec![crate::proto::BucketSpan { offset: 1, length: 2 }],
            positive_counts: vec![1.0, 2.0],
            // Deltas belong to integer histograms: ignored here.
            positive_deltas: vec![7],
            reset_hint: 3,
            ..Default::default()
        };
        let got = decode(&h.encode_to_vec(), Version::V2).unwrap();
        let HistogramValue::Float(h) = got.value else { panic!("not a float histogram") };
        assert_eq!((h.count, h.zero_count), (3.5, 0.5));
        assert_eq!(h.positive_buckets, vec![1.0, 2.0]);
        assert_eq!(h.counter_reset_hint, CounterResetHint::Gauge);
    }

    #[test]
    fn unpacked_repeated_fields_are_read() {
        // positive_deltas (12) as two unpacked sint64 varints: 2 → 4, -1 → 1; a double custom value unpacked.
        let mut b = vec![12 << 3, 4, 12 << 3, 1];
        b.extend_from_slice(&[0x81, 0x01]); // field 16, wire type 1, as a two-byte varint key
        b.extend_from_slice(&1.5f64.to_le_bytes());
        let got = decode(&b, Version::V1).unwrap();
        let HistogramValue::Int(h) = got.value else { panic!("not an integer histogram") };
        assert_eq!(h.positive_buckets, vec![2, -1]);
        assert_eq!(h.custom_values, vec![1.5]);
    }

    #[test]
    fn wrong_wire_types_and_truncation_are_errors() {
        // schema (4) as fixed64.
        assert!(decode(&[(4 << 3) | 1, 0, 0, 0, 0, 0, 0, 0, 0], Version::V1).is_err());
        // packed deltas running past the end.
        assert!(decode(&[(12 << 3) | 2, 5, 1], Version::V1).is_err());
        // packed doubles not a multiple of 8 bytes.
        assert!(decode(&[(13 << 3) | 2, 3, 0, 0, 0], Version::V1).is_err());
        // start_timestamp (17) is 2.0's only: 1.0 skips it whatever its wire type.
        let st = [((17 << 3) | 1) as u8, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(decode(&st, Version::V1).is_ok());
        assert!(decode(&st, Version::V2).is_err());
    }
}
