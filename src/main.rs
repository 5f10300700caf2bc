//! The `strata` server: reads flags and the YAML config, starts logging, binds the HTTP listener,
//! replays the WAL (answering 503 on the API and `/-/ready` until it is done), then serves
//! remote-write and the Prometheus query API. On SIGHUP (and `POST /-/reload`) it reloads the config
//! file. On SIGTERM/SIGINT (and `POST /-/quit`) it stops accepting, lets requests in flight finish
//! within the shutdown grace period (closing the connections of the rest), syncs the WAL and exits.
//! `strata check config FILE` checks a config file without starting, `strata check web-config FILE`
//! a web config file.
//!
//! Memory comes from the system allocator (glibc's malloc): at 100k series its peak RSS is 16–23%
//! below mimalloc's in alternated loads (docs/BENCHMARKS.md). [`memory`] sets
//! how it gets memory from the OS before anything else runs.
#![deny(unsafe_code)]

mod admin;
mod config;
mod config_file;
mod cors;
mod http;
mod logging;
mod memory;
mod metrics;
mod process;
mod reload;
mod rlimit;
mod server;
mod shipper;
mod status;
mod ui;
mod web_config;

use clap::{CommandFactory, FromArgMatches};

fn main() -> std::process::ExitCode {
    let thp = memory::disable_transparent_huge_pages();
    let mmap_threshold_fixed = memory::fix_mmap_threshold();
    let command = config::Flags::command();
    let matches = command.clone().get_matches();
    let flags = match config::Flags::from_arg_matches(&matches) {
        Ok(f) => f,
        Err(e) => e.exit(),
    };
    match &flags.command {
        Some(config::Command::Check { what: config::CheckCommand::Config { files } }) => return check_config(files),
        Some(config::Command::Check { what: config::CheckCommand::WebConfig { files } }) => {
            return check_web_config(files)
        }
        None => {}
    }
    let mut flag_values = status::flag_values(&command, &matches);
    if let Err(e) = logging::init(&flags.log_level, &flags.log_format) {
        eprintln!("strata: {e:#}");
        return std::process::ExitCode::from(2);
    }
    if let Err(e) = thp {
        tracing::warn!(error = %e, "cannot disable transparent huge pages; memory use may be higher");
    }
    if !mmap_threshold_fixed {
        tracing::warn!("cannot fix malloc's mmap threshold; memory use may be higher after large queries");
    }
    match rlimit::raise_nofile() {
        Ok(l) => tracing::info!(
            soft_before = ?l.soft_before,
            soft = ?l.soft_after,
            hard = ?l.hard,
            "open file limit (None = unlimited)"
        ),
        Err((l, e)) => tracing::warn!(
            error = %e,
            soft = ?l.soft_before,
            hard = ?l.hard,
            "cannot raise the open file limit to the hard limit"
        ),
    }
    let config_yaml = flags.config_file.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
    let cfg = match flags.into_config() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "invalid configuration");
            return std::process::ExitCode::from(2);
        }
    };
    for note in &cfg.notes {
        tracing::warn!("{note}");
    }
    status::report_computed(&mut flag_values, &cfg);
    if let Some(path) = &cfg.db.delay_compact_file {
        tracing::info!(
            path = %path.display(),
            "level-1 blocks are compacted only once the delay-compact file lists them as uploaded"
        );
    }
    // Queries are parsed and evaluated on the runtime's threads (recursively, as deep as the
    // query's nesting, which the query crate bounds): their stacks are sized for that bound.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-worker")
        .thread_stack_size(query::complexity::EVAL_STACK_BYTES)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server::run(cfg, std::sync::Arc::new(status::server_status(flag_values, config_yaml)))) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "strata stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `strata check web-config FILE...`: reads each web config file and the certificates it names and
/// builds its TLS configuration, as the server would.
fn check_web_config(files: &[std::path::PathBuf]) -> std::process::ExitCode {
    let mut ok = true;
    for file in files {
        match http::security::Loaded::load(file) {
            Ok(loaded) => println!("{} SUCCESS ({})", file.display(), loaded.summary()),
            Err(e) => {
                ok = false;
                eprintln!("{} FAILED: {e}", file.display());
            }
        }
    }
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

/// `strata check config FILE...`: checks each file as the server would load it, without starting.
fn check_config(files: &[std::path::PathBuf]) -> std::process::ExitCode {
    let mut ok = true;
    for file in files {
        match config_file::load(file) {
            Ok(c) => {
                println!("Checking {}\n  SUCCESS: {} is valid Strata configuration", file.display(), file.display());
                for (key, line) in &c.ignored {
                    println!("  note: line {line}: {key} has no effect in Strata");
                }
            }
            Err(e) => {
                ok = false;
                eprintln!("Checking {}\n  FAILED: {e}", file.display());
            }
        }
    }
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
