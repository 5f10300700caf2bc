//! Hostile and slow clients, over raw TCP: each holds only its own connection. Slow bodies do not
//! take the write or query concurrency slots, stalled bodies and slow headers are cut, idle
//! connections are closed, the connection limit queues instead of refusing, shutdown does not wait
//! for half-sent requests, and oversized claims in a body cost neither memory nor long answers.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use prost::Message;

use crate::util::{request, series, Server};

/// Longest any single read in these tests waits: far beyond every timeout the servers are given, so
/// only a server that never answers makes a test fail this way.
const READ_LIMIT: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn connect(srv: &Server) -> TcpStream {
    let s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(READ_LIMIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A parsed HTTP/1.1 response.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (with a `Content-Length`, as all of Strata's are). Panics on EOF first.
fn read_answer(s: &mut TcpStream) -> Answer {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) => panic!("connection closed before a response; got {:?}", String::from_utf8_lossy(&buf)),
            Ok(_) => buf.push(byte[0]),
            Err(e) => panic!("reading a response: {e}; got {:?}", String::from_utf8_lossy(&buf)),
        }
    }
    let head = String::from_utf8(buf).unwrap();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or_else(|| if status == 204 { 0 } else { panic!("no Content-Length: {head}") });
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    Answer { status, headers, body }
}

/// True once the server has closed the connection (EOF or reset); reads and discards anything sent
/// before that. Panics if the connection is still open after [`READ_LIMIT`].
fn wait_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
}

fn write_body(samples: &[(i64, f64)], name: &str) -> Vec<u8> {
    let req = request(vec![series(name, &[("job", "slow")], samples)]);
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
}

fn write_head(len: usize) -> String {
    format!(
        "POST /api/v1/write HTTP/1.1\r\nHost: strata\r\nContent-Type: application/x-protobuf\r\n\
         Content-Encoding: snappy\r\nX-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// A complete remote-write request on a fresh connection; returns the answer.
fn write_now(srv: &Server, name: &str, t: i64) -> Answer {
    let body = write_body(&[(t, 1.0)], name);
    let mut s = connect(srv);
    s.write_all(write_head(body.len()).as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    read_answer(&mut s)
}

fn get(s: &mut TcpStream, path: &str) -> Answer {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: strata\r\n\r\n").as_bytes()).unwrap();
    read_answer(s)
}

fn metric(srv: &Server, name: &str) -> f64 {
    srv.metric(name).unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// Waits (bounded) for a counter to reach `want`: a connection is counted as closed just after its
/// socket is, so a client can see the close first.
fn wait_metric(srv: &Server, name: &str, want: f64) {
    let mut got = 0.0;
    for _ in 0..400 {
        got = metric(srv, name);
        if got == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{name} is {got}, expected {want}");
}

/// True if nothing arrives on `s` (no answer, no close) for a moment.
fn still_waiting(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut byte = [0u8; 1];
    let r = s.read(&mut byte);
    s.set_read_timeout(Some(READ_LIMIT)).unwrap();
    matches!(&r, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

#[test]
fn slow_senders_hold_only_their_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let srv =
        Server::start(dir.path(), &["--storage.remote.write.max-concurrent-requests=2", "--query.max-concurrency=2"]);
    let t = now_ms();
    // One more slow sender than there are write slots, and as many slow query bodies: headers and a
    // few bytes of the body, then nothing.
    let mut slow = Vec::new();
    for _ in 0..3 {
        let mut s = connect(&srv);
        s.write_all(write_head(1000).as_bytes()).unwrap();
        s.write_all(&[0u8; 10]).unwrap();
        slow.push(s);
    }
    for _ in 0..3 {
        let mut s = connect(&srv);
        s.write_all(
            b"POST /api/v1/query HTTP/1.1\r\nHost: strata\r\nContent-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 100\r\n\r\nquery=up",
        )
        .unwrap();
        slow.push(s);
    }
    // Normal writes and queries (GET and POST) are served meanwhile.
    for i in 0..3 {
        let a = write_now(&srv, "fast_write", t + i);
        assert_eq!(a.status, 204, "{}", a.text());
    }
    let mut q = connect(&srv);
    let a = get(&mut q, "/api/v1/query?query=fast_write");
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(a.text().contains("fast_write"), "{}", a.text());
    let form = "query=count(fast_write)";
    q.write_all(
        format!(
            "POST /api/v1/query HTTP/1.1\r\nHost: strata\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{form}",
            form.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let a = read_answer(&mut q);
    assert_eq!(a.status, 200, "{}", a.text());
    // The slow requests are all still open, neither answered nor closed.
    for s in &mut slow {
        assert!(still_waiting(s));
    }
}

#[test]
fn a_stalled_body_is_answered_408_and_closed_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &["--web.body-stall-timeout=1s"]);
    let t = now_ms();
    let body = write_body(&[(t, 1.0)], "stalled");
    let mut stalled = connect(&srv);
    stalled.write_all(write_head(body.len()).as_bytes()).unwrap();
    stalled.write_all(&body[..body.len() / 2]).unwrap();
    let a = write_now(&srv, "served", t);
    assert_eq!(a.status, 204, "{}", a.text());

    let a = read_answer(&mut stalled);
    assert_eq!(a.status, 408, "{}", a.text());
    assert!(a.text().contains("stalled"), "{}", a.text());
    assert_eq!(a.header("connection"), Some("close"));
    wait_closed(&mut stalled);
    wait_metric(&srv, "strata_http_connections_closed_total{reason=\"body_timeout\"}", 1.0);
    // The half-sent request stored nothing; the other did.
    assert!(srv.raw_samples("stalled", "1h", t + 1).is_empty());
    assert_eq!(srv.raw_samples("served", "1h", t + 1).len(), 1);
}

#[test]
fn slow_headers_are_cut_after_the_header_timeout_but_idle_keep_alive_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &["--web.read-header-timeout=1s", "--web.idle-timeout=1m"]);
    // A keep-alive connection that has finished a request and sends nothing: not a slow header.
    let mut idle = connect(&srv);
    assert_eq!(get(&mut idle, "/-/healthy").status, 200);

    let mut slow = connect(&srv);
    slow.write_all(b"GET /-/healthy HTTP/1.1\r\nHo").unwrap();
    wait_closed(&mut slow);
    // A connection that never sends anything gets the header timeout too.
    let mut silent = connect(&srv);
    wait_closed(&mut silent);
    wait_metric(&srv, "strata_http_connections_closed_total{reason=\"header_timeout\"}", 2.0);

    // The idle connection outlived the slow one's header timeout and still serves.
    assert_eq!(get(&mut idle, "/-/healthy").status, 200);
    assert_eq!(metric(&srv, "strata_http_connections_closed_total{reason=\"idle_timeout\"}"), 0.0);
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &["--web.idle-timeout=1s"]);
    let mut idle = connect(&srv);
    assert_eq!(get(&mut idle, "/-/healthy").status, 200);
    wait_closed(&mut idle);
    wait_metric(&srv, "strata_http_connections_closed_total{reason=\"idle_timeout\"}", 1.0);
}

#[test]
fn connections_beyond_the_limit_wait_and_are_served_when_a_slot_frees() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &["--web.max-connections=2"]);
    // Two connections busy sending bodies hold both slots.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut s = connect(&srv);
        s.write_all(write_head(1000).as_bytes()).unwrap();
        s.write_all(&[0u8; 10]).unwrap();
        busy.push(s);
    }

    // The third connects (the kernel queues it) and sends its request, but is not served while both
    // slots are held.
    let mut third = connect(&srv);
    third.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: strata\r\n\r\n").unwrap();
    assert!(still_waiting(&mut third), "served beyond the limit");

    // One busy client finishes its request (zeros: not snappy, 400) and keeps its connection idle:
    // it is closed to make room and the waiting connection is served.
    busy[0].write_all(&[0u8; 990]).unwrap();
    let a = read_answer(&mut busy[0]);
    assert_eq!(a.status, 400, "{}", a.text());
    let a = read_answer(&mut third);
    assert_eq!(a.status, 200, "{}", a.text());
    wait_closed(&mut busy[0]);
    // The other busy one gives up; its slot is free for the scrape below.
    drop(busy);
    drop(third);
    assert_eq!(metric(&srv, "strata_http_accept_errors_total"), 0.0);
}

#[test]
fn an_idle_keep_alive_connection_makes_room_for_a_waiting_one() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &["--web.max-connections=2", "--web.idle-timeout=10m"]);
    let mut idle = [connect(&srv), connect(&srv)];
    for s in &mut idle {
        assert_eq!(get(s, "/-/healthy").status, 200);
    }
    // Both slots are held by connections idle between requests: a new one is served at once...
    let mut third = connect(&srv);
    assert_eq!(get(&mut third, "/-/healthy").status, 200);
    // ...because exactly one of the idle ones was closed; the other still serves.
    let mut open = 0;
    for s in &mut idle {
        let alive = s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: strata\r\n\r\n").is_ok() && {
            let mut byte = [0u8; 1];
            matches!(s.read(&mut byte), Ok(1))
        };
        open += usize::from(alive);
    }
    assert_eq!(open, 1);
}

#[test]
fn sigterm_with_a_half_sent_request_exits_within_the_grace_period_and_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    // Body timeouts far beyond the test's patience: only the grace period can end the request.
    let mut srv = Server::start(
        dir.path(),
        &["--web.shutdown-grace-period=1s", "--web.body-stall-timeout=10m", "--web.read-timeout=10m"],
    );
    let t = now_ms();
    let a = write_now(&srv, "before_shutdown", t);
    assert_eq!(a.status, 204, "{}", a.text());
    let mut half = connect(&srv);
    half.write_all(write_head(1000).as_bytes()).unwrap();
    half.write_all(&[0u8; 10]).unwrap();
    // Wait (bounded) until the server has the request: the half-sent one and the scrape are open.
    let mut open = 0.0;
    for _ in 0..200 {
        open = metric(&srv, "strata_http_connections_open");
        if open == 2.0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(open, 2.0);

    let sent = Instant::now();
    let status = srv.sigterm();
    let exit_after = sent.elapsed();
    assert!(status.success(), "{status:?}; log:\n{}", srv.log_text());
    eprintln!("exit {exit_after:?} after SIGTERM with a half-sent request (grace period 1s)");
    // The log reader thread may still be catching up with the exited process.
    let cut = "closing connections still open at the end of the shutdown grace period";
    for _ in 0..200 {
        if srv.log_text().contains(cut) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(srv.log_text().contains(cut), "{}", srv.log_text());
    wait_closed(&mut half);
    drop(srv);

    // The data-directory lock is free and the acknowledged sample is there.
    let again = Server::start(dir.path(), &[]);
    assert_eq!(again.raw_samples("before_shutdown", "1h", t + 1).len(), 1);
}

/// Peak resident memory of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_snappy_bomb_is_400_without_a_memory_spike() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    let before = vm_hwm_kib(srv.pid());
    // 7 bytes declaring 255 MiB of output (under the 256 MiB decompressed limit).
    let bomb = [0x80, 0x80, 0xc0, 0x7f, 0x00, 0x00, 0x00];
    for _ in 0..4 {
        let mut s = connect(&srv);
        s.write_all(write_head(bomb.len()).as_bytes()).unwrap();
        s.write_all(&bomb).unwrap();
        let a = read_answer(&mut s);
        assert_eq!(a.status, 400, "{}", a.text());
        assert!(a.text().contains("267386880") && a.text().contains("at most 149 bytes"), "{}", a.text());
    }
    let after = vm_hwm_kib(srv.pid());
    eprintln!("VmHWM {before} KiB before, {after} KiB after four 255 MiB snappy bombs");
    assert!(after < before + 64 * 1024, "peak memory grew from {before} KiB to {after} KiB");
}

#[test]
fn a_16_mib_label_value_is_400_with_a_short_body_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    let huge = "v".repeat(16 << 20);
    let req = request(vec![series("huge_label", &[("big", &huge)], &[(now_ms(), 1.0)])]);
    let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap();
    let mut s = connect(&srv);
    s.write_all(write_head(body.len()).as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let a = read_answer(&mut s);
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.body.len() < 2048, "{} bytes: {}", a.body.len(), &a.text()[..4096.min(a.body.len())]);
    assert!(a.text().contains(&format!("… ({} bytes)", 16 << 20)), "{}", a.text());
    eprintln!("400 body of {} bytes for a 16 MiB label value", a.body.len());
    // The log line about the request is short too.
    let longest = srv.log_text().lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "a log line of {longest} bytes");
}

#[test]
fn huge_query_parameters_are_not_echoed_whole() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    let long_time = "t".repeat(1 << 20);
    let long_regex = format!("{{__name__=~\"{}\"}}", "(".repeat(100_000));
    let long_label = format!("1{}", "l".repeat(9_999));
    for (path, form) in [
        ("/api/v1/query", vec![("query", "up"), ("time", long_time.as_str())]),
        ("/api/v1/query", vec![("query", long_regex.as_str())]),
        ("/api/v1/series", vec![("match[]", "up"), ("limit", long_time.as_str())]),
    ] {
        let r = ureq::post(&srv.url(path)).send_form(&form);
        let Err(ureq::Error::Status(400, resp)) = r else { panic!("{path}: expected 400, got {r:?}") };
        let body = resp.into_string().unwrap();
        assert!(body.len() < 2048, "{path}: {} bytes: {}", body.len(), &body[..512]);
        assert!(body.contains(" bytes)"), "{path}: {body}");
    }
    // Any non-empty UTF-8 label name is valid (Prometheus 3): a long one is looked up; one that is not
    // UTF-8 is refused without being echoed.
    let r = ureq::get(&srv.url(&format!("/api/v1/label/{long_label}/values"))).call().unwrap();
    assert_eq!(r.into_string().unwrap(), r#"{"status":"success","data":[]}"#);
    let r = ureq::get(&srv.url(&format!("/api/v1/label/{long_label}%FF/values"))).call();
    let Err(ureq::Error::Status(400, resp)) = r else { panic!("label values: expected 400, got {r:?}") };
    let body = resp.into_string().unwrap();
    assert!(body.len() < 2048 && !body.contains(&long_label), "{} bytes: {}", body.len(), &body[..body.len().min(512)]);
}
