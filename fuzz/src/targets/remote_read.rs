//! `remote-read`: the remote-read endpoint's request checks ([`query::api::remote_read::plan`]:
//! bounded snappy, the `ReadRequest` protobuf, response-type negotiation, matchers and their
//! external labels) and the streamed answer's framing ([`query::api::remote_read::framing`]).
//!
//! Input: a mode byte, then the bytes. Mode bit 0 clear: the bytes are a `ReadRequest` payload,
//! snappy-compressed before planning (mutations land in the protobuf). Bit 0 set: the bytes are the
//! body itself (mutations land in the snappy block), and they are also read as a stream of frames.
//!
//! Besides never panicking: a planned request never keeps an equality matcher on the external
//! label with the external label's value (it must have become a matcher for the label's absence), and
//! a frame read back has the checksum and message [`framing::write_frame`] writes for that message
//! (its length may take more varint bytes than needed, which Go's reader accepts too), and reads back
//! the same from what `write_frame` writes.

use std::collections::BTreeMap;

use ingest::proto::{label_matcher::Type, LabelMatcher, Query, ReadHints, ReadRequest};
use prost::Message;
use query::api::remote_read::{framing, plan};

use super::Target;

/// Decompressed-size limit of the fuzzed requests.
const MAX_DECOMPRESSED_BYTES: usize = 1 << 20;

pub(crate) struct RemoteRead {
    external: BTreeMap<String, String>,
}

impl RemoteRead {
    pub(crate) fn new() -> RemoteRead {
        RemoteRead { external: [("shard".to_owned(), "a".to_owned())].into() }
    }
}

fn matcher(t: Type, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher { r#type: t as i32, name: name.into(), value: value.into() }
}

fn payload(req: &ReadRequest) -> Vec<u8> {
    let mut out = vec![0u8];
    out.extend(req.encode_to_vec());
    out
}

impl Target for RemoteRead {
    fn name(&self) -> &'static str {
        "remote-read"
    }

    fn corpus(&mut self) -> Vec<Vec<u8>> {
        let q = |ms: Vec<LabelMatcher>, hints: Option<ReadHints>| Query {
            start_timestamp_ms: 1_700_000_000_000,
            end_timestamp_ms: 1_700_003_600_000,
            matchers: ms,
            hints,
        };
        let hints = ReadHints {
            step_ms: 15_000,
            func: "rate".into(),
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_003_600_000,
            grouping: vec!["job".into()],
            by: true,
            range_ms: 300_000,
        };
        let requests = [
            ReadRequest {
                queries: vec![q(vec![matcher(Type::Eq, "__name__", "up")], None)],
                accepted_response_types: vec![],
            },
            ReadRequest {
                queries: vec![
                    q(vec![matcher(Type::Eq, "__name__", "rr"), matcher(Type::Re, "job", "a|b.*")], Some(hints)),
                    q(
                        vec![
                            matcher(Type::Nre, "s", "x+"),
                            matcher(Type::Neq, "shard", "a"),
                            matcher(Type::Eq, "shard", "a"),
                        ],
                        None,
                    ),
                ],
                accepted_response_types: vec![1, 0],
            },
            ReadRequest { queries: vec![], accepted_response_types: vec![7] },
        ];
        let mut out: Vec<Vec<u8>> = requests.iter().map(payload).collect();
        let mut body = vec![1u8];
        body.extend(snap::raw::Encoder::new().compress_vec(&requests[1].encode_to_vec()).unwrap_or_default());
        out.push(body);
        let mut frames = vec![1u8];
        framing::write_frame(&mut frames, b"a chunked read response");
        framing::write_frame(&mut frames, &[]);
        out.push(frames);
        out
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[b"__name__", b"shard", b"a", b".*", b"(", b"\x08\x01", b"\x10\x01"]
    }

    fn run(&mut self, input: &[u8]) -> bool {
        let Some((&mode, bytes)) = input.split_first() else { return false };
        let limits =
            ingest::Limits { max_compressed_bytes: usize::MAX, max_decompressed_bytes: MAX_DECOMPRESSED_BYTES };
        let body = if mode & 1 == 0 {
            match snap::raw::Encoder::new().compress_vec(bytes) {
                Ok(b) => b,
                Err(_) => return false,
            }
        } else {
            let mut rest = bytes;
            while let Ok(Some((message, n))) = framing::read_frame(rest, MAX_DECOMPRESSED_BYTES) {
                let mut again = Vec::new();
                framing::write_frame(&mut again, message);
                // A length may be sent in more varint bytes than needed (Go's reader accepts that too).
                assert_eq!(rest.get(n - message.len() - 4..n), again.get(again.len() - message.len() - 4..));
                assert_eq!(framing::read_frame(&again, MAX_DECOMPRESSED_BYTES), Ok(Some((message, again.len()))));
                rest = rest.get(n..).unwrap_or_default();
            }
            bytes.to_vec()
        };
        match plan(&body, limits, &self.external) {
            Ok(p) => {
                for ms in p.matchers() {
                    assert!(
                        !ms.iter().any(|m| m.kind == tsdb::MatchType::Equal && m.name == "shard" && m.value == "a"),
                        "an equality on the external label kept its value"
                    );
                }
                true
            }
            Err(_) => false,
        }
    }
}
