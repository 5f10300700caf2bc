//! The engine's [`Storage`] over a `tsdb::Db` (head and blocks): matchers are converted once per selector and
//! each series' chunks are snapshotted and decoded only when the evaluator asks for its samples.

use std::sync::Arc;

use promql_parser::label::{MatchOp, Matcher};

use tsdb::histogram::FloatHistogram;
use tsdb::querier::ReadWarnings;

use crate::engine::{Labels, Selected, SeriesSet, Storage, StorageSeries};
use crate::error::{QueryError, Result};

/// Reads from the database (head and blocks).
///
/// What cannot be read (a damaged block, an unreadable head chunk file) fails the query with a
/// server error naming it, unless the storage is [`TsdbStorage::partial`]: then the block or series
/// is left out and [`TsdbStorage::warnings`] says what is missing (Prometheus's `warnings`).
#[derive(Clone)]
pub struct TsdbStorage {
    db: Arc<tsdb::Db>,
    partial: Option<Arc<ReadWarnings>>,
}

impl TsdbStorage {
    /// Storage over `db`.
    pub fn new(db: Arc<tsdb::Db>) -> TsdbStorage {
        TsdbStorage { db, partial: None }
    }

    /// Storage over `db` that leaves out what it cannot read, with a warning.
    pub fn partial(db: Arc<tsdb::Db>) -> TsdbStorage {
        TsdbStorage { db, partial: Some(Arc::default()) }
    }

    /// The warnings of a partial read so far.
    pub fn warnings(&self) -> Vec<String> {
        self.partial.as_ref().map(|w| w.take()).unwrap_or_default()
    }

    /// A querier over `[mint, maxt]` with this storage's policy for unreadable data.
    pub fn querier(&self, mint: i64, maxt: i64) -> tsdb::Querier {
        let q = self.db.querier(mint, maxt);
        match &self.partial {
            Some(w) => q.partial(Arc::clone(w)),
            None => q,
        }
    }
}

/// A storage read error as a query error: a server fault (`internal`, 500) naming what failed.
pub fn read_error(e: tsdb::Error) -> QueryError {
    QueryError::Internal(format!("reading storage: {e}"))
}

/// Converts a parsed matcher to a tsdb matcher.
pub fn to_tsdb_matcher(m: &Matcher) -> Result<tsdb::Matcher> {
    let kind = match m.op {
        MatchOp::Equal => tsdb::MatchType::Equal,
        MatchOp::NotEqual => tsdb::MatchType::NotEqual,
        MatchOp::Re(_) => tsdb::MatchType::Regex,
        MatchOp::NotRe(_) => tsdb::MatchType::NotRegex,
    };
    tsdb::Matcher::new(kind, m.name.clone(), m.value.clone()).map_err(|e| QueryError::BadData(e.to_string()))
}

/// Converts storage labels to engine labels (shares the packed allocation).
pub fn from_tsdb_labels(l: &tsdb::Labels) -> Labels {
    Labels::from_tsdb(l)
}

/// A selected series: its chunks are snapshotted when its samples are asked for.
impl StorageSeries for tsdb::querier::LazySeries {
    fn labels(&self) -> Labels {
        from_tsdb_labels(self.labels())
    }
    fn samples(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) -> Result<()> {
        self.read_samples(mint, maxt, out).map_err(read_error)
    }
    fn histograms(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, FloatHistogram)>) -> Result<()> {
        self.read_histograms(mint, maxt, out).map_err(read_error)
    }
    fn read(
        &self,
        mint: i64,
        maxt: i64,
        out: &mut Vec<(i64, f64)>,
        hout: &mut Vec<(i64, FloatHistogram)>,
    ) -> Result<()> {
        self.read_all(mint, maxt, out, hout).map_err(read_error)
    }
    fn prefetch(&self) {
        tsdb::querier::LazySeries::prefetch(self);
    }
    fn prefetch_chunks(&self) {
        tsdb::querier::LazySeries::prefetch_chunks(self);
    }
}

/// The series a selector matched, with the storage's policy for series that cannot be read.
struct TsdbSelected {
    /// Holds the querier's pending read: the head keeps what the querier's blocks lack until the
    /// selector is done.
    series: tsdb::querier::Selection,
    partial: Option<Arc<ReadWarnings>>,
}

impl SeriesSet for TsdbSelected {
    fn len(&self) -> usize {
        self.series.len()
    }
    fn get(&self, i: usize) -> Option<&dyn StorageSeries> {
        self.series.get(i).map(|s| s as &dyn StorageSeries)
    }
    fn read_failed(&self, e: QueryError) -> Result<()> {
        match &self.partial {
            Some(w) => {
                w.add_message(e.to_string());
                Ok(())
            }
            None => Err(e),
        }
    }
}

impl TsdbStorage {
    fn select_lazy(&self, matchers: &[Matcher], mint: i64, maxt: i64, sorted: bool) -> Result<Selected<'_>> {
        let ms = matchers.iter().map(to_tsdb_matcher).collect::<Result<Vec<_>>>()?;
        let q = self.querier(mint, maxt);
        let series = if sorted { q.select_lazy(&ms) } else { q.select_lazy_unordered(&ms) }.map_err(read_error)?;
        Ok(Box::new(TsdbSelected { series, partial: self.partial.clone() }))
    }
}

impl Storage for TsdbStorage {
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Selected<'_>> {
        self.select_lazy(matchers, mint, maxt, true)
    }

    fn select_unordered(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Result<Selected<'_>> {
        self.select_lazy(matchers, mint, maxt, false)
    }
}
