//! Binary operators: arithmetic, comparison (with and without `bool`), set operators, and vector
//! matching with `on`/`ignoring`/`group_left`/`group_right` (Prometheus's `VectorBinop`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use promql_parser::parser::ast::{LabelModifier, VectorMatchCardinality};
use promql_parser::parser::BinaryExpr;

use super::annotations::{self, Annotations};
use super::histogram;
use super::value::{FloatHistogram, LabelsBuilder};
use super::{check_duplicates, drop_name_cached, Evaluator, Labels, Sample, Val, METRIC_NAME};
use crate::error::{QueryError, Result};

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(s: &str) -> Result<Op> {
        Ok(match s {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => return Err(QueryError::unsupported(format!("binary operator {other:?}"))),
        })
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Mod => "%",
            Op::Pow => "^",
            Op::Atan2 => "atan2",
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Lt => "<",
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::And => "and",
            Op::Or => "or",
            Op::Unless => "unless",
        }
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    fn is_set(self) -> bool {
        matches!(self, Op::And | Op::Or | Op::Unless)
    }
}

/// Applies `op`; the bool says whether a comparison holds (always true for arithmetic).
/// An operation with a histogram on at least one side, as Prometheus evaluates it: `+` and `-`
/// between two histograms, `*` by a float on either side, `/` by a float on the right, and `==`/`!=`
/// between two histograms (keeping the left value). `None` drops the element: every other
/// combination, and histograms whose buckets cannot be combined.
fn hist_binop(
    op: Op,
    (lv, lh): (f64, Option<&FloatHistogram>),
    (rv, rh): (f64, Option<&FloatHistogram>),
) -> Option<(Option<FloatHistogram>, bool)> {
    match (op, lh, rh) {
        (Op::Add | Op::Sub, Some(l), Some(r)) => {
            let mut h = l.clone();
            let res = if op == Op::Add { histogram::add(&mut h, r) } else { histogram::sub(&mut h, r) };
            res.ok()?;
            histogram::compact(&mut h);
            Some((Some(h), true))
        }
        (Op::Mul, Some(l), None) => {
            let mut h = l.clone();
            histogram::mul(&mut h, rv);
            Some((Some(h), true))
        }
        (Op::Mul, None, Some(r)) => {
            let mut h = r.clone();
            histogram::mul(&mut h, lv);
            Some((Some(h), true))
        }
        (Op::Div, Some(l), None) => {
            let mut h = l.clone();
            histogram::div(&mut h, rv);
            Some((Some(h), true))
        }
        (Op::Eq, Some(l), Some(r)) => Some((Some(l.clone()), histogram::equals(l, r))),
        (Op::Ne, Some(l), Some(r)) => Some((Some(l.clone()), !histogram::equals(l, r))),
        _ => None,
    }
}

/// The note for an operation [`hist_binop`] dropped.
fn incompatible(op: Op, lhs_hist: bool, rhs_hist: bool) -> String {
    let kind = |h: bool| if h { "histogram" } else { "float" };
    annotations::incompatible_types_in_binop(op.symbol(), kind(lhs_hist), kind(rhs_hist))
}

pub(crate) fn elem_binop(op: Op, l: f64, r: f64) -> (f64, bool) {
    match op {
        Op::Add => (l + r, true),
        Op::Sub => (l - r, true),
        Op::Mul => (l * r, true),
        Op::Div => (l / r, true),
        Op::Mod => (l % r, true),
        Op::Pow => (l.powf(r), true),
        Op::Atan2 => (l.atan2(r), true),
        Op::Eq => (l, l == r),
        Op::Ne => (l, l != r),
        Op::Gt => (l, l > r),
        Op::Lt => (l, l < r),
        Op::Ge => (l, l >= r),
        Op::Le => (l, l <= r),
        Op::And | Op::Or | Op::Unless => (l, true),
    }
}

struct Matching {
    card: VectorMatchCardinality,
    on: bool,
    names: Vec<String>,
}

pub(crate) fn eval_binary(ev: &mut Evaluator<'_>, b: &BinaryExpr) -> Result<Val> {
    let op = Op::parse(&b.op.to_string())?;
    let return_bool = b.return_bool();
    if let Some(m) = &b.modifier {
        if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
            return Err(QueryError::unsupported("fill modifiers"));
        }
    }
    let lhs = ev.eval(&b.lhs)?;
    let rhs = ev.eval(&b.rhs)?;
    match (lhs, rhs) {
        (Val::Scalar(l), Val::Scalar(r)) => Ok(Val::Scalar(
            l.iter()
                .zip(r.iter())
                .map(|(&a, &b)| {
                    let (v, keep) = elem_binop(op, a, b);
                    if op.is_comparison() {
                        if keep {
                            1.0
                        } else {
                            0.0
                        }
                    } else {
                        v
                    }
                })
                .collect(),
        )),
        (Val::Vector(l), Val::Scalar(r)) => vector_scalar(ev, op, l, &r, false, return_bool),
        (Val::Scalar(l), Val::Vector(r)) => vector_scalar(ev, op, r, &l, true, return_bool),
        (Val::Vector(l), Val::Vector(r)) => {
            let matching = match &b.modifier {
                None => Matching { card: VectorMatchCardinality::OneToOne, on: false, names: Vec::new() },
                Some(m) => {
                    let (on, names) = match &m.matching {
                        Some(LabelModifier::Include(ls)) => (true, ls.labels.clone()),
                        Some(LabelModifier::Exclude(ls)) => (false, ls.labels.clone()),
                        None => (false, Vec::new()),
                    };
                    Matching { card: m.card.clone(), on, names }
                }
            };
            let mut out = Vec::with_capacity(l.len());
            let mut cache = HashMap::new();
            for (lv, rv) in l.into_iter().zip(r) {
                ev.check_timeout()?;
                let res = if op.is_set() {
                    set_op(op, lv, rv, &matching)
                } else {
                    let v = vector_binop(op, &lv, &rv, &matching, return_bool, &mut cache, &ev.annotations)?;
                    check_duplicates(&v)?;
                    v
                };
                out.push(res);
            }
            Ok(Val::Vector(out))
        }
        _ => Err(QueryError::BadData("binary operators are only allowed between scalars and instant vectors".into())),
    }
}

fn vector_scalar(
    ev: &Evaluator<'_>,
    op: Op,
    vecs: Vec<Vec<Sample>>,
    scalars: &[f64],
    swap: bool,
    return_bool: bool,
) -> Result<Val> {
    let mut cache = HashMap::new();
    let drop = !op.is_comparison() || return_bool;
    let mut out = Vec::with_capacity(vecs.len());
    for (vec, &s) in vecs.into_iter().zip(scalars) {
        ev.check_timeout()?;
        let mut res = Vec::with_capacity(vec.len());
        for smp in vec {
            let (l, r) = if swap { (s, smp.v) } else { (smp.v, s) };
            if let Some(h) = smp.h.as_deref() {
                let (lh, rh) = if swap { (None, Some(h)) } else { (Some(h), None) };
                let Some((h, keep)) = hist_binop(op, (l, lh), (r, rh)) else {
                    ev.annotations.add(incompatible(op, lh.is_some(), rh.is_some()));
                    continue;
                };
                if return_bool || !keep {
                    continue;
                }
                let labels = if drop { drop_name_cached(&mut cache, &smp.labels) } else { smp.labels };
                res.push(Sample { labels, v: 0.0, h: h.map(Box::new) });
                continue;
            }
            let (mut v, keep) = elem_binop(op, l, r);
            // A comparison keeps the vector element's value even when the scalar is on the left.
            if op.is_comparison() && swap {
                v = r;
            }
            if return_bool {
                v = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            let labels = if drop { drop_name_cached(&mut cache, &smp.labels) } else { smp.labels };
            res.push(Sample::float(labels, v));
        }
        check_duplicates(&res)?;
        out.push(res);
    }
    Ok(Val::Vector(out))
}

fn signature(l: &Labels, m: &Matching) -> String {
    l.signature(&m.names, m.on)
}

fn set_op(op: Op, lhs: Vec<Sample>, rhs: Vec<Sample>, m: &Matching) -> Vec<Sample> {
    match op {
        Op::And => {
            if lhs.is_empty() || rhs.is_empty() {
                return Vec::new();
            }
            let sigs: HashSet<String> = rhs.iter().map(|s| signature(&s.labels, m)).collect();
            lhs.into_iter().filter(|s| sigs.contains(&signature(&s.labels, m))).collect()
        }
        Op::Or => {
            if rhs.is_empty() {
                return lhs;
            }
            let sigs: HashSet<String> = lhs.iter().map(|s| signature(&s.labels, m)).collect();
            let mut out = lhs;
            out.extend(rhs.into_iter().filter(|s| !sigs.contains(&signature(&s.labels, m))));
            out
        }
        _ => {
            if rhs.is_empty() {
                return lhs;
            }
            let sigs: HashSet<String> = rhs.iter().map(|s| signature(&s.labels, m)).collect();
            lhs.into_iter().filter(|s| !sigs.contains(&signature(&s.labels, m))).collect()
        }
    }
}

fn vector_binop(
    op: Op,
    lhs: &[Sample],
    rhs: &[Sample],
    m: &Matching,
    return_bool: bool,
    cache: &mut HashMap<(*const Labels, *const Labels), Arc<Labels>>,
    notes: &Annotations,
) -> Result<Vec<Sample>> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let one_to_many = matches!(m.card, VectorMatchCardinality::OneToMany(_));
    let (lhs, rhs) = if one_to_many { (rhs, lhs) } else { (lhs, rhs) };
    let mut right: HashMap<String, &Sample> = HashMap::with_capacity(rhs.len());
    for rs in rhs {
        let sig = signature(&rs.labels, m);
        if let Some(dup) = right.get(&sig) {
            let side = if one_to_many { "left" } else { "right" };
            let matched = if m.on { rs.labels.only(&m.names) } else { rs.labels.without(&m.names).without_name() };
            return Err(QueryError::exec(format!(
                "found duplicate series for the match group {matched} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                rs.labels, dup.labels
            )));
        }
        right.insert(sig, rs);
    }
    let include: &[String] = match &m.card {
        VectorMatchCardinality::ManyToOne(ls) | VectorMatchCardinality::OneToMany(ls) => &ls.labels,
        _ => &[],
    };
    let one_to_one = matches!(m.card, VectorMatchCardinality::OneToOne);
    let mut matched: HashMap<String, HashSet<Arc<Labels>>> = HashMap::new();
    let mut out = Vec::new();
    for ls in lhs {
        let sig = signature(&ls.labels, m);
        let Some(rs) = right.get(&sig) else { continue };
        let (sl, sr) = if one_to_many { (*rs, ls) } else { (ls, *rs) };
        let (vl, vr) = (sl.v, sr.v);
        let mut h = None;
        let (mut v, keep) = if sl.h.is_some() || sr.h.is_some() {
            let Some((hv, keep)) = hist_binop(op, (vl, sl.h.as_deref()), (vr, sr.h.as_deref())) else {
                notes.add(incompatible(op, sl.h.is_some(), sr.h.is_some()));
                continue;
            };
            h = hv;
            (0.0, keep)
        } else {
            elem_binop(op, vl, vr)
        };
        if return_bool {
            h = None;
            v = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let key = (Arc::as_ptr(&ls.labels), Arc::as_ptr(&rs.labels));
        let labels = match cache.get(&key) {
            Some(l) => Arc::clone(l),
            None => {
                let l = Arc::new(result_labels(&ls.labels, &rs.labels, op, m, include, one_to_one, return_bool));
                cache.insert(key, Arc::clone(&l));
                l
            }
        };
        let entry = matched.entry(sig);
        match entry {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if one_to_one {
                    return Err(QueryError::exec(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                    ));
                }
                if !e.get_mut().insert(Arc::clone(&labels)) {
                    return Err(QueryError::exec(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    ));
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                let mut set = HashSet::new();
                if !one_to_one {
                    set.insert(Arc::clone(&labels));
                }
                e.insert(set);
            }
        }
        out.push(Sample { labels, v, h: h.map(Box::new) });
    }
    Ok(out)
}

fn result_labels(
    l: &Labels,
    r: &Labels,
    op: Op,
    m: &Matching,
    include: &[String],
    one_to_one: bool,
    return_bool: bool,
) -> Labels {
    let mut b = LabelsBuilder::new(l.clone());
    if !op.is_comparison() || return_bool {
        b.del(METRIC_NAME);
    }
    if one_to_one {
        if m.on {
            let keep: Vec<String> =
                l.iter().filter(|(n, _)| !m.names.iter().any(|x| x == n)).map(|(n, _)| n.to_string()).collect();
            for n in keep {
                b.del(&n);
            }
        } else {
            for n in &m.names {
                b.del(n);
            }
        }
    }
    for n in include {
        match r.get(n) {
            Some(v) => b.set(n, v),
            None => b.del(n),
        };
    }
    b.build()
}
