//! In-process tests of the endpoint: a real head (with WAL) behind the router, driven with `oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use prost::Message;
use tower::ServiceExt;

use crate::proto::{self, Label, Sample, TimeSeries, WriteRequest};
use crate::{router, IngestState, Limits, Reason, WRITE_PATH};

const WINDOW_MS: i64 = 600_000;

fn head() -> (tempfile::TempDir, Arc<tsdb::Head>) {
    tsdb::testing::temp_head(tsdb::Options { ooo_time_window_ms: WINDOW_MS, ..Default::default() })
}

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels.iter().map(|(n, v)| Label { name: (*n).into(), value: (*v).into() }).collect(),
        samples: samples.iter().map(|&(timestamp, value)| Sample { value, timestamp }).collect(),
        ..Default::default()
    }
}

fn body(req: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
}

async fn send_with(state: &IngestState, body: Vec<u8>, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut req = Request::builder().method("POST").uri(WRITE_PATH);
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let resp = router(state.clone()).oneshot(req.body(Body::from(body)).unwrap()).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

const RW_HEADERS: &[(&str, &str)] = &[
    ("content-encoding", "snappy"),
    ("content-type", "application/x-protobuf"),
    ("x-prometheus-remote-write-version", "0.1.0"),
];

async fn send(state: &IngestState, req: &WriteRequest) -> (StatusCode, String) {
    send_with(state, body(req), RW_HEADERS).await
}

fn samples(head: &Arc<tsdb::Head>, name: &str) -> Vec<(i64, f64)> {
    let q = head.querier(i64::MIN, i64::MAX);
    let mut out = Vec::new();
    for s in q.select(&[tsdb::Matcher::equal("__name__", name)]).unwrap() {
        out.extend(s.samples(i64::MIN, i64::MAX));
    }
    out
}

#[tokio::test]
async fn valid_request_is_stored_and_answered_204() {
    let (_dir, head) = head();
    let state = IngestState::new(Arc::clone(&head), Limits::default()).unwrap();
    let req = WriteRequest {
        timeseries: vec![
            // Labels out of order on purpose: the spec asks for sorted labels, the appender sorts anyway.
            series(&[("job", "node"), ("__name__", "up")], &[(1000, 1.0), (2000, 0.0)]),
            series(&[("__name__", "temp"), ("room", "a")], &[(1500, 21.5)]),
            series(&[("__name__", "up"), ("job", "node")], &[(3000, 1.0)]),
        ],
        metadata: vec![proto::MetricMetadata { r#type: 1, metric_family_name: "up".into(), ..Default::default() }],
    };
    let (status, text) = send(&state, &req).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    assert!(text.is_empty());
    assert_eq!(samples(&head, "up"), vec![(1000, 1.0), (2000, 0.0), (3000, 1.0)]);
    assert_eq!(samples(&head, "temp"), vec![(1500, 21.5)]);
    assert_eq!(head.num_series(), 2);

    // Re-sending the same samples (a sender retry) is accepted and stores nothing twice.
    let (status, text) = send(&state, &req).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    assert_eq!(samples(&head, "up").len(), 3);

    let m = state.metrics().snapshot();
    assert_eq!((m.requests, m.samples_received, m.samples_accepted, m.metadata_received), (2, 8, 8, 2));
    assert_eq!(m.requests_client_error + m.requests_server_error, 0);
}

#[tokio::test]
async fn absent_headers_are_assumed_remote_write_1_0() {
    let (_dir, head) = head();
    let state = IngestState::new(Arc::clone(&head), Limits::default()).unwrap();
    let req = WriteRequest { timeseries: vec![series(&[("__name__", "x")], &[(1, 1.0)])], metadata: vec![] };
    let (status, text) = send_with(&state, body(&req), &[]).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    let (status, text) =
        send_with(&state, body(&req), &[("content-type", "application/x-protobuf;proto=prometheus.WriteRequest")])
            .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
}

#[tokio::test]
async fn mixed_request_stores_the_valid_samples_and_names_the_rejected_ones() {
    let (_dir, head) = head();
    let state = IngestState::new(Arc::clone(&head), Limits::default()).unwrap();
    let t0 = 10_000_000;
    let (status, text) =
        send(&state, &WriteRequest { timeseries: vec![series(&[("__name__", "x")], &[(t0, 1.0)])], metadata: vec![] })
            .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");

    let req = WriteRequest {
        timeseries: vec![
            series(&[("__name__", "x")], &[(t0 - WINDOW_MS - 1, 5.0), (t0, 2.0), (t0 + 100, 3.0)]),
            series(&[("__name__", "bad"), ("", "v")], &[(t0, 1.0), (t0 + 1, 1.0)]),
            series(&[("__name__", "y"), ("job", "j")], &[(t0 - 1000, 7.0), (t0 + 200, 8.0)]),
        ],
        metadata: vec![],
    };
    let (status, text) = send(&state, &req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        "rejected 4 of 7 samples (too_old: 1, duplicate: 1, invalid_labels: 2); the other 3 were accepted"
    );
    assert!(text.contains(&format!("{{__name__=\"x\"}} @{}: too old sample", t0 - WINDOW_MS - 1)), "{text}");
    assert!(
        text.contains(&format!("{{__name__=\"x\"}} @{t0}: duplicate sample for timestamp {t0}; overrides not allowed: existing 1, new value 2")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{{__name__=\"bad\", \"\"=\"v\"}} 2 samples from @{t0}: invalid labels: invalid label name \"\""
        )),
        "{text}"
    );
    // The valid samples of the same request are stored (and durable: commit ran).
    assert_eq!(samples(&head, "x"), vec![(t0, 1.0), (t0 + 100, 3.0)]);
    assert_eq!(samples(&head, "y"), vec![(t0 - 1000, 7.0), (t0 + 200, 8.0)]);
    assert!(samples(&head, "bad").is_empty());

    let m = state.metrics();
    assert_eq!(m.rejected(Reason::TooOld), 1);
    assert_eq!(m.rejected(Reason::Duplicate), 1);
    assert_eq!(m.rejected(Reason::InvalidLabels), 2);
    assert_eq!(m.snapshot().requests_client_error, 1);
}

#[tokio::test]
async fn invalid_utf8_label_rejects_that_series_only() {
    let (_dir, head) = head();
    let state = IngestState::new(Arc::clone(&head), Limits::default()).unwrap();
    let req = WriteRequest {
        timeseries: vec![
            series(&[("__name__", "ok")], &[(1, 1.0)]),
            series(&[("__name__", "utf"), ("job", "Z")], &[(1, 1.0)]),
        ],
        metadata: vec![],
    };
    let mut payload = req.encode_to_vec();
    let z = payload.iter().position(|&b| b == b'Z').unwrap();
    payload[z] = 0xff;
    let compressed = snap::raw::Encoder::new().compress_vec(&payload).unwrap();
    let (status, text) = send_with(&state, compressed, RW_HEADERS).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(
        text.contains(
            "{__name__=\"utf\", job=\"\u{fffd}\"} @1: invalid labels: label name or value is not valid UTF-8"
        ),
        "{text}"
    );
    assert_eq!(samples(&head, "ok"), vec![(1, 1.0)]);
}

#[tokio::test]
async fn native_histograms_are_stored_and_invalid_ones_rejected_alone() {
    let (_dir, head) = head();
    let state = IngestState::new(Arc::clone(&head), Limits::default()).unwrap();
    // An empty histogram is valid; one whose count disagrees with its (no) buckets is not.
    let hist = |timestamp| proto::Histogram { timestamp, schema: 1, ..Default::default() };
    let mut mixed = series(&[("__name__", "f")], &[(1000, 1.0)]);
    mixed.histograms =
        vec![proto::Histogram { count: Some(proto::histogram::Count::CountInt(5)), ..hist(1000) }, hist(2000)];
    mixed.exemplars = vec![proto::Exemplar { labels: vec![], value: 1.0, timestamp: 1000 }];
    let req = WriteRequest {
        timeseries: vec![
            TimeSeries {
                labels: vec![Label { name: "__name__".into(), value: "h".into() }],
                histograms: vec![hist(1000), hist(2000)],
                ..Default::default()
            },
            mixed,
        ],
        metadata: vec![],
    };
    let (status, text) = send(&state, &req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.starts_with("rejected 1 of 5 samples (invalid_histogram: 1)"), "{text}");
    assert!(
        text.contains(
            "{__name__=\"f\"} @1000: invalid histogram: 0 observations found in buckets, but the Count field is 5"
        ),
        "{text}"
    );
    assert_eq!(samples(&head, "f"), vec![(1000, 1.0)]);
    let m = state.metrics().snapshot();
    assert_eq!((m.histograms_received, m.exemplars_received), (2 + 2, 1));
    assert_eq!(head.stats().histograms.in_order.load(std::sync::atomic::Ordering::Relaxed), 3);
}

#[tokio::test]
async fn undecodable_bodies_are_400_and_say_why() {
    let (_dir, head) = head();
    let state = IngestState::new(Arc::clone(&head), Limits::default()).unwrap();
    let req = WriteRequest { timeseries: vec![series(&[("__name__", "x")], &[(1, 1.0)])], metadata: vec![] };

    let (status, text) = send_with(&state, req.encode_to_vec(), RW_HEADERS).await; // not compressed
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.starts_with("invalid snappy block"), "{text}");

    let garbage = snap::raw::Encoder::new().compress_vec(&[0x0a, 0x7f, 0x01]).unwrap();
    let (status, text) = send_with(&state, garbage, RW_HEADERS).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.starts_with("invalid protobuf WriteRequest: truncated field"), "{text}");

    // A valid series followed by a malformed tail: nothing is stored.
    let mut payload = req.encode_to_vec();
    payload.extend([0x0a, 0x7f]);
    let (status, text) = send_with(&state, snap::raw::Encoder::new().compress_vec(&payload).unwrap(), RW_HEADERS).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("protobuf"), "{text}");
    assert!(samples(&head, "x").is_empty());
}

#[tokio::test]
async fn unsupported_encoding_or_type_is_415() {
    let (_dir, head) = head();
    let state = IngestState::new(Arc::clone(&head), Limits::default()).unwrap();
    let req = WriteRequest { timeseries: vec![series(&[("__name__", "x")], &[(1, 1.0)])], metadata: vec![] };
    let (status, text) = send_with(&state, body(&req), &[("content-encoding", "gzip")]).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(text.contains("Content-Encoding \"gzip\""), "{text}");
    let (status, text) = send_with(
        &state,
        body(&req),
        &[("content-type", "application/x-protobuf;proto=io.prometheus.write.v3.Request")],
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(text.contains("Content-Type"), "{text}");
    assert!(samples(&head, "x").is_empty());
}

#[tokio::test]
async fn oversize_bodies_are_413() {
    let (_dir, head) = head();
    let limits = Limits { max_compressed_bytes: 256, max_decompressed_bytes: 1024 };
    let state = IngestState::new(Arc::clone(&head), limits).unwrap();
    let big: Vec<(i64, f64)> = (0..200).map(|i| (i, i as f64 * 1.37)).collect();
    let req = WriteRequest { timeseries: vec![series(&[("__name__", "x")], &big)], metadata: vec![] };
    let (status, text) = send(&state, &req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text.contains("exceeds the limit of 256 bytes"), "{text}");

    // Small compressed, large declared decompressed size.
    let zeros = snap::raw::Encoder::new().compress_vec(&[0u8; 4096]).unwrap();
    assert!(zeros.len() < 256);
    let (status, text) = send_with(&state, zeros, RW_HEADERS).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text.contains("declares 4096 decompressed bytes, over the limit of 1024"), "{text}");
    assert!(samples(&head, "x").is_empty());
    assert_eq!(state.metrics().snapshot().requests_client_error, 2);
}

#[tokio::test]
async fn storage_failure_is_5xx() {
    let (_dir, head) = head();
    let state = IngestState::new(Arc::clone(&head), Limits::default()).unwrap();
    head.close().unwrap();
    let req = WriteRequest { timeseries: vec![series(&[("__name__", "x")], &[(1, 1.0)])], metadata: vec![] };
    let (status, text) = send(&state, &req).await;
    assert!(status.is_server_error(), "{status} {text}");
    assert_eq!(state.metrics().snapshot().requests_server_error, 1);
}

#[tokio::test]
async fn every_series_of_a_request_is_stored_in_order_around_empty_ones() {
    // Series are looked up two steps behind the decoder: the first, the last, repeats and series
    // without samples in between must all come out as sent.
    let (_dir, head) = head();
    let state = IngestState::new(Arc::clone(&head), Limits::default()).unwrap();
    let t0 = 10_000_000;
    let req = WriteRequest {
        timeseries: vec![
            series(&[("__name__", "a")], &[(t0, 1.0)]),
            series(&[("__name__", "empty")], &[]),
            series(&[("__name__", "a")], &[(t0 + 1, 2.0)]),
            series(&[("__name__", "b")], &[(t0, 3.0), (t0 + 5, 4.0)]),
            series(&[("__name__", "a")], &[(t0 + 2, 5.0)]),
            series(&[("__name__", "c")], &[(t0, 6.0)]),
            series(&[("__name__", "empty2")], &[]),
        ],
        metadata: vec![],
    };
    let (status, text) = send(&state, &req).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    assert_eq!(samples(&head, "a"), vec![(t0, 1.0), (t0 + 1, 2.0), (t0 + 2, 5.0)]);
    assert_eq!(samples(&head, "b"), vec![(t0, 3.0), (t0 + 5, 4.0)]);
    assert_eq!(samples(&head, "c"), vec![(t0, 6.0)]);
    assert!(samples(&head, "empty").is_empty());
}

#[tokio::test]
async fn requests_of_any_number_of_series_store_every_one() {
    // The lookup pipeline holds up to three series: requests shorter and longer than it, ending at
    // each position of its ring, must flush every series.
    let (_dir, head) = head();
    let state = IngestState::new(Arc::clone(&head), Limits::default()).unwrap();
    let t0 = 10_000_000;
    for n in 1..=8usize {
        let names: Vec<String> = (0..n).map(|i| format!("s{n}_{i}")).collect();
        let req = WriteRequest {
            timeseries: names
                .iter()
                .enumerate()
                .map(|(i, name)| series(&[("__name__", name)], &[(t0, i as f64)]))
                .collect(),
            metadata: vec![],
        };
        let (status, text) = send(&state, &req).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{n} series: {text}");
        for (i, name) in names.iter().enumerate() {
            assert_eq!(samples(&head, name), vec![(t0, i as f64)], "{name}");
        }
    }
}
