//! Prometheus API details beyond the answers themselves: parse-error positions, `stats=all`, and CORS,
//! each compared with Prometheus 2.42 where it is installed.

use crate::util::{prometheus, request, series, PromServer, Server};

/// Malformed queries whose parse errors Strata words and positions like Prometheus.
const MALFORMED: &[&str] = &[
    "sum(rate(",
    "foo{",
    "sum by (",
    ")",
    "sum(x))",
    "unknownfn(x)",
    "rate(foo)",
    "foo offset",
    "\"abc",
    "up +\n  rate(",
    "foo[",
    "foo[5m",
    "foo[5m:1m",
    "sum(foo[5m",
    "rate(foo[5m])[",
    "1 +",
    "foo and",
];

fn range_params(q: &str) -> [(&str, &str); 4] {
    [("query", q), ("start", "0"), ("end", "10"), ("step", "1")]
}

#[test]
fn parse_errors_carry_prometheus_positions() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("strata"), &[]);
    let (code, body) = srv.get_json("/api/v1/query", &[("query", "sum(rate(")]);
    assert_eq!(code, 400);
    assert_eq!(body["errorType"], "bad_data");
    assert_eq!(body["error"], "invalid parameter \"query\": 1:10: parse error: unclosed left parenthesis");
    let (code, body) = srv.get_json("/api/v1/query_range", &range_params("rate(foo)"));
    assert_eq!(code, 400);
    assert_eq!(
        body["error"],
        "1:6: parse error: expected type range vector in call to function \"rate\", got instant vector"
    );
    let (_, body) = srv.get_json("/api/v1/query", &[("query", "up +\n  rate(")]);
    assert_eq!(body["error"], "invalid parameter \"query\": 2:8: parse error: unclosed left parenthesis");

    let Some(prom_bin) = prometheus() else { return };
    let prom = PromServer::start(&prom_bin, &dir.path().join("prom"), &[]);
    let mut mismatches = Vec::new();
    for q in MALFORMED {
        for (path, params) in
            [("/api/v1/query", vec![("query", *q)]), ("/api/v1/query_range", range_params(q).to_vec())]
        {
            let (code, ours) = srv.get_json(path, &params);
            let (their_code, theirs) = prom.get_status_json(path, &params);
            if code != their_code || ours != theirs {
                mismatches
                    .push(format!("{path} {q:?}:\n  strata:     {code} {ours}\n  prometheus: {their_code} {theirs}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// The CORS headers (and `Allow`) of a response (lower-cased names, sorted), and its status.
fn cors_headers(addr: &str, method: &str, path: &str, origin: Option<&str>) -> (u16, Vec<(String, String)>) {
    let mut req = ureq::request(method, &format!("http://{addr}{path}"));
    if let Some(o) = origin {
        req = req.set("Origin", o).set("Access-Control-Request-Method", "POST");
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let mut h: Vec<(String, String)> = resp
        .headers_names()
        .into_iter()
        .filter(|n| n.starts_with("access-control-") || n == "vary" || n == "allow")
        .flat_map(|n| resp.all(&n).into_iter().map(|v| (n.clone(), v.to_owned())).collect::<Vec<_>>())
        .collect();
    h.sort();
    (resp.status(), h)
}

#[test]
fn cors_headers_follow_the_origin_regex() {
    let dir = tempfile::tempdir().unwrap();
    let flag = r"--web.cors.origin=https?://foo\.com";
    let srv = Server::start(&dir.path().join("strata"), &[flag]);
    let (code, h) = cors_headers(&srv.addr, "GET", "/api/v1/query?query=1", Some("https://foo.com"));
    assert_eq!(code, 200);
    assert!(h.contains(&("access-control-allow-origin".into(), "https://foo.com".into())), "{h:?}");
    assert!(h.contains(&("access-control-allow-methods".into(), "GET, POST, OPTIONS".into())), "{h:?}");
    let (code, h) = cors_headers(&srv.addr, "OPTIONS", "/api/v1/query_range", Some("http://foo.com.evil"));
    assert_eq!(code, 204);
    assert!(!h.iter().any(|(n, _)| n == "access-control-allow-origin"), "an unanchored match: {h:?}");
    let (_, h) = cors_headers(&srv.addr, "GET", "/api/v1/query?query=1", None);
    assert!(h.is_empty(), "CORS headers without an Origin: {h:?}");
    let default = Server::start(&dir.path().join("default"), &[]);
    let (_, h) = cors_headers(&default.addr, "GET", "/api/v1/labels", Some("http://anywhere.example"));
    assert!(h.contains(&("access-control-allow-origin".into(), "http://anywhere.example".into())), "{h:?}");

    let Some(prom_bin) = prometheus() else { return };
    let prom = PromServer::start(&prom_bin, &dir.path().join("prom"), &[flag]);
    let mut mismatches = Vec::new();
    for (method, path) in [("GET", "/api/v1/query?query=1"), ("OPTIONS", "/api/v1/query"), ("GET", "/api/v1/labels")] {
        for origin in
            [Some("http://foo.com"), Some("https://foo.com"), Some("http://foo.com.evil"), Some("http://bar.com"), None]
        {
            let ours = cors_headers(&srv.addr, method, path, origin);
            let theirs = cors_headers(&prom.addr, method, path, origin);
            if ours != theirs {
                mismatches
                    .push(format!("{method} {path} {origin:?}:\n  strata:     {ours:?}\n  prometheus: {theirs:?}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// Three series with a sample every 15 s over ten minutes from t = 0.
fn stats_data() -> ingest::proto::WriteRequest {
    let samples: Vec<(i64, f64)> = (0..40).map(|i| (i * 15_000, i as f64)).collect();
    request(["a", "b", "c"].iter().map(|j| series("stats_metric", &[("job", j)], &samples)).collect())
}

/// The object's keys, recursively, as `a.b.c` paths.
fn key_paths(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    if let serde_json::Value::Object(m) = v {
        for (k, v) in m {
            let p = format!("{prefix}{k}");
            out.push(p.clone());
            key_paths(v, &format!("{p}."), out);
        }
    }
}

fn stats_of(body: &serde_json::Value) -> &serde_json::Value {
    assert_eq!(body["status"], "success", "{body}");
    &body["data"]["stats"]
}

#[test]
fn stats_report_timings_and_samples_like_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("strata"), &[]);
    let (code, body) = srv.write(&stats_data());
    assert_eq!(code, 204, "{body}");

    let (_, body) = srv.get_json("/api/v1/query", &[("query", "stats_metric"), ("time", "300")]);
    assert!(body["data"].get("stats").is_none(), "stats without asking: {body}");
    let (_, body) = srv.get_json("/api/v1/query", &[("query", "stats_metric"), ("time", "300"), ("stats", "all")]);
    let stats = stats_of(&body);
    assert_eq!(stats["samples"]["totalQueryableSamples"], 3, "{stats}");
    assert_eq!(stats["samples"]["peakSamples"], 3, "{stats}");
    let t = &stats["timings"];
    let secs = |k: &str| t[k].as_f64().unwrap_or_else(|| panic!("{k}: {t}"));
    assert!(secs("execTotalTime") > 0.0 && secs("innerEvalTime") > 0.0, "{t}");
    assert!(secs("execTotalTime") >= secs("evalTotalTime") && secs("evalTotalTime") >= secs("innerEvalTime"), "{t}");
    // A range selector reads each sample of its range: 5 m at 15 s holds 20 per series.
    let (_, body) = srv.get_json("/api/v1/query", &[("query", "stats_metric[5m]"), ("time", "299"), ("stats", "all")]);
    assert_eq!(stats_of(&body)["samples"]["totalQueryableSamples"], 60, "{body}");
    let range = [("query", "sum(stats_metric)"), ("start", "60"), ("end", "300"), ("step", "60"), ("stats", "all")];
    let (_, body) = srv.get_json("/api/v1/query_range", &range);
    assert_eq!(stats_of(&body)["samples"]["totalQueryableSamples"], 15, "{body}");

    let Some(prom_bin) = prometheus() else { return };
    let prom = PromServer::start(&prom_bin, &dir.path().join("prom"), &["--web.enable-remote-write-receiver"]);
    prom.write(&stats_data());
    let queries: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/api/v1/query", vec![("query", "stats_metric"), ("time", "300"), ("stats", "all")]),
        ("/api/v1/query", vec![("query", "sum by (job) (stats_metric)"), ("time", "300"), ("stats", "true")]),
        ("/api/v1/query", vec![("query", "stats_metric[5m]"), ("time", "299"), ("stats", "all")]),
        ("/api/v1/query", vec![("query", "1"), ("stats", "all")]),
        ("/api/v1/query_range", range.to_vec()),
        ("/api/v1/query", vec![("query", "rate(stats_metric[5m])"), ("time", "400"), ("stats", "all")]),
        (
            "/api/v1/query_range",
            vec![
                ("query", "rate(stats_metric[1m]) / rate(stats_metric[2m])"),
                ("start", "300"),
                ("end", "600"),
                ("step", "60"),
                ("stats", "all"),
            ],
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "max_over_time(stats_metric[3m])"),
                ("start", "300"),
                ("end", "600"),
                ("step", "60"),
                ("stats", "all"),
            ],
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "rate(stats_metric[5m])"),
                ("start", "300"),
                ("end", "600"),
                ("step", "60"),
                ("stats", "all"),
            ],
        ),
        (
            "/api/v1/query_range",
            vec![
                ("query", "sum(rate(stats_metric[2m]))"),
                ("start", "0"),
                ("end", "600"),
                ("step", "45"),
                ("stats", "all"),
            ],
        ),
        (
            "/api/v1/query_range",
            vec![("query", "stats_metric"), ("start", "0"), ("end", "600"), ("step", "30"), ("stats", "all")],
        ),
    ];
    let mut mismatches = Vec::new();
    for (path, params) in &queries {
        let (_, ours) = srv.get_json(path, params);
        let theirs = prom.get_json(path, params);
        let (mut ours_keys, mut their_keys) = (Vec::new(), Vec::new());
        key_paths(&ours, "", &mut ours_keys);
        key_paths(&theirs, "", &mut their_keys);
        ours_keys.sort();
        their_keys.sort();
        // `peakSamples` counts what the evaluation holds, which depends on the evaluator's own
        // intermediate results: compared only for being at least the result's size.
        let total = |b: &serde_json::Value| stats_of(b)["samples"]["totalQueryableSamples"].clone();
        let peak = stats_of(&ours)["samples"]["peakSamples"].as_u64().unwrap_or(0);
        let result_size = match &ours["data"]["result"] {
            serde_json::Value::Array(r) if ours["data"]["resultType"] == "matrix" => {
                r.iter().map(|s| s["values"].as_array().map_or(0, Vec::len) as u64).sum()
            }
            serde_json::Value::Array(r) if ours["data"]["resultType"] == "vector" => r.len() as u64,
            _ => 1,
        };
        if ours_keys != their_keys || total(&ours) != total(&theirs) || peak < result_size {
            mismatches.push(format!("{path} {params:?}:\n  strata:     {ours}\n  prometheus: {theirs}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn per_step_stats_match_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let feature = "--enable-feature=promql-per-step-stats";
    let srv = Server::start(&dir.path().join("strata"), &[feature]);
    let (code, body) = srv.write(&stats_data());
    assert_eq!(code, 204, "{body}");
    let range = |q: &'static str, stats: &'static str| {
        vec![("query", q), ("start", "300"), ("end", "600"), ("step", "60"), ("stats", stats)]
    };
    let (_, body) = srv.get_json("/api/v1/query_range", &range("stats_metric", "all"));
    let samples = &stats_of(&body)["samples"];
    let steps = samples["totalQueryableSamplesPerStep"].as_array().unwrap_or_else(|| panic!("{samples}"));
    assert_eq!(steps.len(), 6, "{samples}");
    assert_eq!(steps[0], serde_json::json!([300, 3]), "{samples}");
    let sum: u64 = steps.iter().map(|s| s[1].as_u64().unwrap()).sum();
    assert_eq!(samples["totalQueryableSamples"], sum, "{samples}");
    // Only stats=all has the per-step counts.
    let (_, body) = srv.get_json("/api/v1/query_range", &range("stats_metric", "true"));
    assert!(stats_of(&body)["samples"].get("totalQueryableSamplesPerStep").is_none(), "{body}");

    let Some(prom_bin) = prometheus() else { return };
    let prom = PromServer::start(&prom_bin, &dir.path().join("prom"), &["--web.enable-remote-write-receiver", feature]);
    prom.write(&stats_data());
    let queries: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("/api/v1/query_range", range("stats_metric", "all")),
        ("/api/v1/query_range", range("rate(stats_metric[5m])", "all")),
        ("/api/v1/query_range", range("sum by (job) (rate(stats_metric[2m]))", "all")),
        ("/api/v1/query_range", range("stats_metric", "true")),
        ("/api/v1/query", vec![("query", "stats_metric"), ("time", "300"), ("stats", "all")]),
        ("/api/v1/query", vec![("query", "stats_metric[5m]"), ("time", "299"), ("stats", "all")]),
    ];
    let mut mismatches = Vec::new();
    for (path, params) in &queries {
        let (_, ours) = srv.get_json(path, params);
        let theirs = prom.get_json(path, params);
        let per_step = |b: &serde_json::Value| stats_of(b)["samples"]["totalQueryableSamplesPerStep"].clone();
        let total = |b: &serde_json::Value| stats_of(b)["samples"]["totalQueryableSamples"].clone();
        if per_step(&ours) != per_step(&theirs) || total(&ours) != total(&theirs) {
            mismatches.push(format!("{path} {params:?}:\n  strata:     {ours}\n  prometheus: {theirs}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
