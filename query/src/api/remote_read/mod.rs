//! Prometheus remote read: `POST /api/v1/read`, answered as Prometheus 2.42's read handler answers.
//!
//! A request is a snappy block holding a protobuf `prometheus.ReadRequest` (bounded like a
//! remote-write body: the compressed size, and the declared decompressed size checked before
//! anything is allocated). The response type is the first of the request's `accepted_response_types`
//! that Strata serves (none listed: `SAMPLES`):
//!
//! - `SAMPLES`: one snappy-compressed `ReadResponse` with a `QueryResult` per query, each series with
//!   its float samples and its native histograms in `histograms` (integer ones with bucket deltas,
//!   float ones with counts, as Prometheus 2.44 and later send them; 2.42 sends a series' floats
//!   up to its first histogram and no histograms), at most `--storage.remote.read-sample-limit`
//!   samples and histograms per query, else 400 `exceeded sample limit (N)`.
//! - `STREAMED_XOR_CHUNKS`: [`framing`] frames of `ChunkedReadResponse`, one series per frame (a
//!   series with more chunks than fit `--storage.remote.read-max-bytes-in-frame` takes several),
//!   series sorted by labels, chunks from [`chunks`]: stored XOR and histogram chunks (types 1, 2
//!   and 3) where they do not overlap, merged and re-encoded ones where they do (out-of-order data,
//!   overlapping blocks).
//!
//! Each query selects over `[start_timestamp_ms, end_timestamp_ms]` and, when the request has hints,
//! reads samples in the hints' `[start_ms, end_ms]` (as Prometheus's block queriers do; `step_ms` and
//! `func` are ignored). The external labels in effect (`global.external_labels`, changed by reloads)
//! are added to every series unless the series has a label of that name, and an equality matcher on
//! an external label with its value becomes a matcher for the label's absence, since the stored
//! series do not carry it (Prometheus's `filterExtLabelsFromMatchers`).
//!
//! At most `--storage.remote.read-concurrent-limit` requests are served at once; more wait. Reading
//! runs on the blocking pool and stops at the next series when the client goes away: a streamed
//! answer's frames go through a small channel that the response body drains, so a client that stops
//! reading holds one channel's worth of frames, and one that disconnects ends the read.
//!
//! Errors are plain text with a trailing newline, like Go's `http.Error`: 400 for a request that
//! cannot be decoded, an unsupported response type, a bad matcher or the sample limit; 413 for a body
//! over the size limits; 500 for storage faults. A streamed answer that fails after its first frame
//! was sent ends early (the status is already 200), as in Prometheus.

pub mod chunks;
pub mod framing;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use ingest::proto;
use ingest::proto::read_request::ResponseType;
use prost::Message;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tsdb::histogram::{CounterResetHint, HistogramValue, Span};

/// The path of the remote-read endpoint.
pub const READ_PATH: &str = "/api/v1/read";
/// Default [`Options::sample_limit`] (Prometheus's `--storage.remote.read-sample-limit`).
pub const DEFAULT_SAMPLE_LIMIT: usize = 50_000_000;
/// Default [`Options::concurrent_limit`] (Prometheus's `--storage.remote.read-concurrent-limit`).
pub const DEFAULT_CONCURRENT_LIMIT: usize = 10;
/// Default [`Options::max_bytes_in_frame`] (Prometheus's `--storage.remote.read-max-bytes-in-frame`).
pub const DEFAULT_MAX_BYTES_IN_FRAME: usize = 1_048_576;
/// Frames a streamed answer may have ready before the client has read them.
const STREAM_QUEUE_FRAMES: usize = 4;
/// `Content-Type` of a streamed answer.
pub const STREAMED_CONTENT_TYPE: &str = "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse";

/// Limits of the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Most samples one query of a `SAMPLES` answer may return; 0 for no limit.
    pub sample_limit: usize,
    /// Requests served at once (more wait); 0 for no limit.
    pub concurrent_limit: usize,
    /// Chunk bytes (and labels) after which a streamed frame is cut; a frame may exceed it by one chunk.
    pub max_bytes_in_frame: usize,
    /// Size limits of the request body (the remote-write ones).
    pub body: ingest::Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sample_limit: DEFAULT_SAMPLE_LIMIT,
            concurrent_limit: DEFAULT_CONCURRENT_LIMIT,
            max_bytes_in_frame: DEFAULT_MAX_BYTES_IN_FRAME,
            body: ingest::Limits::default(),
        }
    }
}

/// The external labels in effect, asked for once per request (a reload may change them).
pub type ExternalLabels = Arc<dyn Fn() -> Arc<BTreeMap<String, String>> + Send + Sync>;

/// The endpoint's counters, rendered by the server on `/metrics`.
#[derive(Debug, Default)]
pub struct ReadMetrics {
    queries: AtomicI64,
    cancelled: AtomicU64,
}

impl ReadMetrics {
    /// Requests being served or waiting for their turn (Prometheus's
    /// `prometheus_remote_read_handler_queries`).
    pub fn queries(&self) -> i64 {
        self.queries.load(Ordering::Relaxed)
    }

    /// Requests whose client went away before the answer was complete; their reading stopped.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }
}

/// Shared state of the endpoint. Cheap to clone.
#[derive(Clone)]
pub struct RemoteReadState {
    db: Arc<tsdb::Db>,
    opts: Options,
    external_labels: ExternalLabels,
    gate: Option<Arc<Semaphore>>,
    metrics: Arc<ReadMetrics>,
}

impl RemoteReadState {
    /// State over `db`; `external_labels` is asked for the labels in effect at each request.
    pub fn new(db: Arc<tsdb::Db>, opts: Options, external_labels: ExternalLabels) -> RemoteReadState {
        let gate = (opts.concurrent_limit > 0).then(|| Arc::new(Semaphore::new(opts.concurrent_limit)));
        RemoteReadState { db, opts, external_labels, gate, metrics: Arc::default() }
    }

    /// The endpoint's counters.
    pub fn metrics(&self) -> &Arc<ReadMetrics> {
        &self.metrics
    }
}

/// The remote-read router: `POST /api/v1/read`, with the body limit of `state`'s options.
pub fn router(state: RemoteReadState) -> Router {
    let limit = state.opts.body.max_compressed_bytes;
    Router::new().route(READ_PATH, post(read)).layer(DefaultBodyLimit::max(limit)).with_state(state)
}

/// Why a remote-read request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body could not be read, is too large, or is not a valid snappy block.
    #[error(transparent)]
    Body(ingest::Error),
    /// The decompressed body is not a `ReadRequest`.
    #[error("invalid protobuf ReadRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// None of the accepted response types is served.
    #[error(
        "server does not support any of the requested response types: [{requested}]; supported: \
         map[SAMPLES:{{}} STREAMED_XOR_CHUNKS:{{}}]"
    )]
    UnsupportedResponseTypes {
        /// The accepted types as sent (names, or numbers for unknown ones).
        requested: String,
    },
    /// A matcher type that is not one of EQ, NEQ, RE, NRE.
    #[error("query {query}: invalid matcher type {kind}")]
    MatcherType {
        /// Index of the query.
        query: usize,
        /// The type number sent.
        kind: i32,
    },
    /// A matcher that cannot be built (a bad regular expression).
    #[error("query {query}: {source}")]
    Matcher {
        /// Index of the query.
        query: usize,
        /// What is wrong with it.
        source: tsdb::labels::MatcherError,
    },
    /// A query of a `SAMPLES` answer has more samples than [`Options::sample_limit`].
    #[error("exceeded sample limit ({limit})")]
    SampleLimit {
        /// The limit.
        limit: usize,
    },
    /// Reading the storage failed.
    #[error("{0}")]
    Storage(#[from] tsdb::Error),
    /// The client went away; nothing more is sent.
    #[error("the client went away")]
    Cancelled,
    /// The reading task failed (a panic).
    #[error("remote read failed: {0}")]
    Internal(String),
}

impl Error {
    /// The HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Body(e) => e.status(),
            Error::Protobuf(_)
            | Error::UnsupportedResponseTypes { .. }
            | Error::MatcherType { .. }
            | Error::Matcher { .. }
            | Error::SampleLimit { .. } => StatusCode::BAD_REQUEST,
            Error::Storage(tsdb::Error::Closed) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Storage(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            // Nobody reads it.
            Error::Cancelled => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let text = tsdb::labels::clip_to(&self.to_string(), 4096).into_owned();
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
            format!("{text}\n"),
        )
            .into_response()
    }
}

/// Counts a request in [`ReadMetrics::queries`] until dropped.
struct InFlight(Arc<ReadMetrics>);

impl InFlight {
    fn new(m: &Arc<ReadMetrics>) -> InFlight {
        m.queries.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(m))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.queries.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a request holds while it is served: its place in the gauge and in the concurrency limit.
struct Held {
    _in_flight: InFlight,
    _permit: Option<OwnedSemaphorePermit>,
}

/// `POST /api/v1/read`.
#[tracing::instrument(name = "remote_read", skip_all)]
async fn read(State(st): State<RemoteReadState>, body: Result<Bytes, BytesRejection>) -> Response {
    let in_flight = InFlight::new(&st.metrics);
    let permit = match &st.gate {
        Some(g) => match Arc::clone(g).acquire_owned().await {
            Ok(p) => Some(p),
            Err(_) => return Error::Internal("the concurrency limit is closed".into()).into_response(),
        },
        None => None,
    };
    let held = Held { _in_flight: in_flight, _permit: permit };
    let result = match read_body(&st.opts, body).and_then(|b| plan(&b, st.opts.body, &(st.external_labels)())) {
        Ok(plan) => {
            let (queries, response_type) = (plan.queries.len(), plan.response_type);
            let result = serve(st, plan, held).await;
            if result.is_ok() {
                tracing::debug!(queries, ?response_type, "remote-read request answered");
            }
            result
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(resp) => resp,
        Err(e) => {
            if e.status().is_server_error() {
                tracing::error!(status = e.status().as_u16(), cause = %e, "remote-read request failed");
            } else {
                tracing::warn!(status = e.status().as_u16(), cause = %e, "remote-read request refused");
            }
            e.into_response()
        }
    }
}

async fn serve(st: RemoteReadState, plan: ReadPlan, held: Held) -> Result<Response, Error> {
    // The labels in effect now: a reload between planning and reading changes nothing of this request.
    let external: Vec<(String, String)> = plan.external.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    match plan.response_type {
        ResponseType::Samples => samples(st, plan.queries, external, held).await,
        ResponseType::StreamedXorChunks => streamed(st, plan.queries, external, held).await,
    }
}

/// The request body, or why it could not be read.
fn read_body(opts: &Options, body: Result<Bytes, BytesRejection>) -> Result<Bytes, Error> {
    body.map_err(|rejection| {
        Error::Body(if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ingest::Error::BodyTooLarge { limit: opts.body.max_compressed_bytes }
        } else {
            ingest::Error::BodyRead { reason: rejection.body_text() }
        })
    })
}

/// A request decoded and checked, ready to be read.
pub struct ReadPlan {
    /// How the answer is sent.
    pub response_type: ResponseType,
    queries: Vec<PreparedQuery>,
    external: BTreeMap<String, String>,
}

impl ReadPlan {
    /// The matchers each query selects with (external labels already accounted for).
    pub fn matchers(&self) -> impl Iterator<Item = &[tsdb::Matcher]> {
        self.queries.iter().map(|q| q.matchers.as_slice())
    }
}

/// Decompresses a request body (its declared size checked against `limits` before anything is
/// allocated), decodes the `ReadRequest`, picks the response type and checks every query's
/// matchers against the external labels in effect. Pure: no storage, no I/O.
pub fn plan(body: &[u8], limits: ingest::Limits, external: &BTreeMap<String, String>) -> Result<ReadPlan, Error> {
    let mut buf = Vec::new();
    ingest::decode::decompress(body, limits.max_decompressed_bytes, &mut buf).map_err(Error::Body)?;
    let req = proto::ReadRequest::decode(buf.as_slice())?;
    let response_type = negotiate(&req.accepted_response_types)?;
    let queries = req
        .queries
        .iter()
        .enumerate()
        .map(|(i, q)| PreparedQuery::new(i, q, external))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ReadPlan { response_type, queries, external: external.clone() })
}

/// The first accepted response type Strata serves; `SAMPLES` when none is listed.
fn negotiate(accepted: &[i32]) -> Result<ResponseType, Error> {
    if accepted.is_empty() {
        return Ok(ResponseType::Samples);
    }
    if let Some(t) = accepted.iter().find_map(|&t| ResponseType::try_from(t).ok()) {
        return Ok(t);
    }
    let names: Vec<String> = accepted.iter().take(16).map(i32::to_string).collect();
    Err(Error::UnsupportedResponseTypes { requested: names.join(" ") })
}

/// One query, checked: its matchers and ranges.
struct PreparedQuery {
    matchers: Vec<tsdb::Matcher>,
    /// The blocks and head series to look at: the query's range.
    select: (i64, i64),
    /// The samples to read: the hints' range, else the query's.
    read: (i64, i64),
}

impl PreparedQuery {
    fn new(index: usize, q: &proto::Query, external: &BTreeMap<String, String>) -> Result<PreparedQuery, Error> {
        use proto::label_matcher::Type;
        let mut matchers = Vec::with_capacity(q.matchers.len());
        for m in &q.matchers {
            let kind = match Type::try_from(m.r#type) {
                Ok(Type::Eq) => tsdb::MatchType::Equal,
                Ok(Type::Neq) => tsdb::MatchType::NotEqual,
                Ok(Type::Re) => tsdb::MatchType::Regex,
                Ok(Type::Nre) => tsdb::MatchType::NotRegex,
                Err(_) => return Err(Error::MatcherType { query: index, kind: m.r#type }),
            };
            // The stored series do not carry the external labels: `name="value"` of an external label
            // matches the series that lack the label.
            let external_value = external.get(&m.name).map_or("", String::as_str);
            let value = if kind == tsdb::MatchType::Equal && external_value == m.value { "" } else { m.value.as_str() };
            let matcher = tsdb::Matcher::new(kind, m.name.clone(), value)
                .map_err(|source| Error::Matcher { query: index, source })?;
            matchers.push(matcher);
        }
        let select = (q.start_timestamp_ms, q.end_timestamp_ms);
        let read = q.hints.as_ref().map_or(select, |h| (h.start_ms, h.end_ms));
        Ok(PreparedQuery { matchers, select, read })
    }
}

/// A series' labels as sent: the stored labels, plus each external label the series does not have.
fn series_labels(labels: &tsdb::Labels, external: &[(String, String)]) -> Vec<proto::Label> {
    let mut out: Vec<proto::Label> =
        labels.iter().map(|(n, v)| proto::Label { name: n.to_owned(), value: v.to_owned() }).collect();
    let stored = out.len();
    for (n, v) in external {
        if labels.get(n).is_none() {
            out.push(proto::Label { name: n.clone(), value: v.clone() });
        }
    }
    if out.len() > stored {
        out.sort_by(|a, b| a.name.cmp(&b.name));
    }
    out
}

/// Sets its flag when dropped: the handler's future is dropped when its client goes away.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// A `SAMPLES` answer: every query read on the blocking pool, then one snappy-compressed response.
async fn samples(
    st: RemoteReadState,
    queries: Vec<PreparedQuery>,
    external: Vec<(String, String)>,
    held: Held,
) -> Result<Response, Error> {
    let cancelled = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(Arc::clone(&cancelled));
    let metrics = Arc::clone(&st.metrics);
    let task = tokio::task::spawn_blocking(move || {
        let _held = held;
        let result = read_samples(&st.db, &queries, &external, st.opts.sample_limit, &cancelled);
        if matches!(result, Err(Error::Cancelled)) {
            metrics.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        result
    });
    let body = task.await.map_err(|e| Error::Internal(e.to_string()))??;
    let mut resp = Response::new(Body::from(body));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("snappy"));
    Ok(resp)
}

/// Reads every query's series and samples and encodes the compressed `ReadResponse`. Blocking.
fn read_samples(
    db: &Arc<tsdb::Db>,
    queries: &[PreparedQuery],
    external: &[(String, String)],
    sample_limit: usize,
    cancelled: &AtomicBool,
) -> Result<Vec<u8>, Error> {
    let mut results = Vec::with_capacity(queries.len());
    let mut buf = Vec::new();
    let mut hists = Vec::new();
    for q in queries {
        let querier = db.querier(q.select.0, q.select.1);
        let mut timeseries = Vec::new();
        let mut total = 0usize;
        for s in querier.select_lazy(&q.matchers)? {
            if cancelled.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let Some(snapshot) = s.snapshot(q.read.0, q.read.1)? else { continue };
            buf.clear();
            snapshot.read_samples(q.read.0, q.read.1, &mut buf)?;
            hists.clear();
            snapshot.read_histogram_values(q.read.0, q.read.1, &mut hists)?;
            if buf.is_empty() && hists.is_empty() {
                continue;
            }
            total += buf.len() + hists.len();
            if sample_limit > 0 && total > sample_limit {
                return Err(Error::SampleLimit { limit: sample_limit });
            }
            timeseries.push(proto::TimeSeries {
                labels: series_labels(s.labels(), external),
                samples: buf.iter().map(|&(timestamp, value)| proto::Sample { value, timestamp }).collect(),
                histograms: hists.iter().map(|(t, h)| histogram_proto(*t, h)).collect(),
                ..Default::default()
            });
        }
        results.push(proto::QueryResult { timeseries });
    }
    let encoded = proto::ReadResponse { results }.encode_to_vec();
    snap::raw::Encoder::new().compress_vec(&encoded).map_err(|e| Error::Internal(format!("snappy: {e}")))
}

/// A stored histogram as remote read sends it: integer counts as `count_int`, `zero_count_int` and
/// bucket deltas, float counts as `count_float`, `zero_count_float` and absolute bucket counts.
fn histogram_proto(timestamp: i64, h: &HistogramValue) -> proto::Histogram {
    use proto::histogram::{Count, ResetHint, ZeroCount};
    let spans = |s: &[Span]| s.iter().map(|s| proto::BucketSpan { offset: s.offset, length: s.length }).collect();
    let hint = |h: CounterResetHint| match h {
        CounterResetHint::Unknown => ResetHint::Unknown,
        CounterResetHint::CounterReset => ResetHint::Yes,
        CounterResetHint::NotCounterReset => ResetHint::No,
        CounterResetHint::Gauge => ResetHint::Gauge,
    } as i32;
    match h {
        HistogramValue::Int(h) => proto::Histogram {
            count: Some(Count::CountInt(h.count)),
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: Some(ZeroCount::ZeroCountInt(h.zero_count)),
            negative_spans: spans(&h.negative_spans),
            negative_deltas: h.negative_buckets.clone(),
            positive_spans: spans(&h.positive_spans),
            positive_deltas: h.positive_buckets.clone(),
            reset_hint: hint(h.counter_reset_hint),
            timestamp,
            custom_values: h.custom_values.clone(),
            ..Default::default()
        },
        HistogramValue::Float(h) => proto::Histogram {
            count: Some(Count::CountFloat(h.count)),
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: Some(ZeroCount::ZeroCountFloat(h.zero_count)),
            negative_spans: spans(&h.negative_spans),
            negative_counts: h.negative_buckets.clone(),
            positive_spans: spans(&h.positive_spans),
            positive_counts: h.positive_buckets.clone(),
            reset_hint: hint(h.counter_reset_hint),
            timestamp,
            custom_values: h.custom_values.clone(),
            ..Default::default()
        },
    }
}

/// A `STREAMED_XOR_CHUNKS` answer: frames are produced on the blocking pool and sent as they come.
/// The status is decided by the first frame: an error before it is answered as an error.
async fn streamed(
    st: RemoteReadState,
    queries: Vec<PreparedQuery>,
    external: Vec<(String, String)>,
    held: Held,
) -> Result<Response, Error> {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, Error>>(STREAM_QUEUE_FRAMES);
    let metrics = Arc::clone(&st.metrics);
    let max_bytes = st.opts.max_bytes_in_frame;
    tokio::task::spawn_blocking(move || {
        let _held = held;
        match stream_frames(&st.db, &queries, &external, max_bytes, &tx) {
            Ok(()) => {}
            Err(Error::Cancelled) => {
                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("remote-read client went away; reading stopped");
            }
            Err(e) => {
                tracing::error!(cause = %e, "streamed remote read failed");
                // The receiver decides: before the first frame it becomes the answer, after it the stream ends.
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    let first = match rx.recv().await {
        None => None,
        Some(Ok(frame)) => Some(frame),
        Some(Err(e)) => return Err(e),
    };
    let mut resp = Response::new(Body::new(FrameBody { first, rx }));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(STREAMED_CONTENT_TYPE));
    Ok(resp)
}

/// Writes the frames of every query to `tx`, one series per frame, cut at `max_bytes_in_frame`.
/// Blocking; returns [`Error::Cancelled`] as soon as the receiver is gone.
fn stream_frames(
    db: &Arc<tsdb::Db>,
    queries: &[PreparedQuery],
    external: &[(String, String)],
    max_bytes_in_frame: usize,
    tx: &mpsc::Sender<Result<Bytes, Error>>,
) -> Result<(), Error> {
    for (index, q) in queries.iter().enumerate() {
        let querier = db.querier(q.select.0, q.select.1);
        for s in querier.select_lazy(&q.matchers)? {
            if tx.is_closed() {
                return Err(Error::Cancelled);
            }
            let Some(snapshot) = s.snapshot(q.read.0, q.read.1)? else { continue };
            let chunks = chunks::xor_chunks(&snapshot, q.read.0, q.read.1)?;
            if chunks.is_empty() {
                continue;
            }
            let labels = series_labels(s.labels(), external);
            for frame in frames(index as i64, &labels, chunks, max_bytes_in_frame) {
                tx.blocking_send(Ok(frame)).map_err(|_| Error::Cancelled)?;
            }
        }
    }
    Ok(())
}

/// The framed `ChunkedReadResponse`s of one series: chunks are added to a frame until their encoded
/// size and the labels' reach `max_bytes_in_frame` (so a frame exceeds it by at most one chunk, and
/// holds at least one), as Prometheus cuts them.
pub fn frames(
    query_index: i64,
    labels: &[proto::Label],
    chunks: Vec<proto::Chunk>,
    max_bytes_in_frame: usize,
) -> Vec<Bytes> {
    let budget = max_bytes_in_frame as i64 - labels.iter().map(|l| l.encoded_len() as i64).sum::<i64>();
    let mut out = Vec::new();
    let mut left = budget;
    let mut pending = Vec::new();
    let mut it = chunks.into_iter().peekable();
    while let Some(c) = it.next() {
        left -= c.encoded_len() as i64;
        pending.push(c);
        if left > 0 && it.peek().is_some() {
            continue;
        }
        let msg = proto::ChunkedReadResponse {
            chunked_series: vec![proto::ChunkedSeries {
                labels: labels.to_vec(),
                chunks: std::mem::take(&mut pending),
            }],
            query_index,
        }
        .encode_to_vec();
        let mut frame = Vec::with_capacity(msg.len() + framing::MAX_UVARINT_BYTES + 4);
        framing::write_frame(&mut frame, &msg);
        out.push(Bytes::from(frame));
        left = budget;
    }
    out
}

/// The body of a streamed answer: the first frame, then whatever the reading task sends. Dropped
/// (the client went away), it closes the channel, which stops the reading task.
struct FrameBody {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Result<Bytes, Error>>,
}

impl http_body::Body for FrameBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(first))));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(http_body::Frame::data(frame)))),
            // An error after the first frame cuts the stream short: the client sees an incomplete
            // answer, as from Prometheus.
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(n: &str, v: &str) -> proto::Label {
        proto::Label { name: n.into(), value: v.into() }
    }

    #[test]
    fn external_labels_are_added_unless_the_series_has_the_name() {
        let l = tsdb::Labels::from_pairs(&[("__name__", "up"), ("job", "a"), ("zone", "z1")]).unwrap();
        let ext = vec![("cluster".to_owned(), "eu".to_owned()), ("zone".to_owned(), "ext".to_owned())];
        assert_eq!(
            series_labels(&l, &ext),
            [label("__name__", "up"), label("cluster", "eu"), label("job", "a"), label("zone", "z1")]
        );
    }

    #[test]
    fn equality_on_an_external_label_matches_its_absence() {
        use proto::label_matcher::Type;
        let ext: BTreeMap<String, String> = [("cluster".to_owned(), "eu".to_owned())].into();
        let m = |t: Type, n: &str, v: &str| proto::LabelMatcher { r#type: t as i32, name: n.into(), value: v.into() };
        let q = proto::Query {
            start_timestamp_ms: 1,
            end_timestamp_ms: 2,
            matchers: vec![m(Type::Eq, "cluster", "eu"), m(Type::Eq, "job", "a"), m(Type::Re, "cluster", "e.*")],
            hints: None,
        };
        let p = PreparedQuery::new(0, &q, &ext).unwrap();
        let got: Vec<(String, String)> = p.matchers.iter().map(|m| (m.name.clone(), m.value.clone())).collect();
        let want = [("cluster", ""), ("job", "a"), ("cluster", "e.*")].map(|(n, v)| (n.to_owned(), v.to_owned()));
        assert_eq!(got, want);
        assert_eq!((p.select, p.read), ((1, 2), (1, 2)));
        let bad = proto::Query { matchers: vec![proto::LabelMatcher { r#type: 9, ..Default::default() }], ..q.clone() };
        assert!(matches!(PreparedQuery::new(3, &bad, &ext), Err(Error::MatcherType { query: 3, kind: 9 })));
        let hinted =
            proto::Query { hints: Some(proto::ReadHints { start_ms: 5, end_ms: 6, ..Default::default() }), ..q };
        assert_eq!(PreparedQuery::new(0, &hinted, &ext).unwrap().read, (5, 6));
    }

    #[test]
    fn negotiation_takes_the_first_served_type() {
        assert!(matches!(negotiate(&[]), Ok(ResponseType::Samples)));
        assert!(matches!(negotiate(&[1, 0]), Ok(ResponseType::StreamedXorChunks)));
        assert!(matches!(negotiate(&[7, 0]), Ok(ResponseType::Samples)));
        let e = negotiate(&[7, 8]).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.to_string().starts_with("server does not support any of the requested response types: [7 8]"), "{e}");
    }

    #[test]
    fn frames_are_cut_by_size_and_hold_at_least_one_chunk() {
        let chunk = |i: i64| proto::Chunk { min_time_ms: i, max_time_ms: i, r#type: 1, data: vec![0; 100] };
        let labels = [label("__name__", "up")];
        let decode = |f: &Bytes| {
            let (msg, n) = framing::read_frame(f, 1 << 20).unwrap().unwrap();
            assert_eq!(n, f.len());
            proto::ChunkedReadResponse::decode(msg).unwrap()
        };
        // One large budget: one frame with everything.
        let fs = frames(2, &labels, (0..10).map(chunk).collect(), 1 << 20);
        assert_eq!(fs.len(), 1);
        let r = decode(&fs[0]);
        assert_eq!(r.query_index, 2);
        assert_eq!(r.chunked_series[0].chunks.len(), 10);
        assert_eq!(r.chunked_series[0].labels, labels);
        // A budget of a bit over two chunks: three chunks per frame (cut once the budget is spent).
        let one = chunk(0).encoded_len() + labels[0].encoded_len();
        let fs = frames(0, &labels, (0..10).map(chunk).collect(), one * 2 + 1);
        let counts: Vec<usize> = fs.iter().map(|f| decode(f).chunked_series[0].chunks.len()).collect();
        assert_eq!(counts, [3, 3, 3, 1]);
        // A budget below one chunk: one chunk per frame, never an empty frame.
        let fs = frames(0, &labels, (0..3).map(chunk).collect(), 1);
        assert_eq!(fs.len(), 3);
        let times: Vec<i64> =
            fs.iter().flat_map(|f| decode(f).chunked_series[0].chunks.clone()).map(|c| c.min_time_ms).collect();
        assert_eq!(times, [0, 1, 2]);
    }
}
