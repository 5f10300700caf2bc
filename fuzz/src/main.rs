//! `strata-fuzz`: runs a fuzz target for a while, or replays saved inputs.
//!
//! ```text
//! strata-fuzz list
//! strata-fuzz fuzz TARGET --secs N [--seed S] [--out DIR]
//! strata-fuzz run TARGET FILE...
//! ```
//! Exits with status 1 when a run found a panic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use strata_fuzz::runner::{self, Limit, Options};
use strata_fuzz::targets;

/// A run whose slowest input took this long prints that input (hex, first 512 bytes).
const SLOW_INPUT: Duration = Duration::from_millis(100);

#[derive(Parser)]
#[command(name = "strata-fuzz", about = "Mutation fuzzing of Strata's decoders")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Lists the targets.
    List,
    /// Fuzzes one target.
    Fuzz {
        /// The target (see `list`).
        target: String,
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// Run this many iterations instead of for `--secs`.
        #[arg(long)]
        iterations: Option<u64>,
        /// Seed (default: from the clock; printed at the start).
        #[arg(long)]
        seed: Option<u64>,
        /// Directory findings are saved to.
        #[arg(long, default_value = "fuzz-findings")]
        out: PathBuf,
    },
    /// Runs a target once on each of the given input files (for example saved findings).
    Run {
        /// The target.
        target: String,
        /// Input files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match strata_fuzz::on_fuzz_thread(move || execute(cli.cmd)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: cannot start the fuzz thread: {e}");
            ExitCode::from(2)
        }
    }
}

fn execute(cmd: Cmd) -> ExitCode {
    match cmd {
        Cmd::List => {
            for name in targets::NAMES {
                println!("{name}");
            }
            ExitCode::SUCCESS
        }
        Cmd::Fuzz { target, secs, iterations, seed, out } => {
            let mut t = match targets::by_name(&target) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let seed =
                seed.unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
            let limit = iterations.map_or(Limit::Time(Duration::from_secs(secs)), Limit::Iterations);
            println!("fuzzing {target} seed={seed} ({limit:?}), findings to {}", out.display());
            let opts = Options { seed, limit, out_dir: Some(out) };
            let summary = runner::run(
                t.as_mut(),
                &opts,
                |f| println!("{f}"),
                |n, el| println!("  {n} iterations, {:.0}/s", n as f64 / el.as_secs_f64().max(1e-9)),
            );
            println!(
                "{}: {} iterations in {:.1}s ({:.0}/s), {:.1}% accepted, {} panics at {} distinct locations; slowest input {:.1} ms (iteration {})",
                summary.target,
                summary.iterations,
                summary.elapsed.as_secs_f64(),
                summary.per_second(),
                100.0 * summary.accepted as f64 / summary.iterations.max(1) as f64,
                summary.panics,
                summary.findings.len(),
                summary.slowest.0.as_secs_f64() * 1000.0,
                summary.slowest.1,
            );
            if summary.slowest.0 >= SLOW_INPUT {
                let shown = &summary.slowest.2[..summary.slowest.2.len().min(512)];
                println!("  slowest input ({} bytes): {}", summary.slowest.2.len(), runner::hex(shown));
            }
            if summary.findings.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Run { target, files } => {
            let mut t = match targets::by_name(&target) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let mut failed = false;
            for f in files {
                let input = match std::fs::read(&f) {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("error: {}: {e}", f.display());
                        return ExitCode::from(2);
                    }
                };
                match runner::run_one(t.as_mut(), &input) {
                    Ok(accepted) => {
                        let what = if accepted { "accepted" } else { "rejected" };
                        println!("{}: ok ({what})", f.display());
                    }
                    Err(msg) => {
                        failed = true;
                        println!("{}: panic: {msg}", f.display());
                    }
                }
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
