//! The ingest pool: a fixed set of threads, one per core, that decompress, decode and append
//! remote-write requests to the head.
//!
//! Why not tokio's blocking pool: it starts a thread per concurrent request, and the head's
//! long-lived memory (series, labels, open chunks) is allocated by whichever thread appends. The
//! allocator keeps a heap per thread, so spreading that memory over many threads leaves many
//! partly used pages: at 100k series, ingesting through a pool of two threads instead of tokio's
//! (six to eight threads under `strata-bench load`) gives a peak RSS of ~185 MiB instead of ~215
//! at the same CPU (docs/BENCHMARKS.md). The fsync wait of a commit does not happen here (the sync waiter
//! thread waits), so a slow disk does not hold the pool's threads.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Threads that run ingest jobs in submission order; they exit when the pool is dropped.
pub(crate) struct IngestPool {
    jobs: mpsc::Sender<Job>,
}

impl IngestPool {
    /// A pool of `threads` threads (at least one). Fails only if the OS refuses a thread.
    pub(crate) fn new(threads: usize) -> std::io::Result<IngestPool> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new().name(format!("strata-ingest-{i}")).spawn(move || loop {
                // The lock is held only while waiting for the next job, not while running it.
                let job = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                let Ok(job) = job else { return };
                // A panicking job drops its reply sender (the caller sees an error); the thread
                // stays.
                let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
            })?;
        }
        Ok(IngestPool { jobs })
    }

    /// A pool with one thread per available core.
    pub(crate) fn per_core() -> std::io::Result<IngestPool> {
        IngestPool::new(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
    }

    /// Queues `f` to run on a pool thread. If the pool is shut down, `f` is dropped unrun (anything
    /// it owns, such as a reply sender, is dropped with it).
    pub(crate) fn submit(&self, f: impl FnOnce() + Send + 'static) {
        let _ = self.jobs.send(Box::new(f));
    }

    /// Runs `f` on a pool thread and returns its output; `None` if `f` panicked.
    #[cfg(test)]
    pub(crate) async fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(move || {
            let _ = tx.send(f());
        });
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_on_its_threads_and_survives_panics() {
        let pool = IngestPool::new(2).unwrap();
        let name = pool.run(|| std::thread::current().name().map(str::to_owned)).await.unwrap();
        assert!(name.unwrap().starts_with("strata-ingest-"));
        // More panics than threads: every thread has caught one, and all still serve jobs.
        for _ in 0..3 {
            assert_eq!(pool.run(|| -> u32 { panic!("boom") }).await, None);
        }
        let mut names = std::collections::BTreeSet::new();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let (a, b) = tokio::join!(
            pool.run({
                let b = Arc::clone(&barrier);
                move || {
                    b.wait();
                    std::thread::current().name().map(str::to_owned)
                }
            }),
            pool.run({
                let b = Arc::clone(&barrier);
                move || {
                    b.wait();
                    std::thread::current().name().map(str::to_owned)
                }
            }),
        );
        names.insert(a.flatten().unwrap());
        names.insert(b.flatten().unwrap());
        assert_eq!(names.len(), 2, "two jobs waiting on each other ran on two threads");
    }
}
