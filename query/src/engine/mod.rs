//! The PromQL evaluator (Prometheus 2.x semantics).
//!
//! Every expression is evaluated over a range of steps (`start..=end` by `interval`; an instant
//! query is a range of one step) into a value per step, like Prometheus's `rangeEval`. Selectors
//! read one series at a time from a [`Storage`] and decode only the samples their steps need;
//! range functions slide a window over those samples per step. Both hand each series' values to a
//! sink ([`stream`]): per-step vectors, or an aggregation folding them in directly. This module
//! owns the tree walk, selectors, lookback/staleness, offset/`@` and subqueries; the operations
//! live in [`functions`], [`aggregate`] and [`binary`].

pub mod aggregate;
pub mod annotations;
pub mod binary;
pub mod functions;
pub(crate) mod gosort;
pub mod histogram;
#[doc(hidden)]
pub mod mem;
pub(crate) mod stream;
pub mod value;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::Matcher;
use promql_parser::parser::{AtModifier, Expr, Offset, VectorSelector};

use crate::error::{QueryError, Result};
use stream::{Collect, SeriesSink};
pub use value::{
    format_float, format_time, is_stale, write_float, write_time, FloatHistogram, Labels, QueryValue, Sample, Series,
    METRIC_NAME,
};

/// Engine limits and defaults (Prometheus flag names in parentheses).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// `--query.lookback-delta` (5m).
    pub lookback_delta: Duration,
    /// `--query.timeout` (2m).
    pub timeout: Duration,
    /// `--query.max-samples` (50 000 000).
    pub max_samples: usize,
    /// Maximum points per series of a range query (11 000).
    pub max_points_per_series: usize,
    /// Count queryable samples per step for [`EvalStats::per_step`]
    /// (`--enable-feature=promql-per-step-stats`).
    pub per_step_stats: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            lookback_delta: Duration::from_secs(300),
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            max_points_per_series: 11_000,
            per_step_stats: false,
        }
    }
}

/// A series handed out by [`Storage`]: labels plus lazily decoded samples. Range functions read
/// the series of a selector from several threads.
pub trait StorageSeries: Send + Sync {
    /// The series' labels.
    fn labels(&self) -> Labels;
    /// Appends the samples with `mint <= t <= maxt` (sorted, unique timestamps) to `out`. An error
    /// means the storage could not read all of them: see [`SeriesSet::read_failed`].
    fn samples(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) -> Result<()>;
    /// Appends the native histogram samples with `mint <= t <= maxt` (sorted, unique timestamps)
    /// to `out`; a stale marker is a histogram whose sum is the stale NaN. The default is a series
    /// without histograms.
    fn histograms(&self, _mint: i64, _maxt: i64, _out: &mut Vec<(i64, FloatHistogram)>) -> Result<()> {
        Ok(())
    }
    /// [`StorageSeries::samples`] then [`StorageSeries::histograms`]; a storage may read both at once.
    fn read(
        &self,
        mint: i64,
        maxt: i64,
        out: &mut Vec<(i64, f64)>,
        hout: &mut Vec<(i64, FloatHistogram)>,
    ) -> Result<()> {
        self.samples(mint, maxt, out)?;
        self.histograms(mint, maxt, hout)
    }
    /// A hint that the series will be read soon: the storage may start fetching its state.
    fn prefetch(&self) {}
    /// A hint given after [`StorageSeries::prefetch`], closer to the read: the storage may fetch
    /// what the series' state points to.
    fn prefetch_chunks(&self) {}
}

/// The series a selector matched, owned by the storage in one piece (not one allocation per
/// series: a selector over 100k series would otherwise hold 100k boxes while it is evaluated).
pub trait SeriesSet: Send + Sync {
    /// Number of series.
    fn len(&self) -> usize;
    /// The `i`th series; `None` past the end.
    fn get(&self, i: usize) -> Option<&dyn StorageSeries>;
    /// No series.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// What a series whose samples could not be read does to the query: fails it (the default), or,
    /// where the caller asked for partial answers, leaves the series out and keeps a warning.
    fn read_failed(&self, e: QueryError) -> Result<()> {
        Err(e)
    }
}

impl<S: StorageSeries> SeriesSet for Vec<S> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn get(&self, i: usize) -> Option<&dyn StorageSeries> {
        self.as_slice().get(i).map(|s| s as &dyn StorageSeries)
    }
}

impl<'a> dyn SeriesSet + 'a {
    /// The series in order.
    pub fn iter(&self) -> impl Iterator<Item = &dyn StorageSeries> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// What [`Storage`] returns for a selector.
pub type Selected<'a> = Box<dyn SeriesSet + 'a>;

/// What the evaluator reads from.
pub trait Storage {
    /// Series matching all matchers with data in `[mint, maxt]`, sorted by labels. Their label
    /// sets are distinct (a series in several blocks and the head is one series).
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Selected<'_>>;

    /// [`Storage::select`] in any order, for callers whose result does not depend on it; it can
    /// skip sorting.
    fn select_unordered(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Selected<'_>> {
        self.select(matchers, mint, maxt)
    }
}

/// Per-step value of an expression.
pub(crate) enum Val {
    /// One value per step.
    Scalar(Vec<f64>),
    /// One vector per step.
    Vector(Vec<Vec<Sample>>),
    /// A range vector (only at the top level of an instant query).
    Matrix(Vec<Series>),
    /// A string literal.
    Str(String),
}

/// What an evaluation measured, for the query API's `stats` parameter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalStats {
    /// Samples the selectors took from storage, as Prometheus counts them: one per series and step
    /// with a value for an instant selector, and for a range function the samples in each step's
    /// window (a sample counts once per window holding it). A range selector evaluated whole (a
    /// matrix result, or a range function outside the windowed path) counts each sample once.
    pub queryable_samples: usize,
    /// The most samples the evaluation held, as counted toward `max_samples`, or in its result.
    pub peak_samples: usize,
    /// Time spent sorting the result's series.
    pub sort_time: Duration,
    /// Warnings and infos about the input (Prometheus's annotations), e.g. samples of a kind an
    /// operation ignores.
    pub annotations: Vec<String>,
    /// With [`EngineOptions::per_step_stats`]: `(step time in ms, queryable samples)` of each step.
    /// Samples of subqueries, and of range selectors evaluated whole in a range query, are counted
    /// in the total only.
    pub per_step: Option<Vec<(i64, usize)>>,
}

/// Evaluates PromQL expressions with given options.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    opts: EngineOptions,
    deadline: Option<Instant>,
}

impl Engine {
    /// An engine with these options; each evaluation may run for `opts.timeout` from its start.
    pub fn new(opts: EngineOptions) -> Engine {
        Engine { opts, deadline: None }
    }

    /// The engine with a fixed deadline for its evaluations (instead of `timeout` from each
    /// evaluation's start): a request's deadline counts from its arrival.
    pub fn with_deadline(mut self, deadline: Instant) -> Engine {
        self.deadline = Some(deadline);
        self
    }

    /// The options.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Evaluates `expr` at time `t` (ms).
    pub fn instant(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        t: i64,
        lookback: Option<Duration>,
    ) -> Result<QueryValue> {
        self.instant_stats(storage, expr, t, lookback).map(|(v, _)| v)
    }

    /// [`Engine::instant`] with what the evaluation measured.
    pub fn instant_stats(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        t: i64,
        lookback: Option<Duration>,
    ) -> Result<(QueryValue, EvalStats)> {
        let mut ev = self.evaluator(storage, t, t, 1, lookback);
        let v = ev.eval(expr)?;
        let v = match v {
            Val::Scalar(s) => QueryValue::Scalar { t, v: s.first().copied().unwrap_or(f64::NAN) },
            Val::Str(s) => QueryValue::String { t, s },
            Val::Vector(mut vs) => {
                let samples = vs.pop().unwrap_or_default();
                check_duplicates(&samples)?;
                QueryValue::Vector { t, samples }
            }
            Val::Matrix(m) => QueryValue::Matrix(m),
        };
        let n = self.check_result_size(&v)?;
        Ok((v, ev.stats(n, Duration::ZERO)))
    }

    /// Evaluates `expr` at `start, start+step, … <= end` (ms); the result is a matrix.
    pub fn range(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        lookback: Option<Duration>,
    ) -> Result<QueryValue> {
        self.range_stats(storage, expr, start, end, step, lookback).map(|(v, _)| v)
    }

    /// [`Engine::range`] with what the evaluation measured.
    pub fn range_stats(
        &self,
        storage: &dyn Storage,
        expr: &Expr,
        start: i64,
        end: i64,
        step: i64,
        lookback: Option<Duration>,
    ) -> Result<(QueryValue, EvalStats)> {
        if step <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
            ));
        }
        let mut ev = self.evaluator(storage, start, end, step, lookback);
        // A selector or a streamable range function at the top builds the result series directly.
        let series_out = |ev: &Evaluator<'_>| stream::SeriesOut::new((0..ev.steps()).map(|k| ev.ts(k)).collect());
        let streamed = match unwrap_parens(expr) {
            Expr::VectorSelector(vs) => {
                let mut sink = series_out(&ev);
                ev.stream_vector_selector(vs, false, &mut sink)?;
                Some(sink)
            }
            Expr::Call(c) => {
                let mut sink = series_out(&ev);
                functions::stream_range_call(&mut ev, c, &mut sink)?.then_some(sink)
            }
            _ => None,
        };
        if let Some(sink) = streamed {
            let mut m = sink.finish();
            ev.check_timeout()?;
            let sorting = Instant::now();
            m.sort_by(|a, b| a.labels.cmp(&b.labels));
            let sort_time = sorting.elapsed();
            let v = QueryValue::Matrix(m);
            let n = self.check_result_size(&v)?;
            return Ok((v, ev.stats(n, sort_time)));
        }
        let v = ev.eval(expr)?;
        let mut sort_time = Duration::ZERO;
        let v = match v {
            Val::Scalar(s) => Ok(QueryValue::Matrix(vec![Series::floats(
                Arc::new(Labels::empty()),
                s.into_iter().enumerate().map(|(k, v)| (ev.ts(k), v)).collect(),
            )])),
            Val::Vector(steps) => {
                let mut m = ev.to_series(steps, true)?;
                ev.check_timeout()?;
                let sorting = Instant::now();
                m.sort_by(|a, b| a.labels.cmp(&b.labels));
                sort_time = sorting.elapsed();
                Ok(QueryValue::Matrix(m))
            }
            Val::Matrix(_) => Err(QueryError::BadData(
                "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
            )),
            Val::Str(_) => Err(QueryError::BadData(
                "invalid expression type \"string\" for range query, must be Scalar or instant Vector".into(),
            )),
        }?;
        let n = self.check_result_size(&v)?;
        Ok((v, ev.stats(n, sort_time)))
    }

    /// Errors if a result holds more samples than `max_samples` (as Prometheus, which counts a
    /// query's result among the samples it holds): the limit also bounds the response's size.
    /// Returns the result's size.
    fn check_result_size(&self, v: &QueryValue) -> Result<usize> {
        let n = match v {
            QueryValue::Vector { samples, .. } => samples.len(),
            QueryValue::Matrix(m) => m.iter().map(Series::len).fold(0usize, usize::saturating_add),
            QueryValue::Scalar { .. } | QueryValue::String { .. } => 1,
        };
        if n > self.opts.max_samples {
            return Err(QueryError::TooManySamples("query execution"));
        }
        Ok(n)
    }

    fn evaluator<'a>(
        &self,
        storage: &'a dyn Storage,
        start: i64,
        end: i64,
        step: i64,
        lookback: Option<Duration>,
    ) -> Evaluator<'a> {
        let lookback = lookback.filter(|d| !d.is_zero()).unwrap_or(self.opts.lookback_delta);
        Evaluator {
            storage,
            start,
            end,
            interval: step,
            query_start: start,
            query_end: end,
            lookback: dur_ms(&lookback),
            deadline: self.deadline.unwrap_or_else(|| Instant::now() + self.opts.timeout),
            max_samples: self.opts.max_samples,
            cur_samples: 0,
            queryable_samples: 0,
            per_step: self.opts.per_step_stats.then(|| vec![0; usize::try_from((end - start) / step + 1).unwrap_or(0)]),
            query_interval: step,
            subquery_step: 60_000,
            annotations: Arc::default(),
        }
    }
}

/// Errors with Prometheus's timeout message once `deadline` has passed.
pub(crate) fn check_deadline(deadline: Instant) -> Result<()> {
    if Instant::now() > deadline {
        return Err(QueryError::Timeout("expression evaluation"));
    }
    Ok(())
}

/// Milliseconds of a duration.
pub(crate) fn dur_ms(d: &Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => -dur_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => dur_ms(&d),
        Err(e) => -dur_ms(&e.duration()),
    }
}

/// Errors with Prometheus's message if a vector holds one label set twice.
pub(crate) fn check_duplicates(samples: &[Sample]) -> Result<()> {
    if samples.len() < 2 {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(samples.len());
    for s in samples {
        if !seen.insert(&*s.labels) {
            return Err(QueryError::exec("vector cannot contain metrics with the same labelset"));
        }
    }
    Ok(())
}

/// The window context of one step of a range function.
pub struct Window<'a> {
    /// Samples with `range_start <= t <= range_end`.
    pub points: &'a [(i64, f64)],
    /// Start of the range (ms).
    pub range_start: i64,
    /// End of the range (ms), i.e. the selector's evaluation time after offset/@.
    pub range_end: i64,
    /// The outer step's evaluation time (ms).
    pub eval_t: i64,
}

pub(crate) struct Evaluator<'a> {
    storage: &'a dyn Storage,
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) interval: i64,
    query_start: i64,
    query_end: i64,
    lookback: i64,
    deadline: Instant,
    max_samples: usize,
    cur_samples: usize,
    /// See [`EvalStats::queryable_samples`].
    queryable_samples: usize,
    /// See [`EvalStats::per_step`]: indexed by the query's steps.
    per_step: Option<Vec<usize>>,
    query_interval: i64,
    subquery_step: i64,
    /// What the evaluation noticed about its input.
    pub(crate) annotations: Arc<annotations::Annotations>,
}

impl Evaluator<'_> {
    pub(crate) fn steps(&self) -> usize {
        usize::try_from((self.end - self.start) / self.interval + 1).unwrap_or(0)
    }

    pub(crate) fn ts(&self, k: usize) -> i64 {
        self.start + self.interval * k as i64
    }

    pub(crate) fn check_timeout(&self) -> Result<()> {
        check_deadline(self.deadline)
    }

    /// When the evaluation must end.
    pub(crate) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// What the evaluation measured, given its result's size.
    fn stats(&self, result_samples: usize, sort_time: Duration) -> EvalStats {
        EvalStats {
            queryable_samples: self.queryable_samples,
            peak_samples: self.cur_samples.max(result_samples),
            sort_time,
            annotations: self.annotations.to_vec(),
            per_step: self.per_step.as_ref().map(|counts| {
                counts
                    .iter()
                    .enumerate()
                    .map(|(k, &n)| (self.query_start + self.query_interval * k as i64, n))
                    .collect()
            }),
        }
    }

    /// The per-step counts, when wanted and the evaluator is on the query's own steps (not a
    /// subquery's).
    fn per_step_counts(&mut self) -> Option<&mut Vec<usize>> {
        let own_steps =
            self.start == self.query_start && self.end == self.query_end && self.interval == self.query_interval;
        self.per_step.as_mut().filter(|_| own_steps)
    }

    /// Adds `n` queryable samples at step `k`.
    fn count_at_step(&mut self, k: usize, n: usize) {
        if let Some(c) = self.per_step_counts().and_then(|c| c.get_mut(k)) {
            *c = c.saturating_add(n);
        }
    }

    pub(crate) fn add_samples(&mut self, n: usize) -> Result<()> {
        self.cur_samples = self.cur_samples.saturating_add(n);
        if self.cur_samples > self.max_samples {
            return Err(QueryError::TooManySamples("query execution"));
        }
        Ok(())
    }

    /// Evaluation time of a selector at step `k`, after `@` and offset.
    fn sel_time(&self, k: usize, at: &Option<AtModifier>, offset: &Option<Offset>) -> i64 {
        let base = match at {
            None => self.ts(k),
            Some(AtModifier::Start) => self.query_start,
            Some(AtModifier::End) => self.query_end,
            Some(AtModifier::At(t)) => system_time_ms(t),
        };
        // `@` takes any timestamp and offsets any duration: at the ends of the i64 range the
        // selector's time saturates instead of overflowing (as do the window starts below).
        base.saturating_sub(offset_ms(offset))
    }

    pub(crate) fn eval(&mut self, expr: &Expr) -> Result<Val> {
        self.check_timeout()?;
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(vec![n.val; self.steps()])),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Val::Scalar(v) => Ok(Val::Scalar(v.into_iter().map(|x| -x).collect())),
                Val::Vector(steps) => {
                    let mut cache: HashMap<*const Labels, Arc<Labels>> = HashMap::new();
                    let mut out = Vec::with_capacity(steps.len());
                    for vec in steps {
                        self.check_timeout()?;
                        let v: Vec<Sample> = vec
                            .into_iter()
                            .map(|s| {
                                let labels = drop_name_cached(&mut cache, &s.labels);
                                match s.h {
                                    Some(mut h) => {
                                        histogram::mul(&mut h, -1.0);
                                        Sample { labels, v: 0.0, h: Some(h) }
                                    }
                                    None => Sample::float(labels, -s.v),
                                }
                            })
                            .collect();
                        check_duplicates(&v)?;
                        out.push(v);
                    }
                    Ok(Val::Vector(out))
                }
                _ => Err(QueryError::BadData(
                    "unary expression only allowed on expressions of type scalar or instant vector".into(),
                )),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.eval_vector_selector(vs, false)?)),
            Expr::MatrixSelector(ms) => {
                let t = self.sel_time(0, &ms.vs.at, &ms.vs.offset);
                let range = dur_ms(&ms.range);
                let series = self.select_range(&ms.vs, t.saturating_sub(range), t)?;
                Ok(Val::Matrix(series.into_iter().filter(|s| !s.is_empty()).collect()))
            }
            Expr::Subquery(sq) => {
                let t = self.sel_time(0, &sq.at, &sq.offset);
                let range = dur_ms(&sq.range);
                let series = self.eval_subquery_series(sq, t, t)?;
                let mut out: Vec<Series> = series
                    .into_iter()
                    .map(|mut s| {
                        s.points.retain(|&(pt, _)| pt >= t.saturating_sub(range) && pt <= t);
                        s.histograms.retain(|(pt, _)| *pt >= t.saturating_sub(range) && *pt <= t);
                        s
                    })
                    .filter(|s| !s.is_empty())
                    .collect();
                out.sort_by(|a, b| a.labels.cmp(&b.labels));
                Ok(Val::Matrix(out))
            }
            Expr::Call(c) => functions::eval_call(self, c),
            Expr::Aggregate(a) => aggregate::eval_aggregate(self, a),
            Expr::Binary(b) => binary::eval_binary(self, b),
            Expr::Extension(_) => Err(QueryError::unsupported("extension expressions")),
        }
    }

    /// Matchers of a selector, with the metric name as a matcher.
    fn matchers(vs: &VectorSelector) -> Result<Vec<Matcher>> {
        if !vs.matchers.or_matchers.is_empty() {
            return Err(QueryError::unsupported("\"or\" inside label matchers"));
        }
        let mut ms = vs.matchers.matchers.clone();
        if let Some(name) = &vs.name {
            if !ms
                .iter()
                .any(|m| m.name == METRIC_NAME && m.op == promql_parser::label::MatchOp::Equal && &m.value == name)
            {
                ms.push(Matcher::new(promql_parser::label::MatchOp::Equal, METRIC_NAME, name));
            }
        }
        Ok(ms)
    }

    /// Instant vector selector: newest sample within the lookback per step; stale → absent.
    /// With `timestamps`, the values are the samples' timestamps in seconds (for `timestamp()`).
    pub(crate) fn eval_vector_selector(&mut self, vs: &VectorSelector, timestamps: bool) -> Result<Vec<Vec<Sample>>> {
        let mut sink = Collect::new(self.steps());
        self.stream_vector_selector(vs, timestamps, &mut sink)?;
        sink.finish()
    }

    /// [`Evaluator::eval_vector_selector`] handing each series' values to `sink` instead of
    /// building per-step vectors.
    pub(crate) fn stream_vector_selector(
        &mut self,
        vs: &VectorSelector,
        timestamps: bool,
        sink: &mut dyn SeriesSink,
    ) -> Result<()> {
        let n = self.steps();
        let times: Vec<i64> = (0..n).map(|k| self.sel_time(k, &vs.at, &vs.offset)).collect();
        let (Some(&lo), Some(&hi)) = (times.iter().min(), times.iter().max()) else {
            return Ok(());
        };
        let monotonic = times.windows(2).all(|w| w[0] <= w[1]);
        let matchers = Self::matchers(vs)?;
        let mint = lo.saturating_sub(self.lookback);
        let series = if sink.needs_order() {
            self.storage.select(&matchers, mint, hi)?
        } else {
            self.storage.select_unordered(&matchers, mint, hi)?
        };
        sink.begin(series.len());
        let mut buf = Vec::new();
        let mut hbuf = Vec::new();
        let mut outs: Vec<(usize, f64)> = Vec::new();
        for (i, s) in series.iter().enumerate() {
            prefetch_ahead(series.as_ref(), i);
            self.check_timeout()?;
            buf.clear();
            hbuf.clear();
            if let Err(e) = s.read(mint, hi, &mut buf, &mut hbuf) {
                series.read_failed(e)?;
                continue;
            }
            if !hbuf.is_empty() {
                self.select_mixed(&times, &buf, &hbuf, timestamps, &s.labels(), sink)?;
                continue;
            }
            if buf.is_empty() {
                continue;
            }
            outs.clear();
            let mut idx = 0usize;
            for (k, &t) in times.iter().enumerate() {
                // idx = number of samples with ts <= t.
                if monotonic {
                    while idx < buf.len() && buf[idx].0 <= t {
                        idx += 1;
                    }
                } else {
                    idx = buf.partition_point(|p| p.0 <= t);
                }
                let Some(&(st, sv)) = idx.checked_sub(1).and_then(|i| buf.get(i)) else {
                    continue;
                };
                if st < t.saturating_sub(self.lookback) || is_stale(sv) {
                    continue;
                }
                outs.push((k, if timestamps { st as f64 / 1000.0 } else { sv }));
            }
            self.queryable_samples = self.queryable_samples.saturating_add(outs.len());
            if self.per_step.is_some() {
                for &(k, _) in &outs {
                    self.count_at_step(k, 1);
                }
            }
            self.add_samples(outs.len())?;
            if !outs.is_empty() {
                sink.series(&s.labels(), false, &outs)?;
            }
        }
        Ok(())
    }

    /// [`Evaluator::stream_vector_selector`] for a series with histograms: at each step, the newest
    /// sample of either kind within the lookback, unless it is a stale marker.
    fn select_mixed(
        &mut self,
        times: &[i64],
        floats: &[(i64, f64)],
        hists: &[(i64, FloatHistogram)],
        timestamps: bool,
        labels: &Labels,
        sink: &mut dyn SeriesSink,
    ) -> Result<()> {
        let mut fouts: Vec<(usize, f64)> = Vec::new();
        let mut houts: Vec<(usize, FloatHistogram)> = Vec::new();
        for (k, &t) in times.iter().enumerate() {
            let f = floats.get(floats.partition_point(|p| p.0 <= t).wrapping_sub(1));
            let h = hists.get(hists.partition_point(|p| p.0 <= t).wrapping_sub(1));
            let newest_float = match (f, h) {
                (Some(f), Some(h)) => f.0 > h.0,
                (f, _) => f.is_some(),
            };
            let lookback_start = t.saturating_sub(self.lookback);
            if newest_float {
                if let Some(&(st, sv)) = f.filter(|p| p.0 >= lookback_start && !is_stale(p.1)) {
                    fouts.push((k, if timestamps { st as f64 / 1000.0 } else { sv }));
                }
            } else if let Some((st, h)) = h.filter(|p| p.0 >= lookback_start && !is_stale(p.1.sum)) {
                if timestamps {
                    fouts.push((k, *st as f64 / 1000.0));
                } else {
                    houts.push((k, h.clone()));
                }
            }
        }
        let n = fouts.len() + houts.len();
        self.queryable_samples = self.queryable_samples.saturating_add(n);
        if self.per_step.is_some() {
            for k in fouts.iter().map(|p| p.0).chain(houts.iter().map(|p| p.0)) {
                self.count_at_step(k, 1);
            }
        }
        self.add_samples(n)?;
        if !fouts.is_empty() {
            sink.series(labels, false, &fouts)?;
        }
        if !houts.is_empty() {
            sink.histograms(labels, false, &houts)?;
        }
        Ok(())
    }

    /// All series of a selector with their non-stale samples in `[mint, maxt]`.
    fn select_range(&mut self, vs: &VectorSelector, mint: i64, maxt: i64) -> Result<Vec<Series>> {
        let matchers = Self::matchers(vs)?;
        let series = self.storage.select(&matchers, mint, maxt)?;
        let mut out = Vec::with_capacity(series.len());
        for s in series.iter() {
            self.check_timeout()?;
            let (mut buf, mut hbuf) = (Vec::new(), Vec::new());
            if let Err(e) = s.read(mint, maxt, &mut buf, &mut hbuf) {
                series.read_failed(e)?;
                continue;
            }
            buf.retain(|p| !is_stale(p.1));
            hbuf.retain(|p| !is_stale(p.1.sum));
            let n = buf.len() + hbuf.len();
            self.queryable_samples = self.queryable_samples.saturating_add(n);
            if self.steps() == 1 {
                self.count_at_step(0, n);
            }
            self.add_samples(n)?;
            out.push(Series { labels: Arc::new(s.labels()), points: buf, histograms: hbuf });
        }
        Ok(out)
    }

    /// Evaluates a subquery's inner expression at the aligned steps covering selector times
    /// `lo..=hi` (already shifted by offset/@) minus its range; returns series-major points.
    fn eval_subquery_series(
        &mut self,
        sq: &promql_parser::parser::SubqueryExpr,
        lo: i64,
        hi: i64,
    ) -> Result<Vec<Series>> {
        let step = sq.step.as_ref().map(dur_ms).filter(|&s| s > 0).unwrap_or(self.subquery_step);
        let range = dur_ms(&sq.range);
        let first = lo.saturating_sub(range);
        let mut start = first.div_euclid(step).saturating_mul(step);
        if start < first {
            start = start.saturating_add(step);
        }
        // Every step costs memory even without samples: a subquery like `x[100y:1ms]` must fail
        // with the sample limit's error instead of allocating trillions of steps.
        let steps = usize::try_from(hi.saturating_sub(start) / step).unwrap_or(usize::MAX).saturating_add(1);
        if start <= hi && steps > self.max_samples.saturating_sub(self.cur_samples) {
            return Err(QueryError::TooManySamples("subquery evaluation"));
        }
        let (saved_start, saved_end, saved_interval) = (self.start, self.end, self.interval);
        self.start = start;
        self.end = hi;
        self.interval = step;
        let res = if start > hi { Ok(Val::Vector(Vec::new())) } else { self.eval(&sq.expr) };
        let out = match res {
            Ok(Val::Vector(steps)) => self.to_series(steps, false),
            Ok(Val::Scalar(vals)) => Ok(vec![Series::floats(
                Arc::new(Labels::empty()),
                vals.into_iter().enumerate().map(|(k, v)| (self.ts(k), v)).collect(),
            )]),
            Ok(_) => Err(QueryError::BadData("subquery is only allowed on instant vector or scalar".into())),
            Err(e) => Err(e),
        };
        self.start = saved_start;
        self.end = saved_end;
        self.interval = saved_interval;
        out
    }

    /// Converts per-step vectors into series (in order of first appearance).
    pub(crate) fn to_series(&self, steps: Vec<Vec<Sample>>, check: bool) -> Result<Vec<Series>> {
        let mut index: HashMap<Arc<Labels>, usize> = HashMap::new();
        let mut out: Vec<Series> = Vec::new();
        for (k, vec) in steps.into_iter().enumerate() {
            self.check_timeout()?;
            let t = self.ts(k);
            for s in vec {
                let i = match index.get(&s.labels) {
                    Some(&i) => i,
                    None => {
                        index.insert(Arc::clone(&s.labels), out.len());
                        out.push(Series::floats(s.labels, Vec::new()));
                        out.len() - 1
                    }
                };
                if let Some(series) = out.get_mut(i) {
                    if check
                        && (series.points.last().is_some_and(|p| p.0 == t)
                            || series.histograms.last().is_some_and(|p| p.0 == t))
                    {
                        return Err(QueryError::exec("vector cannot contain metrics with the same labelset"));
                    }
                    match s.h {
                        Some(h) => series.histograms.push((t, *h)),
                        None => series.points.push((t, s.v)),
                    }
                }
            }
        }
        Ok(out)
    }

    /// Evaluates a range-vector argument (matrix selector or subquery) and applies `f` to each
    /// series' window at every step (`None`: no output), handing each series' values to `sink`, one
    /// series at a time and in the storage's order. Output keeps the series' labels unless `drop_name`.
    pub(crate) fn stream_range_fn(
        &mut self,
        arg: &Expr,
        drop_name: bool,
        f: impl Fn(&Window<'_>, usize) -> Option<f64> + Sync,
        sink: &mut dyn SeriesSink,
    ) -> Result<()> {
        self.stream_range_with(arg, drop_name, &PerWindow(f), sink)
    }

    /// [`Evaluator::stream_range_fn`] with a function that sees a series' windows together. The
    /// series of a selector are decoded and windowed in batches, each split across threads when
    /// there are enough of them.
    pub(crate) fn stream_range_with(
        &mut self,
        arg: &Expr,
        drop_name: bool,
        f: &impl WindowFn,
        sink: &mut dyn SeriesSink,
    ) -> Result<()> {
        let n = self.steps();
        let (at, offset, range, source) = match unwrap_parens(arg) {
            Expr::MatrixSelector(ms) => (&ms.vs.at, &ms.vs.offset, dur_ms(&ms.range), RangeSource::Selector(&ms.vs)),
            Expr::Subquery(sq) => (&sq.at, &sq.offset, dur_ms(&sq.range), RangeSource::Subquery(sq)),
            _ => return Err(QueryError::BadData("expected a range vector argument".into())),
        };
        let times: Vec<i64> = (0..n).map(|k| self.sel_time(k, at, offset)).collect();
        let (Some(&lo), Some(&hi)) = (times.iter().min(), times.iter().max()) else {
            return Ok(());
        };
        let spec = WindowSpec {
            monotonic: times.windows(2).all(|w| w[0] <= w[1]),
            times: &times,
            range,
            start: self.start,
            interval: self.interval,
        };
        match source {
            RangeSource::Selector(vs) => {
                // Decode only [lo - range, hi] of each series, window it, drop it.
                let matchers = Self::matchers(vs)?;
                let storage = self.storage;
                let (mint, maxt) = (lo.saturating_sub(range), hi);
                let series = if sink.needs_order() {
                    storage.select(&matchers, mint, maxt)?
                } else {
                    storage.select_unordered(&matchers, mint, maxt)?
                };
                let set: &dyn SeriesSet = series.as_ref();
                let total = set.len();
                sink.begin(total);
                let workers = workers_for(total);
                // Each worker takes about PAR_WORKER_POINTS outputs per batch: its buffer stays
                // small, and the threads started per batch do as much work on any core count.
                let batch = (PAR_WORKER_POINTS / n.max(1)).max(PAR_MIN_SERIES).saturating_mul(workers);
                let deadline = self.deadline;
                // Output buffers come from this (long-lived) thread and are reused by every batch.
                let mut bufs: Vec<PartOutput> = (0..workers).map(|_| PartOutput::default()).collect();
                if self.per_step_counts().is_some() {
                    for buf in &mut bufs {
                        buf.per_step = vec![0; spec.times.len()];
                    }
                }
                for chunk in split_range(0..total, batch) {
                    let share = chunk.len().div_ceil(workers);
                    for buf in &mut bufs {
                        buf.clear();
                        buf.outs.reserve(share.saturating_mul(n));
                    }
                    run_split(chunk.clone(), &mut bufs, |part, buf| {
                        window_series_part(set, part, mint, maxt, &spec, f, deadline, buf);
                    })?;
                    for (part, done) in split_range(chunk, share).zip(&bufs) {
                        if let Some(e) = &done.failed {
                            // A series that could not be read: the query fails, or (partial) it
                            // was left out of the part's output.
                            set.read_failed(e.clone())?;
                        }
                        if done.series.len() < part.len() {
                            return Err(QueryError::Timeout("expression evaluation"));
                        }
                        let (mut from, mut hfrom) = (0, 0);
                        for (i, &(samples, windowed, to, hto)) in part.zip(&done.series) {
                            self.check_timeout()?;
                            if self.cur_samples.saturating_add(samples) > self.max_samples {
                                return Err(QueryError::TooManySamples("query execution"));
                            }
                            let outs = done.outs.get(from..to).unwrap_or_default();
                            let houts = done.houts.get(hfrom..hto).unwrap_or_default();
                            from = to;
                            hfrom = hto;
                            self.queryable_samples = self.queryable_samples.saturating_add(windowed);
                            self.add_samples(outs.len() + houts.len())?;
                            if outs.is_empty() && houts.is_empty() {
                                continue;
                            }
                            if let Some(s) = set.get(i) {
                                let labels = s.labels();
                                if !outs.is_empty() {
                                    sink.series(&labels, drop_name, outs)?;
                                }
                                if !houts.is_empty() {
                                    sink.histograms(&labels, drop_name, houts)?;
                                }
                            }
                        }
                        for (k, &n) in done.per_step.iter().enumerate() {
                            self.count_at_step(k, n);
                        }
                    }
                }
            }
            RangeSource::Subquery(sq) => {
                let series = self.eval_subquery_series(sq, lo, hi)?;
                sink.begin(series.len());
                let mut outs: Vec<(usize, f64)> = Vec::new();
                let mut houts: Vec<(usize, FloatHistogram)> = Vec::new();
                for s in series {
                    self.check_timeout()?;
                    outs.clear();
                    houts.clear();
                    if s.histograms.is_empty() {
                        f.series(&s.points, &spec, &mut outs);
                    } else {
                        f.histograms(&s.labels, &s.points, &s.histograms, &spec, &mut outs, &mut houts);
                    }
                    self.add_samples(outs.len() + houts.len())?;
                    if !outs.is_empty() {
                        sink.series(&s.labels, drop_name, &outs)?;
                    }
                    if !houts.is_empty() {
                        sink.histograms(&s.labels, drop_name, &houts)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Outputs per worker and batch of series a range function computes before handing them on: 16
/// bytes each, 256 KiB (unless [`PAR_MIN_SERIES`] series have more steps). At 2 MiB per worker
/// the buffers would exceed the server's malloc mmap threshold (src/memory.rs) and be mapped and
/// faulted in anew by every query (~950 page faults, +1–2 ms for `sum by (job) (rate(x[5m]))` over
/// 1,000 series and 241 steps). Under it they are reused from the heap and cost no measurable time.
/// Sized per worker, not for all workers together, so that machines with more cores do not start
/// proportionally more threads per query.
const PAR_WORKER_POINTS: usize = 1 << 14;
/// How many series ahead of the one being read a selector asks the storage to fetch the series'
/// state, and then what that state points to.
const PREFETCH_SERIES_AHEAD: usize = 4;
const PREFETCH_CHUNKS_AHEAD: usize = 2;

/// Asks the storage to fetch the state of the series a few places after `i`, and what the state
/// of a nearer one points to: reading series one after another otherwise waits for main memory
/// at each (`count({__name__=~".+"})` over 100k head series: a fifth faster).
fn prefetch_ahead(set: &dyn SeriesSet, i: usize) {
    if let Some(s) = set.get(i + PREFETCH_SERIES_AHEAD) {
        s.prefetch();
    }
    if let Some(s) = set.get(i + PREFETCH_CHUNKS_AHEAD) {
        s.prefetch_chunks();
    }
}
/// Fewest series a thread of a parallel batch gets.
const PAR_MIN_SERIES: usize = 32;
/// Most threads one range function uses.
const PAR_MAX_THREADS: usize = 8;

/// Threads to evaluate `series` series with: one per core, each with at least
/// [`PAR_MIN_SERIES`] series.
fn workers_for(series: usize) -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get));
    cores.min(PAR_MAX_THREADS).min(series / PAR_MIN_SERIES).max(1)
}

/// `range` cut into consecutive parts of `share` indexes (the last one shorter).
fn split_range(range: std::ops::Range<usize>, share: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let (share, end) = (share.max(1), range.end);
    range.step_by(share).map(move |a| a..a.saturating_add(share).min(end))
}

/// Splits the indexes `items` into `outs.len()` contiguous parts of
/// `items.len().div_ceil(outs.len())` (the last ones shorter or missing) and calls `f(part, out)`
/// for each: the calling thread takes the first part, scoped threads the others.
fn run_split<T: Send>(
    items: std::ops::Range<usize>,
    outs: &mut [T],
    f: impl Fn(std::ops::Range<usize>, &mut T) + Sync,
) -> Result<()> {
    let share = items.len().div_ceil(outs.len().max(1)).max(1);
    let mut jobs = split_range(items, share).zip(outs.iter_mut());
    let Some((first, first_out)) = jobs.next() else {
        return Ok(());
    };
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = jobs.map(|(p, out)| scope.spawn(move || f(p, out))).collect();
        f(first, first_out);
        for h in handles {
            h.join().map_err(|_| QueryError::Internal("evaluation thread panicked".into()))?;
        }
        Ok(())
    })
}

/// A range function over one series' windows.
pub(crate) trait WindowFn: Sync {
    /// Appends `(step, value)` to `outs` for each step of `spec` with output (in step order).
    fn series(&self, points: &[(i64, f64)], spec: &WindowSpec<'_>, outs: &mut Vec<(usize, f64)>);

    /// [`WindowFn::series`] for a series with histogram samples (`hists`, never empty) besides its
    /// floats. The default is a function of floats: it ignores the histograms, as Prometheus's
    /// functions of floats do.
    fn histograms(
        &self,
        labels: &Labels,
        floats: &[(i64, f64)],
        hists: &[(i64, FloatHistogram)],
        spec: &WindowSpec<'_>,
        outs: &mut Vec<(usize, f64)>,
        houts: &mut Vec<(usize, FloatHistogram)>,
    ) {
        let _ = (labels, hists, houts);
        self.series(floats, spec, outs);
    }
}

/// A function of one window at a time as a [`WindowFn`].
pub(crate) struct PerWindow<F>(pub(crate) F);

impl<F: Fn(&Window<'_>, usize) -> Option<f64> + Sync> WindowFn for PerWindow<F> {
    fn series(&self, points: &[(i64, f64)], spec: &WindowSpec<'_>, outs: &mut Vec<(usize, f64)>) {
        spec.for_each_window(points, |k, (a, b), range_start, range_end| {
            let w = Window {
                points: points.get(a..b).unwrap_or(&[]),
                range_start,
                range_end,
                eval_t: spec.start + spec.interval * k as i64,
            };
            if let Some(v) = (self.0)(&w, k) {
                outs.push((k, v));
            }
        });
    }
}

/// The steps at which a range function takes its windows.
pub(crate) struct WindowSpec<'t> {
    /// Selector time of each step (after offset and `@`).
    times: &'t [i64],
    /// Whether `times` never decreases (then windows slide forward).
    monotonic: bool,
    /// Range of the selector (ms).
    range: i64,
    /// First step's evaluation time and the step (ms).
    start: i64,
    interval: i64,
}

/// What a thread computed for its part of a batch of series.
#[derive(Default)]
struct PartOutput {
    /// `(step, value)` of every series, one after the other.
    outs: Vec<(usize, f64)>,
    /// `(step, histogram)` of every series, one after the other.
    houts: Vec<(usize, FloatHistogram)>,
    /// Per series: samples read, the sum over steps of the samples in each step's window (see
    /// [`EvalStats::queryable_samples`]), and where its outputs end in `outs` and `houts`. Shorter
    /// than the part if the deadline passed.
    series: Vec<(usize, usize, usize, usize)>,
    /// The first read error of the part (its series is there with no samples).
    failed: Option<QueryError>,
    /// Samples in each step's window, summed over the part's series; empty unless per-step
    /// statistics are wanted.
    per_step: Vec<usize>,
}

impl PartOutput {
    fn clear(&mut self) {
        self.outs.clear();
        self.houts.clear();
        self.series.clear();
        self.failed = None;
        self.per_step.fill(0);
    }
}

/// Reads, drops stale markers from and windows the series `part` of `set` into `done`.
#[allow(clippy::too_many_arguments)]
fn window_series_part(
    set: &dyn SeriesSet,
    part: std::ops::Range<usize>,
    mint: i64,
    maxt: i64,
    spec: &WindowSpec<'_>,
    f: &impl WindowFn,
    deadline: Instant,
    done: &mut PartOutput,
) {
    done.series.reserve(part.len());
    let mut points = Vec::new();
    let mut hists = Vec::new();
    for i in part {
        if Instant::now() > deadline {
            break;
        }
        points.clear();
        hists.clear();
        prefetch_ahead(set, i);
        if let Some(s) = set.get(i) {
            if let Err(e) = s.read(mint, maxt, &mut points, &mut hists) {
                points.clear();
                hists.clear();
                done.failed.get_or_insert(e);
            }
        }
        points.retain(|p| !is_stale(p.1));
        let mut windowed = 0usize;
        let per_step = &mut done.per_step;
        let mut count = |k: usize, n: usize| {
            windowed = windowed.saturating_add(n);
            if let Some(c) = per_step.get_mut(k) {
                *c = c.saturating_add(n);
            }
        };
        if hists.is_empty() {
            f.series(&points, spec, &mut done.outs);
            spec.for_each_window(&points, |k, (a, b), _, _| count(k, b - a));
        } else {
            hists.retain(|p| !is_stale(p.1.sum));
            let labels = set.get(i).map(|s| s.labels()).unwrap_or_default();
            f.histograms(&labels, &points, &hists, spec, &mut done.outs, &mut done.houts);
            spec.for_each_window(&points, |k, (a, b), _, _| count(k, b - a));
            spec.for_each_window(&hist_times(&hists), |k, (a, b), _, _| count(k, b - a));
        }
        done.series.push((points.len() + hists.len(), windowed, done.outs.len(), done.houts.len()));
    }
}

impl WindowSpec<'_> {
    /// Calls `g(step, (a, b), range_start, range_end)` for every step, where `points[a..b]` are
    /// the samples in the step's window `[range_start, range_end]` (none for an empty series).
    pub(crate) fn for_each_window(&self, points: &[(i64, f64)], mut g: impl FnMut(usize, (usize, usize), i64, i64)) {
        if points.is_empty() {
            return;
        }
        let (mut a, mut b) = (0usize, 0usize);
        for (k, &t) in self.times.iter().enumerate() {
            let mint = t.saturating_sub(self.range);
            if self.monotonic {
                while a < points.len() && points[a].0 < mint {
                    a += 1;
                }
                b = b.max(a);
                while b < points.len() && points[b].0 <= t {
                    b += 1;
                }
            } else {
                a = points.partition_point(|p| p.0 < mint);
                b = points.partition_point(|p| p.0 <= t);
            }
            g(k, (a, b), mint, t);
        }
    }
}

/// The timestamps of histogram samples as points (for [`WindowSpec::for_each_window`]).
pub(crate) fn hist_times(hists: &[(i64, FloatHistogram)]) -> Vec<(i64, f64)> {
    hists.iter().map(|p| (p.0, 0.0)).collect()
}

enum RangeSource<'e> {
    Selector(&'e VectorSelector),
    Subquery(&'e promql_parser::parser::SubqueryExpr),
}

/// Strips parentheses.
pub(crate) fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// `labels` without `__name__`, computed once per distinct `Arc`.
pub(crate) fn drop_name_cached(cache: &mut HashMap<*const Labels, Arc<Labels>>, labels: &Arc<Labels>) -> Arc<Labels> {
    if !labels.has_name() {
        return Arc::clone(labels);
    }
    Arc::clone(cache.entry(Arc::as_ptr(labels)).or_insert_with(|| Arc::new(labels.without_name())))
}
