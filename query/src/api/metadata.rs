//! `GET /api/v1/metadata`: the metric metadata remote-write senders reported
//! ([`tsdb::metadata::MetadataStore`]), in Prometheus's JSON: an object from metric family name to a
//! list of `{type, help, unit}` (one entry per family here: the store keeps the latest), keys sorted
//! as Go's JSON encoder sorts map keys.
//!
//! Parameters as Prometheus's: `metric` (only that family), `limit` (at most that many families; a
//! negative number means no limit, 0 an empty answer) and `limit_per_metric` (entries per family;
//! checked to be a number, and never binding since each family has one entry).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tsdb::metadata::MetadataStore;

use super::{json, respond, ApiResult, Params};
use crate::error::QueryError;

/// The `/api/v1/metadata` route over `store`.
pub fn router(store: Arc<MetadataStore>) -> Router {
    Router::new().route("/api/v1/metadata", get(metadata)).with_state(store)
}

async fn metadata(State(store): State<Arc<MetadataStore>>, p: Params) -> Response {
    respond(metadata_inner(&store, &p))
}

fn int_param(p: &Params, name: &str) -> Result<i64, QueryError> {
    match p.get(name) {
        "" => Ok(-1),
        s => s.parse::<i64>().map_err(|_| QueryError::BadData(format!("{name} must be a number"))),
    }
}

fn metadata_inner(store: &MetadataStore, p: &Params) -> ApiResult {
    let limit = int_param(p, "limit")?;
    int_param(p, "limit_per_metric")?;
    let metric = match p.get("metric") {
        "" => None,
        m => Some(m),
    };
    let families = store.list(metric);
    let take = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out = String::from("{");
    for (i, (name, m)) in families.iter().take(take).enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::push_str(&mut out, name);
        out.push_str(":[{\"type\":");
        json::push_str(&mut out, m.kind.as_str());
        out.push_str(",\"help\":");
        json::push_str(&mut out, &m.help);
        out.push_str(",\"unit\":");
        json::push_str(&mut out, &m.unit);
        out.push_str("}]");
    }
    out.push('}');
    Ok((out, Vec::new()))
}

#[cfg(test)]
mod tests {
    use tsdb::metadata::{MetricType, Update};

    use super::*;

    fn params(q: &str) -> Params {
        let mut p = Params::default();
        p.extend_urlencoded(q.as_bytes());
        p
    }

    #[test]
    fn answers_in_prometheus_json_with_its_parameters() {
        let s = MetadataStore::in_memory();
        s.update([
            Update { family: b"b_total", kind: MetricType::Counter, help: b"Say \"hi\".", unit: b"" },
            Update { family: b"a", kind: MetricType::Gauge, help: b"", unit: b"bytes" },
        ]);
        let body = |q: &str| metadata_inner(&s, &params(q)).map(|(d, _)| d);
        let all = r#"{"a":[{"type":"gauge","help":"","unit":"bytes"}],"b_total":[{"type":"counter","help":"Say \"hi\".","unit":""}]}"#;
        assert_eq!(body("").unwrap(), all);
        assert_eq!(body("limit=-1").unwrap(), all);
        assert_eq!(body("limit_per_metric=1").unwrap(), all);
        assert_eq!(body("limit=1").unwrap(), r#"{"a":[{"type":"gauge","help":"","unit":"bytes"}]}"#);
        assert_eq!(body("limit=0").unwrap(), "{}");
        assert_eq!(
            body("metric=b_total").unwrap(),
            r#"{"b_total":[{"type":"counter","help":"Say \"hi\".","unit":""}]}"#
        );
        assert_eq!(body("metric=nope").unwrap(), "{}");
        assert_eq!(body("limit=x").unwrap_err().to_string(), "limit must be a number");
        assert_eq!(body("limit_per_metric=x").unwrap_err().to_string(), "limit_per_metric must be a number");
    }
}
