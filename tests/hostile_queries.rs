//! Queries built to exhaust the server: deep nesting, long operator chains, slow evaluations and
//! huge results. Each is answered with an error for that query alone (4xx, or 503 on timeout) and
//! the server goes on answering; a query at the nesting limit still evaluates; edge cases found by
//! fuzzing are answered (400 or an empty result, never 500). Where Prometheus
//! 2.42 is installed, its answers to the sample limit are compared.

use crate::util::{format_time, prometheus, request, series, PromServer, Server};

const T0: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 15_000;
/// Samples per series in the written data (one hour at 15 s).
const SAMPLES: i64 = 240;

/// `count` series `name{i="…"}` of [`SAMPLES`] samples from [`T0`], in requests of 100 series.
fn dataset(name: &str, count: usize) -> Vec<ingest::proto::WriteRequest> {
    let ids: Vec<usize> = (0..count).collect();
    ids.chunks(100)
        .map(|chunk| {
            request(
                chunk
                    .iter()
                    .map(|&i| {
                        let samples: Vec<(i64, f64)> =
                            (0..SAMPLES).map(|k| (T0 + k * STEP_MS, ((i as i64 * 7 + k) % 101) as f64)).collect();
                        series(name, &[("i", &i.to_string())], &samples)
                    })
                    .collect(),
            )
        })
        .collect()
}

fn write_all(srv: &Server, reqs: &[ingest::proto::WriteRequest]) {
    for r in reqs {
        let (code, body) = srv.write(r);
        assert_eq!(code, 204, "{body}");
    }
}

/// An instant query at the end of the data, POSTed as a form.
fn instant(srv: &Server, q: &str) -> (u16, serde_json::Value) {
    srv.post_form_json("/api/v1/query", &[("query", q), ("time", &format_time(T0 + (SAMPLES - 1) * STEP_MS))])
}

/// The server still evaluates a plain query: `count(x)` is `series`.
fn assert_alive(srv: &Server, series: usize) {
    let (code, json) = instant(srv, "count(x)");
    assert_eq!(code, 200, "{json}");
    assert_eq!(json["data"]["result"][0]["value"][1], series.to_string(), "{json}");
}

#[test]
fn killer_queries_are_refused_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    write_all(&srv, &dataset("x", 3));
    let killers = [
        ("2,000 added terms", vec!["x"; 2_000].join("+"), "levels deep"),
        ("2,100 nested abs(", format!("{}x{}", "abs(".repeat(2_100), ")".repeat(2_100)), "brackets"),
        ("2,100 nested sum(", format!("{}x{}", "sum(".repeat(2_100), ")".repeat(2_100)), "brackets"),
        ("5,000 unary minuses", format!("{}x", "-".repeat(5_000)), "operators"),
        ("50,000 parentheses", format!("{}x{}", "(".repeat(50_000), ")".repeat(50_000)), "brackets"),
        ("20,000 added terms", vec!["x"; 20_000].join("+"), "operators"),
    ];
    for (what, q, names) in &killers {
        for path in ["/api/v1/query", "/api/v1/query_range"] {
            let start = format_time(T0);
            let end = format_time(T0 + 3_600_000);
            let params: Vec<(&str, &str)> = if path.ends_with("range") {
                vec![("query", q), ("start", &start), ("end", &end), ("step", "60")]
            } else {
                vec![("query", q), ("time", &end)]
            };
            let (code, json) = srv.post_form_json(path, &params);
            assert_eq!(code, 400, "{what} on {path}: {json}");
            assert_eq!(json["errorType"], "bad_data", "{what}: {json}");
            let msg = json["error"].as_str().unwrap();
            assert!(msg.contains("limit") && msg.contains(names), "{what}: {msg}");
        }
        assert_alive(&srv, 3);
    }
    // A selector in /api/v1/series goes through the same bounds.
    let deep = format!("{}x{}", "(".repeat(50_000), ")".repeat(50_000));
    let (code, json) = srv.post_form_json("/api/v1/series", &[("match[]", &deep)]);
    assert_eq!(code, 400, "{json}");
    assert_alive(&srv, 3);
}

/// A panic inside one query's evaluation (injected) answers 500 `internal` for that query; the
/// server goes on serving, the same query again and others.
#[test]
fn panic_in_evaluation_answers_500() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start_with_env(dir.path(), &[], &[("STRATA_PANIC_ON_QUERY", "sum(x) * 2")]);
    write_all(&srv, &dataset("x", 3));
    let end = format_time(T0 + (SAMPLES - 1) * STEP_MS);
    for _ in 0..3 {
        let (code, json) = instant(&srv, "sum(x) * 2");
        assert_eq!(code, 500, "{json}");
        assert_eq!(json["errorType"], "internal", "{json}");
        assert!(json["error"].as_str().unwrap().contains("panicked"), "{json}");
        let (code, json) = srv.post_form_json(
            "/api/v1/query_range",
            &[("query", "sum(x) * 2"), ("start", &format_time(T0)), ("end", &end), ("step", "60")],
        );
        assert_eq!(code, 500, "{json}");
        assert_alive(&srv, 3);
    }
    assert!(srv.log_text().contains("query evaluation panicked"), "{}", srv.log_text());
}

/// Queries found by fuzzing: a number no duration can hold (the PromQL parser panics on it) is a
/// parse error, and `@`/offset at the ends of the i64 range evaluate (to nothing) instead of
/// overflowing.
#[test]
fn fuzzed_edge_queries_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    write_all(&srv, &dataset("x", 3));
    for q in ["x offset -Inf", "rate(x[1m] @ 1700000300 offset-Inf)"] {
        let (code, json) = instant(&srv, q);
        assert_eq!(code, 400, "{q}: {json}");
        assert_eq!(json["errorType"], "bad_data", "{q}: {json}");
    }
    for q in [
        "rate(x[1m] @ 144444444444700000300 offset -1m)",
        "x @ -9000000000000000 offset 1y",
        "max_over_time(x[5m:1m] @ -9000000000000000 offset 1y)",
    ] {
        let (code, json) = instant(&srv, q);
        assert_eq!(code, 200, "{q}: {json}");
        assert_eq!(json["data"]["result"], serde_json::json!([]), "{q}: {json}");
    }
    assert_alive(&srv, 3);
}

#[test]
fn queries_at_the_depth_limit_evaluate() {
    let limit = query::complexity::MAX_DEPTH;
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    write_all(&srv, &dataset("x", 3));
    let expected = |q: &str| {
        let (code, json) = instant(&srv, q);
        assert_eq!(code, 200, "{}…: {json}", &q[..40]);
        json["data"]["result"].as_array().unwrap().len()
    };
    // Tree depth exactly `limit`: `limit - 1` calls around a selector; a chain of `limit - 1`
    // additions (each one level); nested aggregations; `-(…)` pairs around a selector.
    assert_eq!(expected(&format!("{}x{}", "abs(".repeat(limit - 1), ")".repeat(limit - 1))), 3);
    assert_eq!(expected(&vec!["x"; limit].join(" + ")), 3);
    assert_eq!(expected(&format!("{}x{}", "sum(".repeat(limit - 1), ")".repeat(limit - 1))), 1);
    assert_eq!(expected(&format!("{}x{}", "-(".repeat((limit - 1) / 2), ")".repeat((limit - 1) / 2))), 3);
    // The sum of `limit` copies of a series is `limit` times its value.
    let (_, one) = instant(&srv, "x{i=\"0\"}");
    let (_, many) = instant(&srv, &vec!["x{i=\"0\"}"; limit].join(" + "));
    let v = |j: &serde_json::Value| j["data"]["result"][0]["value"][1].as_str().unwrap().parse::<f64>().unwrap();
    assert_eq!(v(&many), v(&one) * limit as f64);
    // One level more is refused.
    let (code, json) = instant(&srv, &vec!["x"; limit + 1].join(" + "));
    assert_eq!(code, 400, "{json}");
    assert_eq!(json["errorType"], "bad_data");
    assert_alive(&srv, 3);
}

#[test]
fn slow_query_times_out_with_503() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &["--query.timeout=20ms"]);
    write_all(&srv, &dataset("x", 3));
    write_all(&srv, &dataset("big", 2_000));
    // 2,000 series at 721 steps: 1.4 million points to sort, gather and encode.
    let (start, end) = (format_time(T0), format_time(T0 + SAMPLES * STEP_MS));
    let params = [("query", "sort_desc(big)"), ("start", start.as_str()), ("end", end.as_str()), ("step", "5")];
    let (code, json) = srv.post_form_json("/api/v1/query_range", &params);
    assert_eq!(code, 503, "{json}");
    assert_eq!(json["status"], "error");
    assert_eq!(json["errorType"], "timeout");
    assert!(json["error"].as_str().unwrap().starts_with("query timed out in "), "{json}");
    // A request's own `timeout` can only shorten the server's (an instant query going through the same
    // points in a subquery).
    let params = [("query", "sort_desc(max_over_time(big[1h:5s]))"), ("time", end.as_str()), ("timeout", "1h")];
    let (code, json) = srv.post_form_json("/api/v1/query", &params);
    assert_eq!(code, 503, "{json}");
    let (code, json) = srv.post_form_json("/api/v1/query", &[("query", "vector(1)")]);
    assert_eq!(code, 200, "{json}");
}

/// Strata and, if installed, Prometheus 2.42 with the same small `--query.max-samples` give the
/// same answers: a range query over more points than the limit is refused with 422 `execution`.
#[test]
fn too_many_samples_answers_422_like_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("strata"), &["--query.max-samples=1000"]);
    let data = dataset("x", 100);
    write_all(&srv, &data);
    let prom = prometheus().map(|bin| {
        let p = PromServer::start(
            &bin,
            &dir.path().join("prom"),
            &["--web.enable-remote-write-receiver", "--query.max-samples=1000"],
        );
        for r in &data {
            p.write(r);
        }
        p
    });
    let (start, end) = (format_time(T0), format_time(T0 + (SAMPLES - 1) * STEP_MS));
    /// API path, parameters, expected status.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);
    let cases: Vec<Case<'_>> = vec![
        // 100 series × 240 steps.
        ("/api/v1/query_range", vec![("query", "x"), ("start", &start), ("end", &end), ("step", "15")], 422),
        ("/api/v1/query_range", vec![("query", "sort_desc(x)"), ("start", &start), ("end", &end), ("step", "15")], 422),
        // 100 series × 40 samples in a range selector.
        ("/api/v1/query", vec![("query", "x[10m]"), ("time", &end)], 422),
        // 100 samples.
        ("/api/v1/query", vec![("query", "sort_desc(x)"), ("time", &end)], 200),
        // 100 samples per step, 2 steps; the sum is one series.
        ("/api/v1/query_range", vec![("query", "sum(x)"), ("start", &start), ("end", &end), ("step", "3600")], 200),
    ];
    for (path, params, want) in &cases {
        let (code, ours) = srv.post_form_json(path, params);
        assert_eq!(code, *want, "{path} {params:?}: {ours}");
        if *want == 422 {
            assert_eq!(ours["errorType"], "execution", "{ours}");
            assert_eq!(
                ours["error"], "query processing would load too many samples into memory in query execution",
                "{ours}"
            );
        }
        if let Some(p) = &prom {
            let (pcode, theirs) = p.get_status_json(path, params);
            assert_eq!((code, &ours["status"], &ours["errorType"]), (pcode, &theirs["status"], &theirs["errorType"]));
            assert_eq!(ours["error"], theirs["error"], "{path} {params:?}");
        }
    }
    assert_alive(&srv, 100);
}
