//! Prometheus API details beyond the answers themselves: parse-error positions, `stats=all`, and CORS,
//! each compared with Prometheus 2.42 where it is installed.

use crate::util::{prometheus, PromServer, Server};

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
