//! The metric metadata of a remote-write 1.0 `WriteRequest` (`metadata`, field 3), read in place.
//!
//! A second pass over the payload's top level, made only for requests that carry metadata (1.0
//! senders send it in requests of its own): series are skipped by their length. The main walk
//! ([`super::walk`]) has already checked the payload, so this pass only reads.
#![deny(clippy::indexing_slicing)]

use super::{ProtoError, Reader, RECURSION_LIMIT, WT_LEN, WT_VARINT};

/// One `MetricMetadata`, borrowed from the payload (bytes not checked for UTF-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricMetadataView<'a> {
    /// `type` (0 = unknown).
    pub kind: u64,
    /// `metric_family_name`.
    pub family: &'a [u8],
    /// `help`.
    pub help: &'a [u8],
    /// `unit`.
    pub unit: &'a [u8],
}

/// Calls `each` for every `MetricMetadata` of a 1.0 payload, in wire order.
pub fn walk_v1<'a>(payload: &'a [u8], mut each: impl FnMut(MetricMetadataView<'a>)) -> Result<(), ProtoError> {
    let mut r = Reader::new(payload);
    while r.has_more() {
        let at = r.pos;
        let (field, wt) = r.key()?;
        if field == 3 {
            r.expect_wt(at, "WriteRequest", field, wt, WT_LEN)?;
            let msg = r.len_delimited()?;
            each(parse(msg)?);
        } else {
            r.skip(wt, field, RECURSION_LIMIT)?;
        }
    }
    Ok(())
}

fn parse(mut r: Reader<'_>) -> Result<MetricMetadataView<'_>, ProtoError> {
    let mut m = MetricMetadataView { kind: 0, family: b"", help: b"", unit: b"" };
    while r.has_more() {
        let at = r.pos;
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect_wt(at, "MetricMetadata", field, wt, WT_VARINT)?;
                m.kind = u64::from(r.varint()? as u32);
            }
            2 | 4 | 5 => {
                r.expect_wt(at, "MetricMetadata", field, wt, WT_LEN)?;
                let b = r.len_delimited()?.bytes();
                match field {
                    2 => m.family = b,
                    4 => m.help = b,
                    _ => m.unit = b,
                }
            }
            _ => r.skip(wt, field, RECURSION_LIMIT - 1)?,
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto;

    #[test]
    fn reads_metadata_like_prost() {
        let req = proto::WriteRequest {
            timeseries: vec![proto::TimeSeries {
                labels: vec![proto::Label { name: "__name__".into(), value: "x".into() }],
                ..Default::default()
            }],
            metadata: vec![
                proto::MetricMetadata {
                    r#type: proto::MetricType::Counter as i32,
                    metric_family_name: "http_requests_total".into(),
                    help: "Requests.".into(),
                    unit: String::new(),
                },
                proto::MetricMetadata {
                    r#type: proto::MetricType::Gauge as i32,
                    metric_family_name: "temp".into(),
                    help: String::new(),
                    unit: "celsius".into(),
                },
            ],
        };
        let payload = req.encode_to_vec();
        let mut got = Vec::new();
        walk_v1(&payload, |m| got.push(m)).unwrap();
        let want: Vec<_> = req
            .metadata
            .iter()
            .map(|m| MetricMetadataView {
                kind: m.r#type as u64,
                family: m.metric_family_name.as_bytes(),
                help: m.help.as_bytes(),
                unit: m.unit.as_bytes(),
            })
            .collect();
        assert_eq!(got, want);
    }
}
