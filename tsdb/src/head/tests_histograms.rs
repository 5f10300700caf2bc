//! Head tests of native histograms and exemplars through the public API: appends and rejections,
//! reads, the model of the write rules, WAL replay, checkpoints and head compaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use crate::chunk::{ChunkData, ChunkMeta};
use crate::error::{AppendError, RejectReason};
use crate::exemplars::{Exemplar, ExemplarError, ExemplarStore};
use crate::head::{Head, Options};
use crate::histogram::{FloatHistogram, Histogram, HistogramError, HistogramValue, Span};
use crate::labels::Matcher;
use crate::querier::Series;
use crate::testing::{memory_options, temp_head, WriteModel};

const MIN: i64 = 60_000;
const H2: i64 = 120 * MIN;
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// A valid integer histogram whose every field follows `n` (zero bucket only, plus one positive
/// bucket), so that two are identical exactly when their `n` is.
fn int_h(n: u64) -> HistogramValue {
    HistogramValue::Int(Histogram {
        schema: 1,
        zero_threshold: 0.001,
        zero_count: n,
        count: 2 * n,
        sum: n as f64 * 1.5,
        positive_spans: vec![Span { offset: 0, length: 1 }],
        positive_buckets: vec![n as i64],
        ..Histogram::default()
    })
}

fn float_h(n: f64) -> HistogramValue {
    HistogramValue::Float(FloatHistogram {
        schema: 0,
        count: n,
        zero_count: n,
        sum: n * 0.5,
        positive_spans: vec![Span { offset: 1, length: 2 }],
        positive_buckets: vec![0.0, 0.0],
        ..FloatHistogram::default()
    })
}

/// A histogram value's identity for comparisons: kind, count and sum bits (the decoded counter-reset
/// hint may differ from the appended one).
fn key(v: &HistogramValue) -> (bool, u64, u64) {
    match v {
        HistogramValue::Int(h) => (false, h.count, h.sum.to_bits()),
        HistogramValue::Float(h) => (true, h.count as u64, h.sum.to_bits()),
    }
}

/// The histograms of a series snapshot as a reader sees them: in-order chunks win over late ones.
fn histograms_of(s: &Series) -> Vec<(i64, HistogramValue)> {
    let mut out: BTreeMap<i64, HistogramValue> = BTreeMap::new();
    for c in s.chunks.iter().chain(&s.ooo_chunks) {
        let mut it = c.histograms(i64::MIN, i64::MAX);
        for (t, v) in it.by_ref() {
            out.entry(t).or_insert(v);
        }
        assert!(it.error().is_none(), "{:?}", it.error());
    }
    out.into_iter().collect()
}

fn read_histograms(head: &Arc<Head>, name: &str) -> Vec<(i64, HistogramValue)> {
    let q = head.querier(i64::MIN, i64::MAX);
    let series = q.select(&[Matcher::equal("__name__", name)]).unwrap();
    assert!(series.len() <= 1);
    series.first().map(histograms_of).unwrap_or_default()
}

fn keys(v: &[(i64, HistogramValue)]) -> Vec<(i64, (bool, u64, u64))> {
    v.iter().map(|(t, h)| (*t, key(h))).collect()
}

fn append_h(head: &Head, name: &str, t: i64, v: HistogramValue) -> Result<(), AppendError> {
    let mut app = head.appender();
    let h = app.series(&mut [("__name__", name)]).unwrap();
    let r = app.append_histogram(h, t, v);
    app.commit().unwrap();
    r
}

fn wal_options(window: i64) -> Options {
    Options {
        ooo_time_window_ms: window,
        creation_grace_period_ms: None,
        wal: Some(wal::Options { segment_size_bytes: 1 << 20, ..Default::default() }),
        ..Options::default()
    }
}

#[test]
fn invalid_histograms_are_rejected_with_what_is_wrong() {
    let (_d, head) = temp_head(memory_options(0));
    let bad = HistogramValue::Int(Histogram { count: 3, zero_count: 1, ..Histogram::default() });
    let e = append_h(&head, "h", 1_000, bad).unwrap_err();
    assert!(matches!(e, AppendError::InvalidHistogram(HistogramError::CountMismatch { in_buckets: 1, count: 3 })));
    assert_eq!(e.reason(), RejectReason::InvalidHistogram);
    assert!(e.to_string().contains("Count field is 3"), "{e}");
    let bad_schema = HistogramValue::Float(FloatHistogram { schema: 9, ..FloatHistogram::default() });
    assert!(append_h(&head, "h", 1_000, bad_schema).unwrap_err().to_string().contains("invalid schema 9"));
    assert_eq!(head.stats().histograms.rejected_invalid.load(std::sync::atomic::Ordering::Relaxed), 2);
    assert!(read_histograms(&head, "h").is_empty());
}

#[test]
fn placement_duplicates_and_counters() {
    use std::sync::atomic::Ordering::Relaxed;
    let (_d, head) = temp_head(memory_options(30 * MIN));
    let base = 1_000 * MIN;
    append_h(&head, "h", base, int_h(1)).unwrap();
    append_h(&head, "h", base + MIN, int_h(2)).unwrap();
    // Identical at the newest timestamp: accepted, not stored again. Different: rejected.
    append_h(&head, "h", base + MIN, int_h(2)).unwrap();
    assert_eq!(append_h(&head, "h", base + MIN, int_h(3)), Err(AppendError::DuplicateHistogram { t: base + MIN }));
    // Late inside the window: stored; the first late histogram at a timestamp wins.
    append_h(&head, "h", base - 10 * MIN, int_h(7)).unwrap();
    append_h(&head, "h", base - 10 * MIN, int_h(8)).unwrap();
    assert_eq!(append_h(&head, "h", base - 40 * MIN, int_h(1)), Err(AppendError::TooOld));
    // Within one request, a late histogram meets the ones queued before it.
    let mut app = head.appender();
    let h = app.series(&mut [("__name__", "h")]).unwrap();
    app.append_histogram(h, base - 5 * MIN, int_h(4)).unwrap();
    app.append_histogram(h, base - 5 * MIN, int_h(4)).unwrap();
    assert_eq!(
        app.append_histogram(h, base - 5 * MIN, int_h(5)),
        Err(AppendError::DuplicateHistogram { t: base - 5 * MIN })
    );
    let st = app.commit().unwrap();
    assert_eq!((st.histograms_out_of_order, st.histograms_deduplicated), (1, 1));
    let got = read_histograms(&head, "h");
    assert_eq!(
        keys(&got),
        keys(&[(base - 10 * MIN, int_h(7)), (base - 5 * MIN, int_h(4)), (base, int_h(1)), (base + MIN, int_h(2))])
    );
    let hs = &head.stats().histograms;
    assert_eq!((hs.in_order.load(Relaxed), hs.out_of_order.load(Relaxed)), (2, 2));
    assert_eq!((hs.deduplicated.load(Relaxed), hs.conflicts.load(Relaxed)), (2, 1));
    assert_eq!((hs.rejected_duplicate.load(Relaxed), hs.rejected_too_old.load(Relaxed)), (2, 1));
    // Float counters are untouched.
    assert_eq!(head.stats().samples_in_order.load(Relaxed), 0);
}

#[test]
fn window_zero_rejects_late_histograms_like_floats() {
    let (_d, head) = temp_head(memory_options(0));
    let base = 1_000 * MIN;
    append_h(&head, "h", base, int_h(1)).unwrap();
    assert_eq!(append_h(&head, "h", base - MIN, int_h(1)), Err(AppendError::OutOfOrder));
    assert_eq!(append_h(&head, "h", base - H2, int_h(1)), Err(AppendError::OutOfBounds));
}

#[test]
fn floats_and_histograms_of_one_series_are_judged_apart() {
    let (_d, head) = temp_head(memory_options(0));
    let base = 1_000 * MIN;
    let mut app = head.appender();
    let h = app.series(&mut [("__name__", "m")]).unwrap();
    app.append(h, base, 1.0).unwrap();
    app.append_histogram(h, base, int_h(1)).unwrap();
    app.append(h, base + MIN, 2.0).unwrap();
    // The histogram's newest is `base`, not the float's `base + MIN`.
    app.append_histogram(h, base + 30_000, float_h(2.0)).unwrap();
    app.commit().unwrap();
    let q = head.querier(i64::MIN, i64::MAX);
    let s = q.select(&[Matcher::equal("__name__", "m")]).unwrap().pop().unwrap();
    assert_eq!(s.samples(i64::MIN, i64::MAX).collect::<Vec<_>>(), vec![(base, 1.0), (base + MIN, 2.0)]);
    assert_eq!(keys(&histograms_of(&s)), keys(&[(base, int_h(1)), (base + 30_000, float_h(2.0))]));
    // Integer then float counts: two chunks of their own kinds.
    let kinds: Vec<&str> = s
        .chunks
        .iter()
        .filter_map(|c| match c.data {
            ChunkData::Histogram(_) => Some("int"),
            ChunkData::FloatHistogram(_) => Some("float"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["int", "float"]);
}

#[test]
fn reads_keep_the_range_and_leave_out_deleted_histograms() {
    let (_d, head) = temp_head(memory_options(60 * MIN));
    let base = 1_000 * MIN;
    for i in 0..10 {
        append_h(&head, "h", base + i * MIN, int_h(i as u64)).unwrap();
    }
    append_h(&head, "h", base - 5 * MIN, int_h(50)).unwrap();
    head.delete(&[Matcher::equal("__name__", "h")], base + 2 * MIN, base + 3 * MIN).unwrap();
    let q = head.querier(base - 5 * MIN, base + 4 * MIN);
    let s = q.select(&[Matcher::equal("__name__", "h")]).unwrap().pop().unwrap();
    assert!(s.ooo_chunks.iter().all(|c| matches!(c.data, ChunkData::RawHistograms(_))));
    let got: Vec<i64> = s
        .chunks
        .iter()
        .chain(&s.ooo_chunks)
        .flat_map(|c| c.histograms(base - 5 * MIN, base + 4 * MIN).map(|(t, _)| t))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(got, vec![base - 5 * MIN, base, base + MIN, base + 4 * MIN]);
    // Float reads of the series see nothing.
    assert_eq!(s.samples(i64::MIN, i64::MAX).count(), 0);
}

#[test]
fn stale_markers_are_stored() {
    let (_d, head) = temp_head(memory_options(0));
    let stale = HistogramValue::Int(Histogram { sum: f64::from_bits(STALE_NAN), ..Histogram::default() });
    append_h(&head, "h", 1_000, int_h(3)).unwrap();
    append_h(&head, "h", 2_000, stale.clone()).unwrap();
    // A retried stale marker is identical.
    append_h(&head, "h", 2_000, stale).unwrap();
    append_h(&head, "h", 3_000, int_h(1)).unwrap();
    let got = read_histograms(&head, "h");
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].1.sum().to_bits(), STALE_NAN);
}

#[test]
fn wal_replay_and_checkpoint_restore_histograms() {
    let dir = tempfile::tempdir().unwrap();
    let base = 1_000 * MIN;
    let mut want: Vec<(i64, HistogramValue)> = Vec::new();
    {
        let head = Head::open(dir.path(), wal_options(60 * MIN)).unwrap();
        // 300 in-order histograms (3 chunks), a counter reset, late ones, a float histogram.
        for i in 0..300 {
            append_h(&head, "h", base + i * 10_000, int_h(i as u64 + 10)).unwrap();
            want.push((base + i * 10_000, int_h(i as u64 + 10)));
        }
        append_h(&head, "h", base + 3_000_000, int_h(1)).unwrap();
        want.push((base + 3_000_000, int_h(1)));
        for i in 0..5 {
            append_h(&head, "h", base - (i + 1) * MIN, float_h(i as f64)).unwrap();
            want.push((base - (i + 1) * MIN, float_h(i as f64)));
        }
        head.close().unwrap();
    }
    want.sort_by_key(|s| s.0);
    let head = Head::open(dir.path(), wal_options(60 * MIN)).unwrap();
    assert_eq!(keys(&read_histograms(&head, "h")), keys(&want), "after replay");
    // Judged against the replayed state: the newest is a duplicate, a different one is refused.
    assert!(append_h(&head, "h", base + 3_000_000, int_h(1)).is_ok());
    assert!(append_h(&head, "h", base + 3_000_000, int_h(2)).is_err());
    head.checkpoint_now().unwrap();
    append_h(&head, "h", base + 3_100_000, int_h(2)).unwrap();
    want.push((base + 3_100_000, int_h(2)));
    head.close().unwrap();
    drop(head);
    let head = Head::open(dir.path(), wal_options(60 * MIN)).unwrap();
    let got = read_histograms(&head, "h");
    assert_eq!(keys(&got), keys(&want), "after checkpoint and replay");
    // The counter reset is still a chunk with the counter-reset header.
    let q = head.querier(i64::MIN, i64::MAX);
    let s = q.select(&[Matcher::equal("__name__", "h")]).unwrap().pop().unwrap();
    let reset = s.chunks.iter().find(|c| c.min_t == base + 3_000_000).unwrap();
    let ChunkData::Histogram(b) = &reset.data else { panic!("not an integer histogram chunk") };
    assert_eq!(
        crate::chunkenc::HistogramIter::new(b).counter_reset_header(),
        crate::chunkenc::CounterResetHeader::CounterReset
    );
}

#[test]
fn compaction_hands_over_histogram_chunks_merged_with_late_ones() {
    let dir = tempfile::tempdir().unwrap();
    let head = Head::open(dir.path(), wal_options(4 * H2)).unwrap();
    let start = 100 * H2;
    // In-order histograms over the first range and into the next, and a float series beside.
    for i in 0..150 {
        append_h(&head, "h", start + i * MIN, int_h(i as u64)).unwrap();
    }
    let mut app = head.appender();
    app.append_pairs(&[("__name__", "f")], start, 1.0).unwrap();
    app.commit().unwrap();
    // Late: one new timestamp, one at an in-order timestamp with another value (in-order wins).
    append_h(&head, "h", start + 30 * MIN + 30_000, int_h(1000)).unwrap();
    append_h(&head, "h", start + 10 * MIN, int_h(2000)).unwrap();
    let snap = head.snapshot_range(start, start + H2).unwrap();
    let all: Vec<(crate::labels::Labels, Vec<ChunkMeta>)> = snap.series_chunks().map(Result::unwrap).collect();
    assert_eq!(all.len(), 2);
    let (_, chunks) = all.iter().find(|(l, _)| l.get("__name__") == Some("h")).unwrap();
    assert!(chunks.iter().all(|c| c.data.is_histogram() && c.min_t >= start && c.max_t < start + H2));
    assert!(chunks.windows(2).all(|w| w[0].max_t < w[1].min_t), "sorted, not overlapping");
    let mut got: Vec<(i64, HistogramValue)> = Vec::new();
    for c in chunks {
        got.extend(c.histograms(i64::MIN, i64::MAX));
    }
    let mut want: Vec<(i64, HistogramValue)> = (0..120).map(|i| (start + i * MIN, int_h(i as u64))).collect();
    want.push((start + 30 * MIN + 30_000, int_h(1000)));
    want.sort_by_key(|s| s.0);
    assert_eq!(keys(&got), keys(&want));
    head.truncate_snapshot(snap);
    assert_eq!(head.stats().samples_shadowed.load(std::sync::atomic::Ordering::Relaxed), 1);
    // What stays: the histograms of the next range only.
    let left = read_histograms(&head, "h");
    assert_eq!(left.first().map(|s| s.0), Some(start + H2));
    assert_eq!(left.len(), 30);
}

#[test]
fn compaction_without_late_histograms_hands_over_the_encoded_chunks() {
    let (_d, head) = temp_head(memory_options(0));
    let start = 100 * H2;
    for i in 0..130 {
        append_h(&head, "h", start + i * 10_000, float_h(i as f64)).unwrap();
    }
    let snap = head.snapshot_range(start, start + H2).unwrap();
    let all: Vec<(crate::labels::Labels, Vec<ChunkMeta>)> = snap.series_chunks().map(Result::unwrap).collect();
    let kinds: Vec<usize> = all[0]
        .1
        .iter()
        .map(|c| match &c.data {
            ChunkData::FloatHistogram(_) => c.histograms(i64::MIN, i64::MAX).count(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, vec![120, 10]);
}

/// The histogram a model value choice stands for.
fn model_h(v: f64) -> HistogramValue {
    int_h(v as u64)
}

/// A request of `(series, minute offset, value choice)`; histograms follow the same write rules as
/// floats, so [`WriteModel`] (written for floats) is the model, with a duplicate-timestamp
/// rejection of a histogram named [`AppendError::DuplicateHistogram`].
fn check_histograms_against_model(window: i64, requests: &[Vec<(usize, i64, u8)>]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let names = ["a", "b", "c"];
    let opts = || Options { chunk_range_ms: H2, ..wal_options(window) };
    let mut model = WriteModel::new(window, H2);
    let base = 1_000 * MIN;
    let read = |head: &Arc<Head>, s: usize| -> Vec<(i64, u64)> {
        read_histograms(head, names[s]).iter().map(|(t, v)| (*t, (key(v).1 as f64).to_bits())).collect()
    };
    let want_of = |model: &WriteModel, s: usize| -> Vec<(i64, u64)> {
        model.stored(s).into_iter().map(|(t, bits)| (t, (f64::from_bits(bits) * 2.0).to_bits())).collect()
    };
    {
        let head = Head::open(dir.path(), opts()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (ri, req) in requests.iter().enumerate() {
            let shift = ri as i64 * 20 * MIN;
            let samples: Vec<(usize, i64, f64)> =
                req.iter().map(|&(s, off, v)| (s, base + shift + off * MIN, f64::from(v))).collect();
            let want = model.request(&samples);
            let mut app = head.appender();
            for (i, &(s, t, v)) in samples.iter().enumerate() {
                let h = app.series(&mut [("__name__", names[s])]).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let got = app.append_histogram(h, t, model_h(v));
                let want = match &want[i] {
                    Err(AppendError::Duplicate { t, .. }) => Err(AppendError::DuplicateHistogram { t: *t }),
                    other => other.clone(),
                };
                prop_assert_eq!(&got, &want, "request {} sample {} (series {}, t {}, v {})", ri, i, s, t, v);
            }
            app.commit().map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        for s in 0..names.len() {
            prop_assert_eq!(read(&head, s), want_of(&model, s), "series {} after the requests", s);
        }
        head.close().map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    let head = Head::open(dir.path(), opts()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for s in 0..names.len() {
        prop_assert_eq!(read(&head, s), want_of(&model, s), "series {} after replay", s);
    }
    head.checkpoint_now().map_err(|e| TestCaseError::fail(e.to_string()))?;
    head.close().map_err(|e| TestCaseError::fail(e.to_string()))?;
    drop(head);
    let head = Head::open(dir.path(), opts()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for s in 0..names.len() {
        prop_assert_eq!(read(&head, s), want_of(&model, s), "series {} after a checkpoint", s);
    }
    Ok(())
}

fn requests_strategy() -> impl Strategy<Value = Vec<Vec<(usize, i64, u8)>>> {
    let sample = (0usize..3, -200i64..60, 0u8..3);
    proptest::collection::vec(proptest::collection::vec(sample, 1..25), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random in-order, late, duplicate and conflicting histograms, window off: every outcome and
    /// what is read back (also after replay and after a checkpoint) match the model.
    #[test]
    fn histograms_match_model_window_off(requests in requests_strategy()) {
        check_histograms_against_model(0, &requests)?;
    }

    /// The same with a 1h out-of-order window (first wins among late histograms).
    #[test]
    fn histograms_match_model_window_1h(requests in requests_strategy()) {
        check_histograms_against_model(60 * MIN, &requests)?;
    }
}

fn ex(t: i64, v: f64, trace: &str) -> Exemplar {
    Exemplar { labels: vec![("trace_id".into(), trace.into())], value: v, t }
}

#[test]
fn exemplars_go_through_the_wal_and_come_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = |store: &Arc<ExemplarStore>| Options { exemplars: Some(Arc::clone(store)), ..wal_options(0) };
    let all = || vec![vec![Matcher::equal("__name__", "m")]];
    let store = Arc::new(ExemplarStore::new(10));
    {
        let head = Head::open(dir.path(), opts(&store)).unwrap();
        let mut app = head.appender();
        let h = app.series(&mut [("__name__", "m")]).unwrap();
        app.append(h, 1_000, 1.0).unwrap();
        app.append_exemplar(h, ex(1_000, 1.0, "a")).unwrap();
        app.append_exemplar(h, ex(1_500, 2.0, "b")).unwrap();
        let st = app.commit().unwrap();
        assert_eq!((st.exemplars_stored, st.exemplars_refused), (2, 0));
        // The store's checks are kept: older than the series' newest, or the same as it.
        let mut app = head.appender();
        let h = app.series(&mut [("__name__", "m")]).unwrap();
        assert_eq!(app.append_exemplar(h, ex(1_200, 1.0, "c")), Err(ExemplarError::OutOfOrder));
        assert_eq!(app.append_exemplar(h, ex(1_500, 2.0, "b")), Err(ExemplarError::Duplicate));
        app.commit().unwrap();
        head.close().unwrap();
    }
    let want = store.select(&all(), i64::MIN, i64::MAX);
    assert_eq!(want[0].1.len(), 2);
    let store = Arc::new(ExemplarStore::new(10));
    let head = Head::open(dir.path(), opts(&store)).unwrap();
    assert_eq!(store.select(&all(), i64::MIN, i64::MAX), want, "after replay");
    head.checkpoint_now().unwrap();
    head.close().unwrap();
    drop(head);
    let store = Arc::new(ExemplarStore::new(10));
    let _head = Head::open(dir.path(), opts(&store)).unwrap();
    assert_eq!(store.select(&all(), i64::MIN, i64::MAX), want, "after a checkpoint");
}

#[test]
fn a_head_without_an_exemplar_store_refuses_exemplars() {
    let (_d, head) = temp_head(memory_options(0));
    let mut app = head.appender();
    let h = app.series(&mut [("__name__", "m")]).unwrap();
    assert_eq!(app.append_exemplar(h, ex(1, 1.0, "a")), Err(ExemplarError::Disabled));
}

/// A series holding floats and histograms over the same time: head compaction hands the block
/// writer both kinds, and both read back whole from the blocks and the head.
#[test]
fn floats_and_histograms_of_one_series_survive_head_compaction() {
    let (_d, db) = crate::testing::temp_db(Options { wal: None, ..Options::default() });
    let start = 100 * H2;
    let mut want: Vec<(i64, f64)> = Vec::new();
    let mut want_h: Vec<(i64, HistogramValue)> = Vec::new();
    for i in 0..(4 * 120) {
        let t = start + i * MIN;
        let mut app = db.head().appender();
        let h = app.series(&mut [("__name__", "m")]).unwrap();
        app.append(h, t, i as f64).unwrap();
        app.append_histogram(h, t + 1_000, int_h(i as u64)).unwrap();
        app.commit().unwrap();
        want.push((t, i as f64));
        want_h.push((t + 1_000, int_h(i as u64)));
    }
    db.compact().unwrap();
    assert!(!db.blocks().is_empty(), "a block was written");
    assert!(db.head().min_time() >= start + H2, "the first range left the head");
    let q = db.querier(i64::MIN, i64::MAX);
    let s = q.select(&[Matcher::equal("__name__", "m")]).unwrap().pop().unwrap();
    assert_eq!(s.samples(i64::MIN, i64::MAX).collect::<Vec<_>>(), want);
    assert_eq!(keys(&histograms_of(&s)), keys(&want_h), "histograms from the blocks and the head");
}

/// Late histograms in a compacted range go into the block (merged with the in-order ones), and a
/// database reopened after the compaction and its checkpoint reads every histogram once.
#[test]
fn late_histograms_reach_blocks_and_a_reopened_database_reads_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || crate::DbOptions { head: wal_options(4 * H2), ..crate::DbOptions::default() };
    let start = 100 * H2;
    let mut want: BTreeMap<i64, HistogramValue> = BTreeMap::new();
    {
        let db = crate::Db::open(dir.path(), opts()).unwrap();
        for i in 0..(4 * 60) {
            let t = start + i * 2 * MIN;
            append_h(db.head(), "h", t, int_h(i as u64)).unwrap();
            want.insert(t, int_h(i as u64));
        }
        // Late, between in-order ones, in the first two ranges.
        for i in 0..30 {
            let t = start + i * 7 * MIN + 30_000;
            append_h(db.head(), "h", t, float_h(i as f64)).unwrap();
            want.insert(t, float_h(i as f64));
        }
        db.compact().unwrap();
        assert!(!db.blocks().is_empty());
        let q = db.querier(i64::MIN, i64::MAX);
        let s = q.select(&[Matcher::equal("__name__", "h")]).unwrap().pop().unwrap();
        let want_v: Vec<(i64, HistogramValue)> = want.clone().into_iter().collect();
        assert_eq!(keys(&histograms_of(&s)), keys(&want_v), "after compaction");
        db.close().unwrap();
    }
    let db = crate::Db::open(dir.path(), opts()).unwrap();
    let q = db.querier(i64::MIN, i64::MAX);
    let s = q.select(&[Matcher::equal("__name__", "h")]).unwrap().pop().unwrap();
    let want_v: Vec<(i64, HistogramValue)> = want.into_iter().collect();
    assert_eq!(keys(&histograms_of(&s)), keys(&want_v), "after reopening");
    // No timestamp is held twice (no late one shares an in-order timestamp here).
    let held: usize = s.chunks.iter().chain(&s.ooo_chunks).map(|c| c.histograms(i64::MIN, i64::MAX).count()).sum();
    assert_eq!(held, want_v.len());
}

/// Histograms that a block already holds (a crash between writing it and the checkpoint) are
/// skipped at replay, as float samples are.
#[test]
fn replay_skips_histograms_already_in_a_block() {
    let dir = tempfile::tempdir().unwrap();
    let base = 1_000 * MIN;
    {
        let head = Head::open(dir.path(), wal_options(0)).unwrap();
        for i in 0..10 {
            append_h(&head, "h", base + i * MIN, int_h(i as u64)).unwrap();
        }
        head.close().unwrap();
    }
    let skip = crate::head::ReplaySkip { before_segment: u32::MAX, mint: base, maxt: base + 5 * MIN };
    let hints = crate::head::OpenHints { skips: vec![skip], min_valid_floor: base + 5 * MIN };
    let head = Head::open_with(dir.path(), wal_options(0), hints).unwrap();
    let want: Vec<(i64, HistogramValue)> = (5..10).map(|i| (base + i * MIN, int_h(i as u64))).collect();
    assert_eq!(keys(&read_histograms(&head, "h")), keys(&want));
}

/// A float stale marker for a series whose newest sample is a histogram becomes a histogram stale
/// marker of that histogram's kind (Prometheus's head does so); for a series whose newest sample
/// is a float it stays a float.
#[test]
fn a_float_stale_marker_after_histograms_is_a_histogram_stale_marker() {
    let (_d, head) = temp_head(memory_options(0));
    let stale = f64::from_bits(STALE_NAN);
    let mut app = head.appender();
    let h = app.series(&mut [("__name__", "h")]).unwrap();
    let f = app.series(&mut [("__name__", "f")]).unwrap();
    app.append(f, 1_000, 1.0).unwrap();
    app.append_histogram(f, 500, int_h(1)).unwrap();
    app.append_histogram(h, 1_000, float_h(1.0)).unwrap();
    // Queued, not yet committed: the queued histogram is the newest.
    app.append(h, 2_000, stale).unwrap();
    app.append(f, 2_000, stale).unwrap();
    let st = app.commit().unwrap();
    assert_eq!((st.in_order, st.histograms_in_order), (2, 3));
    let got = read_histograms(&head, "h");
    assert_eq!(got.len(), 2);
    assert!(matches!(&got[1].1, HistogramValue::Float(x) if x.sum.to_bits() == STALE_NAN));
    let q = head.querier(i64::MIN, i64::MAX);
    let s = q.select(&[Matcher::equal("__name__", "h")]).unwrap().pop().unwrap();
    assert_eq!(s.samples(i64::MIN, i64::MAX).count(), 0, "no float sample in the histogram series");
    let s = q.select(&[Matcher::equal("__name__", "f")]).unwrap().pop().unwrap();
    let floats: Vec<u64> = s.samples(i64::MIN, i64::MAX).map(|(_, v)| v.to_bits()).collect();
    assert_eq!(floats, vec![1f64.to_bits(), STALE_NAN]);
    // Committed state: a retried marker is a duplicate of the stored histogram stale marker.
    let mut app = head.appender();
    let h = app.series(&mut [("__name__", "h")]).unwrap();
    app.append(h, 2_000, stale).unwrap();
    assert_eq!(app.commit().unwrap().histograms_deduplicated, 1);
}

/// In-order histograms more than half a range older than the head's newest sample come back from a
/// checkpoint as in-order chunks, not among the late histograms.
#[test]
fn a_checkpoint_brings_old_in_order_histograms_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let start = 100 * H2;
    let mut want = Vec::new();
    {
        let head = Head::open(dir.path(), wal_options(0)).unwrap();
        // 2h45m of histograms every 30s: most are more than an hour older than the newest.
        for i in 0..330 {
            append_h(&head, "h", start + i * 30_000, int_h(i as u64 + 1)).unwrap();
            want.push((start + i * 30_000, int_h(i as u64 + 1)));
        }
        // A float series' chunks, replayed before the histograms, set the head's newest time.
        let mut app = head.appender();
        app.append_pairs(&[("__name__", "f")], start + 330 * 30_000, 1.0).unwrap();
        app.commit().unwrap();
        head.checkpoint_now().unwrap();
        head.close().unwrap();
    }
    let head = Head::open(dir.path(), wal_options(0)).unwrap();
    let q = head.querier(i64::MIN, i64::MAX);
    let s = q.select(&[Matcher::equal("__name__", "h")]).unwrap().pop().unwrap();
    assert!(s.ooo_chunks.is_empty(), "{} late chunks", s.ooo_chunks.len());
    assert_eq!(keys(&histograms_of(&s)), keys(&want));
    // Cut as before: at 120 samples and at the range end.
    let sizes: Vec<usize> = s.chunks.iter().map(|c| c.histograms(i64::MIN, i64::MAX).count()).collect();
    assert_eq!(sizes, vec![120, 120, 90]);
}

/// A checkpoint keeps sealed histogram chunks as they are (a histogram chunks record): after a
/// restart the head holds the same chunk bytes, the checkpoint holds that record, and what is
/// appended next is judged against the newest histogram.
#[test]
fn a_checkpoint_keeps_sealed_histogram_chunks_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let base = 1_000 * MIN;
    let chunks_of = |head: &Arc<Head>| -> Vec<(i64, i64, Vec<u8>)> {
        let q = head.querier(i64::MIN, i64::MAX);
        let s = q.select(&[Matcher::equal("__name__", "h")]).unwrap().pop().unwrap();
        s.chunks.iter().map(|c| (c.min_t, c.max_t, c.data.bytes().map(|b| b.to_vec()).unwrap_or_default())).collect()
    };
    let before = {
        let head = Head::open(dir.path(), wal_options(0)).unwrap();
        for i in 0..250 {
            append_h(&head, "h", base + i * 10_000, int_h(i as u64 + 1)).unwrap();
        }
        head.checkpoint_now().unwrap();
        let before = chunks_of(&head);
        head.close().unwrap();
        before
    };
    assert_eq!(before.len(), 3);
    let checkpoint = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("checkpoint.")))
        .unwrap();
    let mut reader = wal::Reader::open(&checkpoint).unwrap();
    let mut tags = Vec::new();
    while let Some(Ok((_, rec))) = reader.next_record_in_segment() {
        tags.extend(rec.first().copied());
    }
    assert!(tags.contains(&(crate::record::RecordType::HistogramChunks as u8)), "record types {tags:?}");
    let head = Head::open(dir.path(), wal_options(0)).unwrap();
    assert_eq!(chunks_of(&head), before);
    assert!(append_h(&head, "h", base + 249 * 10_000, int_h(250)).is_ok(), "the same histogram again");
    assert!(append_h(&head, "h", base + 249 * 10_000, int_h(7)).is_err(), "a different one at the newest timestamp");
    append_h(&head, "h", base + 250 * 10_000, int_h(251)).unwrap();
    assert_eq!(read_histograms(&head, "h").len(), 251);
}
