//! The fuzz loop: pick a corpus input, mutate it, run the target under `catch_unwind`, record
//! panics as findings (deduplicated by where they happened), count iterations.
//!
//! Iteration `i` of a run with seed `s` draws everything from a generator seeded with `(s, i)`, so a
//! finding is reproduced from its seed and iteration alone (as well as from its saved input).

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::mutate::Mutator;
use crate::rng::Rng;
use crate::targets::Target;

/// Inputs printed in full as hex up to this size; longer ones are cut (the file holds all of it).
const MAX_HEX_BYTES: usize = 4096;

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// After this much time.
    Time(Duration),
    /// After this many iterations.
    Iterations(u64),
}

/// Settings of one run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seed of the run.
    pub seed: u64,
    /// When to stop.
    pub limit: Limit,
    /// Directory findings are saved to (created when needed); `None`: not saved.
    pub out_dir: Option<PathBuf>,
}

/// A panic in a target.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The target.
    pub target: &'static str,
    /// The run's seed.
    pub seed: u64,
    /// The iteration (with `seed`, reproduces the input).
    pub iteration: u64,
    /// The panic message and location.
    pub message: String,
    /// The input.
    pub input: Vec<u8>,
    /// Where the input was saved, if it was.
    pub saved: Option<PathBuf>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "FINDING target={} seed={} iteration={}", self.target, self.seed, self.iteration)?;
        writeln!(f, "  panic: {}", self.message)?;
        if let Some(p) = &self.saved {
            writeln!(f, "  saved: {}", p.display())?;
        }
        let shown = &self.input[..self.input.len().min(MAX_HEX_BYTES)];
        write!(f, "  input ({} bytes): {}", self.input.len(), hex(shown))?;
        if shown.len() < self.input.len() {
            write!(f, "… (cut; the saved file holds the whole input)")?;
        }
        Ok(())
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The target.
    pub target: &'static str,
    /// Inputs run.
    pub iterations: u64,
    /// Inputs the target accepted (decoded without error all the way).
    pub accepted: u64,
    /// Wall time of the loop (setup excluded).
    pub elapsed: Duration,
    /// The first finding at each distinct panic location.
    pub findings: Vec<Finding>,
    /// Panics in all, including those at a location already reported.
    pub panics: u64,
    /// The slowest input's run time, iteration and bytes.
    pub slowest: (Duration, u64, Vec<u8>),
}

impl Summary {
    /// Iterations per second.
    pub fn per_second(&self) -> f64 {
        self.iterations as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

thread_local! {
    /// Set while a target runs on this thread: the panic hook records instead of printing.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static CAPTURED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook that records the message and location of panics in targets and
/// leaves every other panic to the previous hook.
fn install_hook() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CAPTURING.with(Cell::get) {
                previous(info);
                return;
            }
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-string panic payload)".into());
            let at = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())).unwrap_or_default();
            CAPTURED.with(|c| *c.borrow_mut() = Some(format!("{msg} at {at}")));
        }));
    });
}

/// Runs `target` on `input` once; `Err` carries the panic's message and location.
pub fn run_one(target: &mut dyn Target, input: &[u8]) -> Result<bool, String> {
    install_hook();
    CAPTURED.with(|c| c.borrow_mut().take());
    CAPTURING.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(|| target.run(input)));
    CAPTURING.with(|c| c.set(false));
    result.map_err(|_| CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_else(|| "panic".into()))
}

/// The location part of a captured panic message ("… at file:line:col"), for deduplication.
fn location(message: &str) -> &str {
    message.rsplit_once(" at ").map_or(message, |(_, at)| at)
}

fn save(dir: &Path, f: &Finding) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{}-seed{}-iter{}.bin", f.target, f.seed, f.iteration));
    std::fs::write(&path, &f.input)?;
    Ok(path)
}

/// The input of iteration `iteration` of a run with `seed`.
pub fn input_for(corpus: &[Vec<u8>], dictionary: &[&[u8]], seed: u64, iteration: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ iteration.wrapping_mul(0xA24B_AED4_963E_E407));
    let mut input = rng.pick(corpus).cloned().unwrap_or_default();
    // One in 64 inputs is run unmutated, so that the valid inputs themselves are checked too.
    if !rng.one_in(64) {
        Mutator::new(corpus, dictionary).mutate(&mut rng, &mut input);
    }
    input
}

/// Fuzzes `target` until `opts.limit`. `on_finding` is called for each new finding as it happens
/// (after the input was saved), `on_progress` about every five seconds with the iterations so far.
pub fn run(
    target: &mut dyn Target,
    opts: &Options,
    mut on_finding: impl FnMut(&Finding),
    mut on_progress: impl FnMut(u64, Duration),
) -> Summary {
    let corpus = target.corpus();
    let dictionary = target.dictionary();
    let name = target.name();
    let mut findings = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let (mut panics, mut accepted, mut slowest) = (0u64, 0u64, (Duration::ZERO, 0u64, Vec::new()));
    let start = Instant::now();
    let mut last_progress = start;
    let mut iteration = 0u64;
    loop {
        let done = match opts.limit {
            Limit::Iterations(n) => iteration >= n,
            // Checking the clock every 16 iterations keeps its cost out of fast targets.
            Limit::Time(d) => iteration.is_multiple_of(16) && start.elapsed() >= d,
        };
        if done {
            break;
        }
        let input = input_for(&corpus, dictionary, opts.seed, iteration);
        let t0 = Instant::now();
        let result = run_one(target, &input);
        let took = t0.elapsed();
        if took > slowest.0 {
            slowest = (took, iteration, input.clone());
        }
        match result {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(message) => {
                panics += 1;
                if seen.insert(location(&message).to_string()) {
                    let mut f = Finding { target: name, seed: opts.seed, iteration, message, input, saved: None };
                    if let Some(dir) = &opts.out_dir {
                        match save(dir, &f) {
                            Ok(p) => f.saved = Some(p),
                            Err(e) => eprintln!("could not save the finding to {}: {e}", dir.display()),
                        }
                    }
                    on_finding(&f);
                    findings.push(f);
                }
            }
        }
        iteration += 1;
        if last_progress.elapsed() >= Duration::from_secs(5) {
            last_progress = Instant::now();
            on_progress(iteration, start.elapsed());
        }
    }
    Summary { target: name, iterations: iteration, accepted, elapsed: start.elapsed(), findings, panics, slowest }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Panics on any input holding the byte 0xFF, which the corpus never does.
    struct Fragile;

    impl Target for Fragile {
        fn name(&self) -> &'static str {
            "fragile"
        }
        fn corpus(&mut self) -> Vec<Vec<u8>> {
            vec![b"abcdefgh".to_vec()]
        }
        fn run(&mut self, input: &[u8]) -> bool {
            assert!(!input.contains(&0xFF), "found 0xff");
            true
        }
    }

    #[test]
    fn panics_are_findings_reproduced_by_seed_and_iteration() {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options { seed: 3, limit: Limit::Iterations(2000), out_dir: Some(dir.path().to_path_buf()) };
        let mut seen = 0;
        let s = run(&mut Fragile, &opts, |_| seen += 1, |_, _| {});
        assert_eq!(s.iterations, 2000);
        assert_eq!(s.findings.len(), 1, "one location, reported once");
        assert_eq!(seen, 1);
        assert!(s.panics > 1);
        let f = &s.findings[0];
        assert!(f.message.contains("found 0xff") && f.message.contains("runner.rs"), "{}", f.message);
        assert_eq!(std::fs::read(f.saved.as_ref().unwrap()).unwrap(), f.input);
        let corpus = Fragile.corpus();
        assert_eq!(input_for(&corpus, &[], 3, f.iteration), f.input);
        assert!(run_one(&mut Fragile, &f.input).is_err());
        assert!(run_one(&mut Fragile, b"ok").is_ok());
    }
}
