//! ULIDs: block directory names (the `ulid` crate's type, as Prometheus uses oklog/ulid). Generation
//! is monotonic within a process, so blocks written one after the other sort by creation.

use std::sync::Mutex;

pub use ulid::Ulid;

/// Length of the text form.
pub const ULID_LEN: usize = 26;

static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);

/// A new ULID for "now", greater than every ULID this process generated before (within the same
/// millisecond the random part is incremented; if that overflows, a fresh random ULID is taken).
pub fn new_ulid() -> Ulid {
    let mut g = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    g.get_or_insert_with(ulid::Generator::new).generate().unwrap_or_else(|_| Ulid::new())
}

/// If `name` is a block directory name (a valid ULID and nothing else), its ULID.
/// Temporary names such as `<ulid>.tmp-for-creation` are not block directories.
pub fn parse_block_dir_name(name: &str) -> Option<Ulid> {
    // The first character carries 3 bits: above '7' the text overflows 128 bits (oklog/ulid refuses
    // it; the `ulid` crate would wrap around).
    if name.len() != ULID_LEN || !name.starts_with(|c: char| ('0'..='7').contains(&c)) {
        return None;
    }
    Ulid::from_string(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form() {
        assert_eq!(Ulid(0).to_string(), "00000000000000000000000000");
        assert_eq!(Ulid(u128::MAX).to_string(), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        // Known vector from oklog/ulid (the library Prometheus uses).
        let u = parse_block_dir_name("01ARYZ6S41TSV4RRFFQ69G5FAV").unwrap();
        assert_eq!(u.timestamp_ms(), 1_469_918_176_385);
        let u = parse_block_dir_name("01ARZ3NDEKTSV4RRFFQ69G5FAV").unwrap();
        assert_eq!(u.to_string(), "01ARZ3NDEKTSV4RRFFQ69G5FAV");
        assert_eq!(parse_block_dir_name("01arz3ndektsv4rrffq69g5fav"), Some(u));
        for bad in [
            "",
            "01ARZ3NDEKTSV4RRFFQ69G5FA",
            "01ARZ3NDEKTSV4RRFFQ69G5FAVX",
            "81ARZ3NDEKTSV4RRFFQ69G5FAV",
            "01ARZ3NDEKTSV4RRFFQ69G5FAU",
        ] {
            assert!(parse_block_dir_name(bad).is_none(), "{bad}");
        }
        assert!(parse_block_dir_name("01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp-for-creation").is_none());
    }

    #[test]
    fn generation_is_monotonic_and_timed() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        let mut prev = new_ulid();
        assert!(prev.timestamp_ms() >= now && prev.timestamp_ms() < now + 60_000);
        for _ in 0..10_000 {
            let u = new_ulid();
            assert!(u > prev);
            let s = u.to_string();
            assert_eq!(s.len(), 26);
            assert_eq!(parse_block_dir_name(&s), Some(u));
            prev = u;
        }
    }
}
