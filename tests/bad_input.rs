//! Malformed and partly invalid requests get a 4xx naming what was wrong; valid samples in the same
//! request are stored.

use ingest::proto::{Label, Sample, TimeSeries};

use crate::util::{request, series, Server};

const T0: i64 = 1_700_000_000_000;
const MIN: i64 = 60_000;

#[test]
fn malformed_bodies_are_rejected_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);

    // Not snappy at all.
    let (code, body) = srv.post_raw(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "snappy", "application/x-protobuf");
    assert_eq!(code, 400, "{body}");
    assert!(body.to_lowercase().contains("snappy"), "{body}");

    // Valid snappy, invalid protobuf.
    let garbage = snap::raw::Encoder::new().compress_vec(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]).unwrap();
    let (code, body) = srv.post_raw(&garbage, "snappy", "application/x-protobuf");
    assert_eq!(code, 400, "{body}");
    assert!(body.to_lowercase().contains("protobuf"), "{body}");

    // Unsupported encoding.
    let (code, body) = srv.post_raw(b"x", "gzip", "application/x-protobuf");
    assert_eq!(code, 415, "{body}");

    // A declared decompressed length far over the limit is refused before allocating.
    let mut huge = Vec::new();
    let mut n: u64 = 1 << 40;
    while n >= 0x80 {
        huge.push((n as u8) | 0x80);
        n >>= 7;
    }
    huge.push(n as u8);
    huge.extend_from_slice(&[0; 16]);
    let (code, body) = srv.post_raw(&huge, "snappy", "application/x-protobuf");
    assert!(code == 400 || code == 413, "{code} {body}");

    // The server is still fine.
    assert_eq!(srv.write(&request(vec![series("ok", &[], &[(T0, 1.0)])])).0, 204);
}

#[test]
fn invalid_series_and_rejected_samples_do_not_drop_valid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    assert_eq!(srv.write(&request(vec![series("good", &[("k", "v")], &[(T0 + 180 * MIN, 1.0)])])).0, 204);

    let bad_name = TimeSeries {
        labels: vec![
            Label { name: "__name__".into(), value: "bad".into() },
            // An empty label name: still invalid under Prometheus 3's UTF-8 name rules.
            Label { name: "".into(), value: "x".into() },
        ],
        samples: vec![Sample { timestamp: T0 + 180 * MIN, value: 1.0 }],
        ..Default::default()
    };
    let req = request(vec![
        bad_name,
        // Out of bounds: more than 1h older than the head's newest sample.
        series("old", &[], &[(T0, 5.0)]),
        // Duplicate timestamp with a different value.
        series("good", &[("k", "v")], &[(T0 + 180 * MIN, 2.0)]),
        // Valid.
        series("good", &[("k", "v")], &[(T0 + 181 * MIN, 3.0)]),
        series("other", &[], &[(T0 + 181 * MIN, 4.0)]),
    ]);
    let (code, body) = srv.write(&req);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid label name \"\""), "{body}");
    assert!(body.contains("out of bounds"), "{body}");
    assert!(body.contains("duplicate sample for timestamp"), "{body}");

    let got = srv.raw_samples("good", "10m", T0 + 181 * MIN);
    assert_eq!(got[0].1, vec![(T0 + 180 * MIN, "1".to_string()), (T0 + 181 * MIN, "3".to_string())]);
    let got = srv.raw_samples("other", "10m", T0 + 181 * MIN);
    assert_eq!(got[0].1, vec![(T0 + 181 * MIN, "4".to_string())]);
    assert!(srv.raw_samples("old", "10h", T0 + 181 * MIN).is_empty());
    assert!(srv.raw_samples("bad", "10h", T0 + 181 * MIN).is_empty());
}
