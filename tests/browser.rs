//! Issue 34, item 5: the pages in a real browser. Debian's headless Chromium, driven over
//! W3C WebDriver by Debian's chromedriver (`tests/webdriver/mod.rs`), loads each page,
//! checks its elements against the views' JSON and saves screenshots to
//! `target/screenshots/` (and `docs/screenshots/` with DEALREG_SAVE_SCREENSHOTS=1).
//! A missing Chromium fails these tests: `scripts/setup` installs it.

mod nats_support;
mod webdriver;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nats_support::NatsServer;
use serde_json::Value;
use webdriver::{Browser, Element, Timeouts};

/// A tiny HTTP server on loopback for the harness's own test: a form, a chart, an echo of
/// what the form posted, and a page that never answers.
struct Fixture {
    addr: SocketAddr,
}

const FIXTURE_PAGE: &str = r##"<!doctype html>
<html><head><title>harness fixture</title></head><body>
<h1 id="heading">Harness fixture</h1>
<form method="post" action="/echo">
  <input type="hidden" name="csrf" value="token-1">
  <label>Customer <input name="customer_name" required></label>
  <label>Amount <input name="amount" type="number" min="1"></label>
  <button id="go" type="submit">Send</button>
</form>
<svg data-chart="demo" width="200" height="100">
  <rect data-value="3" x="0" y="70" width="40" height="30" fill="#36c"></rect>
  <rect data-value="7" x="50" y="30" width="40" height="70" fill="#36c"></rect>
</svg>
<a id="next" href="/echo?from=link">next</a>
</body></html>"##;

impl Fixture {
    fn start() -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fixture server");
        let addr = listener.local_addr().expect("its address");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve_fixture(stream));
            }
        });
        Fixture { addr }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn serve_fixture(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head, body) = loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&raw).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                break (head.to_string(), body[..length].to_string());
            }
        }
    };
    let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, page) = if target == "/" {
        ("200 OK", FIXTURE_PAGE.to_string())
    } else if target.starts_with("/echo") {
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let posted = escape(&format!("{body}{query}"));
        (
            "200 OK",
            format!("<!doctype html><title>echo</title><p id=\"echo\">{posted}</p>"),
        )
    } else if target == "/hang" {
        // Never answers: the browser's page-load timeout must end the wait.
        std::thread::sleep(Duration::from_secs(120));
        return;
    } else {
        ("404 Not Found", "<p>no such page</p>".to_string())
    };
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
        page.len()
    );
    let _ = stream.write_all(answer.as_bytes());
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;")
}

fn started(what: &str) -> Browser {
    let t = Instant::now();
    let browser = Browser::start().unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!("{what}: the browser started in {:?}", t.elapsed());
    browser
}

/// The harness against a page of its own: navigate, find, read, type, click, submit past
/// the browser's own checks, follow a link, screenshot; a page that never answers fails
/// within the page-load timeout instead of hanging the test.
#[test]
fn the_harness_drives_a_real_chromium() {
    let fixture = Fixture::start();
    let browser = started("harness");
    browser.goto(&fixture.url("/")).expect("load the fixture");
    assert_eq!(browser.title().expect("title"), "harness fixture");
    let heading = browser.find("#heading").expect("the heading");
    assert_eq!(browser.text(&heading).expect("text"), "Harness fixture");
    assert_eq!(browser.tag_name(&heading).expect("tag"), "h1");

    // A chart's bars, read as the browser parsed them.
    let bars = browser
        .find_all("svg[data-chart=\"demo\"] [data-value]")
        .expect("bars");
    let values: Vec<String> = bars
        .iter()
        .map(|b| {
            browser
                .attr(b, "data-value")
                .expect("attr")
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(values, ["3", "7"]);
    assert!(browser
        .find_all("svg[data-chart=\"none\"] [data-value]")
        .expect("none")
        .is_empty());
    let missing = browser.find("#no-such-thing").expect_err("no such element");
    assert_eq!(missing.code(), Some("no such element"), "{missing}");
    let csrf = browser.find("input[name=csrf]").expect("csrf");
    assert_eq!(
        browser.attr(&csrf, "value").expect("attr").as_deref(),
        Some("token-1")
    );

    // Typing and clicking: the form posts what was typed.
    let name = browser
        .find("input[name=customer_name]")
        .expect("name input");
    browser.send_keys(&name, "Acme & Sons").expect("type");
    assert_eq!(
        browser.property(&name, "value").expect("value"),
        serde_json::json!("Acme & Sons")
    );
    browser
        .send_keys(&browser.find("input[name=amount]").expect("amount"), "42")
        .expect("type");
    browser.screenshot("harness", "form").expect("screenshot");
    browser
        .click_to_load(&browser.find("#go").expect("the button"))
        .expect("click");
    assert!(browser.current_url().expect("url").ends_with("/echo"));
    let echo = browser
        .text(&browser.find("#echo").expect("echo"))
        .expect("text");
    assert_eq!(echo, "csrf=token-1&customer_name=Acme+%26+Sons&amount=42");

    // Submitting a form the browser would refuse (required, empty): the server answers.
    browser.goto(&fixture.url("/")).expect("load again");
    let amount = browser.find("input[name=amount]").expect("amount");
    browser.send_keys(&amount, "0").expect("type");
    browser
        .click(&browser.find("#go").expect("button"))
        .expect("click");
    assert!(
        browser.current_url().expect("url").ends_with('/'),
        "the browser's own check held the click"
    );
    browser
        .submit(&amount)
        .expect("submit past the browser's checks");
    let echo = browser
        .text(&browser.find("#echo").expect("echo"))
        .expect("text");
    assert_eq!(echo, "csrf=token-1&customer_name=&amount=0");

    browser.goto(&fixture.url("/")).expect("load again");
    browser
        .click_to_load(&browser.find("#next").expect("link"))
        .expect("follow the link");
    assert_eq!(
        browser.current_url().expect("url"),
        fixture.url("/echo?from=link")
    );
    assert!(browser.source().expect("source").contains("from=link"));

    let shot = browser.screenshot("harness", "echo").expect("screenshot");
    let png = std::fs::read(&shot).expect("the screenshot file");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "{}",
        shot.display()
    );
    // The PNG's own width and height: the window asked for.
    let width = u32::from_be_bytes(png[16..20].try_into().expect("4 bytes"));
    assert_eq!(width, 1280, "the screenshot's width");
    let viewport = browser.screenshot_png().expect("a viewport screenshot");
    assert!(viewport.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert_eq!(&viewport[16..20], &png[16..20], "the viewport's width");
    browser.quit().expect("quit");

    // A page that never answers fails within the page-load timeout.
    let browser = Browser::start_with(Timeouts {
        page_load: Duration::from_secs(3),
        call: Duration::from_secs(20),
        ..Timeouts::default()
    })
    .expect("a second browser");
    let t = Instant::now();
    let hung = browser
        .goto(&fixture.url("/hang"))
        .expect_err("a hung page fails");
    assert_eq!(hung.code(), Some("timeout"), "{hung}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    drop(browser);
}

// ---------------------------------------------------------------------------------------
// The pages of `dealreg serve --http` (docs/PAGES.md's DOM contract) on the demo program.

const VENDOR_USER: &str = "casey";
const VENDOR_PASSWORD: &str = "casey's browser-test password";
const PARTNER_USER: &str = "ana";
const PARTNER_PASSWORD: &str = "ana's browser-test password";

fn dealreg(store: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .expect("run dealreg");
    assert!(
        out.status.success(),
        "dealreg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn view_json(store: &Path, args: &[&str]) -> Value {
    let mut all = vec!["view"];
    all.extend_from_slice(args);
    all.push("--json");
    serde_json::from_str(&dealreg(store, &all)).expect("a view's JSON")
}

/// `dealreg users add`, the password on stdin (as a person would type it).
fn add_user(users: &Path, name: &str, role: &str, partner: Option<&str>, password: &str) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dealreg"));
    command
        .args(["users", "add", "--file"])
        .arg(users)
        .args(["--name", name, "--role", role]);
    if let Some(partner) = partner {
        command.args(["--partner", partner]);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dealreg users add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write the password");
    let out = child.wait_with_output().expect("users add ends");
    assert!(
        out.status.success(),
        "dealreg users add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `dealreg serve --http` on the store, killed on drop.
struct PagesServer {
    child: Child,
    log: PathBuf,
    addr: SocketAddr,
}

impl PagesServer {
    fn start(store: &Path, nats: &str, users: &Path, log: PathBuf) -> PagesServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let out = std::fs::File::create(&log).expect("serve log");
        let child = Command::new(env!("CARGO_BIN_EXE_dealreg"))
            .arg("--store")
            .arg(store)
            .args(["serve", "--nats-url", nats, "--tick-secs", "3600", "--http"])
            .arg(addr.to_string())
            .arg("--users")
            .arg(users)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .expect("start dealreg serve");
        let server = PagesServer { child, log, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer =
                webdriver::http(addr, "GET", "/login", "", Duration::from_secs(5)).map(|a| a.0);
            if answer.as_ref().is_ok_and(|s| *s == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the pages did not answer /login ({answer:?}): {}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PagesServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `data-*` attributes of every `[data-figure=NAME]` under `scope`, as the browser
/// parsed the page.
fn figures(browser: &Browser, scope: &str, name: &str) -> Vec<BTreeMap<String, String>> {
    let script = "return Array.from(document.querySelectorAll(arguments[0])).map(e => \
                  Object.fromEntries(Array.from(e.attributes).map(a => [a.name, a.value])));";
    let found = browser
        .execute(
            script,
            vec![Value::from(format!("{scope} [data-figure=\"{name}\"]"))],
        )
        .expect("read the figures");
    serde_json::from_value(found).expect("attributes as strings")
}

/// Every section the contract names is on the page, under `<section id=...>`.
fn sections(browser: &Browser, page: &str, ids: &[&str]) {
    for id in ids {
        let found = browser
            .find_all(&format!("section#{id}"))
            .expect("find a section");
        assert_eq!(found.len(), 1, "{page}: section#{id}");
    }
}

/// Logs in through the form as a person would: types, clicks.
fn log_in(browser: &Browser, server: &PagesServer, user: &str, password: &str) {
    browser.goto(&server.url("/login")).expect("the login page");
    let csrf = browser
        .find("input[name=csrf]")
        .expect("the login form's csrf");
    assert_eq!(
        browser.attr(&csrf, "type").expect("attr").as_deref(),
        Some("hidden")
    );
    browser
        .send_keys(&browser.find("input[name=user]").expect("user"), user)
        .expect("type the user");
    browser
        .send_keys(
            &browser.find("input[name=password]").expect("password"),
            password,
        )
        .expect("type the password");
    let button = browser
        .find("form[action=\"/login\"] button[type=submit], form[action=\"/login\"] input[type=submit]")
        .expect("the login button");
    browser.click_to_load(&button).expect("click log in");
}

/// The text of the error beside `field`, or None.
fn error_for(browser: &Browser, field: &str) -> Option<String> {
    let found = browser
        .find_all(&format!("p.error[data-error-for=\"{field}\"]"))
        .expect("find errors");
    found
        .first()
        .map(|e| browser.text(e).expect("the error's text"))
}

fn set_value(browser: &Browser, field: &Element, value: &str) {
    browser
        .execute(
            "arguments[0].value = arguments[1];",
            vec![field.to_arg(), Value::from(value)],
        )
        .expect("set a field's value");
}

/// Fills the registration form; `overrides` replace the valid values by name.
fn fill_form(browser: &Browser, valid: &BTreeMap<&str, String>, overrides: &[(&str, &str)]) {
    for (name, value) in valid {
        let value = overrides
            .iter()
            .find(|(n, _)| n == name)
            .map_or(value.as_str(), |(_, v)| v);
        let field = browser
            .find(&format!("form [name=\"{name}\"]"))
            .unwrap_or_else(|e| panic!("the form's field {name}: {e}"));
        let tag = browser.tag_name(&field).expect("tag");
        let kind = browser
            .attr(&field, "type")
            .expect("type")
            .unwrap_or_default();
        if tag == "select" || kind == "date" {
            // A select's option and a date picker's value: set as the browser holds them.
            set_value(browser, &field, value);
            assert_eq!(
                browser.property(&field, "value").expect("value"),
                Value::from(value),
                "{name} takes {value:?}"
            );
        } else {
            browser.clear(&field).expect("clear");
            if !value.is_empty() {
                browser.send_keys(&field, value).expect("type");
            }
        }
    }
}

/// The demo program in a browser: the dashboard's sections, charts and figures against
/// the views' JSON; the partner's page; the registration form's refusals beside their
/// fields and a registration that goes through; a screenshot of each page.
#[test]
fn the_pages_in_a_real_browser() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("demo.db");
    dealreg(&store, &["demo"]);
    let demo_time = t0.elapsed();
    let ledger = view_json(&store, &["ledger"]);
    let pipeline = view_json(&store, &["pipeline", "--vendor"]);

    // The partner with the most registrations of its own gets a user.
    let mut owned: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for stages in pipeline.as_object().expect("motions").values() {
        for rows in stages.as_object().expect("stages").values() {
            for row in rows.as_array().expect("rows") {
                let partner = row["partner_id"].as_str().expect("partner_id");
                owned.entry(partner.to_string()).or_default().push(row);
            }
        }
    }
    let (partner, rows) = owned
        .iter()
        .max_by_key(|(_, rows)| rows.len())
        .expect("the demo has registrations");
    let partner_name = rows[0]["partner"]
        .as_str()
        .expect("partner name")
        .to_string();
    let users = dir.path().join("users.toml");
    add_user(
        &users,
        VENDOR_USER,
        "channel_manager",
        None,
        VENDOR_PASSWORD,
    );
    add_user(
        &users,
        PARTNER_USER,
        "partner",
        Some(partner),
        PARTNER_PASSWORD,
    );

    let nats = NatsServer::start(None);
    let server = PagesServer::start(&store, &nats.url, &users, dir.path().join("serve.log"));
    let browser = started("pages");
    let t_pages = Instant::now();

    // Login: a wrong password is refused on the page, the right one lets in.
    log_in(&browser, &server, VENDOR_USER, "not the password");
    let refused = browser.find("#login-error").unwrap_or_else(|e| {
        panic!(
            "a wrong password shows #login-error: {e}; the page: {}",
            browser.source().unwrap_or_default()
        )
    });
    assert!(!browser.text(&refused).expect("text").is_empty());
    browser
        .screenshot("pages", "login-refused")
        .expect("screenshot");
    log_in(&browser, &server, VENDOR_USER, VENDOR_PASSWORD);
    assert_eq!(
        browser.current_url().expect("url"),
        server.url("/"),
        "{}",
        server.log_text()
    );

    // The dashboard.
    sections(
        &browser,
        "dashboard",
        &[
            "pipeline",
            "conflicts",
            "sla",
            "revenue",
            "commissions",
            "expiring",
            "waiting",
        ],
    );
    browser
        .screenshot("pages", "dashboard")
        .expect("screenshot");
    let charts = browser.find_all("svg[data-chart]").expect("charts");
    assert!(!charts.is_empty(), "the dashboard draws charts");
    let decisions = figures(&browser, "#sla", "sla-decisions");
    assert_eq!(decisions.len(), 1, "the SLA's decisions figure");
    let has_decisions = decisions[0]["data-value"] != "0";
    let has_ledger = !ledger["entries"].as_array().expect("entries").is_empty();
    for chart in &charts {
        let name = browser
            .attr(chart, "data-chart")
            .expect("attr")
            .unwrap_or_default();
        let points = browser.find_all_in(chart, "[data-value]").expect("points");
        for point in &points {
            let value = browser
                .attr(point, "data-value")
                .expect("attr")
                .unwrap_or_default();
            assert!(
                value.parse::<i128>().is_ok(),
                "chart {name}: data-value {value:?}"
            );
        }
        // The demo decided registrations and paid commissions: no chart of it is empty.
        let has_data = match name.as_str() {
            n if n.starts_with("sla") => has_decisions,
            n if n.starts_with("revenue") => has_ledger,
            _ => true,
        };
        assert!(
            !has_data || !points.is_empty(),
            "chart {name} is empty though the views have data"
        );
    }
    // Each revenue chart draws the figures of the table beside it, bar for bar.
    let chart_values = |name: &str| -> Vec<i128> {
        let mut values: Vec<i128> = browser
            .find_all(&format!("svg[data-chart=\"{name}\"] [data-value]"))
            .expect("bars")
            .iter()
            .map(|b| {
                let v = browser
                    .attr(b, "data-value")
                    .expect("attr")
                    .unwrap_or_default();
                v.parse().expect("a number")
            })
            .collect();
        values.sort_unstable();
        values
    };
    let figure_values = |names: &[&str]| -> Vec<i128> {
        let mut values: Vec<i128> = names
            .iter()
            .flat_map(|n| figures(&browser, "#revenue", n))
            .map(|f| f["data-value"].parse().expect("a number"))
            .collect();
        values.sort_unstable();
        values
    };
    assert_eq!(
        chart_values("revenue-by-motion"),
        figure_values(&["sourced", "influenced"]),
        "the revenue-by-motion chart against its table"
    );
    assert_eq!(
        chart_values("revenue-by-partner"),
        figure_values(&["won"]),
        "the revenue-by-partner chart against its table"
    );
    assert!(
        charts.len() >= 3,
        "the SLA and revenue charts at least ({} charts)",
        charts.len()
    );

    // Commission balances: the page's figures are the ledger view's, all of them.
    let mut expected: BTreeMap<(String, String), String> = BTreeMap::new();
    for (p, by_currency) in ledger["balances"].as_object().expect("balances") {
        for (currency, minor) in by_currency.as_object().expect("currencies") {
            expected.insert((p.clone(), currency.clone()), minor.to_string());
        }
    }
    assert!(!expected.is_empty(), "the demo paid commissions");
    let shown: BTreeMap<(String, String), String> = figures(&browser, "#commissions", "balance")
        .into_iter()
        .map(|f| {
            (
                (f["data-partner"].clone(), f["data-currency"].clone()),
                f["data-value"].clone(),
            )
        })
        .collect();
    assert_eq!(
        shown, expected,
        "the dashboard's balances against `view ledger --json`"
    );

    // Pipeline amounts by motion, stage and currency: the pipeline view's sums.
    let mut expected: BTreeMap<(String, String, String), i128> = BTreeMap::new();
    for (motion, stages) in pipeline.as_object().expect("motions") {
        for (stage, rows) in stages.as_object().expect("stages") {
            for row in rows.as_array().expect("rows") {
                let amount = &row["estimated_amount"];
                *expected
                    .entry((
                        motion.clone(),
                        stage.clone(),
                        amount["currency"].as_str().expect("currency").to_string(),
                    ))
                    .or_default() +=
                    i128::from(amount["amount_minor"].as_i64().expect("minor units"));
            }
        }
    }
    let shown: BTreeMap<(String, String, String), i128> =
        figures(&browser, "#pipeline", "pipeline-amount")
            .into_iter()
            .map(|f| {
                (
                    (
                        f["data-motion"].clone(),
                        f["data-stage"].clone(),
                        f["data-currency"].clone(),
                    ),
                    f["data-value"].parse().expect("an amount in minor units"),
                )
            })
            .collect();
    assert_eq!(
        shown, expected,
        "the dashboard's pipeline against `view pipeline --vendor --json`"
    );
    let dashboard_time = t_pages.elapsed();

    // The partner's page, logged in as the partner's user.
    let browser = {
        browser.quit().expect("quit");
        started("partner")
    };
    log_in(&browser, &server, PARTNER_USER, PARTNER_PASSWORD);
    assert_eq!(browser.current_url().expect("url"), server.url("/partner"));
    sections(
        &browser,
        "partner page",
        &[
            "pipeline",
            "expiring",
            "next-steps",
            "announcements",
            "commission",
        ],
    );
    browser.screenshot("pages", "partner").expect("screenshot");
    let listed: Vec<String> = browser
        .find_all("#pipeline [data-registration]")
        .expect("rows")
        .iter()
        .map(|r| {
            browser
                .attr(r, "data-registration")
                .expect("attr")
                .unwrap_or_default()
        })
        .collect();
    for row in rows {
        let id = row["registration_id"].as_str().expect("id");
        assert!(
            listed.iter().any(|l| l == id),
            "the partner's registration {id} is on its page"
        );
    }
    let count = figures(&browser, "#pipeline", "pipeline-count");
    assert_eq!(count.len(), 1);
    assert_eq!(
        count[0]["data-value"],
        listed.len().to_string(),
        "the count is the rows'"
    );
    let balances: BTreeMap<String, String> = figures(&browser, "#commission", "balance")
        .into_iter()
        .map(|f| {
            assert_eq!(&f["data-partner"], partner, "only its own balance");
            (f["data-currency"].clone(), f["data-value"].clone())
        })
        .collect();
    let expected: BTreeMap<String, String> = ledger["balances"][partner]
        .as_object()
        .map(|b| b.iter().map(|(c, v)| (c.clone(), v.to_string())).collect())
        .unwrap_or_default();
    assert_eq!(
        balances, expected,
        "the partner's balance against the ledger view"
    );
    let source = browser.source().expect("source");
    for other in owned.keys().filter(|p| *p != partner) {
        assert!(
            !source.contains(other.as_str()),
            "another partner's id {other} on {partner_name}'s page"
        );
    }

    // The form: each refusal beside its field, then a registration that goes through.
    let model = rows
        .iter()
        .find(|r| r["status"] == "protected" || r["status"] == "won")
        .unwrap_or(&rows[0]);
    let domain = format!("browser-{}.example", uuid::Uuid::now_v7().simple());
    let close = (chrono::Utc::now() + chrono::Duration::days(45))
        .date_naive()
        .to_string();
    let valid: BTreeMap<&str, String> = [
        ("customer_name", "Browser Test Industries".to_string()),
        ("customer_domain", domain.clone()),
        ("contact_name", "Dana Buyer".to_string()),
        ("contact_email", format!("dana@{domain}")),
        (
            "product_line",
            model["product_line"]
                .as_str()
                .expect("product line")
                .to_string(),
        ),
        (
            "motion",
            model["motion"].as_str().expect("motion").to_string(),
        ),
        ("amount", "48000.00".to_string()),
        ("currency", "USD".to_string()),
        ("expected_close", close),
        (
            "proof_of_work",
            "Discovery workshop held with the CFO; notes attached".to_string(),
        ),
        ("kind", "new_business".to_string()),
    ]
    .into_iter()
    .collect();
    let past = (chrono::Utc::now() - chrono::Duration::days(10))
        .date_naive()
        .to_string();
    for (field, bad, shot) in [
        ("proof_of_work", "", "form-no-proof"),
        ("expected_close", past.as_str(), "form-past-close"),
        ("amount", "0", "form-zero-amount"),
    ] {
        browser
            .goto(&server.url("/partner/register"))
            .expect("the form");
        fill_form(&browser, &valid, &[(field, bad)]);
        // Past the browser's own `required`: the engine's refusal is what is tested.
        browser
            .submit(
                &browser
                    .find("form [name=\"customer_name\"]")
                    .expect("a field"),
            )
            .expect("submit the form");
        let error = error_for(&browser, field);
        assert!(
            error.as_ref().is_some_and(|e| !e.is_empty()),
            "{field}={bad:?}: an error beside the field; errors shown: {:?}; log: {}",
            ["form", "proof_of_work", "expected_close", "amount"]
                .map(|f| (f, error_for(&browser, f))),
            server
                .log_text()
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
        browser.screenshot("pages", shot).expect("screenshot");
    }
    browser
        .goto(&server.url("/partner/register"))
        .expect("the form");
    fill_form(&browser, &valid, &[]);
    browser
        .click_to_load(
            &browser
                .find("form[action=\"/partner/register\"] button[type=submit]")
                .expect("the button"),
        )
        .expect("click register");
    let url = browser.current_url().expect("url");
    let registered = url
        .strip_prefix(&server.url("/partner/registrations/"))
        .unwrap_or_else(|| {
            panic!(
                "a registration leads to its status page, not {url}: {:?}",
                ["form", "customer_domain", "product_line", "motion"]
                    .map(|f| (f, error_for(&browser, f)))
            )
        })
        .to_string();
    let status = browser.find("#status").expect("the status");
    let state = browser
        .attr(&status, "data-status")
        .expect("attr")
        .unwrap_or_default();
    assert!(!state.is_empty(), "a status");
    browser
        .screenshot("pages", "registration")
        .expect("screenshot");
    // The engine took it: the vendor's pipeline view lists it under this partner.
    let after = view_json(&store, &["pipeline", "--vendor"]);
    let found = after
        .as_object()
        .expect("motions")
        .values()
        .flat_map(|s| s.as_object().expect("stages").values())
        .flat_map(|r| r.as_array().expect("rows"))
        .find(|r| r["registration_id"] == registered.as_str())
        .unwrap_or_else(|| panic!("registration {registered} in the pipeline view"));
    assert_eq!(found["partner_id"], partner.as_str());
    assert_eq!(
        found["status"],
        state.as_str(),
        "the page's status is the view's"
    );
    assert_eq!(found["estimated_amount"]["amount_minor"], 4_800_000);
    browser.quit().expect("quit");
    eprintln!(
        "pages: demo {demo_time:?}, dashboard checks {dashboard_time:?}, all {:?}",
        t0.elapsed()
    );
}

/// The what-if report as a page (`dealreg what-if --format html`) in the browser: the
/// demo under a draft with 60-day protection; each section's count equals the JSON
/// report's list, the protection table holds a row per protection that ends earlier,
/// and a screenshot is taken.
#[test]
fn the_what_if_page_in_a_real_browser() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("demo.db");
    dealreg(&store, &["demo"]);
    let draft = dir.path().join("draft.toml");
    let text = include_str!("../domain/policy/default.toml")
        .replace("version = 1", "version = 2")
        .replace(
            "name = \"Default partner program\"",
            "name = \"Sixty days\"",
        )
        .replace("default_days = 90", "default_days = 60")
        .replace(
            "reseller = 90, marketplace = 90, services = 90, tech_isv = 90",
            "reseller = 60, marketplace = 60, services = 60, tech_isv = 60",
        );
    std::fs::write(&draft, text).expect("write the draft");
    let draft = draft.to_str().expect("utf-8");
    let report: Value = serde_json::from_str(&dealreg(
        &store,
        &["what-if", "--policy", draft, "--format", "json"],
    ))
    .expect("the JSON report");
    let page = dir.path().join("what-if.html");
    dealreg(
        &store,
        &[
            "what-if",
            "--policy",
            draft,
            "--format",
            "html",
            "--out",
            page.to_str().expect("utf-8"),
        ],
    );
    let browser = started("the what-if page");
    browser
        .goto(&format!("file://{}", page.display()))
        .expect("open the page");
    assert!(browser
        .title()
        .expect("title")
        .contains("What if: Sixty days"));
    let d = &report["differences"];
    let expected = [
        report["decided_otherwise"].as_array().map_or(0, Vec::len),
        d["protected_otherwise"].as_array().map_or(0, Vec::len),
        d["declined_otherwise"].as_array().map_or(0, Vec::len),
        d["status_otherwise"].as_array().map_or(0, Vec::len),
        d["protection_expiry"].as_array().map_or(0, Vec::len),
        d["commission"].as_array().map_or(0, Vec::len),
        d["conflicts_raised"].as_array().map_or(0, Vec::len),
        d["conflicts_avoided"].as_array().map_or(0, Vec::len),
        d["sla_breaches_raised"].as_array().map_or(0, Vec::len),
        d["sla_breaches_avoided"].as_array().map_or(0, Vec::len),
    ];
    assert!(expected[4] > 0, "the draft ends protections earlier");
    for (n, count) in expected.iter().enumerate() {
        let section = browser
            .find(&format!("section[data-section=\"{n}\"]"))
            .unwrap_or_else(|e| panic!("section {n}: {e}"));
        assert_eq!(
            browser.attr(&section, "data-count").expect("count"),
            Some(count.to_string()),
            "section {n}"
        );
        let rows = browser
            .find_all_in(&section, "tbody tr")
            .expect("the section's rows");
        assert_eq!(rows.len(), *count, "rows of section {n}");
    }
    // The window only: the page is as long as its 88-row table.
    browser
        .screenshot_window("what-if", "report")
        .expect("screenshot");
    browser.quit().expect("quit");
}
