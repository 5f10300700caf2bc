//! Prometheus's TSDB admin API, served with `--web.enable-admin-api`: `POST|PUT
//! /api/v1/admin/tsdb/snapshot[?skip_head=<bool>]`. Without the flag it answers as Prometheus does
//! (500, `errorType` `unavailable`, "admin APIs disabled"). `delete_series` and `clean_tombstones`
//! are not served (404, like any unknown path).

use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
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
