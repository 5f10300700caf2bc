//! `GET/POST /api/v1/query_exemplars`: the exemplars remote-write senders sent
//! ([`tsdb::exemplars::ExemplarStore`]) for the series any selector of `query` matches, within
//! `start`..`end` (default: all time), in Prometheus's JSON: a list of
//! `{"seriesLabels": {…}, "exemplars": [{"labels": {…}, "value": "…", "timestamp": seconds}]}`,
//! series sorted by labels, exemplars by time. A query without selectors answers `null`, as
//! Prometheus's does.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use promql_parser::parser::Expr;
use tsdb::exemplars::ExemplarStore;

use super::{bad_param, json, respond, time_param, ApiResult, Params};
use crate::engine::{write_float, write_time};
use crate::error::QueryError;
use crate::storage::to_tsdb_matcher;

/// The `/api/v1/query_exemplars` route over `store`.
pub fn router(store: Arc<ExemplarStore>) -> Router {
    Router::new().route("/api/v1/query_exemplars", get(exemplars).post(exemplars)).with_state(store)
}

async fn exemplars(State(store): State<Arc<ExemplarStore>>, p: Params) -> Response {
    respond(exemplars_inner(&store, &p))
}

/// The matcher sets of every vector selector in `expr` (matrix selectors' included).
fn selectors(expr: &Expr) -> Result<Vec<Vec<tsdb::Matcher>>, QueryError> {
    let mut sets = Vec::new();
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        let vs = match e {
            Expr::Aggregate(a) => {
                stack.push(&a.expr);
                if let Some(p) = &a.param {
                    stack.push(p);
                }
                continue;
            }
            Expr::Unary(u) => {
                stack.push(&u.expr);
                continue;
            }
            Expr::Binary(b) => {
                stack.push(&b.lhs);
                stack.push(&b.rhs);
                continue;
            }
            Expr::Paren(p) => {
                stack.push(&p.expr);
                continue;
            }
            Expr::Subquery(s) => {
                stack.push(&s.expr);
                continue;
            }
            Expr::Call(c) => {
                stack.extend(c.args.args.iter().map(|a| &**a));
                continue;
            }
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => continue,
        };
        if !vs.matchers.or_matchers.is_empty() {
            return Err(QueryError::unsupported("\"or\" inside label matchers"));
        }
        let mut ms = vs.matchers.matchers.iter().map(to_tsdb_matcher).collect::<Result<Vec<_>, _>>()?;
        if let Some(name) = &vs.name {
            ms.push(tsdb::Matcher::equal("__name__", name.clone()));
        }
        sets.push(ms);
    }
    Ok(sets)
}

fn exemplars_inner(store: &ExemplarStore, p: &Params) -> ApiResult {
    let start = time_param(p, "start", i64::MIN)?;
    let end = time_param(p, "end", i64::MAX)?;
    if end < start {
        return Err(QueryError::BadData("end timestamp must not be before start timestamp".into()));
    }
    let expr = crate::parser::parse(p.get("query")).map_err(|e| bad_param("query", e))?;
    let sets = selectors(&expr)?;
    if sets.is_empty() {
        return Ok(("null".into(), Vec::new()));
    }
    let mut out = String::from("[");
    for (i, (series, exemplars)) in store.select(&sets, start, end).iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"seriesLabels\":");
        push_pairs(&mut out, series.iter());
        out.push_str(",\"exemplars\":[");
        for (j, e) in exemplars.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"labels\":");
            push_pairs(&mut out, e.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            out.push_str(",\"value\":\"");
            write_float(&mut out, e.value);
            out.push_str("\",\"timestamp\":");
            write_time(&mut out, e.t);
            out.push('}');
        }
        out.push_str("]}");
    }
    out.push(']');
    Ok((out, Vec::new()))
}

fn push_pairs<'a>(out: &mut String, pairs: impl Iterator<Item = (&'a str, &'a str)>) {
    out.push('{');
    for (i, (n, v)) in pairs.enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::push_str(out, n);
        out.push(':');
        json::push_str(out, v);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use tsdb::exemplars::Exemplar;
    use tsdb::Labels;

    use super::*;

    fn params(q: &str) -> Params {
        let mut p = Params::default();
        p.extend_urlencoded(q.as_bytes());
        p
    }

    #[test]
    fn answers_in_prometheus_json() {
        let s = ExemplarStore::new(10);
        let a = Labels::from_pairs(&[("__name__", "rq_total"), ("job", "api")]).unwrap();
        let b = Labels::from_pairs(&[("__name__", "other")]).unwrap();
        let ex = |t, trace: &str| Exemplar { labels: vec![("trace_id".into(), trace.into())], value: 1.5, t };
        s.append(&a, vec![ex(1_000, "x"), ex(2_500, "y")]);
        s.append(&b, vec![ex(1_000, "z")]);
        let body = |q: &str| exemplars_inner(&s, &params(q)).map(|(d, _)| d);
        let a_json = r#"{"seriesLabels":{"__name__":"rq_total","job":"api"},"exemplars":[{"labels":{"trace_id":"x"},"value":"1.5","timestamp":1},{"labels":{"trace_id":"y"},"value":"1.5","timestamp":2.500}]}"#;
        assert_eq!(body("query=rate(rq_total[5m])").unwrap(), format!("[{a_json}]"));
        assert_eq!(body("query=rq_total{job=\"api\"}&start=2&end=3").unwrap().matches("trace_id").count(), 1);
        assert_eq!(body("query=sum(rq_total)%2Bother").unwrap().matches("seriesLabels").count(), 2);
        assert_eq!(body("query=nothing").unwrap(), "[]");
        assert_eq!(body("query=1").unwrap(), "null");
        assert!(body("query=rq_total&start=5&end=1").is_err());
        assert!(body("query=rq_total(").is_err());
    }
}
