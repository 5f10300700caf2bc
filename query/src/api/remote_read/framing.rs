//! The framing of a streamed remote-read answer (`STREAMED_XOR_CHUNKS`), as Prometheus writes and
//! reads it: each message is preceded by its length as an unsigned varint and by the CRC-32
//! (Castagnoli) of its bytes as a big-endian `u32`.
//!
//! ```text
//! ┌────────────────────┬──────────────────────┬────────────────────┐
//! │ len: uvarint (1-10)│ crc32c(msg): u32 BE  │ msg: len bytes     │
//! └────────────────────┴──────────────────────┴────────────────────┘
//! ```
//!
//! [`write_frame`] is what the server sends; [`read_frame`] is the client's side, used by tests and by
//! anyone reading Strata's stream from Rust. It never panics on damaged input.

/// Most bytes an unsigned varint of a `u64` takes.
pub const MAX_UVARINT_BYTES: usize = 10;

/// Bytes of the checksum after the length.
const CRC_BYTES: usize = 4;

/// Appends `v` as an unsigned varint (7 bits per byte, low bits first, high bit = more follow).
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned varint from the start of `buf`: the value and the bytes it took. `Ok(None)` if
/// `buf` ends inside it.
pub fn uvarint(buf: &[u8]) -> Result<Option<(u64, usize)>, FrameError> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate() {
        if i == MAX_UVARINT_BYTES - 1 && b > 1 {
            return Err(FrameError::VarintOverflow);
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(Some((v, i + 1)));
        }
        if i + 1 == MAX_UVARINT_BYTES {
            return Err(FrameError::VarintOverflow);
        }
    }
    Ok(None)
}

/// Appends one frame holding `message` to `out`.
pub fn write_frame(out: &mut Vec<u8>, message: &[u8]) {
    put_uvarint(out, message.len() as u64);
    out.extend_from_slice(&crc32c::crc32c(message).to_be_bytes());
    out.extend_from_slice(message);
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is longer than 10 bytes or overflows 64 bits.
    #[error("frame length is not a valid uvarint")]
    VarintOverflow,
    /// The declared message length is over the reader's limit.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Declared length.
        len: u64,
        /// The reader's limit.
        limit: usize,
    },
    /// The message's checksum does not match the one in the frame.
    #[error("corrupted frame: checksum {found:#010x} where the frame says {expected:#010x}")]
    Checksum {
        /// The checksum in the frame.
        expected: u32,
        /// The checksum of the bytes read.
        found: u32,
    },
}

/// Reads the frame at the start of `buf`: the message and the bytes the whole frame took, `Ok(None)` if
/// `buf` ends before the frame does (more bytes are needed). A message longer than `max_message_bytes`
/// is an error before its bytes are looked at.
pub fn read_frame(buf: &[u8], max_message_bytes: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    let Some((len, n)) = uvarint(buf)? else { return Ok(None) };
    let len_usize = usize::try_from(len).ok().filter(|&l| l <= max_message_bytes);
    let Some(len) = len_usize else { return Err(FrameError::TooLarge { len, limit: max_message_bytes }) };
    let Some(crc) = buf.get(n..n + CRC_BYTES) else { return Ok(None) };
    let expected = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let start = n + CRC_BYTES;
    let Some(message) = buf.get(start..start + len) else { return Ok(None) };
    let found = crc32c::crc32c(message);
    if found != expected {
        return Err(FrameError::Checksum { expected, found });
    }
    Ok(Some((message, start + len)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn uvarint_edges() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (u64::MAX, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        ];
        for &(v, bytes) in cases {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(uvarint(bytes), Ok(Some((v, bytes.len()))), "{v}");
            assert_eq!(uvarint(&bytes[..bytes.len() - 1]), Ok(None), "{v} truncated");
        }
        // An 11th byte, or a 10th byte over 1, overflows 64 bits (as Go's binary.ReadUvarint says).
        assert_eq!(uvarint(&[0xff; 10]), Err(FrameError::VarintOverflow));
        assert_eq!(
            uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(FrameError::VarintOverflow)
        );
    }

    #[test]
    fn frame_layout_matches_prometheus() {
        let mut out = Vec::new();
        write_frame(&mut out, b"abc");
        // Length 3, then the CRC-32C of "abc" big-endian, then the message.
        assert_eq!(out, [&[3u8][..], &0x364b_3fb7u32.to_be_bytes(), b"abc"].concat());
        // The standard CRC-32C check value.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        write_frame(&mut out, b"hello frames");
        for i in 0..out.len() {
            for bit in 0..8 {
                let mut d = out.clone();
                d[i] ^= 1 << bit;
                // A flipped bit changes the length, the checksum or the message: never the same message
                // read back with a matching checksum.
                if let Ok(Some((m, _))) = read_frame(&d, 1 << 20) {
                    assert_ne!(m, b"hello frames", "byte {i} bit {bit}");
                }
            }
        }
        for cut in 0..out.len() {
            assert_eq!(read_frame(&out[..cut], 1 << 20), Ok(None), "cut at {cut}");
        }
        assert_eq!(read_frame(&out, 5), Err(FrameError::TooLarge { len: 12, limit: 5 }));
    }

    proptest! {
        #[test]
        fn frames_round_trip(messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8)) {
            let mut stream = Vec::new();
            for m in &messages {
                write_frame(&mut stream, m);
            }
            let mut rest = &stream[..];
            let mut read = Vec::new();
            while !rest.is_empty() {
                let (m, n) = read_frame(rest, 1 << 20).unwrap().unwrap();
                read.push(m.to_vec());
                rest = &rest[n..];
            }
            prop_assert_eq!(read, messages);
        }

        #[test]
        fn uvarint_round_trips(v in any::<u64>()) {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            prop_assert!(out.len() <= MAX_UVARINT_BYTES);
            prop_assert_eq!(uvarint(&out), Ok(Some((v, out.len()))));
        }
    }
}
