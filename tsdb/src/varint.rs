//! Go-compatible LEB128 varints (`encoding/binary`): the one implementation the tsdb's packed labels,
//! WAL records and block files share. Decoding never panics and rejects values over 64 bits.

/// Appends `v` as a uvarint.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Zig-zag encoding: small negative and positive numbers become small unsigned ones (Go's varint).
#[inline]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
#[inline]
pub(crate) fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends `v` zig-zag encoded (Go's `PutVarint`).
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v));
}

/// Decodes a uvarint at the start of `b`: `(value, bytes used)`. `None` if truncated or over 64 bits.
pub(crate) fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        if i == 9 && byte > 1 {
            return None;
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Reads a uvarint from the front of `rest` and advances it.
pub(crate) fn take_uvarint(rest: &mut &[u8]) -> Option<u64> {
    let (v, n) = uvarint(rest)?;
    *rest = rest.get(n..)?;
    Some(v)
}

/// Reads a zig-zag varint from the front of `rest` and advances it.
pub(crate) fn take_varint(rest: &mut &[u8]) -> Option<i64> {
    let u = take_uvarint(rest)?;
    Some(unzigzag(u))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_overflow() {
        let mut buf = Vec::new();
        for v in [0i64, 1, -1, 127, 128, i64::MAX, i64::MIN] {
            put_varint(&mut buf, v);
        }
        put_uvarint(&mut buf, u64::MAX);
        let mut rest = &buf[..];
        for v in [0i64, 1, -1, 127, 128, i64::MAX, i64::MIN] {
            assert_eq!(take_varint(&mut rest), Some(v));
        }
        assert_eq!(take_uvarint(&mut rest), Some(u64::MAX));
        assert!(rest.is_empty());
        assert_eq!(uvarint(&[0xff; 10]), None);
        assert_eq!(uvarint(&[0x80]), None);
    }
}
