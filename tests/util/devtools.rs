//! A minimal Chrome DevTools Protocol client over `--remote-debugging-pipe` (JSON messages separated
//! by NUL bytes; the browser reads fd 3 and writes fd 4), enough to load a page, type into it,
//! press keys and read the DOM back with JavaScript.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Longest wait for one answer from the browser.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// A headless Chromium with one page attached. Killed on drop.
pub struct Page {
    child: Child,
    to_browser: std::io::PipeWriter,
    from_browser: mpsc::Receiver<Value>,
    next_id: u64,
    session: String,
}

impl Page {
    /// Starts `chromium` with its profile in `profile` and opens a blank page.
    pub fn open(chromium: &Path, profile: &Path) -> Page {
        let (browser_reads, to_browser) = std::io::pipe().unwrap();
        let (from_browser, browser_writes) = std::io::pipe().unwrap();
        let (r, w) = (browser_reads.as_raw_fd(), browser_writes.as_raw_fd());
        let mut cmd = Command::new(chromium);
        cmd.args(["--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run"])
            .args(["--disable-extensions", "--disable-background-networking", "--remote-debugging-pipe"])
            .arg("--window-size=1200,800")
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec the child only calls fcntl, dup2 and close, which are
        // async-signal-safe; the pipe ends stay open in this process until the spawn returns. The
        // ends are first copied above fd 10, since either may itself be fd 3 or 4.
        #[allow(unsafe_code)]
        unsafe {
            cmd.pre_exec(move || {
                let (r_high, w_high) = (libc::fcntl(r, libc::F_DUPFD, 10), libc::fcntl(w, libc::F_DUPFD, 10));
                if r_high < 0 || w_high < 0 || libc::dup2(r_high, 3) < 0 || libc::dup2(w_high, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(r_high);
                libc::close(w_high);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn chromium");
        drop((browser_reads, browser_writes));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from_browser);
            let mut buf = Vec::new();
            while reader.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
                buf.clear();
            }
        });
        let mut page = Page { child, to_browser, from_browser: rx, next_id: 0, session: String::new() };
        let target = page.call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = page.call("Target.attachToTarget", json!({"targetId": target_id, "flatten": true}));
        page.session = attached["sessionId"].as_str().expect("sessionId").to_owned();
        page
    }

    /// Sends a command (to the page once attached) and returns its result; panics on an error.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to_browser.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.from_browser.recv_timeout(left).unwrap_or_else(|e| panic!("{method}: no answer ({e})"));
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Loads `url`.
    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its value as JSON.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({"expression": expr, "returnByValue": true, "awaitPromise": true}));
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Evaluates `expr` until `done` holds for its value (at most a minute); returns that value.
    pub fn wait_for(&mut self, expr: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let v = self.eval(expr);
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "waited in vain for {expr}; last value {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `text` where the focus is, as a keyboard would insert it.
    pub fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Presses and releases a key (`Tab`, `Enter`, `ArrowDown`, `Escape`); `modifiers` as the
    /// protocol counts them (2: Ctrl, 8: Shift).
    pub fn press(&mut self, key: &str, modifiers: u32) {
        let code = match key {
            "Tab" => 9,
            "Enter" => 13,
            "Escape" => 27,
            "ArrowUp" => 38,
            "ArrowDown" => 40,
            other => panic!("no key code for {other}"),
        };
        for kind in ["rawKeyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code, "modifiers": modifiers}),
            );
        }
    }
}

impl Page {
    /// A left-button mouse event (`mousePressed`, `mouseMoved`, `mouseReleased`) at a point of
    /// the viewport.
    pub fn mouse(&mut self, kind: &str, x: f64, y: f64) {
        let buttons = if kind == "mouseReleased" { 0 } else { 1 };
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": kind, "x": x, "y": y, "button": "left", "buttons": buttons, "clickCount": 1}),
        );
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
