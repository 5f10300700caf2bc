//! The WAL syncer: one thread that waits for WAL fsyncs on behalf of write requests, so that a
//! request is answered only once its samples are durable without a thread waiting per request.
//!
//! An ingest thread commits a request's batch without waiting for the fsync (it gets a
//! [`tsdb::SyncTicket`]) and hands the ticket to the syncer together with what to do once the batch
//! is durable (send the answer to the waiting handler). The syncer takes every ticket queued so far,
//! waits for the fsync of the first — one group-commit fsync covers everything written before it, so
//! the others are then already durable — and runs each continuation with its ticket's result.
//! While other requests are still being appended (a cheap in-flight count), it holds the fsync back
//! for at most [`GROUP_WAIT`] so that their batches share it: at 500-sample requests this halves
//! the fsyncs (and the kernel time they cost), at the same throughput for 2000-sample requests.
//!
//! Why a thread of its own: waiting on tokio's blocking pool would wake a blocking thread per
//! request and the handler's worker twice; with Prometheus agents' 500-sample requests those thread
//! switches are a large part of the server's CPU (docs/BENCHMARKS.md). The ingest threads themselves never
//! wait for the disk.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How long the syncer holds an fsync back for requests that are being appended right now, so that
/// one fsync covers them too.
const GROUP_WAIT: Duration = Duration::from_micros(800);

/// What runs once a ticket's batch is durable (`Ok`) or can no longer become durable (`Err`).
pub(crate) type Continuation = Box<dyn FnOnce(tsdb::Result<()>) + Send + 'static>;

type Waiting = (tsdb::SyncTicket, Continuation);

/// Handle to the syncer thread; it exits once every handle is dropped and its queue is drained.
#[derive(Clone)]
pub(crate) struct Syncer {
    head: Arc<tsdb::Head>,
    queue: mpsc::Sender<Waiting>,
    in_flight: Arc<AtomicUsize>,
}

/// A request between [`Syncer::begin`] and the end of its commit (its batch written, its ticket not
/// yet queued): the syncer may hold an fsync back for it.
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl Syncer {
    /// Starts the syncer thread for `head`. Fails only if the OS refuses a thread.
    pub(crate) fn start(head: Arc<tsdb::Head>) -> std::io::Result<Syncer> {
        let (tx, rx) = mpsc::channel::<Waiting>();
        // The thread must not keep the head alive: the head's drop at shutdown removes its chunk
        // files, and the thread may outlive the server's last handle by a moment.
        let thread_head = Arc::downgrade(&head);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let thread_in_flight = Arc::clone(&in_flight);
        std::thread::Builder::new()
            .name("strata-wal-sync".into())
            .spawn(move || run(&thread_head, &rx, &thread_in_flight))?;
        Ok(Syncer { head, queue: tx, in_flight })
    }

    /// Marks a request as being appended until the guard drops (after its commit).
    pub(crate) fn begin(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(&self.in_flight))
    }

    /// Runs `then` once the batch of `ticket` is durable: at once on this thread if it already is,
    /// else on the syncer thread after the fsync. `then` always runs exactly once (with an error if
    /// the fsync fails); if the syncer thread is gone, this thread waits for the fsync itself.
    pub(crate) fn after_sync(&self, ticket: tsdb::SyncTicket, then: Continuation) {
        if self.head.is_synced(ticket) {
            then(Ok(()));
            return;
        }
        if let Err(mpsc::SendError((ticket, then))) = self.queue.send((ticket, then)) {
            then(self.head.wait_synced(ticket));
        }
    }
}

fn run(head: &Weak<tsdb::Head>, rx: &mpsc::Receiver<Waiting>, in_flight: &AtomicUsize) {
    let mut batch: Vec<Waiting> = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        batch.extend(rx.try_iter());
        // Requests still being appended will want an fsync very soon: wait a little for their
        // tickets (a request drops its guard once its batch is written, just before it queues its
        // ticket) and share one.
        let deadline = Instant::now() + GROUP_WAIT;
        while in_flight.load(Ordering::Acquire) > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { break };
            match rx.recv_timeout(left) {
                Ok(w) => {
                    batch.push(w);
                    batch.extend(rx.try_iter());
                }
                Err(_) => break,
            }
        }
        let live = head.upgrade();
        for (ticket, then) in batch.drain(..) {
            let Some(head) = &live else {
                then(Err(tsdb::Error::Closed));
                continue;
            };
            // The first wait fsyncs everything written so far, which includes every queued
            // ticket's batch: the later waits return at once. A panic costs only that request its
            // answer (its continuation is dropped: the handler answers 500); the thread stays.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| then(head.wait_synced(ticket))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    #[test]
    fn every_continuation_runs_once_after_its_batch_is_durable() {
        // Default options: a WAL that fsyncs before a batch is acknowledged.
        let (_dir, head) = tsdb::testing::temp_head(tsdb::head::Options::default());
        let syncer = Syncer::start(Arc::clone(&head)).unwrap();
        let (done_tx, done_rx) = channel();
        for i in 0..50i64 {
            let mut app = head.appender();
            app.append_pairs(&[("__name__", "m"), ("i", &i.to_string())], 1000, i as f64).unwrap();
            let (_, ticket) = app.commit_unsynced().unwrap();
            let ticket = ticket.expect("the default sync policy fsyncs before acknowledging");
            let (head, done_tx) = (Arc::clone(&head), done_tx.clone());
            syncer.after_sync(
                ticket,
                Box::new(move |r| {
                    // Durable by the time the continuation runs.
                    done_tx.send((i, r.is_ok() && head.is_synced(ticket))).unwrap();
                }),
            );
        }
        let mut seen: Vec<(i64, bool)> =
            (0..50).map(|_| done_rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..50).map(|i| (i, true)).collect::<Vec<_>>());
        assert!(done_rx.recv_timeout(Duration::from_millis(100)).is_err(), "a continuation ran twice");
    }

    #[test]
    fn the_thread_does_not_keep_the_head_alive() {
        // The head's drop removes its chunk files at shutdown; a reference held by the idle
        // syncer thread would leave them on disk.
        let (_dir, head) = tsdb::testing::temp_head(tsdb::head::Options::default());
        let syncer = Syncer::start(Arc::clone(&head)).unwrap();
        let weak = Arc::downgrade(&head);
        drop(syncer);
        drop(head);
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn a_request_that_never_commits_holds_no_one_back_for_long() {
        let (_dir, head) = tsdb::testing::temp_head(tsdb::head::Options::default());
        let syncer = Syncer::start(Arc::clone(&head)).unwrap();
        // A request that started appending and never finishes (its guard is never dropped).
        let stuck = syncer.begin();
        let mut app = head.appender();
        app.append_pairs(&[("__name__", "m")], 1000, 1.0).unwrap();
        let (_, ticket) = app.commit_unsynced().unwrap();
        let (tx, rx) = channel();
        syncer.after_sync(ticket.unwrap(), Box::new(move |r| tx.send(r.is_ok()).unwrap()));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
        drop(stuck);
    }
}
