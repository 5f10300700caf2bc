//! Remote-write 2.0 through the real binary: floats read back exactly, negotiation (415), corrupt
//! bodies (400), the Written headers on 2xx and 4xx, metadata from 1.0 and 2.0 on
//! `/api/v1/metadata` across a clean restart and a kill -9, and the receiver cases of Prometheus's
//! remote-write compliance suite (`remotewrite/receiver`) as a table.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ingest::proto::{MetricMetadata, MetricType, WriteRequest};
use ingest::proto_v2::{self as v2, SymbolTable};
use prost::Message;

use crate::util::{format_time, value_string, Server, WriteAnswer, V2_CONTENT_TYPE};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn post(srv: &Server, payload: &[u8], encoding: &str, content_type: &str) -> WriteAnswer {
    srv.post_write(payload, encoding, content_type)
}

fn post_v2(srv: &Server, req: &v2::Request) -> WriteAnswer {
    srv.post_v2(req)
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

/// `query_range` of `query` from `start` to `end` by `step_ms`: per series, (labels JSON, points).
fn query_range(srv: &Server, query: &str, start: i64, end: i64, step_ms: i64) -> Vec<(String, Vec<(i64, String)>)> {
    let (code, json) = srv.get_json(
        "/api/v1/query_range",
        &[
            ("query", query),
            ("start", &format_time(start)),
            ("end", &format_time(end)),
            ("step", &format_time(step_ms)),
        ],
    );
    assert_eq!(code, 200, "{json}");
    json["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let points = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| ((p[0].as_f64().unwrap() * 1000.0).round() as i64, p[1].as_str().unwrap().to_owned()))
                .collect();
            (s["metric"].to_string(), points)
        })
        .collect()
}

#[test]
fn floats_read_back_exactly_and_headers_count_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    let t0 = (now_ms() - 120_000) / 1000 * 1000;
    let step = 15_000;
    let ts: Vec<i64> = (0..5).map(|i| t0 + i * step).collect();
    let mut t = SymbolTable::default();
    // Labels deliberately unsorted: the receiver sorts them.
    let a = series(
        &mut t,
        &[("job", "node"), ("__name__", "rw2_float"), ("instance", "a")],
        &ts.iter().enumerate().map(|(i, &t)| (t, i as f64 * 1.5)).collect::<Vec<_>>(),
    );
    let b = series(
        &mut t,
        &[("__name__", "rw2_float"), ("instance", "b"), ("job", "node")],
        &ts.iter().enumerate().map(|(i, &t)| (t, -(i as f64) - 0.5)).collect::<Vec<_>>(),
    );
    let req = v2::Request { timeseries: vec![a, b], symbols: t.into_symbols() };
    let ans = post_v2(&srv, &req);
    assert_eq!(ans.status, 204, "{}", ans.body);
    assert_eq!(ans.written, [Some(10), Some(0), Some(0)]);

    let got = query_range(&srv, "rw2_float", t0, ts[4], step);
    assert_eq!(got.len(), 2, "{got:?}");
    for (labels, points) in &got {
        let instance = serde_json::from_str::<serde_json::Value>(labels).unwrap()["instance"].clone();
        let want: Vec<(i64, String)> = ts
            .iter()
            .enumerate()
            .map(|(i, &t)| (t, value_string(if instance == "a" { i as f64 * 1.5 } else { -(i as f64) - 0.5 })))
            .collect();
        assert_eq!(points, &want, "{labels}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(labels).unwrap(),
            serde_json::json!({"__name__": "rw2_float", "instance": instance, "job": "node"})
        );
    }

    // A partly bad request: the valid series is stored, the answer is 400 naming the rest, and the
    // headers count exactly what was stored.
    let mut t = SymbolTable::default();
    let good = series(&mut t, &[("__name__", "rw2_partial")], &[(t0, 1.0), (t0 + step, 2.0)]);
    let mut hist = series(&mut t, &[("__name__", "rw2_hist")], &[]);
    hist.histograms = vec![v2::Histogram {
        count: Some(ingest::proto::histogram::Count::CountInt(1)),
        sum: 0.5,
        timestamp: t0,
        ..Default::default()
    }];
    let mut bad_ref = series(&mut t, &[("__name__", "rw2_bad_ref")], &[(t0, 1.0)]);
    bad_ref.labels_refs[1] = 999;
    let too_old = series(&mut t, &[("__name__", "rw2_float"), ("instance", "a"), ("job", "node")], &[(t0, 7.0)]);
    let req = v2::Request { timeseries: vec![hist, good, bad_ref, too_old], symbols: t.into_symbols() };
    let ans = post_v2(&srv, &req);
    assert_eq!(ans.status, 400, "{}", ans.body);
    assert_eq!(ans.written, [Some(2), Some(0), Some(0)]);
    // The histogram's count (1) disagrees with its buckets (none).
    assert!(ans.body.contains("{__name__=\"rw2_hist\"} @"), "{}", ans.body);
    assert!(ans.body.contains("labels_refs references symbol 999"), "{}", ans.body);
    assert!(ans.body.contains("{__name__=\"rw2_float\", instance=\"a\", job=\"node\"} @"), "{}", ans.body);
    assert!(ans.body.contains("out of order sample"), "{}", ans.body);
    let got = query_range(&srv, "rw2_partial", t0, t0 + step, step);
    assert_eq!(got[0].1, [(t0, "1".to_owned()), (t0 + step, "2".to_owned())]);
    assert!(query_range(&srv, "rw2_bad_ref", t0, t0 + step, step).is_empty());
}

#[test]
fn negotiation_and_corrupt_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    let t0 = now_ms() - 60_000;
    let mut t = SymbolTable::default();
    let s = series(&mut t, &[("__name__", "rw2_neg")], &[(t0, 1.0)]);
    let payload = v2::Request { timeseries: vec![s], symbols: t.into_symbols() }.encode_to_vec();

    // (content encoding, content type, status, 2.0 headers expected)
    let cases: &[(&str, &str, u16, bool)] = &[
        ("snappy", "application/x-protobuf;proto=io.prometheus.write.v3.Request", 415, false),
        ("gzip", V2_CONTENT_TYPE, 415, false),
        ("snappy", "application/json", 415, false),
        // A 2.0 body sent as 1.0 is an empty 1.0 request: 2.0's fields 4 and 5 are unknown to 1.0.
        ("snappy", "application/x-protobuf", 204, false),
        ("snappy", V2_CONTENT_TYPE, 204, true),
    ];
    for &(encoding, content_type, status, v2_headers) in cases {
        let ans = post(&srv, &payload, encoding, content_type);
        assert_eq!(ans.status, status, "{encoding} {content_type}: {}", ans.body);
        if status == 415 {
            assert!(ans.body.contains("unsupported Content-"), "{}", ans.body);
        }
        let want = if v2_headers { [Some(1), Some(0), Some(0)] } else { [None; 3] };
        assert_eq!(ans.written, want, "{encoding} {content_type}");
    }

    // Corrupt bodies: 400 with zero counts, nothing stored.
    let mut corrupt = payload.clone();
    corrupt[0] = b'0';
    for (what, body) in [("corrupt protobuf", corrupt), ("truncated", payload[..payload.len() - 3].to_vec())] {
        let ans = post(&srv, &body, "snappy", V2_CONTENT_TYPE);
        assert_eq!(ans.status, 400, "{what}: {}", ans.body);
        assert!(ans.body.starts_with("invalid protobuf io.prometheus.write.v2.Request"), "{what}: {}", ans.body);
        assert_eq!(ans.written, [Some(0), Some(0), Some(0)], "{what}");
    }
    let not_snappy = srv
        .request("POST", "/api/v1/write")
        .set("Content-Type", V2_CONTENT_TYPE)
        .set("Content-Encoding", "snappy")
        .send_bytes(b"\xff\xff\xff\xff\xff not snappy");
    match not_snappy {
        Err(ureq::Error::Status(400, resp)) => {
            assert_eq!(resp.header("X-Prometheus-Remote-Write-Samples-Written"), Some("0"));
        }
        other => panic!("not snappy: {other:?}"),
    }
    let ans = post_v2(&srv, &v2::Request { symbols: vec!["x".into()], timeseries: vec![] });
    assert_eq!(ans.status, 400);
    assert!(ans.body.contains("symbols[0] must be the empty string"), "{}", ans.body);
}

/// The metadata the server answers for `metric`, as (type, help, unit).
fn metadata_of(srv: &Server, metric: &str) -> Option<(String, String, String)> {
    let (code, json) = srv.get_json("/api/v1/metadata", &[("metric", metric)]);
    assert_eq!(code, 200, "{json}");
    let entry = json["data"][metric].as_array()?.first()?.clone();
    let s = |k: &str| entry[k].as_str().unwrap().to_owned();
    Some((s("type"), s("help"), s("unit")))
}

fn meta(kind: &str, help: &str, unit: &str) -> Option<(String, String, String)> {
    Some((kind.into(), help.into(), unit.into()))
}

#[test]
fn metadata_from_1_0_and_2_0_is_served_and_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut srv = Server::start(dir.path(), &[]);
    let (code, json) = srv.get_json("/api/v1/metadata", &[]);
    assert_eq!((code, json.clone()), (200, serde_json::json!({"status": "success", "data": {}})));

    // 1.0: metadata in a request of its own.
    let v1 = WriteRequest {
        timeseries: vec![],
        metadata: vec![MetricMetadata {
            r#type: MetricType::Counter as i32,
            metric_family_name: "rw1_requests_total".into(),
            help: "Requests served.".into(),
            unit: String::new(),
        }],
    };
    assert_eq!(srv.write(&v1).0, 204);
    // 2.0: metadata on the series (a metadata-only series included).
    let t0 = now_ms() - 60_000;
    let mut t = SymbolTable::default();
    let mut a = series(&mut t, &[("__name__", "rw2_latency_seconds_bucket"), ("le", "1")], &[(t0, 3.0)]);
    a.metadata = Some(v2::Metadata {
        r#type: 3,
        help_ref: t.intern("Latency \"quoted\"\nnewline."),
        unit_ref: t.intern("seconds"),
    });
    let mut b = series(&mut t, &[("__name__", "rw2_temp")], &[]);
    b.metadata = Some(v2::Metadata { r#type: 2, help_ref: t.intern("Temperature."), unit_ref: t.intern("celsius") });
    let ans = post_v2(&srv, &v2::Request { timeseries: vec![a, b], symbols: t.into_symbols() });
    assert_eq!(ans.status, 204, "{}", ans.body);
    assert_eq!(ans.written, [Some(1), Some(0), Some(0)]);

    let check = |srv: &Server| {
        assert_eq!(metadata_of(srv, "rw1_requests_total"), meta("counter", "Requests served.", ""));
        assert_eq!(
            metadata_of(srv, "rw2_latency_seconds"),
            meta("histogram", "Latency \"quoted\"\nnewline.", "seconds")
        );
        assert_eq!(metadata_of(srv, "rw2_temp"), meta("gauge", "Temperature.", "celsius"));
        let (_, all) = srv.get_json("/api/v1/metadata", &[]);
        let names: Vec<&String> = all["data"].as_object().unwrap().keys().collect();
        assert_eq!(names, ["rw1_requests_total", "rw2_latency_seconds", "rw2_temp"]);
        let (_, one) = srv.get_json("/api/v1/metadata", &[("limit", "1")]);
        assert_eq!(one["data"].as_object().unwrap().len(), 1);
        let (code, bad) = srv.get_json("/api/v1/metadata", &[("limit", "x")]);
        assert_eq!((code, bad["error"].as_str()), (400, Some("limit must be a number")));
    };
    check(&srv);
    assert_eq!(srv.metric("strata_metadata_families"), Some(3.0));
    // The latest metadata wins.
    let mut v1b = v1.clone();
    v1b.metadata[0].help = "Requests served, all of them.".into();
    assert_eq!(srv.write(&v1b).0, 204);
    assert_eq!(metadata_of(&srv, "rw1_requests_total"), meta("counter", "Requests served, all of them.", ""));
    assert_eq!(srv.write(&v1).0, 204);

    // A clean restart keeps everything.
    assert!(srv.sigterm().success());
    let mut srv = Server::start(dir.path(), &[]);
    check(&srv);

    // kill -9 keeps what the flusher has written: wait (bounded) until the file holds a new family.
    let v1c = WriteRequest {
        timeseries: vec![],
        metadata: vec![MetricMetadata {
            r#type: MetricType::Gauge as i32,
            metric_family_name: "rw1_after_restart".into(),
            help: "Written before the crash.".into(),
            unit: String::new(),
        }],
    };
    assert_eq!(srv.write(&v1c).0, 204);
    let file = dir.path().join("metadata.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&file).unwrap_or_default().contains("rw1_after_restart") {
        assert!(Instant::now() < deadline, "the metadata file never got the new family");
        std::thread::sleep(Duration::from_millis(100));
    }
    srv.kill9();
    let srv = Server::start(dir.path(), &[]);
    check_after_crash(&srv);
}

fn check_after_crash(srv: &Server) {
    assert_eq!(metadata_of(srv, "rw1_after_restart"), meta("gauge", "Written before the crash.", ""));
    assert_eq!(metadata_of(srv, "rw2_temp"), meta("gauge", "Temperature.", "celsius"));
}

#[test]
fn exemplars_from_1_0_and_2_0_are_served_by_query_exemplars() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &["--storage.exemplars.exemplars-limit=3"]);
    let t0 = (now_ms() - 120_000) / 1000 * 1000;
    // 1.0: TimeSeries.exemplars.
    let mut s1 = crate::util::series("rw_ex_total", &[("job", "api")], &[(t0, 1.0)]);
    s1.exemplars = vec![ingest::proto::Exemplar {
        labels: vec![ingest::proto::Label { name: "trace_id".into(), value: "one".into() }],
        value: 0.25,
        timestamp: t0,
    }];
    assert_eq!(srv.write(&crate::util::request(vec![s1])).0, 204);
    // 2.0: one stored, one out of order (not stored, not an error), one for another series.
    let mut t = SymbolTable::default();
    let mut a = series(&mut t, &[("__name__", "rw_ex_total"), ("job", "api")], &[(t0 + 1000, 2.0)]);
    let refs = t.label_refs([("trace_id", "two")]);
    let old = t.label_refs([("trace_id", "old")]);
    a.exemplars = vec![
        v2::Exemplar { labels_refs: refs, value: 0.5, timestamp: t0 + 1000 },
        v2::Exemplar { labels_refs: old, value: 0.5, timestamp: t0 - 1000 },
    ];
    let mut b = series(&mut t, &[("__name__", "rw_ex_other")], &[(t0, 1.0)]);
    b.exemplars = vec![v2::Exemplar { labels_refs: t.label_refs([("span", "s")]), value: 3.0, timestamp: t0 }];
    let ans = post_v2(&srv, &v2::Request { timeseries: vec![a, b], symbols: t.into_symbols() });
    assert_eq!(ans.status, 204, "{}", ans.body);
    assert_eq!(ans.written, [Some(2), Some(0), Some(2)]);

    let q = |query: &str, start: i64, end: i64| {
        let (code, json) = srv.get_json(
            "/api/v1/query_exemplars",
            &[("query", query), ("start", &format_time(start)), ("end", &format_time(end))],
        );
        assert_eq!(code, 200, "{json}");
        json["data"].clone()
    };
    // Whole seconds: Prometheus writes them without a fraction.
    let t0s = t0 / 1000;
    assert_eq!(
        q("rate(rw_ex_total[5m])", t0 - 60_000, t0 + 60_000),
        serde_json::json!([{
            "seriesLabels": {"__name__": "rw_ex_total", "job": "api"},
            "exemplars": [
                {"labels": {"trace_id": "one"}, "value": "0.25", "timestamp": t0s},
                {"labels": {"trace_id": "two"}, "value": "0.5", "timestamp": t0s + 1},
            ],
        }])
    );
    assert_eq!(q("rw_ex_total", t0 + 500, t0 + 60_000)[0]["exemplars"].as_array().unwrap().len(), 1);
    assert_eq!(q("rw_ex_total or rw_ex_other", t0 - 60_000, t0 + 60_000).as_array().unwrap().len(), 2);
    // Capacity 3: the next exemplar overwrites the oldest (trace "one").
    let mut t = SymbolTable::default();
    let mut c = series(&mut t, &[("__name__", "rw_ex_other")], &[(t0 + 2000, 1.0)]);
    c.exemplars = vec![v2::Exemplar { labels_refs: t.label_refs([("span", "t")]), value: 4.0, timestamp: t0 + 2000 }];
    assert_eq!(post_v2(&srv, &v2::Request { timeseries: vec![c], symbols: t.into_symbols() }).written[2], Some(1));
    let total = q("rw_ex_total", t0 - 60_000, t0 + 60_000);
    assert_eq!(total[0]["exemplars"].as_array().unwrap().len(), 1, "{total}");
    assert_eq!(total[0]["exemplars"][0]["labels"]["trace_id"], "two");
    assert_eq!(srv.metric("strata_exemplars_appended_total"), Some(4.0));
    assert_eq!(srv.metric("strata_exemplars_refused_total"), Some(1.0));
    assert_eq!(srv.metric("strata_exemplars_in_storage"), Some(3.0));
    assert_eq!(srv.metric("strata_exemplars_max"), Some(3.0));
}

#[test]
fn created_timestamp_zero_ingestion_flag() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &["--enable-feature=created-timestamp-zero-ingestion"]);
    let t0 = (now_ms() - 120_000) / 1000 * 1000;
    let mut t = SymbolTable::default();
    let mut c = series(&mut t, &[("__name__", "rw2_ct_total")], &[(t0 + 30_000, 5.0)]);
    c.samples[0].start_timestamp = t0;
    let ans = post_v2(&srv, &v2::Request { timeseries: vec![c], symbols: t.into_symbols() });
    assert_eq!(ans.status, 204, "{}", ans.body);
    assert_eq!(ans.written, [Some(1), Some(0), Some(0)]);
    let got = query_range(&srv, "rw2_ct_total", t0, t0 + 30_000, 30_000);
    assert_eq!(got[0].1, [(t0, "0".to_owned()), (t0 + 30_000, "5".to_owned())]);
}

/// One case of the compliance suite: the series sent, the status and Written headers expected.
struct Case {
    name: &'static str,
    series: Vec<CaseSeries>,
    status: u16,
    /// Samples-Written, Histograms-Written, Exemplars-Written.
    written: [u64; 3],
}

#[derive(Default)]
struct CaseSeries {
    labels: Vec<(&'static str, &'static str)>,
    value: Option<f64>,
    metadata: Option<(i32, &'static str, &'static str)>,
    created_ago_ms: Option<i64>,
    exemplar: bool,
    histogram: bool,
}

fn up(labels: &[(&'static str, &'static str)], value: f64) -> CaseSeries {
    CaseSeries { labels: labels.to_vec(), value: Some(value), ..Default::default() }
}

fn with_meta(mut s: CaseSeries, kind: i32, help: &'static str, unit: &'static str) -> CaseSeries {
    s.metadata = Some((kind, help, unit));
    s
}

/// Prometheus's `StaleNaN`.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn cases() -> Vec<Case> {
    let ok1 = |name, series| Case { name, series, status: 204, written: [1, 0, 0] };
    let job = [("__name__", "up"), ("job", "test"), ("instance", "localhost:9090")];
    let mut cases = Vec::new();
    // TestSingleMetric, for each of its values.
    for v in [1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::from_bits(STALE_NAN)] {
        cases.push(ok1("simple metric", vec![up(&[("__name__", "up")], v)]));
        cases.push(ok1("simple metric with multiple labels", vec![up(&job, v)]));
        cases.push(ok1(
            "simple metric with newlines",
            vec![up(&[("__name__", "up"), ("job", "test\njob\n"), ("instance", "localhost:9090")], v)],
        ));
        // UTF-8 names, accepted as by Prometheus 3 and read back with quoted names.
        cases.push(ok1(
            "simple metric with dots",
            vec![up(&[("__name__", "resource.cpu.usage"), ("job.name", "testjob")], v)],
        ));
        cases.push(Case {
            name: "simple metric without name label",
            series: vec![up(&[("job", "testjob"), ("instance", "localhost:9090")], v)],
            status: 400,
            written: [0, 0, 0],
        });
        cases.push(Case { name: "empty metric", series: vec![up(&[], v)], status: 400, written: [0, 0, 0] });
    }
    // TestMultipleMetrics.
    cases.push(Case {
        name: "multiple metrics",
        series: (0..4)
            .map(|i| up(&[("__name__", "up"), ("job", "testjob"), ("instance", ["i0", "i1", "i2", "i3"][i])], 1.0))
            .collect(),
        status: 204,
        written: [4, 0, 0],
    });
    cases.push(Case {
        name: "multiple metrics, 1 without name label",
        series: (0..4)
            .map(|i| {
                let inst = ["i0", "i1", "i2", "i3"][i];
                if i == 0 {
                    up(&[("job", "testjob"), ("instance", inst)], 1.0)
                } else {
                    up(&[("__name__", "up"), ("job", "testjob"), ("instance", inst)], 1.0)
                }
            })
            .collect(),
        status: 400,
        written: [3, 0, 0],
    });
    // TestCounterWithCreatedTimestamp.
    cases.push(ok1(
        "counter with created timestamp",
        vec![CaseSeries {
            created_ago_ms: Some(3_600_000),
            ..up(&[("__name__", "http_requests_total"), ("job", "api")], 100.0)
        }],
    ));
    // TestMetadata.
    for (name, metric, kind, help, unit) in [
        ("counter_metadata", "http_requests_total", 1, "Total number of HTTP requests", "requests"),
        ("gauge_metadata", "cpu_usage_percent", 2, "Current CPU usage percentage", "percent"),
        ("metadata_no_help_no_unit", "simple_counter", 1, "", ""),
        ("metadata_with_special_chars", "test_metric", 2, "Test metric with\nnewlines and \"quotes\"", "bytes/sec"),
        ("unspecified_metadata_type", "unknown_metric", 0, "Unknown metric type", ""),
        ("info_metadata_type", "build_info", 6, "Build information", ""),
        ("stateset_metadata_type", "node_state", 7, "Node state information", ""),
        ("summary_metadata_type", "request_latency_summary", 5, "Request latency summary", "seconds"),
        ("gauge_histogram_metadata_type", "temperature_histogram", 4, "Temperature distribution", "celsius"),
    ] {
        let labels: &'static [(&str, &str)] = Box::leak(Box::new([("__name__", metric)]));
        cases.push(ok1(name, vec![with_meta(up(labels, 1.0), kind, help, unit)]));
    }
    cases.push(Case {
        name: "histogram_metadata",
        series: vec![with_meta(
            CaseSeries {
                labels: vec![("__name__", "request_duration_seconds")],
                histogram: true,
                ..Default::default()
            },
            3,
            "Request duration in seconds",
            "seconds",
        )],
        status: 204,
        written: [0, 1, 0],
    });
    // TestMetadataValidation.
    cases.push(Case {
        name: "metadata_without_name_label",
        series: vec![with_meta(up(&[("job", "test")], 1.0), 1, "Test help", "unit")],
        status: 400,
        written: [0, 0, 0],
    });
    cases.push(Case {
        name: "metadata_with_empty_name",
        series: vec![with_meta(up(&[("__name__", "")], 1.0), 2, "Test help", "unit")],
        status: 400,
        written: [0, 0, 0],
    });
    cases.push(ok1(
        "metadata_with_valid_name",
        vec![with_meta(up(&[("__name__", "valid_metric_name")], 1.0), 1, "Test help", "unit")],
    ));
    // TestMultipleMetadata.
    cases.push(Case {
        name: "multiple metadata entries with matching samples",
        series: vec![
            with_meta(up(&[("__name__", "cpu_usage")], 85.5), 2, "CPU usage percentage", "percent"),
            with_meta(up(&[("__name__", "memory_usage")], 4_096_000_000.0), 2, "Memory usage in bytes", "bytes"),
            with_meta(
                up(&[("__name__", "disk_usage"), ("device", "sda1")], 75.2),
                2,
                "Disk usage percentage",
                "percent",
            ),
        ],
        status: 204,
        written: [3, 0, 0],
    });
    // TestExemplar-like: a sample with an exemplar.
    cases.push(Case {
        name: "sample with exemplar",
        series: vec![CaseSeries { exemplar: true, ..up(&job, 1.0) }],
        status: 204,
        written: [1, 0, 1],
    });
    cases
}

#[test]
fn compliance_receiver_cases() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    let mut now = now_ms() - 300_000;
    for case in cases() {
        // Every case at its own, later timestamp, so that no case collides with an earlier one.
        now += 1000;
        let mut t = SymbolTable::default();
        let mut timeseries = Vec::new();
        for s in &case.series {
            let mut ts = series(&mut t, &s.labels, &s.value.map(|v| vec![(now, v)]).unwrap_or_default());
            if let Some(ago) = s.created_ago_ms {
                ts.samples[0].start_timestamp = now - ago;
            }
            if let Some((kind, help, unit)) = s.metadata {
                ts.metadata = Some(v2::Metadata { r#type: kind, help_ref: t.intern(help), unit_ref: t.intern(unit) });
            }
            if s.exemplar {
                let labels_refs = t.label_refs([("trace_id", "abc123")]);
                ts.exemplars = vec![v2::Exemplar { labels_refs, value: 1.0, timestamp: now }];
            }
            if s.histogram {
                ts.histograms = vec![v2::Histogram {
                    count: Some(ingest::proto::histogram::Count::CountInt(3)),
                    zero_count: Some(ingest::proto::histogram::ZeroCount::ZeroCountInt(3)),
                    sum: 1.0,
                    schema: 0,
                    timestamp: now,
                    ..Default::default()
                }];
            }
            timeseries.push(ts);
        }
        let ans = post_v2(&srv, &v2::Request { timeseries, symbols: t.into_symbols() });
        assert_eq!(ans.status, case.status, "{}: {}", case.name, ans.body);
        assert_eq!(ans.written, case.written.map(Some), "{}", case.name);
        // What was accepted reads back with its value (stale markers read back as nothing).
        if case.status == 204 {
            for s in &case.series {
                if s.histogram {
                    let name = s.labels[0].1;
                    let (_, json) = srv.get_json(
                        "/api/v1/query",
                        &[("query", &format!("histogram_count({name})")), ("time", &format_time(now))],
                    );
                    assert_eq!(json["data"]["result"][0]["value"][1], "3", "{}: {json}", case.name);
                }
                let Some(v) = s.value else { continue };
                // Every name quoted, as PromQL writes a UTF-8 name (`{"job.name"="x"}`).
                let selector = format!(
                    "{{{}}}",
                    s.labels.iter().map(|(n, v)| format!("{n:?}={v:?}")).collect::<Vec<_>>().join(",")
                );
                // The selector also matches series with more labels: keep the one sent.
                let exact: serde_json::Value =
                    s.labels.iter().map(|(n, v)| ((*n).to_owned(), serde_json::Value::from(*v))).collect();
                let got: Vec<_> = query_range(&srv, &selector, now, now, 1000)
                    .into_iter()
                    .filter(|(l, _)| serde_json::from_str::<serde_json::Value>(l).unwrap() == exact)
                    .collect();
                if v.to_bits() == STALE_NAN {
                    assert!(got.is_empty(), "{}: {got:?}", case.name);
                } else {
                    assert_eq!(got.len(), 1, "{}: {selector} {got:?}", case.name);
                    assert_eq!(got[0].1, [(now, value_string(v))], "{}", case.name);
                }
            }
        }
    }
    // The metadata of the accepted cases is served.
    assert_eq!(
        metadata_of(&srv, "test_metric"),
        meta("gauge", "Test metric with\nnewlines and \"quotes\"", "bytes/sec")
    );
    assert_eq!(metadata_of(&srv, "build_info"), meta("info", "Build information", ""));
    assert_eq!(metadata_of(&srv, "unknown_metric"), meta("unknown", "Unknown metric type", ""));
}

/// The same 1.0 request with exemplars to Strata and to Prometheus 2.42 (exemplar storage on):
/// `/api/v1/query_exemplars` answers the same JSON, and both answer `/api/v1/metadata` with an object.
#[test]
fn query_exemplars_answers_like_prometheus() {
    let Some(prom_bin) = crate::util::prometheus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("strata"), &[]);
    let prom = crate::util::PromServer::start(
        &prom_bin,
        &dir.path().join("prom"),
        &["--web.enable-remote-write-receiver", "--enable-feature=exemplar-storage"],
    );
    let t0 = (now_ms() - 120_000) / 1000 * 1000;
    let ex = |trace: &str, v: f64, t: i64| ingest::proto::Exemplar {
        labels: vec![ingest::proto::Label { name: "trace_id".into(), value: trace.into() }],
        value: v,
        timestamp: t,
    };
    let mut a = crate::util::series("cmp_ex_total", &[("job", "api")], &[(t0, 1.0), (t0 + 15_000, 2.0)]);
    a.exemplars = vec![ex("aaa", 0.125, t0), ex("bbb", 7.0, t0 + 15_250)];
    let mut b = crate::util::series("cmp_ex_total", &[("job", "web")], &[(t0, 1.0)]);
    b.exemplars = vec![ex("ccc", 3.5, t0 + 5)];
    let req = crate::util::request(vec![a, b]);
    assert_eq!(srv.write(&req).0, 204);
    prom.write(&req);
    // (query, start, end, series with exemplars)
    for (query, start, end, n) in [
        ("cmp_ex_total", t0 - 60_000, t0 + 60_000, 2),
        ("sum(rate(cmp_ex_total{job=\"api\"}[5m]))", t0 - 60_000, t0 + 60_000, 1),
        ("cmp_ex_total", t0 + 10_000, t0 + 60_000, 1),
        ("no_such_metric", t0 - 60_000, t0 + 60_000, 0),
    ] {
        let params = [("query", query), ("start", &format_time(start)), ("end", &format_time(end))];
        let ours = srv.get_json("/api/v1/query_exemplars", &params).1;
        let theirs = prom.get_json("/api/v1/query_exemplars", &params);
        assert_eq!(theirs["data"].as_array().map(Vec::len), Some(n), "{query}: {theirs}");
        assert_eq!(ours, theirs, "{query}");
    }
    let theirs = prom.get_json("/api/v1/metadata", &[("metric", "cmp_ex_total"), ("limit", "5")]);
    let ours = srv.get_json("/api/v1/metadata", &[("metric", "cmp_ex_total"), ("limit", "5")]).1;
    assert_eq!(
        (ours["status"].clone(), ours["data"].is_object()),
        (theirs["status"].clone(), theirs["data"].is_object())
    );
}
