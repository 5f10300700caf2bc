//! The tsdb's own WAL payloads: the only code that gives WAL bytes meaning.
//!
//! ```text
//! series record:  0x01 | (uvarint ref | uvarint n | n × (uvarint len | name | uvarint len | value))…
//! samples record: 0x02 | (uvarint ref | varint t | 8-byte LE f64 bits)…
//! ```
//! Several series and samples share one record, so one remote-write request is one WAL batch.
//! Decoding never trusts a length: every read is bounds-checked and failures are typed.

use crate::labels::Labels;

/// Record type tags (first byte of a record). Pinned: these are on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// New series: ref and labels.
    Series = 1,
    /// Float samples.
    Samples = 2,
}

impl TryFrom<u8> for RecordType {
    type Error = DecodeError;
    fn try_from(b: u8) -> Result<Self, DecodeError> {
        match b {
            1 => Ok(RecordType::Series),
            2 => Ok(RecordType::Samples),
            other => Err(DecodeError::UnknownType(other)),
        }
    }
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record is empty.
    #[error("empty record")]
    Empty,
    /// The first byte is not a known record type.
    #[error("unknown record type {0}")]
    UnknownType(u8),
    /// The record ends in the middle of an entry.
    #[error("record truncated at byte {0}")]
    Truncated(usize),
    /// A label name or value is not UTF-8.
    #[error("label bytes are not UTF-8 at byte {0}")]
    NotUtf8(usize),
}

/// One sample as stored in the WAL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefSample {
    /// Series reference.
    pub sref: u64,
    /// Timestamp, ms.
    pub t: i64,
    /// Value.
    pub v: f64,
}

/// Appends a series entry to a series record buffer (which must start with [`RecordType::Series`]).
pub fn encode_series(buf: &mut Vec<u8>, sref: u64, labels: &Labels) {
    if buf.is_empty() {
        buf.push(RecordType::Series as u8);
    }
    put_uvarint(buf, sref);
    put_uvarint(buf, labels.len() as u64);
    for (n, v) in labels.iter() {
        put_uvarint(buf, n.len() as u64);
        buf.extend_from_slice(n.as_bytes());
        put_uvarint(buf, v.len() as u64);
        buf.extend_from_slice(v.as_bytes());
    }
}

/// Appends a sample entry to a samples record buffer.
pub fn encode_sample(buf: &mut Vec<u8>, s: RefSample) {
    if buf.is_empty() {
        buf.push(RecordType::Samples as u8);
    }
    put_uvarint(buf, s.sref);
    put_varint(buf, s.t);
    buf.extend_from_slice(&s.v.to_bits().to_le_bytes());
}

/// A decoded record.
#[derive(Debug)]
pub enum Record {
    /// Series entries.
    Series(Vec<(u64, Labels)>),
    /// Sample entries.
    Samples(Vec<RefSample>),
}

/// Decodes one record. Labels are rebuilt without re-validation beyond UTF-8 and sort order repair.
pub fn decode(rec: &[u8], samples_out: &mut Vec<RefSample>) -> Result<Option<Vec<(u64, Labels)>>, DecodeError> {
    let (&tag, mut rest) = rec.split_first().ok_or(DecodeError::Empty)?;
    let start_len = rec.len();
    let pos = |rest: &[u8]| start_len - rest.len();
    match RecordType::try_from(tag)? {
        RecordType::Samples => {
            while !rest.is_empty() {
                let sref = get_uvarint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                let t = get_varint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                let bits = rest.get(..8).ok_or(DecodeError::Truncated(pos(rest)))?;
                let mut b = [0u8; 8];
                b.copy_from_slice(bits);
                rest = rest.get(8..).unwrap_or_default();
                samples_out.push(RefSample { sref, t, v: f64::from_bits(u64::from_le_bytes(b)) });
            }
            Ok(None)
        }
        RecordType::Series => {
            let mut out = Vec::new();
            let mut pairs: Vec<(&str, &str)> = Vec::new();
            while !rest.is_empty() {
                let sref = get_uvarint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                let n = get_uvarint(&mut rest).ok_or(DecodeError::Truncated(pos(rest)))?;
                pairs.clear();
                for _ in 0..n {
                    let name = get_str(&mut rest, start_len)?;
                    let value = get_str(&mut rest, start_len)?;
                    pairs.push((name, value));
                }
                pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
                pairs.dedup_by(|a, b| a.0 == b.0);
                pairs.retain(|p| !p.1.is_empty());
                out.push((sref, Labels::from_sorted_unchecked(&pairs)));
            }
            Ok(Some(out))
        }
    }
}

fn get_str<'a>(rest: &mut &'a [u8], start_len: usize) -> Result<&'a str, DecodeError> {
    let at = start_len - rest.len();
    let len = get_uvarint(rest).ok_or(DecodeError::Truncated(at))?;
    let len = usize::try_from(len).map_err(|_| DecodeError::Truncated(at))?;
    let bytes = rest.get(..len).ok_or(DecodeError::Truncated(at))?;
    *rest = rest.get(len..).unwrap_or_default();
    std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8(at))
}

fn put_uvarint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_varint(buf: &mut Vec<u8>, v: i64) {
    put_uvarint(buf, ((v << 1) ^ (v >> 63)) as u64);
}

fn get_uvarint(rest: &mut &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let b = *rest.get(i)?;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *rest = rest.get(i + 1..)?;
            return Some(v);
        }
    }
    None
}

fn get_varint(rest: &mut &[u8]) -> Option<i64> {
    let u = get_uvarint(rest)?;
    Some(((u >> 1) as i64) ^ -((u & 1) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let l = Labels::from_pairs(&[("__name__", "up"), ("job", "x")]).unwrap();
        let mut buf = Vec::new();
        encode_series(&mut buf, 7, &l);
        let mut samples = Vec::new();
        let series = decode(&buf, &mut samples).unwrap().unwrap();
        assert_eq!(series, vec![(7, l)]);
        let mut buf = Vec::new();
        encode_sample(&mut buf, RefSample { sref: 7, t: -5, v: f64::NAN });
        encode_sample(&mut buf, RefSample { sref: 9, t: i64::MAX, v: 1.5 });
        assert!(decode(&buf, &mut samples).unwrap().is_none());
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].t, -5);
        assert!(samples[0].v.is_nan());
        assert_eq!(samples[1], RefSample { sref: 9, t: i64::MAX, v: 1.5 });
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut samples = Vec::new();
            let _ = decode(&bytes, &mut samples);
        }
    }
}
