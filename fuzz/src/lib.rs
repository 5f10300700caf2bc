//! Mutation fuzzing of Strata's decoders on stable Rust.
//!
//! Each target ([`targets`]) builds a corpus of valid inputs in code (encoded remote-write and
//! remote-read requests, WAL records and segments, XOR chunks, a block's files, PromQL queries). The
//! [`runner`] takes an
//! input from the corpus, mutates it ([`mutate`]) with a seeded generator ([`rng`]) and feeds it
//! to the target under `catch_unwind`: a panic, or a failed property assertion in the target, is a
//! finding, reported with the seed and iteration that reproduce it and saved to a file.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod mutate;
pub mod rng;
pub mod runner;
pub mod targets;

/// Runs `f` on a thread with the stack the query engine needs
/// ([`query::complexity::EVAL_STACK_BYTES`]), as the server's query threads have; the PromQL target
/// parses and evaluates deeply nested expressions. Panics of `f` are resumed on the caller.
pub fn on_fuzz_thread<T: Send>(f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("fuzz".into())
            .stack_size(query::complexity::EVAL_STACK_BYTES)
            .spawn_scoped(s, f)?;
        Ok(handle.join().unwrap_or_else(|payload| std::panic::resume_unwind(payload)))
    })
}
