//! End-to-end tests: start the real `strata` binary on a temp dir and drive it over HTTP.

mod util;

mod agent;
mod bad_input;
mod blocks;
mod crash;
mod ingest_query;
mod promql_vs_prometheus;
