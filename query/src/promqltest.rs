//! A runner for Prometheus's PromQL test DSL (`promql/promqltest/testdata/*.test`, v2.53):
//! `load`, `clear`, `eval instant`, `eval_fail`, `eval_ordered`, `eval range`.
//!
//! The runner is storage-agnostic ([`TestStorage`]); the conformance test plugs in a real head.
//! Each instant eval is also re-run as a range query (t−1m … t+1m, step 1m) and the point at t
//! compared, and (unless it calls an @-unsafe function) re-run with `@ t` on every selector at
//! −10t, 0, t/5, t, 10t, as Prometheus's harness does.

use std::fmt::Write as _;

use crate::engine::functions::parse_go_float;
use crate::engine::histogram;
use crate::engine::value::STALE_NAN_BITS;
use crate::engine::{Engine, EngineOptions, FloatHistogram, Labels, QueryValue, Sample, Storage};
use crate::error::QueryError;
use tsdb::histogram::{CounterResetHint, Span};

/// Where test data goes.
pub trait TestStorage {
    /// Drops all data.
    fn clear(&mut self);
    /// Adds one sample.
    fn add(&mut self, labels: &Labels, t: i64, v: f64) -> Result<(), String>;
    /// Adds one native histogram sample; the default is a storage without histograms (the cases
    /// after such a load are skipped).
    fn add_histogram(&mut self, labels: &Labels, t: i64, h: FloatHistogram) -> Result<(), String> {
        let _ = (labels, t, h);
        Err(NO_HISTOGRAMS.into())
    }
    /// Makes pending samples visible (called after each `load`).
    fn commit(&mut self) -> Result<(), String>;
    /// The storage to evaluate against.
    fn storage(&self) -> &dyn Storage;
}

/// Why [`TestStorage::add_histogram`] failed for a storage without histograms.
const NO_HISTOGRAMS: &str = "storage without native histograms";

/// One value of a series description: a float or a native histogram.
#[derive(Debug, Clone)]
pub enum TestValue {
    /// A float (stale markers are the stale NaN).
    Float(f64),
    /// A native histogram.
    Histogram(FloatHistogram),
}

/// Outcome of one eval case.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Matched.
    Pass,
    /// Did not match; why.
    Fail(String),
    /// Not run; why.
    Skip(String),
}

/// One eval case's result.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// `file:line` of the eval command.
    pub id: String,
    /// The query.
    pub query: String,
    /// What happened.
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
enum Expected {
    Scalar(f64),
    Sample(Labels, Vec<Option<TestValue>>),
}

/// Parses a series description `metric{a="b"} 1 2+3x4 _ stale`.
pub fn parse_series_desc(line: &str) -> Result<(Labels, Vec<Option<f64>>), String> {
    let (labels, rest) = parse_series_labels(line)?;
    let mut vals = Vec::new();
    for tok in rest.split_whitespace() {
        expand_value(tok, &mut vals)?;
    }
    Ok((labels, vals))
}

/// Parses a series description whose values may be native histograms:
/// `m{a="b"} {{schema:0 sum:5 count:4 buckets:[1 2 1]}}x2 {{…}}+{{…}}x3 1 _ stale`.
pub fn parse_series_values(line: &str) -> Result<(Labels, Vec<Option<TestValue>>), String> {
    let (labels, rest) = parse_series_labels(line)?;
    let mut vals = Vec::new();
    let mut rest = rest.trim_start();
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            let (base, after) = parse_histogram(rest)?;
            let (inc, after) = match after.as_bytes().first() {
                Some(&c @ (b'+' | b'-')) if after[1..].starts_with("{{") => {
                    let (mut inc, after) = parse_histogram(&after[1..])?;
                    if c == b'-' {
                        histogram::mul(&mut inc, -1.0);
                    }
                    (Some((inc, c == b'-')), after)
                }
                _ => (None, after),
            };
            let (times, after) = match after.strip_prefix('x') {
                Some(a) => {
                    let end = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                    (a[..end].parse::<usize>().map_err(|_| format!("bad repetition in {line:?}"))?, &a[end..])
                }
                None if inc.is_some() => return Err(format!("histogram increment without repetition in {line:?}")),
                None => (0, after),
            };
            let mut cur = base;
            vals.push(Some(TestValue::Histogram(cur.clone())));
            for _ in 0..times {
                if let Some((inc, _)) = &inc {
                    if cur.schema > inc.schema {
                        return Err(format!("cannot merge from schema {} to {} in {line:?}", inc.schema, cur.schema));
                    }
                    histogram::add(&mut cur, inc).map_err(|e| e.to_string())?;
                }
                vals.push(Some(TestValue::Histogram(cur.clone())));
            }
            rest = after.trim_start();
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let mut floats = Vec::new();
        expand_value(&rest[..end], &mut floats)?;
        vals.extend(floats.into_iter().map(|v| v.map(TestValue::Float)));
        rest = rest[end..].trim_start();
    }
    Ok((labels, vals))
}

/// Parses one `{{key:value …}}` histogram at the start of `s`; returns it and the rest.
fn parse_histogram(s: &str) -> Result<(FloatHistogram, &str), String> {
    let body_end = s.find("}}").ok_or_else(|| format!("unterminated histogram in {s:?}"))?;
    let (body, rest) = (&s[2..body_end], &s[body_end + 2..]);
    let mut h = FloatHistogram::default();
    let (mut pos, mut neg): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
    let (mut offset, mut n_offset) = (0i32, 0i32);
    let mut b = body.trim();
    let num = |v: &str| parse_go_float(v).ok_or_else(|| format!("bad number {v:?} in histogram {body:?}"));
    let int = |v: &str| v.parse::<i32>().map_err(|_| format!("bad integer {v:?} in histogram {body:?}"));
    while !b.is_empty() {
        let (key, after) = b.split_once(':').ok_or_else(|| format!("bad histogram {body:?}"))?;
        let after = after.trim_start();
        let (value, after) = if let Some(list) = after.strip_prefix('[') {
            let end = list.find(']').ok_or_else(|| format!("unterminated list in histogram {body:?}"))?;
            (&list[..end], &list[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        let list = || value.split_whitespace().map(num).collect::<Result<Vec<f64>, String>>();
        match key.trim() {
            "schema" => h.schema = int(value)?,
            "sum" => h.sum = num(value)?,
            "count" => h.count = num(value)?,
            "z_bucket" => h.zero_count = num(value)?,
            "z_bucket_w" => h.zero_threshold = num(value)?,
            "buckets" => pos = list()?,
            "n_buckets" => neg = list()?,
            "offset" => offset = int(value)?,
            "n_offset" => n_offset = int(value)?,
            "custom_values" => h.custom_values = list()?,
            "counter_reset_hint" => {
                h.counter_reset_hint = match value {
                    "unknown" => CounterResetHint::Unknown,
                    "reset" => CounterResetHint::CounterReset,
                    "not_reset" => CounterResetHint::NotCounterReset,
                    "gauge" => CounterResetHint::Gauge,
                    other => return Err(format!("bad counter_reset_hint {other:?}")),
                }
            }
            other => return Err(format!("unknown histogram field {other:?} in {body:?}")),
        }
        b = after.trim_start();
    }
    let spans = |n: usize, offset: i32| {
        if n == 0 {
            Vec::new()
        } else {
            vec![Span { offset, length: u32::try_from(n).unwrap_or(u32::MAX) }]
        }
    };
    h.positive_spans = spans(pos.len(), offset);
    h.negative_spans = spans(neg.len(), n_offset);
    h.positive_buckets = pos;
    h.negative_buckets = neg;
    Ok((h, rest))
}

/// Parses the `metric{…}` part; returns the labels and the rest of the line.
pub fn parse_series_labels(line: &str) -> Result<(Labels, &str), String> {
    let line = line.trim();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
        i += 1;
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    if i > 0 {
        pairs.push(("__name__".into(), line[..i].to_string()));
    }
    if b.get(i) == Some(&b'{') {
        i += 1;
        loop {
            while i < b.len() && (b[i] == b' ' || b[i] == b',' || b[i] == b'\t') {
                i += 1;
            }
            if b.get(i) == Some(&b'}') {
                i += 1;
                break;
            }
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let name = line[start..i].to_string();
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            if b.get(i) != Some(&b'=') {
                return Err(format!("bad label matcher in {line:?}"));
            }
            i += 1;
            while i < b.len() && b[i] == b' ' {
                i += 1;
            }
            let q = *b.get(i).ok_or("unterminated labels")?;
            if q != b'"' && q != b'\'' && q != b'`' {
                return Err(format!("expected quoted label value in {line:?}"));
            }
            i += 1;
            let mut val = String::new();
            loop {
                let c = line[i..].chars().next().ok_or("unterminated label value")?;
                i += c.len_utf8();
                if c as u32 == u32::from(q) {
                    break;
                }
                if c == '\\' && q != b'`' {
                    let e = line[i..].chars().next().ok_or("bad escape")?;
                    i += e.len_utf8();
                    val.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => other,
                    });
                } else {
                    val.push(c);
                }
            }
            pairs.push((name, val));
        }
    }
    Ok((Labels::from_pairs(&pairs), &line[i..]))
}

fn expand_value(tok: &str, out: &mut Vec<Option<f64>>) -> Result<(), String> {
    if tok == "_" {
        out.push(None);
        return Ok(());
    }
    if tok == "stale" {
        out.push(Some(f64::from_bits(STALE_NAN_BITS)));
        return Ok(());
    }
    // `axN` repetition takes precedence over hex (`0x10` is ten zeros, as in Prometheus).
    let repeat =
        tok.rsplit_once('x').filter(|(h, n)| !h.is_empty() && !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()));
    let Some((head, times)) = repeat else {
        let v = parse_go_float(tok).ok_or_else(|| format!("bad value {tok:?}"))?;
        out.push(Some(v));
        return Ok(());
    };
    let times: usize = times.parse().map_err(|_| format!("bad value {tok:?}"))?;
    if head == "_" {
        out.extend(std::iter::repeat_n(None, times));
        return Ok(());
    }
    if head == "stale" {
        out.extend(std::iter::repeat_n(Some(f64::from_bits(STALE_NAN_BITS)), times + 1));
        return Ok(());
    }
    // Split `a+b` / `a-b` at a sign that is not at the start and not an exponent sign.
    let hb = head.as_bytes();
    let split = (1..hb.len()).find(|&j| (hb[j] == b'+' || hb[j] == b'-') && !matches!(hb[j - 1], b'e' | b'E'));
    let (a, step) = match split {
        Some(j) => {
            let a = parse_go_float(&head[..j]).ok_or_else(|| format!("bad value {tok:?}"))?;
            let s = parse_go_float(&head[j + 1..]).ok_or_else(|| format!("bad value {tok:?}"))?;
            (a, if hb[j] == b'-' { -s } else { s })
        }
        None => (parse_go_float(head).ok_or_else(|| format!("bad value {tok:?}"))?, 0.0),
    };
    let mut k = a;
    for _ in 0..=times {
        out.push(Some(k));
        k += step;
    }
    Ok(())
}

/// Parses a Prometheus duration (`5m`, `1h30m`) to ms.
fn parse_dur(s: &str) -> Result<i64, String> {
    crate::api::params::parse_prom_duration(s).ok_or_else(|| format!("bad duration {s:?}"))
}

/// `almost.Equal(a, b, 1e-6)`.
pub fn almost_equal(a: f64, b: f64) -> bool {
    const EPS: f64 = 1e-6;
    const MIN_NORMAL: f64 = 2.2250738585072014e-308;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < EPS * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < EPS
}

/// Runs one test file's text; `name` prefixes case ids.
pub fn run_file(name: &str, text: &str, st: &mut dyn TestStorage) -> Result<Vec<CaseResult>, String> {
    let lines: Vec<(usize, String)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let t = l.trim();
            (i + 1, if t.starts_with('#') { String::new() } else { t.to_string() })
        })
        .collect();
    let engine = Engine::new(EngineOptions { max_samples: 10_000, ..EngineOptions::default() });
    let mut results = Vec::new();
    let mut i = 0;
    let mut has_histograms = false;
    st.clear();
    while i < lines.len() {
        let (lno, line) = (&lines[i].0, lines[i].1.clone());
        i += 1;
        if line.is_empty() {
            continue;
        }
        // The block: following non-empty lines.
        let mut block = Vec::new();
        let is_cmd = |l: &str| {
            let w = l.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
            w == "clear" || w == "load" || w.starts_with("eval")
        };
        let takes_block = !line.eq_ignore_ascii_case("clear");
        while takes_block && i < lines.len() && !lines[i].1.is_empty() && !is_cmd(&lines[i].1) {
            block.push(lines[i].1.clone());
            i += 1;
        }
        let lower = line.to_ascii_lowercase();
        let word = lower.split_whitespace().next().unwrap_or("");
        match word {
            "clear" => {
                st.clear();
                has_histograms = false;
            }
            "load" => {
                let step = parse_dur(line.split_whitespace().nth(1).unwrap_or(""))?;
                for l in &block {
                    let (labels, vals) = parse_series_values(l).map_err(|e| format!("{name}:{lno}: {e}"))?;
                    for (k, v) in vals.into_iter().enumerate() {
                        let t = k as i64 * step;
                        let res = match v {
                            Some(TestValue::Float(v)) => st.add(&labels, t, v),
                            Some(TestValue::Histogram(h)) => st.add_histogram(&labels, t, h),
                            None => Ok(()),
                        };
                        match res {
                            Err(e) if e == NO_HISTOGRAMS => has_histograms = true,
                            r => r.map_err(|e| format!("{name}:{lno}: {e}"))?,
                        }
                    }
                }
                st.commit()?;
            }
            w if w.starts_with("eval") => {
                let id = format!("{name}:{lno}");
                let (query, outcome) = run_eval(&engine, &line, &block, st, has_histograms);
                results.push(CaseResult { id, query, outcome });
            }
            other => return Err(format!("{name}:{lno}: unknown command {other:?}")),
        }
    }
    Ok(results)
}

fn run_eval(
    engine: &Engine,
    line: &str,
    block: &[String],
    st: &dyn TestStorage,
    has_histograms: bool,
) -> (String, Outcome) {
    let mut words = line.splitn(2, char::is_whitespace);
    let cmd = words.next().unwrap_or("");
    let rest = words.next().unwrap_or("").trim_start();
    let (fail, ordered) = (cmd == "eval_fail", cmd == "eval_ordered");
    let Some(rest) = rest.strip_prefix("instant") else {
        if has_histograms {
            return (rest.to_string(), Outcome::Skip(format!("native histograms ({NO_HISTOGRAMS})")));
        }
        return run_eval_range(engine, rest, block, st, fail);
    };
    let rest = rest.trim_start();
    let Some(rest) = rest.strip_prefix("at") else {
        return (rest.to_string(), Outcome::Fail("bad eval line".into()));
    };
    let rest = rest.trim_start();
    let (at, query) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let query = query.trim().to_string();
    if has_histograms {
        return (query, Outcome::Skip(format!("native histograms ({NO_HISTOGRAMS})")));
    }
    let t = match parse_dur(at) {
        Ok(t) => t,
        Err(e) => return (query, Outcome::Fail(e)),
    };
    let expected = match parse_expected(block) {
        Ok(e) => e,
        Err(e) => return (query, Outcome::Fail(e)),
    };
    let expr = match crate::parser::parse(&query) {
        Ok(e) => e,
        Err(e) => {
            return (query, if fail { Outcome::Pass } else { Outcome::Fail(format!("parse error: {e}")) });
        }
    };
    let res = engine.instant(st.storage(), &expr, t, None);
    let v = match res {
        Err(QueryError::NotSupported(m)) => return (query, Outcome::Skip(format!("not supported: {m}"))),
        Err(e) if fail => {
            let _ = e;
            return (query, Outcome::Pass);
        }
        Err(e) => return (query, Outcome::Fail(format!("error: {e}"))),
        Ok(_) if fail => return (query, Outcome::Fail("expected an error".into())),
        Ok(v) => v,
    };
    if let Err(e) = compare(&v, &expected, ordered) {
        return (query, Outcome::Fail(e));
    }
    if ordered {
        return (query, Outcome::Pass);
    }
    // `@`-modifier re-runs: pin every selector/subquery to t and evaluate at other times.
    let mut pinned = expr.clone();
    if set_at(&mut pinned, t) {
        let times: Vec<i64> = if t == 0 { vec![-1000, 0, 1000] } else { vec![-10 * t, 0, t / 5, t, 10 * t] };
        for et in times {
            match engine.instant(st.storage(), &pinned, et, None) {
                Ok(pv) => {
                    if let Err(e) = compare(&pv, &expected, false) {
                        return (query, Outcome::Fail(format!("@ {t} evaluated at {et}: {e}")));
                    }
                }
                Err(e) => return (query, Outcome::Fail(format!("@ {t} evaluated at {et}: error: {e}"))),
            }
        }
    }
    // Range-mode re-run: the point at t of a range query t-1m..t+1m.
    if matches!(v, QueryValue::Vector { .. } | QueryValue::Scalar { .. }) {
        match engine.range(st.storage(), &expr, t - 60_000, t + 60_000, 60_000, None) {
            Ok(QueryValue::Matrix(m)) => {
                let samples: Vec<crate::engine::Sample> = m
                    .iter()
                    .filter_map(|s| {
                        let float = s.points.iter().find(|p| p.0 == t).map(|p| Sample::float(s.labels.clone(), p.1));
                        float.or_else(|| {
                            s.histograms
                                .iter()
                                .find(|p| p.0 == t)
                                .map(|p| Sample::histogram(s.labels.clone(), p.1.clone()))
                        })
                    })
                    .collect();
                let rv = if let QueryValue::Scalar { .. } = v {
                    QueryValue::Scalar { t, v: samples.first().map_or(f64::NAN, |s| s.v) }
                } else {
                    QueryValue::Vector { t, samples }
                };
                if let Err(e) = compare(&rv, &expected, false) {
                    return (query, Outcome::Fail(format!("range mode: {e}")));
                }
            }
            Ok(_) => return (query, Outcome::Fail("range mode: not a matrix".into())),
            Err(e) => return (query, Outcome::Fail(format!("range mode: error: {e}"))),
        }
    }
    (query, Outcome::Pass)
}

/// The expected results of an eval block.
fn parse_expected(block: &[String]) -> Result<Vec<Expected>, String> {
    let mut expected = Vec::new();
    for l in block {
        if let Some(v) = parse_go_float(l) {
            expected.push(Expected::Scalar(v));
        } else {
            let (labels, vals) = parse_series_values(l).map_err(|e| format!("bad expected line {l:?}: {e}"))?;
            expected.push(Expected::Sample(labels, vals));
        }
    }
    Ok(expected)
}

/// `eval range from <start> to <end> step <step> <query>`: the matrix result against the expected
/// series, point by point (`_` is no point).
fn run_eval_range(
    engine: &Engine,
    rest: &str,
    block: &[String],
    st: &dyn TestStorage,
    fail: bool,
) -> (String, Outcome) {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let ["range", "from", start, "to", end, "step", step, ..] = words.as_slice() else {
        return (rest.to_string(), Outcome::Fail("bad eval range line".into()));
    };
    let query = words.get(7..).unwrap_or_default().join(" ");
    let (start, end, step) = match (parse_dur(start), parse_dur(end), parse_dur(step)) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        _ => return (query, Outcome::Fail("bad eval range times".into())),
    };
    let expected = match parse_expected(block) {
        Ok(e) => e,
        Err(e) => return (query, Outcome::Fail(e)),
    };
    let expr = match crate::parser::parse(&query) {
        Ok(e) => e,
        Err(e) => return (query, if fail { Outcome::Pass } else { Outcome::Fail(format!("parse error: {e}")) }),
    };
    let m = match engine.range(st.storage(), &expr, start, end, step, None) {
        Err(QueryError::NotSupported(m)) => return (query, Outcome::Skip(format!("not supported: {m}"))),
        Err(_) if fail => return (query, Outcome::Pass),
        Err(e) => return (query, Outcome::Fail(format!("error: {e}"))),
        Ok(_) if fail => return (query, Outcome::Fail("expected an error".into())),
        Ok(QueryValue::Matrix(m)) => m,
        Ok(_) => return (query, Outcome::Fail("range query result is not a matrix".into())),
    };
    for s in &m {
        let Some(Expected::Sample(_, vals)) =
            expected.iter().find(|e| matches!(e, Expected::Sample(l, _) if *l == *s.labels))
        else {
            return (query, Outcome::Fail(format!("unexpected series {}", s.labels)));
        };
        let want: Vec<(i64, &TestValue)> =
            vals.iter().enumerate().filter_map(|(i, v)| Some((start + i as i64 * step, v.as_ref()?))).collect();
        let mut got: Vec<(i64, TestValue)> = s.points.iter().map(|&(t, v)| (t, TestValue::Float(v))).collect();
        got.extend(s.histograms.iter().map(|(t, h)| (*t, TestValue::Histogram(h.clone()))));
        got.sort_by_key(|p| p.0);
        if got.len() != want.len() {
            return (query, Outcome::Fail(format!("{}: expected {} points, got {got:?}", s.labels, want.len())));
        }
        for ((gt, gv), (wt, wv)) in got.iter().zip(&want) {
            if gt != wt {
                return (query, Outcome::Fail(format!("{}: expected a point at {wt}, got one at {gt}", s.labels)));
            }
            if let Err(e) = compare_value(gv, wv) {
                return (query, Outcome::Fail(format!("{} at {gt}: {e}", s.labels)));
            }
        }
    }
    if m.len() != expected.len() {
        return (query, Outcome::Fail(format!("expected {} series, got {}", expected.len(), m.len())));
    }
    (query, Outcome::Pass)
}

/// Compares a result value with an expected one as Prometheus's test runner does: floats almost
/// equal, histograms equal to the expected one without its empty buckets.
fn compare_value(got: &TestValue, want: &TestValue) -> Result<(), String> {
    match (got, want) {
        (TestValue::Float(g), TestValue::Float(w)) if almost_equal(*w, *g) => Ok(()),
        (TestValue::Histogram(g), TestValue::Histogram(w)) => {
            let mut w = w.clone();
            histogram::compact(&mut w);
            if histogram::equals(&w, g) {
                Ok(())
            } else {
                Err(format!("expected histogram {w:?}, got {g:?}"))
            }
        }
        _ => Err(format!("expected {want:?}, got {got:?}")),
    }
}

/// Functions whose result depends on the evaluation time even with step-invariant arguments.
const AT_MODIFIER_UNSAFE_FUNCTIONS: [&str; 11] = [
    "days_in_month",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "hour",
    "minute",
    "month",
    "year",
    "predict_linear",
    "time",
    "timestamp",
];

/// Sets `@ t` on every selector and outermost subquery without one (Prometheus's
/// `atModifierTestCases`); false if the expression calls an @-unsafe function.
fn set_at(e: &mut promql_parser::parser::Expr, t: i64) -> bool {
    use promql_parser::parser::{AtModifier, Expr};
    let at = || {
        let d = std::time::Duration::from_millis(t.unsigned_abs());
        Some(AtModifier::At(if t >= 0 { std::time::UNIX_EPOCH + d } else { std::time::UNIX_EPOCH - d }))
    };
    match e {
        Expr::VectorSelector(vs) => {
            if vs.at.is_none() {
                vs.at = at();
            }
            true
        }
        Expr::MatrixSelector(ms) => {
            if ms.vs.at.is_none() {
                ms.vs.at = at();
            }
            true
        }
        Expr::Subquery(sq) => {
            if sq.at.is_none() {
                sq.at = at();
            }
            !contains_unsafe(&sq.expr)
        }
        Expr::Aggregate(a) => {
            let ok = a.param.as_mut().is_none_or(|p| set_at(p, t));
            set_at(&mut a.expr, t) && ok
        }
        Expr::Unary(u) => set_at(&mut u.expr, t),
        Expr::Binary(b) => {
            let l = set_at(&mut b.lhs, t);
            set_at(&mut b.rhs, t) && l
        }
        Expr::Paren(p) => set_at(&mut p.expr, t),
        Expr::Call(c) => {
            let mut ok = !AT_MODIFIER_UNSAFE_FUNCTIONS.contains(&c.func.name);
            for a in &mut c.args.args {
                ok = set_at(a, t) && ok;
            }
            ok
        }
        _ => true,
    }
}

fn contains_unsafe(e: &promql_parser::parser::Expr) -> bool {
    let mut c = e.clone();
    !set_at(&mut c, 0)
}

fn compare(v: &QueryValue, expected: &[Expected], ordered: bool) -> Result<(), String> {
    match v {
        QueryValue::Scalar { v, .. } => match expected {
            [Expected::Scalar(e)] if almost_equal(*e, *v) => Ok(()),
            _ => Err(format!("got scalar {v}, expected {expected:?}")),
        },
        QueryValue::String { s, .. } => Err(format!("got string {s:?}, expected {expected:?}")),
        QueryValue::Vector { samples, .. } => {
            let exp: Vec<(&Labels, TestValue)> = expected
                .iter()
                .filter_map(|e| match e {
                    Expected::Sample(l, vals) => {
                        Some((l, vals.first().cloned().flatten().unwrap_or(TestValue::Float(f64::NAN))))
                    }
                    _ => None,
                })
                .collect();
            if exp.len() != expected.len() {
                return Err(format!("expected {expected:?}, got a vector of {}", samples.len()));
            }
            let got_value = |s: &Sample| match &s.h {
                Some(h) => TestValue::Histogram((**h).clone()),
                None => TestValue::Float(s.v),
            };
            let mut msg = String::new();
            if samples.len() != exp.len() {
                let _ = write!(msg, "expected {} elements, got {}: ", exp.len(), samples.len());
                for s in samples {
                    let _ = write!(msg, "{} {:?}; ", s.labels, got_value(s));
                }
                return Err(msg);
            }
            for (pos, s) in samples.iter().enumerate() {
                let Some(epos) = exp.iter().position(|(l, _)| **l == *s.labels) else {
                    return Err(format!("unexpected series {} {:?}", s.labels, got_value(s)));
                };
                let (_, ev) = &exp[epos];
                if ordered && epos != pos {
                    return Err(format!("expected {} at position {epos}, got it at {pos}", s.labels));
                }
                compare_value(&got_value(s), ev).map_err(|e| format!("{}: {e}", s.labels))?;
            }
            Ok(())
        }
        QueryValue::Matrix(m) => {
            for s in m {
                let Some(Expected::Sample(_, vals)) =
                    expected.iter().find(|e| matches!(e, Expected::Sample(l, _) if *l == *s.labels))
                else {
                    return Err(format!("unexpected series {}", s.labels));
                };
                // Floats and histograms are compared in order, each kind on its own (as Prometheus's
                // runner does for the matrix of an instant query).
                let got: Vec<f64> = s.points.iter().map(|p| p.1).collect();
                let want: Vec<f64> = vals
                    .iter()
                    .flatten()
                    .filter_map(|v| match v {
                        TestValue::Float(f) => Some(*f),
                        TestValue::Histogram(_) => None,
                    })
                    .collect();
                if got.len() != want.len() || got.iter().zip(&want).any(|(a, b)| !almost_equal(*a, *b)) {
                    return Err(format!("{}: expected {want:?}, got {got:?}", s.labels));
                }
                let want_h: Vec<&TestValue> =
                    vals.iter().flatten().filter(|v| matches!(v, TestValue::Histogram(_))).collect();
                if want_h.len() != s.histograms.len() {
                    return Err(format!(
                        "{}: expected {} histograms, got {}",
                        s.labels,
                        want_h.len(),
                        s.histograms.len()
                    ));
                }
                for ((_, h), w) in s.histograms.iter().zip(want_h) {
                    compare_value(&TestValue::Histogram(h.clone()), w).map_err(|e| format!("{}: {e}", s.labels))?;
                }
            }
            if m.len() != expected.len() {
                return Err(format!("expected {} series, got {}", expected.len(), m.len()));
            }
            Ok(())
        }
    }
}

impl TestStorage for crate::engine::mem::MemStorage {
    fn clear(&mut self) {
        crate::engine::mem::MemStorage::clear(self);
    }
    fn add(&mut self, labels: &Labels, t: i64, v: f64) -> Result<(), String> {
        crate::engine::mem::MemStorage::add(self, labels.clone(), t, v);
        Ok(())
    }
    fn add_histogram(&mut self, labels: &Labels, t: i64, h: FloatHistogram) -> Result<(), String> {
        crate::engine::mem::MemStorage::add_histogram(self, labels.clone(), t, h);
        Ok(())
    }
    fn commit(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn storage(&self) -> &dyn Storage {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_notation() {
        let (l, v) = parse_series_desc(r#"http_requests{job="api server", x="1"} 0+10x2 _ 5 -1-1x1 1e3 stale _x2"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.get("job"), Some("api server"));
        assert_eq!(l.get("__name__"), Some("http_requests"));
        assert_eq!(&v[..6], &[Some(0.0), Some(10.0), Some(20.0), None, Some(5.0), Some(-1.0)]);
        assert_eq!(v[6], Some(-2.0));
        assert_eq!(v[7], Some(1000.0));
        assert!(v[8].is_some_and(crate::engine::is_stale));
        assert_eq!(&v[9..], &[None, None]);
        let (l, v) = parse_series_desc("{a=\"b\"} 1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(l.len(), 1);
        assert_eq!(v, vec![Some(1.0)]);
    }
}

#[cfg(test)]
mod mem_tests {
    use super::*;
    use crate::engine::mem::MemStorage;

    /// Runs a DSL snippet over the in-memory storage and returns failures.
    pub(crate) fn run(text: &str) -> Vec<String> {
        let mut st = MemStorage::default();
        run_file("snippet", text, &mut st)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .filter_map(|r| match r.outcome {
                Outcome::Pass => None,
                Outcome::Fail(m) => Some(format!("{} {}: {m}", r.id, r.query)),
                Outcome::Skip(m) => Some(format!("{} {}: skipped {m}", r.id, r.query)),
            })
            .collect()
    }

    #[test]
    fn histogram_quantile_of_empty_buckets_is_nan() {
        let f = run(r#"
load 5m
	empty_bucket{le="0.1", job="job1", instance="ins1"}    0x10
	empty_bucket{le="0.2", job="job1", instance="ins1"}    0x10
	empty_bucket{le="+Inf", job="job1", instance="ins1"}   0x10

eval instant at 50m rate(empty_bucket[5m])
	{le="0.1", job="job1", instance="ins1"}    0
	{le="0.2", job="job1", instance="ins1"}    0
	{le="+Inf", job="job1", instance="ins1"}   0

eval instant at 50m histogram_quantile(0.2, rate(empty_bucket[5m]))
	{instance="ins1", job="job1"} NaN
"#);
        assert!(f.is_empty(), "{f:#?}");
    }

    /// Series for the native-histogram cases below: `h` at minute k has count 4(k+1), sum 10(k+1)
    /// and buckets [k+1, 2(k+1), k+1] at (0.5, 1], (1, 2], (2, 4].
    const HIST_LOAD: &str = r#"
load 1m
	h {{schema:0 count:4 sum:10 buckets:[1 2 1]}}+{{schema:0 count:4 sum:10 buckets:[1 2 1]}}x4
	mixed{kind="h"} {{schema:0 count:1 sum:1 buckets:[1]}}x4
	mixed{kind="f"} 1x4
	r {{schema:0 count:4 sum:4 buckets:[4]}} {{schema:0 count:1 sum:1 buckets:[1]}}
	s {{schema:0 count:1 sum:1 buckets:[1]}} stale
	flip {{schema:0 count:1 sum:1 buckets:[1]}} 2 {{schema:0 count:3 sum:3 buckets:[3]}}
"#;

    fn run_hist(cases: &str) {
        let f = run(&format!("{HIST_LOAD}\n{cases}"));
        assert!(f.is_empty(), "{f:#?}");
    }

    #[test]
    fn histogram_arithmetic_with_scalars_and_histograms() {
        run_hist(
            r#"
eval instant at 2m h * 2
	{} {{schema:0 count:24 sum:60 buckets:[6 12 6]}}

eval instant at 2m 2 * h
	{} {{schema:0 count:24 sum:60 buckets:[6 12 6]}}

eval instant at 2m h / 2
	{} {{schema:0 count:6 sum:15 buckets:[1.5 3 1.5]}}

eval instant at 2m h + h
	{} {{schema:0 count:24 sum:60 buckets:[6 12 6]}}

eval instant at 2m h - h
	{} {{schema:0 count:0 sum:0}}

eval instant at 4m -h
	{} {{schema:0 count:-20 sum:-50 z_bucket:-0 buckets:[-5 -10 -5]}}

eval instant at 2m h == h
	h {{schema:0 count:12 sum:30 buckets:[3 6 3]}}
"#,
        );
    }

    #[test]
    fn histograms_are_dropped_where_prometheus_drops_them() {
        run_hist(
            r#"
eval instant at 2m h > 1

eval instant at 2m h + 1

eval instant at 2m 2 / h

eval instant at 2m abs(h)

eval instant at 4m max_over_time(h[2m])

eval instant at 2m sum(mixed)

eval instant at 2m avg(mixed)
"#,
        );
    }

    #[test]
    fn aggregations_over_histograms() {
        run_hist(
            r#"
eval instant at 2m count(mixed)
	{} 2

eval instant at 2m group(mixed)
	{} 1

eval instant at 2m max(mixed)
	{} 1

eval instant at 2m sum by (kind) (mixed)
	{kind="h"} {{schema:0 count:1 sum:1 buckets:[1]}}
	{kind="f"} 1

eval instant at 2m avg(h)
	{} {{schema:0 count:12 sum:30 buckets:[3 6 3]}}

eval instant at 2m sum(h)
	{} {{schema:0 count:12 sum:30 buckets:[3 6 3]}}

eval instant at 2m sum(mixed{kind="h"} + ignoring(kind) h)
	{} {{schema:0 count:13 sum:31 buckets:[4 6 3]}}
"#,
        );
    }

    #[test]
    fn range_functions_over_histograms() {
        run_hist(
            r#"
eval instant at 4m increase(h[2m])
	{} {{schema:0 count:8 sum:20 buckets:[2 4 2]}}

eval instant at 4m delta(h[2m])
	{} {{schema:0 count:8 sum:20 buckets:[2 4 2]}}

eval instant at 4m histogram_count(rate(h[2m]))
	{} 0.06666666666666667

eval instant at 4m idelta(h[2m])
	{} {{schema:0 count:4 sum:10 buckets:[1 2 1]}}

eval instant at 4m histogram_count(irate(h[2m]))
	{} 0.06666666666666667

eval instant at 1m increase(r[1m])
	{} {{schema:0 count:1 sum:1 buckets:[1]}}

eval instant at 1m irate(r[1m])
	{} {{schema:0 count:0.016666666666666666 sum:0.016666666666666666 buckets:[0.016666666666666666]}}

eval instant at 4m sum_over_time(h[2m])
	{} {{schema:0 count:48 sum:120 buckets:[12 24 12]}}

eval instant at 4m histogram_count(avg_over_time(h[2m]))
	{} 16

eval instant at 4m count_over_time(mixed[2m])
	{kind="h"} 3
	{kind="f"} 3

eval instant at 4m last_over_time(h[2m])
	h {{schema:0 count:20 sum:50 buckets:[5 10 5]}}

eval instant at 4m present_over_time(h[2m])
	{} 1

eval instant at 4m absent_over_time(h[2m])

eval instant at 1m resets(r[1m])
	{} 1

eval instant at 4m resets(h[4m])
	{} 0

eval instant at 2m resets(flip[2m])
	{} 0

eval instant at 4m changes(h[4m])

eval instant at 2m h[1m]
	h {{schema:0 count:8 sum:20 buckets:[2 4 2]}} {{schema:0 count:12 sum:30 buckets:[3 6 3]}}

eval instant at 2m mixed[1m]
	mixed{kind="h"} {{schema:0 count:1 sum:1 buckets:[1]}}x1
	mixed{kind="f"} 1 1

eval instant at 4m absent_over_time(nothing[2m])
	{} 1

eval instant at 4m last_over_time(h[2m:1m])
	h {{schema:0 count:20 sum:50 buckets:[5 10 5]}}

eval instant at 4m increase(h[2m:1m])
	{} {{schema:0 count:8 sum:20 buckets:[2 4 2]}}
"#,
        );
    }

    #[test]
    fn histogram_selectors_offsets_and_staleness() {
        run_hist(
            r#"
eval instant at 4m h offset 2m
	h {{schema:0 count:12 sum:30 buckets:[3 6 3]}}

eval instant at 4m h @ 1m
	h {{schema:0 count:8 sum:20 buckets:[2 4 2]}}

eval instant at 30s s
	s {{schema:0 count:1 sum:1 buckets:[1]}}

eval instant at 1m s

eval instant at 4m timestamp(h)
	{} 240

eval instant at 4m histogram_quantile(0.5, h)
	{} 1.5

eval range from 0 to 2m step 1m h
	h {{schema:0 count:4 sum:10 buckets:[1 2 1]}}+{{schema:0 count:4 sum:10 buckets:[1 2 1]}}x2

eval range from 0 to 2m step 1m histogram_sum(h)
	{} 10+10x2
"#,
        );
    }

    /// The annotations of `q` at `t` over [`HIST_LOAD`].
    fn notes(q: &str, t: i64) -> Vec<String> {
        let mut st = crate::engine::mem::MemStorage::default();
        run_file("load", HIST_LOAD, &mut st).unwrap_or_else(|e| panic!("{e}"));
        let expr = crate::parser::parse(q).unwrap_or_else(|e| panic!("{e}"));
        let engine = Engine::new(EngineOptions::default());
        engine.instant_stats(&st, &expr, t, None).unwrap_or_else(|e| panic!("{e}")).1.annotations
    }

    #[test]
    fn dropped_histograms_are_annotated() {
        use crate::engine::annotations as a;
        assert_eq!(notes("sum(mixed)", 120_000), vec![a::MIXED_FLOATS_HISTOGRAMS_AGG.to_string()]);
        assert_eq!(notes("max(mixed)", 120_000), vec![a::histogram_ignored_in_aggregation("max")]);
        assert_eq!(notes("h + 1", 120_000), vec![a::incompatible_types_in_binop("+", "histogram", "float")]);
        assert_eq!(
            notes("h > on() mixed{kind=\"f\"}", 120_000),
            vec![a::incompatible_types_in_binop(">", "histogram", "float")]
        );
        assert_eq!(notes("rate(flip[2m])", 120_000), vec![a::mixed_floats_histograms("flip")]);
        assert_eq!(notes("delta(h[2m])", 120_000), vec![a::not_gauge("h")]);
        assert_eq!(notes("sum(h) + sum(rate(h[2m]))", 120_000), Vec::<String>::new());
    }
}
