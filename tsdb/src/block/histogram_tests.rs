//! Blocks with native histogram chunks: mixed float, integer and float histogram chunks written,
//! reopened and read back equal to a first-wins model (overlaps, cuts by the block range, deleted
//! samples), chunk cutting and counter-reset headers, and `promtool tsdb dump` (2.42) on them.
#![allow(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::chunk::{ChunkData, ChunkMeta, SAMPLES_PER_CHUNK};
use crate::chunkenc::{
    CounterResetHeader, FloatHistogramChunk, FloatHistogramIter, HistogramChunk, HistogramIter, XorChunk,
};
use crate::histogram::{CounterResetHint, FloatHistogram, Histogram, HistogramValue, Span};
use crate::intervals::{Interval, Intervals};
use crate::labels::{Labels, MatchType, Matcher};

/// One sample of any kind, as the model holds it.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Float(u64),
    Hist(HistogramValue),
}

/// A histogram value without its counter-reset hint (decoding sets hints from the chunk header).
fn plain(mut h: HistogramValue) -> HistogramValue {
    match &mut h {
        HistogramValue::Int(h) => h.counter_reset_hint = CounterResetHint::Unknown,
        HistogramValue::Float(h) => h.counter_reset_hint = CounterResetHint::Unknown,
    }
    h
}

/// An integer histogram of layout `layout` (0 or 1) with absolute bucket counts `a`, `b`.
fn int_hist(layout: u8, zero: u64, a: i64, b: i64) -> Histogram {
    Histogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: i32::from(layout),
        zero_threshold: 0.001,
        zero_count: zero,
        count: zero + (a + b) as u64,
        sum: (a * 3 + b) as f64 * 0.25,
        positive_spans: vec![Span { offset: i32::from(layout), length: 2 }],
        positive_buckets: vec![a, b - a],
        negative_spans: Vec::new(),
        negative_buckets: Vec::new(),
        custom_values: Vec::new(),
    }
}

fn float_hist(layout: u8, zero: f64, a: f64, b: f64) -> FloatHistogram {
    FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: i32::from(layout),
        zero_threshold: 0.001,
        zero_count: zero,
        count: zero + a + b,
        sum: a * 1.5 - b,
        positive_spans: vec![Span { offset: -1, length: 1 }, Span { offset: 1, length: 1 }],
        positive_buckets: vec![a, b],
        negative_spans: Vec::new(),
        negative_buckets: Vec::new(),
        custom_values: Vec::new(),
    }
}

/// What kind of chunk a generated chunk is.
#[derive(Debug, Clone, Copy)]
enum ChunkKind {
    Xor,
    RawFloat,
    IntHist,
    RawIntHist,
    FloatHist,
    RawFloatHist,
}

/// Samples of one chunk: timestamps `start + i * step`; encoded histogram chunks get counts that
/// only grow (one chunk, no cut), raw ones any counts (the writer cuts where needed).
fn chunk_samples(kind: ChunkKind, start: i64, step: i64, n: usize, seed: u64, layout: u8) -> Vec<(i64, V)> {
    let mut x = seed | 1;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % 5
    };
    (0..n as i64)
        .map(|i| {
            let t = start + i * step;
            let grow = i as u64 * 2;
            let v = match kind {
                ChunkKind::Xor | ChunkKind::RawFloat => V::Float((rnd() as f64 - 2.0).to_bits()),
                ChunkKind::IntHist => {
                    V::Hist(HistogramValue::Int(int_hist(layout, grow + 1, grow as i64 + 2, grow as i64 + 3)))
                }
                ChunkKind::RawIntHist => {
                    let l = if rnd() == 0 { 1 - layout } else { layout };
                    V::Hist(HistogramValue::Int(int_hist(l, rnd(), rnd() as i64, rnd() as i64 + 1)))
                }
                ChunkKind::FloatHist => V::Hist(HistogramValue::Float(float_hist(
                    layout,
                    grow as f64 + 0.5,
                    grow as f64,
                    grow as f64 + 1.25,
                ))),
                ChunkKind::RawFloatHist => {
                    V::Hist(HistogramValue::Float(float_hist(layout, rnd() as f64, rnd() as f64 * 0.5, rnd() as f64)))
                }
            };
            (t, v)
        })
        .collect()
}

/// The chunk of `samples` (all of one kind) as `kind` stores them.
fn make_chunk(kind: ChunkKind, samples: &[(i64, V)]) -> ChunkMeta {
    let (first, last) = (samples[0].0, samples[samples.len() - 1].0);
    let floats = || -> Vec<(i64, f64)> {
        samples
            .iter()
            .map(|(t, v)| match v {
                V::Float(b) => (*t, f64::from_bits(*b)),
                V::Hist(_) => unreachable!(),
            })
            .collect()
    };
    let hists = || -> Vec<(i64, HistogramValue)> {
        samples
            .iter()
            .map(|(t, v)| match v {
                V::Hist(h) => (*t, h.clone()),
                V::Float(_) => unreachable!(),
            })
            .collect()
    };
    let data = match kind {
        ChunkKind::Xor => {
            let mut c = XorChunk::new();
            for (t, v) in floats() {
                c.push(t, v);
            }
            ChunkData::Xor(c.into_bytes().into())
        }
        ChunkKind::RawFloat => ChunkData::Raw(floats().into()),
        ChunkKind::IntHist => {
            let mut c = HistogramChunk::new(CounterResetHeader::Unknown);
            for (t, h) in hists() {
                let HistogramValue::Int(h) = h else { unreachable!() };
                c.append(t, &h).unwrap();
            }
            ChunkData::Histogram(c.bytes().into())
        }
        ChunkKind::FloatHist => {
            let mut c = FloatHistogramChunk::new(CounterResetHeader::Unknown);
            for (t, h) in hists() {
                let HistogramValue::Float(h) = h else { unreachable!() };
                c.append(t, &h).unwrap();
            }
            ChunkData::FloatHistogram(c.bytes().into())
        }
        ChunkKind::RawIntHist | ChunkKind::RawFloatHist => ChunkData::RawHistograms(hists().into()),
    };
    ChunkMeta::new(first, last, data)
}

/// First-listed wins per timestamp, inside `[mint, maxt]`, deleted samples left out.
fn model(chunks: &[Vec<(i64, V)>], mint: i64, maxt: i64, deleted: Option<&Intervals>) -> BTreeMap<i64, V> {
    let mut m = BTreeMap::new();
    for c in chunks {
        for (t, v) in c {
            if (mint..=maxt).contains(t) && !deleted.is_some_and(|d| d.contains(*t)) {
                m.entry(*t).or_insert_with(|| match v {
                    V::Hist(h) => V::Hist(plain(h.clone())),
                    V::Float(f) => V::Float(*f),
                });
            }
        }
    }
    m
}

/// Everything the block's chunks of a series hold, checking the index invariants on the way:
/// chunk metas sorted by min time without overlaps, each chunk's bounds its first and last
/// sample, and no chunk above 120 samples.
fn read_back(block: &Block, labels: &Labels) -> BTreeMap<i64, V> {
    let all = block.select(&[Matcher::new(MatchType::Regex, "__name__", ".*").unwrap()]).unwrap();
    let (_, chunks) = all.into_iter().find(|(l, _)| l == labels).expect("series in the block");
    assert!(chunks.windows(2).all(|w| w[0].max_t < w[1].min_t), "chunk metas sorted and disjoint");
    let mut out = BTreeMap::new();
    for c in &chunks {
        let samples: Vec<(i64, V)> = if c.data.is_histogram() {
            let mut it = c.histograms(i64::MIN, i64::MAX);
            let s = it.by_ref().map(|(t, h)| (t, V::Hist(plain(h)))).collect();
            assert!(it.error().is_none(), "{:?}", it.error());
            s
        } else {
            let mut it = c.iter(i64::MIN, i64::MAX);
            let s = it.by_ref().map(|(t, v)| (t, V::Float(v.to_bits()))).collect();
            assert!(it.error().is_none(), "{:?}", it.error());
            s
        };
        assert!(!samples.is_empty() && samples.len() <= SAMPLES_PER_CHUNK, "{} samples", samples.len());
        assert_eq!((samples[0].0, samples[samples.len() - 1].0), (c.min_t, c.max_t), "chunk bounds");
        for (t, v) in samples {
            assert!(out.insert(t, v).is_none(), "timestamp {t} twice");
        }
    }
    out
}

fn labels(name: &str) -> Labels {
    Labels::from_pairs(&[("__name__", name)]).unwrap()
}

fn level1() -> Compaction {
    Compaction { level: 1, ..Default::default() }
}

/// Chunk specs: kind, start, step, number of samples, seed, layout.
fn specs() -> impl Strategy<Value = Vec<(ChunkKind, i64, i64, usize, u64, u8)>> {
    let kind = prop_oneof![
        Just(ChunkKind::Xor),
        Just(ChunkKind::RawFloat),
        Just(ChunkKind::IntHist),
        Just(ChunkKind::RawIntHist),
        Just(ChunkKind::FloatHist),
        Just(ChunkKind::RawFloatHist),
    ];
    prop::collection::vec((kind, 0i64..400, 1i64..4, 1usize..300, any::<u64>(), 0u8..2), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// A series of mixed float, integer and float histogram chunks (overlapping or not, encoded or
    /// raw) written into a block of any range, with or without a deleted interval, reads back as
    /// "the first-listed chunk's sample wins" over the range minus the deleted samples, and
    /// meta.json counts every sample.
    #[test]
    fn mixed_chunks_round_trip_first_wins(
        specs in specs(),
        disjoint in any::<bool>(),
        mint in 0i64..100,
        len in 1i64..600,
        del in prop::option::of((0i64..500, 0i64..80)),
    ) {
        let mut samples: Vec<Vec<(i64, V)>> = Vec::new();
        let mut chunks = Vec::new();
        let mut next_start = 0;
        for (kind, start, step, n, seed, layout) in specs {
            // Disjoint: chunks one after the other; else where the generator put them.
            let start = if disjoint { next_start } else { start };
            // Encoded input chunks hold at most 120 samples (they may be passed on as they are);
            // raw ones more, for the writer to cut.
            let n = match kind {
                ChunkKind::Xor | ChunkKind::IntHist | ChunkKind::FloatHist => n.min(SAMPLES_PER_CHUNK),
                ChunkKind::RawFloat | ChunkKind::RawIntHist | ChunkKind::RawFloatHist => n,
            };
            let s = chunk_samples(kind, start, step, n, seed, layout);
            next_start = s[s.len() - 1].0 + 1;
            chunks.push(make_chunk(kind, &s));
            samples.push(s);
        }
        let deleted = del.map(|(a, l)| {
            let mut d = Intervals::new();
            d.add(Interval::new(a, a + l));
            Arc::new(d)
        });
        let chunks: Vec<ChunkMeta> = chunks.into_iter().filter_map(|c| c.without_deleted(deleted.as_ref())).collect();
        let maxt_excl = mint + len;
        let want = model(&samples, mint, maxt_excl - 1, deleted.as_deref());
        let dir = tempfile::tempdir().unwrap();
        let l = labels("h");
        let meta = write_block(dir.path(), [(l.clone(), chunks)], mint, maxt_excl, level1(), None).unwrap();
        let Some(meta) = meta else {
            prop_assert!(want.is_empty());
            return Ok(());
        };
        prop_assert_eq!(meta.stats.num_samples, want.len() as u64);
        let block = Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
        block.verify().unwrap();
        let got = read_back(&block, &l);
        prop_assert_eq!(got, want);
    }
}

/// A run of integer histograms in one raw chunk with a counter reset in the middle: chunks of 120
/// samples, a cut at the reset, and Prometheus's counter-reset headers (unknown for the first
/// chunk, "not a reset" after a cut for size, "reset" after the reset).
#[test]
fn histogram_chunks_cut_at_120_and_at_a_reset_with_headers() {
    let hs: Vec<(i64, HistogramValue)> = (0..300i64)
        .map(|i| {
            let c = if i < 150 { i } else { i - 150 } as u64;
            (i * 1000, HistogramValue::Int(int_hist(0, c, c as i64, c as i64 + 1)))
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let l = labels("reset");
    let chunk = ChunkMeta::raw_histograms(&hs).unwrap();
    let meta = write_block(dir.path(), [(l.clone(), vec![chunk])], 0, RANGE, level1(), None).unwrap().unwrap();
    assert_eq!((meta.stats.num_samples, meta.stats.num_chunks, meta.stats.num_series), (300, 4, 1));
    let block = Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
    let (_, chunks) = block.select(&[]).unwrap().remove(0);
    let got: Vec<(i64, i64, usize, CounterResetHeader)> = chunks
        .iter()
        .map(|c| {
            let ChunkData::Histogram(b) = &c.data else { panic!("not an integer histogram chunk: {:?}", c.data) };
            let it = HistogramIter::new(b);
            (c.min_t, c.max_t, HistogramIter::new(b).count(), it.counter_reset_header())
        })
        .collect();
    use CounterResetHeader::*;
    assert_eq!(
        got,
        vec![
            (0, 119_000, 120, Unknown),
            (120_000, 149_000, 30, NotCounterReset),
            (150_000, 269_000, 120, CounterReset),
            (270_000, 299_000, 30, NotCounterReset),
        ]
    );
}

/// Kind changes cut chunks: float, integer histogram and float histogram samples of one merged
/// series land in chunks of one kind each, written with encodings 1, 2 and 3, in time order.
#[test]
fn kind_changes_cut_chunks_with_their_encoding() {
    let floats = chunk_samples(ChunkKind::RawFloat, 0, 10, 5, 1, 0);
    let ints = chunk_samples(ChunkKind::IntHist, 50, 10, 5, 2, 0);
    let fhs = chunk_samples(ChunkKind::FloatHist, 100, 10, 5, 3, 1);
    // Floats at 55 and 65, between the integer histograms.
    let late = chunk_samples(ChunkKind::RawFloat, 55, 10, 2, 4, 0);
    let input = vec![
        make_chunk(ChunkKind::RawFloat, &floats),
        make_chunk(ChunkKind::IntHist, &ints),
        make_chunk(ChunkKind::FloatHist, &fhs),
        make_chunk(ChunkKind::RawFloat, &late),
    ];
    let dir = tempfile::tempdir().unwrap();
    let l = labels("mixed");
    let meta = write_block(dir.path(), [(l.clone(), input)], 0, RANGE, level1(), None).unwrap().unwrap();
    let block = Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
    let mut encodings = Vec::new();
    for (_, chunks) in block.select(&[]).unwrap() {
        for c in chunks {
            encodings.push(match c.data {
                ChunkData::Xor(_) => 1,
                ChunkData::Histogram(_) => 2,
                ChunkData::FloatHistogram(_) => 3,
                _ => 0,
            });
        }
    }
    // floats 0..40 | ints 50 | float 55 | ints 60 | float 65 | ints 70..90 | float histograms 100..140
    assert_eq!(encodings, vec![1, 2, 1, 2, 1, 2, 3]);
    let want = model(&[floats, ints, fhs, late], 0, RANGE - 1, None);
    assert_eq!(read_back(&block, &l), want);
}

/// Block merging (vertical compaction's path): two blocks with overlapping histogram chunks of the
/// same series merge into one whose samples are the first block's where both have one.
#[test]
fn overlapping_histogram_blocks_merge_first_wins() {
    let dir = tempfile::tempdir().unwrap();
    let a = chunk_samples(ChunkKind::IntHist, 0, 2, 100, 1, 0);
    let b = chunk_samples(ChunkKind::RawFloatHist, 51, 1, 100, 2, 0);
    let l = labels("m");
    let ma = write_block(dir.path(), [(l.clone(), vec![make_chunk(ChunkKind::IntHist, &a)])], 0, RANGE, level1(), None)
        .unwrap()
        .unwrap();
    let mb =
        write_block(dir.path(), [(l.clone(), vec![make_chunk(ChunkKind::RawFloatHist, &b)])], 0, RANGE, level1(), None)
            .unwrap()
            .unwrap();
    let ba = Block::open(&dir.path().join(ma.ulid.to_string())).unwrap();
    let bb = Block::open(&dir.path().join(mb.ulid.to_string())).unwrap();
    let mut chunks = ba.select(&[]).unwrap().remove(0).1;
    chunks.extend(bb.select(&[]).unwrap().remove(0).1);
    let out = tempfile::tempdir().unwrap();
    let meta = write_block(out.path(), [(l.clone(), chunks)], 0, RANGE, level1(), None).unwrap().unwrap();
    let merged = Block::open(&out.path().join(meta.ulid.to_string())).unwrap();
    let want = model(&[a, b], 0, RANGE - 1, None);
    assert_eq!(meta.stats.num_samples, want.len() as u64);
    assert_eq!(read_back(&merged, &l), want);
}

/// A block chunk whose bytes are not a histogram chunk: reading the series fails with the chunk
/// named, never a shorter answer or a panic.
#[test]
fn an_undecodable_histogram_chunk_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = ChunkMeta::new(0, 10, ChunkData::Histogram(vec![0u8, 3, 0, 0xFF][..].into()));
    let l = labels("bad");
    let meta = write_block(dir.path(), [(l, vec![bad])], 0, RANGE, level1(), None).unwrap().unwrap();
    let block = Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
    let (_, chunks) = block.select(&[]).unwrap().remove(0);
    let mut out = Vec::new();
    let e = crate::merge::merge_histograms(&chunks, 0, 10, &mut out).unwrap_err();
    assert!(e.file.is_some(), "{e}");
    // Re-encoding it (a range that cuts it) fails the write instead of dropping samples.
    let again = tempfile::tempdir().unwrap();
    assert!(write_block(again.path(), [(labels("bad"), chunks)], 5, RANGE, level1(), None).is_err());
}

// ---- promtool 2.42 ---------------------------------------------------------------------------------------

fn promtool() -> Option<PathBuf> {
    let ok = Command::new("promtool").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if ok {
        return Some(PathBuf::from("promtool"));
    }
    assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "promtool is not installed but CI=true");
    eprintln!("skipping: promtool is not installed (set CI=true to make this a failure)");
    None
}

fn dump(promtool: &Path, dir: &Path) -> String {
    let out = Command::new(promtool)
        .args(["tsdb", "dump", "--min-time=0", &format!("--max-time={RANGE}")])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "promtool tsdb dump: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `promtool tsdb dump` of 2.42 iterates each series while the next sample is a float
/// (`for it.Next() == chunkenc.ValFloat`): it prints a series' floats up to its first histogram
/// sample and nothing after, and nothing for a series of histograms only. On a block of ours it
/// does exactly that (and opens it without error); `promtool tsdb analyze` counts its chunks.
#[test]
fn promtool_dump_prints_floats_up_to_the_first_histogram() {
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let before: Vec<(i64, f64)> = (0..5).map(|i| (i * 1000, i as f64 + 0.5)).collect();
    let ints: Vec<(i64, HistogramValue)> =
        (5..10).map(|i| (i * 1000, HistogramValue::Int(int_hist(0, i as u64, i, i + 1)))).collect();
    let after: Vec<(i64, f64)> = (10..15).map(|i| (i * 1000, i as f64)).collect();
    let fl: Vec<(i64, HistogramValue)> =
        (0..5).map(|i| (i * 1000, HistogramValue::Float(float_hist(1, 1.0, i as f64, 2.0)))).collect();
    let series = vec![
        (labels("a_float_then_histograms"), {
            let mut v = vec![ChunkMeta::raw(&before).unwrap(), ChunkMeta::raw_histograms(&ints).unwrap()];
            v.push(ChunkMeta::raw(&after).unwrap());
            v
        }),
        (labels("b_float_histograms"), vec![ChunkMeta::raw_histograms(&fl).unwrap()]),
        (labels("c_floats"), vec![ChunkMeta::raw(&after).unwrap()]),
    ];
    let meta = write_block(dir.path(), series, 0, RANGE, level1(), None).unwrap().unwrap();
    assert_eq!(meta.stats.num_samples, 5 + 5 + 5 + 5 + 5);
    std::fs::create_dir(dir.path().join("wal")).unwrap();
    let got = dump(&promtool, dir.path());
    let mut want = String::new();
    for (t, v) in &before {
        want.push_str(&format!("{{__name__=\"a_float_then_histograms\"}} {v} {t}\n"));
    }
    for (t, v) in &after {
        want.push_str(&format!("{{__name__=\"c_floats\"}} {v} {t}\n"));
    }
    assert_eq!(got, want);
    let out = Command::new(&promtool).args(["tsdb", "analyze"]).arg(dir.path()).arg(meta.ulid.to_string()).output();
    let analyze = String::from_utf8(out.unwrap().stdout).unwrap();
    assert!(analyze.contains("Series: 3"), "{analyze}");
}

const RANGE: i64 = 7_200_000;

#[test]
fn float_histogram_iter_header_is_kept_when_a_chunk_is_only_cut() {
    // A float histogram chunk starting with a counter reset, cut at its end by the block range:
    // the re-encoded chunk keeps the reset header.
    let mut c = FloatHistogramChunk::new(CounterResetHeader::CounterReset);
    for i in 0..10i64 {
        c.append(i, &float_hist(0, i as f64, i as f64, i as f64)).unwrap();
    }
    let chunk = ChunkMeta::new(0, 9, ChunkData::FloatHistogram(c.bytes().into()));
    let dir = tempfile::tempdir().unwrap();
    let meta = write_block(dir.path(), [(labels("f"), vec![chunk])], 0, 5, level1(), None).unwrap().unwrap();
    let block = Block::open(&dir.path().join(meta.ulid.to_string())).unwrap();
    let (_, chunks) = block.select(&[]).unwrap().remove(0);
    let ChunkData::FloatHistogram(b) = &chunks[0].data else { panic!("{:?}", chunks[0].data) };
    let it = FloatHistogramIter::new(b);
    assert_eq!(it.counter_reset_header(), CounterResetHeader::CounterReset);
    assert_eq!(FloatHistogramIter::new(b).count(), 5);
}

/// A chunk whose encoding byte is none of Prometheus's (its checksum intact) fails the checksum
/// pass at open and the read, naming the chunk file; encodings 2 and 3 pass it.
#[test]
fn an_unknown_chunk_encoding_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let hs: Vec<(i64, HistogramValue)> =
        (0..3).map(|i| (i, HistogramValue::Int(int_hist(0, i as u64, 1, 2)))).collect();
    let meta = write_block(
        dir.path(),
        [(labels("x"), vec![ChunkMeta::raw_histograms(&hs).unwrap()])],
        0,
        RANGE,
        level1(),
        None,
    )
    .unwrap()
    .unwrap();
    let bdir = dir.path().join(meta.ulid.to_string());
    Block::open(&bdir).unwrap().verify().unwrap();
    let file = bdir.join("chunks").join("000001");
    let mut b = std::fs::read(&file).unwrap();
    // One chunk after the 8-byte segment header: length (one byte), encoding, data, CRC32C.
    let len = usize::from(b[8]);
    assert_eq!(b[9], 2);
    b[9] = 4;
    let crc = crc32c::crc32c(&b[9..10 + len]).to_be_bytes();
    b[10 + len..14 + len].copy_from_slice(&crc);
    std::fs::write(&file, &b).unwrap();
    let block = Block::open(&bdir).unwrap();
    let e = block.verify().unwrap_err().to_string();
    assert!(e.contains("unknown chunk encoding 4") && e.contains("chunks"), "{e}");
    assert!(block.select(&[]).is_err());
}
