//! MSB-first bit stream: a [`Writer`] that appends to a byte vector and a [`Reader`] over a byte
//! slice that decodes through a 64-bit buffer window.
//!
//! The layout matches Prometheus's `tsdb/chunkenc/bstream.go`: bits are written most significant
//! first, starting at bit 7 of each byte, and the last byte is zero-padded. The reader never
//! panics: reading past the end returns `None`.

/// Returns a mask of the low `n` bits (`n` in `0..=64`).
#[inline]
pub(crate) const fn mask(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Appends bits to a byte vector, most significant bit first.
///
/// Invariant: the low `free` bits of the last byte are unused and zero; every other bit of the
/// vector has been written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writer {
    bytes: Vec<u8>,
    /// Unused low bits of the last byte, `0..=7` (0: the stream ends on a byte boundary).
    free: u32,
}

impl Writer {
    /// Starts writing after the whole bytes of `bytes` (byte-aligned).
    pub fn new(bytes: Vec<u8>) -> Self {
        Self { bytes, free: 0 }
    }

    /// Continues a stream whose last byte has `free` unused low bits (`free` is clamped to 7).
    /// The unused bits are cleared, so stale padding can never leak into later writes.
    pub fn with_free_bits(mut bytes: Vec<u8>, free: u32) -> Self {
        let free = if bytes.is_empty() { 0 } else { free.min(7) };
        if let Some(last) = bytes.last_mut() {
            // `free <= 7`, so the shift and the cast are lossless.
            *last &= !(mask(free) as u8);
        }
        Self { bytes, free }
    }

    /// Writes the low `n` bits of `value` (`n <= 64`), most significant first.
    #[inline]
    pub fn write_bits(&mut self, value: u64, n: u32) {
        debug_assert!(n <= 64);
        let mut n = n.min(64);
        if n == 0 {
            return;
        }
        let value = value & mask(n);
        if self.bytes.capacity() - self.bytes.len() < 9 {
            // Grow by a quarter, not double: head chunks stay open for hours, and a doubled buffer
            // would leave a third of their memory unused on average.
            let grow = (self.bytes.len() / 4).max(32);
            self.bytes.reserve_exact(grow);
        }
        if self.free > 0 {
            let take = self.free.min(n);
            // `take <= 7` and `n - take < 64`: no overflow, and the value fits a byte.
            let bits = ((value >> (n - take)) & mask(take)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= bits << (self.free - take);
            }
            self.free -= take;
            n -= take;
        }
        while n >= 8 {
            n -= 8;
            self.bytes.push((value >> n) as u8);
        }
        if n > 0 {
            self.bytes.push((value << (8 - n)) as u8);
            self.free = 8 - n;
        }
    }

    /// Writes one bit.
    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    /// Writes 8 bits at the current (possibly unaligned) position.
    #[inline]
    pub fn write_byte(&mut self, byte: u8) {
        self.write_bits(u64::from(byte), 8);
    }

    /// The bytes written so far, padding included.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Mutable access to the written bytes (for headers before the bit stream).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// Gives back the byte vector.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads bits, most significant first, from a byte slice through a 64-bit window.
///
/// Invariant: the low `valid` bits of `buf` are the next unread bits of the stream; bytes before
/// `pos` have been loaded into `buf`.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    valid: u32,
}

impl<'a> Reader<'a> {
    /// Reads `data` from its first bit.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0, buf: 0, valid: 0 }
    }

    /// Number of bits consumed so far.
    pub fn bits_read(&self) -> usize {
        self.pos * 8 - self.valid as usize
    }

    /// Number of bits not yet consumed.
    pub fn bits_left(&self) -> usize {
        (self.data.len() - self.pos.min(self.data.len())) * 8 + self.valid as usize
    }

    /// Loads up to 8 further bytes into the (exhausted) window. Returns false at the end of data.
    #[inline]
    fn refill(&mut self) -> bool {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        if let Some(word) = rest.first_chunk::<8>() {
            self.buf = u64::from_be_bytes(*word);
            self.valid = 64;
            self.pos += 8;
            true
        } else if rest.is_empty() {
            false
        } else {
            self.buf = rest.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            // `rest.len() < 8`, so this is at most 56.
            self.valid = rest.len() as u32 * 8;
            self.pos += rest.len();
            true
        }
    }

    /// Reads `n` bits (`n <= 64`) as the low bits of the result; `None` if the stream ends first.
    #[inline]
    pub fn read_bits(&mut self, n: u32) -> Option<u64> {
        if n == 0 {
            return Some(0);
        }
        if n <= self.valid {
            // `n >= 1`, so the shift is at most 63.
            let bits = (self.buf >> (self.valid - n)) & mask(n);
            self.valid -= n;
            return Some(bits);
        }
        self.read_bits_slow(n.min(64))
    }

    #[cold]
    fn read_bits_slow(&mut self, n: u32) -> Option<u64> {
        let high = self.buf & mask(self.valid);
        let need = n - self.valid;
        self.valid = 0;
        if !self.refill() || self.valid < need {
            // Leave the reader exhausted so that later reads fail too.
            self.valid = 0;
            self.pos = self.data.len();
            return None;
        }
        let low = (self.buf >> (self.valid - need)) & mask(need);
        self.valid -= need;
        Some(high.checked_shl(need).unwrap_or(0) | low)
    }

    /// Reads one bit.
    #[inline]
    pub fn read_bit(&mut self) -> Option<bool> {
        if self.valid > 0 {
            self.valid -= 1;
            return Some((self.buf >> self.valid) & 1 == 1);
        }
        self.read_bits(1).map(|b| b == 1)
    }

    /// Reads 8 bits at the current (possibly unaligned) position.
    #[inline]
    pub fn read_byte(&mut self) -> Option<u8> {
        // Eight bits always fit a byte.
        self.read_bits(8).map(|b| b as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn writes_msb_first_and_pads() {
        let mut w = Writer::new(Vec::new());
        w.write_bit(true);
        w.write_bits(0b01, 2);
        w.write_byte(0xff);
        assert_eq!(w.bytes(), &[0b1011_1111, 0b1110_0000]);
        w.write_bits(0b10101, 5);
        assert_eq!(w.bytes(), &[0b1011_1111, 0b1111_0101]);
        w.write_bits(u64::MAX, 64);
        assert_eq!(w.bytes().len(), 10);
    }

    #[test]
    fn reader_stops_at_end() {
        let data = [0xab, 0xcd];
        let mut r = Reader::new(&data);
        assert_eq!(r.read_bits(4), Some(0xa));
        assert_eq!(r.read_bits(8), Some(0xbc));
        assert_eq!(r.bits_read(), 12);
        assert_eq!(r.read_bits(5), None);
        assert_eq!(r.read_bit(), None);
    }

    #[test]
    fn with_free_bits_clears_padding() {
        let w = Writer::with_free_bits(vec![0xff, 0xff], 3);
        assert_eq!(w.bytes(), &[0xff, 0xf8]);
    }

    proptest! {
        #[test]
        fn round_trip(fields in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..200)) {
            let mut w = Writer::new(Vec::new());
            for &(v, n) in &fields {
                w.write_bits(v, n);
            }
            let total: usize = fields.iter().map(|&(_, n)| n as usize).sum();
            prop_assert_eq!(w.bytes().len(), total.div_ceil(8));
            let bytes = w.into_bytes();
            let mut r = Reader::new(&bytes);
            for &(v, n) in &fields {
                prop_assert_eq!(r.read_bits(n), Some(v & mask(n)));
            }
            prop_assert_eq!(r.bits_read(), total);
        }
    }
}
