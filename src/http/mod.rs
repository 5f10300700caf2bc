//! The HTTP/1.1 server: Strata's own accept loop over hyper, built so that no client can hold what
//! the others need.
//!
//! - **Connections.** At most [`Options::max_connections`] are served at once (Prometheus's
//!   `--web.max-connections`). When all slots are taken, the accept loop holds the one connection it
//!   has just accepted until a slot frees and accepts no more meanwhile: connections beyond the limit
//!   wait in the kernel's listen backlog, never refused by us. While a connection waits like this,
//!   one keep-alive connection idle between requests is closed to make room for it (as nginx reuses
//!   its idle keep-alive connections): only connections with work in progress, or just opened, hold
//!   their slot while others wait.
//! - **Timeouts**, per connection ([`connection`]): request headers must arrive within
//!   [`Options::read_header_timeout`] of their first byte (of the connection's start, for its first
//!   request); a request body that sends nothing for
//!   [`Options::body_stall_timeout`], or is not complete [`Options::request_read_timeout`] after its
//!   headers, is answered 408 and its connection closed; a keep-alive connection with no request for
//!   [`Options::idle_timeout`] is closed.
//! - **Bodies before permits.** Every request body is read completely (up to
//!   [`Options::max_body_bytes`]) before the request reaches the router, so the remote-write and
//!   query concurrency limits inside it are only ever held by requests that are ready to run: a slow
//!   sender holds its own connection and nothing else.
//! - **Shutdown.** When the shutdown future completes the listener is closed, idle connections are
//!   closed, requests in flight get [`Options::shutdown_grace_period`] to finish, and whatever is still
//!   open then is dropped (its socket closed). [`serve`] always returns.
//!
//! - **Web config** ([`security`]): with TLS in force, each connection's handshake ([`tls`]) runs
//!   in its own task, holding its slot, and must finish within the header timeout of the accept;
//!   with users configured, every request's credentials are checked ([`auth`]) before its body is
//!   read. The configured response headers are set on every answer.
//!
//! [`ConnectionStats`] counts connections for `/metrics`.

pub mod auth;
mod connection;
pub mod gzip;
pub mod security;
pub mod tls;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// How long the accept loop pauses after `accept` fails (e.g. out of file descriptors), so that it
/// does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// While a connection waits for a slot, how often connections idle between requests are asked again
/// to make room.
const RECLAIM_RETRY: Duration = Duration::from_millis(500);

/// Limits and timeouts of the HTTP server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Time from the first byte of a request's headers (a connection's first request: from its accept)
    /// to their end.
    pub read_header_timeout: Duration,
    /// Longest pause between two pieces of a request body.
    pub body_stall_timeout: Duration,
    /// Time from the end of a request's headers to the end of its body.
    pub request_read_timeout: Duration,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// How long requests in flight may still run after shutdown begins.
    pub shutdown_grace_period: Duration,
    /// Body bytes read before a request is handed on; a longer body is cut there (and its connection
    /// closed after the answer), which the routes' own body limits (all at most this) answer with 413.
    pub max_body_bytes: usize,
}

/// Why a connection was closed (the `reason` label of `strata_http_connections_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    /// The client closed it, or asked for it to be closed after its request.
    Finished = 0,
    /// Request headers incomplete after the header timeout.
    HeaderTimeout = 1,
    /// A request body stalled longer than the body stall timeout.
    BodyTimeout = 2,
    /// A request body not complete within the request read timeout.
    RequestTimeout = 3,
    /// No request on a keep-alive connection within the idle timeout.
    IdleTimeout = 4,
    /// A request body longer than the largest accepted.
    BodyTooLarge = 5,
    /// Closed by shutdown (idle, finished its request, or cut at the end of the grace period).
    Shutdown = 6,
    /// A protocol or I/O error (malformed request, connection reset).
    Error = 7,
    /// Idle between requests while a new connection waited for a slot.
    Reclaimed = 8,
    /// The TLS handshake failed (plain HTTP to the TLS port, no acceptable client certificate...).
    TlsHandshake = 9,
}

impl CloseReason {
    const COUNT: usize = 10;
    const ALL: [CloseReason; CloseReason::COUNT] = [
        CloseReason::Finished,
        CloseReason::HeaderTimeout,
        CloseReason::BodyTimeout,
        CloseReason::RequestTimeout,
        CloseReason::IdleTimeout,
        CloseReason::BodyTooLarge,
        CloseReason::Shutdown,
        CloseReason::Error,
        CloseReason::Reclaimed,
        CloseReason::TlsHandshake,
    ];

    fn from_u8(v: u8) -> CloseReason {
        CloseReason::ALL.get(usize::from(v)).copied().unwrap_or(CloseReason::Error)
    }

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Finished => "finished",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::BodyTimeout => "body_timeout",
            CloseReason::RequestTimeout => "request_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::BodyTooLarge => "body_too_large",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Error => "error",
            CloseReason::Reclaimed => "reclaimed",
            CloseReason::TlsHandshake => "tls_handshake",
        }
    }
}

/// Connection counters, read by `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    accepted: AtomicU64,
    open: AtomicU64,
    accept_errors: AtomicU64,
    closed: [AtomicU64; CloseReason::COUNT],
}

impl ConnectionStats {
    /// Connections accepted since start.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Failed `accept` calls since start.
    pub fn accept_errors(&self) -> u64 {
        self.accept_errors.load(Ordering::Relaxed)
    }

    /// Connections closed since start, by reason.
    pub fn closed(&self) -> impl Iterator<Item = (CloseReason, u64)> + '_ {
        CloseReason::ALL.into_iter().zip(self.closed.iter().map(|c| c.load(Ordering::Relaxed)))
    }

    fn opened(self: &Arc<Self>) -> OpenConnection {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection { stats: Arc::clone(self), reason: CloseReason::Shutdown }
    }
}

/// Counts a connection as open until dropped, then as closed for `reason`. A connection task
/// dropped at the end of the grace period keeps the initial reason, [`CloseReason::Shutdown`].
struct OpenConnection {
    stats: Arc<ConnectionStats>,
    reason: CloseReason,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(c) = self.stats.closed.get(self.reason as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes and the open connections are finished or
/// dropped (see the module documentation).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: Options,
    security: Arc<security::Security>,
    stats: Arc<ConnectionStats>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let (stop, stopping) = watch::channel(false);
    // Bumped whenever a connection has to wait for a slot; an idle connection that takes the ticket
    // then closes (one, not all of them).
    let (reclaim, reclaiming) = watch::channel(0u64);
    let reclaim_ticket = Arc::new(AtomicBool::new(false));
    let grace = opts.shutdown_grace_period;
    let opts = Arc::new(opts);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    'accept: loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break 'accept,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "accepting a connection failed; retrying");
                tokio::select! {
                    biased;
                    () = &mut shutdown => break 'accept,
                    () = tokio::time::sleep(ACCEPT_ERROR_BACKOFF) => continue,
                }
            }
        };
        // A slot for it; while none is free this connection waits (the next ones wait in the kernel's
        // backlog, not accepted), and connections idle between requests are asked to close.
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                reclaim_ticket.store(true, Ordering::Release);
                reclaim.send_modify(|n| *n = n.wrapping_add(1));
                let slot = loop {
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break 'accept,
                        Some(_) = connections.join_next(), if !connections.is_empty() => {}
                        slot = Arc::clone(&slots).acquire_owned() => match slot {
                            Ok(s) => break s,
                            Err(_) => break 'accept,
                        },
                        // Connections that were busy at the last call may be idle now.
                        () = tokio::time::sleep(RECLAIM_RETRY) => reclaim.send_modify(|n| *n = n.wrapping_add(1)),
                    }
                };
                reclaim_ticket.store(false, Ordering::Release);
                slot
            }
        };
        let open = stats.opened();
        let signals = connection::Signals {
            stopping: stopping.clone(),
            reclaiming: reclaiming.clone(),
            reclaim_ticket: Arc::clone(&reclaim_ticket),
        };
        connections.spawn(connection::serve(
            stream,
            app.clone(),
            Arc::clone(&opts),
            open,
            signals,
            Arc::clone(&security),
            slot,
        ));
    }
    drop(listener);
    tracing::info!(
        connections = connections.len(),
        grace_period = ?grace,
        "stopped accepting connections; finishing requests in flight"
    );
    // Receivers see the change even if they are not waiting yet.
    let _ = stop.send(true);
    let drained = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            grace_period = ?grace,
            "closing connections still open at the end of the shutdown grace period"
        );
        connections.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_index_their_counters() {
        for (i, r) in CloseReason::ALL.into_iter().enumerate() {
            assert_eq!(r as usize, i);
            assert_eq!(CloseReason::from_u8(r as u8), r);
        }
        assert_eq!(CloseReason::from_u8(CloseReason::COUNT as u8), CloseReason::Error);
        let stats = Arc::new(ConnectionStats::default());
        let mut open = stats.opened();
        assert_eq!(stats.open(), 1);
        open.reason = CloseReason::IdleTimeout;
        drop(open);
        // Dropped without a reason of its own: cut by shutdown.
        drop(stats.opened());
        assert_eq!((stats.accepted(), stats.open()), (2, 0));
        let closed: Vec<_> = stats.closed().filter(|&(_, n)| n > 0).collect();
        assert_eq!(closed, [(CloseReason::IdleTimeout, 1), (CloseReason::Shutdown, 1)]);
    }
}
