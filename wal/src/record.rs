//! Fragment framing: how one record becomes typed, checksummed fragments inside 32 KiB pages,
//! and how a fragment is decoded back.
//!
//! Pure functions on byte slices: no I/O, no state beyond what the caller passes in. Decoding
//! never trusts a length read from disk and never panics; every problem is a [`FrameError`].

/// Size of a page. Fragments never cross a page boundary.
pub const PAGE_SIZE_BYTES: usize = 32 * 1024;
/// Size of a fragment header: type (1) + length (2, BE) + CRC32 (4, BE).
pub const HEADER_SIZE_BYTES: usize = 7;
/// Largest payload one fragment can carry.
pub const MAX_FRAGMENT_PAYLOAD_BYTES: usize = PAGE_SIZE_BYTES - HEADER_SIZE_BYTES;

/// Mask of the type byte bits that must be zero (Prometheus uses them for compression flags,
/// which this WAL never sets).
const RESERVED_TYPE_BITS: u8 = 0xF8;

/// Kind of a fragment, the low three bits of its type byte. Values are part of the disk format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FragmentType {
    /// The rest of the page is zero padding.
    Padding = 0,
    /// A whole record in one fragment.
    Full = 1,
    /// The first fragment of a record split across pages.
    First = 2,
    /// A middle fragment of a split record.
    Middle = 3,
    /// The last fragment of a split record.
    Last = 4,
}

impl TryFrom<u8> for FragmentType {
    type Error = FrameError;

    fn try_from(byte: u8) -> Result<Self, FrameError> {
        if byte & RESERVED_TYPE_BITS != 0 {
            return Err(FrameError::UnknownType(byte));
        }
        match byte {
            0 => Ok(FragmentType::Padding),
            1 => Ok(FragmentType::Full),
            2 => Ok(FragmentType::First),
            3 => Ok(FragmentType::Middle),
            4 => Ok(FragmentType::Last),
            other => Err(FrameError::UnknownType(other)),
        }
    }
}

/// Why the bytes at a fragment position are not a valid fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer than [`HEADER_SIZE_BYTES`] bytes remain (page end or end of file).
    TruncatedHeader,
    /// The payload extends past the available bytes (page end or end of file).
    TruncatedPayload {
        /// Declared payload length.
        len: usize,
        /// Bytes available after the header.
        available: usize,
    },
    /// The type byte is not one of [`FragmentType`].
    UnknownType(u8),
    /// The declared length can never fit in a page.
    LengthOverPage(usize),
    /// The payload does not match its checksum.
    CrcMismatch {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the payload.
        computed: u32,
    },
    /// A padding fragment contains non-zero bytes.
    NonZeroPadding,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TruncatedHeader => write!(f, "truncated fragment header"),
            FrameError::TruncatedPayload { len, available } => {
                write!(f, "truncated fragment payload: length {len}, {available} bytes available")
            }
            FrameError::UnknownType(t) => write!(f, "unknown fragment type {t:#04x}"),
            FrameError::LengthOverPage(len) => write!(f, "fragment length {len} exceeds a page"),
            FrameError::CrcMismatch { stored, computed } => {
                write!(f, "crc mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            FrameError::NonZeroPadding => write!(f, "non-zero bytes in page padding"),
        }
    }
}

/// One decoded fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment<'a> {
    /// Zero padding up to the end of the page.
    Padding,
    /// A fragment carrying (part of) a record.
    Data {
        /// Full, First, Middle or Last (never Padding).
        kind: FragmentType,
        /// The checksummed payload bytes.
        payload: &'a [u8],
    },
}

/// Whether a fragment header at `page_pos` would be followed by padding instead: a fragment is
/// only started when at least one payload byte fits after its header (an empty record needs
/// only the header).
fn must_pad(page_pos: usize, remaining_record_len: usize) -> bool {
    let room = PAGE_SIZE_BYTES.saturating_sub(page_pos);
    room < HEADER_SIZE_BYTES || (room == HEADER_SIZE_BYTES && remaining_record_len > 0)
}

/// Bytes needed to append a record of `record_len` bytes when the current page already holds
/// `page_pos` bytes (`page_pos < PAGE_SIZE_BYTES`), including any padding that precedes
/// fragments.
pub fn encoded_len(mut page_pos: usize, record_len: usize) -> usize {
    let mut total = 0;
    let mut rest = record_len;
    loop {
        if must_pad(page_pos, rest) {
            total += PAGE_SIZE_BYTES - page_pos;
            page_pos = 0;
            continue;
        }
        let n = rest.min(PAGE_SIZE_BYTES - page_pos - HEADER_SIZE_BYTES);
        total += HEADER_SIZE_BYTES + n;
        page_pos = (page_pos + HEADER_SIZE_BYTES + n) % PAGE_SIZE_BYTES;
        rest -= n;
        if rest == 0 {
            return total;
        }
    }
}

/// Appends the fragments of `record` to `out`, where the first byte appended lands at position
/// `page_pos` of its page (`page_pos < PAGE_SIZE_BYTES`). Zero padding is written first when
/// the page has no room for a header plus a payload byte. Returns the new page position.
pub fn encode_record(out: &mut Vec<u8>, mut page_pos: usize, record: &[u8]) -> usize {
    let mut rest = record;
    let mut first = true;
    loop {
        if must_pad(page_pos, rest.len()) {
            out.resize(out.len() + (PAGE_SIZE_BYTES - page_pos), 0);
            page_pos = 0;
            continue;
        }
        let n = rest.len().min(PAGE_SIZE_BYTES - page_pos - HEADER_SIZE_BYTES);
        let (chunk, tail) = rest.split_at(n);
        let kind = match (first, tail.is_empty()) {
            (true, true) => FragmentType::Full,
            (true, false) => FragmentType::First,
            (false, false) => FragmentType::Middle,
            (false, true) => FragmentType::Last,
        };
        // n <= MAX_FRAGMENT_PAYLOAD_BYTES < 65536, so the length fits in two bytes.
        let len = u16::try_from(n).unwrap_or(u16::MAX);
        out.push(kind as u8);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(chunk).to_be_bytes());
        out.extend_from_slice(chunk);
        page_pos = (page_pos + HEADER_SIZE_BYTES + n) % PAGE_SIZE_BYTES;
        rest = tail;
        first = false;
        if rest.is_empty() {
            return page_pos;
        }
    }
}

/// Decodes the fragment at the start of `page_rest`: the bytes from the fragment's position to
/// the end of its page, or fewer if the file ends first (a short last page reads as if it were
/// zero padded). Returns the fragment and how many bytes it occupies (for padding: all of
/// `page_rest`).
pub fn decode_fragment(page_rest: &[u8]) -> Result<(Fragment<'_>, usize), FrameError> {
    let Some(&type_byte) = page_rest.first() else {
        return Err(FrameError::TruncatedHeader);
    };
    let kind = FragmentType::try_from(type_byte)?;
    if kind == FragmentType::Padding {
        if page_rest.iter().any(|&b| b != 0) {
            return Err(FrameError::NonZeroPadding);
        }
        return Ok((Fragment::Padding, page_rest.len()));
    }
    let header = page_rest.get(..HEADER_SIZE_BYTES).ok_or(FrameError::TruncatedHeader)?;
    let (len_bytes, crc_bytes) = match header {
        [_, l0, l1, c0, c1, c2, c3] => ([*l0, *l1], [*c0, *c1, *c2, *c3]),
        _ => return Err(FrameError::TruncatedHeader),
    };
    let len = usize::from(u16::from_be_bytes(len_bytes));
    if len > MAX_FRAGMENT_PAYLOAD_BYTES {
        return Err(FrameError::LengthOverPage(len));
    }
    let body = page_rest.get(HEADER_SIZE_BYTES..).unwrap_or(&[]);
    let payload = body.get(..len).ok_or(FrameError::TruncatedPayload { len, available: body.len() })?;
    let stored = u32::from_be_bytes(crc_bytes);
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(FrameError::CrcMismatch { stored, computed });
    }
    Ok((Fragment::Data { kind, payload }, HEADER_SIZE_BYTES + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes a whole buffer written from page position 0 into records.
    fn decode_all(buf: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut out = Vec::new();
        let mut cur: Option<Vec<u8>> = None;
        for page in buf.chunks(PAGE_SIZE_BYTES) {
            let mut pos = 0;
            while pos < page.len() {
                let (frag, used) = decode_fragment(&page[pos..])?;
                pos += used;
                if let Fragment::Data { kind, payload } = frag {
                    match kind {
                        FragmentType::Full => out.push(payload.to_vec()),
                        FragmentType::First => cur = Some(payload.to_vec()),
                        FragmentType::Middle => cur.as_mut().unwrap().extend_from_slice(payload),
                        FragmentType::Last => {
                            let mut r = cur.take().unwrap();
                            r.extend_from_slice(payload);
                            out.push(r);
                        }
                        FragmentType::Padding => unreachable!(),
                    }
                }
            }
        }
        Ok(out)
    }

    fn kinds(buf: &[u8]) -> Vec<(usize, u8, usize)> {
        // (offset, type, len) of each data fragment; padding is skipped.
        let mut v = Vec::new();
        for (p, page) in buf.chunks(PAGE_SIZE_BYTES).enumerate() {
            let mut pos = 0;
            while pos < page.len() {
                let (frag, used) = decode_fragment(&page[pos..]).unwrap();
                if let Fragment::Data { kind, payload } = frag {
                    v.push((p * PAGE_SIZE_BYTES + pos, kind as u8, payload.len()));
                }
                pos += used;
            }
        }
        v
    }

    const P: usize = PAGE_SIZE_BYTES;
    const H: usize = HEADER_SIZE_BYTES;

    #[test]
    fn framing_edges_table() {
        // (name, starting page position, record length, expected fragments (offset, type, len)
        //  relative to the start of the buffer, which begins at page position `start`).
        struct Case {
            name: &'static str,
            start: usize,
            len: usize,
            frags: Vec<(usize, u8, usize)>,
        }
        let cases = vec![
            Case { name: "zero-length record", start: 0, len: 0, frags: vec![(0, 1, 0)] },
            Case { name: "small record", start: 0, len: 10, frags: vec![(0, 1, 10)] },
            Case { name: "record exactly filling a page", start: 0, len: P - H, frags: vec![(0, 1, P - H)] },
            Case { name: "one byte more than a page", start: 0, len: P - H + 1, frags: vec![(0, 2, P - H), (P, 4, 1)] },
            Case { name: "header would cross the page boundary", start: P - 3, len: 5, frags: vec![(3, 1, 5)] },
            Case {
                name: "only a header fits: pad rather than write an empty fragment",
                start: P - H,
                len: 5,
                frags: vec![(H, 1, 5)],
            },
            Case {
                name: "empty record fits exactly in the last header slot",
                start: P - H,
                len: 0,
                frags: vec![(0, 1, 0)],
            },
            Case {
                name: "record larger than several pages",
                start: 100,
                len: 3 * P + 5,
                frags: vec![
                    (0, 2, P - 100 - H),
                    (P - 100, 3, P - H),
                    (2 * P - 100, 3, P - H),
                    (3 * P - 100, 4, 3 * P + 5 - (P - 100 - H) - 2 * (P - H)),
                ],
            },
        ];
        for c in cases {
            let rec: Vec<u8> = (0..c.len).map(|i| (i % 251) as u8 + 1).collect();
            // Prefix the buffer with one Full record ending at `start` so pages line up.
            let mut buf = Vec::new();
            let mut expect_records = Vec::new();
            if c.start > 0 {
                let prefix = vec![0xAB; c.start - H];
                assert_eq!(encode_record(&mut buf, 0, &prefix), c.start);
                expect_records.push(prefix);
            }
            let prefix_pos = c.start;
            let end = encode_record(&mut buf, prefix_pos, &rec);
            let body = &buf[c.start..];
            assert_eq!(body.len(), encoded_len(c.start, c.len), "{}: encoded_len", c.name);
            assert_eq!(end, (c.start + body.len()) % P, "{}: end position", c.name);
            let got: Vec<_> = kinds(&buf)
                .into_iter()
                .filter(|&(o, _, _)| o >= c.start)
                .map(|(o, t, l)| (o - c.start, t, l))
                .collect();
            assert_eq!(got, c.frags, "{}", c.name);
            expect_records.push(rec);
            assert_eq!(decode_all(&buf).unwrap(), expect_records, "{}: round trip", c.name);
        }
    }

    #[test]
    fn decode_rejects_bad_fragments() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 0, b"hello");
        assert!(decode_fragment(&buf).is_ok());

        assert_eq!(decode_fragment(&[]), Err(FrameError::TruncatedHeader));
        assert_eq!(decode_fragment(&buf[..4]), Err(FrameError::TruncatedHeader));
        assert!(matches!(decode_fragment(&buf[..9]), Err(FrameError::TruncatedPayload { .. })));

        let mut bad = buf.clone();
        bad[0] = 0x09; // snappy flag: reserved here
        assert_eq!(decode_fragment(&bad), Err(FrameError::UnknownType(0x09)));
        bad[0] = 5;
        assert_eq!(decode_fragment(&bad), Err(FrameError::UnknownType(5)));

        let mut bad = buf.clone();
        bad[H] ^= 1;
        assert!(matches!(decode_fragment(&bad), Err(FrameError::CrcMismatch { .. })));

        let mut bad = buf.clone();
        bad[1] = 0xFF;
        bad[2] = 0xFF;
        assert_eq!(decode_fragment(&bad), Err(FrameError::LengthOverPage(0xFFFF)));

        assert_eq!(decode_fragment(&[0, 0, 0]), Ok((Fragment::Padding, 3)));
        assert_eq!(decode_fragment(&[0, 0, 1]), Err(FrameError::NonZeroPadding));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn encode_decode_round_trip(
            recs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..70_000), 0..6)
        ) {
            let mut buf = Vec::new();
            let mut pos = 0;
            for r in &recs {
                let before = buf.len();
                let expect = encoded_len(pos, r.len());
                pos = encode_record(&mut buf, pos, r);
                prop_assert_eq!(buf.len() - before, expect);
                prop_assert_eq!(pos, buf.len() % P);
            }
            prop_assert_eq!(decode_all(&buf).unwrap(), recs);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_fragment(&bytes);
        }
    }
}
