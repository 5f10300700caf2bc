//! The borrowing walk of a remote-write 2.0 `io.prometheus.write.v2.Request`.
//!
//! Two passes over the payload's top level: the first collects the symbol table (`Request.symbols`,
//! field 4, borrowed byte slices in a caller-reused `Vec`) wherever it sits, the second walks the
//! series (field 5) one by one, resolving each series' label references into borrowed
//! `(name, value)` pairs, exactly like the 1.0 walk hands them out, so the same appender path
//! validates, sorts and stores them. Nothing is allocated per series or sample.
//!
//! Accepts every byte string prost accepts for [`crate::proto_v2::Request`] and yields the same
//! series and samples (property-tested), with the 1.0 walk's leniencies: symbols are not checked
//! for UTF-8 here (a series whose labels are not UTF-8 is rejected on its own by the storage), and
//! histograms are only length-checked. Problems confined to one series (an odd number of label
//! references, a reference past the symbol table) do not fail the walk: the series is handed out
//! with [`SeriesV2::invalid`] set, to be rejected on its own while the rest is stored.
#![deny(clippy::indexing_slicing)]

use std::fmt;

use super::{ProtoError, ProtoErrorKind, Reader, SeriesView, WalkSummary, RECURSION_LIMIT};
use super::{WT_FIXED64, WT_LEN, WT_VARINT};

/// The `proto` parameter of `Content-Type` that names remote-write 2.0's message.
pub const PROTO_REQUEST_V2: &str = "io.prometheus.write.v2.Request";

/// Why a 2.0 payload as a whole is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not a valid protobuf encoding of the message.
    #[error("{0}")]
    Proto(#[from] ProtoError),
    /// `symbols[0]` is not the empty string (the spec requires it: unset references point to it).
    #[error("symbols[0] must be the empty string, got {found:?}")]
    FirstSymbolNotEmpty {
        /// The first symbol, lossily decoded and clipped.
        found: String,
    },
}

/// What makes one series unusable (its samples are rejected; the rest of the request is not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidSeries {
    /// `labels_refs` has an odd number of entries.
    OddLabelRefs {
        /// How many there are.
        count: u64,
    },
    /// A reference past the end of the symbol table.
    RefOutOfRange {
        /// Which field holds it.
        field: RefField,
        /// The reference.
        reference: u32,
        /// Size of the symbol table.
        symbols: usize,
    },
}

/// The fields that hold symbol references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefField {
    /// `TimeSeries.labels_refs`.
    Labels,
    /// `Metadata.help_ref`.
    Help,
    /// `Metadata.unit_ref`.
    Unit,
    /// `Exemplar.labels_refs`.
    ExemplarLabels,
}

impl fmt::Display for InvalidSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidSeries::OddLabelRefs { count } => {
                write!(f, "labels_refs holds an odd number of references ({count}); they must be name/value pairs")
            }
            InvalidSeries::RefOutOfRange { field, reference, symbols } => {
                let field = match field {
                    RefField::Labels => "labels_refs",
                    RefField::Help => "metadata.help_ref",
                    RefField::Unit => "metadata.unit_ref",
                    RefField::ExemplarLabels => "exemplar labels_refs",
                };
                write!(f, "{field} references symbol {reference}, but the request has {symbols} symbols")
            }
        }
    }
}

/// A series' metadata, resolved from the symbol table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataView<'a> {
    /// `Metadata.type` (0 = unspecified).
    pub kind: u64,
    /// Help text.
    pub help: &'a [u8],
    /// Unit.
    pub unit: &'a [u8],
}

/// One 2.0 `TimeSeries`, borrowed from the payload. Its labels are passed beside it.
#[derive(Clone, Copy)]
pub struct SeriesV2<'a> {
    /// Samples, histogram and exemplar counts, as for a 1.0 series.
    pub view: SeriesView<'a>,
    /// Created timestamp (ms; 0 = unset): `TimeSeries.created_timestamp` (field 6), else the first
    /// sample's `start_timestamp`.
    pub created_t: i64,
    /// The series' metadata; `None` if absent or entirely unset (type 0, empty help and unit).
    pub metadata: Option<MetadataView<'a>>,
    /// Set if the series cannot be used; its labels may then be incomplete.
    pub invalid: Option<InvalidSeries>,
}

/// Collects the symbol table of a 2.0 payload into `symbols` (cleared first) and checks that the
/// top level is well-formed. Series are not looked into.
pub fn symbols<'a>(payload: &'a [u8], symbols: &mut Vec<&'a [u8]>) -> Result<(), RequestError> {
    symbols.clear();
    let mut r = Reader::new(payload);
    while r.has_more() {
        let at = r.pos;
        let (field, wt) = r.key()?;
        match field {
            4 => {
                r.expect_wt(at, "Request", field, wt, WT_LEN)?;
                symbols.push(r.len_delimited()?.bytes());
            }
            5 => {
                r.expect_wt(at, "Request", field, wt, WT_LEN)?;
                r.len_delimited()?;
            }
            _ => r.skip(wt, field, RECURSION_LIMIT)?,
        }
    }
    match symbols.first() {
        Some(first) if !first.is_empty() => Err(RequestError::FirstSymbolNotEmpty {
            found: tsdb::labels::clip(&String::from_utf8_lossy(first)).into_owned(),
        }),
        _ => Ok(()),
    }
}

/// Walks a 2.0 `Request`, calling `on_series(labels, series, symbols)` for every `TimeSeries` once it
/// has been checked, with `labels` cleared and refilled from the symbol table (the callback may
/// reorder it).
/// `symbols` is a caller-reused buffer for the table.
///
/// On `Err` the payload is malformed and the callback may already have seen earlier series: the
/// caller must discard what it did with them (roll back).
pub fn walk<'a, F>(
    payload: &'a [u8],
    symbols: &mut Vec<&'a [u8]>,
    labels: &mut Vec<(&'a [u8], &'a [u8])>,
    mut on_series: F,
) -> Result<WalkSummary, RequestError>
where
    F: FnMut(&mut Vec<(&'a [u8], &'a [u8])>, &SeriesV2<'a>, &[&'a [u8]]),
{
    self::symbols(payload, symbols)?;
    let mut r = Reader::new(payload);
    let mut summary = WalkSummary::default();
    let depth = RECURSION_LIMIT;
    while r.has_more() {
        let at = r.pos;
        let (field, wt) = r.key()?;
        if field == 5 {
            // Checked by `symbols`.
            let msg = r.len_delimited()?;
            let inner = r.enter(at, depth)?;
            let series = parse_series(msg, inner, symbols, labels)?;
            summary.series += 1;
            summary.samples += series.view.num_samples;
            summary.histograms += series.view.num_histograms;
            summary.exemplars += series.view.num_exemplars;
            summary.metadata += u64::from(series.metadata.is_some());
            on_series(labels, &series, symbols);
        } else {
            r.skip(wt, field, depth)?;
        }
    }
    Ok(summary)
}

/// Resolves references against the table, remembering the first one out of range.
struct Resolver<'s, 'a> {
    symbols: &'s [&'a [u8]],
    invalid: Option<InvalidSeries>,
}

impl<'a> Resolver<'_, 'a> {
    fn get(&mut self, field: RefField, reference: u32) -> &'a [u8] {
        match usize::try_from(reference).ok().and_then(|i| self.symbols.get(i)) {
            Some(s) => s,
            None => {
                self.invalid.get_or_insert(InvalidSeries::RefOutOfRange {
                    field,
                    reference,
                    symbols: self.symbols.len(),
                });
                b""
            }
        }
    }
}

/// Calls `each` for every reference of a repeated `uint32` field occurrence, packed or not. Values
/// are truncated to 32 bits, as prost does.
fn refs(
    r: &mut Reader<'_>,
    at: usize,
    message: &'static str,
    field: u32,
    wt: u8,
    mut each: impl FnMut(u32),
) -> Result<(), ProtoError> {
    match wt {
        WT_LEN => {
            let mut packed = r.len_delimited()?;
            while packed.has_more() {
                each(packed.varint()? as u32);
            }
            Ok(())
        }
        WT_VARINT => {
            each(r.varint()? as u32);
            Ok(())
        }
        found => Err(r.err(at, ProtoErrorKind::WrongWireType { message, field, found })),
    }
}

fn parse_series<'a>(
    msg: Reader<'a>,
    depth: u32,
    symbols: &[&'a [u8]],
    labels: &mut Vec<(&'a [u8], &'a [u8])>,
) -> Result<SeriesV2<'a>, ProtoError> {
    labels.clear();
    let mut view = SeriesView::new(msg, depth, super::histogram::Version::V2);
    let mut res = Resolver { symbols, invalid: None };
    let mut n_refs = 0u64;
    let mut pending_name: &[u8] = b"";
    let mut created_t = 0i64;
    let mut first_start_t = 0i64;
    let mut meta: Option<(u64, u32, u32)> = None;
    let mut r = msg;
    while r.has_more() {
        let at = r.pos;
        let (field, wt) = r.key()?;
        match field {
            1 => refs(&mut r, at, "TimeSeries", field, wt, |reference| {
                let s = res.get(RefField::Labels, reference);
                if n_refs.is_multiple_of(2) {
                    pending_name = s;
                } else {
                    labels.push((pending_name, s));
                }
                n_refs += 1;
            })?,
            2 => {
                r.expect_wt(at, "TimeSeries", field, wt, WT_LEN)?;
                let sub = r.len_delimited()?;
                let inner = r.enter(at, depth)?;
                let start_t = parse_sample(sub, inner)?;
                if view.num_samples == 0 {
                    view.msg.pos = at;
                    first_start_t = start_t;
                }
                view.num_samples += 1;
            }
            3 => {
                r.expect_wt(at, "TimeSeries", field, wt, WT_LEN)?;
                let sub = r.len_delimited()?;
                let inner = r.enter(at, depth)?;
                view.add_histogram(at, sub, inner)?;
            }
            4 => {
                r.expect_wt(at, "TimeSeries", field, wt, WT_LEN)?;
                let sub = r.len_delimited()?;
                let inner = r.enter(at, depth)?;
                parse_exemplar(sub, inner, &mut res)?;
                view.num_exemplars += 1;
            }
            5 => {
                r.expect_wt(at, "TimeSeries", field, wt, WT_LEN)?;
                let sub = r.len_delimited()?;
                let inner = r.enter(at, depth)?;
                // Occurrences of a message field merge, as prost merges them.
                meta = Some(parse_metadata(sub, inner, meta.unwrap_or_default())?);
            }
            6 => {
                r.expect_wt(at, "TimeSeries", field, wt, WT_VARINT)?;
                created_t = r.varint()? as i64;
            }
            _ => r.skip(wt, field, depth)?,
        }
    }
    let metadata = match meta {
        Some((kind, help_ref, unit_ref)) if kind != 0 || help_ref != 0 || unit_ref != 0 => Some(MetadataView {
            kind,
            help: res.get(RefField::Help, help_ref),
            unit: res.get(RefField::Unit, unit_ref),
        }),
        _ => None,
    };
    let mut invalid = res.invalid;
    if !n_refs.is_multiple_of(2) && invalid.is_none() {
        invalid = Some(InvalidSeries::OddLabelRefs { count: n_refs });
    }
    let created_t = if created_t != 0 { created_t } else { first_start_t };
    Ok(SeriesV2 { view, created_t, metadata, invalid })
}

/// Checks a `Sample` (as prost would) and returns its `start_timestamp`.
fn parse_sample(mut r: Reader<'_>, depth: u32) -> Result<i64, ProtoError> {
    let mut start_t = 0i64;
    while r.has_more() {
        let at = r.pos;
        let (field, wt) = r.key()?;
        match field {
            1 => {
                r.expect_wt(at, "Sample", field, wt, WT_FIXED64)?;
                r.fixed64()?;
            }
            2 | 3 => {
                r.expect_wt(at, "Sample", field, wt, WT_VARINT)?;
                let v = r.varint()? as i64;
                if field == 3 {
                    start_t = v;
                }
            }
            _ => r.skip(wt, field, depth)?,
        }
    }
    Ok(start_t)
}

/// Checks an `Exemplar` and the range of its label references.
fn parse_exemplar(mut r: Reader<'_>, depth: u32, res: &mut Resolver<'_, '_>) -> Result<(), ProtoError> {
    while r.has_more() {
        let at = r.pos;
        let (field, wt) = r.key()?;
        match field {
            1 => refs(&mut r, at, "Exemplar", field, wt, |reference| {
                res.get(RefField::ExemplarLabels, reference);
            })?,
            2 => {
                r.expect_wt(at, "Exemplar", field, wt, WT_FIXED64)?;
                r.fixed64()?;
            }
            3 => {
                r.expect_wt(at, "Exemplar", field, wt, WT_VARINT)?;
                r.varint()?;
            }
            _ => r.skip(wt, field, depth)?,
        }
    }
    Ok(())
}

/// Reads a `Metadata` over `acc` (type, help_ref, unit_ref): the last occurrence of a field wins.
fn parse_metadata(mut r: Reader<'_>, depth: u32, acc: (u64, u32, u32)) -> Result<(u64, u32, u32), ProtoError> {
    let (mut kind, mut help, mut unit) = acc;
    while r.has_more() {
        let at = r.pos;
        let (field, wt) = r.key()?;
        match field {
            1 | 3 | 4 => {
                r.expect_wt(at, "Metadata", field, wt, WT_VARINT)?;
                let v = r.varint()?;
                match field {
                    // An enum is an int32 on the wire: prost keeps the low 32 bits.
                    1 => kind = u64::from(v as u32),
                    3 => help = v as u32,
                    _ => unit = v as u32,
                }
            }
            _ => r.skip(wt, field, depth)?,
        }
    }
    Ok((kind, help, unit))
}

#[cfg(test)]
mod tests;
