//! Request parameters: Prometheus's time (`rfc3339 | unix seconds`) and duration
//! (`1h30m | seconds`) formats, and GET query / POST form merging.

use crate::engine::functions::days_from_civil;

/// Smallest time Prometheus's API accepts, in ms (`api.go` `minTime`).
pub const MIN_TIME_MS: i64 = (i64::MIN / 1000 + 62_135_596_801) * 1000;
/// Largest time Prometheus's API accepts, in ms (`api.go` `maxTime`).
pub const MAX_TIME_MS: i64 = (i64::MAX / 1000 - 62_135_596_801) * 1000 + 999;
const MIN_TIME_FORMATTED: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_FORMATTED: &str = "292277026-12-04T15:30:07.999999999Z";

/// Request parameters in order: form body first, then URL query (Go's `r.Form` order).
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Parses `application/x-www-form-urlencoded` text and appends it.
    pub fn extend_urlencoded(&mut self, s: &[u8]) {
        self.0.extend(form_urlencoded::parse(s).map(|(k, v)| (k.into_owned(), v.into_owned())));
    }

    /// First value of `name`, or `""` (Go's `FormValue`).
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    /// All values of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// Parses a time to ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Some(f) = parse_go_float(s) {
        let secs = f.trunc();
        let frac = ((f - secs) * 1000.0).round();
        return Ok((secs as i64).saturating_mul(1000).saturating_add(frac as i64));
    }
    if let Some(t) = parse_rfc3339(s) {
        return Ok(t);
    }
    match s {
        MIN_TIME_FORMATTED => Ok(MIN_TIME_MS),
        MAX_TIME_FORMATTED => Ok(MAX_TIME_MS),
        _ => Err(format!("cannot parse {:?} to a valid timestamp", tsdb::labels::clip(s))),
    }
}

/// Parses a duration (float seconds or Prometheus duration) to ms.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Some(f) = parse_go_float(s) {
        let ms = f * 1000.0;
        if ms.is_nan() || ms.abs() > 9.2e15 {
            return Err(format!("cannot parse {:?} to a valid duration. It overflows int64", tsdb::labels::clip(s)));
        }
        return Ok(ms as i64);
    }
    parse_prom_duration(s).ok_or_else(|| format!("cannot parse {:?} to a valid duration", tsdb::labels::clip(s)))
}

/// Go's `strconv.ParseFloat` subset for API parameters (decimal, exponent, inf/nan).
fn parse_go_float(s: &str) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    crate::engine::functions::parse_go_float(s)
}

/// `model.ParseDuration`: `[0-9]+(y|w|d|h|m|s|ms)` in decreasing order, or `0`.
pub fn parse_prom_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    if s.is_empty() {
        return None;
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    let mut last_unit = -1i32;
    while i < b.len() {
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let n: i64 = s.get(start..i)?.parse().ok()?;
        let rest = s.get(i..)?;
        let (idx, unit, mult) = if rest.starts_with("ms") {
            (6, "ms", 1)
        } else {
            let (idx, &(u, m)) = UNITS.iter().enumerate().find(|(_, (u, _))| *u != "ms" && rest.starts_with(u))?;
            (idx, u, m)
        };
        if idx as i32 <= last_unit {
            return None;
        }
        last_unit = idx as i32;
        i += unit.len();
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    Some(total)
}

/// RFC 3339 with optional fractional seconds and `Z` or `±hh:mm` offset, to ms.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d, h, mi, sec) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = s.get(start..i)?;
        let mut digits: String = frac.chars().take(3).collect();
        while digits.len() < 3 {
            digits.push('0');
        }
        ms = digits.parse().ok()?;
    }
    let off = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let o = (oh * 60 + om) * 60_000;
            if *c == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000 + ms) - off)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("2015-07-01T20:10:51.781Z"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("2015-07-01T22:10:51+02:00"), Ok(1_435_781_451_000));
        assert_eq!(parse_time("0"), Ok(0));
        assert_eq!(parse_time(MAX_TIME_FORMATTED), Ok(MAX_TIME_MS));
        assert!(parse_time("").is_err());
        assert!(parse_time("abc").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("90s"), Ok(90_000));
        assert_eq!(parse_duration("15"), Ok(15_000));
        assert_eq!(parse_duration("0.5"), Ok(500));
        assert_eq!(parse_duration("1m500ms"), Ok(60_500));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        assert!(parse_duration("30m1h").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("1.5h").is_err());
    }
}
