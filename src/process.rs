//! The `process_*` metrics Prometheus's Go client exposes on Linux (CPU time, memory, file
//! descriptors, start time) plus `process_threads`, read from `/proc/self` at scrape time.

use std::path::Path;

use rustix::process::{getrlimit, Resource};

/// One reading of the process's resource use. Fields that cannot be read are `None` and left out.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<f64>,
    pub virtual_memory_bytes: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub threads: Option<f64>,
}

impl ProcessStats {
    /// Reads `/proc/self/stat`, `/proc/stat` (boot time), `/proc/self/fd` and `RLIMIT_NOFILE`.
    pub fn read() -> ProcessStats {
        let mut s = ProcessStats::default();
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as f64;
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            if let Some(f) = parse_stat(&stat) {
                s.cpu_seconds = Some((f.utime + f.stime) as f64 / ticks);
                s.threads = Some(f.num_threads as f64);
                s.virtual_memory_bytes = Some(f.vsize as f64);
                s.resident_memory_bytes = Some(f.rss_pages as f64 * page);
                let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|t| boot_time(&t));
                s.start_time_seconds = boot.map(|b| b as f64 + f.starttime as f64 / ticks);
            }
        }
        s.open_fds = count_entries(Path::new("/proc/self/fd")).map(|n| n as f64);
        s.max_fds = getrlimit(Resource::Nofile).current.map(|n| n as f64);
        s
    }
}

/// The fields of `/proc/<pid>/stat` used here.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    num_threads: u64,
    starttime: u64,
    vsize: u64,
    rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may hold spaces and
/// parentheses itself, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        num_threads: field(20)?,
        starttime: field(22)?,
        vsize: field(23)?,
        rss_pages: field(24)?,
    })
}

/// Boot time in Unix seconds: the `btime` line of `/proc/stat`.
fn boot_time(text: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))
}

fn count_entries(dir: &Path) -> Option<usize> {
    Some(std::fs::read_dir(dir).ok()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let line =
            "1234 (we (ird) name) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 0 7 0 9000 4096000 300 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(Stat { utime: 150, stime: 50, num_threads: 7, starttime: 9000, vsize: 4_096_000, rss_pages: 300 })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn boot_time_is_read_from_btime() {
        assert_eq!(boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000));
    }

    #[test]
    fn own_process_is_read() {
        let s = ProcessStats::read();
        assert!(s.threads.is_some_and(|t| t >= 1.0));
        assert!(s.resident_memory_bytes.is_some_and(|r| r > 0.0));
        assert!(s.open_fds.is_some_and(|n| n >= 1.0));
    }
}
