//! The parse bound: how much CPU one core spends only to snappy-decode and protobuf-decode the
//! payloads of a run — the floor under any receiver's ingest cost. Native histograms count as
//! samples, and the walk parses each one into its spans and buckets, as a receiver must.

use std::time::Duration;

use prost::Message;
use serde::Serialize;

use ingest::proto::WriteRequest;

use crate::payload::ShardPayloads;
use crate::sys::thread_cpu_time;

/// CPU seconds per million samples of each decode path, on one thread.
#[derive(Debug, Clone, Serialize)]
pub struct ParseBound {
    /// Samples decoded.
    pub samples: u64,
    /// Snappy decompression only.
    pub snappy_cpu_s_per_m: f64,
    /// Snappy + prost decode into owned structs (what a Go/prost receiver does).
    pub snappy_prost_cpu_s_per_m: f64,
    /// Snappy + Strata's borrowing decoder (`ingest::decode::walk`, no label allocation;
    /// histograms parsed).
    pub snappy_walk_cpu_s_per_m: f64,
}

fn per_m(d: Duration, samples: u64) -> f64 {
    d.as_secs_f64() / (samples.max(1) as f64 / 1e6)
}

/// Decodes every payload three ways on the calling thread and times each pass in thread CPU time.
pub fn measure(shards: &[ShardPayloads]) -> anyhow::Result<ParseBound> {
    let payloads: Vec<_> = shards.iter().flatten().collect();
    let samples: u64 = payloads.iter().map(|p| u64::from(p.samples)).sum();
    let mut dec = snap::raw::Decoder::new();
    let mut buf = Vec::new();

    let t0 = thread_cpu_time();
    let mut bytes = 0usize;
    for p in &payloads {
        buf.resize(snap::raw::decompress_len(&p.body)?, 0);
        bytes += dec.decompress(&p.body, &mut buf)?;
    }
    let snappy = thread_cpu_time() - t0;
    anyhow::ensure!(bytes > 0, "nothing decoded");

    let t0 = thread_cpu_time();
    let mut n = 0u64;
    for p in &payloads {
        buf.resize(snap::raw::decompress_len(&p.body)?, 0);
        let len = dec.decompress(&p.body, &mut buf)?;
        let req = WriteRequest::decode(buf.get(..len).unwrap_or_default())?;
        n += req.timeseries.iter().map(|ts| (ts.samples.len() + ts.histograms.len()) as u64).sum::<u64>();
    }
    let prost = thread_cpu_time() - t0;
    anyhow::ensure!(n == samples, "prost decoded {n} of {samples} samples");

    let t0 = thread_cpu_time();
    let mut n = 0u64;
    for p in &payloads {
        let mut labels = Vec::new();
        buf.resize(snap::raw::decompress_len(&p.body)?, 0);
        let len = dec.decompress(&p.body, &mut buf)?;
        let payload = buf.get(..len).unwrap_or_default();
        let summary = ingest::decode::walk(payload, &mut labels, |l, s| {
            let floats = s.samples().map(|(t, _)| u64::from(t > 0)).sum::<u64>();
            let histograms = s.histograms().map(|h| u64::from(h.t > 0)).sum::<u64>();
            n += (floats + histograms) * u64::from(!l.is_empty());
        })
        .map_err(|e| anyhow::anyhow!("walk: {e}"))?;
        anyhow::ensure!(summary.samples + summary.histograms > 0, "walk found no samples");
    }
    let walk = thread_cpu_time() - t0;
    anyhow::ensure!(n == samples, "walk decoded {n} of {samples} samples");

    Ok(ParseBound {
        samples,
        snappy_cpu_s_per_m: per_m(snappy, samples),
        snappy_prost_cpu_s_per_m: per_m(prost, samples),
        snappy_walk_cpu_s_per_m: per_m(walk, samples),
    })
}
