//! Tests of the 2.0 walk: symbol table rules, per-series reference errors, wire-format variants
//! (unpacked references, fields in any order), and agreement with prost on generated requests.
#![allow(clippy::indexing_slicing, reason = "tests index into buffers they built")]

use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::proto_v2 as v2;

/// Per series: labels, samples (t, v bits), histograms, exemplars, created_t, metadata
/// (kind, help, unit) and whether it is invalid.
type Series = (Vec<(String, String)>, Vec<(i64, u64)>, u64, u64, i64, Option<(u64, String, String)>, bool);

fn s(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).expect("tests use UTF-8")
}

fn walk_owned(payload: &[u8]) -> Result<Vec<Series>, RequestError> {
    let (mut symbols, mut labels, mut out) = (Vec::new(), Vec::new(), Vec::new());
    let summary = walk(payload, &mut symbols, &mut labels, |pairs, series, _| {
        let samples = series.view.samples().map(|(t, v)| (t, v.to_bits())).collect::<Vec<_>>();
        assert_eq!(samples.len() as u64, series.view.num_samples);
        out.push((
            pairs.iter().map(|(n, v)| (s(n), s(v))).collect(),
            samples,
            series.view.num_histograms,
            series.view.num_exemplars,
            series.created_t,
            series.metadata.map(|m| (m.kind, s(m.help), s(m.unit))),
            series.invalid.is_some(),
        ));
    })?;
    assert_eq!(summary.series, out.len() as u64);
    Ok(out)
}

/// What the walk must yield for a valid request, computed from prost's structs.
fn expected(req: &v2::Request) -> Vec<Series> {
    let sym = |r: u32| req.symbols[r as usize].clone();
    req.timeseries
        .iter()
        .map(|ts| {
            let labels = ts.labels_refs.chunks(2).map(|p| (sym(p[0]), sym(p[1]))).collect();
            let created = if ts.created_timestamp != 0 {
                ts.created_timestamp
            } else {
                ts.samples.first().map_or(0, |s| s.start_timestamp)
            };
            let meta = ts
                .metadata
                .filter(|m| m.r#type != 0 || m.help_ref != 0 || m.unit_ref != 0)
                .map(|m| (m.r#type as u64, sym(m.help_ref), sym(m.unit_ref)));
            (
                labels,
                ts.samples.iter().map(|s| (s.timestamp, s.value.to_bits())).collect(),
                ts.histograms.len() as u64,
                ts.exemplars.len() as u64,
                created,
                meta,
                false,
            )
        })
        .collect()
}

fn request() -> v2::Request {
    let mut t = v2::SymbolTable::default();
    let labels_refs = t.label_refs([("__name__", "up"), ("job", "node")]);
    let metadata = Some(v2::Metadata { r#type: 2, help_ref: t.intern("Up or not."), unit_ref: 0 });
    v2::Request {
        timeseries: vec![v2::TimeSeries {
            labels_refs,
            samples: vec![
                v2::Sample { value: 1.0, timestamp: 1000, start_timestamp: 0 },
                v2::Sample { value: 0.0, timestamp: 2000, start_timestamp: 0 },
            ],
            histograms: vec![],
            exemplars: vec![],
            metadata,
            created_timestamp: 500,
        }],
        symbols: t.into_symbols(),
    }
}

#[test]
fn walks_a_request_like_prost() {
    let req = request();
    assert_eq!(walk_owned(&req.encode_to_vec()).unwrap(), expected(&req));
}

#[test]
fn symbols_after_the_series_are_found() {
    let req = request();
    let mut payload = Vec::new();
    for ts in &req.timeseries {
        prost::encoding::message::encode(5, ts, &mut payload);
    }
    for sym in &req.symbols {
        prost::encoding::string::encode(4, sym, &mut payload);
    }
    assert_eq!(v2::Request::decode(payload.as_slice()).unwrap(), req);
    assert_eq!(walk_owned(&payload).unwrap(), expected(&req));
}

#[test]
fn unpacked_label_refs_are_read() {
    let req = request();
    let ts = &req.timeseries[0];
    let mut inner = Vec::new();
    for r in &ts.labels_refs {
        prost::encoding::uint32::encode(1, r, &mut inner);
    }
    for smp in &ts.samples {
        prost::encoding::message::encode(2, smp, &mut inner);
    }
    let mut payload = Vec::new();
    for sym in &req.symbols {
        prost::encoding::string::encode(4, sym, &mut payload);
    }
    prost::encoding::encode_key(5, prost::encoding::WireType::LengthDelimited, &mut payload);
    prost::encoding::encode_varint(inner.len() as u64, &mut payload);
    payload.extend_from_slice(&inner);
    let decoded = v2::Request::decode(payload.as_slice()).unwrap();
    assert_eq!(decoded.timeseries[0].labels_refs, ts.labels_refs);
    let got = walk_owned(&payload).unwrap();
    assert_eq!(got[0].0, expected(&req)[0].0);
    assert_eq!(got[0].1, expected(&req)[0].1);
}

#[test]
fn first_symbol_must_be_empty() {
    let mut req = request();
    req.symbols[0] = "oops".into();
    assert_eq!(
        walk_owned(&req.encode_to_vec()).unwrap_err(),
        RequestError::FirstSymbolNotEmpty { found: "oops".into() }
    );
    // No symbols at all is fine for a request without series.
    assert!(walk_owned(&[]).unwrap().is_empty());
}

#[test]
fn bad_references_invalidate_only_their_series() {
    let mut req = request();
    let good = req.timeseries[0].clone();
    let mut odd = good.clone();
    odd.labels_refs.pop();
    let mut out_of_range = good.clone();
    out_of_range.labels_refs[3] = 99;
    let mut bad_help = good.clone();
    bad_help.metadata = Some(v2::Metadata { r#type: 1, help_ref: 1234, unit_ref: 0 });
    let mut bad_exemplar = good.clone();
    bad_exemplar.exemplars = vec![v2::Exemplar { labels_refs: vec![1, 77], value: 1.0, timestamp: 1 }];
    req.timeseries = vec![odd, out_of_range, good, bad_help, bad_exemplar];
    let n = req.symbols.len();
    let (mut symbols, mut labels, mut seen) = (Vec::new(), Vec::new(), Vec::new());
    walk(&req.encode_to_vec(), &mut symbols, &mut labels, |_, series, _| seen.push(series.invalid)).unwrap();
    assert_eq!(
        seen,
        [
            Some(InvalidSeries::OddLabelRefs { count: 3 }),
            Some(InvalidSeries::RefOutOfRange { field: RefField::Labels, reference: 99, symbols: n }),
            None,
            Some(InvalidSeries::RefOutOfRange { field: RefField::Help, reference: 1234, symbols: n }),
            Some(InvalidSeries::RefOutOfRange { field: RefField::ExemplarLabels, reference: 77, symbols: n }),
        ]
    );
    assert_eq!(
        seen[1].unwrap().to_string(),
        format!("labels_refs references symbol 99, but the request has {n} symbols")
    );
}

#[test]
fn created_timestamp_comes_from_the_series_or_the_first_sample() {
    let mut req = request();
    req.timeseries[0].created_timestamp = 0;
    req.timeseries[0].samples[0].start_timestamp = 700;
    req.timeseries[0].samples[1].start_timestamp = 800;
    assert_eq!(walk_owned(&req.encode_to_vec()).unwrap()[0].4, 700);
}

#[test]
fn a_1_0_body_reads_as_an_empty_request() {
    let v1 = crate::proto::WriteRequest {
        timeseries: vec![crate::proto::TimeSeries {
            labels: vec![crate::proto::Label { name: "__name__".into(), value: "x".into() }],
            samples: vec![crate::proto::Sample { value: 1.0, timestamp: 1 }],
            ..Default::default()
        }],
        metadata: vec![],
    };
    assert!(walk_owned(&v1.encode_to_vec()).unwrap().is_empty());
}

#[test]
fn wrong_wire_types_are_errors() {
    // TimeSeries.created_timestamp (6) as a length-delimited field.
    let mut inner = Vec::new();
    prost::encoding::bytes::encode(6, &vec![1u8], &mut inner);
    let mut payload = Vec::new();
    prost::encoding::bytes::encode(5, &inner, &mut payload);
    assert!(v2::Request::decode(payload.as_slice()).is_err());
    assert!(matches!(walk_owned(&payload), Err(RequestError::Proto(_))));
}

fn arb_str() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z_]{1,6}", "\\PC{0,8}"]
}

fn arb_request() -> impl Strategy<Value = v2::Request> {
    (prop::collection::vec(arb_str(), 0..12), 0..6usize).prop_flat_map(|(extra, n_series)| {
        let mut symbols = vec![String::new()];
        symbols.extend(extra);
        let n = symbols.len() as u32;
        let series = (
            prop::collection::vec((0..n, 0..n), 0..5),
            prop::collection::vec((any::<f64>(), any::<i64>(), prop_oneof![Just(0i64), any::<i64>()]), 0..5),
            0..3usize,
            prop::collection::vec((prop::collection::vec(0..n, 0..4), any::<f64>(), any::<i64>()), 0..2),
            prop::option::of((0..8i32, 0..n, 0..n)),
            prop_oneof![Just(0i64), any::<i64>()],
        )
            .prop_map(|(pairs, samples, hist, exemplars, meta, created)| v2::TimeSeries {
                labels_refs: pairs.into_iter().flat_map(|(a, b)| [a, b]).collect(),
                samples: samples
                    .into_iter()
                    .map(|(value, timestamp, start_timestamp)| v2::Sample { value, timestamp, start_timestamp })
                    .collect(),
                histograms: (0..hist)
                    .map(|i| v2::Histogram {
                        count: Some(crate::proto::histogram::Count::CountInt(i as u64)),
                        timestamp: i as i64,
                        ..Default::default()
                    })
                    .collect(),
                exemplars: exemplars
                    .into_iter()
                    .map(|(labels_refs, value, timestamp)| v2::Exemplar { labels_refs, value, timestamp })
                    .collect(),
                metadata: meta.map(|(t, h, u)| v2::Metadata { r#type: t, help_ref: h, unit_ref: u }),
                created_timestamp: created,
            });
        prop::collection::vec(series, n_series)
            .prop_map(move |timeseries| v2::Request { symbols: symbols.clone(), timeseries })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decoder_agrees_with_prost(req in arb_request()) {
        let payload = req.encode_to_vec();
        let decoded = v2::Request::decode(payload.as_slice()).unwrap();
        // Against what prost decodes (proto3 drops a -0.0 value on encoding, as a default).
        prop_assert_eq!(walk_owned(&payload).unwrap(), expected(&decoded));
    }

    #[test]
    fn random_bytes_never_panic_and_what_prost_accepts_is_walked(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let walked = walk_owned_lossy(&bytes);
        if let Ok(req) = v2::Request::decode(bytes.as_slice()) {
            if req.symbols.first().is_none_or(String::is_empty) {
                prop_assert!(walked.is_ok(), "prost accepted what the walk refused: {:?}", walked.err());
            }
        }
    }

    #[test]
    fn damaged_requests_never_panic(req in arb_request(), cut in any::<prop::sample::Index>(), flip in any::<u8>()) {
        let mut payload = req.encode_to_vec();
        if !payload.is_empty() {
            let i = cut.index(payload.len());
            payload[i] ^= flip;
            let _ = walk_owned_lossy(&payload);
            payload.truncate(i);
            let _ = walk_owned_lossy(&payload);
        }
    }
}

/// Walks any bytes (labels not required to be UTF-8), touching every sample.
fn walk_owned_lossy(payload: &[u8]) -> Result<u64, RequestError> {
    let (mut symbols, mut labels) = (Vec::new(), Vec::new());
    let mut n = 0u64;
    walk(payload, &mut symbols, &mut labels, |_, series, _| n += series.view.samples().count() as u64)?;
    Ok(n)
}
