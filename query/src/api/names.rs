//! Label names as written in request paths: Prometheus's value-encoding escape (`U__` followed by the
//! name with `_` written as `__` and any other character that is not a legacy name character as
//! `_<hex code point>_`), which lets a client put a UTF-8 label name such as `job.name` into
//! `/api/v1/label/<name>/values` as `U__job_2e_name`.

/// The label name a path segment stands for. A segment starting with `U__` is unescaped; one that is
/// not a well-formed escape (a lone `_` at the end, a code point that is not hex, longer than five
/// digits, or not a Unicode scalar value, a missing closing `_`) stands for itself, as in Prometheus.
pub fn unescape_label_name(segment: &str) -> std::borrow::Cow<'_, str> {
    let Some(escaped) = segment.strip_prefix("U__") else {
        return segment.into();
    };
    match unescape(escaped.as_bytes()) {
        Some(name) => name.into(),
        None => segment.into(),
    }
}

/// Most hex digits an escaped code point may have (Prometheus reads at most five).
const MAX_HEX_DIGITS: usize = 5;

fn unescape(b: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'_' {
            // Copy the run up to the next underscore whole; it is valid UTF-8 since `_` is ASCII.
            let end = b[i..].iter().position(|&c| c == b'_').map_or(b.len(), |p| i + p);
            out.push_str(std::str::from_utf8(&b[i..end]).ok()?);
            i = end;
            continue;
        }
        i += 1;
        match b.get(i)? {
            b'_' => {
                out.push('_');
                i += 1;
            }
            _ => {
                let close = b[i..].iter().take(MAX_HEX_DIGITS + 1).position(|&c| c == b'_')?;
                let digits = std::str::from_utf8(&b[i..i + close]).ok()?;
                if !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return None;
                }
                let code = u32::from_str_radix(digits, 16).ok()?;
                out.push(char::from_u32(code)?);
                i += close + 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_like_prometheus() {
        for (segment, want) in [
            ("job", "job"),
            ("job.name", "job.name"),
            ("U__job_2e_name", "job.name"),
            ("U__http__status_2e_code", "http_status.code"),
            ("U__a_E4_b", "aäb"),
            ("U___1f600_", "\u{1f600}"),
            ("U__", ""),
            // Not well-formed: the segment stands for itself.
            ("U__a_", "U__a_"),
            ("U__a_zz_", "U__a_zz_"),
            ("U__a_2e", "U__a_2e"),
            ("U__a_0002e_", "a."),
            ("U__a_00002e_", "U__a_00002e_"),
            ("U__a_d800_", "U__a_d800_"),
            ("U__a_+2e_", "U__a_+2e_"),
        ] {
            assert_eq!(unescape_label_name(segment), want, "{segment}");
        }
    }
}
