//! A minimal W3C WebDriver client for the browser tests: Debian's `chromedriver` driving
//! Debian's headless `chromium`, over a blocking HTTP/1.1 client on loopback (no crate
//! beyond serde_json). Every call has a timeout, so a hung browser fails a test instead of
//! hanging it; the driver and its Chromium processes are killed by their PIDs on drop.
#![allow(dead_code)]

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key of an element reference in the W3C protocol.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// What went wrong, and what to do about it.
#[derive(Debug)]
pub enum Error {
    /// chromium or chromedriver is not installed.
    Missing(String),
    /// chromedriver did not start or did not become ready.
    Start(String),
    /// The HTTP exchange with chromedriver failed (refused, timed out, malformed).
    Transport(String),
    /// chromedriver answered with a W3C error (`no such element`, `timeout`, ...).
    WebDriver {
        call: String,
        error: String,
        message: String,
    },
    /// Anything else (a screenshot that is not base64, a file that cannot be written).
    Other(String),
}

impl Error {
    /// The W3C error code, when chromedriver gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::WebDriver { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Missing(what) => write!(
                f,
                "{what} is missing: run scripts/setup (it installs Debian's chromium and chromium-driver)"
            ),
            Error::Start(what) => write!(
                f,
                "chromedriver did not start: {what} (run `{CHROMEDRIVER} --port=9515` by hand to see why)"
            ),
            Error::Transport(what) => write!(
                f,
                "talking to chromedriver failed: {what} (a hung or crashed browser; see the driver's log)"
            ),
            Error::WebDriver {
                call,
                error,
                message,
            } => {
                let first = message.lines().next().unwrap_or_default();
                write!(f, "{call}: {error}: {first}")
            }
            Error::Other(what) => write!(f, "{what}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Timeouts: of one HTTP exchange with the driver, and the browser's own for a page load
/// and a script. A page load must fail inside the exchange's timeout.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub call: Duration,
    pub page_load: Duration,
    pub script: Duration,
    pub start: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            call: Duration::from_secs(60),
            page_load: Duration::from_secs(30),
            script: Duration::from_secs(15),
            start: Duration::from_secs(30),
        }
    }
}

/// A headless Chromium session behind its own chromedriver.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: Option<String>,
    timeouts: Timeouts,
    log: PathBuf,
    // The fresh profile; removed on drop, after the browser has gone.
    profile: Option<tempfile::TempDir>,
}

/// A reference to an element of the current page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session of headless
    /// Chromium (fresh profile, 1280x1600 window, no background networking).
    pub fn start() -> Result<Browser> {
        Browser::start_with(Timeouts::default())
    }

    /// Like [`Browser::start`] with other timeouts. A driver that did not start (its port
    /// taken between choosing and binding it) is tried once more on another port.
    pub fn start_with(timeouts: Timeouts) -> Result<Browser> {
        match Browser::start_once(timeouts) {
            Err(Error::Start(first)) => Browser::start_once(timeouts).map_err(|e| match e {
                Error::Start(then) => Error::Start(format!("{first}; tried again: {then}")),
                other => other,
            }),
            other => other,
        }
    }

    fn start_once(timeouts: Timeouts) -> Result<Browser> {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(tool).exists() {
                return Err(Error::Missing(tool.to_string()));
            }
        }
        let profile = tempfile::Builder::new()
            .prefix("dealreg-chromium-")
            .tempdir()
            .map_err(|e| Error::Start(format!("a temporary profile directory: {e}")))?;
        let log = profile.path().join("chromedriver.log");
        let port = free_port().map_err(|e| Error::Start(format!("no free port: {e}")))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let driver = spawn_driver(port, &log)?;
        let mut browser = Browser {
            driver,
            addr,
            session: None,
            timeouts,
            log,
            profile: Some(profile),
        };
        browser.wait_ready()?;
        browser.open_session()?;
        Ok(browser)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.timeouts.start;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.driver.try_wait() {
                return Err(Error::Start(format!(
                    "it exited with {status}; its log: {}",
                    self.log_tail()
                )));
            }
            match self.call("GET", "/status", None) {
                Ok(value) if value["ready"] == true => return Ok(()),
                Ok(value) => last = format!("not ready: {value}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(Error::Start(format!(
            "not ready after {:?} ({last}); its log: {}",
            self.timeouts.start,
            self.log_tail()
        )))
    }

    fn open_session(&mut self) -> Result<()> {
        let profile = self
            .profile
            .as_ref()
            .map(|p| p.path().join("profile"))
            .expect("the profile is there until drop");
        let ms = |d: Duration| d.as_millis() as u64;
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "pageLoadStrategy": "normal",
                "timeouts": {
                    "pageLoad": ms(self.timeouts.page_load),
                    "script": ms(self.timeouts.script),
                    "implicit": 0
                },
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless=new",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--disable-quic",
                        "--no-first-run",
                        "--no-default-browser-check",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--disable-extensions",
                        "--disable-crash-reporter",
                        "--disable-breakpad",
                        "--hide-scrollbars",
                        format!("--user-data-dir={}", profile.display()),
                        "--window-size=1280,1600"
                    ]
                }
            }}
        });
        let value = self.call("POST", "/session", Some(&capabilities))?;
        let id = value["sessionId"].as_str().ok_or_else(|| {
            Error::Start(format!(
                "the new session has no id: {value}; its log: {}",
                self.log_tail()
            ))
        })?;
        self.session = Some(id.to_string());
        Ok(())
    }

    /// The last lines of chromedriver's log (for error messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn session_path(&self, tail: &str) -> Result<String> {
        let id = self
            .session
            .as_deref()
            .ok_or_else(|| Error::Other("the session was closed".into()))?;
        Ok(format!("/session/{id}{tail}"))
    }

    fn command(&self, method: &str, tail: &str, body: Option<&Value>) -> Result<Value> {
        let path = self.session_path(tail)?;
        self.call(method, &path, body)
    }

    /// One WebDriver call: the answer's `value`, or its error.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let payload = match (method, body) {
            (_, Some(body)) => body.to_string(),
            ("POST", None) => "{}".to_string(),
            _ => String::new(),
        };
        let (status, text) = http(self.addr, method, path, &payload, self.timeouts.call)?;
        let answer: Value = serde_json::from_str(&text).map_err(|e| {
            Error::Transport(format!(
                "{method} {path}: HTTP {status} with a body that is not JSON ({e}): {}",
                text.chars().take(300).collect::<String>()
            ))
        })?;
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        if status >= 400 || value.get("error").is_some_and(Value::is_string) {
            return Err(Error::WebDriver {
                call: format!("{method} {path}"),
                error: value["error"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_string(),
                message: value["message"].as_str().unwrap_or_default().to_string(),
            });
        }
        Ok(value)
    }

    /// Loads `url` and waits for the page's load (the session's page-load timeout).
    pub fn goto(&self, url: &str) -> Result<()> {
        self.command("POST", "/url", Some(&json!({ "url": url })))
            .map(drop)
    }

    pub fn current_url(&self) -> Result<String> {
        let value = self.command("GET", "/url", None)?;
        string(value, "the current URL")
    }

    pub fn title(&self) -> Result<String> {
        let value = self.command("GET", "/title", None)?;
        string(value, "the title")
    }

    /// The page's DOM, serialized.
    pub fn source(&self) -> Result<String> {
        let value = self.command("GET", "/source", None)?;
        string(value, "the page source")
    }

    /// The first element matching a CSS selector (`no such element` when none does).
    pub fn find(&self, css: &str) -> Result<Element> {
        let value = self.command(
            "POST",
            "/element",
            Some(&json!({ "using": "css selector", "value": css })),
        )?;
        element(&value).map_err(|e| with_selector(e, css))
    }

    /// Every element matching a CSS selector (maybe none).
    pub fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let value = self.command(
            "POST",
            "/elements",
            Some(&json!({ "using": "css selector", "value": css })),
        )?;
        value
            .as_array()
            .ok_or_else(|| Error::Other(format!("elements of {css:?}: not a list: {value}")))?
            .iter()
            .map(element)
            .collect()
    }

    /// Elements matching `css` inside `parent`.
    pub fn find_all_in(&self, parent: &Element, css: &str) -> Result<Vec<Element>> {
        let value = self.command(
            "POST",
            &format!("/element/{}/elements", parent.0),
            Some(&json!({ "using": "css selector", "value": css })),
        )?;
        value
            .as_array()
            .ok_or_else(|| Error::Other(format!("elements of {css:?}: not a list: {value}")))?
            .iter()
            .map(element)
            .collect()
    }

    /// Whether an element matches `css` now.
    pub fn exists(&self, css: &str) -> Result<bool> {
        Ok(!self.find_all(css)?.is_empty())
    }

    /// The rendered text of an element.
    pub fn text(&self, element: &Element) -> Result<String> {
        let value = self.command("GET", &format!("/element/{}/text", element.0), None)?;
        string(value, "an element's text")
    }

    /// An attribute of an element (None when absent).
    pub fn attr(&self, element: &Element, name: &str) -> Result<Option<String>> {
        let value = self.command(
            "GET",
            &format!("/element/{}/attribute/{name}", element.0),
            None,
        )?;
        Ok(value.as_str().map(str::to_string))
    }

    /// A DOM property of an element (e.g. `value` of an input).
    pub fn property(&self, element: &Element, name: &str) -> Result<Value> {
        self.command(
            "GET",
            &format!("/element/{}/property/{name}", element.0),
            None,
        )
    }

    pub fn tag_name(&self, element: &Element) -> Result<String> {
        let value = self.command("GET", &format!("/element/{}/name", element.0), None)?;
        string(value, "an element's tag name")
    }

    /// Types `text` into an element, as key presses.
    pub fn send_keys(&self, element: &Element, text: &str) -> Result<()> {
        self.command(
            "POST",
            &format!("/element/{}/value", element.0),
            Some(&json!({ "text": text })),
        )
        .map(drop)
    }

    pub fn clear(&self, element: &Element) -> Result<()> {
        self.command("POST", &format!("/element/{}/clear", element.0), None)
            .map(drop)
    }

    /// Clicks an element (scrolled into view first by the driver). A click that submits a
    /// form returns once the next page has loaded.
    pub fn click(&self, element: &Element) -> Result<()> {
        self.command("POST", &format!("/element/{}/click", element.0), None)
            .map(drop)
    }

    /// Runs `script` in the page with `args` (elements as `Element::to_arg`); its result.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.command(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Submits the form an element belongs to (or the form itself) as a user's Enter
    /// would, bypassing the browser's own constraint checks (`required`, `min`) so the
    /// server's validation is what answers; waits for the next page's load.
    pub fn submit(&self, element: &Element) -> Result<()> {
        let before = self.document()?;
        self.execute(
            "const e = arguments[0]; const f = e.form || e.closest('form') || e; \
             HTMLFormElement.prototype.submit.call(f);",
            vec![element.to_arg()],
        )?;
        self.wait_for_next_document(&before, "the submitted form's answer")
    }

    /// Clicks an element that leads to another page (a link, a form's button) and waits
    /// until that page has loaded: the driver's click may return before a form's POST has
    /// even started, so `click` alone races with the next read.
    pub fn click_to_load(&self, element: &Element) -> Result<()> {
        let before = self.document()?;
        self.click(element)?;
        self.wait_for_next_document(&before, "the page a click leads to")
    }

    /// Which document is loaded: its time origin, unique per page load.
    fn document(&self) -> Result<Value> {
        self.execute("return String(performance.timeOrigin);", vec![])
    }

    fn wait_for_next_document(&self, before: &Value, what: &str) -> Result<()> {
        self.wait_until(what, || {
            let now = self.execute(
                "return document.readyState === 'complete' ? String(performance.timeOrigin) : null;",
                vec![],
            )?;
            Ok(!now.is_null() && now != *before)
        })
    }

    /// Polls `check` every 100 ms until it holds, for at most the page-load timeout.
    pub fn wait_until(&self, what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
        let deadline = Instant::now() + self.timeouts.page_load;
        loop {
            match check() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                // The page went away between two polls (a navigation): poll again.
                Err(Error::WebDriver { error, .. })
                    if error == "javascript error"
                        || error == "no such execution context"
                        || error == "stale element reference" => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(Error::Other(format!(
                    "waited {:?} for {what}",
                    self.timeouts.page_load
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the viewport.
    pub fn screenshot_png(&self) -> Result<Vec<u8>> {
        let value = self.command("GET", "/screenshot", None)?;
        let text = string(value, "a screenshot")?;
        base64_decode(&text).ok_or_else(|| Error::Other("the screenshot is not base64".into()))
    }

    /// A PNG of the whole page, beyond the viewport (Chromium's DevTools command through
    /// chromedriver's `goog/cdp/execute`), at most 6000 CSS pixels tall.
    pub fn full_page_png(&self) -> Result<Vec<u8>> {
        let metrics = self.command(
            "POST",
            "/goog/cdp/execute",
            Some(&json!({ "cmd": "Page.getLayoutMetrics", "params": {} })),
        )?;
        let size = &metrics["cssContentSize"];
        let (width, height) = (
            size["width"].as_f64().unwrap_or(1280.0).ceil(),
            size["height"].as_f64().unwrap_or(1600.0).ceil().min(6000.0),
        );
        let shot = self.command(
            "POST",
            "/goog/cdp/execute",
            Some(&json!({ "cmd": "Page.captureScreenshot", "params": {
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 }
            }})),
        )?;
        let text = shot["data"]
            .as_str()
            .ok_or_else(|| Error::Other(format!("a full-page screenshot without data: {shot}")))?;
        base64_decode(text).ok_or_else(|| Error::Other("the screenshot is not base64".into()))
    }

    /// Saves a screenshot of the whole page as `target/screenshots/<test>-<page>.png` (beside the workspace's
    /// Cargo.toml), and also in `docs/screenshots/` when DEALREG_SAVE_SCREENSHOTS=1.
    /// Returns the path under target/.
    pub fn screenshot(&self, test: &str, page: &str) -> Result<PathBuf> {
        let png = self.full_page_png()?;
        Self::save(test, page, &png)
    }

    /// As [`Browser::screenshot`], of the window only: for a page too long to keep whole.
    pub fn screenshot_window(&self, test: &str, page: &str) -> Result<PathBuf> {
        let png = self.screenshot_png()?;
        Self::save(test, page, &png)
    }

    fn save(test: &str, page: &str, png: &[u8]) -> Result<PathBuf> {
        if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Err(Error::Other(format!(
                "the screenshot of {test}-{page} is not a PNG"
            )));
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let name = format!("{test}-{page}.png");
        let mut dirs = vec![root.join("target/screenshots")];
        if std::env::var("DEALREG_SAVE_SCREENSHOTS").as_deref() == Ok("1") {
            dirs.push(root.join("docs/screenshots"));
        }
        for dir in &dirs {
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(dir.join(&name), png))
                .map_err(|e| Error::Other(format!("writing {}: {e}", dir.join(&name).display())))?;
        }
        Ok(dirs.swap_remove(0).join(name))
    }

    /// Ends the session (Chromium exits) and stops the driver.
    pub fn quit(mut self) -> Result<()> {
        let result = self.end_session();
        self.stop_driver();
        result
    }

    fn end_session(&mut self) -> Result<()> {
        match self.session.take() {
            Some(id) => self
                .call("DELETE", &format!("/session/{id}"), None)
                .map(drop),
            None => Ok(()),
        }
    }

    /// Kills chromedriver and every process under it (Chromium and its helpers) by PID.
    fn stop_driver(&mut self) {
        let root = self.driver.id();
        // Collected before any kill: an orphan's parent becomes init and the tree is lost.
        let mut pids = descendants(root);
        pids.push(root);
        for pid in pids {
            // SAFETY: kill(2) with a PID of a process this test started (or its child).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.session.is_some() {
            // Bounded: a short timeout, then the processes are killed anyway.
            self.timeouts.call = Duration::from_secs(5);
            let _ = self.end_session();
        }
        self.stop_driver();
        // The profile's TempDir is removed after the processes writing to it are gone.
        drop(self.profile.take());
    }
}

impl Element {
    /// The element as an argument of `Browser::execute`.
    pub fn to_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }
}

fn element(value: &Value) -> Result<Element> {
    value[ELEMENT_KEY]
        .as_str()
        .map(|id| Element(id.to_string()))
        .ok_or_else(|| Error::Other(format!("not an element reference: {value}")))
}

fn with_selector(error: Error, css: &str) -> Error {
    match error {
        Error::WebDriver {
            call,
            error,
            message,
        } => Error::WebDriver {
            call: format!("{call} {css:?}"),
            error,
            message,
        },
        other => other,
    }
}

fn string(value: Value, what: &str) -> Result<String> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::Other(format!("{what} is not a string: {value}")))
}

fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()
        .map(|a| a.port())
}

fn spawn_driver(port: u16, log: &Path) -> Result<Child> {
    let out = std::fs::File::create(log)
        .map_err(|e| Error::Start(format!("the log file {}: {e}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(|e| Error::Start(format!("the log file: {e}")))?;
    Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .arg(format!("--log-path={}", log.display()))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| Error::Start(format!("spawning {CHROMEDRIVER}: {e}")))
}

/// Every process below `root`, from /proc (children before their own children).
fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// One HTTP/1.1 exchange on loopback with `Connection: close`; status and body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Result<(u16, String)> {
    let fail = |what: String| Error::Transport(format!("{method} {path}: {what}"));
    let mut stream = TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(5)))
        .map_err(|e| fail(format!("connect to {addr}: {e}")))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| fail(format!("socket timeouts: {e}")))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .map_err(|e| fail(format!("send: {e}")))?;
    let deadline = Instant::now() + timeout;
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    let (head_end, length) = loop {
        if let Some(end) = find(&raw, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_string();
            let length = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            });
            // Without a Content-Length the body ends when the connection closes.
            if let Some(n) = length.filter(|n| raw.len() >= end + 4 + n) {
                break (end, Some(n));
            }
        }
        if Instant::now() >= deadline {
            return Err(fail(format!("no full answer after {timeout:?}")));
        }
        match stream.read(&mut buf) {
            Ok(0) => match find(&raw, b"\r\n\r\n") {
                Some(end) => break (end, None),
                None => return Err(fail("the connection closed before an answer".into())),
            },
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return Err(fail(format!("no answer within {timeout:?}")))
            }
            Err(e) => return Err(fail(format!("read: {e}"))),
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| fail(format!("not an HTTP answer: {head:?}")))?;
    let start = head_end + 4;
    let end = length.map_or(raw.len(), |n| (start + n).min(raw.len()));
    Ok((
        status,
        String::from_utf8_lossy(&raw[start..end]).to_string(),
    ))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Standard base64 (with or without padding); None on any other character.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for byte in text.bytes() {
        let v = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            b'\r' | b'\n' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
