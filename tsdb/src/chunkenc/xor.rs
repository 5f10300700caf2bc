//! Prometheus's XOR (Gorilla) float chunk: an appendable [`XorChunk`] and a decoding [`XorIter`].
//!
//! Bytes: a big-endian `u16` sample count, then an MSB-first bit stream:
//! - sample 0: timestamp as zig-zag varint bytes, value as 64 raw bits;
//! - sample 1: timestamp delta as uvarint bytes, then an XOR value block;
//! - sample n >= 2: delta-of-delta `D` in a bucket (`0`; `10`+14 bits; `110`+17; `1110`+20;
//!   `1111`+64), then an XOR value block.
//!
//! XOR value block of `x = bits(v) ^ bits(prev)`: `0` if `x == 0`; `10` + the bits of `x` inside
//! the previous (leading, trailing) window if it fits; else `11` + leading zeros (capped at 31,
//! 5 bits) + significant bit count (6 bits, 64 written as 0) + the significant bits.
//!
//! All timestamp arithmetic wraps, as Go's does, so any `i64` sequence round-trips.

use super::bstream::{self, mask};
use super::ChunkError;
use crate::varint::{unzigzag, zigzag};

/// Bytes of the sample-count header.
const HEADER_BYTES: usize = 2;
/// `leading` value meaning "no window yet" (Prometheus uses the same sentinel).
const NO_WINDOW: u8 = 0xff;
/// Longest varint encoding of a 64-bit integer.
const MAX_VARINT_BYTES: usize = 10;

/// An appendable XOR chunk: its bytes plus the appender state needed to push further samples.
///
/// Invariant: `bytes()` is always a complete Prometheus XOR chunk holding `num_samples()` samples,
/// and the appender fields describe its last sample, exactly as if every sample had been pushed
/// into a new chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XorChunk {
    stream: bstream::Writer,
    num_samples: u16,
    first_t: i64,
    /// Timestamp of the last sample.
    t: i64,
    /// Bits of the last value.
    v: u64,
    /// Last timestamp delta (0 until the second sample), as Go's `uint64`.
    t_delta: u64,
    /// Leading zeros of the current XOR window, or [`NO_WINDOW`].
    leading: u8,
    /// Trailing zeros of the current XOR window.
    trailing: u8,
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl XorChunk {
    /// An empty chunk: the 2 header bytes, count 0.
    pub fn new() -> Self {
        Self::with_capacity(128)
    }

    /// An empty chunk whose byte buffer can hold `bytes` bytes without reallocating.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes.max(HEADER_BYTES));
        buf.extend_from_slice(&[0; HEADER_BYTES]);
        Self {
            stream: bstream::Writer::new(buf),
            num_samples: 0,
            first_t: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Appends a sample. The caller guarantees `t` is greater than the last timestamp.
    ///
    /// # Panics
    /// If the chunk already holds `u16::MAX` samples (the header could not count another one);
    /// callers cut chunks long before that.
    pub fn push(&mut self, t: i64, v: f64) {
        debug_assert!(self.num_samples == 0 || t > self.t, "XorChunk::push: timestamp {t} not after {}", self.t);
        let n = self.num_samples;
        assert!(n < u16::MAX, "XorChunk::push: chunk is full");
        let v = v.to_bits();
        let mut t_delta = 0;
        match n {
            0 => {
                self.write_varint_bytes(zigzag(t));
                self.stream.write_bits(v, 64);
                self.first_t = t;
            }
            1 => {
                t_delta = t.wrapping_sub(self.t) as u64;
                self.write_varint_bytes(t_delta);
                self.write_value(v);
            }
            _ => {
                t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                if dod == 0 {
                    self.stream.write_bit(false);
                } else if bit_range(dod, 14) {
                    self.stream.write_bits(0b10, 2);
                    self.stream.write_bits(dod as u64, 14);
                } else if bit_range(dod, 17) {
                    self.stream.write_bits(0b110, 3);
                    self.stream.write_bits(dod as u64, 17);
                } else if bit_range(dod, 20) {
                    self.stream.write_bits(0b1110, 4);
                    self.stream.write_bits(dod as u64, 20);
                } else {
                    self.stream.write_bits(0b1111, 4);
                    self.stream.write_bits(dod as u64, 64);
                }
                self.write_value(v);
            }
        }
        self.t = t;
        self.v = v;
        self.t_delta = t_delta;
        self.num_samples = n + 1;
        if let Some(header) = self.stream.bytes_mut().get_mut(..HEADER_BYTES) {
            header.copy_from_slice(&self.num_samples.to_be_bytes());
        }
    }

    /// Writes `x` as uvarint bytes (7 bits per byte, low group first, high bit = more).
    #[inline]
    fn write_varint_bytes(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.stream.write_byte((x as u8) | 0x80);
            x >>= 7;
        }
        self.stream.write_byte(x as u8);
    }

    /// Writes the XOR block of `v` against the last value and updates the window.
    #[inline]
    fn write_value(&mut self, v: u64) {
        let x = v ^ self.v;
        if x == 0 {
            self.stream.write_bit(false);
            return;
        }
        // Both counts are <= 63 here because x != 0.
        let leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if self.leading != NO_WINDOW && leading >= self.leading && trailing >= self.trailing {
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            self.stream.write_bits(0b10, 2);
            self.stream.write_bits(x >> self.trailing, sig);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            let sig = 64 - u32::from(leading) - u32::from(trailing);
            // 5 bits of leading zeros, then 6 bits of significant bits (64 is written as 0).
            let window = (u64::from(leading) << 6) | u64::from(sig & 63);
            self.stream.write_bits(0b11, 2);
            self.stream.write_bits(window, 11);
            self.stream.write_bits(x >> trailing, sig);
        }
    }

    /// Number of samples in the chunk.
    pub fn num_samples(&self) -> u16 {
        self.num_samples
    }

    /// Whether the chunk holds no sample.
    pub fn is_empty(&self) -> bool {
        self.num_samples == 0
    }

    /// The chunk's bytes exactly as Prometheus stores them (header and bit stream).
    pub fn bytes(&self) -> &[u8] {
        self.stream.bytes()
    }

    /// The chunk's bytes, with spare capacity released (for sealing).
    pub fn into_bytes(self) -> Vec<u8> {
        let mut bytes = self.stream.into_bytes();
        bytes.shrink_to_fit();
        bytes
    }

    /// Iterates over the samples.
    pub fn iter(&self) -> XorIter<'_> {
        XorIter::new(self.bytes())
    }

    /// Timestamp of the first sample.
    pub fn first_time(&self) -> Option<i64> {
        (self.num_samples > 0).then_some(self.first_t)
    }

    /// Timestamp of the last sample.
    pub fn last_time(&self) -> Option<i64> {
        (self.num_samples > 0).then_some(self.t)
    }

    /// Rebuilds an appendable chunk from stored bytes, decoding them to recover the appender
    /// state. Bytes after the last sample's bits (padding, garbage) are dropped, so the result's
    /// `bytes()` may be shorter than the input; for chunks Prometheus or Strata wrote, it is equal.
    pub fn from_bytes(mut bytes: Vec<u8>) -> Result<Self, ChunkError> {
        let mut it = XorIter::new(&bytes);
        for _ in it.by_ref() {}
        if let Some(err) = it.err {
            return Err(err);
        }
        let state = it.state;
        let bits = it.stream.bits_read();
        let num_samples = it.total;
        let first_t = it.first_t;
        bytes.truncate(HEADER_BYTES + bits.div_ceil(8));
        // `(8 - bits % 8) % 8` is at most 7.
        let free = ((8 - bits % 8) % 8) as u32;
        Ok(Self {
            stream: bstream::Writer::with_free_bits(bytes, free),
            num_samples,
            first_t,
            t: state.t,
            v: state.v,
            t_delta: state.t_delta,
            leading: state.leading,
            trailing: state.trailing,
        })
    }
}

impl<'a> IntoIterator for &'a XorChunk {
    type Item = (i64, f64);
    type IntoIter = XorIter<'a>;

    fn into_iter(self) -> XorIter<'a> {
        self.iter()
    }
}

/// Prometheus's `bitRange`: whether `x` fits `nbits` bits as its delta-of-delta buckets and varbit
/// integers use them: `-(2^(n-1) - 1) ..= 2^(n-1)`.
#[inline]
pub(crate) fn bit_range(x: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

/// Decoder state after a sample; mirrors the appender fields of [`XorChunk`].
#[derive(Debug, Clone, Copy)]
struct State {
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

/// Iterator over the samples of XOR chunk bytes (a sealed chunk, a block file, or a live chunk).
///
/// Never panics on any input: on malformed bytes it stops, and [`XorIter::error`] says why.
/// Like Prometheus, it reads exactly the number of samples in the header and ignores any bytes
/// after them.
#[derive(Debug, Clone)]
pub struct XorIter<'a> {
    stream: bstream::Reader<'a>,
    total: u16,
    read: u16,
    first_t: i64,
    state: State,
    err: Option<ChunkError>,
}

/// The sample count in the header of XOR chunk bytes (0 if the header is missing).
pub fn num_samples(bytes: &[u8]) -> u16 {
    bytes.first_chunk::<HEADER_BYTES>().map_or(0, |h| u16::from_be_bytes(*h))
}

impl<'a> XorIter<'a> {
    /// Iterates over chunk bytes (header included).
    pub fn new(bytes: &'a [u8]) -> Self {
        let (total, err) = match bytes.first_chunk::<HEADER_BYTES>() {
            Some(header) => (u16::from_be_bytes(*header), None),
            None => (0, Some(ChunkError::TooShort { len: bytes.len() })),
        };
        Self {
            stream: bstream::Reader::new(bytes.get(HEADER_BYTES..).unwrap_or_default()),
            total,
            read: 0,
            first_t: 0,
            state: State { t: 0, v: 0, t_delta: 0, leading: NO_WINDOW, trailing: 0 },
            err,
        }
    }

    /// Why iteration stopped early, if the bytes were malformed.
    pub fn error(&self) -> Option<&ChunkError> {
        self.err.as_ref()
    }

    /// Advances to the first sample with timestamp `>= t` and returns it (`None` at the end).
    ///
    /// Like Prometheus's `Iterator.Seek`, it never moves backwards: if the sample returned last
    /// already has timestamp `>= t`, that sample is returned again. The next call to `next`
    /// returns the sample after the one returned here.
    pub fn seek(&mut self, t: i64) -> Option<(i64, f64)> {
        if self.err.is_some() {
            return None;
        }
        if self.read > 0 && self.state.t >= t {
            return Some((self.state.t, f64::from_bits(self.state.v)));
        }
        self.find(|&(ts, _)| ts >= t)
    }

    /// Decodes the next sample into `self.state`.
    #[inline]
    fn decode(&mut self) -> Result<(), ChunkError> {
        let sample = self.read;
        let truncated = ChunkError::Truncated { sample };
        match sample {
            0 => {
                let t = unzigzag(self.read_uvarint()?);
                let v = self.stream.read_bits(64).ok_or(truncated)?;
                self.first_t = t;
                self.state.t = t;
                self.state.v = v;
            }
            1 => {
                let t_delta = self.read_uvarint()?;
                self.state.t_delta = t_delta;
                self.state.t = self.state.t.wrapping_add(t_delta as i64);
                self.read_value()?;
            }
            _ => {
                let dod = self.read_dod()?;
                self.state.t_delta = self.state.t_delta.wrapping_add(dod as u64);
                self.state.t = self.state.t.wrapping_add(self.state.t_delta as i64);
                self.read_value()?;
            }
        }
        Ok(())
    }

    /// Reads a uvarint from whole (possibly unaligned) bytes, rejecting overflow like Go's
    /// `binary.ReadUvarint`.
    fn read_uvarint(&mut self) -> Result<u64, ChunkError> {
        let sample = self.read;
        let mut x = 0u64;
        let mut shift = 0u32;
        for i in 0..MAX_VARINT_BYTES {
            let b = self.stream.read_byte().ok_or(ChunkError::Truncated { sample })?;
            if b < 0x80 {
                if i == MAX_VARINT_BYTES - 1 && b > 1 {
                    return Err(ChunkError::BadVarint { sample });
                }
                return Ok(x | (u64::from(b) << shift));
            }
            x |= u64::from(b & 0x7f) << shift;
            shift += 7;
        }
        Err(ChunkError::BadVarint { sample })
    }

    /// Reads a delta-of-delta timestamp block.
    #[inline]
    fn read_dod(&mut self) -> Result<i64, ChunkError> {
        let truncated = ChunkError::Truncated { sample: self.read };
        // The prefix is up to four 1 bits, ended early by a 0 bit.
        let mut ones = 0;
        while ones < 4 && self.stream.read_bit().ok_or(truncated.clone())? {
            ones += 1;
        }
        let size = match ones {
            0 => return Ok(0),
            1 => 14,
            2 => 17,
            3 => 20,
            _ => 64,
        };
        let bits = self.stream.read_bits(size).ok_or(truncated)?;
        if size == 64 {
            return Ok(bits as i64);
        }
        // Payloads above 2^(k-1) are negative numbers in k-bit two's complement.
        let half = 1u64 << (size - 1);
        Ok(if bits > half { bits as i64 - (1i64 << size) } else { bits as i64 })
    }

    /// Reads an XOR value block and applies it to `self.state.v`.
    #[inline]
    fn read_value(&mut self) -> Result<(), ChunkError> {
        let sample = self.read;
        let truncated = ChunkError::Truncated { sample };
        if !self.stream.read_bit().ok_or(truncated.clone())? {
            return Ok(());
        }
        let (leading, trailing) = if !self.stream.read_bit().ok_or(truncated.clone())? {
            if self.state.leading == NO_WINDOW {
                // Prometheus never writes this, but its reader starts from a (0, 0) window.
                (0, 0)
            } else {
                (self.state.leading, self.state.trailing)
            }
        } else {
            let window = self.stream.read_bits(11).ok_or(truncated.clone())?;
            // 5 and 6 bits: the casts are lossless.
            let leading = (window >> 6) as u8;
            let sig = match (window & 63) as u8 {
                0 => 64,
                s => s,
            };
            if u32::from(leading) + u32::from(sig) > 64 {
                return Err(ChunkError::BadValueWindow { sample, leading, significant: sig });
            }
            let trailing = 64 - leading - sig;
            self.state.leading = leading;
            self.state.trailing = trailing;
            (leading, trailing)
        };
        let sig = 64 - u32::from(leading) - u32::from(trailing);
        let bits = self.stream.read_bits(sig).ok_or(truncated)?;
        // `sig >= 1`, so `trailing <= 63`.
        self.state.v ^= (bits & mask(sig)) << trailing;
        Ok(())
    }
}

impl Iterator for XorIter<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.read >= self.total || self.err.is_some() {
            return None;
        }
        if let Err(err) = self.decode() {
            self.err = Some(err);
            return None;
        }
        self.read += 1;
        Some((self.state.t, f64::from_bits(self.state.v)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.err.is_some() {
            return (0, Some(0));
        }
        (0, Some(usize::from(self.total - self.read)))
    }
}

impl std::iter::FusedIterator for XorIter<'_> {}
