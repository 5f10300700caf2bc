//! Runs Prometheus's PromQL test files (`shared/promql-testdata`, v2.53.5) against the engine
//! over a real Strata head. Fails if a case not in `known_failures.txt` fails; reports listed
//! cases that now pass so the list can shrink.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use query::engine::mem::MemStorage;
use query::engine::{FloatHistogram, Labels, Storage};
use query::promqltest::{run_file, Outcome, TestStorage};
use query::storage::TsdbStorage;
use tsdb::histogram::HistogramValue;

struct HeadStorage {
    dir: Option<tempfile::TempDir>,
    head: Arc<tsdb::Head>,
    storage: TsdbStorage,
    pending: Vec<(Labels, i64, f64)>,
    pending_histograms: Vec<(Labels, i64, FloatHistogram)>,
}

impl HeadStorage {
    fn new() -> HeadStorage {
        let (dir, db) = tsdb::testing::temp_db(tsdb::testing::memory_options(i64::MAX / 4));
        HeadStorage {
            dir: Some(dir),
            storage: TsdbStorage::new(Arc::clone(&db)),
            head: Arc::clone(db.head()),
            pending: Vec::new(),
            pending_histograms: Vec::new(),
        }
    }
}

impl TestStorage for HeadStorage {
    fn clear(&mut self) {
        let fresh = HeadStorage::new();
        self.dir = fresh.dir;
        self.head = fresh.head;
        self.storage = fresh.storage;
        self.pending.clear();
        self.pending_histograms.clear();
    }
    fn add(&mut self, labels: &Labels, t: i64, v: f64) -> Result<(), String> {
        self.pending.push((labels.clone(), t, v));
        Ok(())
    }
    fn add_histogram(&mut self, labels: &Labels, t: i64, h: FloatHistogram) -> Result<(), String> {
        self.pending_histograms.push((labels.clone(), t, h));
        Ok(())
    }
    fn commit(&mut self) -> Result<(), String> {
        // Append in time order so every sample is in order for its series.
        // Prometheus's test loader keeps the last of two samples at one timestamp.
        let mut last: std::collections::HashMap<(Labels, i64), f64> = std::collections::HashMap::new();
        for (l, t, v) in self.pending.drain(..) {
            last.insert((l, t), v);
        }
        let mut samples: Vec<((Labels, i64), f64)> = last.into_iter().collect();
        samples.sort_by(|a, b| a.0 .1.cmp(&b.0 .1).then_with(|| a.0 .0.cmp(&b.0 .0)));
        let mut app = self.head.appender();
        for ((l, t), v) in samples {
            let pairs: Vec<(&str, &str)> = l.iter().collect();
            app.append_pairs(&pairs, t, v).map_err(|e| format!("append {l} @{t}: {e}"))?;
        }
        // Histograms likewise, as the float histograms the test notation describes.
        let mut last: std::collections::HashMap<(Labels, i64), FloatHistogram> = std::collections::HashMap::new();
        for (l, t, h) in self.pending_histograms.drain(..) {
            last.insert((l, t), h);
        }
        let mut hists: Vec<((Labels, i64), FloatHistogram)> = last.into_iter().collect();
        hists.sort_by(|a, b| a.0 .1.cmp(&b.0 .1).then_with(|| a.0 .0.cmp(&b.0 .0)));
        for ((l, t), h) in hists {
            let mut pairs: Vec<(&str, &str)> = l.iter().collect();
            let series = app.series(&mut pairs).map_err(|e| format!("series {l}: {e}"))?;
            app.append_histogram(series, t, HistogramValue::Float(h)).map_err(|e| format!("append {l} @{t}: {e}"))?;
        }
        app.commit().map_err(|e| e.to_string())?;
        Ok(())
    }
    fn storage(&self) -> &dyn Storage {
        &self.storage
    }
}

fn testdata_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/promql-testdata"))
}

#[test]
fn promql_conformance() {
    run_conformance(HeadStorage::new, "known_failures.txt");
}

/// The same files over the engine's in-memory storage (the engine alone, without the head's read
/// path).
#[test]
fn promql_conformance_in_memory() {
    run_conformance(MemStorage::default, "known_failures_in_memory.txt");
}

fn run_conformance<S: TestStorage>(new_storage: impl Fn() -> S, known_file: &str) {
    let dir = testdata_dir();
    if !dir.is_dir() {
        // A clone of the repository alone has no test data; CI always has it beside the repository.
        assert!(
            std::env::var("CI").is_err(),
            "PromQL test data not found at {} (CI clones shared/ beside the repository)",
            dir.display()
        );
        println!("skipped: PromQL test data not found at {} (shared/ beside the repository)", dir.display());
        return;
    }
    let known_path = format!("{}/tests/{known_file}", env!("CARGO_MANIFEST_DIR"));
    let known: BTreeSet<String> = std::fs::read_to_string(&known_path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    let (mut pass, mut fail, mut skip) = (0, 0, 0);
    let mut unexpected = Vec::new();
    let mut now_passing = Vec::new();
    let mut failing_ids = Vec::new();
    for f in &files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        let mut st = new_storage();
        let results = run_file(&name, &text, &mut st).unwrap_or_else(|e| panic!("{e}"));
        let (mut p, mut fl, mut s) = (0, 0, 0);
        for r in &results {
            match &r.outcome {
                Outcome::Pass => {
                    p += 1;
                    if known.contains(&r.id) {
                        now_passing.push(r.id.clone());
                    }
                }
                Outcome::Fail(msg) => {
                    fl += 1;
                    failing_ids.push(format!("{}  # {}", r.id, r.query));
                    if !known.contains(&r.id) {
                        unexpected.push(format!("{} `{}`: {msg}", r.id, r.query));
                    }
                }
                Outcome::Skip(why) => {
                    s += 1;
                    if std::env::var_os("PROMQL_TEST_VERBOSE").is_some() {
                        println!("  skip {} `{}`: {why}", r.id, r.query);
                    }
                }
            }
        }
        println!("{name}: {p} passed, {fl} failed, {s} skipped");
        pass += p;
        fail += fl;
        skip += s;
    }
    println!("total: {pass} passed, {fail} failed, {skip} skipped");
    if std::env::var_os("PROMQL_TEST_WRITE_KNOWN").is_some() {
        let _ = std::fs::write(&known_path, failing_ids.join("\n") + "\n");
    }
    for id in &now_passing {
        println!("now passing (remove from known_failures.txt): {id}");
    }
    assert!(unexpected.is_empty(), "{} unexpected failures:\n{}", unexpected.len(), unexpected.join("\n"));
}
