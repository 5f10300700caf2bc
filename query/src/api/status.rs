//! The server-status side of the HTTP API: `status/{config,flags,runtimeinfo,walreplay,buildinfo}`,
//! `format_query`, and the rule, alert, target and Alertmanager endpoints, which answer the empty
//! shapes Prometheus answers when it has none of them (Strata evaluates no rules and scrapes nothing).
//!
//! What the server knows about itself (its flags, its config file's text, when it started) is passed
//! in as data in a [`ServerStatus`]; the config part sits behind a lock so a reload can replace it.

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use super::{bad_param, respond, Params};
use crate::error::QueryError;

/// The Prometheus API version Strata implements, reported as `version` by `status/buildinfo`:
/// Grafana compares it (as semver) to decide which Prometheus features to use.
pub const PROMETHEUS_VERSION: &str = "2.42.0";

/// Strata's own version, reported as `strataVersion` by `status/buildinfo`.
pub const STRATA_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The configuration currently loaded.
#[derive(Debug, Clone)]
pub struct ConfigStatus {
    /// The config file's text (empty without a config file).
    pub yaml: String,
    /// Whether the last (re)load succeeded.
    pub reload_success: bool,
    /// When the configuration in use was loaded.
    pub last_config_time: SystemTime,
}

/// What the status endpoints report about the server.
#[derive(Debug)]
pub struct ServerStatus {
    /// Every command-line flag by its long name (without `--`), with its value (defaults included).
    pub flags: Vec<(String, String)>,
    /// The configuration in use.
    pub config: RwLock<ConfigStatus>,
    /// When the process started.
    pub start_time: SystemTime,
    /// The working directory at startup.
    pub cwd: String,
    /// Block retention as written in the flags (`15d`), or empty when blocks are kept forever.
    pub storage_retention: String,
}

/// State of the status routes.
#[derive(Clone)]
pub struct StatusState {
    /// The database (WAL segments for `status/walreplay`, block corruption for `runtimeinfo`).
    pub db: Arc<tsdb::Db>,
    /// What the server reports about itself.
    pub server: Arc<ServerStatus>,
}

/// The status routes that need the server's own data (`buildinfo` and `format_query` are in
/// [`super::router`], as they need none).
pub fn router(state: StatusState) -> Router {
    Router::new()
        .route("/api/v1/status/config", get(config))
        .route("/api/v1/status/flags", get(flags))
        .route("/api/v1/status/runtimeinfo", get(runtimeinfo))
        .route("/api/v1/status/walreplay", get(walreplay))
        .with_state(state)
}

fn ok(v: Value) -> Response {
    respond(Ok((v.to_string(), Vec::new())))
}

/// A JSON object with its keys in the order given (Prometheus's field order), not sorted.
fn ordered(fields: &[(&str, Value)]) -> Response {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        super::json::push_str(&mut out, k);
        out.push(':');
        out.push_str(&v.to_string());
    }
    out.push('}');
    respond(Ok((out, Vec::new())))
}

async fn config(State(st): State<StatusState>) -> Response {
    let yaml = match st.server.config.read() {
        Ok(c) => c.yaml.clone(),
        Err(poisoned) => poisoned.into_inner().yaml.clone(),
    };
    ok(json!({ "yaml": yaml }))
}

async fn flags(State(st): State<StatusState>) -> Response {
    let mut m = Map::new();
    for (k, v) in &st.server.flags {
        m.insert(k.clone(), Value::String(v.clone()));
    }
    ok(Value::Object(m))
}

async fn runtimeinfo(State(st): State<StatusState>) -> Response {
    let cfg = match st.server.config.read() {
        Ok(c) => c.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    ordered(&[
        ("startTime", json!(rfc3339(st.server.start_time, true))),
        ("CWD", json!(st.server.cwd)),
        ("reloadConfigSuccess", json!(cfg.reload_success)),
        ("lastConfigTime", json!(rfc3339(cfg.last_config_time, false))),
        ("corruptionCount", json!(st.db.quarantined_blocks())),
        ("goroutineCount", json!(thread_count())),
        ("GOMAXPROCS", json!(cores)),
        ("GOGC", json!("")),
        ("GODEBUG", json!("")),
        ("storageRetention", json!(st.server.storage_retention)),
    ])
}

/// Threads of this process (`Threads:` in `/proc/self/status`), 0 where that cannot be read.
fn thread_count() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").and_then(|v| v.trim().parse::<u64>().ok())))
        .unwrap_or(0)
}

/// The WAL's segments. The API answers only once replay is done, so `current` is `max`.
async fn walreplay(State(st): State<StatusState>) -> Response {
    let range = st.db.head().wal().map(|w| w.segment_range());
    match range {
        Some(Err(e)) => respond(Err(QueryError::Internal(format!("listing WAL segments: {e}")))),
        Some(Ok(Some((min, max)))) => {
            ordered(&[("min", json!(min.0)), ("max", json!(max.0)), ("current", json!(max.0))])
        }
        None | Some(Ok(None)) => ordered(&[("min", json!(0)), ("max", json!(0)), ("current", json!(0))]),
    }
}

/// `status/buildinfo`: Prometheus's fields, with `version` the Prometheus API version Strata
/// implements (what Grafana reads) and Strata's own version in `strataVersion`. Strata is not built
/// with Go and carries no build stamp: those fields are empty.
pub(super) async fn buildinfo() -> Response {
    ordered(&[
        ("version", json!(PROMETHEUS_VERSION)),
        ("revision", json!("")),
        ("branch", json!("")),
        ("buildUser", json!("")),
        ("buildDate", json!("")),
        ("goVersion", json!("")),
        ("strataVersion", json!(STRATA_VERSION)),
    ])
}

/// `format_query`: the query pretty-printed (promql-parser's printer).
pub(super) async fn format_query(p: Params) -> Response {
    let q = p.get("query").to_owned();
    respond(
        super::blocking(move || {
            let expr = crate::parser::parse(&q).map_err(|e| bad_param("query", e))?;
            let mut out = String::new();
            super::json::push_str(&mut out, &expr.prettify());
            Ok((out, Vec::new()))
        })
        .await,
    )
}

/// `rules`: Strata evaluates no rules.
pub(super) async fn rules() -> Response {
    ok(json!({ "groups": [] }))
}

/// `alerts`: no rules, so no alerts.
pub(super) async fn alerts() -> Response {
    ok(json!({ "alerts": [] }))
}

/// `targets`: Strata receives remote-write and scrapes nothing.
pub(super) async fn targets() -> Response {
    ok(json!({ "activeTargets": [], "droppedTargets": [] }))
}

/// `targets/metadata`: no targets, no metadata.
pub(super) async fn targets_metadata() -> Response {
    ok(json!([]))
}

/// `alertmanagers`: Strata sends no alerts.
pub(super) async fn alertmanagers() -> Response {
    ok(json!({ "activeAlertmanagers": [], "droppedAlertmanagers": [] }))
}

/// `t` in RFC 3339, UTC, with nanoseconds (as Go prints a `time.Time` in JSON) or whole seconds.
fn rfc3339(t: SystemTime, nanos: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let (y, m, day) = crate::engine::functions::civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    let mut s = format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}", sod / 3600, sod % 3600 / 60, sod % 60);
    if nanos && d.subsec_nanos() != 0 {
        let frac = format!("{:09}", d.subsec_nanos());
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_like_go() {
        let t = UNIX_EPOCH + Duration::new(1_796_608_083, 307_265_000);
        assert_eq!(rfc3339(t, true), "2026-12-07T01:48:03.307265Z");
        assert_eq!(rfc3339(t, false), "2026-12-07T01:48:03Z");
        assert_eq!(rfc3339(UNIX_EPOCH, true), "1970-01-01T00:00:00Z");
    }
}
