//! In-process tests of remote-write 2.0 on the endpoint: negotiation, the Written headers on every
//! answer, partial acceptance, created timestamps and metadata.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use prost::Message;
use tower::ServiceExt;
use tsdb::metadata::{MetadataStore, MetricType};

use crate::proto_v2::{self as v2, SymbolTable};
use crate::{proto, router, IngestState, Limits, WRITE_PATH};

const V2_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

fn state(ct_zero: bool) -> (tempfile::TempDir, Arc<tsdb::Head>, Arc<MetadataStore>, IngestState) {
    let (dir, head) = tsdb::testing::temp_head(tsdb::Options { ooo_time_window_ms: 0, ..Default::default() });
    let store = Arc::new(MetadataStore::in_memory());
    let st = IngestState::new(Arc::clone(&head), Limits::default())
        .unwrap()
        .with_metadata(Arc::clone(&store))
        .with_created_timestamp_zero_ingestion(ct_zero);
    (dir, head, store, st)
}

async fn post(state: &IngestState, payload: &[u8], content_type: &str) -> (StatusCode, HeaderMap, String) {
    let body = snap::raw::Encoder::new().compress_vec(payload).unwrap();
    let req = Request::builder()
        .method("POST")
        .uri(WRITE_PATH)
        .header("content-encoding", "snappy")
        .header("content-type", content_type)
        .header("x-prometheus-remote-write-version", "2.0.0")
        .body(Body::from(body))
        .unwrap();
    let resp = router(state.clone()).oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

fn written(h: &HeaderMap) -> (String, String, String) {
    let get = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_else(|| "absent".into());
    (
        get("x-prometheus-remote-write-samples-written"),
        get("x-prometheus-remote-write-histograms-written"),
        get("x-prometheus-remote-write-exemplars-written"),
    )
}

fn counts(s: u64, h: u64, e: u64) -> (String, String, String) {
    (s.to_string(), h.to_string(), e.to_string())
}

fn samples(head: &Arc<tsdb::Head>, name: &str) -> Vec<(i64, f64)> {
    let q = head.querier(i64::MIN, i64::MAX);
    let mut out = Vec::new();
    for s in q.select(&[tsdb::Matcher::equal("__name__", name)]).unwrap() {
        out.extend(s.samples(i64::MIN, i64::MAX));
    }
    out
}

fn series(t: &mut SymbolTable, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> v2::TimeSeries {
    v2::TimeSeries {
        labels_refs: t.label_refs(labels.iter().copied()),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| v2::Sample { value, timestamp, start_timestamp: 0 })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn floats_metadata_and_exemplars_are_accepted_with_exact_headers() {
    let (_dir, head, store, st) = state(false);
    let mut t = SymbolTable::default();
    let mut a = series(&mut t, &[("job", "api"), ("__name__", "http_requests_total")], &[(1000, 1.0), (2000, 3.0)]);
    a.metadata = Some(v2::Metadata { r#type: 1, help_ref: t.intern("Requests served."), unit_ref: 0 });
    a.exemplars = vec![v2::Exemplar { labels_refs: t.label_refs([("trace_id", "abc")]), value: 1.0, timestamp: 1000 }];
    let mut b = series(&mut t, &[("__name__", "rq_seconds_bucket"), ("le", "0.5")], &[(1000, 7.0)]);
    b.metadata = Some(v2::Metadata { r#type: 3, help_ref: t.intern("Latency."), unit_ref: t.intern("seconds") });
    // Metadata only: nothing written.
    let mut c = series(&mut t, &[("__name__", "temp_celsius")], &[]);
    c.metadata = Some(v2::Metadata { r#type: 2, help_ref: t.intern("Temperature."), unit_ref: t.intern("celsius") });
    let req = v2::Request { timeseries: vec![a, b, c], symbols: t.into_symbols() };
    let (status, headers, text) = post(&st, &req.encode_to_vec(), V2_TYPE).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    assert_eq!(written(&headers), counts(3, 0, 0));
    assert_eq!(samples(&head, "http_requests_total"), [(1000, 1.0), (2000, 3.0)]);
    assert_eq!(samples(&head, "rq_seconds_bucket"), [(1000, 7.0)]);
    assert!(samples(&head, "temp_celsius").is_empty());
    assert_eq!(head.num_series(), 2);
    let meta: Vec<_> = store.list(None).into_iter().map(|(n, m)| (n, m.kind, m.help, m.unit)).collect();
    assert_eq!(
        meta,
        [
            ("http_requests_total".to_owned(), MetricType::Counter, "Requests served.".to_owned(), String::new()),
            ("rq_seconds".to_owned(), MetricType::Histogram, "Latency.".to_owned(), "seconds".to_owned()),
            ("temp_celsius".to_owned(), MetricType::Gauge, "Temperature.".to_owned(), "celsius".to_owned()),
        ]
    );
    let m = st.metrics().snapshot();
    assert_eq!((m.samples_received, m.samples_accepted, m.exemplars_received), (3, 3, 1));
}

#[tokio::test]
async fn bad_series_are_rejected_alone_and_the_headers_count_what_was_stored() {
    let (_dir, head, _store, st) = state(false);
    let mut t = SymbolTable::default();
    let good = series(&mut t, &[("__name__", "good")], &[(1000, 1.0), (2000, 2.0)]);
    let mut hist = series(&mut t, &[("__name__", "latency")], &[]);
    hist.histograms = vec![v2::Histogram {
        count: Some(crate::proto::histogram::Count::CountInt(3)),
        sum: 1.5,
        timestamp: 1000,
        ..Default::default()
    }];
    let mut bad_ref = series(&mut t, &[("__name__", "broken")], &[(1000, 1.0)]);
    bad_ref.labels_refs.push(500);
    bad_ref.labels_refs.push(1);
    let mut odd = series(&mut t, &[("__name__", "odd")], &[(1000, 1.0)]);
    odd.labels_refs.push(1);
    let no_name = series(&mut t, &[("job", "x")], &[(1000, 1.0)]);
    let req = v2::Request { timeseries: vec![hist, bad_ref, good, odd, no_name], symbols: t.into_symbols() };
    let n_symbols = req.symbols.len();
    let (status, headers, text) = post(&st, &req.encode_to_vec(), V2_TYPE).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(written(&headers), counts(2, 0, 0));
    assert_eq!(samples(&head, "good"), [(1000, 1.0), (2000, 2.0)]);
    assert!(text.starts_with("rejected 4 of 6 samples ("), "{text}");
    assert!(
        text.contains("{__name__=\"latency\"} @1000: invalid histogram: 0 observations found in buckets, but the Count field is 3"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "series #1 {{__name__=\"broken\", \"\"=\"__name__\"}}: labels_refs references symbol 500, but the request has {n_symbols} symbols"
        )),
        "{text}"
    );
    assert!(text.contains("series #3 {__name__=\"odd\"}: labels_refs holds an odd number of references (3)"), "{text}");
    assert!(text.contains("{job=\"x\"} @1000: invalid labels"), "{text}");
}

#[tokio::test]
async fn undecodable_and_unsupported_requests() {
    let (_dir, _head, _store, st) = state(false);
    // Corrupt protobuf: 400 with zero counts.
    let (status, headers, text) = post(&st, &[0x2a, 0x05, 0x01], V2_TYPE).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.starts_with("invalid protobuf io.prometheus.write.v2.Request: "), "{text}");
    assert_eq!(written(&headers), counts(0, 0, 0));
    // symbols[0] not empty.
    let req = v2::Request { symbols: vec!["x".into()], timeseries: vec![] };
    let (status, headers, text) = post(&st, &req.encode_to_vec(), V2_TYPE).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("symbols[0] must be the empty string, got \"x\""), "{text}");
    assert_eq!(written(&headers), counts(0, 0, 0));
    // Unknown message: 415, naming the type; not a 2.0 answer.
    let (status, headers, text) = post(&st, &[], "application/x-protobuf;proto=io.prometheus.write.v3.Request").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{text}");
    assert!(text.contains("io.prometheus.write.v3.Request"), "{text}");
    assert_eq!(written(&headers).0, "absent");
    // A 1.0 request gets no 2.0 headers.
    let (status, headers, _) = post(&st, &[], "application/x-protobuf").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(written(&headers).0, "absent");
}

#[tokio::test]
async fn created_timestamp_adds_a_zero_sample_once_when_enabled() {
    for enabled in [false, true] {
        let (_dir, head, _store, st) = state(enabled);
        let mut t = SymbolTable::default();
        let mut a = series(&mut t, &[("__name__", "c_total")], &[(10_000, 5.0), (20_000, 6.0)]);
        a.created_timestamp = 4_000;
        // Created timestamp from the first sample (newer senders), not older than it: ignored.
        let mut b = series(&mut t, &[("__name__", "d_total")], &[(10_000, 5.0)]);
        b.samples[0].start_timestamp = 10_000;
        let mut c = series(&mut t, &[("__name__", "e_total")], &[(10_000, 5.0)]);
        c.samples[0].start_timestamp = 9_000;
        let req = v2::Request { timeseries: vec![a, b, c], symbols: t.into_symbols() };
        let (status, headers, text) = post(&st, &req.encode_to_vec(), V2_TYPE).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
        // The zero samples are not counted as written samples.
        assert_eq!(written(&headers), counts(4, 0, 0));
        // The next request with the same created timestamp: now older than the series' newest sample.
        let mut req = req;
        for ts in &mut req.timeseries {
            ts.samples =
                vec![v2::Sample { value: 9.0, timestamp: 30_000, start_timestamp: ts.samples[0].start_timestamp }];
        }
        let (status, _, text) = post(&st, &req.encode_to_vec(), V2_TYPE).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
        if enabled {
            assert_eq!(samples(&head, "c_total"), [(4_000, 0.0), (10_000, 5.0), (20_000, 6.0), (30_000, 9.0)]);
            assert_eq!(samples(&head, "e_total"), [(9_000, 0.0), (10_000, 5.0), (30_000, 9.0)]);
        } else {
            assert_eq!(samples(&head, "c_total"), [(10_000, 5.0), (20_000, 6.0), (30_000, 9.0)]);
            assert_eq!(samples(&head, "e_total"), [(10_000, 5.0), (30_000, 9.0)]);
        }
        assert_eq!(samples(&head, "d_total"), [(10_000, 5.0), (30_000, 9.0)]);
    }
}

#[tokio::test]
async fn remote_write_1_0_metadata_is_recorded() {
    let (_dir, _head, store, st) = state(false);
    let req = proto::WriteRequest {
        timeseries: vec![],
        metadata: vec![proto::MetricMetadata {
            r#type: proto::MetricType::Summary as i32,
            metric_family_name: "rpc_seconds".into(),
            help: "RPC latency.".into(),
            unit: "seconds".into(),
        }],
    };
    let (status, _, text) = post(&st, &req.encode_to_vec(), "application/x-protobuf").await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    let m = store.list(Some("rpc_seconds"));
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].1.kind, m[0].1.help.as_str(), m[0].1.unit.as_str()),
        (MetricType::Summary, "RPC latency.", "seconds")
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_zero_counts() {
    let (_dir, head) = tsdb::testing::temp_head(tsdb::Options::default());
    let limits = Limits { max_compressed_bytes: 64, ..Limits::default() };
    let st = IngestState::new(Arc::clone(&head), limits).unwrap();
    let mut t = SymbolTable::default();
    let big = series(&mut t, &[("__name__", "x"), ("padding", &"p".repeat(200))], &[(1, 1.0)]);
    let req = v2::Request { timeseries: vec![big], symbols: t.into_symbols() };
    // Not compressible below the limit: the padding is random-looking.
    let mut payload = req.encode_to_vec();
    payload.extend((0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    let (status, headers, text) = post(&st, &payload, V2_TYPE).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert_eq!(written(&headers), counts(0, 0, 0));
}
