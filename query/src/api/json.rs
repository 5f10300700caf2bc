//! Prometheus's JSON envelope and result encoding, written by hand so that sample values are
//! Go-formatted strings and timestamps are `sec.mmm` numbers exactly as Prometheus emits them.

use std::time::Instant;

use crate::engine::histogram;
use crate::engine::{write_float, write_time, FloatHistogram, Labels, QueryValue};
use crate::error::QueryError;

/// Samples encoded between two looks at the clock.
const SAMPLES_PER_DEADLINE_CHECK: usize = 4096;

/// Counts encoded samples and errors once the deadline has passed.
struct Clock {
    deadline: Instant,
    since_check: usize,
}

impl Clock {
    fn tick(&mut self, samples: usize) -> Result<(), QueryError> {
        self.since_check += samples;
        if self.since_check >= SAMPLES_PER_DEADLINE_CHECK {
            self.since_check = 0;
            if Instant::now() > self.deadline {
                return Err(QueryError::Timeout("result encoding"));
            }
        }
        Ok(())
    }
}

/// Appends `s` as a JSON string.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a label set as a JSON object (keys in label order, i.e. sorted).
pub fn push_labels(out: &mut String, l: &Labels) {
    out.push('{');
    for (i, (n, v)) in l.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, n);
        out.push(':');
        push_str(out, v);
    }
    out.push('}');
}

fn push_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    write_time(out, t);
    out.push_str(",\"");
    write_float(out, v);
    out.push_str("\"]");
}

/// `[t, {"count":"…","sum":"…","buckets":[[rule,"lower","upper","count"],…]}]`, as Prometheus
/// writes a histogram sample: populated buckets from the lowest up, each with its boundary rule
/// (0: lower bound open, 1: upper bound open, 3: both closed, the zero bucket).
fn push_histogram_point(out: &mut String, t: i64, h: &FloatHistogram) {
    out.push('[');
    write_time(out, t);
    out.push_str(",{\"count\":\"");
    write_float(out, h.count);
    out.push_str("\",\"sum\":\"");
    write_float(out, h.sum);
    out.push('"');
    let buckets: Vec<_> = histogram::all_buckets(h, false).into_iter().filter(|b| b.count != 0.0).collect();
    if !buckets.is_empty() {
        out.push_str(",\"buckets\":[");
        for (i, b) in buckets.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let zero = h.zero_count > 0.0 && b.lower == -h.zero_threshold && b.upper == h.zero_threshold;
            let rule = if zero {
                3
            } else if b.upper <= 0.0 {
                1
            } else {
                0
            };
            out.push('[');
            out.push(char::from(b'0' + rule));
            for v in [b.lower, b.upper, b.count] {
                out.push_str(",\"");
                write_float(out, v);
                out.push('"');
            }
            out.push(']');
        }
        out.push(']');
    }
    out.push_str("}]");
}

/// `{"resultType":…,"result":…}` of a query result; a timeout error once `deadline` has passed.
pub fn query_data(v: &QueryValue, deadline: Instant) -> Result<String, QueryError> {
    let mut clock = Clock { deadline, since_check: 0 };
    let mut out = String::with_capacity(256);
    match v {
        QueryValue::Scalar { t, v } => {
            out.push_str("{\"resultType\":\"scalar\",\"result\":");
            push_point(&mut out, *t, *v);
        }
        QueryValue::String { t, s } => {
            out.push_str("{\"resultType\":\"string\",\"result\":[");
            write_time(&mut out, *t);
            out.push(',');
            push_str(&mut out, s);
            out.push(']');
        }
        QueryValue::Vector { t, samples } => {
            out.push_str("{\"resultType\":\"vector\",\"result\":[");
            for (i, s) in samples.iter().enumerate() {
                clock.tick(1)?;
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(&mut out, &s.labels);
                match &s.h {
                    Some(h) => {
                        out.push_str(",\"histogram\":");
                        push_histogram_point(&mut out, *t, h);
                    }
                    None => {
                        out.push_str(",\"value\":");
                        push_point(&mut out, *t, s.v);
                    }
                }
                out.push('}');
            }
            out.push(']');
        }
        QueryValue::Matrix(series) => {
            out.push_str("{\"resultType\":\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                clock.tick(s.len().max(1))?;
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(&mut out, &s.labels);
                if !s.points.is_empty() || s.histograms.is_empty() {
                    out.push_str(",\"values\":[");
                    for (j, &(t, v)) in s.points.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        push_point(&mut out, t, v);
                    }
                    out.push(']');
                }
                if !s.histograms.is_empty() {
                    out.push_str(",\"histograms\":[");
                    for (j, (t, h)) in s.histograms.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        push_histogram_point(&mut out, *t, h);
                    }
                    out.push(']');
                }
                out.push('}');
            }
            out.push(']');
        }
    }
    out.push('}');
    Ok(out)
}

/// Where a query's time went, for its `stats`.
pub struct Timings {
    /// From the request's arrival to the start of its evaluation (waiting for an evaluation thread).
    pub queue: std::time::Duration,
    /// Parsing and checking the query.
    pub preparation: std::time::Duration,
    /// Evaluating, apart from sorting the result.
    pub inner_eval: std::time::Duration,
    /// Sorting the result's series.
    pub sort: std::time::Duration,
}

/// Adds Prometheus's `"stats"` object (timings in seconds, sample counts, and with `per_step` the
/// counts of each step) to encoded query `data` (an object ending in `}`).
pub fn push_stats(data: &mut String, t: &Timings, s: &crate::engine::EvalStats, per_step: bool) {
    if data.pop() != Some('}') {
        return;
    }
    let eval_total = t.preparation + t.inner_eval + t.sort;
    let secs = |d: std::time::Duration| serde_json::Value::from(d.as_secs_f64()).to_string();
    let mut steps = String::new();
    if let Some(counts) = s.per_step.as_ref().filter(|_| per_step) {
        steps.push_str("\"totalQueryableSamplesPerStep\":[");
        for (i, &(t, n)) in counts.iter().enumerate() {
            if i > 0 {
                steps.push(',');
            }
            steps.push('[');
            write_time(&mut steps, t);
            steps.push_str(&format!(",{n}]"));
        }
        steps.push_str("],");
    }
    data.push_str(&format!(
        ",\"stats\":{{\"timings\":{{\"evalTotalTime\":{},\"resultSortTime\":{},\"queryPreparationTime\":{},\
         \"innerEvalTime\":{},\"execQueueTime\":{},\"execTotalTime\":{}}},\"samples\":{{{steps}\"totalQueryableSamples\":{},\
         \"peakSamples\":{}}}}}}}",
        secs(eval_total),
        secs(t.sort),
        secs(t.preparation),
        secs(t.inner_eval),
        secs(t.queue),
        secs(t.queue + eval_total),
        s.queryable_samples,
        s.peak_samples,
    ));
}

/// A success envelope around already-encoded `data`.
pub fn success(data: &str, warnings: &[String]) -> String {
    let mut out = String::with_capacity(data.len() + 64);
    out.push_str("{\"status\":\"success\",\"data\":");
    out.push_str(data);
    // PromQL's infos are listed apart from its warnings, as Prometheus does.
    let (infos, warnings): (Vec<&String>, Vec<&String>) = warnings.iter().partition(|w| w.starts_with("PromQL info:"));
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if list.is_empty() {
            continue;
        }
        out.push_str(",\"");
        out.push_str(key);
        out.push_str("\":[");
        for (i, w) in list.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_str(&mut out, w);
        }
        out.push(']');
    }
    out.push('}');
    out
}

/// An error envelope.
pub fn error(error_type: &str, msg: &str) -> String {
    let mut out = String::from("{\"status\":\"error\",\"errorType\":");
    push_str(&mut out, error_type);
    out.push_str(",\"error\":");
    push_str(&mut out, msg);
    out.push('}');
    out
}

/// A JSON array of strings.
pub fn string_array<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(&mut out, s.as_ref());
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::engine::{Sample, Series};
    use tsdb::histogram::Span;

    /// 1 observation in (-1, -0.5], 1 in the zero bucket, 1 in (0.5, 1], 2 in (1, 2].
    fn hist() -> FloatHistogram {
        FloatHistogram {
            count: 4.0,
            sum: 5.0,
            zero_count: 1.0,
            zero_threshold: 0.001,
            positive_spans: vec![Span { offset: 0, length: 3 }],
            positive_buckets: vec![1.0, 2.0, 0.0],
            negative_spans: vec![Span { offset: 0, length: 1 }],
            negative_buckets: vec![1.0],
            ..FloatHistogram::default()
        }
    }

    const HIST_JSON: &str = r#"{"count":"4","sum":"5","buckets":[[1,"-1","-0.5","1"],[3,"-0.001","0.001","1"],[0,"0.5","1","1"],[0,"1","2","2"]]}"#;

    fn deadline() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn histogram_samples_are_written_like_prometheus() {
        let labels = Arc::new(Labels::from_pairs(&[("a", "b")]));
        let v = QueryValue::Vector { t: 1500, samples: vec![Sample::histogram(Arc::clone(&labels), hist())] };
        let got = query_data(&v, deadline()).unwrap_or_else(|e| panic!("{e}"));
        let want =
            format!(r#"{{"resultType":"vector","result":[{{"metric":{{"a":"b"}},"histogram":[1.500,{HIST_JSON}]}}]}}"#);
        assert_eq!(got, want);

        let empty = FloatHistogram::default();
        let m = QueryValue::Matrix(vec![Series {
            labels,
            points: Vec::new(),
            histograms: vec![(1000, hist()), (2000, empty)],
        }]);
        let got = query_data(&m, deadline()).unwrap_or_else(|e| panic!("{e}"));
        let want = format!(
            r#"{{"resultType":"matrix","result":[{{"metric":{{"a":"b"}},"histograms":[[1,{HIST_JSON}],[2,{{"count":"0","sum":"0"}}]]}}]}}"#
        );
        assert_eq!(got, want);
    }
}

#[cfg(test)]
mod envelope_tests {
    use super::success;

    #[test]
    fn infos_are_listed_apart_from_warnings() {
        let notes = vec![
            "PromQL info: ignored histogram in max aggregation".to_string(),
            "PromQL warning: encountered a mix of histograms and floats for aggregation".to_string(),
        ];
        assert_eq!(
            success("1", &notes),
            r#"{"status":"success","data":1,"warnings":["PromQL warning: encountered a mix of histograms and floats for aggregation"],"infos":["PromQL info: ignored histogram in max aggregation"]}"#
        );
        assert_eq!(success("1", &[]), r#"{"status":"success","data":1}"#);
    }
}
