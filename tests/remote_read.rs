//! Prometheus remote read (`POST /api/v1/read`) through the real binary: `SAMPLES` and
//! `STREAMED_XOR_CHUNKS` answers decoded and compared with what the query API reads (in-order,
//! out-of-order and block data, duplicates removed), matchers, hints, the sample limit, the external
//! labels and their reload, errors, a client that goes away; and a Prometheus 2.42 server reading two
//! Strata shards through `remote_read`, answering PromQL like one Prometheus holding all the data.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ingest::proto::{
    self, label_matcher::Type, read_request::ResponseType, ChunkedReadResponse, LabelMatcher, Query, ReadHints,
    ReadRequest, ReadResponse,
};
use prost::Message;
use query::api::remote_read::framing;

use crate::util::{format_time, prometheus, request, series, PromServer, Server};

/// 2h-aligned start.
const T0: i64 = 1_699_999_200_000;
const H: i64 = 3_600_000;
const STEP: i64 = 15_000;
const SERIES: usize = 4;

/// A series' labels as sorted pairs.
type Key = Vec<(String, String)>;
/// Series → samples.
type Answer = BTreeMap<Key, Vec<(i64, f64)>>;

fn value(s: usize, t: i64) -> f64 {
    (s * 100_000) as f64 + ((t - T0) / STEP) as f64
}

fn rr_labels(s: usize) -> [(&'static str, String); 2] {
    [("job", format!("j{}", s % 2)), ("s", s.to_string())]
}

fn rr_series(s: usize, samples: &[(i64, f64)]) -> proto::TimeSeries {
    let l = rr_labels(s);
    let l: Vec<(&str, &str)> = l.iter().map(|(n, v)| (*n, v.as_str())).collect();
    series("rr", &l, samples)
}

/// Sends `[from, to)` for every series: every step but each 10th, or (`held_back`) only each 10th.
fn send(srv: &Server, from: i64, to: i64, held_back: bool, model: &mut BTreeMap<(usize, i64), f64>) {
    let mut t = from;
    while t < to {
        let end = (t + 40 * STEP).min(to);
        let mut ts = Vec::new();
        for s in 0..SERIES {
            let samples: Vec<(i64, f64)> = (0..)
                .map(|k| t + k * STEP)
                .take_while(|&u| u < end)
                .filter(|&u| (((u - T0) / STEP) % 10 == 9) == held_back)
                .map(|u| (u, value(s, u)))
                .collect();
            for &(u, v) in &samples {
                model.entry((s, u)).or_insert(v);
            }
            if !samples.is_empty() {
                ts.push(rr_series(s, &samples));
            }
        }
        let (code, body) = srv.write(&request(ts));
        assert_eq!(code, 204, "write: {body}\n{}", srv.log_text());
        t = end;
    }
}

fn matcher(t: Type, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher { r#type: t as i32, name: name.into(), value: value.into() }
}

fn query(start: i64, end: i64, matchers: Vec<LabelMatcher>) -> Query {
    Query { start_timestamp_ms: start, end_timestamp_ms: end, matchers, hints: None }
}

/// Posts a remote-read request; returns (status, Content-Type, Content-Encoding, body).
fn post_read(addr: &str, body: &[u8]) -> (u16, String, String, Vec<u8>) {
    let r = ureq::post(&format!("http://{addr}/api/v1/read"))
        .set("Content-Encoding", "snappy")
        .set("Content-Type", "application/x-protobuf")
        .set("X-Prometheus-Remote-Read-Version", "0.1.0")
        .send_bytes(body);
    let resp = match r {
        Ok(resp) => resp,
        Err(ureq::Error::Status(_, resp)) => resp,
        Err(e) => panic!("remote read: {e}"),
    };
    let (code, ct, ce) = (
        resp.status(),
        resp.header("Content-Type").unwrap_or_default().to_owned(),
        resp.header("Content-Encoding").unwrap_or_default().to_owned(),
    );
    let mut bytes = Vec::new();
    resp.into_reader().read_to_end(&mut bytes).unwrap();
    (code, ct, ce, bytes)
}

fn encode(req: &ReadRequest) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
}

fn read_samples(srv: &Server, queries: Vec<Query>) -> ReadResponse {
    let (code, ct, ce, body) = post_read(&srv.addr, &encode(&ReadRequest { queries, accepted_response_types: vec![] }));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!((ct.as_str(), ce.as_str()), ("application/x-protobuf", "snappy"));
    ReadResponse::decode(snap::raw::Decoder::new().decompress_vec(&body).unwrap().as_slice()).unwrap()
}

/// A `STREAMED_XOR_CHUNKS` answer as its frames.
fn read_streamed(addr: &str, queries: Vec<Query>) -> Vec<ChunkedReadResponse> {
    let types = vec![ResponseType::StreamedXorChunks as i32, ResponseType::Samples as i32];
    let (code, ct, ce, body) = post_read(addr, &encode(&ReadRequest { queries, accepted_response_types: types }));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(ct, "application/x-streamed-protobuf; proto=prometheus.ChunkedReadResponse");
    assert_eq!(ce, "");
    let mut rest = &body[..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (msg, n) = framing::read_frame(rest, 1 << 24).unwrap().expect("a whole frame");
        out.push(ChunkedReadResponse::decode(msg).unwrap());
        rest = &rest[n..];
    }
    out
}

fn key(labels: &[proto::Label]) -> Key {
    let k: Key = labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
    assert!(k.windows(2).all(|w| w[0].0 < w[1].0), "labels not sorted: {k:?}");
    k
}

fn samples_answer(r: &proto::QueryResult) -> Answer {
    let mut out = Answer::new();
    for ts in &r.timeseries {
        let samples: Vec<(i64, f64)> = ts.samples.iter().map(|s| (s.timestamp, s.value)).collect();
        assert!(samples.windows(2).all(|w| w[0].0 < w[1].0), "samples not sorted and unique");
        assert!(out.insert(key(&ts.labels), samples).is_none(), "a series twice");
    }
    out
}

/// The samples in `[mint, maxt]` of the frames of query `index`; checks that series come sorted,
/// each in consecutive frames, with chunks in time order that do not overlap.
fn streamed_answer(frames: &[ChunkedReadResponse], index: i64, mint: i64, maxt: i64) -> Answer {
    let mut out = Answer::new();
    let mut order: Vec<Key> = Vec::new();
    let mut last_max = i64::MIN;
    for f in frames.iter().filter(|f| f.query_index == index) {
        assert_eq!(f.chunked_series.len(), 1, "one series per frame");
        let cs = &f.chunked_series[0];
        assert!(!cs.chunks.is_empty(), "a frame without chunks");
        let k = key(&cs.labels);
        if order.last() != Some(&k) {
            assert!(!out.contains_key(&k), "series {k:?} split over non-consecutive frames");
            order.push(k.clone());
            last_max = i64::MIN;
        }
        let samples = out.entry(k).or_default();
        for c in &cs.chunks {
            assert_eq!(c.r#type, proto::chunk::Encoding::Xor as i32);
            assert!(c.min_time_ms > last_max && c.min_time_ms <= c.max_time_ms, "chunks overlap or out of order");
            last_max = c.max_time_ms;
            let mut it = tsdb::chunkenc::XorIter::new(&c.data);
            let decoded: Vec<(i64, f64)> = it.by_ref().collect();
            assert!(it.error().is_none(), "undecodable chunk");
            assert_eq!(decoded.first().map(|s| s.0), Some(c.min_time_ms));
            assert_eq!(decoded.last().map(|s| s.0), Some(c.max_time_ms));
            samples.extend(decoded.into_iter().filter(|&(t, _)| t >= mint && t <= maxt));
        }
    }
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "series not sorted");
    out.retain(|_, v| !v.is_empty());
    out
}

/// The raw samples the query API reads for `selector` over `[mint, maxt]`, keyed like remote read's
/// answers with the external labels added.
fn api_answer(srv: &Server, selector: &str, mint: i64, maxt: i64, external: &[(&str, &str)]) -> Answer {
    let range_s = (maxt - mint) / 1000 + 1;
    let mut out = Answer::new();
    for (metric, values) in srv.raw_samples(selector, &format!("{range_s}s"), maxt) {
        let m: BTreeMap<String, String> = serde_json::from_str(&metric).unwrap();
        let mut k: BTreeMap<String, String> = m;
        for (n, v) in external {
            k.entry((*n).to_owned()).or_insert_with(|| (*v).to_owned());
        }
        let samples: Vec<(i64, f64)> =
            values.into_iter().filter(|&(t, _)| t >= mint).map(|(t, v)| (t, v.parse().unwrap())).collect();
        if !samples.is_empty() {
            out.insert(k.into_iter().collect(), samples);
        }
    }
    out
}

/// The samples that differ between two answers, for failure messages.
fn diff(got: &Answer, want: &Answer) -> String {
    let mut out = Vec::new();
    for (k, w) in want {
        let g = got.get(k).cloned().unwrap_or_default();
        let (gs, ws): (BTreeMap<i64, f64>, BTreeMap<i64, f64>) = (g.into_iter().collect(), w.iter().copied().collect());
        let missing: Vec<_> = ws.iter().filter(|(t, v)| gs.get(t) != Some(v)).take(5).collect();
        let extra: Vec<_> = gs.iter().filter(|(t, v)| ws.get(t) != Some(v)).take(5).collect();
        if !missing.is_empty() || !extra.is_empty() {
            out.push(format!("{k:?}: want {missing:?} got {extra:?}"));
        }
    }
    out.extend(got.keys().filter(|k| !want.contains_key(*k)).map(|k| format!("unexpected series {k:?}")));
    out.join("\n")
}

fn model_answer(model: &BTreeMap<(usize, i64), f64>, keep: impl Fn(usize) -> bool, shard: &str) -> Answer {
    let mut out = Answer::new();
    for (&(s, t), &v) in model {
        if !keep(s) {
            continue;
        }
        let mut k: Key = vec![("__name__".into(), "rr".into())];
        k.extend(rr_labels(s).iter().map(|(n, v)| ((*n).to_owned(), v.clone())));
        k.push(("shard".into(), shard.into()));
        k.sort();
        out.entry(k).or_default().push((t, v));
    }
    out
}

#[test]
fn remote_read_answers_what_the_query_api_reads() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("strata.yml");
    std::fs::write(&cfg, "global:\n  external_labels:\n    shard: a\n").unwrap();
    let cfg_arg = format!("--config.file={}", cfg.display());
    let args = |compaction_interval: &'static str| {
        [
            "--storage.tsdb.out-of-order-time-window=6h",
            compaction_interval,
            "--storage.remote.read-sample-limit=2000",
            "--storage.remote.read-max-bytes-in-frame=512",
            "--storage.remote.write.max-decompressed-bytes=4096",
            "--web.enable-lifecycle",
        ]
        .into_iter()
        .chain([cfg_arg.as_str()])
        .collect::<Vec<_>>()
    };
    let data = dir.path().join("data");
    let mut srv = Server::start(&data, &args("--storage.tsdb.compaction-interval=200ms"));
    let mut model = BTreeMap::new();
    send(&srv, T0, T0 + 8 * H, false, &mut model);
    // Blocks for the first 6 hours (the head keeps at most 1.5 block ranges), then late samples: for
    // the blocks' range (they become blocks of their own, merged with the others) and for the head's.
    let deadline = Instant::now() + Duration::from_secs(120);
    while srv.metric("strata_head_min_time_seconds").unwrap_or(0.0) * 1000.0 < (T0 + 6 * H) as f64 {
        assert!(Instant::now() < deadline, "the head was not compacted\n{}", srv.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    send(&srv, T0 + 2 * H + STEP, T0 + 8 * H, true, &mut model);
    // Late samples at timestamps the in-order data holds, with other values: acknowledged, and never
    // read (the sample stored first wins).
    let dups: Vec<(i64, f64)> =
        (1..20).map(|k| (T0 + 7 * H + k * STEP, -1.0)).filter(|&(t, _)| ((t - T0) / STEP) % 10 != 9).collect();
    let (code, body) = srv.write(&request(vec![rr_series(0, &dups)]));
    assert_eq!(code, 204, "{body}");
    // Read from a restarted server that does not compact meanwhile, so every read sees one state:
    // blocks (overlapping ones if the late samples' blocks were not merged yet), the head's in-order
    // and out-of-order chunks, maybe late samples for the blocks' range still in the head.
    assert!(srv.sigterm().success());
    let srv = Server::start(&data, &args("--storage.tsdb.compaction-interval=1h"));
    assert!(!crate::util::block_dirs(&data).is_empty());

    let (mint, maxt) = (T0, T0 + 8 * H);
    let all = || vec![matcher(Type::Eq, "__name__", "rr")];
    let want = model_answer(&model, |_| true, "a");
    assert_eq!(want.values().map(Vec::len).sum::<usize>(), SERIES * (8 * 240 - 48));
    let api = api_answer(&srv, "rr", mint, maxt, &[("shard", "a")]);
    assert!(api == want, "the query API disagrees with what was written: {}", diff(&api, &want));

    // SAMPLES: one query per series (each under the limit of 2000), answered in order.
    let queries: Vec<Query> = (0..SERIES)
        .rev()
        .map(|s| query(mint, maxt, vec![matcher(Type::Eq, "__name__", "rr"), matcher(Type::Eq, "s", &s.to_string())]))
        .collect();
    let resp = read_samples(&srv, queries);
    assert_eq!(resp.results.len(), SERIES);
    for (i, r) in resp.results.iter().enumerate() {
        let s = SERIES - 1 - i;
        let (got, want) = (samples_answer(r), model_answer(&model, |x| x == s, "a"));
        assert!(got == want, "SAMPLES query {i}: {}", diff(&got, &want));
    }

    // STREAMED: every series in one query, in frames of about 512 bytes.
    let frames = read_streamed(&srv.addr, vec![query(mint, maxt, all())]);
    let got = streamed_answer(&frames, 0, mint, maxt);
    assert!(got == want, "STREAMED answer: {}", diff(&got, &want));
    assert!(frames.len() > 2 * SERIES, "series were not split over frames: {} frames", frames.len());

    // The sample limit applies per query of a SAMPLES answer: all series at once are over it.
    let (code, _, _, body) = post_read(
        &srv.addr,
        &encode(&ReadRequest { queries: vec![query(mint, maxt, all())], accepted_response_types: vec![] }),
    );
    assert_eq!((code, String::from_utf8_lossy(&body).as_ref()), (400, "exceeded sample limit (2000)\n"));

    // Matchers of every type, compared with the series API; an equality on the external label with
    // its value matches every series, with another value none.
    let cases: Vec<(Vec<LabelMatcher>, &str)> = vec![
        (vec![matcher(Type::Eq, "__name__", "rr"), matcher(Type::Re, "s", "1|2")], r#"rr{s=~"1|2"}"#),
        (vec![matcher(Type::Eq, "__name__", "rr"), matcher(Type::Neq, "s", "0")], r#"rr{s!="0"}"#),
        (vec![matcher(Type::Re, "__name__", "r+"), matcher(Type::Nre, "job", "j0")], r#"{__name__=~"r+",job!~"j0"}"#),
        (vec![matcher(Type::Eq, "__name__", "rr"), matcher(Type::Eq, "shard", "a")], "rr"),
        (vec![matcher(Type::Eq, "__name__", "rr"), matcher(Type::Eq, "shard", "b")], "nothing_at_all"),
    ];
    for (ms, selector) in cases {
        let q = query(T0 + 6 * H, maxt, ms);
        let got = streamed_answer(&read_streamed(&srv.addr, vec![q.clone()]), 0, T0 + 6 * H, maxt);
        let want = api_answer(&srv, selector, T0 + 6 * H, maxt, &[("shard", "a")]);
        assert_eq!(got, want, "STREAMED {selector}");
        assert!(selector == "nothing_at_all" || !want.is_empty(), "{selector} matches nothing");
        let got = samples_answer(&read_samples(&srv, vec![q]).results[0]);
        assert_eq!(got, want, "SAMPLES {selector}");
    }

    // Hints narrow the samples read to their range.
    let hinted = Query {
        hints: Some(ReadHints {
            start_ms: T0 + 7 * H,
            end_ms: T0 + 7 * H + 10 * STEP,
            step_ms: 60_000,
            func: "rate".into(),
            ..Default::default()
        }),
        ..query(mint, maxt, all())
    };
    let got = samples_answer(&read_samples(&srv, vec![hinted.clone()]).results[0]);
    let want_hinted = api_answer(&srv, "rr", T0 + 7 * H, T0 + 7 * H + 10 * STEP, &[("shard", "a")]);
    assert_eq!(got, want_hinted);
    assert_eq!(got.values().map(Vec::len).sum::<usize>(), SERIES * 11);
    assert_eq!(
        streamed_answer(&read_streamed(&srv.addr, vec![hinted]), 0, T0 + 7 * H, T0 + 7 * H + 10 * STEP),
        want_hinted
    );

    // Bad requests: 400 with the reason.
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not snappy".to_vec(), "snappy"),
        (snap::raw::Encoder::new().compress_vec(b"\xff\xff\xff").unwrap(), "invalid protobuf ReadRequest"),
        (
            encode(&ReadRequest { queries: vec![], accepted_response_types: vec![5, 6] }),
            "server does not support any of the requested response types: [5 6]",
        ),
        (
            encode(&ReadRequest {
                queries: vec![query(mint, maxt, vec![matcher(Type::Re, "s", "(")])],
                accepted_response_types: vec![],
            }),
            "query 0:",
        ),
        (
            encode(&ReadRequest {
                queries: vec![query(mint, maxt, vec![LabelMatcher { r#type: 7, name: "a".into(), value: "b".into() }])],
                accepted_response_types: vec![],
            }),
            "invalid matcher type 7",
        ),
    ];
    // Bodies are bounded like remote-write bodies: a snappy block declaring more than it can expand
    // to, or more than the decompressed limit, is refused before anything is allocated.
    let mut impossible = vec![0xff, 0xff, 0xff, 0x7f];
    impossible.extend_from_slice(&[0; 8]);
    let cases: Vec<(Vec<u8>, &str, u16)> = cases
        .into_iter()
        .map(|(b, t)| (b, t, 400))
        .chain([
            (impossible, "invalid snappy block: it declares 268435455 decompressed bytes", 400),
            (snap::raw::Encoder::new().compress_vec(&[0; 5000]).unwrap(), "over the limit of 4096 bytes", 413),
        ])
        .collect();
    for (body, text, status) in cases {
        let (code, ct, _, answer) = post_read(&srv.addr, &body);
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(code, status, "{answer}");
        assert!(ct.starts_with("text/plain"), "{ct}");
        assert!(answer.contains(text) && answer.ends_with('\n'), "{answer:?} should say {text:?}");
    }

    // A reload changes the external labels.
    std::fs::write(&cfg, "global:\n  external_labels:\n    shard: b\n    region: eu\n").unwrap();
    let r = ureq::post(&srv.url("/-/reload")).call();
    assert!(r.is_ok(), "reload: {r:?}");
    let got = samples_answer(
        &read_samples(
            &srv,
            vec![query(
                T0 + 7 * H,
                maxt,
                vec![matcher(Type::Eq, "__name__", "rr"), matcher(Type::Eq, "shard", "b"), matcher(Type::Eq, "s", "1")],
            )],
        )
        .results[0],
    );
    let want = api_answer(&srv, r#"rr{s="1"}"#, T0 + 7 * H, maxt, &[("shard", "b"), ("region", "eu")]);
    assert_eq!(got, want);
    assert_eq!(got.len(), 1);
    assert_eq!(srv.metric("strata_remote_read_queries"), Some(0.0));
}

/// A client that stops reading a streamed answer and disconnects, or disconnects while a SAMPLES
/// answer is being built, ends the read on the server:
/// counted as cancelled, and the request no longer counted as in flight. Requests beyond the
/// concurrency limit wait for a place.
#[test]
fn a_client_that_goes_away_stops_the_read() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("data"), &["--storage.remote.read-concurrent-limit=1"]);
    // About 1.5 million samples with values that do not compress (~9 bytes each): far more than the
    // socket buffers of a client that reads nothing hold.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    for part in 0..30 {
        let mut ts = Vec::new();
        for s in 0..300 {
            let samples: Vec<(i64, f64)> = (0..170).map(|k| (T0 + (part * 170 + k) * 1000, next())).collect();
            ts.push(series("big", &[("s", &s.to_string())], &samples));
        }
        let (code, body) = srv.write(&request(ts));
        assert_eq!(code, 204, "{body}");
    }
    let req = encode(&ReadRequest {
        queries: vec![query(T0, T0 + H, vec![matcher(Type::Eq, "__name__", "big")])],
        accepted_response_types: vec![ResponseType::StreamedXorChunks as i32],
    });
    let mut conn = std::net::TcpStream::connect(&srv.addr).unwrap();
    write!(
        conn,
        "POST /api/v1/read HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nContent-Length: {}\r\n\r\n",
        req.len()
    )
    .unwrap();
    conn.write_all(&req).unwrap();
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert_eq!(srv.metric("strata_remote_read_queries"), Some(1.0), "the read is still being answered");
    // With a limit of one request at a time, another read waits for the stalled one.
    let small = encode(&ReadRequest {
        queries: vec![query(T0, T0 + 2000, vec![matcher(Type::Eq, "__name__", "big"), matcher(Type::Eq, "s", "7")])],
        accepted_response_types: vec![],
    });
    let addr = srv.addr.clone();
    let waiting = std::thread::spawn(move || post_read(&addr, &small));
    let deadline = Instant::now() + Duration::from_secs(60);
    while srv.metric("strata_remote_read_queries") != Some(2.0) {
        assert!(Instant::now() < deadline, "the second read did not arrive");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!waiting.is_finished(), "a second read was answered while the limit of one was taken");
    drop(conn);
    wait_cancelled(&srv, 1);
    let (code, _, _, body) = waiting.join().unwrap();
    assert_eq!(code, 200);
    let r = ReadResponse::decode(snap::raw::Decoder::new().decompress_vec(&body).unwrap().as_slice()).unwrap();
    assert_eq!(r.results[0].timeseries.len(), 1);
    assert_eq!(r.results[0].timeseries[0].samples.len(), 3, "samples at T0, T0+1s, T0+2s");
    // A SAMPLES answer is built whole before it is sent: the read stops at the next series once the
    // connection is found closed (the handler is dropped).
    let req = encode(&ReadRequest {
        queries: vec![query(T0, T0 + H, vec![matcher(Type::Eq, "__name__", "big")])],
        accepted_response_types: vec![],
    });
    let mut conn = std::net::TcpStream::connect(&srv.addr).unwrap();
    write!(
        conn,
        "POST /api/v1/read HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nContent-Length: {}\r\n\r\n",
        req.len()
    )
    .unwrap();
    conn.write_all(&req).unwrap();
    // Once the read has begun (1.5 million samples take a while to read and encode).
    let deadline = Instant::now() + Duration::from_secs(60);
    while srv.metric("strata_remote_read_queries") != Some(1.0) {
        assert!(Instant::now() < deadline, "the SAMPLES read did not begin");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(conn);
    wait_cancelled(&srv, 2);
}

fn wait_cancelled(srv: &Server, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while srv.metric("strata_remote_read_cancelled_total") != Some(n as f64)
        || srv.metric("strata_remote_read_queries") != Some(0.0)
    {
        assert!(
            Instant::now() < deadline,
            "read {n} did not stop: cancelled {:?}, in flight {:?}",
            srv.metric("strata_remote_read_cancelled_total"),
            srv.metric("strata_remote_read_queries")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Prometheus 2.42 server with `remote_read` to two Strata shards, each holding its own series
/// (one label set on both), answers PromQL over the union as a Prometheus holding all the data does,
/// each series carrying its shard's external label.
#[test]
fn prometheus_reads_two_strata_shards_like_one_prometheus() {
    let Some(prom_bin) = prometheus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut shards = Vec::new();
    for name in ["a", "b"] {
        let cfg = dir.path().join(format!("shard-{name}.yml"));
        std::fs::write(&cfg, format!("global:\n  external_labels:\n    shard: {name}\n")).unwrap();
        let args = [format!("--config.file={}", cfg.display()), "--storage.tsdb.out-of-order-time-window=2h".into()];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        shards.push(Server::start(&dir.path().join(format!("shard-{name}")), &args));
    }
    let reference =
        PromServer::start(&prom_bin, &dir.path().join("reference"), &["--web.enable-remote-write-receiver"]);
    // (shard, instance): instance i0 is on both shards, with different values.
    let placement = [("a", "i0"), ("a", "i1"), ("b", "i0"), ("b", "i2")];
    let span = H;
    let steps: Vec<i64> = (0..span / STEP).collect();
    let counter = |p: usize, k: i64| (k * (p as i64 + 2)) as f64 + if p == 3 && k >= 100 { -50.0 } else { 0.0 };
    let gauge = |p: usize, k: i64| ((k * (p as i64 + 5)) % 37) as f64 - 10.0;
    for part in steps.chunks(60) {
        for (late, shard_ts) in [(false, true), (true, true), (false, false)] {
            // Shards first get every step but each 7th, then those late (out of order); the reference
            // gets each step once, in order, with the shard label written.
            let mut by_shard: BTreeMap<&str, Vec<proto::TimeSeries>> = BTreeMap::new();
            for (p, &(shard, inst)) in placement.iter().enumerate() {
                let keep = |k: &&i64| !shard_ts || ((**k % 7 == 6) == late);
                let c: Vec<(i64, f64)> = part.iter().filter(keep).map(|&k| (T0 + k * STEP, counter(p, k))).collect();
                let g: Vec<(i64, f64)> = part.iter().filter(keep).map(|&k| (T0 + k * STEP, gauge(p, k))).collect();
                let mut l = vec![("job", "api"), ("instance", inst)];
                if !shard_ts {
                    l.push(("shard", shard));
                }
                let out = by_shard.entry(if shard_ts { shard } else { "reference" }).or_default();
                out.push(series("rr_req_total", &l, &c));
                out.push(series("rr_temp", &l, &g));
            }
            for (target, ts) in by_shard {
                match target {
                    "a" => assert_eq!(shards[0].write(&request(ts)).0, 204),
                    "b" => assert_eq!(shards[1].write(&request(ts)).0, 204),
                    _ => reference.write(&request(ts)),
                }
            }
        }
    }
    let remote_read: String =
        shards.iter().map(|s| format!("  - url: http://{}/api/v1/read\n    read_recent: true\n", s.addr)).collect();
    let reader = PromServer::start_with_config(
        &prom_bin,
        &dir.path().join("reader"),
        &format!("global:\n  scrape_interval: 1h\nremote_read:\n{remote_read}"),
        &[],
    );

    let queries = [
        "rr_req_total",
        r#"rr_req_total{shard="a"}"#,
        r#"rr_req_total{instance="i0"}"#,
        "sum(rate(rr_req_total[5m]))",
        "sum by (shard) (rate(rr_req_total[5m]))",
        r#"rate(rr_req_total{job="api"}[5m])"#,
        "max by (instance) (rr_temp)",
        "count(rr_temp > 0)",
        "rr_temp[2m]",
    ];
    let mut last_bit = 0;
    let mut mismatches = Vec::new();
    for q in queries {
        for t in [T0 + 20 * 60_000, T0 + span - STEP] {
            let params = [("query", q), ("time", &format_time(t) as &str)];
            let (ours, theirs) =
                (reader.get_json("/api/v1/query", &params), reference.get_json("/api/v1/query", &params));
            assert_eq!(theirs["status"], "success", "{q}: {theirs}");
            assert!(!theirs["data"]["result"].as_array().unwrap().is_empty(), "{q} answers nothing");
            if !crate::promql_vs_prometheus::same(&ours, &theirs, &mut last_bit) {
                mismatches.push(format!("instant {q} @ {t}:\n  via remote read: {ours}\n  one prometheus:  {theirs}"));
            }
        }
        if q.ends_with(']') {
            continue;
        }
        let (start, end) = (format_time(T0 + 10 * 60_000), format_time(T0 + span));
        let params = [("query", q), ("start", start.as_str()), ("end", end.as_str()), ("step", "60")];
        let (ours, theirs) =
            (reader.get_json("/api/v1/query_range", &params), reference.get_json("/api/v1/query_range", &params));
        if !crate::promql_vs_prometheus::same(&ours, &theirs, &mut last_bit) {
            mismatches.push(format!("range {q}:\n  via remote read: {ours}\n  one prometheus:  {theirs}"));
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
    assert_eq!(last_bit, 0, "the same engine over the same samples differs in the last bit");
    // Each shard's series carry its external label.
    let params = [("query", "rr_req_total"), ("time", &format_time(T0 + span - STEP) as &str)];
    let shards_seen: std::collections::BTreeSet<String> = reader.get_json("/api/v1/query", &params)["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"]["shard"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(shards_seen, ["a".to_owned(), "b".to_owned()].into());
}

/// Prometheus 2.42's own read handler, given the same samples (in order; Strata gets a seventh of
/// them late) and the same external label, answers the same requests with the same samples, headers
/// and errors.
#[test]
fn answers_like_prometheus_2_42_read_handler() {
    let Some(prom_bin) = prometheus() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = "global:\n  scrape_interval: 1h\n  external_labels:\n    shard: a\n";
    let cfg = dir.path().join("strata.yml");
    std::fs::write(&cfg, config).unwrap();
    let cfg_arg = format!("--config.file={}", cfg.display());
    let limit = "--storage.remote.read-sample-limit=500";
    let srv = Server::start(
        &dir.path().join("strata"),
        &[cfg_arg.as_str(), limit, "--storage.tsdb.out-of-order-time-window=2h"],
    );
    let prom = PromServer::start_with_config(
        &prom_bin,
        &dir.path().join("prom"),
        config,
        &["--web.enable-remote-write-receiver", limit],
    );
    let steps: Vec<i64> = (0..240).collect();
    for part in steps.chunks(60) {
        let make = |keep: &dyn Fn(i64) -> bool| {
            let ts: Vec<proto::TimeSeries> = (0..SERIES)
                .map(|s| {
                    let samples: Vec<(i64, f64)> = part
                        .iter()
                        .filter(|&&k| keep(k))
                        .map(|&k| (T0 + k * STEP, value(s, T0 + k * STEP) * 0.5))
                        .collect();
                    rr_series(s, &samples)
                })
                .collect();
            request(ts)
        };
        prom.write(&make(&|_| true));
        assert_eq!(srv.write(&make(&|k| k % 7 != 3)).0, 204);
        assert_eq!(srv.write(&make(&|k| k % 7 == 3)).0, 204);
    }
    let (mint, maxt) = (T0 + 10 * STEP, T0 + 200 * STEP);
    let requests = [
        vec![matcher(Type::Eq, "__name__", "rr"), matcher(Type::Re, "s", "[01]")],
        vec![matcher(Type::Eq, "__name__", "rr"), matcher(Type::Eq, "shard", "a"), matcher(Type::Neq, "job", "j1")],
        vec![matcher(Type::Eq, "__name__", "rr"), matcher(Type::Eq, "shard", "b")],
    ];
    for (i, ms) in requests.into_iter().enumerate() {
        let q = query(mint, maxt, ms);
        let ours = samples_answer(&read_samples(&srv, vec![q.clone()]).results[0]);
        assert_eq!(ours.len(), [2, 2, 0][i], "series of request {i}");
        let (code, ct, ce, body) =
            post_read(&prom.addr, &encode(&ReadRequest { queries: vec![q.clone()], accepted_response_types: vec![] }));
        assert_eq!((code, ct.as_str(), ce.as_str()), (200, "application/x-protobuf", "snappy"));
        let theirs = ReadResponse::decode(snap::raw::Decoder::new().decompress_vec(&body).unwrap().as_slice()).unwrap();
        assert_eq!(ours, samples_answer(&theirs.results[0]), "SAMPLES {q:?}");
        let ours = streamed_answer(&read_streamed(&srv.addr, vec![q.clone()]), 0, mint, maxt);
        let theirs = streamed_answer(&read_streamed(&prom.addr, vec![q.clone()]), 0, mint, maxt);
        assert_eq!(ours, theirs, "STREAMED {q:?}");
    }
    // The same errors: status and text.
    let over = ReadRequest {
        queries: vec![query(mint, maxt, vec![matcher(Type::Eq, "__name__", "rr")])],
        accepted_response_types: vec![],
    };
    let unsupported = ReadRequest { queries: vec![], accepted_response_types: vec![5, 6] };
    for req in [over, unsupported] {
        let (code, _, _, ours) = post_read(&srv.addr, &encode(&req));
        let (their_code, _, _, theirs) = post_read(&prom.addr, &encode(&req));
        assert_eq!(code, 400, "{}", String::from_utf8_lossy(&ours));
        assert_eq!((code, String::from_utf8_lossy(&ours)), (their_code, String::from_utf8_lossy(&theirs)));
    }
}
