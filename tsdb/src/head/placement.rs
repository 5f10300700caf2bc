//! The accept / out-of-order / reject decision for one sample, as a pure function (Prometheus's
//! `memSeries.appendable`), so it can be tested as a table with no locks.
//!
//! It is the only place a sample is judged. An [`super::Appender`] calls it with the head's limits
//! against the series' committed state plus what the request already queued for that series; the
//! commit and WAL replay call it with [`Limits::accept_all`] (a sample that reached the WAL is never
//! rejected for age), so they only choose where an accepted sample is stored.

use crate::error::AppendError;
use crate::head::histograms::identical;
use crate::histogram::HistogramValue;

/// Where an accepted sample goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Newer than the series' last in-order sample: append to the in-order head chunk.
    InOrder,
    /// Inside the out-of-order window: insert into the series' out-of-order chunk.
    OutOfOrder,
    /// Identical (same timestamp, same value bits) to the series' last sample: accepted, nothing stored.
    Duplicate,
}

/// What the decision needs to know about the series.
#[derive(Debug, Clone, Copy)]
pub struct SeriesTail {
    /// Timestamp of the newest in-order sample.
    pub max_t: i64,
    /// Its value.
    pub last_value: f64,
}

/// The head-wide limits in force for an append.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Newest timestamp in the whole head (`i64::MIN` when empty).
    pub head_max_t: i64,
    /// Oldest timestamp an in-order append may have: `head_max_t − chunk_range / 2`, or later.
    pub min_valid_t: i64,
    /// The out-of-order window in ms; 0 disables out-of-order ingestion.
    pub ooo_window: i64,
    /// Newest timestamp accepted at all: wall clock plus the creation grace period (`i64::MAX`: no
    /// bound). A sample from a clock far ahead would otherwise move the head's max time and make
    /// every other series' samples too old.
    pub max_future_t: i64,
}

impl Limits {
    /// Limits that reject nothing: used when applying samples already in the WAL (commit, replay),
    /// where only the in-order / out-of-order choice is left to make. Samples below `min_valid_t`
    /// go out of order, since in-order chunks below it may already be in a block.
    pub fn accept_all(min_valid_t: i64) -> Limits {
        Limits { head_max_t: i64::MIN, min_valid_t, ooo_window: i64::MAX, max_future_t: i64::MAX }
    }
}

/// Where a sample's timestamp alone puts it, before its value is compared with the series' newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Newer than the series' newest in-order sample (or the series has none).
    InOrder,
    /// At the series' newest in-order timestamp: a duplicate if the value is identical, else rejected.
    AtNewest,
    /// Inside the out-of-order window.
    OutOfOrder,
}

/// The timestamp half of the decision, shared by float and histogram samples: `newest` is the
/// timestamp of the series' newest in-order sample of the same kind. See [`placement`] for the table.
#[inline]
pub fn slot(t: i64, newest: Option<i64>, limits: Limits) -> Result<Slot, AppendError> {
    if t > limits.max_future_t {
        return Err(AppendError::TooFarInFuture { t, max_t: limits.max_future_t });
    }
    let w = limits.ooo_window;
    if w <= 0 && t < limits.min_valid_t {
        return Err(AppendError::OutOfBounds);
    }
    if t >= limits.min_valid_t {
        match newest {
            None => return Ok(Slot::InOrder),
            Some(max_t) if t > max_t => return Ok(Slot::InOrder),
            Some(max_t) if t == max_t => return Ok(Slot::AtNewest),
            Some(_) => {}
        }
    }
    if w > 0 {
        if t >= limits.head_max_t.saturating_sub(w) {
            return Ok(Slot::OutOfOrder);
        }
        return Err(AppendError::TooOld);
    }
    if t < limits.min_valid_t {
        return Err(AppendError::OutOfBounds);
    }
    Err(AppendError::OutOfOrder)
}

/// Decides where sample `(t, v)` goes, given the series' in-order tail (None if it has no in-order data).
///
/// The table, as Prometheus 2.42+ has it (window `W`):
/// - `t > max_future_t` → too far in the future (Strata's bound; Prometheus has none).
/// - `W == 0` and `t < min_valid_t` → out of bounds.
/// - `t >= min_valid_t`: no in-order data or `t > max_t` → in order; `t == max_t` → duplicate if the value
///   bits are identical, else a duplicate-timestamp error.
/// - otherwise `W > 0` and `t >= head_max_t − W` → out of order; `W > 0` → too old;
///   `t < min_valid_t` → out of bounds; else out of order (rejected).
///
/// An out-of-order sample is then checked against the series' other late samples when it is
/// applied (see `SeriesData::apply`), not against its in-order chunks.
#[inline]
pub fn placement(t: i64, v: f64, tail: Option<SeriesTail>, limits: Limits) -> Result<Placement, AppendError> {
    match slot(t, tail.map(|s| s.max_t), limits)? {
        Slot::InOrder => Ok(Placement::InOrder),
        Slot::OutOfOrder => Ok(Placement::OutOfOrder),
        Slot::AtNewest => {
            let existing = tail.map_or(v, |s| s.last_value);
            if existing.to_bits() == v.to_bits() {
                Ok(Placement::Duplicate)
            } else {
                Err(AppendError::Duplicate { t, existing, new: v })
            }
        }
    }
}

/// [`placement`] for a native histogram sample: the same table, against the series' newest in-order
/// histogram (`tail`: its timestamp and value). A series' float and histogram samples are judged
/// apart (see `SeriesData`).
pub fn histogram_placement(
    t: i64,
    v: &HistogramValue,
    tail: Option<(i64, &HistogramValue)>,
    limits: Limits,
) -> Result<Placement, AppendError> {
    match slot(t, tail.map(|s| s.0), limits)? {
        Slot::InOrder => Ok(Placement::InOrder),
        Slot::OutOfOrder => Ok(Placement::OutOfOrder),
        Slot::AtNewest => match tail {
            Some((_, existing)) if !identical(existing, v) => Err(AppendError::DuplicateHistogram { t }),
            _ => Ok(Placement::Duplicate),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn lim(head_max_t: i64, w: i64) -> Limits {
        Limits { head_max_t, min_valid_t: head_max_t - H, ooo_window: w, max_future_t: i64::MAX }
    }

    fn tail(max_t: i64, last_value: f64) -> Option<SeriesTail> {
        Some(SeriesTail { max_t, last_value })
    }

    #[test]
    fn table() {
        let h = 10 * H;
        use AppendError as E;
        use Placement as P;
        type Case = (i64, f64, Option<SeriesTail>, Limits, Result<Placement, AppendError>);
        let cases: Vec<Case> = vec![
            // window 0
            (h, 1.0, None, lim(h, 0), Ok(P::InOrder)),
            (h - H, 1.0, None, lim(h, 0), Ok(P::InOrder)),
            (h - H - 1, 1.0, None, lim(h, 0), Err(E::OutOfBounds)),
            (h + 1, 1.0, tail(h, 1.0), lim(h, 0), Ok(P::InOrder)),
            (h, 1.0, tail(h, 1.0), lim(h, 0), Ok(P::Duplicate)),
            (h, 2.0, tail(h, 1.0), lim(h, 0), Err(E::Duplicate { t: h, existing: 1.0, new: 2.0 })),
            (h - 5, 1.0, tail(h, 1.0), lim(h, 0), Err(E::OutOfOrder)),
            (h - 2 * H, 1.0, tail(h, 1.0), lim(h, 0), Err(E::OutOfBounds)),
            // window 30m
            (h - 5, 1.0, tail(h, 1.0), lim(h, H / 2), Ok(P::OutOfOrder)),
            (h - H / 2, 1.0, tail(h, 1.0), lim(h, H / 2), Ok(P::OutOfOrder)),
            (h - H / 2 - 1, 1.0, tail(h, 1.0), lim(h, H / 2), Err(E::TooOld)),
            (h - 2 * H, 1.0, None, lim(h, H / 2), Err(E::TooOld)),
            // window 3h: older than min_valid_t but inside the window goes out of order, even for a new series
            (h - 2 * H, 1.0, None, lim(h, 3 * H), Ok(P::OutOfOrder)),
            (h - 4 * H, 1.0, None, lim(h, 3 * H), Err(E::TooOld)),
            // empty head accepts anything
            (
                i64::MIN + 1,
                1.0,
                None,
                Limits { head_max_t: i64::MIN, min_valid_t: i64::MIN, ooo_window: 0, max_future_t: i64::MAX },
                Ok(P::InOrder),
            ),
            // future bound
            (
                h + 11,
                1.0,
                tail(h, 1.0),
                Limits { max_future_t: h + 10, ..lim(h, 0) },
                Err(E::TooFarInFuture { t: h + 11, max_t: h + 10 }),
            ),
            (h + 10, 1.0, tail(h, 1.0), Limits { max_future_t: h + 10, ..lim(h, 0) }, Ok(P::InOrder)),
            // applying from the WAL: nothing is rejected for age
            (h - 5, 1.0, tail(h, 1.0), Limits::accept_all(h - H), Ok(P::OutOfOrder)),
            (h - 2 * H, 1.0, tail(h, 1.0), Limits::accept_all(h - H), Ok(P::OutOfOrder)),
            (h - 2 * H, 1.0, None, Limits::accept_all(h - H), Ok(P::OutOfOrder)),
            (h + 1, 1.0, tail(h, 1.0), Limits::accept_all(h - H), Ok(P::InOrder)),
            (i64::MAX, 1.0, tail(h, 1.0), Limits::accept_all(h - H), Ok(P::InOrder)),
        ];
        for (i, (t, v, tl, l, want)) in cases.into_iter().enumerate() {
            assert_eq!(placement(t, v, tl, l), want, "case {i}");
        }
    }

    #[test]
    fn nan_duplicates_compare_bits() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let h = 10 * H;
        assert_eq!(placement(h, stale, tail(h, stale), lim(h, 0)), Ok(Placement::Duplicate));
        assert!(placement(h, f64::NAN, tail(h, stale), lim(h, 0)).is_err());
    }
}
