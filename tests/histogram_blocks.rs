//! Native histogram chunks in blocks, through the real binary: a block Strata's block writer made
//! with integer histograms (a counter reset, a schema change, overlapping input merged first-wins),
//! float histograms and a series that turns from floats to histograms is served by `strata` and by
//! Prometheus 2.42 from copies of the same directory. Their `STREAMED_XOR_CHUNKS` remote-read
//! answers must be the same chunks (types 1, 2 and 3, byte for byte), and Strata's `SAMPLES`
//! answer must hold exactly the histograms written, in `TimeSeries.histograms`.

use std::io::Read;

use ingest::proto::{
    self, histogram, label_matcher::Type, read_request::ResponseType, ChunkedReadResponse, LabelMatcher, Query,
    ReadRequest, ReadResponse,
};
use prost::Message;
use query::api::remote_read::framing;
use tsdb::block::{write_block, Compaction};
use tsdb::chunk::{ChunkData, ChunkMeta};
use tsdb::chunkenc::{CounterResetHeader, HistogramChunk};
use tsdb::histogram::{CounterResetHint, FloatHistogram, Histogram, HistogramValue, Span};
use tsdb::labels::Labels;

use crate::util::{copy_dir, prometheus, PromServer, Server};

/// 2h-aligned start of the block.
const T0: i64 = 1_700_006_400_000;
const BLOCK_MS: i64 = 7_200_000;
const STEP: i64 = 15_000;
const N: i64 = 200;

fn t(i: i64) -> i64 {
    T0 + i * STEP
}

/// Delta-encodes absolute bucket counts.
fn deltas(abs: &[i64]) -> Vec<i64> {
    abs.iter().scan(0, |prev, &a| Some(a - std::mem::replace(prev, a))).collect()
}

/// Integer histogram `i`: counts grow, fall back at 70 (a counter reset), and the schema changes
/// at 150; `v` tells two versions of a sample apart.
fn int_hist(i: i64, v: i64) -> Histogram {
    let c = if i < 70 { i } else { i - 70 } + v;
    let pos = [c, 2 * c + 1];
    Histogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: if i < 150 { 1 } else { 0 },
        zero_threshold: 2f64.powi(-128),
        zero_count: c as u64,
        count: (c + pos.iter().sum::<i64>() + 2) as u64,
        sum: c as f64 * 0.75,
        positive_spans: vec![Span { offset: -1, length: 2 }],
        positive_buckets: deltas(&pos),
        negative_spans: vec![Span { offset: 0, length: 1 }],
        negative_buckets: vec![2],
        custom_values: Vec::new(),
    }
}

fn float_hist(i: i64) -> FloatHistogram {
    let c = i as f64 * 0.5;
    FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: 2,
        zero_threshold: 0.001,
        zero_count: 1.5,
        count: 1.5 + c + 0.25,
        sum: -c,
        positive_spans: vec![Span { offset: 3, length: 1 }, Span { offset: 2, length: 1 }],
        positive_buckets: vec![c, 0.25],
        ..FloatHistogram::default()
    }
}

fn labels(name: &str) -> Labels {
    Labels::from_pairs(&[("__name__", name), ("job", "hist")]).unwrap()
}

/// The series written: name → float samples and histograms (the values a reader must see).
type Written = Vec<(&'static str, Vec<(i64, f64)>, Vec<(i64, HistogramValue)>)>;

/// Writes the block into `data` and returns what each series holds.
fn write(data: &std::path::Path) -> Written {
    // hb_int: an encoded chunk of the first 50 histograms, then raw ones for 40..N overlapping it
    // with other values (the encoded chunk, listed first, wins 40..49).
    let mut first = HistogramChunk::new(CounterResetHeader::Unknown);
    for i in 0..50 {
        first.append(t(i), &int_hist(i, 0)).unwrap();
    }
    let first = ChunkMeta::new(t(0), t(49), ChunkData::Histogram(first.bytes().into()));
    let rest: Vec<(i64, HistogramValue)> =
        (40..N).map(|i| (t(i), HistogramValue::Int(int_hist(i, 1000 * i64::from(i < 50))))).collect();
    let ints: Vec<(i64, HistogramValue)> = (0..N).map(|i| (t(i), HistogramValue::Int(int_hist(i, 0)))).collect();
    let floats: Vec<(i64, HistogramValue)> = (0..N).map(|i| (t(i), HistogramValue::Float(float_hist(i)))).collect();
    let mixed_f: Vec<(i64, f64)> = (0..N / 2).map(|i| (t(i), i as f64 * 1.5)).collect();
    let mixed_h: Vec<(i64, HistogramValue)> = ints[N as usize / 2..].to_vec();
    let series = vec![
        (labels("hb_float"), vec![ChunkMeta::raw_histograms(&floats).unwrap()]),
        (labels("hb_int"), vec![first, ChunkMeta::raw_histograms(&rest).unwrap()]),
        (labels("hb_mixed"), vec![ChunkMeta::raw(&mixed_f).unwrap(), ChunkMeta::raw_histograms(&mixed_h).unwrap()]),
    ];
    let level1 = Compaction { level: 1, ..Compaction::default() };
    let meta = write_block(data, series, T0, T0 + BLOCK_MS, level1, None).unwrap().unwrap();
    assert_eq!(meta.stats.num_samples, 3 * N as u64);
    vec![("hb_float", vec![], floats), ("hb_int", vec![], ints), ("hb_mixed", mixed_f, mixed_h)]
}

fn read_request(types: Vec<i32>) -> Vec<u8> {
    let q = Query {
        start_timestamp_ms: T0,
        end_timestamp_ms: T0 + BLOCK_MS - 1,
        matchers: vec![LabelMatcher { r#type: Type::Eq as i32, name: "job".into(), value: "hist".into() }],
        hints: None,
    };
    let req = ReadRequest { queries: vec![q], accepted_response_types: types };
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
}

fn post_read(addr: &str, body: &[u8]) -> Vec<u8> {
    let r = ureq::post(&format!("http://{addr}/api/v1/read"))
        .set("Content-Encoding", "snappy")
        .set("Content-Type", "application/x-protobuf")
        .set("X-Prometheus-Remote-Read-Version", "0.1.0")
        .send_bytes(body);
    let resp = r.unwrap_or_else(|e| panic!("remote read from {addr}: {e}"));
    let mut bytes = Vec::new();
    resp.into_reader().read_to_end(&mut bytes).unwrap();
    bytes
}

/// A chunk as remote read sends it: (min time, max time, type, bytes).
type WireChunk = (i64, i64, i32, Vec<u8>);

/// A streamed answer as (labels, chunks) per series, frames joined.
type Streamed = Vec<(Vec<(String, String)>, Vec<WireChunk>)>;

fn streamed(addr: &str) -> Streamed {
    let body = post_read(addr, &read_request(vec![ResponseType::StreamedXorChunks as i32]));
    let mut rest = &body[..];
    let mut out: Streamed = Vec::new();
    while !rest.is_empty() {
        let (msg, n) = framing::read_frame(rest, 1 << 24).unwrap().expect("a whole frame");
        for cs in ChunkedReadResponse::decode(msg).unwrap().chunked_series {
            let key: Vec<(String, String)> = cs.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
            let chunks = cs.chunks.iter().map(|c| (c.min_time_ms, c.max_time_ms, c.r#type, c.data.clone()));
            match out.last_mut() {
                Some((k, cs)) if *k == key => cs.extend(chunks),
                _ => out.push((key, chunks.collect())),
            }
        }
        rest = &rest[n..];
    }
    out
}

/// A histogram as Strata's `SAMPLES` answer must carry it (the counter-reset hint aside).
fn to_proto(ts: i64, h: &HistogramValue) -> proto::Histogram {
    let spans = |s: &[Span]| s.iter().map(|s| proto::BucketSpan { offset: s.offset, length: s.length }).collect();
    match h {
        HistogramValue::Int(h) => proto::Histogram {
            count: Some(histogram::Count::CountInt(h.count)),
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: Some(histogram::ZeroCount::ZeroCountInt(h.zero_count)),
            negative_spans: spans(&h.negative_spans),
            negative_deltas: h.negative_buckets.clone(),
            positive_spans: spans(&h.positive_spans),
            positive_deltas: h.positive_buckets.clone(),
            timestamp: ts,
            ..Default::default()
        },
        HistogramValue::Float(h) => proto::Histogram {
            count: Some(histogram::Count::CountFloat(h.count)),
            sum: h.sum,
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            zero_count: Some(histogram::ZeroCount::ZeroCountFloat(h.zero_count)),
            negative_spans: spans(&h.negative_spans),
            negative_counts: h.negative_buckets.clone(),
            positive_spans: spans(&h.positive_spans),
            positive_counts: h.positive_buckets.clone(),
            timestamp: ts,
            ..Default::default()
        },
    }
}

#[test]
fn histogram_blocks_are_read_remotely_as_prometheus_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let written = write(&data);
    let prom_data = dir.path().join("prom");
    if prometheus().is_some() {
        copy_dir(&data, &prom_data);
    }
    let srv = Server::start(&data, &["--storage.tsdb.retention.time=100y"]);

    // SAMPLES: floats in `samples`, histograms in `histograms`, exactly as written.
    let body = post_read(&srv.addr, &read_request(vec![]));
    let resp = ReadResponse::decode(snap::raw::Decoder::new().decompress_vec(&body).unwrap().as_slice()).unwrap();
    let result = &resp.results[0].timeseries;
    assert_eq!(result.len(), written.len());
    for (ts, (name, floats, hists)) in result.iter().zip(&written) {
        assert_eq!(ts.labels[0].value, *name);
        let got: Vec<(i64, f64)> = ts.samples.iter().map(|s| (s.timestamp, s.value)).collect();
        assert_eq!(&got, floats, "{name} floats");
        let got: Vec<proto::Histogram> =
            ts.histograms.iter().map(|h| proto::Histogram { reset_hint: 0, ..h.clone() }).collect();
        let want: Vec<proto::Histogram> = hists.iter().map(|(t, h)| to_proto(*t, h)).collect();
        assert!(got == want, "{name} histograms differ");
    }

    // STREAMED_XOR_CHUNKS: the block's chunks as stored, with their types; the counter reset, the
    // schema change and the kind change of hb_mixed each start a chunk, as do 120 samples.
    let ours = streamed(&srv.addr);
    let types: Vec<(String, Vec<i32>)> =
        ours.iter().map(|(k, cs)| (k[0].1.clone(), cs.iter().map(|c| c.2).collect())).collect();
    assert_eq!(
        types,
        vec![
            ("hb_float".to_string(), vec![3, 3]),
            ("hb_int".to_string(), vec![2, 2, 2]),
            ("hb_mixed".to_string(), vec![1, 2, 2]),
        ]
    );
    let Some(bin) = prometheus() else { return };
    let prom = PromServer::start(
        &bin,
        &prom_data,
        &["--enable-feature=native-histograms", "--storage.tsdb.retention.time=100y"],
    );
    let theirs = streamed(&prom.addr);
    assert!(
        ours == theirs,
        "Strata's streamed chunks differ from Prometheus's: {} vs {} series",
        ours.len(),
        theirs.len()
    );
}

/// The other direction: a block Prometheus 2.42 writes (a snapshot of its head) with integer and
/// float histograms, served by `strata`: the streamed answer passes on the block's chunks as stored
/// (types and bytes), and the `SAMPLES` answer holds exactly the histograms written.
#[test]
fn prometheus_histogram_blocks_are_served_as_written() {
    let Some(bin) = prometheus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let prom_data = dir.path().join("prom");
    let prom = PromServer::start(
        &bin,
        &prom_data,
        &["--web.enable-remote-write-receiver", "--enable-feature=native-histograms", "--web.enable-admin-api"],
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    // Inside one 2h range of the head (it cuts chunks at the boundaries).
    let base = (now / BLOCK_MS - 1) * BLOCK_MS + 60_000;
    let at = |i: i64| base + i * STEP;
    // Counts that only grow (Prometheus 2.42 cannot snapshot a head chunk after a counter reset:
    // "detected unexpected counter reset in histogram").
    let counter: Vec<(i64, HistogramValue)> =
        (0..150).map(|i| (at(i), HistogramValue::Int(int_hist(i.min(69), (i - 69).max(0))))).collect();
    let floats: Vec<(i64, HistogramValue)> =
        (0..50).map(|i| (at(i), HistogramValue::Float(float_hist(i + 1)))).collect();
    // Gauge histograms are left out: Prometheus 2.42 cannot snapshot them either (same error).
    let written = [("hp_counter", &counter), ("hp_float", &floats)];
    let timeseries = written
        .iter()
        .map(|(name, hs)| proto::TimeSeries {
            labels: vec![
                proto::Label { name: "__name__".into(), value: (*name).into() },
                proto::Label { name: "job".into(), value: "hist".into() },
            ],
            histograms: hs.iter().map(|(t, h)| to_proto(*t, h)).collect(),
            ..Default::default()
        })
        .collect();
    prom.write(&proto::WriteRequest { timeseries, ..Default::default() });
    let text = match ureq::post(&format!("http://{}/api/v1/admin/tsdb/snapshot", prom.addr)).call() {
        Ok(r) => r.into_string().unwrap(),
        Err(ureq::Error::Status(code, r)) => panic!("snapshot: {code}: {}", r.into_string().unwrap_or_default()),
        Err(e) => panic!("snapshot: {e}"),
    };
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let snapshot = prom_data.join("snapshots").join(json["data"]["name"].as_str().unwrap());
    let blocks = crate::util::block_dirs(&snapshot);
    assert_eq!(blocks.len(), 1, "one block from the head");

    // The block's chunks as Prometheus stored them, per series.
    let block = tsdb::block::Block::open(&blocks[0]).unwrap();
    block.verify().unwrap();
    let mut stored: Vec<(String, Vec<WireChunk>)> = Vec::new();
    for (labels, chunks) in block.select(&[]).unwrap() {
        let cs = chunks
            .iter()
            .map(|c| {
                let (ty, b) = match &c.data {
                    ChunkData::Xor(b) => (1, b),
                    ChunkData::Histogram(b) => (2, b),
                    ChunkData::FloatHistogram(b) => (3, b),
                    other => panic!("a block chunk decoded at open: {other:?}"),
                };
                (c.min_t, c.max_t, ty, b.to_vec())
            })
            .collect();
        stored.push((labels.get("__name__").unwrap_or_default().to_string(), cs));
    }
    // Integer histogram chunks (150 samples: more than one), float histogram chunks.
    let kinds: Vec<(&str, Vec<i32>)> =
        stored.iter().map(|(n, cs)| (n.as_str(), cs.iter().map(|c| c.2).collect())).collect();
    let names: Vec<&str> = kinds.iter().map(|k| k.0).collect();
    assert_eq!(names, ["hp_counter", "hp_float"]);
    assert!(kinds[0].1.len() >= 2 && kinds[0].1.iter().all(|&t| t == 2), "{kinds:?}");
    assert!(kinds[1].1.iter().all(|&t| t == 3), "{kinds:?}");

    let data = dir.path().join("data");
    copy_dir(&blocks[0], &data.join(blocks[0].file_name().unwrap()));
    let srv = Server::start(&data, &[]);
    let q = |types| {
        let q = Query {
            start_timestamp_ms: base,
            end_timestamp_ms: base + BLOCK_MS,
            matchers: vec![LabelMatcher { r#type: Type::Eq as i32, name: "job".into(), value: "hist".into() }],
            hints: None,
        };
        snap::raw::Encoder::new()
            .compress_vec(&ReadRequest { queries: vec![q], accepted_response_types: types }.encode_to_vec())
            .unwrap()
    };
    let body = post_read(&srv.addr, &q(vec![]));
    let resp = ReadResponse::decode(snap::raw::Decoder::new().decompress_vec(&body).unwrap().as_slice()).unwrap();
    let result = &resp.results[0].timeseries;
    assert_eq!(result.len(), written.len());
    for (ts, (name, hs)) in result.iter().zip(&written) {
        assert_eq!(ts.labels[0].value, *name);
        assert!(ts.samples.is_empty());
        let got: Vec<proto::Histogram> =
            ts.histograms.iter().map(|h| proto::Histogram { reset_hint: 0, ..h.clone() }).collect();
        let want: Vec<proto::Histogram> = hs.iter().map(|(t, h)| to_proto(*t, h)).collect();
        assert!(got == want, "{name}: histograms differ from those written");
    }
    let body = post_read(&srv.addr, &q(vec![ResponseType::StreamedXorChunks as i32]));
    let mut rest = &body[..];
    let mut ours: Vec<(String, Vec<WireChunk>)> = Vec::new();
    while !rest.is_empty() {
        let (msg, n) = framing::read_frame(rest, 1 << 24).unwrap().expect("a whole frame");
        for cs in ChunkedReadResponse::decode(msg).unwrap().chunked_series {
            let name = cs.labels[0].value.clone();
            let chunks = cs.chunks.iter().map(|c| (c.min_time_ms, c.max_time_ms, c.r#type, c.data.clone()));
            match ours.last_mut() {
                Some((k, cs)) if *k == name => cs.extend(chunks),
                _ => ours.push((name, chunks.collect())),
            }
        }
        rest = &rest[n..];
    }
    assert!(ours == stored, "streamed chunks are not the block's chunks as stored");
}
