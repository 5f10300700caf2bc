//! The configuration file and lifecycle as Prometheus operators use them: key-by-key checking with
//! line numbers, `strata check config`, reloads on SIGHUP and `POST /-/reload` that change the
//! out-of-order window without a restart (and keep the old configuration when the new one is bad),
//! Prometheus's deployment flags, and `POST /-/quit`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{request, series, Server};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn write_config(path: &Path, window: &str) {
    let text = format!(
        "global:\n  scrape_interval: 15s\n  external_labels:\n    cluster: test\nstorage:\n  tsdb:\n    \
         out_of_order_time_window: {window}\n"
    );
    std::fs::write(path, text).unwrap();
}

/// Waits until the server's log has `n` lines containing `what`.
fn wait_log(server: &Server, what: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.log_text().matches(what).count() < n {
        assert!(Instant::now() < deadline, "no {n}× {what:?} in the log:\n{}", server.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn post(server: &Server, path: &str) -> (u16, String) {
    match ureq::post(&server.url(path)).send_string("") {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("POST {path}: {e}"),
    }
}

fn write_one(server: &Server, t: i64, v: f64) -> (u16, String) {
    server.write(&request(vec![series("late_metric", &[("job", "reload")], &[(t, v)])]))
}

#[test]
fn misspelt_key_stops_startup_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\nstorage:\n  tsdb:\n    out_of_order_timewindow: 1h\n")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg(format!("--config.file={}", config.display()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with a misspelt key");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("storage.tsdb.out_of_order_timewindow") && log.contains("line 5"), "{log}");
    assert!(!log.contains("listening"), "bound the port before checking the config: {log}");
}

#[test]
fn check_config_good_and_bad() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    std::fs::write(
        &good,
        "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n  external_labels:\n    cluster: eu-1\n\
         storage:\n  tsdb:\n    out_of_order_time_window: 30m\n  exemplars:\n    max_exemplars: 100000\n\
         rule_files: []\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: [localhost:9090]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata")).args(["check", "config"]).arg(&good).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("SUCCESS"), "{stdout}");
    assert!(stdout.contains("scrape_configs has no effect"), "{stdout}");

    for (text, key, line) in [
        ("storage:\n  tsdb:\n    out_of_order_time_window: 1x\n", "out_of_order_time_window", "line 3"),
        ("global:\n  external_labels:\n    cluster: a\n  scrape_intervall: 1m\n", "global.scrape_intervall", "line 4"),
        ("tracing:\n  endpoint: localhost:4317\n", "tracing", "line 1"),
    ] {
        let bad = dir.path().join("bad.yml");
        std::fs::write(&bad, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_strata")).args(["check", "config"]).arg(&bad).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text:?}: {stderr}");
        assert!(stderr.contains("FAILED") && stderr.contains(key) && stderr.contains(line), "{text:?}: {stderr}");
    }
}

#[test]
fn sighup_changes_the_window_and_a_bad_config_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    write_config(&config, "0s");
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &[&format!("--config.file={}", config.display())]);
    let now = now_ms();
    assert_eq!(write_one(&server, now, 1.0).0, 204);
    let late = now - 10 * 60_000;
    let (code, body) = write_one(&server, late, 2.0);
    assert_eq!(code, 400, "out-of-order sample accepted with a 0 window: {body}");

    write_config(&config, "1h");
    server.sighup();
    wait_log(&server, "configuration reloaded", 1);
    let (code, body) = write_one(&server, late, 2.0);
    assert_eq!(code, 204, "out-of-order sample rejected after reloading a 1h window: {body}");
    assert_eq!(server.metric("strata_config_last_reload_successful"), Some(1.0));
    let good_at = server.metric("strata_config_last_reload_success_timestamp_seconds").unwrap();
    assert!(good_at > 0.0);

    // A window of 0 plus a misspelt key: applying any of it would reject the next late sample.
    std::fs::write(&config, "storage:\n  tsdb:\n    out_of_order_time_window: 0s\n    out_of_order_cap: 8\n").unwrap();
    server.sighup();
    wait_log(&server, "configuration reload failed", 1);
    assert!(server.log_text().contains("out_of_order_cap"), "{}", server.log_text());
    let (code, body) = write_one(&server, now - 20 * 60_000, 3.0);
    assert_eq!(code, 204, "the old 1h window was not kept: {body}");
    assert_eq!(server.metric("strata_config_last_reload_successful"), Some(0.0));
    assert_eq!(server.metric("strata_config_last_reload_success_timestamp_seconds"), Some(good_at));
    // The status API shows the configuration in effect and that the last reload failed.
    let (_, shown) = server.get_json("/api/v1/status/config", &[]);
    assert!(shown["data"]["yaml"].as_str().is_some_and(|y| y.contains("1h")), "{shown}");
    let (_, info) = server.get_json("/api/v1/status/runtimeinfo", &[]);
    assert_eq!(info["data"]["reloadConfigSuccess"], false, "{info}");
    // Still serving queries, with the samples accepted under the reloaded window.
    let got = server.raw_samples("late_metric", "1h", now);
    assert_eq!(got.len(), 1, "{got:?}");
    let times: Vec<i64> = got[0].1.iter().map(|(t, _)| *t).collect();
    assert_eq!(times, vec![now - 20 * 60_000, late, now]);
    assert!(server.sigterm().success());
}

#[test]
fn reload_endpoint_needs_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    write_config(&config, "0s");
    let cfg_flag = format!("--config.file={}", config.display());

    let mut server = Server::start(&dir.path().join("a"), &[&cfg_flag]);
    let (code, body) = post(&server, "/-/reload");
    assert_eq!((code, body.as_str()), (403, "Lifecycle API is not enabled."));
    let (code, body) = post(&server, "/-/quit");
    assert_eq!((code, body.as_str()), (403, "Lifecycle API is not enabled."));
    assert!(server.sigterm().success());

    let mut server = Server::start(&dir.path().join("b"), &[&cfg_flag, "--web.enable-lifecycle"]);
    let now = now_ms();
    assert_eq!(write_one(&server, now, 1.0).0, 204);
    assert_eq!(write_one(&server, now - 60_000, 1.0).0, 400);
    write_config(&config, "5m");
    let (code, body) = post(&server, "/-/reload");
    assert_eq!(code, 200, "{body}");
    assert_eq!(write_one(&server, now - 60_000, 1.0).0, 204);
    std::fs::write(&config, "storage:\n  tsdb:\n    out_of_order_time_window: never\n").unwrap();
    let (code, body) = post(&server, "/-/reload");
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("out_of_order_time_window") && body.contains("line 3"), "{body}");
    assert_eq!(server.metric("strata_config_last_reload_successful"), Some(0.0));
    assert_eq!(write_one(&server, now - 2 * 60_000, 1.0).0, 204, "the 5m window was not kept");
    assert!(server.sigterm().success());
}

#[test]
fn prometheus_command_line_is_accepted_and_quit_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    write_config(&config, "30m");
    let data = dir.path().join("data");
    // The Prometheus operator's web config when no TLS is configured.
    let web_config = dir.path().join("web-config.yaml");
    std::fs::write(&web_config, "").unwrap();
    // The flags of a typical Prometheus deployment (Helm chart / operator).
    let mut server = Server::start(
        &data,
        &[
            &format!("--config.file={}", config.display()),
            &format!("--web.config.file={}", web_config.display()),
            "--storage.tsdb.wal-compression",
            "--storage.tsdb.retention.time=15d",
            "--web.enable-lifecycle",
            "--web.enable-admin-api",
            "--web.external-url=http://prometheus.example:9090/",
            "--web.route-prefix=/",
            "--web.enable-remote-write-receiver",
            "--enable-feature=memory-snapshot-on-shutdown,exemplar-storage",
            "--enable-feature=native-histograms,no-such-feature",
            "--storage.tsdb.no-lockfile",
            "--web.cors.origin=.*",
            "--web.console.templates=/etc/prometheus/consoles",
            "--web.console.libraries=/etc/prometheus/console_libraries",
            "--query.max-concurrency=20",
            "--rules.alert.for-grace-period=10m",
            "--web.page-title=Prometheus",
        ],
    );
    let log = server.log_text();
    for expected in [
        "--web.enable-remote-write-receiver has no effect",
        "--storage.tsdb.no-lockfile has no effect",
        "--web.console.templates has no effect",
        "--rules.alert.for-grace-period has no effect",
        "--enable-feature=exemplar-storage",
        "--enable-feature=no-such-feature: unknown feature",
        "global.scrape_interval has no effect",
        "--storage.tsdb.wal-compression has no effect",
        "web config in force",
    ] {
        assert!(log.contains(expected), "no {expected:?} in the log:\n{log}");
    }
    assert!(!log.contains("--web.cors.origin"), "--web.cors.origin takes effect:\n{log}");
    assert!(!log.contains("--web.enable-admin-api"), "--web.enable-admin-api takes effect:\n{log}");
    let now = now_ms();
    assert_eq!(write_one(&server, now, 1.0).0, 204);
    assert_eq!(write_one(&server, now - 10 * 60_000, 2.0).0, 204, "the file's 30m window is not in effect");

    let (code, body) = post(&server, "/-/quit");
    assert_eq!(code, 200, "{body}");
    let status = server.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", server.log_text());
    assert!(server.log_text().contains("shutdown complete"), "{}", server.log_text());
    // Shut down cleanly: the samples come back after a restart.
    let server = Server::start(&data, &[]);
    assert_eq!(server.raw_samples("late_metric", "1h", now).len(), 1);
}

#[test]
fn version_and_unsupported_prometheus_settings() {
    let out = Command::new(env!("CARGO_BIN_EXE_strata")).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("strata {}", env!("CARGO_PKG_VERSION")));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg(format!("--storage.tsdb.path={}", dir.path().display()))
        .args(["--web.listen-address=127.0.0.1:0", "--web.route-prefix=/prometheus"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--web.route-prefix"));
    // A web config whose certificate cannot be read: refused at startup, not served in plain text.
    let web_config = dir.path().join("web-config.yaml");
    std::fs::write(&web_config, "tls_server_config:\n  cert_file: /tls/cert.pem\n  key_file: /tls/key.pem\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg(format!("--storage.tsdb.path={}", dir.path().display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg(format!("--web.config.file={}", web_config.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("cert_file") && stderr.contains("/tls/cert.pem"), "{stderr}");
}
