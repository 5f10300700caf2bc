//! Bounds on a query's size and nesting, so that neither the parser nor the evaluator (both
//! recursive) can exhaust a thread's stack.
//!
//! Two checks: [`prescan`] reads the text before the parser sees it (the parser recurses on
//! nesting and on operator chains) and bounds its length, its bracket nesting and its number of
//! operators; [`check_ast`] walks the parsed tree without recursion and bounds its depth, which is
//! the evaluator's recursion depth. Threads that evaluate queries need a stack of
//! [`EVAL_STACK_BYTES`], which holds [`MAX_DEPTH`] levels with a wide margin.

use promql_parser::parser::Expr;

/// Longest query text accepted (bytes).
pub const MAX_QUERY_BYTES: usize = 1 << 20;
/// Deepest expression tree accepted (nodes from the root to the deepest leaf), and deepest nesting
/// of `(`, `[` and `{` in the text.
pub const MAX_DEPTH: usize = 500;
/// Most operators (binary, unary and comparison, `and`/`or`/`unless`/`atan2`) in the text. A
/// chain of operators is one tree level per operator, so chains longer than [`MAX_DEPTH`] are
/// still rejected by [`check_ast`]; this bound only keeps the parser's own recursion small.
pub const MAX_OPERATORS: usize = 4 * MAX_DEPTH;
/// Stack size for threads that parse and evaluate queries. Queries [`MAX_DEPTH`] levels deep, of
/// each recursive shape in the tests below, evaluate within an eighth of it in an unoptimised
/// build. Only the pages a query touches are backed by memory.
pub const EVAL_STACK_BYTES: usize = 64 << 20;

/// A query over one of the bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooComplex {
    /// The text is longer than [`MAX_QUERY_BYTES`].
    #[error("query is {len} bytes long; the limit is {limit} bytes")]
    Length {
        /// Length of the text.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Brackets nest deeper than [`MAX_DEPTH`].
    #[error("query nests brackets deeper than the limit of {limit} levels (at byte {offset})")]
    Nesting {
        /// Byte offset of the first bracket over the limit.
        offset: usize,
        /// The limit.
        limit: usize,
    },
    /// More operators than [`MAX_OPERATORS`].
    #[error("query has more operators than the limit of {limit} (at byte {offset})")]
    Operators {
        /// Byte offset of the first operator over the limit.
        offset: usize,
        /// The limit.
        limit: usize,
    },
    /// The expression tree is deeper than [`MAX_DEPTH`].
    #[error("query expression is nested {depth} levels deep, over the limit of {limit} levels")]
    Depth {
        /// Depth of the tree.
        depth: usize,
        /// The limit.
        limit: usize,
    },
}

/// Checks the text of a query against [`MAX_QUERY_BYTES`], [`MAX_DEPTH`] (bracket nesting) and
/// [`MAX_OPERATORS`], skipping string literals and comments. Label matchers' operators (`=~`,
/// `!=`, …) are not counted; a sign in a number such as `1e-3` is, which only makes the bound
/// slightly stricter.
pub fn prescan(input: &str) -> Result<(), TooComplex> {
    if input.len() > MAX_QUERY_BYTES {
        return Err(TooComplex::Length { len: input.len(), limit: MAX_QUERY_BYTES });
    }
    let b = input.as_bytes();
    let (mut depth, mut braces, mut operators) = (0usize, 0usize, 0usize);
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let start = i;
        i += 1;
        match c {
            b'"' | b'\'' | b'`' => {
                while let Some(&d) = b.get(i) {
                    i += 1;
                    if d == b'\\' && c != b'`' {
                        i += 1;
                    } else if d == c {
                        break;
                    }
                }
                continue;
            }
            b'#' => {
                while b.get(i).is_some_and(|&d| d != b'\n') {
                    i += 1;
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                braces += usize::from(c == b'{');
                if depth > MAX_DEPTH {
                    return Err(TooComplex::Nesting { offset: start, limit: MAX_DEPTH });
                }
                continue;
            }
            b')' | b']' | b'}' => {
                depth = depth.saturating_sub(1);
                braces = braces.saturating_sub(usize::from(c == b'}'));
                continue;
            }
            _ => {}
        }
        if braces > 0 {
            continue;
        }
        let is_operator = match c {
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' => true,
            b'=' | b'!' | b'<' | b'>' => {
                // Two-character comparisons count once.
                if b.get(i) == Some(&b'=') {
                    i += 1;
                }
                true
            }
            c if is_ident_byte(c) => {
                while b.get(i).copied().is_some_and(is_ident_byte) {
                    i += 1;
                }
                let word = b.get(start..i).unwrap_or_default();
                ["and", "or", "unless", "atan2"].iter().any(|k| word.eq_ignore_ascii_case(k.as_bytes()))
            }
            _ => false,
        };
        if is_operator {
            operators += 1;
            if operators > MAX_OPERATORS {
                return Err(TooComplex::Operators { offset: start, limit: MAX_OPERATORS });
            }
        }
    }
    Ok(())
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':' || c == b'.'
}

/// Depth of an expression tree (a leaf is 1), computed without recursion.
pub fn depth(expr: &Expr) -> usize {
    let mut max = 0;
    let mut stack: Vec<(&Expr, usize)> = vec![(expr, 1)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        match e {
            Expr::Aggregate(a) => {
                stack.push((&a.expr, d + 1));
                if let Some(p) = &a.param {
                    stack.push((p, d + 1));
                }
            }
            Expr::Unary(u) => stack.push((&u.expr, d + 1)),
            Expr::Binary(b) => {
                stack.push((&b.lhs, d + 1));
                stack.push((&b.rhs, d + 1));
            }
            Expr::Paren(p) => stack.push((&p.expr, d + 1)),
            Expr::Subquery(s) => stack.push((&s.expr, d + 1)),
            Expr::Call(c) => stack.extend(c.args.args.iter().map(|a| (&**a, d + 1))),
            Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::VectorSelector(_)
            | Expr::MatrixSelector(_)
            | Expr::Extension(_) => {}
        }
    }
    max
}

/// Checks a parsed expression's depth against [`MAX_DEPTH`].
pub fn check_ast(expr: &Expr) -> Result<(), TooComplex> {
    match depth(expr) {
        d if d > MAX_DEPTH => Err(TooComplex::Depth { depth: d, limit: MAX_DEPTH }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, inner: &str, close: &str, n: usize) -> String {
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn prescan_bounds_nesting_operators_and_length() {
        assert!(prescan(&nested("abs(", "up", ")", MAX_DEPTH)).is_ok());
        assert_eq!(
            prescan(&nested("(", "1", ")", 50_000)),
            Err(TooComplex::Nesting { offset: MAX_DEPTH, limit: MAX_DEPTH })
        );
        assert!(matches!(prescan(&nested("sum(", "up", ")", 2_100)), Err(TooComplex::Nesting { .. })));
        assert!(matches!(prescan(&format!("{}1", "-".repeat(5_000))), Err(TooComplex::Operators { .. })));
        assert!(prescan(&vec!["up"; MAX_OPERATORS + 1].join(" or ")).is_ok());
        assert!(matches!(prescan(&vec!["up"; MAX_OPERATORS + 2].join(" or ")), Err(TooComplex::Operators { .. })));
        assert!(matches!(prescan(&"x".repeat(MAX_QUERY_BYTES + 1)), Err(TooComplex::Length { .. })));
    }

    #[test]
    fn prescan_skips_strings_comments_and_matchers() {
        let many = "(".repeat(MAX_DEPTH + 1);
        assert!(prescan(&format!("up{{a=\"{many}\"}}")).is_ok());
        assert!(prescan(&format!("up{{a='{many}\\''}}")).is_ok());
        assert!(prescan(&format!("up # {many}\n")).is_ok());
        let matchers = vec!["a!~\"x\""; MAX_OPERATORS + 1].join(",");
        assert!(prescan(&format!("up{{{matchers}}}")).is_ok());
    }

    #[test]
    fn ast_depth_is_bounded() {
        let e = |q: &str| crate::parser::parse_unchecked(q).unwrap();
        assert_eq!(depth(&e("1")), 1);
        assert_eq!(depth(&e("sum(rate(x[5m])) + -abs(y)")), 4);
        let chain = vec!["up"; MAX_DEPTH + 1].join("+");
        assert_eq!(check_ast(&e(&chain)), Err(TooComplex::Depth { depth: MAX_DEPTH + 1, limit: MAX_DEPTH }));
        assert!(check_ast(&e(&vec!["up"; MAX_DEPTH].join("+"))).is_ok());
    }

    /// Queries `MAX_DEPTH` levels deep, of each recursive shape, parse and evaluate on a thread
    /// with `EVAL_STACK_BYTES` of stack.
    #[test]
    fn max_depth_evaluates_within_the_stack() {
        let d = MAX_DEPTH;
        let queries = vec![
            nested("abs(", "up", ")", d - 1),
            nested("sum(", "up", ")", d - 1),
            nested("-(", "up", ")", (d - 1) / 2),
            vec!["up"; d].join(" + "),
            vec!["up"; d].join(" * on (job) group_left "),
            format!("{}up{}", "max_over_time((".repeat((d - 1) / 3), ")[5m:1m])".repeat((d - 1) / 3)),
            format!("{}up{}", "topk(1, ".repeat(d - 1), ")".repeat(d - 1)),
        ];
        let handle = std::thread::Builder::new()
            .stack_size(EVAL_STACK_BYTES)
            .spawn(move || {
                let mut st = crate::engine::mem::MemStorage::default();
                for t in 0..40 {
                    st.add(crate::engine::Labels::from_pairs(&[("__name__", "up"), ("job", "a")]), t * 15_000, 1.0);
                }
                let engine = crate::engine::Engine::default();
                for q in queries {
                    let e = crate::parser::parse(&q).unwrap();
                    assert!(depth(&e) <= MAX_DEPTH && depth(&e) + 3 >= MAX_DEPTH, "{}: {}", depth(&e), &q[..40]);
                    let v = engine.range(&st, &e, 300_000, 600_000, 15_000, None);
                    assert!(v.is_ok(), "{}: {v:?}", &q[..40]);
                }
            })
            .unwrap();
        handle.join().unwrap();
    }
}
