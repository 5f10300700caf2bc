//! The engine's [`Storage`] over a `tsdb::Db` (head and blocks): matchers are converted once per selector and
//! each series' chunks are snapshotted and decoded only when the evaluator asks for its samples.

use std::sync::Arc;

use promql_parser::label::{MatchOp, Matcher};

use crate::engine::{Labels, Selected, Storage, StorageSeries};
use crate::error::{QueryError, Result};

/// Reads from the database (head and blocks).
#[derive(Clone)]
pub struct TsdbStorage {
    db: Arc<tsdb::Db>,
}

impl TsdbStorage {
    /// Storage over `db`.
    pub fn new(db: Arc<tsdb::Db>) -> TsdbStorage {
        TsdbStorage { db }
    }
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
    fn samples(&self, mint: i64, maxt: i64, out: &mut Vec<(i64, f64)>) {
        if let Some(s) = self.snapshot(mint, maxt) {
            out.extend(s.samples(mint, maxt));
        }
    }
    fn prefetch(&self) {
        tsdb::querier::LazySeries::prefetch(self);
    }
    fn prefetch_chunks(&self) {
        tsdb::querier::LazySeries::prefetch_chunks(self);
    }
}

impl TsdbStorage {
    fn select_lazy(&self, matchers: &[Matcher], mint: i64, maxt: i64, sorted: bool) -> Result<Selected<'_>> {
        let ms = matchers.iter().map(to_tsdb_matcher).collect::<Result<Vec<_>>>()?;
        let q = self.db.querier(mint, maxt);
        let series = if sorted { q.select_lazy(&ms) } else { q.select_lazy_unordered(&ms) };
        Ok(Box::new(series))
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
