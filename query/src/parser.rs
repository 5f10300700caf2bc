//! PromQL text → AST: a thin wrapper over the `promql-parser` crate with one error type.
//!
//! The crate follows Prometheus 3.x; the only 2.x construct it lacks is `holt_winters`, which is
//! rewritten to its 3.x name before parsing (the evaluator gives it 2.x semantics). Queries are
//! held to the bounds of [`crate::complexity`] before and after parsing.

pub use promql_parser::parser::Expr;

/// A PromQL parse error, with the parser's message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{msg}")]
pub struct ParseError {
    /// The message.
    pub msg: String,
}

impl From<crate::complexity::TooComplex> for ParseError {
    fn from(e: crate::complexity::TooComplex) -> Self {
        ParseError { msg: e.to_string() }
    }
}

/// Parses a PromQL expression within the bounds of [`crate::complexity`]. The parser recurses on
/// nesting: call it on a thread with a stack of [`crate::complexity::EVAL_STACK_BYTES`].
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    crate::complexity::prescan(input)?;
    let expr = parse_unchecked(input)?;
    crate::complexity::check_ast(&expr)?;
    Ok(expr)
}

/// Parses a PromQL expression without bounding its size.
///
/// The `promql-parser` crate panics on some inputs instead of returning an error: a number used as a
/// duration that no `Duration` can hold (`x[Inf]`, `x offset -NaN`, `x[1e30]`). The parser is pure
/// (the panic leaves no state behind), so such a panic is caught here and answered as a parse error.
pub(crate) fn parse_unchecked(input: &str) -> Result<Expr, ParseError> {
    let rewritten = rewrite_holt_winters(input);
    let parsed = std::panic::catch_unwind(|| promql_parser::parser::parse(&rewritten)).unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(format!("invalid query: {why}"))
    });
    parsed.map_err(|msg| ParseError { msg })
}

/// Replaces the identifier `holt_winters` outside string literals.
fn rewrite_holt_winters(input: &str) -> std::borrow::Cow<'_, str> {
    const OLD: &str = "holt_winters";
    if !input.contains(OLD) {
        return input.into();
    }
    let b = input.as_bytes();
    let mut out = String::with_capacity(input.len() + 16);
    let mut i = 0;
    let mut quote: Option<u8> = None;
    let is_ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == b'\\' && q != b'`' {
                out.push('\\');
                i += 1;
                if let Some(ch) = input[i..].chars().next() {
                    out.push(ch);
                    i += ch.len_utf8();
                }
                continue;
            }
            if c == q {
                quote = None;
            }
        } else if c == b'"' || c == b'\'' || c == b'`' {
            quote = Some(c);
        } else if input[i..].starts_with(OLD)
            && (i == 0 || !is_ident(b[i - 1]))
            && b.get(i + OLD.len()).is_none_or(|&n| !is_ident(n))
        {
            out.push_str("double_exponential_smoothing");
            i += OLD.len();
            continue;
        }
        let ch_len = input[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&input[i..i + ch_len]);
        i += ch_len;
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holt_winters_is_rewritten_outside_strings() {
        assert_eq!(
            rewrite_holt_winters("holt_winters(x[1m], 0.1, 0.2)"),
            "double_exponential_smoothing(x[1m], 0.1, 0.2)"
        );
        assert_eq!(rewrite_holt_winters("x{a=\"holt_winters\"}"), "x{a=\"holt_winters\"}");
        assert_eq!(rewrite_holt_winters("holt_winters_x"), "holt_winters_x");
        assert!(parse("holt_winters(x[1m], 0.1, 0.2)").is_ok());
        assert!(parse("1 +").is_err());
    }

    #[test]
    fn numbers_no_duration_can_hold_are_parse_errors() {
        for q in [
            "rate(x[1m] @ 1700000300 offset-Inf)",
            "x[Inf]",
            "x[NaN]",
            "x[1e30]",
            "x[5m:Inf]",
            "x offset 0xFFFFFFFFFFFFFFFFFFFF",
        ] {
            assert!(parse(q).is_err(), "{q}");
        }
        let err = parse("rate(x[1m] offset -Inf)").expect_err("a duration of -Inf");
        assert!(err.msg.contains("Duration"), "{}", err.msg);
        assert!(parse("x[300]").is_ok());
        assert!(parse("x > 1e30").is_ok());
    }
}
