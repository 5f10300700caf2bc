//! What the server reports about itself on the status endpoints (`status/flags`, `status/config`,
//! `status/runtimeinfo`): every flag's value as parsed, the config file's text, start time and
//! working directory, gathered once at startup.

use std::sync::RwLock;
use std::time::SystemTime;

use clap::{ArgMatches, Command};
use query::status::{ConfigStatus, ServerStatus};

/// Every flag with a long name, by that name, with its value (the default when not given; values of
/// a repeated flag joined with `,`; empty when unset without a default).
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
            .unwrap_or_default();
        out.push((long.to_owned(), value));
    }
    out.sort();
    out
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

    #[test]
    fn storage_retention_reads_like_prometheus() {
        assert_eq!(retention("15d", "0"), "15d");
        assert_eq!(retention("0s", "10GB"), "10GB");
        assert_eq!(retention("30d", "10GB"), "30d or 10GB");
        assert_eq!(retention("0", "0"), "");
    }
}
