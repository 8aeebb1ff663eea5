//! Issue 34, items 1-4: the pages of `dealreg serve --http`, over plain HTTP against a real
//! `dealreg serve` on the demo program (a real nats-server). Partner A walks every page and
//! endpoint and never sees partner B; links, CSRF and logins are refused as they should be;
//! the dashboard's figures equal `dealreg view ... --json`.

mod nats_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nats_support::*;
use serde_json::Value;
use support::dealreg;

/// An HTTP answer: status, headers (lower-case names), body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value a `Set-Cookie` gives cookie `name`, if any.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "set-cookie")
            .find_map(|(_, v)| {
                v.split(';')
                    .next()
                    .and_then(|kv| kv.trim().strip_prefix(&format!("{name}=")))
                    .map(str::to_string)
            })
    }
}

/// One HTTP/1.1 request on loopback with `cookie` (a `Cookie` header value) and a form body.
pub fn http(addr: &str, method: &str, path: &str, cookie: &str, body: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connect to the pages");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let cookie = if cookie.is_empty() {
        String::new()
    } else {
        format!("Cookie: {cookie}\r\n")
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{cookie}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// `name=value&...`, percent-encoded.
pub fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the hidden input `name` in a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    page.split_once(&marker)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(v, _)| v.to_string())
        .unwrap_or_default()
}

/// Logs `user` in with `password`; returns the session's `Cookie` header value and the
/// session's CSRF token (from the page it lands on).
pub fn log_in(addr: &str, user: &str, password: &str, home: &str) -> (String, String) {
    let login = http(addr, "GET", "/login", "", "");
    assert_eq!(login.status, 200, "{}", login.body);
    let pre = login.cookie("dealreg_login").expect("a login CSRF cookie");
    let answer = http(
        addr,
        "POST",
        "/login",
        &format!("dealreg_login={pre}"),
        &form(&[
            ("csrf", &hidden(&login.body, "csrf")),
            ("user", user),
            ("password", password),
        ]),
    );
    assert_eq!(answer.status, 303, "login of {user}: {}", answer.body);
    assert_eq!(answer.header("location"), Some(home));
    let session = answer.cookie("dealreg_session").expect("a session cookie");
    let cookie = format!("dealreg_session={session}");
    let page = http(addr, "GET", home, &cookie, "");
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = hidden(&page.body, "csrf");
    assert!(!csrf.is_empty());
    (cookie, csrf)
}

/// Adds a user to the users file, the password on stdin.
pub fn add_user(users: &Path, user: &str, role: &str, partner: Option<&str>, password: &str) {
    let mut args = vec![
        "users",
        "add",
        "--file",
        users.to_str().expect("utf-8"),
        "--name",
        user,
        "--role",
        role,
    ];
    if let Some(p) = partner {
        args.extend(["--partner", p]);
    }
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_dealreg"))
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
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
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(password));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The demo program served with pages: a store from `dealreg demo`, a users file with a
/// channel manager `cm` and partner users `a-rep` (partner `a`) and `b-rep` (partner `b`),
/// all with password `pw-<name>`, and `dealreg serve --http ADDR --users FILE` on a real
/// nats-server. The browser test can copy this helper as it is.
pub struct DemoPages {
    pub nats: NatsServer,
    pub serve: Serve,
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    pub users: PathBuf,
    pub addr: String,
    /// Partner A's and B's ids (the two partners with the most registrations).
    pub a: String,
    pub b: String,
}

impl DemoPages {
    pub async fn start() -> DemoPages {
        let nats = NatsServer::start(None);
        let client = async_nats::connect(&nats.url).await.expect("connect");
        let dir = tempfile::tempdir().expect("temp dir");
        let store = support::demo_store(&dir);
        let pipeline = view_json(&store, &["pipeline", "--vendor"]);
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for row in rows_of(&pipeline) {
            *counts
                .entry(row["partner_id"].as_str().unwrap_or("").to_string())
                .or_default() += 1;
        }
        let mut partners: Vec<_> = counts.into_iter().collect();
        partners.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let (a, b) = (partners[0].0.clone(), partners[1].0.clone());
        let users = dir.path().join("users.toml");
        add_user(&users, "cm", "channel_manager", None, "pw-cm");
        add_user(&users, "a-rep", "partner", Some(&a), "pw-a-rep");
        add_user(&users, "b-rep", "partner", Some(&b), "pw-b-rep");
        let addr = format!("127.0.0.1:{}", free_port());
        let serve = Serve::start(
            &store,
            &nats.url,
            &["--http", &addr, "--users", users.to_str().expect("utf-8")],
            &[],
            dir.path().join("serve.log"),
            &client,
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "the pages did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        DemoPages {
            nats,
            serve,
            dir,
            store,
            users,
            addr,
            a,
            b,
        }
    }

    /// `dealreg users link` for `user` of `partner`; returns the link's path (`/p/...`).
    pub fn link(&self, partner: &str, user: &str, hours: &str) -> String {
        let out = self.dir.path().join(format!("link-{user}-{hours}.txt"));
        let answer = std::process::Command::new(env!("CARGO_BIN_EXE_dealreg"))
            .args(["users", "link", "--file"])
            .arg(&self.users)
            .args(["--partner", partner, "--name", user, "--hours", hours])
            .args(["--base", &format!("http://{}", self.addr), "--out"])
            .arg(&out)
            .output()
            .expect("run dealreg users link");
        assert!(
            answer.status.success(),
            "{}",
            String::from_utf8_lossy(&answer.stderr)
        );
        let url = std::fs::read_to_string(&out).expect("the link file");
        let printed = String::from_utf8_lossy(&answer.stdout);
        let token = url.trim().rsplit('/').next().unwrap_or("").to_string();
        assert!(!printed.contains(&token), "the token was printed");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&out)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the link file is readable by others");
        }
        format!("/p/{token}")
    }
}

fn view_json(store: &Path, args: &[&str]) -> Value {
    let mut all = vec!["view"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = dealreg(store, &all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("view JSON")
}

/// The rows of a grouped pipeline (motion -> stage -> rows).
fn rows_of(grouped: &Value) -> Vec<&Value> {
    grouped
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(Value::as_object)
        .flat_map(|s| s.values())
        .filter_map(Value::as_array)
        .flatten()
        .collect()
}

/// Every `data-figure="NAME"` cell's attributes, as maps.
fn figures(page: &str, name: &str) -> Vec<BTreeMap<String, String>> {
    let marker = format!("data-figure=\"{name}\"");
    page.split('<')
        .filter(|tag| tag.contains(&marker))
        .map(|tag| {
            let tag = tag.split('>').next().unwrap_or("");
            tag.split(" data-")
                .skip(1)
                .filter_map(|kv| kv.split_once("=\""))
                .map(|(k, v)| (k.to_string(), v.trim_end_matches('"').to_string()))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_each_their_own_and_refuse_what_they_should() {
    let demo = DemoPages::start().await;
    let addr = demo.addr.as_str();
    let (a, b) = (demo.a.clone(), demo.b.clone());

    // What only B has: its id, name, and the registrations A does not see in its own view.
    let program = view_json(&demo.store, &["program"]);
    let b_name = program["partners"][&b]["name"]
        .as_str()
        .expect("B's name")
        .to_string();
    let a_view = view_json(&demo.store, &["pipeline", "--partner", &a]);
    let a_rows = rows_of(&a_view);
    let a_ids: BTreeSet<String> = a_rows
        .iter()
        .filter_map(|r| r["registration_id"].as_str().map(str::to_string))
        .collect();
    let a_companies: BTreeSet<String> = a_rows
        .iter()
        .filter_map(|r| r["company"].as_str().map(str::to_string))
        .collect();
    let vendor = view_json(&demo.store, &["pipeline", "--vendor"]);
    let b_rows: Vec<&Value> = rows_of(&vendor)
        .into_iter()
        .filter(|r| r["partner_id"] == b.as_str())
        .collect();
    let b_only_ids: Vec<String> = b_rows
        .iter()
        .filter_map(|r| r["registration_id"].as_str().map(str::to_string))
        .filter(|id| !a_ids.contains(id))
        .collect();
    let b_only_companies: Vec<String> = b_rows
        .iter()
        .filter_map(|r| r["company"].as_str().map(str::to_string))
        .filter(|c| !a_companies.contains(c))
        .collect();
    assert!(!b_only_ids.is_empty() && !b_only_companies.is_empty());
    let mut secrets = vec![b.clone(), b_name.clone()];
    secrets.extend(b_only_ids.iter().cloned());
    secrets.extend(b_only_companies.iter().cloned());

    // No session: the login page.
    let none = http(addr, "GET", "/partner", "", "");
    assert_eq!(none.status, 303);
    assert_eq!(none.header("location"), Some("/login"));

    // Wrong password: 401, the error shown, no session.
    let login = http(addr, "GET", "/login", "", "");
    let pre = login.cookie("dealreg_login").expect("login CSRF cookie");
    let wrong = http(
        addr,
        "POST",
        "/login",
        &format!("dealreg_login={pre}"),
        &form(&[
            ("csrf", &hidden(&login.body, "csrf")),
            ("user", "a-rep"),
            ("password", "nope"),
        ]),
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("id=\"login-error\""));
    assert!(wrong.cookie("dealreg_session").is_none());
    // Five wrong passwords for one name: the sixth try is refused for a minute, even
    // with the right password.
    let try_login = |user: &str, password: &str| {
        let login = http(addr, "GET", "/login", "", "");
        let pre = login.cookie("dealreg_login").expect("login CSRF cookie");
        http(
            addr,
            "POST",
            "/login",
            &format!("dealreg_login={pre}"),
            &form(&[
                ("csrf", &hidden(&login.body, "csrf")),
                ("user", user),
                ("password", password),
            ]),
        )
    };
    for _ in 0..5 {
        assert_eq!(try_login("b-rep", "wrong").status, 401);
    }
    let locked = try_login("b-rep", "pw-b-rep");
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert!(locked.body.contains("Too many wrong passwords"));
    assert!(locked.cookie("dealreg_session").is_none());
    // A login without its CSRF token is refused before any password check.
    let no_csrf = http(
        addr,
        "POST",
        "/login",
        "",
        &form(&[("user", "a-rep"), ("password", "pw-a-rep")]),
    );
    assert_eq!(no_csrf.status, 403);

    // Partner A walks every page and endpoint.
    let (cookie, csrf) = log_in(addr, "a-rep", "pw-a-rep", "/partner");
    let mut seen = Vec::new();
    let partner_page = http(addr, "GET", "/partner", &cookie, "");
    assert_eq!(partner_page.status, 200);
    for id in [
        "pipeline",
        "expiring",
        "next-steps",
        "announcements",
        "commission",
    ] {
        assert!(
            partner_page
                .body
                .contains(&format!("<section id=\"{id}\">")),
            "section {id}"
        );
    }
    seen.push(partner_page);
    let register = http(addr, "GET", "/partner/register", &cookie, "");
    assert_eq!(register.status, 200);
    let registration_id = hidden(&register.body, "registration_id");
    assert!(!registration_id.is_empty());
    seen.push(register);
    for own in a_ids.iter().take(3) {
        let page = http(
            addr,
            "GET",
            &format!("/partner/registrations/{own}"),
            &cookie,
            "",
        );
        assert_eq!(page.status, 200, "A's own registration {own}");
        assert!(page.body.contains("id=\"status\" data-status=\""));
        seen.push(page);
    }
    for theirs in b_only_ids.iter().take(5) {
        let page = http(
            addr,
            "GET",
            &format!("/partner/registrations/{theirs}"),
            &cookie,
            "",
        );
        assert_eq!(page.status, 404, "B's registration {theirs}");
        seen.push(page);
    }
    // The vendor's dashboard is not A's.
    let dashboard = http(addr, "GET", "/", &cookie, "");
    assert_eq!(dashboard.status, 403);
    seen.push(dashboard);
    seen.push(http(addr, "GET", "/login", &cookie, ""));

    // A registration with B's partner id smuggled in: registered as A's.
    let template = a_rows
        .iter()
        .find(|r| r["role"] == "owner")
        .expect("A owns a registration");
    let close = (chrono::Utc::now() + chrono::Duration::days(30))
        .format("%Y-%m-%d")
        .to_string();
    let fields = |csrf: &str| {
        form(&[
            ("csrf", csrf),
            ("registration_id", &registration_id),
            ("partner_id", &b),
            ("customer_name", "Pages Test Customer"),
            ("customer_domain", "pages-test-customer.example"),
            ("contact_name", "Pat Buyer"),
            ("contact_email", "pat@pages-test-customer.example"),
            (
                "product_line",
                template["product_line"].as_str().unwrap_or("analytics"),
            ),
            ("motion", template["motion"].as_str().unwrap_or("reseller")),
            ("amount", "1234.56"),
            ("currency", "USD"),
            ("expected_close", &close),
            ("proof_of_work", "Workshop with the customer's IT team"),
            ("kind", "new_business"),
        ])
    };
    // Without CSRF: 403, nothing recorded.
    let forged = http(addr, "POST", "/partner/register", &cookie, &fields(""));
    assert_eq!(forged.status, 403);
    let submitted = http(addr, "POST", "/partner/register", &cookie, &fields(&csrf));
    assert_eq!(submitted.status, 303, "{}", submitted.body);
    let location = submitted.header("location").unwrap_or("").to_string();
    assert_eq!(
        location,
        format!("/partner/registrations/{registration_id}")
    );
    // A double submit is one registration.
    let again = http(addr, "POST", "/partner/register", &cookie, &fields(&csrf));
    assert_eq!(again.status, 303);
    let status = http(addr, "GET", &location, &cookie, "");
    assert_eq!(status.status, 200, "{}", status.body);
    assert!(
        status.body.contains("data-status=\"pending\"")
            || status.body.contains("data-status=\"protected\"")
    );
    seen.push(status);
    let vendor = view_json(&demo.store, &["pipeline", "--vendor"]);
    let mine: Vec<_> = rows_of(&vendor)
        .into_iter()
        .filter(|r| r["registration_id"] == registration_id.as_str())
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        mine[0]["partner_id"],
        a.as_str(),
        "registered for A, whatever the form said"
    );
    // The channel manager approves it (through `dealreg apply` beside the server): the
    // status page shows the decision.
    let account = mine[0]["account"]
        .as_str()
        .expect("its account")
        .to_string();
    let approve = serde_json::json!({
        "actor": support::channel_manager(),
        "command": support::approve(registration_id.parse().expect("a uuid"), &account),
    });
    let commands = demo.dir.path().join("approve.jsonl");
    std::fs::write(&commands, format!("{approve}\n")).expect("write the command");
    let applied = dealreg(&demo.store, &["apply", commands.to_str().expect("utf-8")]);
    assert!(
        String::from_utf8_lossy(&applied.stdout).contains("\"ok\":true"),
        "{}",
        String::from_utf8_lossy(&applied.stdout)
    );
    let decided = http(addr, "GET", &location, &cookie, "");
    assert!(
        decided.body.contains("data-status=\"protected\"")
            && decided.body.contains("protected until"),
        "{}",
        decided.body
    );
    seen.push(decided);
    seen.push(submitted);
    // A form refused by the engine shows the error beside its field.
    let refused = http(
        addr,
        "POST",
        "/partner/register",
        &cookie,
        &form(&[
            ("csrf", &csrf),
            ("registration_id", &uuid::Uuid::now_v7().to_string()),
            ("customer_name", "Other Customer"),
            ("customer_domain", "other-pages-customer.example"),
            ("contact_name", "Pat Buyer"),
            ("contact_email", "not an address"),
            ("product_line", "analytics"),
            ("motion", "reseller"),
            ("amount", "10"),
            ("currency", "USD"),
            ("expected_close", &close),
            ("proof_of_work", "x"),
            ("kind", "new_business"),
        ]),
    );
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("data-error-for=\"contact_email\""),
        "{}",
        refused.body
    );
    // The refusal names the field as the form labels it, not by the command's field.
    assert!(
        refused
            .body
            .contains("data-error-for=\"contact_email\">Customer contact&#39;s e-mail "),
        "{}",
        refused.body
    );
    assert!(!refused.body.contains("`customer.contact.email`"));
    seen.push(refused);
    let unparsable = http(
        addr,
        "POST",
        "/partner/register",
        &cookie,
        &form(&[
            ("csrf", &csrf),
            ("registration_id", &uuid::Uuid::now_v7().to_string()),
            ("amount", "12.345"),
        ]),
    );
    assert_eq!(unparsable.status, 422);
    assert!(
        unparsable.body.contains("data-error-for=\"amount\""),
        "{}",
        unparsable.body
    );
    seen.push(unparsable);

    for page in &seen {
        for secret in &secrets {
            assert!(
                !page.body.contains(secret.as_str()),
                "a page shown to partner A holds {secret:?} of partner B"
            );
        }
    }

    // Partner links: good, tampered, expired.
    let good = demo.link(&a, "a-rep", "1");
    let answer = http(addr, "GET", &good, "", "");
    assert_eq!(answer.status, 303);
    assert_eq!(answer.header("location"), Some("/partner"));
    let link_cookie = format!(
        "dealreg_session={}",
        answer
            .cookie("dealreg_session")
            .expect("a session from the link")
    );
    let page = http(addr, "GET", "/partner", &link_cookie, "");
    assert_eq!(page.status, 200);
    for secret in &secrets {
        assert!(!page.body.contains(secret.as_str()));
    }
    let mut tampered = good.clone().into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    assert_eq!(http(addr, "GET", &tampered, "", "").status, 400);
    let expired = demo.link(&a, "a-rep", "0");
    std::thread::sleep(Duration::from_millis(1100));
    let answer = http(addr, "GET", &expired, "", "");
    assert_eq!(answer.status, 410, "{}", answer.body);
    assert!(answer.body.contains("expired"));

    // Logout needs the CSRF token, then ends the session.
    assert_eq!(http(addr, "POST", "/logout", &cookie, "").status, 403);
    let out = http(addr, "POST", "/logout", &cookie, &form(&[("csrf", &csrf)]));
    assert_eq!(out.status, 303);
    assert_eq!(http(addr, "GET", "/partner", &cookie, "").status, 303);

    // The channel manager's dashboard: its figures are the views' JSON.
    let (vendor_cookie, _) = log_in(addr, "cm", "pw-cm", "/");
    let dashboard = http(addr, "GET", "/", &vendor_cookie, "");
    assert_eq!(dashboard.status, 200);
    for id in [
        "pipeline",
        "conflicts",
        "sla",
        "revenue",
        "commissions",
        "expiring",
        "waiting",
    ] {
        assert!(
            dashboard.body.contains(&format!("<section id=\"{id}\">")),
            "section {id}"
        );
    }
    assert_eq!(
        http(addr, "GET", "/partner", &vendor_cookie, "").status,
        403
    );
    let ledger = view_json(&demo.store, &["ledger"]);
    let balances = figures(&dashboard.body, "balance");
    let mut expected = 0;
    for (partner, by_currency) in ledger["balances"].as_object().expect("balances") {
        for (currency, value) in by_currency.as_object().expect("by currency") {
            expected += 1;
            let cell = balances
                .iter()
                .find(|f| f.get("partner") == Some(partner) && f.get("currency") == Some(currency))
                .unwrap_or_else(|| panic!("no balance cell for {partner} {currency}"));
            assert_eq!(
                cell.get("value").map(String::as_str),
                Some(value.to_string().as_str())
            );
        }
    }
    assert!(expected > 0);
    assert_eq!(balances.len(), expected);
    let vendor = view_json(&demo.store, &["pipeline", "--vendor"]);
    let mut sums: BTreeMap<(String, String, String), i128> = BTreeMap::new();
    for row in rows_of(&vendor) {
        let key = (
            row["motion"].as_str().unwrap_or("").to_string(),
            row["stage"].as_str().unwrap_or("").to_string(),
            row["estimated_amount"]["currency"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        );
        *sums.entry(key).or_default() += i128::from(
            row["estimated_amount"]["amount_minor"]
                .as_i64()
                .unwrap_or(0),
        );
    }
    let amounts = figures(&dashboard.body, "pipeline-amount");
    assert_eq!(amounts.len(), sums.len());
    for ((motion, stage, currency), sum) in &sums {
        let cell = amounts
            .iter()
            .find(|f| {
                f.get("motion") == Some(motion)
                    && f.get("stage").map(|s| s.replace("&amp;", "&")) == Some(stage.clone())
                    && f.get("currency") == Some(currency)
            })
            .unwrap_or_else(|| panic!("no pipeline amount for {motion}/{stage}/{currency}"));
        assert_eq!(cell.get("value"), Some(&sum.to_string()));
    }
    assert!(dashboard.body.contains("data-chart=\"sla-weekly\""));
    assert!(dashboard.body.contains("data-chart=\"revenue-by-motion\""));

    // The header names the role in people's words.
    assert!(
        dashboard.body.contains("<span>cm (channel manager)</span>"),
        "{}",
        dashboard.body
    );
    assert!(!dashboard.body.contains("ChannelManager"));
    // Won revenue by partner: a bar per won figure with its raw value, the labels
    // readable (slanted, the full name in a tooltip), the scale's top in money.
    let chart = |name: &str| {
        let from = dashboard
            .body
            .find(&format!("data-chart=\"{name}\""))
            .unwrap_or_else(|| panic!("chart {name}"));
        let to = from
            + dashboard.body[from..]
                .find("</svg>")
                .expect("the chart's end");
        dashboard.body[from..to].to_string()
    };
    let partners = chart("revenue-by-partner");
    let won = figures(&dashboard.body, "won");
    assert!(won.len() > 4, "{won:?}");
    for cell in &won {
        let value = cell.get("value").expect("a value");
        assert!(
            partners.contains(&format!("data-value=\"{value}\"")),
            "no bar of {value}"
        );
    }
    assert_eq!(partners.matches("rotate(-30").count(), won.len());
    for chart in [partners, chart("revenue-by-motion")] {
        let top = chart
            .split("data-axis=\"top\">")
            .nth(1)
            .and_then(|t| t.split('<').next())
            .expect("the top of the scale");
        assert!(top.ends_with(" USD"), "{top}");
        assert!(top.contains(','), "{top}");
    }
    assert!(chart("sla-weekly").contains("data-axis=\"top\">100 %<"));
}
