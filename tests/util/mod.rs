//! Starts the real `strata` binary on a temporary directory and talks to it over HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod devtools;
pub mod exposition;
pub mod tls;

use ingest::proto::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;

/// A running server. Killed (SIGKILL) on drop if still running.
pub struct Server {
    child: Child,
    pub addr: String,
    pub dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    /// How requests reach it: plain HTTP, or HTTPS with basic auth ([`Server::start_secure`]).
    client: Client,
}

/// What the test's requests use to reach a server.
#[derive(Clone)]
pub struct Client {
    pub scheme: &'static str,
    /// Keeps its connections open between requests; `None`: a new agent (and connection) per
    /// request, so no connection of the helpers lingers idle on the server.
    pub agent: Option<ureq::Agent>,
    /// `Authorization` header value sent with every request.
    pub authorization: Option<String>,
}

impl Default for Client {
    fn default() -> Client {
        Client { scheme: "http", agent: None, authorization: None }
    }
}

impl Server {
    /// Starts `strata` on `dir` with `args`, waits until it logs its address and `/-/ready` is 200.
    pub fn start(dir: &Path, args: &[&str]) -> Server {
        Server::start_with_env(dir, args, &[])
    }

    /// Like [`Server::start`], with extra environment variables (e.g. fault injection).
    pub fn start_with_env(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::start_full(dir, args, envs, Client::default())
    }

    /// Like [`Server::start`] for a server whose web config asks for TLS or users: every request of
    /// the helpers, readiness included, goes through `client`.
    pub fn start_secure(dir: &Path, args: &[&str], client: Client) -> Server {
        Server::start_full(dir, args, &[], client)
    }

    fn start_full(dir: &Path, args: &[&str], envs: &[(&str, &str)], client: Client) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg(format!("--storage.tsdb.path={}", dir.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .args(args)
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening") {
                    if let Some(a) = line.split("address=").nth(1) {
                        let _ = tx.send(a.split_whitespace().next().unwrap_or_default().to_string());
                    }
                }
                log2.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("strata did not log its address; log:\n{}", log.lock().unwrap().join("\n"));
            }
        };
        let server = Server { child, addr, dir: dir.to_owned(), log, client };
        server.wait_ready(Duration::from_secs(120));
        server
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.client.scheme, self.addr, path)
    }

    /// A request to `path` through the server's client (TLS and credentials as configured).
    pub fn request(&self, method: &str, path: &str) -> ureq::Request {
        let req = match &self.client.agent {
            Some(agent) => agent.request(method, &self.url(path)),
            None => ureq::request(method, &self.url(path)),
        };
        match &self.client.authorization {
            Some(a) => req.set("Authorization", a),
            None => req,
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(r) = self.request("GET", "/-/ready").call() {
                if r.status() == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("strata not ready within {limit:?}; log:\n{}", self.log_text());
    }

    /// Sends a remote-write request; returns (status, body).
    pub fn write(&self, req: &WriteRequest) -> (u16, String) {
        let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).expect("snappy");
        self.post_raw(&body, "snappy", "application/x-protobuf")
    }

    pub fn post_raw(&self, body: &[u8], encoding: &str, content_type: &str) -> (u16, String) {
        let r = self
            .request("POST", "/api/v1/write")
            .set("Content-Encoding", encoding)
            .set("Content-Type", content_type)
            .set("X-Prometheus-Remote-Write-Version", "0.1.0")
            .send_bytes(body);
        match r {
            Ok(resp) => (resp.status(), resp.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    /// Sends `payload` (snappy-compressed here) to `/api/v1/write` with the given headers, as a 2.0
    /// sender does; returns the status, the three Written headers and the body.
    pub fn post_write(&self, payload: &[u8], encoding: &str, content_type: &str) -> WriteAnswer {
        let body = snap::raw::Encoder::new().compress_vec(payload).expect("snappy");
        let r = self
            .request("POST", "/api/v1/write")
            .set("Content-Encoding", encoding)
            .set("Content-Type", content_type)
            .set("X-Prometheus-Remote-Write-Version", "2.0.0")
            .send_bytes(&body);
        let resp = match r {
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
            Err(e) => panic!("POST /api/v1/write: {e}"),
        };
        let header = |kind: &str| {
            resp.header(&format!("X-Prometheus-Remote-Write-{kind}-Written")).map(|v| v.parse::<u64>().expect("count"))
        };
        let written = [header("Samples"), header("Histograms"), header("Exemplars")];
        WriteAnswer { status: resp.status(), written, body: resp.into_string().unwrap_or_default() }
    }

    /// Sends a remote-write 2.0 request (see [`Server::post_write`]).
    pub fn post_v2(&self, req: &ingest::proto_v2::Request) -> WriteAnswer {
        self.post_write(&req.encode_to_vec(), "snappy", V2_CONTENT_TYPE)
    }

    /// GET an API path with query parameters; returns (status, JSON).
    pub fn get_json(&self, path: &str, params: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let mut req = self.request("GET", path);
        for (k, v) in params {
            req = req.query(k, v);
        }
        let (code, text) = match req.call() {
            Ok(resp) => (resp.status(), resp.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap_or_default()),
            Err(e) => panic!("GET {path}: {e}"),
        };
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"));
        (code, json)
    }

    /// POST an API path with a form body (for queries too long for a URL); returns (status, JSON).
    pub fn post_form_json(&self, path: &str, params: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let r = self.request("POST", path).send_form(params);
        let (code, text) = match r {
            Ok(resp) => (resp.status(), resp.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_string().unwrap_or_default()),
            Err(e) => panic!("POST {path}: {e}"),
        };
        let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {text}"));
        (code, json)
    }

    /// Raw samples of every series matching `selector` in (end - range, end], via a range selector in an
    /// instant query, as `(labels-string, [(t_ms, value-string)])`.
    pub fn raw_samples(&self, selector: &str, range: &str, end_ms: i64) -> Vec<(String, Vec<(i64, String)>)> {
        let q = format!("{selector}[{range}]");
        let t = format_time(end_ms);
        let (code, json) = self.get_json("/api/v1/query", &[("query", &q), ("time", &t)]);
        assert_eq!(code, 200, "query {q}: {json}");
        assert_eq!(json["status"], "success", "{json}");
        assert_eq!(json["data"]["resultType"], "matrix", "{json}");
        let mut out = Vec::new();
        for s in json["data"]["result"].as_array().expect("result array") {
            let metric = s["metric"].to_string();
            let values = s["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|p| {
                    let t = (p[0].as_f64().expect("time") * 1000.0).round() as i64;
                    (t, p[1].as_str().expect("value string").to_string())
                })
                .collect();
            out.push((metric, values));
        }
        out
    }

    /// The value of an unlabelled metric on `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let text = self.request("GET", "/metrics").call().ok()?.into_string().ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }

    pub fn sigterm(&mut self) -> ExitStatus {
        signal(&self.child, libc::SIGTERM);
        self.wait_exit(Duration::from_secs(60))
    }

    /// Sends SIGHUP (a configuration reload).
    pub fn sighup(&self) {
        signal(&self.child, libc::SIGHUP);
    }

    pub fn kill9(&mut self) {
        signal(&self.child, libc::SIGKILL);
        let _ = self.wait_exit(Duration::from_secs(30));
    }

    /// Waits for the process to exit by itself (e.g. an injected crash).
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("strata did not exit within {limit:?}; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: sending a signal to our own child process by pid; no memory is involved.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// Runs promtool (required in CI; elsewhere a missing promtool skips the caller's test).
pub fn promtool() -> Option<PathBuf> {
    which("promtool")
}

/// The Prometheus server binary, if installed.
pub fn prometheus() -> Option<PathBuf> {
    which("prometheus")
}

fn which(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        assert!(std::env::var("CI").is_err(), "{name} is required in CI (install the prometheus package)");
        eprintln!("skipping: {name} not installed");
    }
    found
}

/// Seconds with millisecond fraction, as the API accepts.
pub fn format_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// A series with labels (the metric name first) and samples.
pub fn series(name: &str, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    let mut ls = vec![Label { name: "__name__".into(), value: name.into() }];
    ls.extend(labels.iter().map(|(n, v)| Label { name: (*n).into(), value: (*v).into() }));
    TimeSeries {
        labels: ls,
        samples: samples.iter().map(|&(t, v)| Sample { timestamp: t, value: v }).collect(),
        ..Default::default()
    }
}

pub fn request(ts: Vec<TimeSeries>) -> WriteRequest {
    WriteRequest { timeseries: ts, ..Default::default() }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)` for the values the tests use (integers and halves).
pub fn value_string(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// The `Content-Type` of remote-write 2.0.
pub const V2_CONTENT_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// The status, the three Written headers (`None` if absent: samples, histograms, exemplars) and the
/// body of a remote-write answer.
pub struct WriteAnswer {
    pub status: u16,
    pub written: [Option<u64>; 3],
    pub body: String,
}

/// A child process (a Prometheus, an agent) killed and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Prometheus 2.42 server on loopback with its own data directory (`extra` flags added).
pub struct PromServer {
    child: Child,
    pub addr: String,
}

impl PromServer {
    pub fn start(bin: &Path, data: &Path, extra: &[&str]) -> PromServer {
        PromServer::start_with_config(bin, data, "global:\n  scrape_interval: 1h\n", extra)
    }

    /// Like [`PromServer::start`], with `config` as its configuration file.
    pub fn start_with_config(bin: &Path, data: &Path, config: &str, extra: &[&str]) -> PromServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cfg = data.with_extension("yml");
        std::fs::write(&cfg, config).unwrap();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address={addr}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let srv = PromServer { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while ureq::get(&format!("http://{}/-/ready", srv.addr)).call().map(|r| r.status()).unwrap_or(0) != 200 {
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        srv
    }

    /// Sends a remote-write request (Prometheus needs `--web.enable-remote-write-receiver`).
    pub fn write(&self, req: &WriteRequest) {
        let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap();
        let r = ureq::post(&format!("http://{}/api/v1/write", self.addr))
            .set("Content-Encoding", "snappy")
            .set("Content-Type", "application/x-protobuf")
            .send_bytes(&body);
        assert!(r.is_ok(), "prometheus write: {r:?}");
    }

    /// GET an API path; returns (status, JSON).
    pub fn get_status_json(&self, path: &str, params: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let mut req = ureq::get(&format!("http://{}{}", self.addr, path));
        for (k, v) in params {
            req = req.query(k, v);
        }
        let (code, text) = match req.call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        };
        (code, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")))
    }

    pub fn get_json(&self, path: &str, params: &[(&str, &str)]) -> serde_json::Value {
        let mut req = ureq::get(&format!("http://{}{}", self.addr, path));
        for (k, v) in params {
            req = req.query(k, v);
        }
        let text = match req.call() {
            Ok(r) => r.into_string().unwrap(),
            Err(ureq::Error::Status(_, r)) => r.into_string().unwrap(),
            Err(e) => panic!("{e}"),
        };
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The block directories under a data directory (named by a 26-character ULID, with a meta.json),
/// sorted by name, i.e. by creation.
pub fn block_dirs(data: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(data)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && p.join("meta.json").is_file() && p.file_name().is_some_and(|n| n.len() == 26))
        .collect();
    out.sort();
    out
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
