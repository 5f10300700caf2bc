//! [`SyncWaiter`]: one thread that waits for WAL fsyncs on behalf of many writers, so that a writer
//! can hand over "answer once my batch is durable" and go on to the next batch instead of blocking.
//!
//! A writer logs its batch with [`Wal::log_unsynced`] and passes the [`SyncTicket`] to
//! [`SyncWaiter::after_sync`] together with what to do once the batch is durable (a
//! [`Continuation`]). The thread takes every ticket queued so far, waits for the fsync of the first —
//! one group-commit fsync covers everything written before it, so the others are then already
//! durable — and runs each continuation with its ticket's result. While other writers are still
//! writing their batches (a cheap in-flight count, see [`SyncWaiter::begin`]), it holds the fsync
//! back for at most the group wait so that their batches share it.
//!
//! The thread holds the [`Wal`] only weakly: dropping the last owner closes the WAL even while the
//! waiter is idle; continuations queued after that get [`Error::Closed`].

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::writer::{SyncTicket, Wal};

/// What runs once a ticket's batch is durable (`Ok`) or can no longer become durable (`Err`).
pub type Continuation = Box<dyn FnOnce(Result<()>) + Send + 'static>;

type Waiting = (SyncTicket, Continuation);

/// Handle to the waiter thread; it exits once every handle is dropped and its queue is drained.
#[derive(Clone)]
pub struct SyncWaiter {
    wal: Weak<Wal>,
    queue: mpsc::Sender<Waiting>,
    in_flight: Arc<AtomicUsize>,
}

/// A writer between [`SyncWaiter::begin`] and the end of its `log_unsynced` (its batch written, its
/// ticket not yet queued): the waiter may hold an fsync back for it until this guard drops.
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

impl SyncWaiter {
    /// Starts the waiter thread for `wal`, holding an fsync back for at most `group_wait` while
    /// writers are in flight. Fails only if the OS refuses a thread.
    pub fn start(wal: &Arc<Wal>, group_wait: Duration) -> std::io::Result<SyncWaiter> {
        let (tx, rx) = mpsc::channel::<Waiting>();
        let thread_wal = Arc::downgrade(wal);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let thread_in_flight = Arc::clone(&in_flight);
        std::thread::Builder::new()
            .name("wal-sync-waiter".into())
            .spawn(move || run(&thread_wal, &rx, &thread_in_flight, group_wait))?;
        Ok(SyncWaiter { wal: Arc::downgrade(wal), queue: tx, in_flight })
    }

    /// Marks a writer as writing until the guard drops (after its `log_unsynced`).
    pub fn begin(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(&self.in_flight))
    }

    /// Runs `then` once the batch of `ticket` is durable: at once on this thread if it already is,
    /// else on the waiter thread after the fsync. `then` always runs exactly once (with an error if
    /// the fsync fails); if the waiter thread is gone, this thread waits for the fsync itself.
    pub fn after_sync(&self, ticket: SyncTicket, then: Continuation) {
        let Some(wal) = self.wal.upgrade() else {
            then(Err(Error::Closed));
            return;
        };
        if wal.is_synced(ticket) {
            then(Ok(()));
            return;
        }
        if let Err(mpsc::SendError((ticket, then))) = self.queue.send((ticket, then)) {
            then(wal.wait_synced(ticket));
        }
    }
}

fn run(wal: &Weak<Wal>, rx: &mpsc::Receiver<Waiting>, in_flight: &AtomicUsize, group_wait: Duration) {
    let mut batch: Vec<Waiting> = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        batch.extend(rx.try_iter());
        // Writers still writing will want an fsync very soon: wait a little for their tickets (a
        // writer drops its guard once its batch is written, just before it queues its ticket).
        let deadline = Instant::now() + group_wait;
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
        let live = wal.upgrade();
        for (ticket, then) in batch.drain(..) {
            let Some(wal) = &live else {
                then(Err(Error::Closed));
                continue;
            };
            // The first wait fsyncs everything written so far, which includes every queued
            // ticket's batch: the later waits return at once. A panic costs only that writer its
            // continuation; the thread stays.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| then(wal.wait_synced(ticket))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, SyncPolicy};
    use std::sync::mpsc::channel;

    fn open() -> (tempfile::TempDir, Arc<Wal>) {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), Options { sync: SyncPolicy::Always, ..Options::default() }).unwrap();
        (dir, Arc::new(wal))
    }

    #[test]
    fn every_continuation_runs_once_after_its_batch_is_durable() {
        let (_dir, wal) = open();
        let waiter = SyncWaiter::start(&wal, Duration::from_micros(800)).unwrap();
        let (done_tx, done_rx) = channel();
        for i in 0..50u32 {
            let (_, ticket) = wal.log_unsynced(&[&i.to_be_bytes()], || ()).unwrap();
            let ticket = ticket.expect("SyncPolicy::Always fsyncs before acknowledging");
            let (wal, done_tx) = (Arc::clone(&wal), done_tx.clone());
            waiter.after_sync(
                ticket,
                Box::new(move |r| {
                    // Durable by the time the continuation runs.
                    done_tx.send((i, r.is_ok() && wal.is_synced(ticket))).unwrap();
                }),
            );
        }
        let mut seen: Vec<(u32, bool)> =
            (0..50).map(|_| done_rx.recv_timeout(Duration::from_secs(10)).unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..50).map(|i| (i, true)).collect::<Vec<_>>());
        assert!(done_rx.recv_timeout(Duration::from_millis(100)).is_err(), "a continuation ran twice");
    }

    #[test]
    fn the_thread_does_not_keep_the_wal_alive() {
        let (_dir, wal) = open();
        let waiter = SyncWaiter::start(&wal, Duration::from_micros(800)).unwrap();
        let weak = Arc::downgrade(&wal);
        drop(wal);
        assert!(weak.upgrade().is_none());
        let (tx, rx) = channel();
        let (_, ticket) = {
            let (_dir2, other) = open();
            other.log_unsynced(&[b"x"], || ()).unwrap()
        };
        waiter.after_sync(ticket.unwrap(), Box::new(move |r| tx.send(matches!(r, Err(Error::Closed))).unwrap()));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
    }

    #[test]
    fn a_writer_that_never_finishes_holds_no_one_back_for_long() {
        let (_dir, wal) = open();
        let waiter = SyncWaiter::start(&wal, Duration::from_micros(800)).unwrap();
        // A writer that started and never finishes (its guard is never dropped).
        let stuck = waiter.begin();
        let (_, ticket) = wal.log_unsynced(&[b"m"], || ()).unwrap();
        let (tx, rx) = channel();
        waiter.after_sync(ticket.unwrap(), Box::new(move |r| tx.send(r.is_ok()).unwrap()));
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
        drop(stuck);
    }
}
