//! The exemplars of a walked series, read into owned [`tsdb::exemplars::Exemplar`]s.
//!
//! Only for series that carry exemplars and only when exemplar storage is on: exemplars are few
//! next to samples, so they are copied out (labels as `String`s, invalid UTF-8 replaced) rather than
//! borrowed. The walk has already checked the series' bytes, so reading cannot fail; should it meet
//! bad bytes anyway, it stops.
#![deny(clippy::indexing_slicing)]

use tsdb::exemplars::Exemplar;

use super::{Reader, SeriesView, WT_FIXED64, WT_LEN, WT_VARINT};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl SeriesView<'_> {
    /// The exemplars of a 1.0 `TimeSeries` (field 3: labels as `Label` messages).
    pub fn exemplars_v1(&self) -> Vec<Exemplar> {
        let mut out = Vec::new();
        each_field(self.whole, 3, self.depth, |msg| {
            let mut e = Exemplar { labels: Vec::new(), value: 0.0, t: 0 };
            read_exemplar(msg, self.depth, &mut e, |label, e| {
                let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
                each_string(label, self.depth, |field, b| match field {
                    1 => name = b,
                    2 => value = b,
                    _ => {}
                });
                e.labels.push((text(name), text(value)));
            });
            out.push(e);
        });
        out
    }

    /// The exemplars of a 2.0 `TimeSeries` (field 4: labels as symbol references; references out
    /// of range read as `""`, the walk has flagged the series).
    pub fn exemplars_v2(&self, symbols: &[&[u8]]) -> Vec<Exemplar> {
        let sym = |r: u64| usize::try_from(r as u32).ok().and_then(|i| symbols.get(i)).copied().unwrap_or_default();
        let mut out = Vec::new();
        each_field(self.whole, 4, self.depth, |msg| {
            let mut e = Exemplar { labels: Vec::new(), value: 0.0, t: 0 };
            let mut refs = Vec::new();
            let mut r = msg;
            while r.has_more() {
                let Ok((field, wt)) = r.key() else { break };
                let ok = match (field, wt) {
                    (1, WT_LEN) => r.len_delimited().map(|mut packed| {
                        while packed.has_more() {
                            match packed.varint() {
                                Ok(v) => refs.push(v),
                                Err(_) => break,
                            }
                        }
                    }),
                    (1, WT_VARINT) => r.varint().map(|v| refs.push(v)),
                    (2, WT_FIXED64) => r.fixed64().map(|v| e.value = f64::from_bits(v)),
                    (3, WT_VARINT) => r.varint().map(|v| e.t = v as i64),
                    _ => r.skip(wt, field, self.depth),
                };
                if ok.is_err() {
                    break;
                }
            }
            for pair in refs.chunks_exact(2) {
                if let [n, v] = pair {
                    e.labels.push((text(sym(*n)), text(sym(*v))));
                }
            }
            out.push(e);
        });
        out
    }
}

/// Calls `each` with every occurrence of length-delimited `field` of a message.
fn each_field<'a>(mut r: Reader<'a>, field: u32, depth: u32, mut each: impl FnMut(Reader<'a>)) {
    while r.has_more() {
        let Ok((f, wt)) = r.key() else { return };
        if f == field && wt == WT_LEN {
            match r.len_delimited() {
                Ok(sub) => each(sub),
                Err(_) => return,
            }
        } else if r.skip(wt, f, depth).is_err() {
            return;
        }
    }
}

/// Reads a 1.0 `Exemplar`'s value (2) and timestamp (3) into `e`, handing each label (1) to `label`.
fn read_exemplar<'a>(
    mut r: Reader<'a>,
    depth: u32,
    e: &mut Exemplar,
    mut label: impl FnMut(Reader<'a>, &mut Exemplar),
) {
    while r.has_more() {
        let Ok((field, wt)) = r.key() else { return };
        let ok = match (field, wt) {
            (1, WT_LEN) => r.len_delimited().map(|sub| label(sub, e)),
            (2, WT_FIXED64) => r.fixed64().map(|v| e.value = f64::from_bits(v)),
            (3, WT_VARINT) => r.varint().map(|v| e.t = v as i64),
            _ => r.skip(wt, field, depth),
        };
        if ok.is_err() {
            return;
        }
    }
}

/// Calls `each(field, bytes)` for every length-delimited field of a message.
fn each_string<'a>(mut r: Reader<'a>, depth: u32, mut each: impl FnMut(u32, &'a [u8])) {
    while r.has_more() {
        let Ok((field, wt)) = r.key() else { return };
        let ok =
            if wt == WT_LEN { r.len_delimited().map(|sub| each(field, sub.bytes())) } else { r.skip(wt, field, depth) };
        if ok.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use crate::{proto, proto_v2};

    #[test]
    fn reads_exemplars_of_both_protocols() {
        let v1 = proto::WriteRequest {
            timeseries: vec![proto::TimeSeries {
                labels: vec![proto::Label { name: "__name__".into(), value: "x".into() }],
                samples: vec![proto::Sample { value: 1.0, timestamp: 5 }],
                exemplars: vec![
                    proto::Exemplar {
                        labels: vec![proto::Label { name: "trace_id".into(), value: "abc".into() }],
                        value: 0.5,
                        timestamp: 5,
                    },
                    proto::Exemplar { labels: vec![], value: 2.0, timestamp: 7 },
                ],
                histograms: vec![],
            }],
            metadata: vec![],
        };
        let want = [
            tsdb::exemplars::Exemplar { labels: vec![("trace_id".into(), "abc".into())], value: 0.5, t: 5 },
            tsdb::exemplars::Exemplar { labels: vec![], value: 2.0, t: 7 },
        ];
        let payload = v1.encode_to_vec();
        let mut labels = Vec::new();
        let mut got = Vec::new();
        super::super::walk(&payload, &mut labels, |_, s| got.extend(s.exemplars_v1())).unwrap();
        assert_eq!(got, want);

        let v2 = proto_v2::Request::from_v1(&v1).encode_to_vec();
        let (mut symbols, mut labels) = (Vec::new(), Vec::new());
        let mut got = Vec::new();
        super::super::v2::walk(&v2, &mut symbols, &mut labels, |_, s, syms| got.extend(s.view.exemplars_v2(syms)))
            .unwrap();
        assert_eq!(got, want);
    }
}
