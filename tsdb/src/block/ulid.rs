//! ULIDs: block directory names. 48-bit Unix milliseconds + 80 random bits, Crockford base32, 26 characters.
//!
//! Generation is monotonic within a process: a ULID created in the same (or an earlier, after a clock step
//! back) millisecond as the previous one gets the previous random part plus one, so ULIDs sort by creation.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const RANDOM_BITS: u32 = 80;
const RANDOM_MASK: u128 = (1u128 << RANDOM_BITS) - 1;
/// Length of the text form.
pub const ULID_LEN: usize = 26;

/// A ULID as a 128-bit number (timestamp in the top 48 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ulid(pub u128);

/// The text is not a ULID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ULID {text:?}: {reason}")]
pub struct UlidError {
    /// The rejected text.
    pub text: String,
    /// Why.
    pub reason: &'static str,
}

static LAST: Mutex<u128> = Mutex::new(0);
static COUNTER: AtomicU64 = AtomicU64::new(0);

impl Ulid {
    /// A new ULID for "now", greater than every ULID this process generated before.
    pub fn new() -> Ulid {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let fresh = Ulid::from_parts(now_ms, random80()).0;
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        let next = if fresh > *last { fresh } else { last.wrapping_add(1) };
        *last = next;
        Ulid(next)
    }

    /// Builds a ULID from a millisecond timestamp (low 48 bits used) and 80 random bits.
    pub fn from_parts(ms: u64, random: u128) -> Ulid {
        Ulid((u128::from(ms & 0xFFFF_FFFF_FFFF) << RANDOM_BITS) | (random & RANDOM_MASK))
    }

    /// The timestamp part in Unix milliseconds.
    pub fn timestamp_ms(&self) -> u64 {
        (self.0 >> RANDOM_BITS) as u64
    }
}

/// 80 bits from std's randomly keyed SipHash over time, process id and a counter.
fn random80() -> u128 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let state = RandomState::new();
    let word = |salt: u64| {
        let mut h = state.build_hasher();
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        h.write_u64(n);
        h.write_u64(salt);
        h.finish()
    };
    (u128::from(word(1)) << 64 | u128::from(word(2))) & RANDOM_MASK
}

impl fmt::Display for Ulid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = [0u8; ULID_LEN];
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 5 * (ULID_LEN - 1 - i);
            *c = ALPHABET.get(((self.0 >> shift) & 31) as usize).copied().unwrap_or(b'0');
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

fn decode_char(c: u8) -> Option<u128> {
    let c = c.to_ascii_uppercase();
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u128)
}

impl FromStr for Ulid {
    type Err = UlidError;

    /// Parses the 26-character text form (case-insensitive, Crockford alphabet; no I/L/O/U).
    fn from_str(s: &str) -> Result<Ulid, UlidError> {
        let err = |reason| UlidError { text: s.to_string(), reason };
        if s.len() != ULID_LEN {
            return Err(err("not 26 characters"));
        }
        let mut v: u128 = 0;
        for (i, b) in s.bytes().enumerate() {
            let d = decode_char(b).ok_or_else(|| err("invalid character"))?;
            if i == 0 && d > 7 {
                return Err(err("overflows 128 bits"));
            }
            v = (v << 5) | d;
        }
        Ok(Ulid(v))
    }
}

impl serde::Serialize for Ulid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Ulid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Ulid, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// If `name` is a block directory name (a valid ULID and nothing else), its ULID.
/// Temporary names such as `<ulid>.tmp-for-creation` are not block directories.
pub fn parse_block_dir_name(name: &str) -> Option<Ulid> {
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form() {
        assert_eq!(Ulid(0).to_string(), "00000000000000000000000000");
        assert_eq!(Ulid(u128::MAX).to_string(), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        // Known vector from oklog/ulid (the library Prometheus uses).
        let u: Ulid = "01ARYZ6S41TSV4RRFFQ69G5FAV".parse().unwrap();
        assert_eq!(u.timestamp_ms(), 1_469_918_176_385);
        let u: Ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        assert_eq!(u.to_string(), "01ARZ3NDEKTSV4RRFFQ69G5FAV");
        assert_eq!("01arz3ndektsv4rrffq69g5fav".parse::<Ulid>().unwrap(), u);
        for bad in [
            "",
            "01ARZ3NDEKTSV4RRFFQ69G5FA",
            "01ARZ3NDEKTSV4RRFFQ69G5FAVX",
            "81ARZ3NDEKTSV4RRFFQ69G5FAV",
            "01ARZ3NDEKTSV4RRFFQ69G5FAU",
        ] {
            assert!(bad.parse::<Ulid>().is_err(), "{bad}");
        }
        assert!(parse_block_dir_name("01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp-for-creation").is_none());
    }

    #[test]
    fn generation_is_monotonic_and_timed() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let mut prev = Ulid::new();
        assert!(prev.timestamp_ms() >= now && prev.timestamp_ms() < now + 60_000);
        for _ in 0..10_000 {
            let u = Ulid::new();
            assert!(u > prev);
            let s = u.to_string();
            assert_eq!(s.len(), 26);
            assert_eq!(s.parse::<Ulid>().unwrap(), u);
            prev = u;
        }
    }
}
