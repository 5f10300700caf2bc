//! The Prometheus HTTP query API (`/api/v1/…`): parameter handling, evaluation on the blocking
//! pool, and Prometheus's exact JSON. Handlers only parse and format; all PromQL semantics are
//! in [`crate::engine`]. [`remote_read`] serves Prometheus's remote read over the same storage.

pub mod exemplars;
pub mod json;
pub mod metadata;
pub mod names;
pub mod params;
pub mod remote_read;
pub mod status;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use tsdb::labels::{clip, clip_to};

use crate::engine::{Engine, EngineOptions, Labels, QueryValue};
use crate::error::QueryError;
use crate::storage::{from_tsdb_labels, read_error, to_tsdb_matcher, TsdbStorage};
pub use params::Params;

/// Shared state of the query API.
#[derive(Clone)]
pub struct QueryState {
    /// The database to read from.
    pub db: Arc<tsdb::Db>,
    /// Engine options.
    pub opts: EngineOptions,
}

/// All query API routes, GET and form POST.
pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/:name/values", get(label_values))
        .route("/api/v1/status/buildinfo", get(status::buildinfo))
        .route("/api/v1/format_query", get(status::format_query).post(status::format_query))
        .route("/api/v1/rules", get(status::rules))
        .route("/api/v1/alerts", get(status::alerts))
        .route("/api/v1/targets", get(status::targets))
        .route("/api/v1/targets/metadata", get(status::targets_metadata))
        .route("/api/v1/alertmanagers", get(status::alertmanagers))
        .route("/api/v1/status/tsdb", get(tsdb_status))
        .with_state(state)
}

#[axum::async_trait]
impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut p = Params::default();
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let query = req.uri().query().map(str::to_owned);
        // Go's `ParseForm` reads a form body of POST, PUT and PATCH requests.
        if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) && is_form {
            let bytes = axum::body::Bytes::from_request(req, state).await.map_err(IntoResponse::into_response)?;
            p.extend_urlencoded(&bytes);
        }
        if let Some(q) = query {
            p.extend_urlencoded(q.as_bytes());
        }
        Ok(p)
    }
}

type ApiResult = Result<(String, Vec<String>), QueryError>;

/// Longest error message answered: messages quote parts of the query (the parser's quote a whole
/// regular expression, for one), which a client can make as long as the request.
const ERROR_MESSAGE_MAX_BYTES: usize = 1024;

fn respond(r: ApiResult) -> Response {
    let ct = [(header::CONTENT_TYPE, "application/json")];
    match r {
        Ok((data, warnings)) => (StatusCode::OK, ct, json::success(&data, &warnings)).into_response(),
        Err(e) => {
            let msg = e.to_string();
            (e.status(), ct, json::error(e.error_type(), &clip_to(&msg, ERROR_MESSAGE_MAX_BYTES))).into_response()
        }
    }
}

fn bad_param(name: &str, msg: impl std::fmt::Display) -> QueryError {
    QueryError::BadData(format!("invalid parameter {name:?}: {msg}"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, QueryError> {
    match p.get(name) {
        "" => Ok(default),
        s => params::parse_time(s).map_err(|e| bad_param(name, e)),
    }
}

/// The storage of one request: `partial_response=true` (Thanos's parameter) asks for an answer
/// without the blocks or series that cannot be read, with warnings saying so, instead of an error.
fn request_storage(st: &QueryState, p: &Params) -> Result<TsdbStorage, QueryError> {
    let db = Arc::clone(&st.db);
    match p.get("partial_response") {
        "" | "false" | "0" => Ok(TsdbStorage::new(db)),
        "true" | "1" => Ok(TsdbStorage::partial(db)),
        s => Err(bad_param("partial_response", format!("cannot parse {s:?} to a boolean"))),
    }
}

/// Engine options for one request: `timeout` is capped by the server's, `lookback_delta` overrides.
fn request_options(st: &QueryState, p: &Params) -> Result<(EngineOptions, Option<Duration>), QueryError> {
    let mut opts = st.opts.clone();
    {
        let s = p.get("timeout");
        if !s.is_empty() {
            let ms = params::parse_duration(s).map_err(|e| bad_param("timeout", e))?;
            let d = Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0));
            opts.timeout = opts.timeout.min(d);
        }
    }
    let lookback = match p.get("lookback_delta") {
        "" => None,
        s => {
            let ms = params::parse_duration(s).map_err(|e| bad_param("lookback_delta", e))?;
            Some(Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0)))
        }
    };
    Ok((opts, lookback))
}

/// Runs an evaluation (blocking: it reads chunk files) off the async workers' duty. On the
/// multi-threaded runtime it runs in place with `block_in_place`, which hands this worker's other
/// tasks to another thread first: no hop to a pool thread and back, which would be most of the
/// latency of a sub-millisecond query. Elsewhere (single-threaded test runtimes) it goes to the blocking pool.
///
/// Parsing and evaluation recurse as deep as [`crate::complexity::MAX_DEPTH`]: the runtime's
/// threads must have stacks of [`crate::complexity::EVAL_STACK_BYTES`]
/// (`tokio::runtime::Builder::thread_stack_size`). A panic in `f` answers 500 (`internal`) for this
/// request only; it does not unwind into the connection's task.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, QueryError> + Send + 'static,
) -> Result<T, QueryError> {
    let guarded = move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %msg, "query evaluation panicked");
            Err(QueryError::Internal(format!("query evaluation panicked: {msg}")))
        })
    };
    if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        return tokio::task::block_in_place(guarded);
    }
    tokio::task::spawn_blocking(guarded)
        .await
        .map_err(|e| QueryError::Internal(format!("evaluation task failed: {e}")))?
}

/// Panics when the query's text is the value of `STRATA_PANIC_ON_QUERY`: fault injection for the
/// tests that a panic in one evaluation answers 500 and leaves the server serving. The variable is
/// read once. Compiled only with the `fault-injection` feature, which only test builds enable.
#[cfg(feature = "fault-injection")]
fn panic_point(query: &str) {
    static PANIC_ON: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if PANIC_ON.get_or_init(|| std::env::var("STRATA_PANIC_ON_QUERY").ok()).as_deref() == Some(query) {
        panic!("STRATA_PANIC_ON_QUERY: {query}");
    }
}

/// Without the `fault-injection` feature there is no panic point.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
fn panic_point(_query: &str) {}

/// Parses, evaluates and encodes a query within the request's deadline (`opts.timeout` from now);
/// with `stats`, the data carries Prometheus's `stats` object.
async fn run_query(
    opts: EngineOptions,
    storage: TsdbStorage,
    query: String,
    stats: Option<StatsLevel>,
    parse_error: fn(crate::parser::ParseError) -> QueryError,
    eval: impl FnOnce(
            &Engine,
            &TsdbStorage,
            &promql_parser::parser::Expr,
        ) -> Result<(QueryValue, crate::engine::EvalStats), QueryError>
        + Send
        + 'static,
) -> ApiResult {
    let arrived = Instant::now();
    let deadline = arrived + opts.timeout;
    blocking(move || {
        let started = Instant::now();
        let expr = crate::parser::parse(&query).map_err(parse_error)?;
        panic_point(&query);
        let parsed = Instant::now();
        let (v, mut eval_stats) = eval(&Engine::new(opts).with_deadline(deadline), &storage, &expr)?;
        let annotations = std::mem::take(&mut eval_stats.annotations);
        let evaluated = Instant::now();
        let mut data = json::query_data(&v, deadline)?;
        if let Some(level) = stats {
            let timings = json::Timings {
                queue: started - arrived,
                preparation: parsed - started,
                inner_eval: (evaluated - parsed).saturating_sub(eval_stats.sort_time),
                sort: eval_stats.sort_time,
            };
            json::push_stats(&mut data, &timings, &eval_stats, level == StatsLevel::All);
        }
        let mut warnings = storage.warnings();
        warnings.extend(annotations);
        Ok((data, warnings))
    })
    .await
}

/// How much of the query statistics a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatsLevel {
    /// `stats=all`: with the per-step counts (when the engine counts them).
    All,
    /// `stats` set to anything else.
    Summary,
}

/// The `stats` parameter: any value asks for statistics, as in Prometheus.
fn wants_stats(p: &Params) -> Option<StatsLevel> {
    match p.get("stats") {
        "" => None,
        "all" => Some(StatsLevel::All),
        _ => Some(StatsLevel::Summary),
    }
}

async fn query(State(st): State<QueryState>, p: Params) -> Response {
    respond(query_inner(st, p).await)
}

async fn query_inner(st: QueryState, p: Params) -> ApiResult {
    let t = time_param(&p, "time", now_ms())?;
    let (opts, lookback) = request_options(&st, &p)?;
    let storage = request_storage(&st, &p)?;
    // Like Prometheus, an instant query names the parameter in a parse error and a range query does not.
    let parse_error = |e| bad_param("query", e);
    let stats = wants_stats(&p);
    run_query(opts, storage, p.get("query").to_owned(), stats, parse_error, move |engine, storage, expr| {
        engine.instant_stats(storage, expr, t, lookback)
    })
    .await
}

async fn query_range(State(st): State<QueryState>, p: Params) -> Response {
    respond(query_range_inner(st, p).await)
}

async fn query_range_inner(st: QueryState, p: Params) -> ApiResult {
    let start = params::parse_time(p.get("start")).map_err(|e| bad_param("start", e))?;
    let end = params::parse_time(p.get("end")).map_err(|e| bad_param("end", e))?;
    if end < start {
        return Err(bad_param("end", "end timestamp must not be before start time"));
    }
    let step = params::parse_duration(p.get("step")).map_err(|e| bad_param("step", e))?;
    if step <= 0 {
        return Err(bad_param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    let max_points = i64::try_from(st.opts.max_points_per_series).unwrap_or(i64::MAX);
    if (end - start) / step > max_points {
        return Err(QueryError::BadData(format!(
            "exceeded maximum resolution of {} points per timeseries. Try decreasing the query resolution (?step=XX)",
            group_thousands(st.opts.max_points_per_series)
        )));
    }
    let (opts, lookback) = request_options(&st, &p)?;
    let storage = request_storage(&st, &p)?;
    let parse_error = |e: crate::parser::ParseError| QueryError::BadData(e.to_string());
    let stats = wants_stats(&p);
    run_query(opts, storage, p.get("query").to_owned(), stats, parse_error, move |engine, storage, expr| {
        engine.range_stats(storage, expr, start, end, step, lookback)
    })
    .await
}

fn group_thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Parses `match[]` selectors into tsdb matcher sets (also used by the admin API's `delete_series`).
pub fn matcher_sets(p: &Params) -> Result<Vec<Vec<tsdb::Matcher>>, QueryError> {
    let mut sets = Vec::new();
    for s in p.all("match[]") {
        let expr = crate::parser::parse(s).map_err(|e| bad_param("match[]", e))?;
        let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
            return Err(bad_param("match[]", format!("expected vector selector, got {:?}", clip(s))));
        };
        if !vs.matchers.or_matchers.is_empty() {
            return Err(QueryError::unsupported("\"or\" inside label matchers"));
        }
        let mut ms = vs.matchers.matchers.iter().map(to_tsdb_matcher).collect::<Result<Vec<_>, _>>()?;
        if let Some(name) = &vs.name {
            if !ms.iter().any(|m| m.name == "__name__" && m.kind == tsdb::MatchType::Equal) {
                ms.push(tsdb::Matcher::equal("__name__", name.clone()));
            }
        }
        sets.push(ms);
    }
    Ok(sets)
}

fn limit_param(p: &Params) -> Result<usize, QueryError> {
    match p.get("limit") {
        "" => Ok(0),
        s => s.parse::<usize>().map_err(|_| bad_param("limit", format!("cannot parse {:?} to a valid limit", clip(s)))),
    }
}

/// Applies `limit`, returning the warnings Prometheus adds on truncation.
fn truncate<T>(v: &mut Vec<T>, limit: usize) -> Vec<String> {
    if limit > 0 && v.len() > limit {
        v.truncate(limit);
        return vec!["results truncated due to limit".to_string()];
    }
    Vec::new()
}

async fn series(State(st): State<QueryState>, p: Params) -> Response {
    respond(series_inner(st, p).await)
}

async fn series_inner(st: QueryState, p: Params) -> ApiResult {
    if p.all("match[]").is_empty() {
        return Err(QueryError::BadData("no match[] parameter provided".into()));
    }
    let start = time_param(&p, "start", params::MIN_TIME_MS)?;
    let end = time_param(&p, "end", params::MAX_TIME_MS)?;
    let limit = limit_param(&p)?;
    let sets = matcher_sets(&p)?;
    let storage = request_storage(&st, &p)?;
    let (mut all, mut warnings) = blocking(move || {
        let q = storage.querier(start, end);
        let mut all: Vec<Labels> = Vec::new();
        for ms in &sets {
            all.extend(q.series_labels(ms).map_err(read_error)?.iter().map(from_tsdb_labels));
        }
        all.sort();
        all.dedup();
        Ok((all, storage.warnings()))
    })
    .await?;
    warnings.extend(truncate(&mut all, limit));
    let mut out = String::from("[");
    for (i, l) in all.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::push_labels(&mut out, l);
    }
    out.push(']');
    Ok((out, warnings))
}

async fn labels(State(st): State<QueryState>, p: Params) -> Response {
    respond(labels_inner(st, p).await)
}

async fn labels_inner(st: QueryState, p: Params) -> ApiResult {
    let start = time_param(&p, "start", params::MIN_TIME_MS)?;
    let end = time_param(&p, "end", params::MAX_TIME_MS)?;
    let limit = limit_param(&p)?;
    let sets = matcher_sets(&p)?;
    let storage = request_storage(&st, &p)?;
    let (mut names, mut warnings) = blocking(move || {
        let q = storage.querier(start, end);
        let mut names: Vec<String> = Vec::new();
        if sets.is_empty() {
            names = q.label_names(&[]).map_err(read_error)?;
        }
        for ms in &sets {
            names.extend(q.label_names(ms).map_err(read_error)?);
        }
        names.sort();
        names.dedup();
        Ok((names, storage.warnings()))
    })
    .await?;
    warnings.extend(truncate(&mut names, limit));
    Ok((json::string_array(&names), warnings))
}

async fn label_values(State(st): State<QueryState>, Path(name): Path<String>, p: Params) -> Response {
    respond(label_values_inner(st, name, p).await)
}

async fn label_values_inner(st: QueryState, name: String, p: Params) -> ApiResult {
    // Any UTF-8 name, given as it is or `U__`-escaped (Prometheus 3's `labelValues`).
    let name = names::unescape_label_name(&name).into_owned();
    if !crate::engine::aggregate::is_valid_label_name(&name) {
        return Err(QueryError::BadData(format!("invalid label name: {:?}", clip(&name))));
    }
    let start = time_param(&p, "start", params::MIN_TIME_MS)?;
    let end = time_param(&p, "end", params::MAX_TIME_MS)?;
    let limit = limit_param(&p)?;
    let sets = matcher_sets(&p)?;
    let storage = request_storage(&st, &p)?;
    let (mut values, mut warnings) = blocking(move || {
        let q = storage.querier(start, end);
        let mut values: Vec<String> = Vec::new();
        if sets.is_empty() {
            values = q.label_values(&name, &[]).map_err(read_error)?;
        }
        for ms in &sets {
            values.extend(q.label_values(&name, ms).map_err(read_error)?);
        }
        values.sort();
        values.dedup();
        Ok((values, storage.warnings()))
    })
    .await?;
    warnings.extend(truncate(&mut values, limit));
    Ok((json::string_array(&values), warnings))
}

async fn tsdb_status(State(st): State<QueryState>, p: Params) -> Response {
    respond(tsdb_status_inner(st, p).await)
}

async fn tsdb_status_inner(st: QueryState, p: Params) -> ApiResult {
    let limit = match p.get("limit") {
        "" => 10,
        s => match s.parse::<usize>() {
            Ok(n) if n > 0 && n <= 10_000 => n,
            _ => return Err(QueryError::BadData("limit must be a positive number".into())),
        },
    };
    let db = Arc::clone(&st.db);
    let data = blocking(move || tsdb_stats(&db, limit)).await?;
    Ok((data, Vec::new()))
}

/// Cardinality statistics of the head, as Prometheus reports them.
fn tsdb_stats(db: &Arc<tsdb::Db>, limit: usize) -> Result<String, QueryError> {
    let head = db.head();
    let q = head.querier(i64::MIN, i64::MAX);
    let names = q.label_names(&[]).map_err(read_error)?;
    let mut value_counts: Vec<(String, u64)> = Vec::new();
    let mut memory: Vec<(String, u64)> = Vec::new();
    let mut pair_counts: Vec<(String, u64)> = Vec::new();
    let mut metric_counts: Vec<(String, u64)> = Vec::new();
    for n in &names {
        let values = q.label_values(n, &[]).map_err(read_error)?;
        value_counts.push((n.clone(), values.len() as u64));
        let mut bytes = 0u64;
        for v in &values {
            let count =
                q.series_labels(&[tsdb::Matcher::equal(n.clone(), v.clone())]).map_err(read_error)?.len() as u64;
            bytes += v.len() as u64 * count;
            pair_counts.push((format!("{n}={v}"), count));
            if n == "__name__" {
                metric_counts.push((v.clone(), count));
            }
        }
        memory.push((n.clone(), bytes));
    }
    let (pairs, _) = head.postings_cardinality();
    let (min_t, max_t) = (head.min_time(), head.max_time());
    let mut d = format!(
        "{{\"headStats\":{{\"numSeries\":{},\"numLabelPairs\":{},\"chunkCount\":{},\"minTime\":{},\"maxTime\":{}}}",
        head.num_series(),
        pairs,
        head.num_chunks(),
        min_t,
        max_t
    );
    for (key, mut list) in [
        ("seriesCountByMetricName", metric_counts),
        ("labelValueCountByLabelName", value_counts),
        ("memoryInBytesByLabelName", memory),
        ("seriesCountByLabelValuePair", pair_counts),
    ] {
        list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        list.truncate(limit);
        d.push(',');
        json::push_str(&mut d, key);
        d.push_str(":[");
        for (i, (n, v)) in list.iter().enumerate() {
            if i > 0 {
                d.push(',');
            }
            d.push_str("{\"name\":");
            json::push_str(&mut d, n);
            d.push_str(&format!(",\"value\":{v}}}"));
        }
        d.push(']');
    }
    d.push('}');
    Ok(d)
}
