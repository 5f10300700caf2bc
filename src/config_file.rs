//! The YAML configuration file in Prometheus's shape (`--config.file`): parsed with line numbers and
//! checked key by key. Strata reads `global.external_labels`, `global.metric_name_validation_scheme` and
//! `storage.tsdb.out_of_order_time_window` and accepts `storage.exemplars.max_exemplars`; the sections only a scraper or rule evaluator uses
//! (`scrape_configs`, `rule_files`, `alerting`, `remote_write`, `remote_read`, ...) are accepted and
//! reported as ignored. Any other key is an error naming the key and its line.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};
use tsdb::labels::NameValidation;

/// A configuration file that cannot be used; every variant names where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: line {line}, column {col}: invalid YAML: {msg}")]
    Yaml { path: String, line: usize, col: usize, msg: String },
    #[error("{path}: line {line}: unknown key {key:?}{hint}")]
    UnknownKey { path: String, line: usize, key: String, hint: String },
    #[error("{path}: line {line}: {key:?} is not implemented by Strata")]
    NotImplemented { path: String, line: usize, key: String },
    #[error("{path}: line {line}: {key:?}: {msg}")]
    BadValue { path: String, line: usize, key: String, msg: String },
}

/// What Strata takes from the configuration file.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct FileConfig {
    /// `storage.tsdb.out_of_order_time_window`, if set.
    pub ooo_time_window: Option<Duration>,
    /// `global.external_labels`, sorted by name.
    pub external_labels: BTreeMap<String, String>,
    /// `global.metric_name_validation_scheme`: which names new series may have (Prometheus 3's default,
    /// UTF-8, when unset or empty). Also the rule `global.external_labels`' names are checked against.
    pub name_validation: NameValidation,
    /// Keys accepted but without effect in Strata, with their line, for a warning each.
    pub ignored: Vec<(String, usize)>,
}

/// Sections a scraper, rule evaluator or remote-storage client reads; Strata has none of those.
const SCRAPER_SECTIONS: &[&str] =
    &["scrape_configs", "scrape_config_files", "rule_files", "alerting", "remote_write", "remote_read"];

/// Sections of Prometheus's file Strata knows but does not implement: an error, since a deployment
/// relying on them would silently lose what they do.
const UNIMPLEMENTED_SECTIONS: &[&str] = &["tracing", "otlp", "runtime"];

/// `global` keys a scraper or rule evaluator uses.
const SCRAPER_GLOBAL_KEYS: &[&str] = &[
    "scrape_interval",
    "scrape_timeout",
    "evaluation_interval",
    "body_size_limit",
    "sample_limit",
    "label_limit",
    "label_name_length_limit",
    "label_value_length_limit",
    "target_limit",
    "keep_dropped_targets",
    "scrape_protocols",
];

/// Reads and checks the file at `path`.
pub fn load(path: &Path) -> Result<FileConfig, ConfigFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read { path: shown.clone(), source })?;
    parse(&shown, &text)
}

/// Checks the YAML `text`; `path` is only used in messages.
pub fn parse(path: &str, text: &str) -> Result<FileConfig, ConfigFileError> {
    let docs = load_yaml(path, text)?;
    let mut walk = Walk { path, out: FileConfig::default() };
    let Some(root) = docs.first() else { return Ok(walk.out) };
    if docs.len() > 1 {
        return Err(walk.bad(&docs[1], "", "more than one YAML document"));
    }
    walk.root(root)?;
    Ok(walk.out)
}

/// Walks a YAML tree with the file's path for messages, filling `out`; the helpers name keys and
/// lines the same way for every file Strata reads (this module's and [`crate::web_config`]'s).
pub(crate) struct Walk<'a, T> {
    pub path: &'a str,
    pub out: T,
}

/// A mapping's entries: the key with its prefix (`a.b.c`), the value, the key's line.
pub(crate) type Entries<'n, 'i> = Vec<(String, &'n MarkedYaml<'i>, usize)>;

/// Parses `text` into YAML documents, a syntax error naming its line and column.
pub(crate) fn load_yaml<'i>(path: &str, text: &'i str) -> Result<Vec<MarkedYaml<'i>>, ConfigFileError> {
    MarkedYaml::load_from_str(text).map_err(|e| ConfigFileError::Yaml {
        path: path.to_owned(),
        line: e.marker().line(),
        col: e.marker().col() + 1,
        msg: e.info().to_owned(),
    })
}

impl<T> Walk<'_, T> {
    pub fn bad(&self, node: &MarkedYaml<'_>, key: &str, msg: &str) -> ConfigFileError {
        ConfigFileError::BadValue {
            path: self.path.to_owned(),
            line: node.span.start.line(),
            key: key.to_owned(),
            msg: msg.to_owned(),
        }
    }

    pub fn unknown(&self, key: String, line: usize, known: &[&str]) -> ConfigFileError {
        let last = key.rsplit('.').next().unwrap_or(&key);
        let hint = known
            .iter()
            .filter(|k| similar(last, k))
            .map(|k| format!(" (did you mean {k:?}?)"))
            .next()
            .unwrap_or_default();
        ConfigFileError::UnknownKey { path: self.path.to_owned(), line, key, hint }
    }

    /// The entries of a mapping at `prefix`, keys as strings with their line; `null` (a key with
    /// nothing under it) is an empty mapping.
    pub fn mapping<'n, 'i>(&self, node: &'n MarkedYaml<'i>, prefix: &str) -> Result<Entries<'n, 'i>, ConfigFileError> {
        match &node.data {
            YamlData::Mapping(m) => m
                .iter()
                .map(|(k, v)| match scalar_text(k) {
                    Some(name) => {
                        let full = if prefix.is_empty() { name } else { format!("{prefix}.{name}") };
                        Ok((full, v, k.span.start.line()))
                    }
                    None => Err(self.bad(k, prefix, "keys must be strings")),
                })
                .collect(),
            YamlData::Value(Scalar::Null) => Ok(Vec::new()),
            _ => Err(self.bad(node, if prefix.is_empty() { "(top level)" } else { prefix }, "expected a mapping")),
        }
    }

    /// An error for a key Strata knows but does not implement.
    pub fn not_implemented(&self, key: String, line: usize) -> ConfigFileError {
        ConfigFileError::NotImplemented { path: self.path.to_owned(), line, key }
    }
}

impl Walk<'_, FileConfig> {
    fn root(&mut self, node: &MarkedYaml<'_>) -> Result<(), ConfigFileError> {
        for (key, value, line) in self.mapping(node, "")? {
            match key.as_str() {
                "global" => self.global(value)?,
                "storage" => self.storage(value)?,
                k if SCRAPER_SECTIONS.contains(&k) => self.out.ignored.push((key, line)),
                k if UNIMPLEMENTED_SECTIONS.contains(&k) => {
                    return Err(ConfigFileError::NotImplemented { path: self.path.to_owned(), line, key })
                }
                _ => {
                    let known: Vec<&str> = ["global", "storage"]
                        .iter()
                        .chain(SCRAPER_SECTIONS)
                        .chain(UNIMPLEMENTED_SECTIONS)
                        .copied()
                        .collect();
                    return Err(self.unknown(key, line, &known));
                }
            }
        }
        Ok(())
    }

    fn global(&mut self, node: &MarkedYaml<'_>) -> Result<(), ConfigFileError> {
        // The scheme first: it decides which external label names are valid, wherever it is written.
        for (key, value, _) in self.mapping(node, "global")? {
            if key == "global.metric_name_validation_scheme" {
                self.out.name_validation = match scalar_text(value).as_deref() {
                    Some("") => NameValidation::default(),
                    Some(name) => match NameValidation::from_name(name) {
                        Some(scheme) => scheme,
                        None => return Err(self.bad(value, &key, "expected \"utf8\" or \"legacy\"")),
                    },
                    None => return Err(self.bad(value, &key, "expected \"utf8\" or \"legacy\"")),
                };
            }
        }
        for (key, value, line) in self.mapping(node, "global")? {
            let name = key.trim_start_matches("global.");
            match name {
                "external_labels" => self.external_labels(value)?,
                "metric_name_validation_scheme" => {}
                "scrape_interval" | "scrape_timeout" | "evaluation_interval" => {
                    self.duration(value, &key)?;
                    self.out.ignored.push((key, line));
                }
                n if SCRAPER_GLOBAL_KEYS.contains(&n) => self.out.ignored.push((key, line)),
                "query_log_file" => {
                    return Err(ConfigFileError::NotImplemented { path: self.path.to_owned(), line, key })
                }
                _ => {
                    let known: Vec<&str> = ["external_labels", "metric_name_validation_scheme", "query_log_file"]
                        .iter()
                        .chain(SCRAPER_GLOBAL_KEYS)
                        .copied()
                        .collect();
                    return Err(self.unknown(key, line, &known));
                }
            }
        }
        Ok(())
    }

    fn external_labels(&mut self, node: &MarkedYaml<'_>) -> Result<(), ConfigFileError> {
        for (key, value, _) in self.mapping(node, "global.external_labels")? {
            let name = key.trim_start_matches("global.external_labels.").to_owned();
            if !self.out.name_validation.is_valid_label_name(&name) {
                let msg = match self.out.name_validation {
                    NameValidation::Utf8 => "not a valid label name (empty)",
                    NameValidation::Legacy => "not a valid label name under the legacy scheme ([a-zA-Z_][a-zA-Z0-9_]*)",
                };
                return Err(self.bad(value, &key, msg));
            }
            let Some(v) = scalar_text(value) else {
                return Err(self.bad(value, &key, "a label value must be a string"));
            };
            if v.is_empty() {
                // Prometheus drops empty external labels: a label with an empty value is no label.
                continue;
            }
            self.out.external_labels.insert(name, v);
        }
        Ok(())
    }

    fn storage(&mut self, node: &MarkedYaml<'_>) -> Result<(), ConfigFileError> {
        for (key, value, line) in self.mapping(node, "storage")? {
            match key.as_str() {
                "storage.tsdb" => {
                    for (key, value, line) in self.mapping(value, "storage.tsdb")? {
                        match key.as_str() {
                            "storage.tsdb.out_of_order_time_window" => {
                                self.out.ooo_time_window = Some(self.duration(value, &key)?);
                            }
                            _ => return Err(self.unknown(key, line, &["out_of_order_time_window"])),
                        }
                    }
                }
                "storage.exemplars" => {
                    for (key, value, line) in self.mapping(value, "storage.exemplars")? {
                        match key.as_str() {
                            "storage.exemplars.max_exemplars" => {
                                match &value.data {
                                    YamlData::Value(Scalar::Integer(n)) if *n >= 0 => {}
                                    _ => return Err(self.bad(value, &key, "expected a non-negative integer")),
                                }
                                self.out.ignored.push((key, line));
                            }
                            _ => return Err(self.unknown(key, line, &["max_exemplars"])),
                        }
                    }
                }
                _ => return Err(self.unknown(key, line, &["tsdb", "exemplars"])),
            }
        }
        Ok(())
    }

    fn duration(&self, node: &MarkedYaml<'_>, key: &str) -> Result<Duration, ConfigFileError> {
        let Some(text) = scalar_text(node) else {
            return Err(self.bad(node, key, "expected a duration such as 30m or 1h"));
        };
        crate::config::parse_duration(&text).map_err(|e| self.bad(node, key, &e.to_string()))
    }
}

/// A scalar's text (strings as they are; numbers and booleans as written), `None` for anything else.
pub(crate) fn scalar_text(node: &MarkedYaml<'_>) -> Option<String> {
    match &node.data {
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Value(Scalar::Integer(n)) => Some(n.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Representation(s, _, _) => Some(s.to_string()),
        _ => None,
    }
}

/// Whether `a` looks like a misspelling of `b`: the same once underscores are dropped, or one edit
/// apart.
fn similar(a: &str, b: &str) -> bool {
    let squash = |s: &str| s.replace('_', "");
    if squash(a) == squash(b) {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()] <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_shape() {
        let text = "global:\n  scrape_interval: 15s\n  external_labels:\n    cluster: eu-1\n    replica: \"0\"\n\
                    storage:\n  tsdb:\n    out_of_order_time_window: 30m\n  exemplars:\n    max_exemplars: 100000\n\
                    scrape_configs:\n  - job_name: x\n";
        let c = parse("p.yml", text).unwrap();
        assert_eq!(c.ooo_time_window, Some(Duration::from_secs(1800)));
        assert_eq!(c.external_labels.get("cluster").map(String::as_str), Some("eu-1"));
        assert_eq!(c.external_labels.get("replica").map(String::as_str), Some("0"));
        let ignored: Vec<&str> = c.ignored.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(ignored, ["global.scrape_interval", "storage.exemplars.max_exemplars", "scrape_configs"]);
        assert_eq!(parse("p.yml", "").unwrap(), FileConfig::default());
        assert_eq!(parse("p.yml", "storage:\n").unwrap(), FileConfig::default());
    }

    #[test]
    fn metric_name_validation_scheme() {
        let scheme = |text: &str| parse("p.yml", text).unwrap().name_validation;
        assert_eq!(scheme(""), NameValidation::Utf8);
        assert_eq!(scheme("global:\n  metric_name_validation_scheme: utf8\n"), NameValidation::Utf8);
        assert_eq!(scheme("global:\n  metric_name_validation_scheme: \"\"\n"), NameValidation::Utf8);
        assert_eq!(scheme("global:\n  metric_name_validation_scheme: legacy\n"), NameValidation::Legacy);
        // External label names follow the scheme, whichever key comes first.
        let c = parse("p.yml", "global:\n  external_labels:\n    k8s.cluster: eu\n").unwrap();
        assert_eq!(c.external_labels.get("k8s.cluster").map(String::as_str), Some("eu"));
        let e = parse(
            "p.yml",
            "global:\n  external_labels:\n    k8s.cluster: eu\n  metric_name_validation_scheme: legacy\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 3") && e.contains("k8s.cluster") && e.contains("legacy"), "{e}");
    }

    #[test]
    fn errors_name_key_and_line() {
        let cases = [
            ("storage:\n  tsdb:\n    out_of_order_timewindow: 1h\n", "line 3", "storage.tsdb.out_of_order_timewindow"),
            ("storage:\n  tsdb:\n    out_of_order_time_window: soon\n", "line 3", "out_of_order_time_window"),
            ("global:\n  external_label:\n    a: b\n", "line 2", "global.external_label"),
            ("tracing:\n  endpoint: x\n", "line 1", "tracing"),
            ("global:\n  external_labels:\n    0bad: x\n  metric_name_validation_scheme: legacy\n", "line 3", "0bad"),
            ("global:\n  external_labels:\n    \"\": x\n", "line 3", "not a valid label name"),
            ("global:\n  metric_name_validation_scheme: UTF-8\n", "line 2", "metric_name_validation_scheme"),
            ("global:\n  metric_name_validation_scheme: [utf8]\n", "line 2", "expected \"utf8\" or \"legacy\""),
            ("storage:\n  tsdb: [1]\n", "line 2", "expected a mapping"),
            ("storage:\n  tsdb:\n  - x: : :\n", "line", "invalid YAML"),
        ];
        for (text, line, key) in cases {
            let e = parse("p.yml", text).unwrap_err().to_string();
            assert!(e.contains(line) && e.contains(key), "{text:?}: {e}");
        }
        let e = parse("p.yml", "storage:\n  tsdb:\n    out_of_order_timewindow: 1h\n").unwrap_err().to_string();
        assert!(e.contains("did you mean \"out_of_order_time_window\""), "{e}");
    }
}
