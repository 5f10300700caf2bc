//! One HTTP connection: hyper's HTTP/1.1 state machine plus the timeouts hyper does not keep the way
//! a server facing arbitrary clients needs them.
//!
//! Hyper's own header timeout starts as soon as it waits for a request, so it would also close every
//! keep-alive connection after that short time. Here instead [`Activity`] records when bytes were
//! last read or written and when the bytes of the next request's headers began, and the connection
//! task closes the connection when the headers are not complete [`Options::read_header_timeout`]
//! after their first byte (for a connection's first request: after it was accepted, as Go's
//! `ReadHeaderTimeout` does), or when no request has begun for [`Options::idle_timeout`] after the
//! previous one. With TLS in force the handshake runs first, under the same deadline as the first
//! request's headers. Bodies are read here too, before the router sees the request, with the stall
//! and overall deadlines of [`Options`]; a late body is answered 408 and the connection closed.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tower::ServiceExt;

use super::auth::Verdict;
use super::security::Security;
use super::{CloseReason, OpenConnection, Options};

/// "Not set" for the millisecond offsets in [`Activity`].
const UNSET: u64 = u64::MAX;
/// Initial body buffer at most this large, whatever `Content-Length` says: memory follows the bytes
/// that actually arrive.
const BODY_RESERVE_MAX_BYTES: usize = 1 << 20;

/// What the connection task needs to know about the traffic on its socket. Times are milliseconds
/// since `born`.
struct Activity {
    born: Instant,
    last_io_ms: AtomicU64,
    /// When the first byte of the next request's headers was read (for the first request: when the
    /// connection was accepted); [`UNSET`] while a request is in flight and between requests.
    head_started_ms: AtomicU64,
    /// Requests whose answer is not yet completely written.
    in_flight: AtomicUsize,
    /// Set by a request that closes the connection for a reason of its own ([`CloseReason`] as u8).
    reason: AtomicU8,
    /// Wakes the connection task when its next deadline may have moved earlier.
    changed: Notify,
}

impl Activity {
    /// A connection accepted at `born`.
    fn new(born: Instant) -> Activity {
        Activity {
            born,
            last_io_ms: AtomicU64::new(0),
            // A new connection is waiting for its first request's headers: a client that connects
            // and sends nothing gets the header timeout, not the (longer) idle timeout.
            head_started_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            reason: AtomicU8::new(CloseReason::Finished as u8),
            changed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(UNSET - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.born + Duration::from_millis(ms)
    }

    fn on_read(&self) {
        let now = self.now_ms();
        self.last_io_ms.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started_ms.compare_exchange(UNSET, now, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            self.changed.notify_one();
        }
    }

    fn on_write(&self) {
        self.last_io_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(UNSET, Ordering::Release);
        InFlight(Arc::clone(self))
    }

    fn close_for(&self, reason: CloseReason) {
        self.reason.store(reason as u8, Ordering::Relaxed);
    }

    /// True between requests (after at least one): the connection can be closed without cutting a
    /// request or a client that has just connected.
    fn idle_between_requests(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.head_started_ms.load(Ordering::Acquire) == UNSET
    }

    /// The reason to close the connection now, if a timeout has passed.
    fn expired(&self, opts: &Options) -> Option<CloseReason> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let now = self.now_ms();
        let head = self.head_started_ms.load(Ordering::Acquire);
        if head != UNSET {
            (now.saturating_sub(head) >= millis(opts.read_header_timeout)).then_some(CloseReason::HeaderTimeout)
        } else {
            let last = self.last_io_ms.load(Ordering::Relaxed);
            (now.saturating_sub(last) >= millis(opts.idle_timeout)).then_some(CloseReason::IdleTimeout)
        }
    }

    /// When [`Activity::expired`] should next be asked, if nothing changes meanwhile.
    fn next_check(&self, opts: &Options) -> Instant {
        let head = self.head_started_ms.load(Ordering::Acquire);
        let ms = if self.in_flight.load(Ordering::Acquire) > 0 {
            // Woken by `changed` when the request ends; this is only a backstop.
            self.now_ms().saturating_add(millis(opts.idle_timeout))
        } else if head != UNSET {
            head.saturating_add(millis(opts.read_header_timeout))
        } else {
            self.last_io_ms.load(Ordering::Relaxed).saturating_add(millis(opts.idle_timeout))
        };
        self.at(ms)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(UNSET - 1)
}

/// A request in flight, from its headers until its answer is written (or dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_io_ms.store(self.0.now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// The connection's byte stream (the socket, or the TLS session over it), recording reads and
/// writes in [`Activity`].
struct ActivityIo<S> {
    stream: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for ActivityIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ActivityIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What the accept loop tells every connection.
pub(super) struct Signals {
    /// Becomes true when shutdown begins.
    pub stopping: watch::Receiver<bool>,
    /// Changes when a new connection waits for a slot.
    pub reclaiming: watch::Receiver<u64>,
    /// Set while a connection waits for a slot; the idle connection that clears it closes.
    pub reclaim_ticket: Arc<AtomicBool>,
}

/// Serves one connection until the client closes it, a timeout closes it, or shutdown does. Holds
/// `_slot` (its place under the connection limit) until then. With TLS in force the handshake
/// comes first, and must end, like the first request's headers, within the header timeout of the
/// accept: a client that connects and stalls the handshake holds its slot no longer than one that
/// stalls its headers.
pub(super) async fn serve(
    stream: TcpStream,
    app: Router,
    opts: Arc<super::Options>,
    mut open: OpenConnection,
    signals: Signals,
    security: Arc<Security>,
    _slot: OwnedSemaphorePermit,
) {
    let accepted_at = Instant::now();
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = security.current().tls.clone() else {
        return serve_http(stream, accepted_at, app, opts, open, signals, security).await;
    };
    let mut stopping = signals.stopping.clone();
    let deadline = accepted_at + opts.read_header_timeout;
    let handshake = tokio::select! {
        done = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => done,
        _ = stopping.wait_for(|stop| *stop) => {
            open.reason = CloseReason::Shutdown;
            return;
        }
    };
    match handshake {
        Ok(Ok(tls)) => serve_http(tls, accepted_at, app, opts, open, signals, security).await,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            open.reason = CloseReason::TlsHandshake;
        }
        Err(_) => open.reason = CloseReason::HeaderTimeout,
    }
}

/// Serves HTTP/1.1 on `stream` (accepted at `accepted_at`) until the client closes it, a timeout
/// closes it, or shutdown does.
async fn serve_http<S>(
    stream: S,
    accepted_at: Instant,
    app: Router,
    opts: Arc<super::Options>,
    mut open: OpenConnection,
    signals: Signals,
    security: Arc<Security>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Signals { mut stopping, mut reclaiming, reclaim_ticket } = signals;
    // Only calls to make room after this connection took its slot concern it.
    reclaiming.mark_unchanged();
    let mut reclaim_open = true;
    let activity = Arc::new(Activity::new(accepted_at));
    let io = TokioIo::new(ActivityIo { stream, activity: Arc::clone(&activity) });
    let service = {
        let activity = Arc::clone(&activity);
        let opts = Arc::clone(&opts);
        hyper::service::service_fn(move |req| {
            handle(req, app.clone(), Arc::clone(&opts), Arc::clone(&activity), Arc::clone(&security))
        })
    };
    let conn = hyper::server::conn::http1::Builder::new().header_read_timeout(None).serve_connection(io, service);
    tokio::pin!(conn);
    let mut shutting_down = false;
    open.reason = loop {
        tokio::select! {
            served = conn.as_mut() => {
                let own = CloseReason::from_u8(activity.reason.load(Ordering::Relaxed));
                break match served {
                    _ if own != CloseReason::Finished => own,
                    _ if shutting_down => CloseReason::Shutdown,
                    Ok(()) => CloseReason::Finished,
                    Err(e) => {
                        tracing::debug!(error = %e, "connection ended with an error");
                        CloseReason::Error
                    }
                };
            }
            _ = stopping.changed(), if !shutting_down => {
                shutting_down = true;
                // Closes the connection now if no request is in flight, else after its answer.
                conn.as_mut().graceful_shutdown();
            }
            changed = reclaiming.changed(), if reclaim_open => {
                if changed.is_err() {
                    reclaim_open = false;
                } else if activity.idle_between_requests()
                    && reclaim_ticket.compare_exchange(true, false, Ordering::AcqRel, Ordering::Relaxed).is_ok()
                {
                    break CloseReason::Reclaimed;
                }
            }
            () = tokio::time::sleep_until(activity.next_check(&opts)) => {
                if let Some(reason) = activity.expired(&opts) {
                    break reason;
                }
            }
            () = activity.changed.notified() => {}
        }
    };
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("request body stalled: no bytes received for {0:?}")]
    Stalled(Duration),
    #[error("request body not complete within {0:?} of its headers")]
    Late(Duration),
    #[error("cannot read request body: {0}")]
    Read(#[source] hyper::Error),
}

impl BodyError {
    fn close_reason(&self) -> CloseReason {
        match self {
            BodyError::Stalled(_) => CloseReason::BodyTimeout,
            BodyError::Late(_) => CloseReason::RequestTimeout,
            BodyError::Read(_) => CloseReason::Error,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            BodyError::Stalled(_) | BodyError::Late(_) => StatusCode::REQUEST_TIMEOUT,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// A request body read up to the limit; `cut` if more was sent than that.
struct ReadBody {
    bytes: Bytes,
    cut: bool,
}

/// Reads the body: each piece must come within the stall timeout, the whole within the request read
/// timeout. Stops after `max_body_bytes` + 1 bytes.
async fn read_body(mut body: Incoming, opts: &Options) -> Result<ReadBody, BodyError> {
    let deadline = Instant::now() + opts.request_read_timeout;
    let limit = opts.max_body_bytes;
    let hint = usize::try_from(hyper::body::Body::size_hint(&body).lower()).unwrap_or(usize::MAX);
    let mut first: Option<Bytes> = None;
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0usize;
    loop {
        let stall_at = Instant::now() + opts.body_stall_timeout;
        let frame = match tokio::time::timeout_at(stall_at.min(deadline), body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => return Err(BodyError::Read(e)),
            Ok(None) => break,
            Err(_) if stall_at < deadline => return Err(BodyError::Stalled(opts.body_stall_timeout)),
            Err(_) => return Err(BodyError::Late(opts.request_read_timeout)),
        };
        let Ok(data) = frame.into_data() else { continue };
        total = total.saturating_add(data.len());
        // The first piece is kept as is; a body in several pieces is gathered into one buffer.
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            None => buf.extend_from_slice(&data),
            Some(head) => {
                buf.reserve(hint.min(BODY_RESERVE_MAX_BYTES).max(head.len() + data.len()));
                buf.extend_from_slice(&head);
                buf.extend_from_slice(&data);
            }
        }
        if total > limit {
            return Ok(ReadBody { bytes: first.unwrap_or_else(|| Bytes::from(buf)), cut: true });
        }
    }
    Ok(ReadBody { bytes: first.unwrap_or_else(|| Bytes::from(buf)), cut: false })
}

/// One request: check its credentials when users are configured (before its body is read), read its
/// body, then hand it to the router; the web config's headers are set on the answer. The answer's
/// body carries the [`InFlight`] marker, so the request counts as in flight until its answer is
/// written.
async fn handle(
    req: Request<Incoming>,
    app: Router,
    opts: Arc<Options>,
    activity: Arc<Activity>,
    security: Arc<Security>,
) -> Result<Response<Body>, Infallible> {
    let in_flight = activity.request_started();
    let policy = security.current();
    let (parts, body) = req.into_parts();
    let verdict = if policy.users.is_empty() {
        Verdict::Allowed
    } else {
        security.auth.check(&policy.users, parts.headers.get(header::AUTHORIZATION)).await
    };
    let refused = match verdict {
        Verdict::Allowed => None,
        Verdict::Denied => {
            let mut resp = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            Some(resp)
        }
        Verdict::Busy => {
            let mut resp =
                (StatusCode::SERVICE_UNAVAILABLE, "too many password checks in progress; retry\n").into_response();
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Some(resp)
        }
    };
    let mut resp = match refused {
        Some(mut resp) => {
            if !hyper::body::Body::is_end_stream(&body) {
                // The body is never read: the connection cannot carry another request.
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
        None => answer(parts, body, app, &opts, &activity).await,
    };
    for (name, value) in &policy.headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    let inner = std::mem::take(resp.body_mut());
    *resp.body_mut() = Body::new(AnswerBody { inner, _in_flight: in_flight });
    Ok(resp)
}

/// Reads the body and asks the router for the answer.
async fn answer(
    parts: axum::http::request::Parts,
    body: Incoming,
    app: Router,
    opts: &Options,
    activity: &Activity,
) -> Response<Body> {
    match read_body(body, opts).await {
        Ok(read) => {
            let cut = read.cut;
            let resp = match app.oneshot(Request::from_parts(parts, Body::from(read.bytes))).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            let mut resp = resp;
            if cut {
                // The rest of the body is never read: the connection cannot carry another request.
                activity.close_for(CloseReason::BodyTooLarge);
                resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
        Err(e) => {
            tracing::info!(
                method = %parts.method,
                path = %tsdb::labels::clip(parts.uri.path()),
                cause = %e,
                "request body not read"
            );
            activity.close_for(e.close_reason());
            let mut resp = (e.status(), format!("{e}\n")).into_response();
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            resp
        }
    }
}

/// An answer's body, keeping its request counted as in flight until it is written or dropped.
struct AnswerBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for AnswerBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
