//! The web UI in a real browser: the binary serves `/graph`, `/tsdb-status` and `/status`, and
//! Debian's headless Chromium loads them (`--dump-dom` after the page's scripts have run, and a
//! screenshot). The pages take their query from the URL (Prometheus's `g0.*` parameters), so
//! loading one runs it. Without Chromium the browser part is skipped (it fails under `CI=true`);
//! without uPlot embedded (no npm at build time) the graph must show its note instead, which only
//! outside CI passes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{devtools, request, series, Server};

/// 2023-11-14 22:13:20 UTC.
const T0: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 15_000;
const SAMPLES: i64 = 120;
/// The last sample's time, T0 + 119 × 15 s, as the pages' time inputs take it (UTC).
const LAST: &str = "2023-11-14 22:43:05";

/// Three series every 15 s for 30 minutes; every other sample arrives late (out of order).
fn load(srv: &Server) {
    fn half(start: i64, f: fn(i64) -> f64) -> Vec<(i64, f64)> {
        (start..SAMPLES).step_by(2).map(|i| (T0 + i * STEP_MS, f(i))).collect()
    }
    for start in [0, 1] {
        let (code, body) = srv.write(&request(vec![
            series(
                "ui_test_requests_total",
                &[("instance", "a:9100"), ("job", "api")],
                &half(start, |i| (i * 10) as f64),
            ),
            series(
                "ui_test_requests_total",
                &[("instance", "b:9100"), ("job", "db")],
                &half(start, |i| (i * 5) as f64),
            ),
            series("ui_test_temperature_celsius", &[("room", "lab")], &half(start, |_| 21.5)),
        ]));
        assert_eq!(code, 204, "{body}");
    }
}

/// Headless Chromium with a profile and outputs in a temporary directory.
struct Browser {
    bin: PathBuf,
    dir: tempfile::TempDir,
    runs: std::cell::Cell<u32>,
}

impl Browser {
    /// Chromium if installed; `None` (a skip) otherwise, which fails under `CI=true`.
    fn find() -> Option<Browser> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let bin = std::iter::once(PathBuf::from("/usr/bin/chromium"))
            .chain(std::env::split_paths(&path).flat_map(|p| [p.join("chromium"), p.join("chromium-browser")]))
            .find(|p| p.is_file());
        if bin.is_none() {
            assert!(std::env::var("CI").is_err(), "chromium is required in CI (apt-get install chromium)");
            eprintln!("skipping the browser checks: chromium not installed (apt-get install chromium)");
        }
        Some(Browser { bin: bin?, dir: tempfile::tempdir().unwrap(), runs: std::cell::Cell::new(0) })
    }

    /// Runs Chromium on `url` with `args`, bounded by a timeout; returns its standard output.
    fn run(&self, args: &[&str], url: &str) -> String {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let profile = self.dir.path().join(format!("profile-{n}"));
        let stderr_path = self.dir.path().join(format!("chromium-{n}.log"));
        let mut child = Command::new(&self.bin)
            .args(["--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars"])
            .args(["--no-first-run", "--disable-extensions", "--disable-background-networking"])
            // Virtual time runs while the page is idle; pending requests hold it, so the budget is
            // reached only after the page's fetches and rendering are done.
            .arg("--virtual-time-budget=15000")
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("spawn chromium");
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish {url} in time; its log:\n{}", log_tail(&stderr_path));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = reader.join().unwrap();
        assert!(status.success(), "chromium on {url}: {status}; its log:\n{}", log_tail(&stderr_path));
        out
    }

    /// The page's DOM after its scripts ran; asserts they finished (the pages mark `<body>` ready).
    fn dom(&self, url: &str) -> String {
        let dom = self.run(&["--dump-dom"], url);
        assert!(dom.contains(r#"data-ready="true""#), "the page's scripts did not finish on {url}:\n{dom}");
        dom
    }

    /// A PNG screenshot of `url` at `width`×`height`, kept in the temporary directory.
    fn screenshot(&self, url: &str, name: &str, width: u32, height: u32) -> PathBuf {
        let file = self.dir.path().join(name);
        self.run(&[&format!("--screenshot={}", file.display()), &format!("--window-size={width},{height}")], url);
        file
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// `text` contains `needle`, or the failure shows both.
#[track_caller]
fn assert_has(text: &str, needle: &str) {
    assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
}

/// The element with `id`: its outer HTML, to its matching closing tag.
fn element<'a>(dom: &'a str, tag: &str, id: &str) -> &'a str {
    let start = dom.find(&format!("<{tag} id=\"{id}\"")).unwrap_or_else(|| panic!("no <{tag} id={id}> in:\n{dom}"));
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut depth = 0;
    let mut pos = start;
    while pos < dom.len() {
        let next_open = dom[pos + 1..].find(&open).map(|i| pos + 1 + i);
        let next_close =
            dom[pos + 1..].find(&close).map(|i| pos + 1 + i).unwrap_or_else(|| panic!("unclosed <{tag} id={id}>"));
        match next_open {
            Some(o) if o < next_close => {
                depth += 1;
                pos = o;
            }
            _ if depth == 0 => return &dom[start..next_close + close.len()],
            _ => {
                depth -= 1;
                pos = next_close;
            }
        }
    }
    panic!("unclosed <{tag} id={id}>")
}

fn graph_url(srv: &Server, params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", percent_encode(v))).collect();
    srv.url(&format!("/graph?{}", query.join("&")))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR", "not a PNG");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

/// The pages' pure functions (completion contexts, ranking, step alignment, stacking, parsing) under
/// Node's test runner.
#[test]
fn javascript_unit_tests_pass_under_node() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(node) = std::env::split_paths(&path).map(|p| p.join("node")).find(|p| p.is_file()) else {
        assert!(std::env::var("CI").is_err(), "node is required in CI (apt-get install npm)");
        eprintln!("skipping the JavaScript unit tests: node not installed");
        return;
    };
    let out = Command::new(node)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--test", "web/test/units.test.js"])
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "node --test failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("# fail 0") && !text.contains("# pass 0"), "{text}");
}

#[test]
fn pages_and_assets_are_served_with_types_and_revalidation() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &[]);
    let agent = ureq::AgentBuilder::new().redirects(0).build();

    let root = agent.get(&srv.url("/")).call().unwrap();
    assert_eq!(root.status(), 302);
    assert_eq!(root.header("location"), Some("graph"), "relative, so that it works under a path prefix");

    for (path, ty) in [
        ("/graph", "text/html; charset=utf-8"),
        ("/tsdb-status", "text/html; charset=utf-8"),
        ("/status", "text/html; charset=utf-8"),
        ("/assets/strata.css", "text/css; charset=utf-8"),
        ("/assets/js/graph-page.js", "text/javascript; charset=utf-8"),
    ] {
        let r = agent.get(&srv.url(path)).call().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.header("content-type"), Some(ty), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        let etag = r.header("etag").unwrap_or_else(|| panic!("{path}: no ETag")).to_owned();
        let body = r.into_string().unwrap();
        assert!(!body.is_empty(), "{path}");
        let again = agent.get(&srv.url(path)).set("If-None-Match", &etag).call().unwrap();
        assert_eq!(again.status(), 304, "{path}: a cached copy with its ETag is revalidated");
        // Compressed like the API when the client accepts gzip (the CSS and the page are large enough).
        let gz = agent.get(&srv.url(path)).set("Accept-Encoding", "gzip").call().unwrap();
        assert_eq!(gz.header("content-encoding"), Some("gzip"), "{path}");
    }
    for missing in ["/assets/nope.js", "/graph/", "/assets/"] {
        match agent.get(&srv.url(missing)).call() {
            Err(ureq::Error::Status(404, _)) => {}
            other => panic!("{missing}: expected 404, got {other:?}"),
        }
    }
}

#[test]
fn expression_browser_status_pages_render_in_chromium() {
    let Some(browser) = Browser::find() else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &["--storage.tsdb.out-of-order-time-window=1h", "--web.page-title=Lab <TSDB>"]);
    load(&srv);

    // Table: an instant query at the last sample's time, run on load from the URL.
    let dom = browser
        .dom(&graph_url(&srv, &[("g0.expr", "ui_test_requests_total"), ("g0.tab", "1"), ("g0.moment_input", LAST)]));
    assert_has(&dom, "<title>Lab &lt;TSDB&gt; · Graph</title>");
    let table = element(&dom, "div", "table-result");
    assert_has(
        table,
        r#"<td class="series">ui_test_requests_total{instance="a:9100", job="api"}</td><td class="value">1190</td>"#,
    );
    assert_has(
        table,
        r#"<td class="series">ui_test_requests_total{instance="b:9100", job="db"}</td><td class="value">595</td>"#,
    );
    assert_eq!(table.matches("<tr>").count(), 3, "a header and two series: {table}");
    assert_has(&dom, r#"<div id="error" class="alert error" role="alert" hidden="">"#);
    // The metric names for completion are loaded (the "insert metric" list is filled from them).
    let names = element(&dom, "select", "metric-names");
    assert_has(names, r#"<option value="ui_test_requests_total">"#);
    assert_has(names, r#"<option value="ui_test_temperature_celsius">"#);

    // A range vector: each series' samples with their timestamps (2.42 includes the range's start).
    let dom = browser.dom(&graph_url(
        &srv,
        &[("g0.expr", "ui_test_temperature_celsius[30s]"), ("g0.tab", "1"), ("g0.moment_input", LAST)],
    ));
    assert_has(
        element(&dom, "div", "table-result"),
        r#"<td class="series">ui_test_temperature_celsius{room="lab"}</td><td class="value">21.5 @1700001755<br>21.5 @1700001770<br>21.5 @1700001785</td>"#,
    );

    // Graph: a range query drawn by uPlot, a legend entry per series named by its labels.
    let uplot = ureq::get(&srv.url("/assets/vendor/uPlot.iife.min.js")).call().is_ok();
    let url = graph_url(
        &srv,
        &[
            ("g0.expr", "ui_test_requests_total"),
            ("g0.tab", "0"),
            ("g0.range_input", "1h"),
            ("g0.end_input", LAST),
            ("g0.stacked", "1"),
        ],
    );
    let dom = browser.dom(&url);
    if uplot {
        let graph = element(&dom, "div", "graph-result");
        assert_has(graph, r#"<div class="uplot"#);
        assert_has(graph, "<canvas");
        assert_has(graph, r#"<div class="u-label">ui_test_requests_total{instance="a:9100", job="api"}</div>"#);
        assert_has(graph, r#"<div class="u-label">ui_test_requests_total{instance="b:9100", job="db"}</div>"#);
        assert!(!graph.contains("ui_test_temperature_celsius"), "{graph}");
        assert_has(&dom, "2 series · resolution 14s");
        let png = std::fs::read(browser.screenshot(&url, "graph.png", 1280, 900)).unwrap();
        assert_eq!(png_size(&png), (1280, 900));
        // A blank page of that size is a few kilobytes; axes, two filled areas and the legend are more.
        assert!(png.len() > 20_000, "screenshot of {} bytes", png.len());
        eprintln!("graph screenshot: {} bytes, 1280x900", png.len());
    } else {
        assert!(std::env::var("CI").is_err(), "uPlot must be embedded in CI (npm ci --prefix web)");
        eprintln!("uPlot not embedded: checking the graph's note instead of the chart");
        assert_has(&dom, r#"<div id="uplot-missing" class="alert warning">"#);
    }

    // Completion: label values after `{job="`, narrowed to the metric; the unterminated query's
    // parse error is shown.
    let dom = browser.dom(&graph_url(&srv, &[("g0.expr", r#"ui_test_requests_total{job=""#), ("g0.tab", "1")]));
    let list = element(&dom, "ul", "suggestions");
    assert_has(list, r#"<ul id="suggestions" class="suggestions" role="listbox">"#);
    assert_has(list, r#"<span class="name">api</span><span class="kind">label value</span>"#);
    assert_has(list, r#"<span class="name">db</span>"#);
    assert_eq!(list.matches("<li ").count(), 2, "{list}");
    let error = element(&dom, "div", "error");
    assert_has(error, "Error executing query: bad_data:");
    assert_has(error, "parse error");
    assert!(!error.contains("hidden"), "{error}");
    // Label names inside the braces, narrowed to the metric's.
    let dom = browser.dom(&graph_url(&srv, &[("g0.expr", "ui_test_requests_total{"), ("g0.tab", "1")]));
    let list = element(&dom, "ul", "suggestions");
    assert_has(list, r#"<span class="name">instance</span><span class="kind">label</span>"#);
    assert_has(list, r#"<span class="name">job</span>"#);
    assert!(!list.contains(">room<"), "{list}");
    // Metric names by prefix.
    let dom = browser.dom(&graph_url(&srv, &[("g0.expr", "ui_test_te"), ("g0.tab", "1")]));
    let list = element(&dom, "ul", "suggestions");
    assert_has(list, r#"<span class="name">ui_test_temperature_celsius</span><span class="kind">metric</span>"#);
    assert!(!list.contains("ui_test_requests_total"), "{list}");
    assert_has(element(&dom, "div", "table-result"), "Empty query result");

    // TSDB status: head figures, top metrics, and the out-of-order figures from /metrics
    // (3 series × 59 late samples; each series' last sample came in order).
    let dom = browser.dom(&srv.url("/tsdb-status"));
    assert_has(element(&dom, "div", "head-stats"), "<td>3</td>");
    assert_has(
        element(&dom, "div", "series-by-metric"),
        "<tr><td>ui_test_requests_total</td><td>2</td></tr><tr><td>ui_test_temperature_celsius</td><td>1</td></tr>",
    );
    assert_has(element(&dom, "div", "series-by-pair"), "<tr><td>job=api</td><td>1</td></tr>");
    let ooo = element(&dom, "div", "ooo-stats");
    assert_has(ooo, "<tr><td>Out-of-order time window</td><td>1h</td></tr>");
    assert_has(ooo, "<tr><td>Samples stored out of order</td><td>177</td></tr>");
    assert_has(ooo, "<tr><td>Samples stored in order</td><td>183</td></tr>");
    assert_has(ooo, "<tr><td>Samples rejected: too_old</td><td>0</td></tr>");
    assert_has(&dom, r#"<div id="error" class="alert error" role="alert" hidden="">"#);

    // Runtime and build information, flags, configuration.
    let dom = browser.dom(&srv.url("/status"));
    assert_has(element(&dom, "div", "build-info"), "<td>strataVersion</td>");
    assert_has(element(&dom, "div", "runtime-info"), "<td>reloadConfigSuccess</td><td>true</td>");
    assert_has(
        element(&dom, "div", "flags-table"),
        "<tr><td>--storage.tsdb.out-of-order-time-window</td><td>1h</td></tr>",
    );
    assert_has(element(&dom, "pre", "config-yaml"), "# no configuration file");
}

/// The expression box driven by keyboard events through the DevTools protocol: completion of a
/// metric name (Tab), a label value (arrow, Enter), Ctrl+Enter executing, and the Graph tab.
#[test]
fn expression_box_completes_and_executes_from_the_keyboard() {
    let Some(browser) = Browser::find() else { return };
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path(), &["--storage.tsdb.out-of-order-time-window=1h"]);
    load(&srv);
    let mut page = devtools::Page::open(&browser.bin, &browser.dir.path().join("profile-devtools"));
    page.navigate(&graph_url(&srv, &[("g0.tab", "1"), ("g0.moment_input", LAST)]));
    page.wait_for("document.body?.dataset.ready === 'true'", |v| v == true);
    const SUGGESTIONS: &str = "[...document.querySelectorAll('#suggestions li .name')].map((e) => e.textContent)";
    const VALUE: &str = "document.getElementById('expr').value";
    page.eval("document.getElementById('expr').focus()");

    page.type_text("ui_test_re");
    page.wait_for(SUGGESTIONS, |v| v == &json!(["ui_test_requests_total"]));
    page.press("Tab", 0);
    assert_eq!(page.eval(VALUE), json!("ui_test_requests_total"));
    assert_eq!(page.eval("document.getElementById('suggestions').hidden"), json!(true));

    page.type_text("{job=\"");
    page.wait_for(SUGGESTIONS, |v| v == &json!(["api", "db"]));
    page.press("ArrowDown", 0);
    page.press("Enter", 0);
    assert_eq!(page.eval(VALUE), json!("ui_test_requests_total{job=\"db\""), "the closing quote is added");
    page.type_text("}");
    page.wait_for("document.getElementById('suggestions').hidden", |v| v == true);
    assert_eq!(page.eval("document.querySelectorAll('#table-result tr').length"), json!(0), "nothing ran yet");

    page.press("Enter", 2);
    let rows = page.wait_for(
        "[...document.querySelectorAll('#table-result tbody tr')].map((r) => r.innerText.split('\\t'))",
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    );
    assert_eq!(rows, json!([["ui_test_requests_total{instance=\"b:9100\", job=\"db\"}", "595"]]));
    let search = page.eval("decodeURIComponent(location.search)");
    assert!(search.as_str().unwrap().contains("g0.expr=ui_test_requests_total{job=\"db\"}"), "{search}");

    // The Graph tab runs the range query; with uPlot the legend names the one series.
    page.eval(
        "document.getElementById('range').value = '1h'; document.getElementById('end').value = '2023-11-14 22:43:05'",
    );
    page.eval("document.getElementById('tab-graph').click()");
    let stats = page.wait_for("document.getElementById('graph-stats').textContent", |v| v != "");
    assert!(stats.as_str().unwrap().starts_with("1 series"), "{stats}");
    if ureq::get(&srv.url("/assets/vendor/uPlot.iife.min.js")).call().is_ok() {
        let labels =
            page.eval("[...document.querySelectorAll('#graph-result .u-legend .u-label')].map((e) => e.textContent)");
        assert_eq!(labels, json!(["Time", "ui_test_requests_total{instance=\"b:9100\", job=\"db\"}"]));
        // Selecting the last part of the graph with the mouse queries that span.
        let rect = page.eval(
            "(() => { const r = document.querySelector('#graph-result .u-over').getBoundingClientRect(); \
             return [r.left, r.top, r.width, r.height]; })()",
        );
        let [left, top, width, height] = [0, 1, 2, 3].map(|i| rect[i].as_f64().unwrap());
        let y = top + height / 2.0;
        page.mouse("mousePressed", left + width * 0.5, y);
        page.mouse("mouseMoved", left + width * 0.75, y);
        page.mouse("mouseReleased", left + width * 0.75, y);
        let range = page.wait_for("document.getElementById('range').value", |v| v != "1h");
        let range = range.as_str().unwrap().to_owned();
        assert!(range.starts_with("14m") || range.starts_with("15m"), "a quarter of the hour: {range}");
        let end = page.eval("document.getElementById('end').value");
        assert!(
            end.as_str().unwrap() < "2023-11-14 22:43:05" && end.as_str().unwrap() > "2023-11-14 22:13:05",
            "{end}"
        );
        page.wait_for("decodeURIComponent(location.search)", |v| {
            v.as_str().unwrap().contains(&format!("g0.range_input={range}"))
        });
        page.wait_for("document.querySelectorAll('#graph-result .u-legend .u-label').length", |v| v == 2);
    }
    assert!(page.eval("location.search").as_str().unwrap().contains("g0.tab=0"));
}
