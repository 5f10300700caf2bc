//! Tests of the decoder: header checks, limits, snappy, wire-format edges, and agreement with prost.
#![allow(clippy::indexing_slicing, reason = "tests index into buffers they built")]

use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::proto;

fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(bytes).unwrap()
}

/// A decoded request in a comparable form: per series (labels, samples as (t, v bits), histograms,
/// exemplars), plus the metadata count.
type Decoded = (Vec<(Vec<(String, String)>, Vec<(i64, u64)>, u64, u64)>, u64);

fn walk_owned(payload: &[u8]) -> std::result::Result<Decoded, ProtoError> {
    let mut labels = Vec::new();
    let mut out = Vec::new();
    let summary = walk(payload, &mut labels, |pairs, s| {
        let pairs = pairs
            .iter()
            .map(|(n, v)| {
                let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).expect("only called on valid UTF-8 here");
                (utf8(n), utf8(v))
            })
            .collect();
        let samples = s.samples().map(|(t, v)| (t, v.to_bits())).collect::<Vec<_>>();
        assert_eq!(samples.len() as u64, s.num_samples);
        out.push((pairs, samples, s.num_histograms, s.num_exemplars));
    })?;
    assert_eq!(summary.series, out.len() as u64);
    Ok((out, summary.metadata))
}

fn prost_owned(req: &proto::WriteRequest) -> Decoded {
    let series = req
        .timeseries
        .iter()
        .map(|ts| {
            (
                ts.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect(),
                ts.samples.iter().map(|s| (s.timestamp, s.value.to_bits())).collect(),
                ts.histograms.len() as u64,
                ts.exemplars.len() as u64,
            )
        })
        .collect();
    (series, req.metadata.len() as u64)
}

fn label(name: &str, value: &str) -> proto::Label {
    proto::Label { name: name.into(), value: value.into() }
}

fn request() -> proto::WriteRequest {
    proto::WriteRequest {
        timeseries: vec![proto::TimeSeries {
            labels: vec![label("__name__", "up"), label("job", "node")],
            samples: vec![proto::Sample { value: 1.0, timestamp: 1000 }, proto::Sample { value: 0.0, timestamp: 2000 }],
            ..Default::default()
        }],
        metadata: vec![proto::MetricMetadata { r#type: 2, metric_family_name: "up".into(), ..Default::default() }],
    }
}

#[test]
fn content_type_checks() {
    for ok in [
        None,
        Some(""),
        Some("application/x-protobuf"),
        Some("Application/X-Protobuf"),
        Some("application/x-protobuf;proto=prometheus.WriteRequest"),
        Some("application/x-protobuf; proto=\"prometheus.WriteRequest\""),
        Some("application/x-protobuf; charset=binary"),
    ] {
        assert_eq!(check_content_type(ok).unwrap(), Protocol::V1, "{ok:?}");
    }
    for ok in [
        "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        "application/x-protobuf; proto=\"io.prometheus.write.v2.Request\"",
    ] {
        assert_eq!(check_content_type(Some(ok)).unwrap(), Protocol::V2, "{ok:?}");
    }
    for bad in [
        "application/json",
        "text/plain",
        "application/x-protobuf;proto=io.prometheus.write.v3.Request",
        "application/x-protobuf;proto=prometheus.WriteRequestV2",
        "application/x-protobufs",
    ] {
        let e = check_content_type(Some(bad)).unwrap_err();
        assert!(matches!(e, Error::UnsupportedContentType { .. }), "{bad}: {e}");
        assert_eq!(e.status(), axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(e.to_string().contains(bad), "{e}");
    }
}

#[test]
fn content_encoding_checks() {
    for ok in [None, Some(""), Some("snappy"), Some("SNAPPY"), Some(" snappy ")] {
        assert!(check_content_encoding(ok).is_ok(), "{ok:?}");
    }
    for bad in ["gzip", "zstd", "snappy, gzip", "identity"] {
        let e = check_content_encoding(Some(bad)).unwrap_err();
        assert!(matches!(e, Error::UnsupportedContentEncoding { .. }), "{bad}: {e}");
        assert_eq!(e.status(), axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}

#[test]
fn decompress_round_trip_and_buffer_reuse() {
    let payload = request().encode_to_vec();
    let mut buf = vec![0xAA; 3];
    decompress(&snappy(&payload), 1 << 20, &mut buf).unwrap();
    assert_eq!(buf, payload);
    decompress(&snappy(b"xy"), 1 << 20, &mut buf).unwrap();
    assert_eq!(buf, b"xy");
    // A longer body after a shorter one: the stale bytes beyond are replaced, not kept.
    decompress(&snappy(&payload), 1 << 20, &mut buf).unwrap();
    assert_eq!(buf, payload);
    decompress(&snappy(b"xy"), 1 << 20, &mut buf).unwrap();
    assert_eq!(buf, b"xy");
}

#[test]
fn declared_length_over_limit_is_refused_before_allocating() {
    // A run of zeros: snappy's densest output, declaring 1 MiB from a few hundred bytes.
    let body = snappy(&vec![0u8; 1 << 20]);
    let mut buf = Vec::new();
    let e = decompress(&body, 1 << 19, &mut buf).unwrap_err();
    assert!(matches!(e, Error::DecompressedTooLarge { declared: 1_048_576, limit: 524_288 }), "{e}");
    assert_eq!(e.status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(buf.capacity(), 0);
    // Exactly at the limit is fine as far as the limit goes.
    let ok = snappy(&[7u8; 100]);
    decompress(&ok, 100, &mut buf).unwrap();
    assert!(matches!(decompress(&ok, 99, &mut buf), Err(Error::DecompressedTooLarge { declared: 100, limit: 99 })));
}

#[test]
fn declared_length_beyond_what_the_block_can_hold_is_400_before_allocating() {
    // 7 bytes: uvarint 255 MiB and three bytes of elements, far below the 256 MiB limit.
    let body = [0x80, 0x80, 0xc0, 0x7f, 0x00, 0x00, 0x00];
    let mut buf = Vec::new();
    let e = decompress(&body, 256 << 20, &mut buf).unwrap_err();
    assert!(matches!(e, Error::SnappyLengthImpossible { declared: 267_386_880, compressed: 7, possible: 149 }), "{e}");
    assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
    assert!(e.to_string().contains("267386880") && e.to_string().contains("at most 149 bytes"), "{e}");
    assert_eq!(buf.capacity(), 0);
}

#[test]
fn snappy_expansion_bound_holds_for_the_densest_blocks() {
    // Runs of one byte compress to 2-byte-offset copies of 64 bytes, the densest element: the
    // encoder's output must stay within the bound and decompress.
    let mut buf = Vec::new();
    for len in [1usize, 4, 64, 65, 1000, 4096, 65_536, 65_537, 1 << 20, (1 << 20) + 13] {
        let body = snappy(&vec![0u8; len]);
        assert!(len as u64 <= snappy_max_decompressed_len(body.len()), "{len} from {} bytes", body.len());
        decompress(&body, 1 << 21, &mut buf).unwrap();
        assert_eq!(buf.len(), len);
    }
}

#[test]
fn bad_snappy_is_a_snappy_error() {
    let payload = request().encode_to_vec();
    let mut buf = Vec::new();
    for body in [
        payload.clone(), // not compressed at all
        vec![],          // empty body
        vec![0xff; 12],  // bad header varint
        {
            let mut c = snappy(&payload);
            c.truncate(c.len() - 3);
            c
        },
    ] {
        let e = decompress(&body, 1 << 20, &mut buf).unwrap_err();
        assert!(
            matches!(e, Error::Snappy(_) | Error::SnappyLengthImpossible { .. } | Error::DecompressedTooLarge { .. }),
            "{e}"
        );
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST.max(e.status()));
    }
    let e = decompress(&payload, 1 << 20, &mut buf).unwrap_err();
    assert!(e.to_string().contains("snappy"), "{e}");
    assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
}

#[test]
fn walks_a_request_like_prost() {
    let mut req = request();
    req.timeseries.push(proto::TimeSeries {
        labels: vec![label("__name__", "h")],
        exemplars: vec![proto::Exemplar { labels: vec![label("trace_id", "abc")], value: 1.0, timestamp: 5 }],
        histograms: vec![
            proto::Histogram { timestamp: 42, schema: 3, ..Default::default() },
            proto::Histogram { timestamp: 43, ..Default::default() },
        ],
        ..Default::default()
    });
    let payload = req.encode_to_vec();
    assert_eq!(walk_owned(&payload).unwrap(), prost_owned(&req));
    let mut labels = Vec::new();
    let mut first_h = Vec::new();
    walk(&payload, &mut labels, |_, s| first_h.push(s.first_histogram_t)).unwrap();
    assert_eq!(first_h, vec![None, Some(42)]);
}

#[test]
fn empty_payload_is_an_empty_request() {
    assert_eq!(walk_owned(&[]).unwrap(), (vec![], 0));
}

#[test]
fn invalid_utf8_is_handed_on_not_refused() {
    let mut payload = proto::WriteRequest {
        timeseries: vec![proto::TimeSeries {
            labels: vec![label("__name__", "x"), label("job", "Z")],
            samples: vec![proto::Sample { value: 1.0, timestamp: 1 }],
            ..Default::default()
        }],
        metadata: vec![],
    }
    .encode_to_vec();
    let z = payload.iter().position(|&b| b == b'Z').unwrap();
    payload[z] = 0xff;
    assert!(proto::WriteRequest::decode(&payload[..]).is_err(), "prost refuses the whole request");
    let mut labels = Vec::new();
    let mut seen = Vec::new();
    walk(&payload, &mut labels, |pairs, s| {
        let owned: Vec<(Vec<u8>, Vec<u8>)> = pairs.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        seen.push((owned, s.num_samples));
    })
    .unwrap();
    assert_eq!(seen.len(), 1);
    let (pairs, samples) = &seen[0];
    assert_eq!((pairs.len(), *samples), (2, 1));
    assert_eq!(pairs[1], (b"job".to_vec(), vec![0xff]));
}

fn walk_err(payload: &[u8]) -> ProtoErrorKind {
    let mut labels = Vec::new();
    let e = walk(payload, &mut labels, |_, _| {}).unwrap_err();
    assert!(proto::WriteRequest::decode(payload).is_err(), "prost must refuse {payload:?} too");
    e.kind
}

#[test]
fn malformed_payloads() {
    use ProtoErrorKind::*;
    assert_eq!(walk_err(&[0x0a]), InvalidVarint); // key, then no length
    assert_eq!(walk_err(&[0x0a, 0x05, 0x0a]), Truncated); // length past the end
    assert_eq!(walk_err(&[0x00]), TagZero);
    assert_eq!(walk_err(&[0x0e]), InvalidWireType(6));
    assert_eq!(walk_err(&[0x08, 0x01]), WrongWireType { message: "WriteRequest", field: 1, found: 0 });
    // TimeSeries { Sample { value as varint } }
    assert_eq!(
        walk_err(&[0x0a, 0x04, 0x12, 0x02, 0x08, 0x01]),
        WrongWireType { message: "Sample", field: 1, found: 0 }
    );
    // Sample value with 7 of its 8 bytes.
    assert_eq!(walk_err(&[0x0a, 0x0a, 0x12, 0x08, 0x09, 1, 2, 3, 4, 5, 6, 7]), Truncated);
    // Varint of 11 bytes, and a 10-byte varint overflowing 64 bits.
    assert_eq!(walk_err(&[0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), InvalidVarint);
    assert_eq!(walk_err(&[0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]), InvalidVarint);
    assert_eq!(walk_err(&[0x2c]), UnexpectedEndGroup); // unknown field 5, end group
    assert_eq!(walk_err(&[0x1c]), WrongWireType { message: "WriteRequest", field: 3, found: 4 });
    assert_eq!(walk_err(&[0x2b, 0x34]), UnexpectedEndGroup); // group 5 closed as 6
    let err = walk_err(&[0x0a, 0x02, 0x0a, 0x09]);
    assert_eq!(err, Truncated, "label message cut short");
}

#[test]
fn unknown_fields_and_groups_are_skipped() {
    let mut payload = vec![0x10, 0x96, 0x01]; // field 2 (reserved, unknown) varint
    payload.extend([0x2b, 0x08, 0x01, 0x2c]); // group 5 { field 1 varint } end group 5
    payload.extend([0x35, 1, 2, 3, 4]); // field 6 fixed32
    payload.extend(request().encode_to_vec());
    assert_eq!(walk_owned(&payload).unwrap(), prost_owned(&request()));
    assert_eq!(proto::WriteRequest::decode(&payload[..]).unwrap(), request());
}

#[test]
fn deep_groups_hit_the_recursion_limit_without_overflowing_the_stack() {
    let mut payload = vec![0x2b; 100_000]; // 100k nested start-group tags of field 5
    assert_eq!(walk_err(&payload), ProtoErrorKind::RecursionLimit);
    payload.truncate(99);
    payload.extend(vec![0x2c; 99]);
    let mut labels = Vec::new();
    assert!(walk(&payload, &mut labels, |_, _| {}).is_ok());
    assert!(proto::WriteRequest::decode(&payload[..]).is_ok());
}

fn arb_label() -> impl Strategy<Value = proto::Label> {
    ("(__name__|job|[a-z_]{0,4}|1x|)", "[a-zé0-9 ]{0,6}").prop_map(|(name, value)| proto::Label { name, value })
}

fn arb_series() -> impl Strategy<Value = proto::TimeSeries> {
    (
        prop::collection::vec(arb_label(), 0..5),
        prop::collection::vec((any::<i64>(), any::<f64>()), 0..6),
        prop::collection::vec((arb_label(), any::<f64>(), any::<i64>()), 0..2),
        prop::collection::vec((any::<i64>(), any::<u64>(), -4i32..8, prop::collection::vec(any::<i64>(), 0..3)), 0..3),
    )
        .prop_map(|(labels, samples, exemplars, histograms)| proto::TimeSeries {
            labels,
            samples: samples.into_iter().map(|(timestamp, value)| proto::Sample { value, timestamp }).collect(),
            exemplars: exemplars
                .into_iter()
                .map(|(l, value, timestamp)| proto::Exemplar { labels: vec![l], value, timestamp })
                .collect(),
            histograms: histograms
                .into_iter()
                .map(|(timestamp, count, schema, deltas)| proto::Histogram {
                    timestamp,
                    count: Some(proto::histogram::Count::CountInt(count)),
                    schema,
                    positive_spans: vec![proto::BucketSpan { offset: schema, length: deltas.len() as u32 }],
                    positive_deltas: deltas,
                    ..Default::default()
                })
                .collect(),
        })
}

fn arb_request() -> impl Strategy<Value = proto::WriteRequest> {
    (prop::collection::vec(arb_series(), 0..5), prop::collection::vec(("[a-z]{0,5}", 0i32..8), 0..2)).prop_map(
        |(timeseries, metadata)| proto::WriteRequest {
            timeseries,
            metadata: metadata
                .into_iter()
                .map(|(name, t)| proto::MetricMetadata { r#type: t, metric_family_name: name, ..Default::default() })
                .collect(),
        },
    )
}

/// The decoder never panics, accepts whatever prost accepts with the same result, and refuses only
/// what prost refuses too.
fn agrees_with_prost(payload: &[u8]) -> std::result::Result<(), TestCaseError> {
    let mut labels = Vec::new();
    let ours = walk(payload, &mut labels, |_, s| {
        let _ = s.samples().count();
    });
    // Where prost refuses, we may still accept (UTF-8 in labels, contents of ignored messages).
    if let Ok(req) = proto::WriteRequest::decode(payload) {
        prop_assert!(ours.is_ok(), "prost accepted, walk refused: {:?}", ours);
        prop_assert_eq!(walk_owned(payload).map_err(|e| TestCaseError::fail(e.to_string()))?, prost_owned(&req));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoder_agrees_with_prost(req in arb_request()) {
        let payload = req.encode_to_vec();
        // Compare with prost's decoding, not with `req`: proto3 does not encode -0.0 (it equals the default).
        let decoded = proto::WriteRequest::decode(&payload[..]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(walk_owned(&payload).map_err(|e| TestCaseError::fail(e.to_string()))?, prost_owned(&decoded));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        agrees_with_prost(&bytes)?;
        let mut buf = Vec::new();
        let _ = decompress(&bytes, 1 << 16, &mut buf);
    }

    #[test]
    fn damaged_requests_never_panic(
        req in arb_request(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut payload = req.encode_to_vec();
        if !payload.is_empty() {
            for (i, b) in flips {
                let i = i.index(payload.len());
                payload[i] = b;
            }
            if truncate {
                payload.truncate(cut.index(payload.len()));
            }
        }
        agrees_with_prost(&payload)?;
        // Damaged snappy frames of the same payload.
        let mut body = snappy(&payload);
        if !body.is_empty() {
            let i = cut.index(body.len());
            body[i] ^= 0x5a;
        }
        let mut buf = Vec::new();
        if decompress(&body, 1 << 20, &mut buf).is_ok() {
            agrees_with_prost(&buf)?;
        }
    }
}
