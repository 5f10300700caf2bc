//! UTF-8 metric and label names as Prometheus 3 accepts them: written through remote-write 1.0 and
//! 2.0, selected in PromQL with quoted names (`{"resource.cpu.usage", "job.name"="a"}`), grouped by and
//! produced by label functions, listed by `/api/v1/series`, `/api/v1/labels` and
//! `/api/v1/label/<name>/values` (the name as it is or `U__`-escaped), matched by remote read and by
//! the admin API's `delete_series`; and the legacy scheme chosen in the configuration file refuses
//! them until a reload switches back to UTF-8.
//!
//! Prometheus 2.42, the reference other tests compare with, only knows the legacy names, so these
//! answers are checked against what Prometheus 3 documents rather than against a running Prometheus.

use std::io::Read;

use ingest::proto::{self, label_matcher::Type, LabelMatcher, Query, ReadRequest, ReadResponse};
use ingest::proto_v2::{self as v2, SymbolTable};
use prost::Message;
use serde_json::{json, Value};

use crate::util::{format_time, request, series, Server};

const V2_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// One float sample of a series: its labels (with `__name__`), timestamp and value.
type LabeledSample<'a> = (&'a [(&'a str, &'a str)], i64, f64);

/// A series as remote read answers it: labels and samples.
type ReadSeries = (Vec<(String, String)>, Vec<(i64, f64)>);

/// Sends a remote-write 2.0 request of float series; returns (status, body).
fn write_v2(srv: &Server, series: &[LabeledSample<'_>]) -> (u16, String) {
    let mut t = SymbolTable::default();
    let timeseries = series
        .iter()
        .map(|(labels, ts, v)| v2::TimeSeries {
            labels_refs: t.label_refs(labels.iter().copied()),
            samples: vec![v2::Sample { value: *v, timestamp: *ts, start_timestamp: 0 }],
            ..Default::default()
        })
        .collect();
    let body = v2::Request { timeseries, symbols: t.into_symbols() }.encode_to_vec();
    let body = snap::raw::Encoder::new().compress_vec(&body).unwrap();
    let r = srv
        .request("POST", "/api/v1/write")
        .set("Content-Encoding", "snappy")
        .set("Content-Type", V2_TYPE)
        .set("X-Prometheus-Remote-Write-Version", "2.0.0")
        .send_bytes(&body);
    match r {
        Ok(resp) | Err(ureq::Error::Status(_, resp)) => (resp.status(), resp.into_string().unwrap_or_default()),
        Err(e) => panic!("POST /api/v1/write: {e}"),
    }
}

/// An instant query's result as (metric labels, value) pairs, sorted by labels.
fn instant(srv: &Server, q: &str, t: i64) -> Vec<(Value, String)> {
    let (code, body) = srv.get_json("/api/v1/query", &[("query", q), ("time", &format_time(t))]);
    assert_eq!(code, 200, "{q}: {body}");
    let mut out: Vec<(Value, String)> = body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["metric"].clone(), s["value"][1].as_str().unwrap().to_owned()))
        .collect();
    out.sort_by_key(|(m, _)| m.to_string());
    out
}

/// The `data` of a successful GET.
fn data(srv: &Server, path: &str, params: &[(&str, &str)]) -> Value {
    let (code, body) = srv.get_json(path, params);
    assert_eq!(code, 200, "{path} {params:?}: {body}");
    body["data"].clone()
}

fn sorted_strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect();
    out.sort();
    out
}

#[test]
fn utf8_names_from_1_0_and_2_0_are_queried_listed_read_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &["--web.enable-admin-api"]);
    let t = now_ms() - 60_000;

    // 1.0: two series of a dotted metric with a dotted label.
    let (code, body) = srv.write(&request(vec![
        series("resource.cpu.usage", &[("job.name", "a"), ("host", "h1")], &[(t, 1.0)]),
        series("resource.cpu.usage", &[("job.name", "b"), ("host", "h2")], &[(t, 2.0)]),
    ]));
    assert_eq!(code, 204, "{body}");
    // 2.0: names with underscores, a non-ASCII character and a leading digit.
    let (code, body) = write_v2(
        &srv,
        &[
            (&[("__name__", "http.server.duration"), ("http_status.code", "200"), ("rég", "eu")], t, 5.0),
            (&[("__name__", "http.server.duration"), ("http_status.code", "500"), ("1st", "x")], t, 7.0),
        ],
    );
    assert_eq!(code, 204, "{body}");

    // Selectors with quoted names, as metric name and as label names.
    assert_eq!(
        instant(&srv, r#"{"resource.cpu.usage", "job.name"="a"}"#, t),
        [(json!({"__name__": "resource.cpu.usage", "job.name": "a", "host": "h1"}), "1".to_owned())]
    );
    assert_eq!(
        instant(&srv, r#"{"http.server.duration", "http_status.code"=~"5.."}"#, t),
        [(json!({"__name__": "http.server.duration", "http_status.code": "500", "1st": "x"}), "7".to_owned())]
    );
    assert_eq!(
        instant(&srv, r#"{__name__="http.server.duration", "rég"!=""}"#, t),
        [(json!({"__name__": "http.server.duration", "http_status.code": "200", "rég": "eu"}), "5".to_owned())]
    );
    assert_eq!(instant(&srv, r#"count_over_time({"resource.cpu.usage"}[5m])"#, t).len(), 2);

    // Grouping by quoted names, and label functions making and reading UTF-8 names.
    assert_eq!(
        instant(&srv, r#"sum by ("job.name") ({"resource.cpu.usage"})"#, t),
        [(json!({"job.name": "a"}), "1".to_owned()), (json!({"job.name": "b"}), "2".to_owned())]
    );
    assert_eq!(
        instant(&srv, r#"sum without ("job.name", host) ({"resource.cpu.usage"})"#, t),
        [(json!({}), "3".to_owned())]
    );
    assert_eq!(
        instant(
            &srv,
            r#"label_replace({"resource.cpu.usage", host="h1"}, "service.name", "svc-$1", "job.name", "(.*)")"#,
            t
        ),
        [(
            json!({"__name__": "resource.cpu.usage", "job.name": "a", "host": "h1", "service.name": "svc-a"}),
            "1".to_owned()
        )]
    );
    assert_eq!(
        instant(&srv, r#"label_join({"resource.cpu.usage", host="h2"}, "id.full", "/", "job.name", "host")"#, t)[0].0
            ["id.full"],
        "b/h2"
    );
    assert_eq!(
        instant(&srv, r#"count_values("value.seen", {"resource.cpu.usage"})"#, t),
        [(json!({"value.seen": "1"}), "1".to_owned()), (json!({"value.seen": "2"}), "1".to_owned())]
    );
    // An empty label name stays invalid.
    let (code, body) = srv.get_json(
        "/api/v1/query",
        &[("query", r#"count_values("", {"resource.cpu.usage"})"#), ("time", &format_time(t))],
    );
    assert_eq!(code, 422, "{body}");

    // Metadata listings.
    let found = data(&srv, "/api/v1/series", &[("match[]", r#"{"resource.cpu.usage", "job.name"="b"}"#)]);
    assert_eq!(found, json!([{"__name__": "resource.cpu.usage", "job.name": "b", "host": "h2"}]));
    let names = data(&srv, "/api/v1/labels", &[("match[]", r#"{"http.server.duration"}"#)]);
    assert_eq!(sorted_strings(&names), ["1st", "__name__", "http_status.code", "rég"]);
    let metrics = data(&srv, "/api/v1/label/__name__/values", &[]);
    assert_eq!(sorted_strings(&metrics), ["http.server.duration", "resource.cpu.usage"]);
    for path in ["/api/v1/label/job.name/values", "/api/v1/label/U__job_2e_name/values"] {
        assert_eq!(sorted_strings(&data(&srv, path, &[])), ["a", "b"], "{path}");
    }
    for path in ["/api/v1/label/U__http__status_2e_code/values", "/api/v1/label/U__r_e9_g/values"] {
        let want: &[&str] = if path.contains("status") { &["200", "500"] } else { &["eu"] };
        assert_eq!(sorted_strings(&data(&srv, path, &[])), want, "{path}");
    }
    // A malformed escape names itself (no such label), as in Prometheus.
    assert_eq!(data(&srv, "/api/v1/label/U__job_zz_name/values", &[]), json!([]));
    let values =
        data(&srv, "/api/v1/label/U__job_2e_name/values", &[("match[]", r#"{"resource.cpu.usage", host="h1"}"#)]);
    assert_eq!(values, json!(["a"]));

    // Remote read matches the names as given.
    let matchers = vec![
        LabelMatcher { r#type: Type::Eq as i32, name: "__name__".into(), value: "resource.cpu.usage".into() },
        LabelMatcher { r#type: Type::Re as i32, name: "job.name".into(), value: "b".into() },
    ];
    let req = ReadRequest {
        queries: vec![Query { start_timestamp_ms: t - 1000, end_timestamp_ms: t + 1000, matchers, hints: None }],
        accepted_response_types: vec![],
    };
    let resp = srv
        .request("POST", "/api/v1/read")
        .set("Content-Encoding", "snappy")
        .set("Content-Type", "application/x-protobuf")
        .set("X-Prometheus-Remote-Read-Version", "0.1.0")
        .send_bytes(&snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap())
        .unwrap();
    let mut bytes = Vec::new();
    resp.into_reader().read_to_end(&mut bytes).unwrap();
    let read = ReadResponse::decode(snap::raw::Decoder::new().decompress_vec(&bytes).unwrap().as_slice()).unwrap();
    let got: Vec<ReadSeries> = read.results[0]
        .timeseries
        .iter()
        .map(|s| {
            let labels = s.labels.iter().map(|l: &proto::Label| (l.name.clone(), l.value.clone())).collect();
            (labels, s.samples.iter().map(|p| (p.timestamp, p.value)).collect())
        })
        .collect();
    let want_labels: Vec<(String, String)> = [("__name__", "resource.cpu.usage"), ("host", "h2"), ("job.name", "b")]
        .map(|(n, v)| (n.into(), v.into()))
        .into();
    assert_eq!(got, [(want_labels, vec![(t, 2.0)])]);

    // The admin API deletes by quoted-name matchers.
    let r = srv
        .request("POST", "/api/v1/admin/tsdb/delete_series")
        .query("match[]", r#"{"resource.cpu.usage", "job.name"="b"}"#)
        .call()
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        instant(&srv, r#"{"resource.cpu.usage"}"#, t),
        [(json!({"__name__": "resource.cpu.usage", "job.name": "a", "host": "h1"}), "1".to_owned())]
    );
}

#[test]
fn legacy_scheme_in_the_config_file_refuses_utf8_names_until_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  metric_name_validation_scheme: legacy\n").unwrap();
    let cfg_flag = format!("--config.file={}", config.display());
    let srv = Server::start(&dir.path().join("data"), &[&cfg_flag, "--web.enable-lifecycle"]);
    let t = now_ms() - 60_000;

    let (code, body) = srv.write(&request(vec![series("resource.cpu.usage", &[], &[(t, 1.0)])]));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid metric name \"resource.cpu.usage\""), "{body}");
    let (code, body) = write_v2(&srv, &[(&[("__name__", "cpu"), ("job.name", "a")], t, 1.0)]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("invalid label name \"job.name\""), "{body}");
    let (code, body) = srv.write(&request(vec![series("cpu_usage", &[("job", "a")], &[(t, 1.0)])]));
    assert_eq!(code, 204, "{body}");
    assert!(instant(&srv, r#"{"resource.cpu.usage"}"#, t).is_empty());

    std::fs::write(&config, "global:\n  metric_name_validation_scheme: utf8\n").unwrap();
    let r = srv.request("POST", "/-/reload").call().unwrap();
    assert_eq!(r.status(), 200);
    let (code, body) = srv.write(&request(vec![series("resource.cpu.usage", &[], &[(t, 1.0)])]));
    assert_eq!(code, 204, "{body}");
    let (code, body) = write_v2(&srv, &[(&[("__name__", "cpu"), ("job.name", "a")], t, 2.0)]);
    assert_eq!(code, 204, "{body}");
    assert_eq!(
        instant(&srv, r#"{"resource.cpu.usage"}"#, t),
        [(json!({"__name__": "resource.cpu.usage"}), "1".to_owned())]
    );
    assert_eq!(
        instant(&srv, r#"cpu{"job.name"="a"}"#, t),
        [(json!({"__name__": "cpu", "job.name": "a"}), "2".to_owned())]
    );
}

#[test]
fn utf8_names_survive_compaction_into_a_block_and_a_restart() {
    const T0: i64 = 1_699_999_200_000;
    const H: i64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let args = ["--storage.tsdb.compaction-interval=200ms"];
    let mut srv = Server::start(&data_dir, &args);
    let points: Vec<(i64, f64)> = (0..=16).map(|i| (T0 + i * H / 4, i as f64)).collect();
    let (code, body) = srv.write(&request(vec![series("queue.depth", &[("k8s.pod", "p-1")], &points)]));
    assert_eq!(code, 204, "{body}");
    // The head spans 4h: its first 2h are compacted into a block.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while crate::util::block_dirs(&data_dir).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no block written; log:\n{}", srv.log_text());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(srv.sigterm().success());
    let srv = Server::start(&data_dir, &args);
    // One point from the block, one from the head (replayed from the WAL).
    for (t, v) in [(T0 + H, "4"), (T0 + 4 * H, "16")] {
        assert_eq!(
            instant(&srv, r#"{"queue.depth", "k8s.pod"="p-1"}"#, t),
            [(json!({"__name__": "queue.depth", "k8s.pod": "p-1"}), v.to_owned())],
            "at {t}"
        );
    }
    let range = [("start", format_time(T0)), ("end", format_time(T0 + 2 * H - 1))];
    let range: Vec<(&str, &str)> = range.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(data(&srv, "/api/v1/label/U__k8s_2e_pod/values", &range), json!(["p-1"]));
    let mut params = range.clone();
    params.push(("match[]", r#"{"queue.depth"}"#));
    assert_eq!(sorted_strings(&data(&srv, "/api/v1/labels", &params)), ["__name__", "k8s.pod"]);
}
