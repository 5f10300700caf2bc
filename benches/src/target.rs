//! The servers a comparison runs: how to start each one on 127.0.0.1 with an empty data dir,
//! when it is ready, and how to stop it (SIGTERM, or SIGKILL for crash recovery).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::sys;

/// The kinds of server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// This project.
    Strata,
    /// Prometheus with the remote-write receiver.
    Prometheus,
    /// VictoriaMetrics single node.
    VictoriaMetrics,
}

impl Kind {
    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Strata => "Strata",
            Kind::Prometheus => "Prometheus",
            Kind::VictoriaMetrics => "VictoriaMetrics",
        }
    }

    /// Path that answers 200 once the server can take writes and queries.
    pub fn ready_path(self) -> &'static str {
        match self {
            Kind::Strata | Kind::Prometheus => "/-/ready",
            Kind::VictoriaMetrics => "/health",
        }
    }
}

/// A server binary to compare.
#[derive(Debug, Clone)]
pub struct Target {
    /// Which server.
    pub kind: Kind,
    /// Its executable.
    pub bin: PathBuf,
}

impl Target {
    /// The first line of the binary's version output.
    pub fn version(&self) -> String {
        let flag = match self.kind {
            Kind::VictoriaMetrics => "-version",
            _ => "--version",
        };
        Command::new(&self.bin)
            .arg(flag)
            .output()
            .ok()
            .map(|o| {
                let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
                s.push_str(&String::from_utf8_lossy(&o.stderr));
                s.lines().find(|l| !l.trim().is_empty()).unwrap_or("unknown").trim().to_string()
            })
            .filter(|v| v != "unknown")
            .or_else(|| self.package_version())
            .unwrap_or_else(|| "unknown".into())
    }

    /// The Debian package version of the binary, for builds that print no version (`dpkg -S`).
    fn package_version(&self) -> Option<String> {
        let owner = Command::new("dpkg").arg("-S").arg(&self.bin).output().ok()?;
        let owner = String::from_utf8_lossy(&owner.stdout);
        let pkg = owner.split(':').next()?.trim().to_string();
        let v = Command::new("dpkg-query").args(["-W", "-f", "${Version}", &pkg]).output().ok()?;
        let v = String::from_utf8_lossy(&v.stdout).trim().to_string();
        (!v.is_empty()).then(|| format!("{pkg} {v} (Debian package)"))
    }
}

/// Formats an out-of-order window as whole minutes (`"15m"`), Prometheus duration syntax.
pub fn window_flag(window_ms: i64) -> String {
    format!("{}m", (window_ms + 59_999) / 60_000)
}

/// A running server.
pub struct Server {
    /// Which server.
    pub kind: Kind,
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// When it was spawned.
    pub spawned: Instant,
    /// Its combined stdout/stderr.
    pub log: PathBuf,
}

impl Server {
    /// Spawns `target` on a free loopback port over `data_dir` (created if missing).
    /// `ooo_window_ms > 0` enables out-of-order ingestion with that window; `native_histograms`
    /// turns on Prometheus's `native-histograms` feature (Strata always accepts them).
    pub fn start(
        target: &Target,
        data_dir: &Path,
        work_dir: &Path,
        ooo_window_ms: i64,
        native_histograms: bool,
        run: usize,
    ) -> Result<Server> {
        std::fs::create_dir_all(data_dir)?;
        let port = sys::free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(&target.bin);
        match target.kind {
            Kind::Strata => {
                cmd.arg(format!("--storage.tsdb.path={}", data_dir.display()))
                    .arg(format!("--web.listen-address={listen}"));
                if ooo_window_ms > 0 {
                    cmd.arg(format!("--storage.tsdb.out-of-order-time-window={}", window_flag(ooo_window_ms)));
                }
            }
            Kind::Prometheus => {
                let config = work_dir.join("prometheus.yml");
                let mut yaml = String::from("global:\n  scrape_interval: 1m\n");
                if ooo_window_ms > 0 {
                    yaml.push_str(&format!(
                        "storage:\n  tsdb:\n    out_of_order_time_window: {}\n",
                        window_flag(ooo_window_ms)
                    ));
                }
                std::fs::write(&config, yaml)?;
                cmd.arg(format!("--config.file={}", config.display()))
                    .arg(format!("--storage.tsdb.path={}", data_dir.display()))
                    .arg(format!("--web.listen-address={listen}"))
                    .arg("--web.enable-remote-write-receiver")
                    .arg("--storage.tsdb.retention.time=100y");
                if native_histograms {
                    cmd.arg("--enable-feature=native-histograms");
                }
            }
            Kind::VictoriaMetrics => {
                cmd.arg(format!("-storageDataPath={}", data_dir.display()))
                    .arg(format!("-httpListenAddr={listen}"))
                    .arg("-retentionPeriod=100y")
                    // Just-written data must be queryable, and results must not come from a cache.
                    .arg("-search.disableCache")
                    .arg("-search.latencyOffset=0s");
            }
        }
        let log = work_dir.join(format!("{}-{run}.log", target.kind.name().to_lowercase()));
        let out = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.current_dir(work_dir).stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().with_context(|| format!("spawn {}", target.bin.display()))?;
        Ok(Server { kind: target.kind, child, port, spawned: Instant::now(), log })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the ready path answers 200; returns the time since spawn.
    pub fn wait_ready(&mut self, agent: &ureq::Agent, timeout: Duration) -> Result<Duration> {
        let url = format!("{}{}", self.base_url(), self.kind.ready_path());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited with {status} before ready; log: {}", self.kind.name(), self.log_tail());
            }
            if let Ok(r) = agent.get(&url).timeout(Duration::from_secs(2)).call() {
                if r.status() == 200 {
                    let _ = r.into_string();
                    return Ok(self.spawned.elapsed());
                }
            }
            if Instant::now() > deadline {
                bail!("{} not ready after {timeout:?}; log: {}", self.kind.name(), self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for the exit; returns how long it took. SIGKILLs after `timeout`.
    pub fn stop(mut self, timeout: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        sys::sigterm(self.pid())?;
        while t0.elapsed() < timeout {
            if self.child.try_wait()?.is_some() {
                return Ok(t0.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("{} did not exit within {timeout:?} of SIGTERM (killed)", self.kind.name())
    }

    /// SIGKILL (`kill -9`) and reap.
    pub fn kill9(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Never leave a server behind (errors, panics): kill it if it is still running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
