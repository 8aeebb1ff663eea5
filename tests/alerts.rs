//! Issue 33, end to end: `dealreg serve` with the notifier, a real SMTP server (aiosmtpd)
//! and the Slack double, a real nats-server. Alerts arrive once each, also across a SIGKILL
//! of the process sending them; a partner's mail never names another partner or carries
//! an internal note; an announcement acknowledged through its signed link lifts the
//! registration gate; a reply e-mail becomes a note on the right registration; after
//! `forget`, no readable copy of the recipient's address remains and nothing more is sent.

mod nats_support;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dealreg_notify_fake::{SlackDouble, SmtpServer};
use mail_parser::MessageParser;
use nats_support::*;
use serde_json::{json, Value};
use support::dealreg;
use uuid::Uuid;

/// One received e-mail, parsed.
#[derive(Debug, Clone)]
struct Mail {
    message_id: String,
    to: String,
    kind: String,
    subject: String,
    text: String,
    html: String,
    reply_to: Option<String>,
}

fn parse(raw: &[u8]) -> Mail {
    let message = MessageParser::default()
        .parse(raw)
        .expect("a parsable e-mail");
    let address = |list: Option<&mail_parser::Address>| {
        list.and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_string()
    };
    Mail {
        message_id: message.message_id().unwrap_or_default().to_string(),
        to: address(message.to()),
        kind: message
            .header("X-Dealreg-Alert")
            .and_then(|h| h.as_text())
            .unwrap_or_default()
            .to_string(),
        subject: message.subject().unwrap_or_default().to_string(),
        text: message.body_text(0).unwrap_or_default().to_string(),
        html: message.body_html(0).unwrap_or_default().to_string(),
        reply_to: message
            .reply_to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(str::to_string),
    }
}

fn mails(smtp: &SmtpServer) -> Vec<Mail> {
    smtp.messages()
        .expect("the maildir reads")
        .iter()
        .map(|m| parse(&m.raw))
        .collect()
}

/// Waits until `check` holds for the mails received, or fails naming what arrived.
fn wait_for_mail(smtp: &SmtpServer, what: &str, check: impl Fn(&[Mail]) -> bool) -> Vec<Mail> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = mails(smtp);
        if check(&got) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "waited for {what}; received: {:#?}",
            got.iter()
                .map(|m| (&m.to, &m.kind, &m.subject))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Applies commands through `dealreg apply`, returning each reply.
fn apply(store: &Path, dir: &Path, lines: &[Value]) -> Vec<Value> {
    let input = dir.join(format!("commands-{}.jsonl", Uuid::now_v7()));
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&input, text).expect("write commands");
    let out = dealreg(store, &["apply", input.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON reply"))
        .collect()
}

fn ok(replies: &[Value]) {
    for reply in replies {
        assert_eq!(reply["ok"], true, "{reply}");
    }
}

fn cm() -> Value {
    json!({ "kind": "vendor", "role": "channel_manager", "user": "casey" })
}

fn partner_user(partner: Uuid, user: &str) -> Value {
    json!({ "kind": "partner", "partner_id": partner, "user": user })
}

fn line(actor: Value, command: Value) -> Value {
    json!({ "actor": actor, "command": command })
}

fn submit(registration: Uuid, partner: Uuid, domain: &str) -> Value {
    json!({
        "type": "submit_registration",
        "registration_id": registration,
        "partner_id": partner,
        "customer": {
            "company": format!("{domain} Holdings"),
            "domain": domain,
            "contact": { "name": "Dana Buyer", "email": format!("dana@{domain}") }
        },
        "product_line": "analytics",
        "motion": "reseller",
        "estimated_amount": { "amount_minor": 4_800_000, "currency": "EUR" },
        "expected_close": (chrono::Utc::now() + chrono::Duration::days(60)).date_naive().to_string(),
        "proof_of_work": "Discovery workshop held with the CFO; notes attached",
        "kind": "new_business"
    })
}

fn subscribe(
    partner: Option<Uuid>,
    user: &str,
    name: &str,
    email: &str,
    slack: Option<&str>,
) -> Value {
    json!({
        "type": "set_alert_subscription",
        "partner_id": partner,
        "user": user,
        "name": name,
        "email": email,
        "slack_channel": slack,
    })
}

/// A bare HTTP/1.1 request on loopback; returns status and body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the link pages");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Sends `message` to the inbound listener in one SMTP session; returns the answer to
/// the message's end of data.
fn smtp_send(addr: &str, from: &str, to: &str, message: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the reply inbox");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut say = |text: &str| -> String {
        if !text.is_empty() {
            stream.write_all(text.as_bytes()).expect("send");
        }
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).expect("smtp answer");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let greeting = say("");
    assert!(greeting.starts_with("220"), "{greeting}");
    let ehlo = say("EHLO partner.example\r\n");
    assert!(ehlo.starts_with("250"), "{ehlo}");
    let mail = say(&format!("MAIL FROM:<{from}>\r\n"));
    assert!(mail.starts_with("250"), "{mail}");
    let rcpt = say(&format!("RCPT TO:<{to}>\r\n"));
    assert!(rcpt.starts_with("250"), "{rcpt}");
    let data = say("DATA\r\n");
    assert!(data.starts_with("354"), "{data}");
    let end = say(&format!("{message}\r\n.\r\n"));
    let _ = say("QUIT\r\n");
    end
}

fn history(store: &Path) -> Vec<Value> {
    let out = dealreg(store, &["events"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|line| line["event"].clone())
        .collect()
}

/// A reseller partner of the program, gold, certified in `analytics` for a year: its
/// `onboard_partner` and `certify_partner` lines, by the channel manager.
fn reseller(partner: Uuid, name: &str, capacity: u32) -> Vec<Value> {
    vec![
        line(
            cm(),
            json!({ "type": "onboard_partner", "partner_id": partner, "name": name,
                    "motions": ["reseller"], "tier": "gold", "territories": [], "capacity": capacity }),
        ),
        line(
            cm(),
            json!({ "type": "certify_partner", "partner_id": partner, "product_line": "analytics",
                    "expires_on": (chrono::Utc::now() + chrono::Duration::days(365)).date_naive().to_string() }),
        ),
    ]
}

/// The notifier's settings for e-mail to `smtp` only, with `extra` settings lines; their
/// path, in `dir`.
fn notifier_settings(dir: &Path, smtp: &SmtpServer, extra: &str) -> PathBuf {
    let config = dir.join("notify.toml");
    std::fs::write(
        &config,
        format!(
            "from_name = \"Channel Team\"\nfrom_address = \"channel@vendor.example\"\n{extra}\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n",
            smtp.port()
        ),
    )
    .expect("write notifier settings");
    config
}

fn files_under(dir: &Path, skip: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.starts_with(skip) {
            continue;
        }
        if path.is_dir() {
            files_under(&path, skip, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_reach_people_once_partner_safe_and_people_act_from_them() {
    let nats = NatsServer::start(None);
    let client = async_nats::connect(&nats.url).await.expect("connect");
    let smtp = SmtpServer::start().expect("aiosmtpd starts (run scripts/setup)");
    let slack = SlackDouble::start().await.expect("the Slack double starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("program.db");
    let (http_addr, inbound_addr) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let config = dir.path().join("notify.toml");
    std::fs::write(
        &config,
        format!(
            r#"program = "Acme Partner Program"
from_name = "Acme Channel Team"
from_address = "channel@vendor.example"
reply_domain = "replies.vendor.example"
links_base = "http://{http_addr}"
approval_lead_hours = 1

[smtp]
host = "127.0.0.1"
port = {}
security = "none"

[slack]
bot_token_env = "TEST_SLACK_BOT_TOKEN"
api_base = "{}"
"#,
            smtp.port(),
            slack.api_base()
        ),
    )
    .expect("write notifier settings");
    let policy = dir.path().join("policy.toml");
    let default_policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/domain/policy/default.toml"
    ))
    .expect("the default policy");
    std::fs::write(
        &policy,
        default_policy.replacen(
            "version = 1\n",
            "version = 1\nrequire_acknowledgement = true\n",
            1,
        ),
    )
    .expect("write policy");
    let token = slack.token();
    let serve_args = [
        "--notify-config",
        config.to_str().expect("utf-8"),
        "--notify-every",
        "1",
        "--http",
        &http_addr,
        "--smtp-inbound",
        &inbound_addr,
        "--policy",
        policy.to_str().expect("utf-8"),
    ];
    let envs = [("TEST_SLACK_BOT_TOKEN", token.as_str())];
    let mut serve = Serve::start(
        &store,
        &nats.url,
        &serve_args,
        &envs,
        dir.path().join("serve-1.log"),
        &client,
    )
    .await;

    // The program: two partners, their people and a channel manager subscribed.
    let (northwind, contoso) = (Uuid::now_v7(), Uuid::now_v7());
    let mut program = reseller(northwind, "Northwind Resellers", 100);
    program.extend(reseller(contoso, "Contoso Partners", 100));
    program.extend([
        line(
            cm(),
            subscribe(
                None,
                "casey",
                "Casey Manager",
                "casey@vendor.example",
                Some("C0CHANNEL"),
            ),
        ),
        line(
            partner_user(northwind, "ana"),
            subscribe(
                Some(northwind),
                "ana",
                "Ana Silva",
                "ana@northwind.example",
                None,
            ),
        ),
        line(
            partner_user(contoso, "bo"),
            subscribe(Some(contoso), "bo", "Bo Berg", "bo@contoso.example", None),
        ),
    ]);
    ok(&apply(&store, dir.path(), &program));

    // An announcement of the policy in force, for Northwind, to acknowledge.
    let announcement = Uuid::now_v7();
    ok(&apply(
        &store,
        dir.path(),
        &[line(
            cm(),
            json!({ "type": "publish_announcement", "announcement_id": announcement,
                    "title": "Policy 1 requires acknowledgement", "text": "Please confirm the program rules.",
                    "policy_version": 1, "audience": { "partners": [northwind] },
                    "acknowledge_by": (chrono::Utc::now() + chrono::Duration::days(5)).to_rfc3339() }),
        )],
    ));
    let got = wait_for_mail(&smtp, "Northwind's announcement", |m| {
        m.iter()
            .any(|m| m.to == "ana@northwind.example" && m.kind == "announcement_published")
    });
    assert!(
        !got.iter().any(|m| m.to == "bo@contoso.example"),
        "Contoso is not in the audience"
    );
    let notice = got
        .iter()
        .find(|m| m.kind == "announcement_published")
        .expect("the announcement mail")
        .clone();
    let link_path = notice
        .text
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("http://{http_addr}")))
        .expect("a signed link in the announcement")
        .to_string();

    // Before acknowledging, Northwind cannot register under the policy.
    let gated = Uuid::now_v7();
    let refused = apply(
        &store,
        dir.path(),
        &[line(
            partner_user(northwind, "ana"),
            submit(gated, northwind, "gated.example"),
        )],
    );
    assert_eq!(
        refused[0]["error"]["code"], "announcement_not_acknowledged",
        "{}",
        refused[0]
    );
    // A tampered link is refused with a page that says why.
    let tampered = format!("{}x", &link_path[..link_path.len() - 1]);
    let (status, page) = http(&http_addr, "GET", &tampered, "");
    assert_eq!(status, 400, "{page}");
    // The link: opening it records the read receipt; confirming acknowledges; twice is once.
    let (status, page) = http(&http_addr, "GET", &link_path, "");
    assert_eq!(status, 200, "{page}");
    let (status, page) = http(&http_addr, "POST", &link_path, "");
    assert_eq!(status, 200, "{page}");
    let (status, again) = http(&http_addr, "POST", &link_path, "");
    assert_eq!(status, 200, "{again}");
    let log = history(&store);
    let count = |kind: &str| log.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(count("announcement_acknowledged"), 1);
    assert_eq!(count("announcement_read"), 1);
    ok(&apply(
        &store,
        dir.path(),
        &[line(
            partner_user(northwind, "ana"),
            submit(gated, northwind, "gated.example"),
        )],
    ));

    // Twenty registrations by Northwind, one by Contoso on the same customer as the first,
    // approvals, and an internal note: the channel manager hears of each submission.
    let registrations: Vec<(Uuid, String)> = (0..20)
        .map(|n| (Uuid::now_v7(), format!("customer{n}.example")))
        .collect();
    let lines: Vec<Value> = registrations
        .iter()
        .map(|(id, domain)| {
            line(
                partner_user(northwind, "ana"),
                submit(*id, northwind, domain),
            )
        })
        .collect();
    ok(&apply(&store, dir.path(), &lines));
    // Contoso on Northwind's first customer: whatever the rules decide, Contoso hears
    // nothing of Northwind and the other way round.
    let rival = Uuid::now_v7();
    let rival_reply = apply(
        &store,
        dir.path(),
        &[line(
            partner_user(contoso, "bo"),
            submit(rival, contoso, "customer0.example"),
        )],
    );
    let rival_submitted = rival_reply[0]["ok"] == true;
    let expected_submissions = 21 + usize::from(rival_submitted);
    // SIGKILL the sender while it works through them, then start it again.
    wait_for_mail(&smtp, "the first submissions", |m| {
        m.iter()
            .filter(|m| m.kind == "registration_submitted")
            .count()
            >= 3
    });
    serve.kill();
    let mut serve = Serve::start(
        &store,
        &nats.url,
        &serve_args,
        &envs,
        dir.path().join("serve-2.log"),
        &client,
    )
    .await;
    let (first, first_domain) = registrations[0].clone();
    ok(&apply(
        &store,
        dir.path(),
        &[
            line(
                cm(),
                json!({ "type": "approve_registration", "account": first_domain, "registration_id": first, "rationale": "qualified" }),
            ),
            line(
                cm(),
                json!({ "type": "add_note", "account": first_domain, "registration_id": first,
                               "note_id": Uuid::now_v7(), "text": "INTERNAL-ONLY margin is thin", "visibility": "internal" }),
            ),
        ],
    ));
    let got = wait_for_mail(&smtp, "every submission and the approval", |m| {
        m.iter()
            .filter(|m| m.kind == "registration_submitted" && m.to == "casey@vendor.example")
            .count()
            >= expected_submissions
            && m.iter()
                .any(|m| m.kind == "registration_approved" && m.to == "ana@northwind.example")
    });
    // Let any resend land before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = if got.len() == mails(&smtp).len() {
        got
    } else {
        mails(&smtp)
    };
    let submitted: Vec<&Mail> = got
        .iter()
        .filter(|m| m.kind == "registration_submitted" && m.to == "casey@vendor.example")
        .collect();
    let ids: BTreeSet<&str> = submitted.iter().map(|m| m.message_id.as_str()).collect();
    // The submissions (the gated one, twenty, the rival if accepted), one message each; a
    // SIGKILL between the SMTP server's acceptance and the sent mark may resend one, with
    // the same Message-ID (docs/NOTIFICATIONS.md).
    assert_eq!(
        ids.len(),
        expected_submissions,
        "one message per submission"
    );
    assert!(
        submitted.len() <= expected_submissions + 1,
        "at most the one message in flight at the kill is sent again: {}",
        submitted.len()
    );
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for mail in &got {
        *per_id.entry(mail.message_id.as_str()).or_default() += 1;
    }
    assert!(
        per_id.values().filter(|n| **n > 1).count() <= 1,
        "{per_id:?}"
    );

    // Partner-safe: no mail to Northwind's people names Contoso or carries the internal
    // note, and the other way round.
    for mail in &got {
        let body = format!("{} {} {}", mail.subject, mail.text, mail.html);
        assert!(
            !body.contains("INTERNAL-ONLY"),
            "an internal note went out: {mail:?}"
        );
        if mail.to == "ana@northwind.example" {
            assert!(
                !body.contains("Contoso") && !body.contains(&contoso.to_string()),
                "{mail:?}"
            );
            assert!(!body.contains(&rival.to_string()), "{mail:?}");
        }
        if mail.to == "bo@contoso.example" {
            assert!(
                !body.contains("Northwind") && !body.contains(&northwind.to_string()),
                "{mail:?}"
            );
        }
    }
    // The channel manager's Slack got the submissions too, in Slack's documented shape.
    let posts = slack.posts();
    assert!(
        posts.iter().filter(|p| p["channel"] == "C0CHANNEL").count() >= expected_submissions,
        "{} Slack posts",
        posts.len()
    );

    // The channel manager acts from the submission e-mails: approves one, declines
    // another with a reason (refused without one), as himself.
    let link_in = |registration: Uuid, label: &str| -> String {
        let mail = got
            .iter()
            .find(|m| {
                m.kind == "registration_submitted" && m.text.contains(&registration.to_string())
            })
            .expect("the submission's mail");
        mail.text
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .and_then(|l| l.trim().strip_prefix(&format!("http://{http_addr}")))
            .unwrap_or_else(|| panic!("no {label} link in {}", mail.text))
            .to_string()
    };
    let (approve_me, decline_me) = (registrations[2].0, registrations[3].0);
    let (status, page) = http(&http_addr, "POST", &link_in(approve_me, "Approve:"), "");
    assert_eq!(status, 200, "{page}");
    let decline = link_in(decline_me, "Decline (with a reason):");
    let (status, page) = http(
        &http_addr,
        "POST",
        &decline,
        "reason_code=duplicate&reason=",
    );
    assert_eq!(status, 422, "a decline needs a reason: {page}");
    let (status, page) = http(
        &http_addr,
        "POST",
        &decline,
        "reason_code=duplicate&reason=Already+registered+by+our+direct+team",
    );
    assert_eq!(status, 200, "{page}");
    let log_lines = dealreg(&store, &["events"]);
    let decisions: Vec<Value> = String::from_utf8_lossy(&log_lines.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| {
            l["event"]["registration_id"] == json!(approve_me)
                && l["event_type"] == "registration_approved"
                || l["event"]["registration_id"] == json!(decline_me)
                    && l["event_type"] == "registration_declined"
        })
        .collect();
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    let declined = decisions
        .iter()
        .find(|d| d["event_type"] == "registration_declined")
        .expect("the decline");
    assert_eq!(
        declined["event"]["rationale"],
        "Already registered by our direct team"
    );

    // A reply to the approval becomes a note on that registration, by Ana.
    let approval = got
        .iter()
        .find(|m| m.kind == "registration_approved")
        .expect("the approval mail");
    let reply_to = approval
        .reply_to
        .clone()
        .expect("a reply address on the approval");
    let answer = smtp_send(
        &inbound_addr,
        "ana@northwind.example",
        &reply_to,
        &format!(
            "From: Ana Silva <ana@northwind.example>\r\nTo: <{reply_to}>\r\nSubject: Re: {}\r\nIn-Reply-To: <{}>\r\n\r\nThe customer signed the NDA today.\r\n\r\nOn Mon, Dec 7, 2026, Acme Channel Team wrote:\r\n> Your registration is approved",
            approval.subject, approval.message_id
        ),
    );
    assert!(answer.starts_with("250"), "{answer}");
    // From someone else, with the same address: kept aside, no note.
    let answer = smtp_send(
        &inbound_addr,
        "mallory@elsewhere.example",
        &reply_to,
        "From: <mallory@elsewhere.example>\r\nSubject: hi\r\n\r\nPlease reassign this deal to me.",
    );
    assert!(answer.starts_with("250"), "{answer}");
    let log = history(&store);
    let notes: Vec<&Value> = log
        .iter()
        .filter(|e| e["type"] == "note_added" && e["visibility"] == "partner")
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["registration_id"], json!(first));
    assert_eq!(notes[0]["text"], "The customer signed the NDA today.");
    assert_eq!(notes[0]["by"], "ana");
    // The auditor's history of the registration shows the note and who wrote it.
    let out = dealreg(
        &store,
        &[
            "audit",
            "history",
            "--registration",
            &first.to_string(),
            "--json",
        ],
    );
    let trail: Vec<Value> = serde_json::from_slice(&out.stdout).expect("history JSON");
    assert!(
        trail.iter().any(|l| l["happened"] == "note_added"
            && l["reason"] == "The customer signed the NDA today."
            && l["actor"]["user"] == "ana"),
        "{trail:?}"
    );
    let aside = std::fs::read_dir(dir.path().join("program.db.notify.db.aside"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(
        aside >= 1,
        "the stranger's reply is kept aside for a person"
    );

    // forget: no readable copy of Ana's address remains anywhere dealreg keeps data (the
    // maildir is the recipients' own mailbox), and nothing more goes to her.
    let out = dealreg(&store, &["forget", "--email", "ana@northwind.example"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = mails(&smtp)
        .iter()
        .filter(|m| m.to == "ana@northwind.example")
        .count();
    let (second, second_domain) = registrations[1].clone();
    ok(&apply(
        &store,
        dir.path(),
        &[line(
            cm(),
            json!({ "type": "approve_registration", "account": second_domain, "registration_id": second, "rationale": "qualified" }),
        )],
    ));
    // A few of the notifier's rounds (one a second) pass.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = mails(&smtp)
        .iter()
        .filter(|m| m.to == "ana@northwind.example")
        .count();
    assert_eq!(before, after, "an erased person gets nothing more");
    serve.terminate();
    let mut files = Vec::new();
    files_under(dir.path(), smtp.maildir(), &mut files);
    for file in files {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        // The test's own command files name her; dealreg's files must not.
        if file
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("commands-"))
        {
            continue;
        }
        assert!(
            !text.contains("ana@northwind.example"),
            "{} holds the forgotten address",
            file.display()
        );
    }
}

/// The demo program's history, sent to the people subscribed after it (a backfill), with
/// the sending process SIGKILLed halfway: every alert arrives once (at most the one in
/// flight at the kill twice, with the same Message-ID), and no partner's mail names
/// another partner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_programs_alerts_arrive_once_each_across_a_sigkill() {
    let nats = NatsServer::start(None);
    let client = async_nats::connect(&nats.url).await.expect("connect");
    let smtp = SmtpServer::start().expect("aiosmtpd starts (run scripts/setup)");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = support::demo_store(&dir);
    // The demo's partners, and a user of each subscribed; the channel team too.
    let partners: Vec<(Uuid, String)> = history(&store)
        .iter()
        .filter(|e| e["type"] == "partner_onboarded")
        .map(|e| {
            (
                serde_json::from_value(e["partner_id"].clone()).expect("a partner id"),
                e["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(partners.len() >= 3, "{partners:?}");
    let offboarded: BTreeSet<String> = history(&store)
        .iter()
        .filter(|e| e["type"] == "partner_offboarded")
        .filter_map(|e| e["partner_id"].as_str().map(str::to_string))
        .collect();
    let mut lines = vec![line(
        cm(),
        subscribe(None, "casey", "Casey Manager", "casey@vendor.example", None),
    )];
    for (n, (id, _)) in partners.iter().enumerate() {
        if offboarded.contains(&id.to_string()) {
            continue;
        }
        let user = format!("user{n}");
        lines.push(line(
            partner_user(*id, &user),
            subscribe(
                Some(*id),
                &user,
                &format!("User {n}"),
                &format!("{user}@partner{n}.example"),
                None,
            ),
        ));
    }
    ok(&apply(&store, dir.path(), &lines));
    let config = notifier_settings(dir.path(), &smtp, "backfill = true\n");
    let args = [
        "--notify-config",
        config.to_str().expect("utf-8"),
        "--notify-every",
        "1",
    ];
    let mut serve = Serve::start(
        &store,
        &nats.url,
        &args,
        &[],
        dir.path().join("serve-1.log"),
        &client,
    )
    .await;
    wait_for_mail(&smtp, "the backfill under way", |m| m.len() >= 100);
    serve.kill();
    let mut serve = Serve::start(
        &store,
        &nats.url,
        &args,
        &[],
        dir.path().join("serve-2.log"),
        &client,
    )
    .await;
    // Done when nothing waits and the mails stop coming.
    let status = || -> Value {
        let out = dealreg(
            &store,
            &["alerts", "--config", config.to_str().expect("utf-8")],
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let s = status();
        if s["waiting"] == 0 && s["sent"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backfill did not finish: {s}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    serve.terminate();
    let report = status();
    assert_eq!(report["dead_letters"], json!([]), "{report}");
    let sent = report["sent"].as_u64().expect("a count") as usize;
    let got = mails(&smtp);
    let ids: BTreeSet<&str> = got.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids.len(), sent, "one message per alert and recipient");
    assert!(
        got.len() <= sent + 1,
        "{} received for {sent} sent",
        got.len()
    );
    assert!(sent > 200, "the demo makes hundreds of alerts: {sent}");
    eprintln!(
        "the demo's backfill: {sent} messages sent, {} received",
        got.len()
    );
    let kinds: BTreeSet<&str> = got.iter().map(|m| m.kind.as_str()).collect();
    for kind in [
        "registration_submitted",
        "registration_approved",
        "conflict_raised",
        "stage_changed",
    ] {
        assert!(kinds.contains(kind), "no {kind} among {kinds:?}");
    }
    // Partner-safe: a partner user's mail names no other partner.
    for (n, (id, _)) in partners.iter().enumerate() {
        let to = format!("user{n}@partner{n}.example");
        for mail in got.iter().filter(|m| m.to == to) {
            let body = format!("{} {} {}", mail.subject, mail.text, mail.html);
            for (other, name) in partners.iter().filter(|(o, _)| o != id) {
                assert!(
                    !body.contains(name.as_str()) && !body.contains(&other.to_string()),
                    "a mail to {to} names {name}: {mail:?}"
                );
            }
        }
    }
}

/// Two `serve` processes on one store, both with the notifier: one sends at a time (the
/// holder of the deployment's duties); SIGKILL it while it sends, and the other takes the
/// duty over and finishes: every alert arrives once (at most the one in flight at the
/// kill twice, with the same Message-ID).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_send_each_alert_once_when_the_sender_is_killed() {
    let nats = NatsServer::start(None);
    let client = async_nats::connect(&nats.url).await.expect("connect");
    let smtp = SmtpServer::start().expect("aiosmtpd starts (run scripts/setup)");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("program.db");
    let config = notifier_settings(dir.path(), &smtp, "");
    let args = [
        "--notify-config",
        config.to_str().expect("utf-8"),
        "--notify-every",
        "1",
    ];
    let mut first = Serve::start(
        &store,
        &nats.url,
        &args,
        &[],
        dir.path().join("a.log"),
        &client,
    )
    .await;
    let mut second = Serve::start(
        &store,
        &nats.url,
        &args,
        &[],
        dir.path().join("b.log"),
        &client,
    )
    .await;
    let partner = Uuid::now_v7();
    let mut lines = reseller(partner, "Northwind Resellers", 500);
    lines.push(line(
        cm(),
        subscribe(None, "casey", "Casey Manager", "casey@vendor.example", None),
    ));
    let n = 300;
    for i in 0..n {
        lines.push(line(
            partner_user(partner, "ana"),
            submit(Uuid::now_v7(), partner, &format!("c{i}.example")),
        ));
    }
    ok(&apply(&store, dir.path(), &lines));
    wait_for_mail(&smtp, "the first alerts", |m| m.len() >= 20);
    // The sender is the process holding the lease.
    let (sender, other) = if first.log_text().contains("took the views lease") {
        (&mut first, &mut second)
    } else {
        (&mut second, &mut first)
    };
    sender.kill();
    let got = wait_for_mail(&smtp, "every alert, sent by the other process", |m| {
        m.iter()
            .map(|m| m.message_id.as_str())
            .collect::<BTreeSet<_>>()
            .len()
            >= n
    });
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = if got.len() == mails(&smtp).len() {
        got
    } else {
        mails(&smtp)
    };
    other.terminate();
    let ids: BTreeSet<&str> = got.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids.len(), n, "one message per submission");
    assert!(got.len() <= n + 1, "{} received for {n}", got.len());
}

/// An SMTP server that stops answering without closing its connections (SIGSTOP): the
/// notifier's sends time out, the messages wait in the outbox (no dead letter, nothing
/// lost), and once the server answers again each arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_smtp_server_delays_alerts_and_loses_none() {
    let nats = NatsServer::start(None);
    let client = async_nats::connect(&nats.url).await.expect("connect");
    let smtp = SmtpServer::start().expect("aiosmtpd starts (run scripts/setup)");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("program.db");
    let config = notifier_settings(dir.path(), &smtp, "");
    let args = [
        "--notify-config",
        config.to_str().expect("utf-8"),
        "--notify-every",
        "1",
    ];
    let mut serve = Serve::start(
        &store,
        &nats.url,
        &args,
        &[],
        dir.path().join("serve.log"),
        &client,
    )
    .await;
    let partner = Uuid::now_v7();
    let mut lines = reseller(partner, "Northwind Resellers", 50);
    lines.push(line(
        cm(),
        subscribe(None, "casey", "Casey Manager", "casey@vendor.example", None),
    ));
    smtp.sigstop().expect("SIGSTOP aiosmtpd");
    let n = 5;
    for i in 0..n {
        lines.push(line(
            partner_user(partner, "ana"),
            submit(Uuid::now_v7(), partner, &format!("f{i}.example")),
        ));
    }
    ok(&apply(&store, dir.path(), &lines));
    // Past the carrier's 10-second timeout: the first send failed transiently.
    let status = || -> Value {
        let out = dealreg(
            &store,
            &["alerts", "--config", config.to_str().expect("utf-8")],
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !serve
        .log_text()
        .contains("an alert could not be sent; trying again")
    {
        assert!(
            Instant::now() < deadline,
            "no send timed out: {}",
            serve.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let waiting = status();
    assert_eq!(waiting["waiting"], n, "{waiting}");
    assert_eq!(waiting["dead_letters"], json!([]), "{waiting}");
    smtp.sigcont().expect("SIGCONT aiosmtpd");
    let got = wait_for_mail(&smtp, "every alert after the thaw", |m| {
        m.iter()
            .filter(|m| m.kind == "registration_submitted")
            .count()
            >= n
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    serve.terminate();
    let ids: BTreeSet<&str> = got.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids.len(), n);
    let after = mails(&smtp);
    assert!(after.len() <= n + 1, "{} received for {n}", after.len());
    let done = status();
    assert_eq!(done["waiting"], 0, "{done}");
    assert_eq!(done["sent"], n, "{done}");
}
