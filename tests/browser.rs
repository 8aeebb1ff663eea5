//! Issue 34, item 5: the pages in a real browser. Debian's headless Chromium, driven over
//! W3C WebDriver by Debian's chromedriver (`tests/webdriver/mod.rs`), loads each page,
//! checks its elements against the views' JSON and saves screenshots to
//! `target/screenshots/` (and `docs/screenshots/` with DEALREG_SAVE_SCREENSHOTS=1).
//! A missing Chromium fails these tests: `scripts/setup` installs it.

mod webdriver;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use webdriver::{Browser, Timeouts};

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
        .click(&browser.find("#go").expect("the button"))
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
        .click(&browser.find("#next").expect("link"))
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
