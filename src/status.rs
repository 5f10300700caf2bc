//! What the server reports about itself on the status endpoints (`status/flags`, `status/config`,
//! `status/runtimeinfo`): every flag's value as parsed, the config file's text, start time and
//! working directory, gathered once at startup.
//!
//! Flag values read as Prometheus 2.42 reports its own: an unset flag without a default reports
//! the zero value of its kind (`0s` for a duration, `0` for a number, `""` for text, `false` for a
//! switch), and `storage.tsdb.max-block-duration` the value in use when it is computed. The Thanos
//! sidecar decodes the block durations and the switches and refuses the whole answer when one of
//! them does not parse, an empty string included.

use std::sync::RwLock;
use std::time::SystemTime;

use clap::{ArgMatches, Command};
use query::status::{ConfigStatus, ServerStatus};

/// Flags taking a duration that have no default: unset, they report `0s`.
const DURATIONS_WITHOUT_DEFAULT: [&str; 7] = [
    "storage.tsdb.max-block-duration",
    "storage.tsdb.out-of-order-time-window",
    "rules.alert.for-outage-tolerance",
    "rules.alert.for-grace-period",
    "rules.alert.resend-delay",
    "scrape.timestamp-tolerance",
    "storage.remote.flush-deadline",
];

/// Flags taking a number that have no default: unset, they report `0`.
const NUMBERS_WITHOUT_DEFAULT: [&str; 1] = ["alertmanager.notification-queue-capacity"];

/// Every flag with a long name, by that name, with its value (the default when not given; values of
/// a repeated flag joined with `,`; the zero value of its kind when unset without a default).
pub fn flag_values(cmd: &Command, matches: &ArgMatches) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let value = matches
            .get_raw(arg.get_id().as_str())
            .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect::<Vec<_>>().join(","))
            .unwrap_or_else(|| {
                if DURATIONS_WITHOUT_DEFAULT.contains(&long) {
                    "0s".to_owned()
                } else if NUMBERS_WITHOUT_DEFAULT.contains(&long) {
                    "0".to_owned()
                } else {
                    String::new()
                }
            });
        out.push((long.to_owned(), value));
    }
    out.sort();
    out
}

/// Replaces the values the server computes when their flags are not given: the max block duration
/// in use (in Prometheus's duration syntax, as Prometheus reports its computed default) and the
/// route prefix `/`.
pub fn report_computed(flags: &mut [(String, String)], cfg: &crate::config::Config) {
    let max_block = std::time::Duration::from_millis(u64::try_from(cfg.db.max_block_duration_ms).unwrap_or(0));
    for (name, value) in flags.iter_mut() {
        match name.as_str() {
            "storage.tsdb.max-block-duration" => *value = crate::config::format_duration(max_block),
            "web.route-prefix" if value.is_empty() => *value = "/".to_owned(),
            // The built-in shipper's state file, when shipping is on.
            "storage.tsdb.delay-compact-file.path" => {
                if let Some(path) = &cfg.db.delay_compact_file {
                    *value = path.display().to_string();
                }
            }
            _ => {}
        }
    }
}

/// The status of a server started now with these flags and this config file text.
pub fn server_status(flags: Vec<(String, String)>, config_yaml: String) -> ServerStatus {
    let get = |name: &str| flags.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("");
    let time = match get("storage.tsdb.retention.time") {
        "0" | "0s" => "",
        t => t,
    };
    let size = match get("storage.tsdb.retention.size") {
        "0" | "0B" => "",
        s => s,
    };
    let storage_retention = match (time, size) {
        ("", s) | (s, "") => s.to_owned(),
        (t, s) => format!("{t} or {s}"),
    };
    let now = SystemTime::now();
    ServerStatus {
        cwd: std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        config: RwLock::new(ConfigStatus { yaml: config_yaml, reload_success: true, last_config_time: now }),
        start_time: now,
        storage_retention,
        flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retention(time: &str, size: &str) -> String {
        let flags = vec![
            ("storage.tsdb.retention.size".to_owned(), size.to_owned()),
            ("storage.tsdb.retention.time".to_owned(), time.to_owned()),
        ];
        server_status(flags, String::new()).storage_retention
    }

    fn flags_of(args: &[&str]) -> Vec<(String, String)> {
        use clap::CommandFactory;
        let cmd = crate::config::Flags::command();
        let matches = cmd.clone().try_get_matches_from(args).unwrap();
        let mut flags = flag_values(&cmd, &matches);
        let cfg = <crate::config::Flags as clap::FromArgMatches>::from_arg_matches(&matches).unwrap();
        report_computed(&mut flags, &cfg.into_config().unwrap());
        flags
    }

    /// Flags whose value is text, and may be empty.
    const TEXT_FLAGS: [&str; 10] = [
        "config.file",
        "enable-feature",
        "storage.tsdb.delay-compact-file.path",
        "storage.tsdb.upload.config",
        "web.config.file",
        "web.console.libraries",
        "web.console.templates",
        "web.external-url",
        "web.page-title",
        "web.user-assets",
    ];

    #[test]
    fn only_text_flags_report_an_empty_value() {
        let flags = flags_of(&["strata"]);
        for (name, value) in &flags {
            assert!(!value.is_empty() || TEXT_FLAGS.contains(&name.as_str()), "{name} reports \"\"");
        }
        let get = |flags: &[(String, String)], n: &str| flags.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(get(&flags, "storage.tsdb.max-block-duration"), "1d12h", "10% of 15d, as Prometheus reports it");
        assert_eq!(get(&flags, "storage.tsdb.out-of-order-time-window"), "0s");
        assert_eq!(get(&flags, "web.route-prefix"), "/");
        assert_eq!(get(&flags, "web.enable-lifecycle"), "false");
        let flags = flags_of(&[
            "strata",
            "--storage.tsdb.min-block-duration=2h",
            "--storage.tsdb.max-block-duration=120m",
            "--storage.tsdb.delay-compact-file.path=/data/thanos.shipper.json",
        ]);
        assert_eq!(get(&flags, "storage.tsdb.max-block-duration"), "2h");
        assert_eq!(get(&flags, "storage.tsdb.delay-compact-file.path"), "/data/thanos.shipper.json");
        let flags = flags_of(&["strata", "--storage.tsdb.retention.time=0s"]);
        assert_eq!(get(&flags, "storage.tsdb.max-block-duration"), "31d");
    }

    #[test]
    fn storage_retention_reads_like_prometheus() {
        assert_eq!(retention("15d", "0"), "15d");
        assert_eq!(retention("0s", "10GB"), "10GB");
        assert_eq!(retention("30d", "10GB"), "30d or 10GB");
        assert_eq!(retention("0", "0"), "");
    }
}
