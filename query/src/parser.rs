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
    parsed.map_err(|msg| ParseError { msg: prometheus_message(input, &msg) })
}

/// Rewrites a `promql-parser` message as Prometheus words it: `line:col: parse error: ` followed by
/// Prometheus's text. The crate reports no positions, so the position is derived from the input and
/// the kind of error: the end of the input for an unterminated expression, the offending token
/// otherwise. Messages whose position cannot be derived keep the `parse error: ` prefix only.
fn prometheus_message(input: &str, msg: &str) -> String {
    let at_end = || position(input, input.len());
    let (pos, text) = if msg == "unexpected end of input inside brackets" {
        (Some(at_end()), unterminated_brackets(input).to_owned())
    } else if msg == "invalid promql query" && ends_with_binary_operator(input) {
        (Some(at_end()), "unexpected end of input".to_owned())
    } else if msg.contains("end of input") || msg == "unclosed left parenthesis" {
        (Some(at_end()), msg.to_owned())
    } else if msg == "unexpected right parenthesis ')'" {
        (unbalanced_close(input).map(|i| position(input, i + 1)), msg.to_owned())
    } else if let Some(name) = quoted_tail(msg, "unknown function with name ") {
        (find_call(input, name).map(|i| position(input, i)), format!("unknown function with name {name:?}"))
    } else if let Some(rest) = msg.strip_prefix("expected type ") {
        call_type_error(input, rest).unwrap_or((None, msg.to_owned()))
    } else if msg.starts_with("unterminated quoted string") {
        (input.find(['"', '\'', '`']).map(|i| position(input, i)), "unterminated quoted string".to_owned())
    } else {
        (None, msg.to_owned())
    };
    match pos {
        Some((line, col)) => format!("{line}:{col}: parse error: {text}"),
        None => format!("parse error: {text}"),
    }
}

/// Prometheus's message for input ending inside `[…]`: an empty bracket lacks its duration; otherwise
/// an open parenthesis is reported before the bracket.
fn unterminated_brackets(input: &str) -> &'static str {
    let inside = input.rsplit_once('[').map_or("", |(_, after)| after);
    if inside.trim().is_empty() {
        "missing unit character in duration"
    } else if open_parens(input) > 0 {
        "unclosed left parenthesis"
    } else {
        "unclosed left bracket"
    }
}

/// Whether the input's last token is a binary operator (the expression lacks its right operand).
fn ends_with_binary_operator(input: &str) -> bool {
    let t = input.trim_end();
    let word_ends = |w: &str| {
        t.strip_suffix(w).is_some_and(|before| before.chars().last().is_none_or(|c| !(c.is_alphanumeric() || c == '_')))
    };
    ["+", "-", "*", "/", "%", "^", "==", "!=", ">", "<", ">=", "<="].iter().any(|op| t.ends_with(op))
        || ["and", "or", "unless", "atan2"].iter().any(|w| word_ends(w))
}

/// Parentheses opened and not closed (outside string literals).
fn open_parens(input: &str) -> usize {
    let mut depth = 0usize;
    scan_parens(input, |_, c| match c {
        '(' => depth += 1,
        _ => depth = depth.saturating_sub(1),
    });
    depth
}

/// Calls `f` with the byte offset of each `(` and `)` outside string literals.
fn scan_parens(input: &str, mut f: impl FnMut(usize, char)) {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, c) in input.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q != '`' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | ')' => f(i, c),
            _ => {}
        }
    }
}

/// Prometheus's 1-based `(line, column)` of the byte offset `at` (columns count characters).
fn position(input: &str, at: usize) -> (usize, usize) {
    let before = input.get(..at).unwrap_or(input);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before.get(line_start..).map_or(0, |l| l.chars().count()) + 1)
}

/// Byte offset of the first `)` closing no `(` (outside string literals).
fn unbalanced_close(input: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut found = None;
    scan_parens(input, |i, c| match c {
        '(' => depth += 1,
        _ if depth == 0 => {
            found = found.or(Some(i));
        }
        _ => depth -= 1,
    });
    found
}

/// The name in `prefix'name'` (the crate quotes names with single quotes).
fn quoted_tail<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    msg.strip_prefix(prefix)?.strip_prefix('\'')?.strip_suffix('\'')
}

/// Byte offset of `name(` as a call in the input (not part of a longer identifier).
fn find_call(input: &str, name: &str) -> Option<usize> {
    input.match_indices(name).map(|(i, _)| i).find(|&i| {
        let before_ok = input
            .get(..i)
            .and_then(|b| b.chars().last())
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
        let after = input.get(i + name.len()..).unwrap_or("").trim_start();
        before_ok && after.starts_with('(')
    })
}

/// `expected type matrix in call to function 'rate', got vector` → Prometheus's wording, positioned
/// at the call's first argument.
fn call_type_error(input: &str, rest: &str) -> Option<(Option<(usize, usize)>, String)> {
    let (want, rest) = rest.split_once(" in call to function ")?;
    let (name, got) = rest.split_once(", got ")?;
    let name = name.strip_prefix('\'')?.strip_suffix('\'')?;
    let pos = find_call(input, name).and_then(|i| {
        let open = i + input.get(i..)?.find('(')? + 1;
        let arg = open + input.get(open..)?.len() - input.get(open..)?.trim_start().len();
        Some(position(input, arg))
    });
    let text =
        format!("expected type {} in call to function {name:?}, got {}", value_type_name(want), value_type_name(got));
    Some((pos, text))
}

/// Prometheus's name of a value type (`range vector`, `instant vector`) for the crate's.
fn value_type_name(t: &str) -> &str {
    match t {
        "matrix" => "range vector",
        "vector" => "instant vector",
        other => other,
    }
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
    fn errors_carry_prometheus_positions() {
        let msg = |q: &str| parse(q).expect_err(q).to_string();
        assert_eq!(msg("sum(rate("), "1:10: parse error: unclosed left parenthesis");
        assert_eq!(msg("sum(x))"), "1:8: parse error: unexpected right parenthesis ')'");
        assert_eq!(msg("\")\" + x)"), "1:9: parse error: unexpected right parenthesis ')'");
        assert_eq!(msg("x +\n  foo["), "2:7: parse error: missing unit character in duration");
        assert_eq!(msg("foo[5m"), "1:7: parse error: unclosed left bracket");
        assert_eq!(msg("1 and"), "1:6: parse error: unexpected end of input");
        assert_eq!(msg("x + nofn(y)"), "1:5: parse error: unknown function with name \"nofn\"");
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
