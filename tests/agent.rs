//! A real Prometheus 2.42 in agent mode scrapes Strata's `/metrics` and remote-writes to Strata;
//! Strata then answers `up{job="strata"}` and its own `strata_…` series, also through promtool.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{prometheus, promtool, KillOnDrop, Server};

#[test]
fn prometheus_agent_scrapes_and_remote_writes_to_strata() {
    let (Some(prom), Some(promtool)) = (prometheus(), promtool()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(&dir.path().join("data"), &[]);
    let cfg = dir.path().join("agent.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: strata\n    static_configs:\n      - targets: ['{addr}']\n\
             remote_write:\n  - url: http://{addr}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n",
            addr = srv.addr
        ),
    )
    .unwrap();
    let agent_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let agent = KillOnDrop(
        Command::new(prom)
            .arg("--enable-feature=agent")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.agent.path={}", dir.path().join("agent").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{agent_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, up) = srv.get_json("/api/v1/query", &[("query", r#"up{job="strata"}"#)]);
        let (_, own) = srv.get_json("/api/v1/query", &[("query", r#"strata_head_series{job="strata"}"#)]);
        let up_ok = up["data"]["result"][0]["value"][1] == "1";
        let own_ok = own["data"]["result"].as_array().is_some_and(|r| !r.is_empty());
        if up_ok && own_ok {
            break;
        }
        assert!(Instant::now() < deadline, "agent data did not arrive: up={up} own={own}\n{}", srv.log_text());
        std::thread::sleep(Duration::from_millis(250));
    }

    let out = Command::new(promtool)
        .args(["query", "instant", &format!("http://{}", srv.addr), r#"up{job="strata"}"#])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "promtool query failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(r#"up{instance=""#) && text.contains(r#"job="strata""#) && text.contains("=> 1 @"), "{text}");

    let out = Command::new(crate::util::promtool().unwrap())
        .args([
            "query",
            "instant",
            &format!("http://{}", srv.addr),
            r#"strata_remote_write_requests_total{job="strata"}"#,
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("strata_remote_write_requests_total"), "{out:?}");
    drop(agent);
}
