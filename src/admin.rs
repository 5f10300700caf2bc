//! Prometheus's TSDB admin API, served with `--web.enable-admin-api`, each as `POST` or `PUT`:
//! `/api/v1/admin/tsdb/snapshot[?skip_head=<bool>]` (200 with the snapshot's name),
//! `/api/v1/admin/tsdb/delete_series?match[]=<selector>…[&start=<time>][&end=<time>]` (204) and
//! `/api/v1/admin/tsdb/clean_tombstones` (204). Parameters come from a form body first, then the
//! URL. Without the flag each answers as Prometheus does (500, `errorType` `unavailable`, "admin
//! APIs disabled"). The work runs off the async runtime.

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use query::api::Params;
use serde_json::json;

/// What the admin endpoints need.
#[derive(Clone)]
struct AdminState {
    enabled: bool,
    db: Arc<tsdb::Db>,
}

/// The admin routes; `enabled` is `--web.enable-admin-api`.
pub fn router(db: Arc<tsdb::Db>, enabled: bool) -> Router {
    Router::new()
        .route("/api/v1/admin/tsdb/snapshot", post(snapshot).put(snapshot))
        .route("/api/v1/admin/tsdb/delete_series", post(delete_series).put(delete_series))
        .route("/api/v1/admin/tsdb/clean_tombstones", post(clean_tombstones).put(clean_tombstones))
        .with_state(AdminState { enabled, db })
}

/// An error body, fields in Prometheus's order.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    #[serde(rename = "errorType")]
    error_type: &'a str,
    error: &'a str,
}

fn error(status: StatusCode, kind: &str, msg: &str) -> Response {
    (status, Json(ErrorBody { status: "error", error_type: kind, error: msg })).into_response()
}

/// Parses a boolean like Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `skip_head` comes from a form body first, then from the URL; the first value counts and an empty
/// one means false (Go's `FormValue`).
async fn snapshot(
    State(st): State<AdminState>,
    Query(query): Query<Vec<(String, String)>>,
    body: Option<Form<Vec<(String, String)>>>,
) -> Response {
    if !st.enabled {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "unavailable", "admin APIs disabled");
    }
    let form = body.map(|Form(f)| f).unwrap_or_default();
    let skip_head = match form.iter().chain(&query).find(|(k, _)| k == "skip_head").map(|(_, v)| v.as_str()) {
        None | Some("") => false,
        Some(v) => match parse_bool(v) {
            Some(b) => b,
            None => {
                let msg = format!(
                    "invalid parameter \"skip_head\": unable to parse boolean: strconv.ParseBool: parsing {v:?}: invalid syntax"
                );
                return error(StatusCode::BAD_REQUEST, "bad_data", &msg);
            }
        },
    };
    let db = Arc::clone(&st.db);
    match tokio::task::spawn_blocking(move || db.snapshot(!skip_head)).await {
        Ok(Ok(name)) => {
            tracing::info!(name = %name, skip_head, "TSDB snapshot created");
            Json(json!({"status": "success", "data": {"name": name}})).into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "TSDB snapshot failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &format!("create snapshot: {e}"))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &format!("create snapshot: {e}")),
    }
}

/// Parses `start` or `end` of `delete_series` like Prometheus's `parseTimeParam` (empty: `default`);
/// the error is the message of the 400 answer.
fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, String> {
    match p.get(name) {
        "" => Ok(default),
        v => query::api::params::parse_time(v)
            .map_err(|e| format!("invalid parameter {name:?}: Invalid time value for '{name}': {e}")),
    }
}

/// Deletes the samples in `[start, end]` of the series matching any `match[]` (Prometheus's
/// `deleteSeries`): every selector is parsed before anything is deleted; 204 when done.
async fn delete_series(State(st): State<AdminState>, p: Params) -> Response {
    if !st.enabled {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "unavailable", "admin APIs disabled");
    }
    if p.all("match[]").is_empty() {
        return error(StatusCode::BAD_REQUEST, "bad_data", "no match[] parameter provided");
    }
    let range = time_param(&p, "start", query::api::params::MIN_TIME_MS)
        .and_then(|start| Ok((start, time_param(&p, "end", query::api::params::MAX_TIME_MS)?)));
    let (start, end) = match range {
        Ok(r) => r,
        Err(msg) => return error(StatusCode::BAD_REQUEST, "bad_data", &msg),
    };
    let sets = match query::api::matcher_sets(&p) {
        Ok(s) => s,
        Err(e) => return error(e.status(), e.error_type(), &tsdb::labels::clip_to(&e.to_string(), 4096)),
    };
    let db = Arc::clone(&st.db);
    let res = tokio::task::spawn_blocking(move || {
        let mut series = 0u64;
        for ms in &sets {
            series += db.delete_series(ms, start, end)?;
        }
        Ok::<u64, tsdb::Error>(series)
    })
    .await;
    match res {
        Ok(Ok(series)) => {
            tracing::info!(series, start, end, selectors = p.all("match[]").len(), "series deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "delete_series failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()),
    }
}

/// Rewrites the blocks that have tombstones without the deleted samples; 204 when done.
async fn clean_tombstones(State(st): State<AdminState>) -> Response {
    if !st.enabled {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "unavailable", "admin APIs disabled");
    }
    let db = Arc::clone(&st.db);
    match tokio::task::spawn_blocking(move || db.clean_tombstones()).await {
        Ok(Ok(blocks)) => {
            tracing::info!(blocks, "tombstones cleaned");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "clean_tombstones failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &format!("clean tombstones: {e}"))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &format!("clean tombstones: {e}")),
    }
}
