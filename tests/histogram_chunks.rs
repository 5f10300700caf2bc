//! Strata's histogram chunk encoder against Prometheus 2.42: native histograms remote-written to
//! a Prometheus server (`--enable-feature=native-histograms`) and read back as chunks through its
//! `STREAMED_XOR_CHUNKS` remote read (which encodes them with Prometheus's own histogram chunk
//! appender) must be, byte for byte, the chunks Strata's
//! [`tsdb::chunkenc::HistogramChunk`] builds from the same histograms (cutting where it reports a
//! cut, with the counter-reset header it names).

use std::io::Read;

use ingest::proto::{
    self, histogram, label_matcher::Type, read_request::ResponseType, BucketSpan, ChunkedReadResponse, LabelMatcher,
    Query, ReadRequest, TimeSeries, WriteRequest,
};
use prost::Message;
use query::api::remote_read::framing;
use tsdb::chunkenc::{AppendError, HistogramChunk};
use tsdb::histogram::{CounterResetHint, Histogram, Span};

use crate::util::{prometheus, PromServer};

/// One series' histograms: `(t, h)`.
type Series = Vec<(i64, Histogram)>;

fn to_proto(t: i64, h: &Histogram) -> proto::Histogram {
    let spans = |s: &[Span]| s.iter().map(|s| BucketSpan { offset: s.offset, length: s.length }).collect();
    proto::Histogram {
        count: Some(histogram::Count::CountInt(h.count)),
        sum: h.sum,
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: Some(histogram::ZeroCount::ZeroCountInt(h.zero_count)),
        negative_spans: spans(&h.negative_spans),
        negative_deltas: h.negative_buckets.clone(),
        positive_spans: spans(&h.positive_spans),
        positive_deltas: h.positive_buckets.clone(),
        reset_hint: match h.counter_reset_hint {
            CounterResetHint::Unknown => histogram::ResetHint::Unknown,
            CounterResetHint::CounterReset => histogram::ResetHint::Yes,
            CounterResetHint::NotCounterReset => histogram::ResetHint::No,
            CounterResetHint::Gauge => histogram::ResetHint::Gauge,
        } as i32,
        timestamp: t,
        ..Default::default()
    }
}

/// Delta-encodes absolute bucket counts.
fn deltas(abs: &[i64]) -> Vec<i64> {
    abs.iter().scan(0, |prev, &a| Some(a - std::mem::replace(prev, a))).collect()
}

/// A histogram of the layout every series uses, with absolute bucket counts.
fn hist(hint: CounterResetHint, zero: u64, pos: [i64; 3], neg: i64, sum: f64) -> Histogram {
    Histogram {
        counter_reset_hint: hint,
        schema: 1,
        zero_threshold: 2f64.powi(-128),
        zero_count: zero,
        count: zero + pos.iter().sum::<i64>() as u64 + neg as u64,
        sum,
        positive_spans: vec![Span { offset: -1, length: 2 }, Span { offset: 2, length: 1 }],
        positive_buckets: deltas(&pos),
        negative_spans: vec![Span { offset: 0, length: 1 }],
        negative_buckets: vec![neg],
        custom_values: Vec::new(),
    }
}

/// Strata's chunks for a series: append, and on a cut start a chunk with the header it names.
fn strata_chunks(series: &Series) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut c = HistogramChunk::default();
    for (t, h) in series {
        match c.append(*t, h) {
            Ok(()) => {}
            Err(AppendError::Cut(cut)) => {
                out.push(c.bytes().to_vec());
                c = HistogramChunk::new(cut.header);
                c.append(*t, h).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
    out.push(c.bytes().to_vec());
    out
}

fn read_chunks(addr: &str, name: &str, start: i64, end: i64) -> Vec<(i32, Vec<u8>)> {
    let query = Query {
        start_timestamp_ms: start,
        end_timestamp_ms: end,
        matchers: vec![LabelMatcher { r#type: Type::Eq as i32, name: "__name__".into(), value: name.into() }],
        hints: None,
    };
    let req =
        ReadRequest { queries: vec![query], accepted_response_types: vec![ResponseType::StreamedXorChunks as i32] };
    let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap();
    let resp = ureq::post(&format!("http://{addr}/api/v1/read"))
        .set("Content-Encoding", "snappy")
        .set("Content-Type", "application/x-protobuf")
        .set("X-Prometheus-Remote-Read-Version", "0.1.0")
        .send_bytes(&body)
        .unwrap_or_else(|e| match e {
            ureq::Error::Status(code, r) => {
                panic!("remote read {name}: {code}: {}", r.into_string().unwrap_or_default())
            }
            e => panic!("remote read: {e}"),
        });
    let mut bytes = Vec::new();
    resp.into_reader().read_to_end(&mut bytes).unwrap();
    let mut rest = &bytes[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (msg, n) = framing::read_frame(rest, 1 << 24).unwrap().expect("a whole frame");
        for s in ChunkedReadResponse::decode(msg).unwrap().chunked_series {
            out.extend(s.chunks.into_iter().map(|c| (c.r#type, c.data)));
        }
        rest = &rest[n..];
    }
    out
}

#[test]
fn histogram_chunks_match_prometheus() {
    let Some(bin) = prometheus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let prom = PromServer::start(
        &bin,
        &dir.path().join("prom"),
        &["--web.enable-remote-write-receiver", "--enable-feature=native-histograms"],
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    // Prometheus's head cuts a chunk at every 2h-aligned boundary: the samples (at most 15 minutes)
    // start one minute into the previous 2h range, so none of them crosses one.
    const RANGE: i64 = 7_200_000;
    let base = (now / RANGE - 1) * RANGE + 60_000;
    let t = |i: i64| base + i * 15_000 + (i * i % 7) * 3;
    let unknown = CounterResetHint::Unknown;

    let counter: Series =
        (0..40).map(|i| (t(i), hist(unknown, i as u64, [i, 2 * i, i * i], 3 * i, 0.37 * (i * i) as f64))).collect();
    // Wide jumps (every varbit width), a zero threshold stored as raw bits, a NaN sum.
    let wide: Series = (0..60)
        .map(|i| {
            let grow = |k: i64| (i * i * i * k) % 5_000_000_000 + i * 1_000_003 * k;
            let mut h = hist(unknown, grow(3) as u64, [grow(1), grow(7), 5 * i], grow(2), (i as f64).powf(3.3));
            h.schema = -2;
            h.zero_threshold = 0.001;
            if i == 17 {
                h.sum = f64::NAN;
            }
            (t(i), h)
        })
        .collect();
    // Series with a counter reset or gauge histograms are left out: Prometheus 2.42's remote read
    // re-encodes head chunks and fails on them ("detected unexpected counter reset in histogram").
    let named = [("hist_counter", &counter), ("hist_wide", &wide)];
    let timeseries = named
        .iter()
        .map(|(name, s)| TimeSeries {
            labels: vec![proto::Label { name: "__name__".into(), value: (*name).into() }],
            histograms: s.iter().map(|(t, h)| to_proto(*t, h)).collect(),
            ..Default::default()
        })
        .collect();
    prom.write(&WriteRequest { timeseries, ..Default::default() });

    for (name, series) in named {
        let theirs = read_chunks(&prom.addr, name, base - 1, t(100));
        assert!(theirs.iter().all(|(ty, _)| *ty == 2), "{name}: chunk types {:?}", theirs.iter().map(|c| c.0));
        let theirs: Vec<Vec<u8>> = theirs.into_iter().map(|(_, d)| d).collect();
        let ours = strata_chunks(series);
        assert_eq!(ours.len(), theirs.len(), "{name}: chunk count");
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!(a == b, "{name}: chunk {i} differs\n strata     {a:02x?}\n prometheus {b:02x?}");
        }
    }
}
