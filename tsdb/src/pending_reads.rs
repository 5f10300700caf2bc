//! Pending reads: the readers of a [`crate::Db`] that are still open and the block list each took,
//! so that head compaction drops a range from memory only once no reader can still need it there.
//!
//! A querier takes the block list and registers here under the list's read lock, and stays
//! registered until it and every series it selected are dropped ([`PendingRead`]). Publishing a block
//! (under the list's write lock) reads the [`PendingReads::epoch`]: readers registered below it may
//! hold the list without the new block, all others hold it with. Head compaction publishes its
//! block first, then waits until no reader below that epoch overlapping the block's range is open
//! ([`PendingReads::wait_for`]), then truncates the head: every reader sees the range either in the
//! head or in the block. Reads take one mutex twice (register, release); no lock is held while
//! they read. This is Prometheus's order (reload blocks, then truncate the head after
//! `WaitForPendingReadersInTimeRange`).

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long a compaction waits between two log lines about the readers it waits for.
const WAIT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The open readers, by registration number, with the time range each reads.
#[derive(Default)]
pub(crate) struct PendingReads {
    state: Mutex<State>,
    released: Condvar,
}

#[derive(Default)]
struct State {
    /// The number the next reader gets.
    next: u64,
    /// Open readers: number → `[mint, maxt]` (inclusive).
    open: BTreeMap<u64, (i64, i64)>,
}

impl PendingReads {
    /// Registers a reader of `[mint, maxt]` (inclusive). Call while holding the block list the
    /// reader takes (its read lock), so the number orders the reader against block publications.
    pub(crate) fn register(self: &Arc<Self>, mint: i64, maxt: i64) -> PendingRead {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let id = s.next;
        s.next += 1;
        s.open.insert(id, (mint, maxt));
        PendingRead(Arc::new(Registered { reads: Arc::clone(self), id }))
    }

    /// The number the next reader gets. Read under the block list's write lock while publishing a
    /// block: readers numbered below it may have taken the list without the block.
    pub(crate) fn epoch(&self) -> u64 {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).next
    }

    /// Waits until no reader numbered below `epoch` that reads part of `[mint, maxt)` is open.
    pub(crate) fn wait_for(&self, epoch: u64, mint: i64, maxt: i64) {
        let blocking = |s: &State| s.open.range(..epoch).filter(|(_, &(lo, hi))| lo < maxt && hi >= mint).count();
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let readers = blocking(&s);
            if readers == 0 {
                return;
            }
            let (next, timeout) = self.released.wait_timeout(s, WAIT_LOG_INTERVAL).unwrap_or_else(|e| e.into_inner());
            s = next;
            if timeout.timed_out() {
                tracing::warn!(readers, mint, maxt, "head truncation waits for reads that started before its block");
            }
        }
    }

    fn release(&self, id: u64) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).open.remove(&id);
        self.released.notify_all();
    }
}

/// A registered reader; cloned into what a querier hands out, released when the last clone drops.
#[derive(Clone)]
pub struct PendingRead(#[allow(dead_code)] Arc<Registered>);

impl std::fmt::Debug for PendingRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PendingRead({})", self.0.id)
    }
}

struct Registered {
    reads: Arc<PendingReads>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.reads.release(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_only_for_older_overlapping_readers() {
        let reads = Arc::new(PendingReads::default());
        let old = reads.register(0, 100);
        let elsewhere = reads.register(500, 600);
        let epoch = reads.epoch();
        let newer = reads.register(0, 100);
        // Not overlapping [200, 300): returns at once although `old` is open.
        reads.wait_for(epoch, 200, 300);
        let waiter = std::thread::spawn({
            let reads = Arc::clone(&reads);
            move || reads.wait_for(epoch, 50, 60)
        });
        let clone = old.clone();
        drop(old);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "returned while a clone of the reader was open");
        drop(clone);
        waiter.join().unwrap();
        drop((elsewhere, newer));
        assert!(reads.state.lock().unwrap().open.is_empty());
    }
}
