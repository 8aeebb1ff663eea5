//! The link server over a real loopback socket, with raw HTTP/1.1 requests.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use dealreg_actions::{
    serve_links, ActionDone, ActionFailed, ActionRunner, BoxFuture, Described, Link, LinkKey,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

#[derive(Default)]
struct Runner {
    opened: AtomicUsize,
    runs: AtomicUsize,
    done: Mutex<HashSet<uuid::Uuid>>,
    forms: Mutex<Vec<BTreeMap<String, String>>>,
    title: String,
}

impl ActionRunner for Runner {
    fn describe<'a>(&'a self, link: &'a Link) -> BoxFuture<'a, Described> {
        Box::pin(async move {
            Described {
                title: if self.title.is_empty() {
                    format!("Do {}", link.action)
                } else {
                    self.title.clone()
                },
                text: "Confirm to go ahead.".into(),
                reason_codes: vec!["duplicate".into(), "no_budget".into()],
            }
        })
    }
    fn opened<'a>(&'a self, _link: &'a Link) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.opened.fetch_add(1, Ordering::SeqCst);
            Err("read receipts are down".to_string())
        })
    }
    fn run<'a>(
        &'a self,
        link: &'a Link,
        form: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<ActionDone, ActionFailed>> {
        Box::pin(async move {
            self.runs.fetch_add(1, Ordering::SeqCst);
            self.forms.lock().unwrap().push(form.clone());
            if link.action == "refuse_me" {
                return Err(ActionFailed {
                    status: 409,
                    title: "Not possible".into(),
                    text: "The registration was withdrawn.".into(),
                });
            }
            let first = self.done.lock().unwrap().insert(link.id);
            Ok(ActionDone {
                title: "Done".into(),
                text: format!("{} recorded.", link.action),
                already_done: !first,
            })
        })
    }
}

struct Server {
    addr: std::net::SocketAddr,
    key: Arc<LinkKey>,
    runner: Arc<Runner>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap()
}

async fn start(runner: Runner) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let key = Arc::new(LinkKey::generate());
    let runner = Arc::new(runner);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_links(
        listener,
        key.clone(),
        runner.clone(),
        Arc::new(now),
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        key,
        runner,
        stop: Some(tx),
        task,
    }
}

impl Server {
    fn token(&self, action: &str, expires_at: DateTime<Utc>) -> String {
        let mut fields = serde_json::Map::new();
        fields.insert("registration_id".into(), json!("R-1"));
        self.key
            .sign(&Link::new(action, fields, json!({"id": "p-1"}), expires_at))
    }

    fn good(&self, action: &str) -> String {
        self.token(action, now() + Duration::days(3))
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap();
    }
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

async fn send(addr: std::net::SocketAddr, raw: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

async fn get(addr: std::net::SocketAddr, path: &str) -> Answer {
    send(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

async fn post(addr: std::net::SocketAddr, path: &str, form: &str) -> Answer {
    send(
        addr,
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        )
        .as_bytes(),
    )
    .await
}

#[tokio::test]
async fn get_shows_the_form_and_never_acts() {
    let server = start(Runner::default()).await;
    let token = server.good("decline_registration");
    let answer = get(server.addr, &format!("/a/{token}")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("<form method=\"post\""));
    assert!(answer
        .body
        .contains("<textarea id=\"reason\" name=\"reason\""));
    assert!(answer.body.contains("<option value=\"no_budget\">"));
    assert!(answer
        .head
        .contains("content-security-policy: default-src 'none'; style-src 'unsafe-inline'"));
    assert!(answer.head.contains("cache-control: no-store"));
    assert!(answer.head.contains("referrer-policy: no-referrer"));
    assert!(answer.head.contains("x-frame-options: deny"));
    assert!(!answer.body.contains("<script"));
    assert_eq!(server.runner.opened.load(Ordering::SeqCst), 1);
    assert_eq!(server.runner.runs.load(Ordering::SeqCst), 0);

    let next = get(server.addr, &format!("/a/{}", server.good("set_next_step"))).await;
    assert!(next.body.contains("type=\"date\" id=\"due\" name=\"due\""));
    assert!(next.body.contains("name=\"text\""));
    server.stop().await;
}

#[tokio::test]
async fn post_runs_once_and_a_second_post_says_already_done() {
    let server = start(Runner::default()).await;
    let path = format!("/a/{}", server.good("approve_registration"));
    let first = post(server.addr, &path, "").await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert!(first.body.contains("approve_registration recorded."));
    assert!(!first.body.contains("already been used"));
    let second = post(server.addr, &path, "").await;
    assert_eq!(second.status, 200);
    assert!(second.body.contains("already been used"), "{}", second.body);
    assert_eq!(server.runner.runs.load(Ordering::SeqCst), 2);
    assert_eq!(server.runner.opened.load(Ordering::SeqCst), 0);
    server.stop().await;
}

#[tokio::test]
async fn decline_needs_a_reason_and_passes_it_on() {
    let server = start(Runner::default()).await;
    let path = format!("/a/{}", server.good("decline_registration"));
    let missing = post(server.addr, &path, "reason=+++&reason_code=duplicate").await;
    assert_eq!(missing.status, 422, "{}", missing.body);
    assert!(missing.body.contains(
        "</textarea></p><p class=\"error\" id=\"reason-error\" role=\"alert\">Please give a reason for declining.</p>"
    ), "{}", missing.body);
    assert!(missing.body.contains("aria-describedby=\"reason-error\""));
    assert!(missing
        .body
        .contains("<option value=\"duplicate\" selected>"));
    assert_eq!(server.runner.runs.load(Ordering::SeqCst), 0);

    let done = post(
        server.addr,
        &path,
        "reason=Already+registered+by+%3Cb%3EBeta%3C%2Fb%3E&reason_code=duplicate&extra=1",
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let forms = server.runner.forms.lock().unwrap().clone();
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0]["reason"], "Already registered by <b>Beta</b>");
    assert_eq!(forms[0]["reason_code"], "duplicate");
    assert!(!forms[0].contains_key("extra"));
    server.stop().await;
}

#[tokio::test]
async fn refused_links_say_why() {
    let server = start(Runner::default()).await;
    let token = server.good("approve_registration");
    let mut tampered = token.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let answer = get(server.addr, &format!("/a/{tampered}")).await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("could not be verified"),
        "{}",
        answer.body
    );
    assert!(answer
        .body
        .contains("Ask your partner manager for a new link"));
    let posted = post(server.addr, &format!("/a/{tampered}"), "").await;
    assert_eq!(posted.status, 400);

    let expired = server.token("approve_registration", now() - Duration::minutes(1));
    let answer = get(server.addr, &format!("/a/{expired}")).await;
    assert_eq!(answer.status, 410);
    assert!(answer.body.contains("expired"), "{}", answer.body);
    let answer = post(server.addr, &format!("/a/{expired}"), "").await;
    assert_eq!(answer.status, 410);

    let malformed = get(server.addr, "/a/not-a-token").await;
    assert_eq!(malformed.status, 400);
    assert!(malformed.body.contains("incomplete or damaged"));
    assert_eq!(server.runner.runs.load(Ordering::SeqCst), 0);
    assert_eq!(server.runner.opened.load(Ordering::SeqCst), 0);
    server.stop().await;
}

#[tokio::test]
async fn garbage_is_answered_and_the_server_keeps_running() {
    let server = start(Runner::default()).await;
    let good = format!("/a/{}", server.good("acknowledge_announcement"));
    assert_eq!(get(server.addr, "/").await.status, 404);
    assert_eq!(get(server.addr, "/a/").await.status, 404);
    assert_eq!(get(server.addr, "/a/x/y").await.status, 404);
    assert_eq!(get(server.addr, "/elsewhere?q=1").await.status, 404);
    let reply_link = format!("/a/{}", server.good("reply_note"));
    assert_eq!(get(server.addr, &reply_link).await.status, 404);
    assert_eq!(post(server.addr, &reply_link, "").await.status, 404);

    let delete = send(
        server.addr,
        format!("DELETE {good} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(delete.status, 405);
    assert!(delete.head.contains("allow: get, post"));

    let declared = send(
        server.addr,
        format!(
            "POST {good} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(declared.status, 413);
    let big = format!("reason={}", "a".repeat(20_000));
    let chunked = format!(
        "POST {good} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    assert_eq!(send(server.addr, chunked.as_bytes()).await.status, 413);

    let nonsense = send(server.addr, b"\x00\x01 garbage \xff\r\n\r\n").await;
    assert!(nonsense.status == 400 || nonsense.status == 0);
    let json = send(
        server.addr,
        format!(
            "POST {good} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(json.status, 415);
    assert_eq!(server.runner.runs.load(Ordering::SeqCst), 0);

    let ok = post(server.addr, &good, "").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    server.stop().await;
}

#[tokio::test]
async fn runner_failures_are_shown_with_their_status() {
    let server = start(Runner::default()).await;
    let answer = post(server.addr, &format!("/a/{}", server.good("refuse_me")), "").await;
    assert_eq!(answer.status, 409);
    assert!(answer.body.contains("The registration was withdrawn."));
    server.stop().await;
}

#[tokio::test]
async fn titles_are_escaped() {
    let server = start(Runner {
        title: "<script>alert(\"x\")</script>".into(),
        ..Runner::default()
    })
    .await;
    let answer = get(
        server.addr,
        &format!("/a/{}", server.good("approve_registration")),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(!answer.body.contains("<script>"), "{}", answer.body);
    assert!(answer
        .body
        .contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"));
    server.stop().await;
}
