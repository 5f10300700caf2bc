//! End-to-end tests: start the real `strata` binary on a temp dir and drive it over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed unwrap is a failed test")]

mod util;

mod admin_snapshot;
mod admin_tombstones;
mod agent;
mod api_extras;
mod bad_input;
mod block_shipping;
mod blocks;
mod config_reload;
mod corruption;
mod crash;
mod damaged_blocks;
mod disk_faults;
mod histogram_blocks;
mod histogram_chunks;
mod hostile_queries;
mod ingest_query;
mod native_histograms;
mod promql_vs_prometheus;
mod queue_shaped_writes;
mod read_during_compaction;
mod remote_read;
mod remote_write_v2;
mod slow_clients;
mod status_api;
mod thanos_sidecar;
mod tls_auth;
mod utf8_names;
mod web_ui;
