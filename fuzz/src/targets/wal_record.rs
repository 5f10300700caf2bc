//! `wal-record`: the tsdb's WAL record decoder ([`tsdb::record::decode`], with the XOR chunks of
//! chunk records iterated), the wal crate's segment reading ([`wal::Reader`]) and tail repair
//! ([`wal::Wal::open`]) over arbitrary segment bytes, and the head's replay of them
//! ([`tsdb::Head::open`]).
//!
//! Input: a mode byte, then the bytes. Mode bit 0 clear: one record. Set: the contents of segment
//! `00000000` of a WAL directory, whose records are read and decoded. Then the WAL is opened (which
//! repairs a damaged tail) and read again: the repaired WAL must read without error and hold exactly
//! the records that could be read before the damage. Last, a head is opened on it, replaying it.

use std::path::{Path, PathBuf};

use tsdb::chunkenc::XorIter;
use tsdb::histogram::HistogramValue;
use tsdb::record::{self, RefSample, SamplesRecord, SeriesChunks, StoredChunk};
use tsdb::Labels;
use wal::record::encode_record;

use super::{scratch_dir, SetupError, Target};

const NAME: &str = "wal-record";

pub(crate) struct WalRecord {
    dir: tempfile::TempDir,
    samples: Vec<RefSample>,
}

impl WalRecord {
    pub(crate) fn new() -> Result<WalRecord, SetupError> {
        Ok(WalRecord { dir: scratch_dir(NAME)?, samples: Vec::new() })
    }
}

fn xor_bytes(n: i64, start: i64) -> Vec<u8> {
    let mut c = tsdb::chunkenc::XorChunk::new();
    for i in 0..n {
        c.push(start + i * 15_000 + (i % 3), (i as f64).sin() * 100.0);
    }
    c.into_bytes()
}

/// Valid records: series, samples (a small one and one spanning pages), chunks, tombstones,
/// histograms (integer and float), exemplars.
fn records() -> Vec<Vec<u8>> {
    let mut series = Vec::new();
    for i in 0..4u64 {
        let labels = Labels::from_pairs(&[("__name__", "up"), ("job", "node"), ("i", &i.to_string())]);
        if let Ok(labels) = labels {
            record::encode_series(&mut series, i + 1, &labels);
        }
    }
    let samples = |n: u64| {
        let mut r = SamplesRecord::with_capacity(n as usize);
        for i in 0..n {
            r.push(RefSample { sref: 1 + i % 4, t: 1_700_000_000_000 + (i as i64) * 1000, v: i as f64 });
        }
        r.as_bytes().to_vec()
    };
    let (sealed, open, ooo) = (xor_bytes(120, 0), xor_bytes(7, 1_800_000), xor_bytes(5, -1000));
    let mut chunks = Vec::new();
    record::encode_chunks(
        &mut chunks,
        &SeriesChunks {
            sref: 1,
            next_at: 3_600_000,
            last_value: 2.5,
            sealed: vec![StoredChunk { min_t: 0, max_t: 1_785_000, bytes: &sealed }],
            open: Some(StoredChunk { min_t: 1_800_000, max_t: 1_890_000, bytes: &open }),
            ooo_sealed: vec![StoredChunk { min_t: -1000, max_t: 59_000, bytes: &ooo }],
            ooo_open: vec![(5, 1.0), (6, f64::NAN)],
        },
    );
    record::encode_chunks(&mut chunks, &SeriesChunks { sref: 2, ..SeriesChunks::default() });
    let mut stones = Vec::new();
    record::encode_tombstone(&mut stones, 1, tsdb::intervals::Interval::new(-5, 1_800_000));
    record::encode_tombstone(&mut stones, 2, tsdb::intervals::Interval::new(i64::MIN, i64::MAX));
    let mut hists = record::HistogramsRecord::default();
    for i in 0..6u64 {
        let h = tsdb::histogram::Histogram {
            schema: 1,
            zero_count: i,
            count: 2 * i,
            sum: i as f64,
            positive_spans: vec![tsdb::histogram::Span { offset: -1, length: 1 }],
            positive_buckets: vec![i as i64],
            ..Default::default()
        };
        let v = if i % 2 == 0 { HistogramValue::Int(h) } else { HistogramValue::Float(h.to_float()) };
        hists.push(1 + i % 4, 1_700_000_000_000 + (i as i64) * 1000, &v);
    }
    let mut exemplars = record::ExemplarsRecord::default();
    for i in 0..3u64 {
        let labels = vec![("trace_id".to_owned(), format!("{i:x}"))];
        exemplars.push(1 + i, &tsdb::exemplars::Exemplar { labels, value: i as f64, t: 1_700_000_000_000 });
    }
    vec![series, samples(3), samples(4000), chunks, stones, hists.as_bytes().to_vec(), exemplars.as_bytes().to_vec()]
}

/// Decodes a record and iterates its chunks; true if all of it decoded.
fn decode_record(rec: &[u8], samples: &mut Vec<RefSample>) -> bool {
    samples.clear();
    let mut ok = true;
    match record::decode(rec, samples) {
        Err(_) => return false,
        Ok(record::Record::Chunks(series)) => {
            for c in &series {
                let all = c.sealed.iter().chain(&c.open).chain(&c.ooo_sealed);
                for ch in all {
                    let mut it = XorIter::new(ch.bytes);
                    for _ in it.by_ref() {}
                    ok &= it.error().is_none();
                }
            }
        }
        Ok(_) => {}
    }
    ok
}

/// Every record of the WAL in `dir`, up to the first error; whether the WAL read without error;
/// whether every record decoded.
fn read_all(dir: &Path, samples: &mut Vec<RefSample>) -> (Vec<Vec<u8>>, bool, bool) {
    let Ok(mut reader) = wal::Reader::open(dir) else {
        return (Vec::new(), false, false);
    };
    let (mut out, mut decoded) = (Vec::new(), true);
    while let Some(rec) = reader.next_record() {
        match rec {
            Ok(rec) => {
                decoded &= decode_record(rec, samples);
                out.push(rec.to_vec());
            }
            Err(_) => return (out, false, decoded),
        }
    }
    (out, true, decoded)
}

impl WalRecord {
    /// An empty data directory with an empty `wal/`; returns the WAL directory.
    fn reset_dir(&self) -> Option<PathBuf> {
        let data = self.dir.path().join("data");
        let _ = std::fs::remove_dir_all(&data);
        let wal_dir = data.join("wal");
        std::fs::create_dir_all(&wal_dir).ok()?;
        Some(wal_dir)
    }
}

impl Target for WalRecord {
    fn name(&self) -> &'static str {
        NAME
    }

    fn corpus(&mut self) -> Vec<Vec<u8>> {
        let recs = records();
        let mut out: Vec<Vec<u8>> = recs
            .iter()
            .map(|r| {
                let mut v = vec![0u8];
                v.extend_from_slice(r);
                v
            })
            .collect();
        // One segment with all records (the large one spans pages), one with just the small ones.
        for set in [&recs[..], &recs[..2]] {
            let mut seg = vec![1u8];
            let mut pos = 0;
            for r in set {
                let mut frag = Vec::new();
                pos = encode_record(&mut frag, pos, r);
                seg.extend_from_slice(&frag);
            }
            out.push(seg);
        }
        out
    }

    fn run(&mut self, input: &[u8]) -> bool {
        let Some((&mode, bytes)) = input.split_first() else {
            return false;
        };
        if mode & 1 == 0 {
            return decode_record(bytes, &mut self.samples);
        }
        let Some(wal_dir) = self.reset_dir() else {
            return false;
        };
        if std::fs::write(wal_dir.join("00000000"), bytes).is_err() {
            return false;
        }
        let (before, read_ok, decoded) = read_all(&wal_dir, &mut self.samples);
        let opts = wal::Options { segment_size_bytes: 1 << 20, sync: wal::SyncPolicy::Never };
        let Ok((w, _report)) = wal::Wal::open(&wal_dir, opts.clone()) else {
            return false;
        };
        drop(w);
        let (after, read_ok_after, _) = read_all(&wal_dir, &mut self.samples);
        assert!(read_ok_after, "the WAL reads with an error after its tail was repaired");
        assert!(after == before, "repair kept {} records, {} were readable before it", after.len(), before.len());
        let head_opts = tsdb::Options {
            ooo_time_window_ms: 3_600_000,
            creation_grace_period_ms: None,
            wal: Some(opts),
            ..tsdb::Options::default()
        };
        let replayed = match tsdb::Head::open(&self.dir.path().join("data"), head_opts) {
            Ok(head) => head.close().is_ok(),
            Err(_) => false,
        };
        read_ok && decoded && replayed
    }
}
