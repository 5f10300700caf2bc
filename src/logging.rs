//! Log lines as Prometheus writes them: `--log.format=logfmt` gives
//! `ts=… caller=file.rs:12 level=info msg="…" key=value`, `--log.format=json` one flat JSON object per
//! line with the same keys. Filtering (`--log.level`, `RUST_LOG`) is tracing-subscriber's.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How each event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Logfmt,
    Json,
}

/// Installs the global subscriber: `level` as the filter unless `RUST_LOG` is set, lines on stderr.
pub fn init(level: &str, format: &str) -> anyhow::Result<()> {
    let format = match format {
        "logfmt" => Format::Logfmt,
        "json" => Format::Json,
        other => anyhow::bail!("invalid --log.format {other:?} (logfmt or json)"),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .map_err(|e| anyhow::anyhow!("invalid --log.level {level:?}: {e}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(format)
        .init();
    Ok(())
}

/// The key/value pairs of one event, in order, `message` renamed `msg`.
#[derive(Default)]
struct Fields(Vec<(&'static str, String)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.push(field, format!("{value:?}"));
    }
}

impl Fields {
    fn push(&mut self, field: &Field, value: String) {
        let name = match field.name() {
            "message" => "msg",
            n => n,
        };
        self.0.push((name, value));
    }
}

fn level_name(l: &Level) -> &'static str {
    match *l {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// A logfmt value: bare when it has no space, `=`, `"` or control character, else quoted with `"`
/// and `\` escaped.
fn push_logfmt_value(out: &mut String, v: &str) {
    let bare = !v.is_empty() && !v.chars().any(|c| c == ' ' || c == '=' || c == '"' || c.is_control());
    if bare {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Format {
    /// The line for an event with these fields (without the newline).
    fn line(self, ts: &str, caller: &str, level: &str, fields: &[(&'static str, String)]) -> String {
        let head = [("ts", ts), ("caller", caller), ("level", level)];
        let all = head.into_iter().chain(fields.iter().map(|(k, v)| (*k, v.as_str())));
        match self {
            Format::Logfmt => {
                let mut out = String::new();
                for (i, (k, v)) in all.enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    out.push_str(k);
                    out.push('=');
                    push_logfmt_value(&mut out, v);
                }
                out
            }
            Format::Json => {
                let mut m = serde_json::Map::new();
                for (k, v) in all {
                    m.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
                }
                serde_json::Value::Object(m).to_string()
            }
        }
    }
}

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        let meta = event.metadata();
        let file = meta.file().map_or("", |f| f.rsplit('/').next().unwrap_or(f));
        let caller = match meta.line() {
            Some(l) => format!("{file}:{l}"),
            None => meta.target().to_owned(),
        };
        let mut fields = Fields::default();
        event.record(&mut fields);
        writeln!(w, "{}", self.line(&ts, &caller, level_name(meta.level()), &fields.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_quotes_only_what_needs_it() {
        let fields = vec![("msg", "TSDB ready".to_owned()), ("series", "3".to_owned()), ("e", "a\"b\\".to_owned())];
        assert_eq!(
            Format::Logfmt.line("2026-01-01T00:00:00Z", "server.rs:4", "info", &fields),
            r#"ts=2026-01-01T00:00:00Z caller=server.rs:4 level=info msg="TSDB ready" series=3 e="a\"b\\""#
        );
        let mut empty = String::new();
        push_logfmt_value(&mut empty, "");
        assert_eq!(empty, "\"\"");
    }

    #[test]
    fn json_is_one_flat_object() {
        let line = Format::Json.line("t", "c", "warn", &[("msg", "m".to_owned()), ("n", "1".to_owned())]);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v, serde_json::json!({"ts": "t", "caller": "c", "level": "warn", "msg": "m", "n": "1"}));
    }
}
