//! Workload generators shared by the criterion benches and the `strata-bench` harness, and the harness
//! itself (remote-write load, server lifecycle, measurements, reports).
//!
//! Layout:
//! - [`rng`]: a tiny deterministic PRNG (no `rand`, to keep compile times down).
//! - [`workload`]: node-exporter-like series, scrape timestamps with jitter, counters and gauges;
//!   the sample streams the benches and the harness use.
//! - [`payload`]: remote-write 1.0 payloads (snappy protobuf) built from a workload before any timing.
//! - [`parse`]: the parse bound (snappy + protobuf decode on one core).
//! - [`sys`]: `/proc` readings, clock ticks, thread CPU time, disk usage, signals.
//! - [`target`], [`client`], [`compare`], [`report`]: the `compare` command.
//!
//! This package is a tool, not a library others build on: it uses `anyhow` throughout.

pub mod client;
pub mod compare;
pub mod parse;
pub mod payload;
pub mod report;
pub mod rng;
pub mod sys;
pub mod target;
pub mod workload;
