//! Head tests through the public API: appends, rejections, out-of-order merging, WAL replay.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::error::AppendError;
use crate::head::{Head, Options};
use crate::labels::Matcher;
use crate::testing::{memory_options, temp_head, WriteModel};

const MIN: i64 = 60_000;

fn read_all(head: &std::sync::Arc<Head>, name: &str) -> Vec<(i64, f64)> {
    let q = head.querier(i64::MIN, i64::MAX);
    let series = q.select(&[Matcher::equal("__name__", name)]).unwrap();
    assert!(series.len() <= 1);
    series.first().map(|s| s.samples(i64::MIN, i64::MAX).collect()).unwrap_or_default()
}

fn wal_options(window: i64) -> Options {
    Options {
        ooo_time_window_ms: window,
        wal: Some(wal::Options { segment_size_bytes: 1 << 20, ..Default::default() }),
        ..Options::default()
    }
}

#[test]
fn duplicates_and_conflicts() {
    let (_d, head) = temp_head(memory_options(30 * MIN));
    let mut app = head.appender();
    app.append_pairs(&[("__name__", "m")], 100 * MIN, 1.0).unwrap();
    app.append_pairs(&[("__name__", "m")], 101 * MIN, 2.0).unwrap();
    app.commit().unwrap();
    let mut app = head.appender();
    // Identical retry of the newest sample: accepted, not stored again.
    app.append_pairs(&[("__name__", "m")], 101 * MIN, 2.0).unwrap();
    // A different value at the newest timestamp: rejected.
    let e = app.append_pairs(&[("__name__", "m")], 101 * MIN, 7.0).unwrap_err();
    assert!(matches!(e, AppendError::Duplicate { .. }), "{e}");
    // Out of order, new: accepted.
    app.append_pairs(&[("__name__", "m")], 90 * MIN, 0.5).unwrap();
    // Late, at a stored in-order timestamp (not the newest): accepted as Prometheus does; the
    // in-order value, stored first, is the one read.
    app.append_pairs(&[("__name__", "m")], 100 * MIN, 7.0).unwrap();
    // Too old for the 30m window.
    assert_eq!(app.append_pairs(&[("__name__", "m")], 50 * MIN, 1.0), Err(AppendError::TooOld));
    let stats = app.commit().unwrap();
    assert_eq!((stats.out_of_order, stats.deduplicated), (2, 1));
    assert_eq!(read_all(&head, "m"), vec![(90 * MIN, 0.5), (100 * MIN, 1.0), (101 * MIN, 2.0)]);
    // Within one transaction, a late sample meets the samples queued before it.
    let mut app = head.appender();
    app.append_pairs(&[("__name__", "m")], 102 * MIN, 3.0).unwrap();
    app.append_pairs(&[("__name__", "m")], 103 * MIN, 4.0).unwrap();
    app.append_pairs(&[("__name__", "m")], 102 * MIN, 3.0).unwrap();
    assert!(matches!(app.append_pairs(&[("__name__", "m")], 102 * MIN, 9.0), Err(AppendError::Duplicate { .. })));
    let stats = app.commit().unwrap();
    assert_eq!((stats.in_order, stats.conflicts), (2, 0));
    // A retried late sample is stored once; a different value at its timestamp is not stored.
    let mut app = head.appender();
    app.append_pairs(&[("__name__", "m")], 90 * MIN, 0.5).unwrap();
    app.commit().unwrap();
    let mut app = head.appender();
    app.append_pairs(&[("__name__", "m")], 90 * MIN, 0.25).unwrap();
    let stats = app.commit().unwrap();
    assert_eq!((stats.out_of_order, stats.conflicts), (0, 1));
    assert_eq!(
        read_all(&head, "m"),
        vec![(90 * MIN, 0.5), (100 * MIN, 1.0), (101 * MIN, 2.0), (102 * MIN, 3.0), (103 * MIN, 4.0)]
    );
}

#[test]
fn out_of_order_window_changes_at_runtime() {
    let (_d, head) = temp_head(memory_options(0));
    let m = [("__name__", "m")];
    let mut app = head.appender();
    app.append_pairs(&m, 100 * MIN, 1.0).unwrap();
    app.commit().unwrap();
    let mut app = head.appender();
    assert_eq!(app.append_pairs(&m, 90 * MIN, 2.0), Err(AppendError::OutOfOrder));
    app.commit().unwrap();
    // An appender opened before the change keeps the window it started with.
    let mut before = head.appender();
    head.set_ooo_time_window_ms(30 * MIN);
    assert_eq!(head.ooo_time_window_ms(), 30 * MIN);
    assert_eq!(before.append_pairs(&m, 90 * MIN, 2.0), Err(AppendError::OutOfOrder));
    before.commit().unwrap();
    let mut app = head.appender();
    app.append_pairs(&m, 90 * MIN, 2.0).unwrap();
    assert_eq!(app.append_pairs(&m, 60 * MIN, 3.0), Err(AppendError::TooOld));
    app.commit().unwrap();
    head.set_ooo_time_window_ms(0);
    let mut app = head.appender();
    assert_eq!(app.append_pairs(&m, 95 * MIN, 4.0), Err(AppendError::OutOfOrder));
    app.commit().unwrap();
    // Samples taken under the wider window stay.
    assert_eq!(read_all(&head, "m"), vec![(90 * MIN, 2.0), (100 * MIN, 1.0)]);
}

#[test]
fn special_values_are_kept_exactly() {
    let (_d, head) = temp_head(memory_options(0));
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let vals = [stale, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e308];
    let mut app = head.appender();
    for (i, v) in vals.iter().enumerate() {
        app.append_pairs(&[("__name__", "s")], i as i64 * 1000, *v).unwrap();
    }
    app.commit().unwrap();
    let got = read_all(&head, "s");
    let bits: Vec<u64> = got.iter().map(|s| s.1.to_bits()).collect();
    assert_eq!(bits, vals.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
}

#[test]
fn wal_replay_restores_in_order_and_out_of_order_samples() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = BTreeMap::new();
    {
        let head = Head::open(dir.path(), wal_options(60 * MIN)).unwrap();
        for round in 0..3 {
            let mut app = head.appender();
            for i in 0..200i64 {
                let t = round * 1_000_000 + i * 1000;
                app.append_pairs(&[("__name__", "r"), ("job", "x")], t, i as f64).unwrap();
                want.insert(t, i as f64);
            }
            app.commit().unwrap();
        }
        let mut app = head.appender();
        for i in 0..50i64 {
            let t = 1_000_000 + i * 1000 + 500;
            app.append_pairs(&[("__name__", "r"), ("job", "x")], t, -(i as f64)).unwrap();
            want.insert(t, -(i as f64));
        }
        app.commit().unwrap();
        // No close: like a crash after the acknowledgement.
    }
    let head = Head::open(dir.path(), wal_options(60 * MIN)).unwrap();
    let got = read_all(&head, "r");
    assert_eq!(got, want.into_iter().collect::<Vec<_>>());
    assert_eq!(head.num_series(), 1);
    // New series after replay get fresh references.
    let mut app = head.appender();
    app.append_pairs(&[("__name__", "other")], 5_000_000, 1.0).unwrap();
    app.commit().unwrap();
    drop(head);
    let head = Head::open(dir.path(), wal_options(60 * MIN)).unwrap();
    assert_eq!(head.num_series(), 2);
    assert_eq!(read_all(&head, "other"), vec![(5_000_000, 1.0)]);
}

#[test]
fn series_created_but_logged_by_another_appender_replays() {
    let dir = tempfile::tempdir().unwrap();
    {
        let head = Head::open(dir.path(), wal_options(0)).unwrap();
        let mut a = head.appender();
        let mut b = head.appender();
        // `a` creates the series, `b` commits a sample for it first.
        let mut pa = [("__name__", "race")];
        let ha = a.series(&mut pa).unwrap();
        let mut pb = [("__name__", "race")];
        let hb = b.series(&mut pb).unwrap();
        a.append(ha, 1000, 1.0).unwrap();
        b.append(hb, 2000, 2.0).unwrap();
        b.commit().unwrap();
        a.commit().unwrap();
    }
    let head = Head::open(dir.path(), wal_options(0)).unwrap();
    // Both acknowledged samples survive, the late one out of order.
    assert_eq!(read_all(&head, "race"), vec![(1000, 1.0), (2000, 2.0)]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any interleaving of appends inside the window reads back as the sorted, deduplicated set,
    /// before and after WAL replay.
    #[test]
    fn any_interleaving_reads_back_sorted_and_deduplicated(
        batches in proptest::collection::vec(proptest::collection::vec((0i64..400, 0u8..4), 1..40), 1..8),
        cap in 1usize..40,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let opts = Options { ooo_cap_max: cap, ..wal_options(1_000 * MIN) };
        let mut want: BTreeMap<i64, f64> = BTreeMap::new();
        {
            let head = Head::open(dir.path(), opts.clone()).unwrap();
            for batch in &batches {
                let mut app = head.appender();
                // Values this transaction queued first at each timestamp.
                let mut queued: BTreeMap<i64, f64> = BTreeMap::new();
                for &(step, v) in batch {
                    let t = step * 15_000;
                    let v = f64::from(v);
                    match app.append_pairs(&[("__name__", "p")], t, v) {
                        // Accepted: reads show it unless a value was stored at `t` before (the
                        // first stored wins).
                        Ok(()) => {
                            want.entry(t).or_insert(v);
                            queued.entry(t).or_insert(v);
                        }
                        // Only against the newest stored sample or one queued in this transaction.
                        Err(AppendError::Duplicate { existing, .. }) => {
                            let newest = want.last_key_value().map(|(&t, &v)| (t, v));
                            prop_assert!(queued.get(&t) == Some(&existing) || newest == Some((t, existing)));
                        }
                        Err(e) => prop_assert!(false, "unexpected rejection {}", e),
                    }
                }
                app.commit().unwrap();
            }
            let got = read_all(&head, "p");
            prop_assert_eq!(&got, &want.clone().into_iter().collect::<Vec<_>>());
        }
        let head = Head::open(dir.path(), opts).unwrap();
        prop_assert_eq!(read_all(&head, "p"), want.into_iter().collect::<Vec<_>>());
    }
}

const H2: i64 = 2 * 3_600_000;

fn sample_series(head: &std::sync::Arc<Head>, range: std::ops::Range<i64>, step: i64) -> BTreeMap<i64, f64> {
    let mut want = BTreeMap::new();
    let mut app = head.appender();
    let mut t = range.start;
    while t < range.end {
        app.append_pairs(&[("__name__", "c"), ("job", "j")], t, t as f64).unwrap();
        want.insert(t, t as f64);
        t += step;
    }
    app.commit().unwrap();
    want
}

#[test]
fn snapshot_truncate_and_checkpoint_keep_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let opts = wal_options(3 * H2);
    let head = Head::open(dir.path(), opts.clone()).unwrap();
    let mut all = sample_series(&head, 0..3 * H2, 60_000);
    // Late samples for the first range, inside the window.
    let mut app = head.appender();
    for i in 0..10 {
        let t = 30_000 + i * 60_000;
        app.append_pairs(&[("__name__", "c"), ("job", "j")], t, -1.0).unwrap();
        all.insert(t, -1.0);
    }
    app.commit().unwrap();

    let snap = head.snapshot_range(0, H2).unwrap();
    let cut = snap.wal_cut.unwrap();
    assert_eq!(snap.num_series(), 1);
    // A late sample for the snapshotted range after the snapshot is not in it (the snapshot's samples
    // are read from the series only now, as a compaction reads them while writing the block).
    let mut app = head.appender();
    app.append_pairs(&[("__name__", "c"), ("job", "j")], 45_000, 7.0).unwrap();
    app.commit().unwrap();
    let series: Vec<_> = snap.series_chunks().collect::<crate::Result<_>>().unwrap();
    let in_block: BTreeMap<i64, f64> = {
        let s = crate::querier::Series { labels: series[0].0.clone(), chunks: series[0].1.clone(), ooo_chunks: vec![] };
        s.samples(i64::MIN, i64::MAX).collect()
    };
    assert_eq!(in_block, all.range(0..H2).map(|(&t, &v)| (t, v)).collect());
    assert!(series[0].1.windows(2).all(|w| w[0].max_t < w[1].min_t), "chunks must not overlap");

    // ... and stays in the head.
    head.truncate_snapshot(snap);
    let remaining: BTreeMap<i64, f64> = read_all(&head, "c").into_iter().collect();
    let mut want_remaining: BTreeMap<i64, f64> = all.range(H2..).map(|(&t, &v)| (t, v)).collect();
    want_remaining.insert(45_000, 7.0);
    assert_eq!(remaining, want_remaining);
    assert_eq!(head.min_time(), 45_000);

    // Crash before the checkpoint: replay skips what the block holds.
    let skip = super::ReplaySkip { before_segment: cut, mint: 0, maxt: H2 };
    drop(head);
    let hints = super::OpenHints { skips: vec![skip], min_valid_floor: H2 };
    let head = Head::open_with(dir.path(), opts.clone(), hints.clone()).unwrap();
    assert_eq!(read_all(&head, "c").into_iter().collect::<BTreeMap<_, _>>(), want_remaining);

    // Checkpoint, then restart: same content, old segments gone.
    let cut2 = head.wal().unwrap().cut_segment().unwrap().0;
    head.checkpoint(cut2).unwrap();
    let (first, _) = head.wal().unwrap().segment_range().unwrap().unwrap();
    assert_eq!(first.0, cut2);
    drop(head);
    let head = Head::open_with(dir.path(), opts, hints).unwrap();
    assert_eq!(read_all(&head, "c").into_iter().collect::<BTreeMap<_, _>>(), want_remaining);
    // In-order appends below the floor are refused (window covers them: they go out of order).
    let mut app = head.appender();
    app.append_pairs(&[("__name__", "c"), ("job", "j")], H2 - 1, 1.0).unwrap();
    assert_eq!(app.commit().unwrap().out_of_order, 1);
}

#[test]
fn series_from_raw_bytes() {
    use crate::labels::LabelError;
    let (_d, head) = temp_head(memory_options(30 * MIN));
    let mut app = head.appender();
    // Unsorted, with an empty value: validated and sorted like `series`.
    let raw: [(&[u8], &[u8]); 3] = [(b"job", b"a"), (b"__name__", b"m"), (b"empty", b"")];
    let h = app.series_bytes(&raw).unwrap();
    app.append(h, MIN, 1.0).unwrap();
    // The same label set as stored (sorted, complete) finds the same series.
    let stored: [(&[u8], &[u8]); 2] = [(b"__name__", b"m"), (b"job", b"a")];
    let h2 = app.series_bytes(&stored).unwrap();
    assert_eq!(h, h2);
    // Not UTF-8: rejected, nothing created.
    let bad: [(&[u8], &[u8]); 2] = [(b"__name__", b"m"), (b"job", &[0xff])];
    assert_eq!(app.series_bytes(&bad), Err(LabelError::InvalidUtf8));
    // Invalid names are still refused: an empty name, or not UTF-8.
    let bad_name: [(&[u8], &[u8]); 2] = [(b"", b"a"), (b"__name__", b"m")];
    assert!(matches!(app.series_bytes(&bad_name), Err(LabelError::InvalidName { .. })));
    let bad_name: [(&[u8], &[u8]); 2] = [(b"__name__", b"m"), (&[b'j', 0xc3], b"a")];
    assert_eq!(app.series_bytes(&bad_name), Err(LabelError::InvalidUtf8));
    app.commit().unwrap();
    assert_eq!(read_all(&head, "m"), vec![(MIN, 1.0)]);
    assert_eq!(head.num_series(), 1);
}

#[test]
fn name_validation_scheme_applies_to_new_series() {
    use crate::labels::{LabelError, NameValidation};
    let (_d, head) = temp_head(memory_options(0));
    assert_eq!(head.name_validation(), NameValidation::Utf8);
    let dotted: [(&[u8], &[u8]); 2] = [(b"__name__", b"resource.cpu.usage"), (b"job.name", b"x")];
    let mut app = head.appender();
    let h = app.series_bytes(&dotted).unwrap();
    app.append(h, MIN, 1.0).unwrap();
    app.commit().unwrap();
    assert_eq!(read_all(&head, "resource.cpu.usage"), vec![(MIN, 1.0)]);

    head.set_name_validation(NameValidation::Legacy);
    let mut app = head.appender();
    let other: [(&[u8], &[u8]); 2] = [(b"__name__", b"m"), (b"job.name", b"y")];
    assert!(matches!(app.series_bytes(&other), Err(LabelError::InvalidName { .. })));
    let metric: [(&[u8], &[u8]); 1] = [(b"__name__", b"a.b")];
    assert!(matches!(app.series_bytes(&metric), Err(LabelError::InvalidMetricName { .. })));
    // A series already stored is still appended to: the scheme governs which series may be created.
    let h = app.series_bytes(&dotted).unwrap();
    app.append(h, 2 * MIN, 2.0).unwrap();
    app.commit().unwrap();
    assert_eq!(read_all(&head, "resource.cpu.usage"), vec![(MIN, 1.0), (2 * MIN, 2.0)]);
    assert_eq!(head.num_series(), 1);
}

#[test]
fn lazy_selection_sorted_and_unordered_agree_with_select() {
    let (_d, head) = temp_head(memory_options(0));
    let mut app = head.appender();
    for i in [7, 3, 11, 0, 5] {
        let inst = format!("10.0.0.{i}:9100");
        app.append_pairs(&[("__name__", "m"), ("instance", inst.as_str())], 10 * MIN, f64::from(i)).unwrap();
    }
    // A series with no sample in the queried range.
    app.append_pairs(&[("__name__", "m"), ("instance", "old")], MIN, 1.0).unwrap();
    app.commit().unwrap();
    let q = head.querier(5 * MIN, 20 * MIN);
    let ms = [Matcher::equal("__name__", "m")];
    let snap = |s: &crate::querier::LazySeries| {
        s.snapshot(q.mint(), q.maxt())
            .unwrap()
            .map(|s| (s.labels.clone(), s.samples(q.mint(), q.maxt()).collect::<Vec<_>>()))
    };
    let selected: Vec<_> = q
        .select(&ms)
        .unwrap()
        .iter()
        .map(|s| (s.labels.clone(), s.samples(q.mint(), q.maxt()).collect::<Vec<_>>()))
        .collect();
    assert_eq!(selected.len(), 5);
    let sorted: Vec<_> = q.select_lazy(&ms).unwrap().iter().filter_map(snap).collect();
    assert_eq!(sorted, selected);
    let mut unordered: Vec<_> = q.select_lazy_unordered(&ms).unwrap().iter().filter_map(snap).collect();
    unordered.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(unordered, selected);
}

#[test]
fn series_left_without_samples_are_removed_unless_an_appender_holds_them() {
    const H2: i64 = 2 * 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let opts = wal_options(0);
    let head = Head::open(dir.path(), opts.clone()).unwrap();
    let gone = [("__name__", "m"), ("pod", "a")];
    let held = [("__name__", "m"), ("pod", "b")];
    let stays = [("__name__", "m"), ("pod", "c")];
    let mut app = head.appender();
    for i in 0..60 {
        app.append_pairs(&gone, i * MIN, 1.0).unwrap();
        app.append_pairs(&held, i * MIN, 2.0).unwrap();
    }
    for i in 0..200 {
        app.append_pairs(&stays, i * MIN, 3.0).unwrap();
    }
    app.commit().unwrap();
    let old_ref = head
        .series_maps()
        .get_by_packed(
            crate::labels::Labels::from_pairs(&gone).unwrap().stable_hash(),
            crate::labels::Labels::from_pairs(&gone).unwrap().packed(),
        )
        .unwrap()
        .sref;
    // An appender that found `held` before the truncation commits to it after.
    let mut late = head.appender();
    let h = late.series(&mut held.to_vec()).unwrap();

    let snap = head.snapshot_range(0, H2).unwrap();
    head.truncate_snapshot(snap);
    assert_eq!(head.num_series(), 2, "`gone` removed, `held` kept");
    assert_eq!(head.stats().series_removed.load(std::sync::atomic::Ordering::Relaxed), 1);
    let q = head.querier(i64::MIN, i64::MAX);
    assert_eq!(q.label_values("pod", &[]).unwrap(), vec!["b", "c"]);

    late.append(h, 190 * MIN, 4.0).unwrap();
    late.commit().unwrap();
    let samples_of = |head: &std::sync::Arc<Head>, pod: &str| -> Vec<(i64, f64)> {
        let q = head.querier(i64::MIN, i64::MAX);
        let s = q.select(&[Matcher::equal("pod", pod)]).unwrap();
        s.first().map(|s| s.samples(i64::MIN, i64::MAX).collect()).unwrap_or_default()
    };
    assert_eq!(samples_of(&head, "b"), vec![(190 * MIN, 4.0)]);
    // The same labels again: a new series with a new reference.
    let mut app = head.appender();
    app.append_pairs(&gone, 195 * MIN, 5.0).unwrap();
    app.commit().unwrap();
    assert_eq!(head.num_series(), 3);
    assert_eq!(samples_of(&head, "a"), vec![(195 * MIN, 5.0)]);

    // Checkpoint (without the removed series) and restart: the same content.
    let cut = head.wal().unwrap().cut_segment().unwrap().0;
    head.checkpoint(cut).unwrap();
    drop(head);
    let head = Head::open_with(dir.path(), opts, super::OpenHints { skips: vec![], min_valid_floor: H2 }).unwrap();
    assert_eq!(head.num_series(), 3);
    assert_eq!(samples_of(&head, "a"), vec![(195 * MIN, 5.0)]);
    assert_eq!(samples_of(&head, "b"), vec![(190 * MIN, 4.0)]);
    assert_eq!(samples_of(&head, "c").len(), 200 - 120);
    let new_ref = head
        .series_maps()
        .get_by_packed(
            crate::labels::Labels::from_pairs(&gone).unwrap().stable_hash(),
            crate::labels::Labels::from_pairs(&gone).unwrap().packed(),
        )
        .unwrap()
        .sref;
    assert!(new_ref > old_ref);
}

#[test]
fn a_reference_still_named_in_the_wal_is_not_reused_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = wal_options(0);
    {
        // Samples of a series whose record is gone (removed before a checkpoint left it out).
        let (wal, _) = wal::Wal::open(&dir.path().join("wal"), wal::Options::default()).unwrap();
        let mut rec = crate::record::SamplesRecord::with_capacity(1);
        rec.push(crate::record::RefSample { sref: 50, t: MIN, v: 1.0 });
        wal.log(&[rec.as_bytes()], || ()).unwrap();
        wal.close().unwrap();
    }
    let head = Head::open(dir.path(), opts).unwrap();
    let mut app = head.appender();
    app.append_pairs(&[("__name__", "m")], 2 * MIN, 1.0).unwrap();
    app.commit().unwrap();
    let q = head.querier(i64::MIN, i64::MAX);
    let refs = head.postings().select(&[Matcher::equal("__name__", "m")]);
    assert_eq!(refs.iter().collect::<Vec<u32>>(), vec![51]);
    assert_eq!(q.select(&[Matcher::equal("__name__", "m")]).unwrap().len(), 1);
}

/// Writers append to series that come and go while the head is compacted and collected over and over:
/// every accepted sample ends up exactly once in a snapshot (a block) or in the head.
#[test]
fn churning_series_lose_nothing_while_compacted_and_collected() {
    use std::collections::BTreeSet;
    const RANGE: i64 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    // With a WAL: a snapshot is ordered against commits by the WAL's writer lock.
    let wal = wal::Options { sync: wal::SyncPolicy::Never, segment_size_bytes: 1 << 20 };
    let head = Head::open(
        dir.path(),
        Options { chunk_range_ms: RANGE, ooo_time_window_ms: RANGE, wal: Some(wal), ..Options::default() },
    )
    .unwrap();
    let mut stored: BTreeMap<(String, i64), f64> = BTreeMap::new();
    let accepted: BTreeSet<(String, i64)> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let head = &head;
                scope.spawn(move || {
                    let mut acked = BTreeSet::new();
                    for round in 0..20_000i64 {
                        // Each series gets 30 rounds of samples and then none; 8 live at once.
                        let t = round * 5;
                        let mut app = head.appender();
                        let mut ok = Vec::new();
                        for k in 0..8 {
                            let id = format!("{w}-{}", (round + k * 30 / 8) / 30 * 8 + k);
                            if app.append_pairs(&[("__name__", "c"), ("id", id.as_str())], t, t as f64).is_ok() {
                                ok.push((id, t));
                            }
                        }
                        app.commit().unwrap();
                        acked.extend(ok);
                    }
                    acked
                })
            })
            .collect();
        let mut collected = 0;
        loop {
            // Once the writers are done, one last snapshot takes everything left.
            let done = writers.iter().all(|w| w.is_finished());
            let (lo, hi) = (head.min_time(), head.max_time());
            if done && lo == i64::MAX {
                break;
            }
            if !done && (lo == i64::MAX || hi.saturating_sub(lo) <= RANGE / 2 * 3) {
                std::thread::yield_now();
                continue;
            }
            let mint = lo.div_euclid(RANGE) * RANGE;
            let maxt = if done { hi + 1 } else { mint + RANGE };
            let snap = head.snapshot_range(mint, maxt).unwrap();
            for series in snap.series_chunks() {
                let (labels, chunks) = series.unwrap();
                let s = crate::querier::Series { labels, chunks, ooo_chunks: vec![] };
                let id = s.labels.get("id").unwrap().to_string();
                for (t, v) in s.samples(i64::MIN, i64::MAX) {
                    assert!(stored.insert((id.clone(), t), v).is_none(), "{id}@{t} in two snapshots");
                }
            }
            head.truncate_snapshot(snap);
            if !done {
                collected = head.stats().series_removed.load(std::sync::atomic::Ordering::Relaxed);
            }
        }
        assert!(collected > 100, "series were collected while written: {collected}");
        writers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(head.num_series(), 0, "everything went into snapshots; nothing holds a series");
    let got: BTreeSet<(String, i64)> = stored.keys().cloned().collect();
    let missing: Vec<_> = accepted.difference(&got).take(5).collect();
    assert!(missing.is_empty(), "accepted but lost: {missing:?}");
    assert_eq!(got, accepted);
    assert!(stored.iter().all(|((_, t), v)| *v == *t as f64));
}

fn model_options(window: i64) -> Options {
    Options {
        chunk_range_ms: 2 * 60 * MIN,
        ooo_time_window_ms: window,
        creation_grace_period_ms: None,
        wal: Some(wal::Options { segment_size_bytes: 1 << 20, ..Default::default() }),
        ..Options::default()
    }
}

/// Requests of interleaved series: each sample `(series, minute offset, value choice)`; values come
/// from a small set so that duplicates and conflicts are frequent.
fn requests_strategy() -> impl Strategy<Value = Vec<Vec<(usize, i64, u8)>>> {
    let sample = (0usize..4, -200i64..60, 0u8..3);
    proptest::collection::vec(proptest::collection::vec(sample, 1..25), 1..8)
}

fn check_against_model(window: i64, requests: &[Vec<(usize, i64, u8)>]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let names = ["a", "b", "c", "d"];
    let mut model = WriteModel::new(window, 2 * 60 * MIN);
    let base = 1_000 * MIN;
    {
        let head = Head::open(dir.path(), model_options(window)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (ri, req) in requests.iter().enumerate() {
            // Each request moves the base forward a little, as real senders' clocks do.
            let shift = ri as i64 * 20 * MIN;
            let samples: Vec<(usize, i64, f64)> =
                req.iter().map(|&(s, off, v)| (s, base + shift + off * MIN, f64::from(v) + 0.5)).collect();
            let want = model.request(&samples);
            let mut app = head.appender();
            for (i, &(s, t, v)) in samples.iter().enumerate() {
                let got = app.append_pairs(&[("__name__", names[s])], t, v);
                prop_assert_eq!(&got, &want[i], "request {} sample {} (series {}, t {}, v {})", ri, i, s, t, v);
            }
            app.commit().map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        for (s, name) in names.iter().enumerate() {
            let want = model.stored(s);
            let got: Vec<(i64, u64)> = read_all(&head, name).into_iter().map(|(t, v)| (t, v.to_bits())).collect();
            prop_assert_eq!(got, want, "series {} after the requests", name);
        }
        head.close().map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    // Replay rebuilds the same samples.
    let head = Head::open(dir.path(), model_options(window)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    for (s, name) in names.iter().enumerate() {
        let want = model.stored(s);
        let got: Vec<(i64, u64)> = read_all(&head, name).into_iter().map(|(t, v)| (t, v.to_bits())).collect();
        prop_assert_eq!(got, want, "series {} after replay", name);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Interleaved series, repeats adjacent or not, duplicates, conflicts and too-old samples, with
    /// the out-of-order window off: every sample's outcome and the stored samples match the model.
    #[test]
    fn placement_matches_model_window_off(requests in requests_strategy()) {
        check_against_model(0, &requests)?;
    }

    /// The same with a 1h out-of-order window.
    #[test]
    fn placement_matches_model_window_1h(requests in requests_strategy()) {
        check_against_model(60 * MIN, &requests)?;
    }
}

/// The two requests of the report: a series repeated after another series is judged against what
/// the request queued for it.
#[test]
fn repeated_series_judged_against_queued_samples() {
    let (_d, head) = temp_head(memory_options(0));
    let t = 1_000 * MIN;
    let mut app = head.appender();
    app.append_pairs(&[("__name__", "a")], t, 1.0).unwrap();
    app.append_pairs(&[("__name__", "b")], t, 1.0).unwrap();
    assert_eq!(app.append_pairs(&[("__name__", "a")], t - MIN / 2, 1.0), Err(AppendError::OutOfOrder));
    app.commit().unwrap();
    assert_eq!(read_all(&head, "a"), vec![(t, 1.0)]);
    let mut app = head.appender();
    app.append_pairs(&[("__name__", "a")], t + MIN, 3.0).unwrap();
    app.append_pairs(&[("__name__", "b")], t + MIN, 1.0).unwrap();
    assert!(matches!(app.append_pairs(&[("__name__", "a")], t + MIN, 4.0), Err(AppendError::Duplicate { .. })));
    app.commit().unwrap();
    assert_eq!(read_all(&head, "a"), vec![(t, 1.0), (t + MIN, 3.0)]);
}

/// A sample beyond the wall clock plus the grace period is rejected; one inside it is not.
#[test]
fn far_future_samples_rejected() {
    let (_d, head) = temp_head(Options { creation_grace_period_ms: Some(10 * MIN), ..memory_options(0) });
    let now = crate::head::now_ms();
    let mut app = head.appender();
    assert!(matches!(app.append_pairs(&[("__name__", "f")], i64::MAX, 1.0), Err(AppendError::TooFarInFuture { .. })));
    assert!(matches!(
        app.append_pairs(&[("__name__", "f")], now + 60 * MIN, 1.0),
        Err(AppendError::TooFarInFuture { .. })
    ));
    app.append_pairs(&[("__name__", "f")], now + MIN, 1.0).unwrap();
    app.append_pairs(&[("__name__", "g")], now, 1.0).unwrap();
    app.commit().unwrap();
    assert_eq!(head.max_time(), now + MIN);
}

/// A far-future sample already in the WAL (written by a server without the bound) is dropped at
/// startup, so the head's time is not poisoned.
#[test]
fn far_future_samples_dropped_at_replay() {
    let dir = tempfile::tempdir().unwrap();
    let now = crate::head::now_ms();
    {
        let head = Head::open(dir.path(), Options { creation_grace_period_ms: None, ..wal_options(0) }).unwrap();
        let mut app = head.appender();
        app.append_pairs(&[("__name__", "p")], now, 1.0).unwrap();
        app.append_pairs(&[("__name__", "p")], i64::MAX / 2, 2.0).unwrap();
        app.append_pairs(&[("__name__", "q")], now, 3.0).unwrap();
        app.commit().unwrap();
        assert_eq!(head.max_time(), i64::MAX / 2);
        // Without close: a crash, so the samples come back from the WAL segments.
    }
    let head = Head::open(dir.path(), wal_options(0)).unwrap();
    assert_eq!(head.max_time(), now);
    assert_eq!(read_all(&head, "p"), vec![(now, 1.0)]);
    let mut app = head.appender();
    app.append_pairs(&[("__name__", "q")], now + 1000, 4.0).unwrap();
    app.commit().unwrap();
}

#[test]
fn a_damaged_checkpoint_is_set_aside_and_the_segments_after_it_name_their_series() {
    let dir = tempfile::tempdir().unwrap();
    let opts = wal_options(0);
    {
        let head = Head::open(dir.path(), opts.clone()).unwrap();
        let mut app = head.appender();
        app.append_pairs(&[("__name__", "m")], 100 * MIN, 1.0).unwrap();
        app.commit().unwrap();
        head.checkpoint_now().unwrap();
        // After the cut the series is logged again with its next sample.
        let mut app = head.appender();
        app.append_pairs(&[("__name__", "m")], 101 * MIN, 2.0).unwrap();
        app.commit().unwrap();
        // The re-logged series record does not count towards the next size-triggered checkpoint.
        let on_disk = head.wal().unwrap().segments_bytes().unwrap();
        assert!(head.wal_bytes_since_checkpoint() < on_disk, "{on_disk}");
        head.close().unwrap();
    }
    let wal_dir = dir.path().join("wal");
    let cp = wal::checkpoint::newest(&wal_dir).unwrap().unwrap();
    let seg = cp.dir.join("00000000");
    let mut b = std::fs::read(&seg).unwrap();
    b[10] ^= 0xFF;
    std::fs::write(&seg, &b).unwrap();

    let head = Head::open(dir.path(), opts).unwrap();
    assert_eq!(read_all(&head, "m"), vec![(101 * MIN, 2.0)], "what the segments after the checkpoint hold");
    assert!(wal::checkpoint::newest(&wal_dir).unwrap().is_none());
    assert!(wal_dir.join(format!("{}.corrupted", cp.dir.file_name().unwrap().to_str().unwrap())).is_dir());
}
