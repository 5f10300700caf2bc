//! `--web.config.file`: TLS, client certificates, basic auth and response headers, through the real
//! binary; a real Prometheus agent remote-writes over TLS with basic auth and promtool reads back.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::tls::{basic, bcrypt_hash, https_client, Ca, Issued};
use crate::util::{prometheus, promtool, request, series, Client, Server};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A CA, the server's certificate and key in files, and a web config naming them.
struct Setup {
    dir: tempfile::TempDir,
    ca: Ca,
    cert_file: PathBuf,
    key_file: PathBuf,
    web_config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new(dir.path(), "main");
        let cert_file = dir.path().join("server.pem");
        let key_file = dir.path().join("server-key.pem");
        ca.server().write(&cert_file, &key_file);
        let web_config = dir.path().join("web.yml");
        Setup { dir, ca, cert_file, key_file, web_config }
    }

    /// Writes the web config: TLS with the server's files (relative paths, as exporter-toolkit reads
    /// them against the config's directory), then `extra` YAML.
    fn write_web_config(&self, tls_extra: &str, extra: &str) {
        let text =
            format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n{tls_extra}{extra}");
        let tmp = self.web_config.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.web_config).unwrap();
    }

    fn start(&self, client: Client, extra_args: &[&str]) -> Server {
        let flag = format!("--web.config.file={}", self.web_config.display());
        let mut args = vec![flag.as_str()];
        args.extend_from_slice(extra_args);
        Server::start_secure(&self.dir.path().join("data"), &args, client)
    }
}

fn users_yaml(users: &[(&str, &str)]) -> String {
    let mut s = String::from("basic_auth_users:\n");
    for (user, password) in users {
        s.push_str(&format!("  {user}: '{}'\n", bcrypt_hash(password)));
    }
    s
}

/// Status, `WWW-Authenticate` and `X-Frame-Options` of a GET with `client`; `Err` for a transport
/// failure (e.g. a failed handshake).
fn get(srv: &Server, client: &Client, path: &str) -> Result<(u16, Option<String>, Option<String>), String> {
    let agent = client.agent.as_ref().unwrap();
    let mut req = agent.get(&format!("https://{}{path}", srv.addr));
    if let Some(a) = &client.authorization {
        req = req.set("Authorization", a);
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.to_string()),
    };
    let header = |n: &str| resp.header(n).map(str::to_owned);
    Ok((resp.status(), header("WWW-Authenticate"), header("X-Frame-Options")))
}

fn metrics_line(srv: &Server, prefix: &str) -> f64 {
    let text = srv.request("GET", "/metrics").call().unwrap().into_string().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(prefix).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}"))
}

/// Sends `bytes` on a new plain TCP connection and reads until the server closes it.
fn raw_exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(bytes).unwrap();
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the server did not close the connection: {e}"),
    }
    got
}

/// Polls `ok` (bounded) until it holds; panics with `what` otherwise.
fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn tls_with_basic_auth_guards_every_endpoint() {
    let setup = Setup::new();
    setup.write_web_config(
        "",
        &format!(
            "{}http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n",
            users_yaml(&[("alice", "wonderland"), ("bob", "builder")])
        ),
    );
    let check = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["check", "web-config"])
        .arg(&setup.web_config)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    assert!(String::from_utf8_lossy(&check.stdout).contains("SUCCESS (tls=true basic_auth_users=2"), "{check:?}");
    let ca = setup.ca.pem();
    let srv = setup.start(https_client(&ca, None, Some(("alice", "wonderland"))), &[]);

    // Written and read back over HTTPS with credentials.
    let now = now_ms();
    let (code, body) = srv.write(&request(vec![series("tls_metric", &[("job", "t")], &[(now, 7.0)])]));
    assert_eq!(code, 204, "{body}");
    let (code, json) = srv.get_json("/api/v1/query", &[("query", "tls_metric")]);
    assert_eq!(code, 200, "{json}");
    assert_eq!(json["data"]["result"][0]["value"][1], "7", "{json}");

    // Every endpoint wants credentials: none, a wrong password, an unknown user → 401 with
    // `WWW-Authenticate: Basic`; the configured headers are on every answer.
    let anonymous = https_client(&ca, None, None);
    let wrong = https_client(&ca, None, Some(("alice", "looking-glass")));
    let unknown = https_client(&ca, None, Some(("mallory", "wonderland")));
    let swapped = https_client(&ca, None, Some(("bob", "wonderland")));
    for path in ["/api/v1/query?query=tls_metric", "/metrics", "/-/ready", "/-/healthy", "/api/v1/status/buildinfo"] {
        for (who, client) in
            [("anonymous", &anonymous), ("wrong", &wrong), ("unknown", &unknown), ("swapped", &swapped)]
        {
            let got = get(&srv, client, path).unwrap();
            assert_eq!(got, (401, Some("Basic".into()), Some("deny".into())), "{who} {path}");
        }
        let bob = https_client(&ca, None, Some(("bob", "builder")));
        assert_eq!(get(&srv, &bob, path).unwrap(), (200, None, Some("deny".into())), "bob {path}");
    }
    // A refused remote-write is not stored.
    let r = anonymous
        .agent
        .as_ref()
        .unwrap()
        .post(&format!("https://{}/api/v1/write", srv.addr))
        .set("Content-Encoding", "snappy")
        .send_bytes(b"not even snappy");
    assert!(matches!(r, Err(ureq::Error::Status(401, _))), "{r:?}");

    // Verified credentials are cached; wrong ones are checked (and refused) every time.
    let checks = || metrics_line(&srv, "strata_http_basic_auth_bcrypt_checks_total");
    let before = checks();
    for _ in 0..20 {
        assert_eq!(srv.get_json("/api/v1/query", &[("query", "tls_metric")]).0, 200);
    }
    assert_eq!(checks(), before, "requests with verified credentials computed bcrypt again");
    for _ in 0..3 {
        assert_eq!(get(&srv, &wrong, "/-/healthy").unwrap().0, 401);
    }
    assert_eq!(checks(), before + 3.0, "wrong passwords are verified each time, never cached");
    assert!(metrics_line(&srv, "strata_http_basic_auth_requests_total{outcome=\"denied\"}") >= 23.0);

    // Plain HTTP to the TLS port is not served: the handshake fails and the connection is closed.
    let got = raw_exchange(
        &srv.addr,
        b"GET /-/healthy HTTP/1.1\r\nHost: strata\r\nAuthorization: Basic YWxpY2U6d29uZGVybGFuZA==\r\n\r\n",
    );
    assert!(!got.starts_with(b"HTTP/"), "plain HTTP answered: {:?}", String::from_utf8_lossy(&got));
    let plain =
        ureq::get(&format!("http://{}/-/healthy", srv.addr)).set("Authorization", &basic("alice", "wonderland")).call();
    assert!(matches!(plain, Err(ureq::Error::Transport(_))), "{plain:?}");
    assert!(metrics_line(&srv, "strata_http_connections_closed_total{reason=\"tls_handshake\"}") >= 2.0);
    // A client that does not trust the server's CA refuses it.
    let other = Ca::new(setup.dir.path(), "other");
    assert!(get(&srv, &https_client(&other.pem(), None, Some(("alice", "wonderland"))), "/-/healthy").is_err());
}

#[test]
fn a_flood_of_wrong_passwords_is_bounded_and_verified_clients_are_served() {
    let setup = Setup::new();
    // A costlier hash than the other tests' so that checks overlap.
    let hash = bcrypt::hash("wonderland", 8).unwrap();
    setup.write_web_config("", &format!("basic_auth_users:\n  alice: '{hash}'\n"));
    let ca = setup.ca.pem();
    let srv = setup.start(https_client(&ca, None, Some(("alice", "wonderland"))), &[]);
    // Verified once (by the start's readiness check): cached from now on.
    let alice = https_client(&ca, None, Some(("alice", "wonderland")));
    assert_eq!(get(&srv, &alice, "/-/healthy").unwrap().0, 200);

    // More wrong passwords at once than may wait for the bcrypt slots (half the cores, 16 waiting
    // per slot): the excess is answered 503 at once, the rest 401; none is let through.
    let slots = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
    let flood = slots * 16 + 32;
    let start = std::sync::Arc::new(std::sync::Barrier::new(flood + 1));
    let statuses: Vec<_> = (0..flood)
        .map(|i| {
            let (start, ca, addr) = (std::sync::Arc::clone(&start), ca.clone(), srv.addr.clone());
            std::thread::spawn(move || {
                let client = https_client(&ca, None, Some(("alice", &format!("guess-{i}"))));
                start.wait();
                let agent = client.agent.unwrap();
                match agent
                    .get(&format!("https://{addr}/-/healthy"))
                    .set("Authorization", &client.authorization.unwrap())
                    .call()
                {
                    Ok(r) => r.status(),
                    Err(ureq::Error::Status(code, _)) => code,
                    Err(e) => panic!("{e}"),
                }
            })
        })
        .collect();
    start.wait();
    // Meanwhile the verified client is answered from the cache.
    for _ in 0..5 {
        assert_eq!(get(&srv, &alice, "/-/healthy").unwrap().0, 200);
    }
    let statuses: Vec<u16> = statuses.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(statuses.iter().all(|&s| s == 401 || s == 503), "{statuses:?}");
    assert!(statuses.contains(&503), "no check was turned away: {statuses:?}");
    let busy = metrics_line(&srv, "strata_http_basic_auth_requests_total{outcome=\"busy\"}");
    assert_eq!(busy, statuses.iter().filter(|&&s| s == 503).count() as f64);
}

#[test]
fn client_certificates_by_client_auth_type() {
    let setup = Setup::new();
    let client_ca = Ca::new(setup.dir.path(), "clients");
    let good = client_ca.client("agent");
    let stranger = Ca::new(setup.dir.path(), "stranger").client("agent");
    let verify = |mode: &str| format!("  client_auth_type: {mode}\n  client_ca_file: clients-ca.pem\n");
    setup.write_web_config(&verify("RequireAndVerifyClientCert"), "");
    let ca = setup.ca.pem();
    let srv = setup.start(https_client(&ca, Some(&good), None), &[]);
    let with = |cert: Option<&Issued>| get(&srv, &https_client(&ca, cert, None), "/-/healthy").map(|g| g.0);

    assert_eq!(with(Some(&good)), Ok(200));
    assert!(with(None).is_err(), "served without a client certificate");
    assert!(with(Some(&stranger)).is_err(), "served a client certificate from an untrusted CA");
    assert!(metrics_line(&srv, "strata_http_connections_closed_total{reason=\"tls_handshake\"}") >= 2.0);

    // The web config is re-read without a restart: a certificate is now optional, but verified when sent.
    setup.write_web_config(&verify("VerifyClientCertIfGiven"), "");
    eventually("VerifyClientCertIfGiven in force", || with(None) == Ok(200));
    assert_eq!(with(Some(&good)), Ok(200));
    assert!(with(Some(&stranger)).is_err());

    // Any certificate, unverified, but one is required.
    setup.write_web_config("  client_auth_type: RequireAnyClientCert\n", "");
    eventually("RequireAnyClientCert in force", || with(Some(&stranger)) == Ok(200));
    assert!(with(None).is_err());
}

#[test]
fn rotated_certificate_and_changed_users_apply_without_restart() {
    let setup = Setup::new();
    setup.write_web_config("", &users_yaml(&[("alice", "first")]));
    let old_ca = setup.ca.pem();
    let srv = setup.start(https_client(&old_ca, None, Some(("alice", "first"))), &[]);
    let new_ca = Ca::new(setup.dir.path(), "rotated");
    let status = |ca: &str, password: &str| {
        get(&srv, &https_client(ca, None, Some(("alice", password))), "/-/healthy").map(|g| g.0)
    };
    assert_eq!(status(&old_ca, "first"), Ok(200));
    assert!(status(&new_ca.pem(), "first").is_err());

    new_ca.server().write(&setup.cert_file, &setup.key_file);
    eventually("the rotated certificate served", || status(&new_ca.pem(), "first") == Ok(200));
    assert!(status(&old_ca, "first").is_err(), "the old certificate is still served");

    setup.write_web_config("", &users_yaml(&[("alice", "second")]));
    eventually("the new password in force", || status(&new_ca.pem(), "second") == Ok(200));
    assert_eq!(status(&new_ca.pem(), "first"), Ok(401));

    // A broken edit (a key that does not match the certificate) is refused and logged; the
    // configuration in force stays.
    std::fs::write(&setup.key_file, setup.ca.server().key_pem).unwrap();
    eventually("the refused key logged", || srv.log_text().contains("web config not applied"));
    assert_eq!(status(&new_ca.pem(), "second"), Ok(200));
}

#[test]
fn stalled_tls_handshake_is_bounded_by_the_header_timeout() {
    let setup = Setup::new();
    setup.write_web_config("", "");
    let ca = setup.ca.pem();
    let srv = setup.start(https_client(&ca, None, None), &["--web.read-header-timeout=1s", "--web.max-connections=1"]);
    // The start of a TLS record, and then nothing: this connection holds the only slot.
    let mut stalled = TcpStream::connect(&srv.addr).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).unwrap();
    // A real client waits in the backlog until the header timeout frees the slot, then is served.
    assert_eq!(get(&srv, &https_client(&ca, None, None), "/-/healthy").map(|g| g.0), Ok(200));
    stalled.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = [0u8; 64];
    let closed = match stalled.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => stalled.read(&mut buf).map(|n| n == 0).unwrap_or(true),
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "the stalled handshake was not closed");
    assert!(metrics_line(&srv, "strata_http_connections_closed_total{reason=\"header_timeout\"}") >= 1.0);
}

#[test]
fn bad_web_configs_are_refused_with_key_and_line() {
    let setup = Setup::new();
    let cases: [(&str, &[&str]); 4] = [
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n  min_version: TLS11\n",
            &["line 4", "min_version", "TLS11"],
        ),
        (
            "tls_server_config:\n  cert_file: server.pem\n  key_fil: server-key.pem\n",
            &["line 3", "tls_server_config.key_fil", "did you mean"],
        ),
        (
            "http_server_config:\n  headers:\n    Authorization: secret\n",
            &["line 3", "Authorization", "can not be configured"],
        ),
        ("tls_server_config:\n  cert_file: server.pem\n  key_file: missing.pem\n", &["key_file", "missing.pem"]),
    ];
    for (text, expected) in cases {
        std::fs::write(&setup.web_config, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg(format!("--storage.tsdb.path={}", setup.dir.path().join("data").display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg(format!("--web.config.file={}", setup.web_config.display()))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text:?}: {stderr}");
        for e in expected {
            assert!(stderr.contains(e), "{text:?}: no {e:?} in {stderr}");
        }
        let check = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["check", "web-config"])
            .arg(&setup.web_config)
            .output()
            .unwrap();
        assert_eq!(check.status.code(), Some(1), "{text:?}");
    }
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn prometheus_agent_remote_writes_over_tls_with_basic_auth() {
    let (Some(prom), Some(promtool)) = (prometheus(), promtool()) else { return };
    let setup = Setup::new();
    setup.write_web_config("", &users_yaml(&[("agent", "s3cret")]));
    let out = Command::new(&promtool).args(["check", "web-config"]).arg(&setup.web_config).output().unwrap();
    assert!(out.status.success(), "promtool rejects the web config: {out:?}");
    let ca = setup.ca.pem();
    let srv = setup.start(https_client(&ca, None, Some(("agent", "s3cret"))), &[]);
    let ca_file = setup.ca.cert_file.display().to_string();
    let auth = "    basic_auth:\n      username: agent\n      password: s3cret\n";
    let tls = format!("    tls_config:\n      ca_file: {ca_file}\n");
    let cfg = setup.dir.path().join("agent.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: strata\n    scheme: https\n{auth}{tls}    \
             static_configs:\n      - targets: ['{addr}']\nremote_write:\n  - url: https://{addr}/api/v1/write\n{auth}{tls}    \
             queue_config:\n      batch_send_deadline: 1s\n",
            addr = srv.addr
        ),
    )
    .unwrap();
    let agent_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _agent = Agent(
        Command::new(prom)
            .arg("--enable-feature=agent")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.agent.path={}", setup.dir.path().join("agent").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{agent_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // `up` is 1 only if the agent's scrape of /metrics passed TLS and basic auth; it arrives only
    // through the agent's remote-write, which did too.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, up) = srv.get_json("/api/v1/query", &[("query", r#"up{job="strata"}"#)]);
        if up["data"]["result"][0]["value"][1] == "1" {
            break;
        }
        assert!(Instant::now() < deadline, "agent data did not arrive: {up}\n{}", srv.log_text());
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(metrics_line(&srv, "strata_http_connections_closed_total{reason=\"tls_handshake\"}"), 0.0);

    // promtool 2.42 has no --http.config.file: it takes credentials in the URL and, as a Go
    // program, a CA from SSL_CERT_FILE.
    let query = |user: &str, password: &str| {
        Command::new(&promtool)
            .args(["query", "instant", &format!("https://{user}:{password}@{}", srv.addr), r#"up{job="strata"}"#])
            .env("SSL_CERT_FILE", &ca_file)
            .output()
            .unwrap()
    };
    let out = query("agent", "s3cret");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "promtool query failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(r#"job="strata""#) && text.contains("=> 1 @"), "{text}");
    let out = query("agent", "wrong");
    assert!(!out.status.success(), "promtool read with a wrong password: {out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{out:?}");
}
