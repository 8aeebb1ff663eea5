//! The SMTP reply receiver over a real loopback socket, with a raw client.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use dealreg_actions::{
    serve_inbound, Aside, BoxFuture, InboundSettings, LinkKey, LinkRefused, Refusal, Reply,
    ReplyReceiver,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<Reply>>,
    transient: Mutex<bool>,
}

impl ReplyReceiver for Receiver {
    fn received<'a>(&'a self, reply: Reply) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(async move {
            if *self.transient.lock().unwrap() {
                return Err(Refusal::Transient("store unavailable".into()));
            }
            self.got.lock().unwrap().push(reply);
            Ok(())
        })
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap()
}

struct Server {
    addr: std::net::SocketAddr,
    key: Arc<LinkKey>,
    receiver: Arc<Receiver>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(max_message_bytes: usize) -> Server {
    start_with(|s| s.max_message_bytes = max_message_bytes).await
}

async fn start_with(adjust: impl FnOnce(&mut InboundSettings)) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let key = Arc::new(LinkKey::generate());
    let receiver = Arc::new(Receiver::default());
    let mut settings = InboundSettings::new("replies.example.com");
    adjust(&mut settings);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_inbound(
        listener,
        settings,
        key.clone(),
        receiver.clone(),
        Arc::new(now),
        async move {
            let _ = rx.await;
        },
    ));
    Server {
        addr,
        key,
        receiver,
        stop: Some(tx),
        task,
    }
}

impl Server {
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap();
    }
}

struct Client {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        let mut client = Client {
            read: BufReader::new(read),
            write,
        };
        let greeting = client.answer().await;
        assert!(
            greeting.starts_with("220 replies.example.com"),
            "{greeting}"
        );
        client
    }

    /// Reads one (possibly multi-line) answer.
    async fn answer(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            self.read.read_line(&mut line).await.unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }

    async fn send(&mut self, text: &str) -> String {
        self.write.write_all(text.as_bytes()).await.unwrap();
        self.write.write_all(b"\r\n").await.unwrap();
        self.answer().await
    }

    async fn expect(&mut self, text: &str, code: &str) -> String {
        let answer = self.send(text).await;
        assert!(answer.starts_with(code), "{text} -> {answer}");
        answer
    }

    /// Sends the message text, dot-stuffed, and the end marker.
    async fn data(&mut self, message: &str) -> String {
        self.expect("DATA", "354").await;
        let mut stuffed = String::new();
        for line in message.split("\r\n") {
            if line.starts_with('.') {
                stuffed.push('.');
            }
            stuffed.push_str(line);
            stuffed.push_str("\r\n");
        }
        stuffed.push_str(".\r\n");
        self.write.write_all(stuffed.as_bytes()).await.unwrap();
        self.answer().await
    }
}

fn gmail_reply(to: &str) -> String {
    format!(
        "From: Pat Partner <pat@partner.example>\r\n\
         To: {to}\r\n\
         Subject: Re: Registration R-1042 needs your decision\r\n\
         In-Reply-To: <alert-1@dealreg.example>\r\n\
         Message-ID: <reply-1@partner.example>\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         The customer confirmed the budget on Friday.\r\n\
         .hidden line starts with a dot\r\n\
         ..two dots\r\n\
         \r\n\
         On Mon, Dec 7, 2026 at 9:00 AM Deal Desk <\r\n\
         {to}> wrote:\r\n\
         > Registration R-1042 needs your decision.\r\n\
         > Approve: https://example/a/v1.x\r\n"
    )
}

fn outlook_reply(to: &str) -> String {
    format!(
        "From: Sam <sam@partner.example>\r\n\
         To: {to}\r\n\
         Subject: RE: Announcement\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         \r\n\
         <html><body><p>Noted, we will update the forecast.</p>\
         <p>Sam</p>\
         <hr>\
         <p>From: Deal Desk &lt;desk@dealreg.example&gt;<br>\
         Sent: Monday, December 7, 2026 9:00 AM<br>\
         To: Sam<br>\
         Subject: Announcement</p><p>Old alert text</p></body></html>\r\n"
    )
}

async fn one_session(client: &mut Client, to: &str, message: &str) -> String {
    client.expect("EHLO client.example", "250").await;
    client
        .expect("MAIL FROM:<bounce@partner.example> SIZE=2000", "250")
        .await;
    client.expect(&format!("RCPT TO:<{to}>"), "250").await;
    client.data(message).await
}

#[tokio::test]
async fn a_gmail_style_reply_becomes_its_new_text() {
    let server = start(1024 * 1024).await;
    let id = uuid::Uuid::now_v7();
    let to = format!(
        "reply+{}@replies.example.com",
        server.key.sign_reply(id, now() + Duration::days(30))
    );
    let mut client = Client::connect(server.addr).await;
    let ehlo = client.send("EHLO client.example").await;
    assert!(ehlo.contains("250-SIZE 1048576"), "{ehlo}");
    assert!(ehlo.contains("8BITMIME"), "{ehlo}");
    client.expect("VRFY someone", "252").await;
    client.expect("NOOP", "250").await;
    client.expect("FOO bar", "500").await;
    client
        .expect("MAIL FROM:<bounce@partner.example> BODY=8BITMIME", "250")
        .await;
    client.expect(&format!("RCPT TO:<{to}>"), "250").await;
    let answer = client.data(&gmail_reply(&to)).await;
    assert!(answer.starts_with("250"), "{answer}");
    client.expect("QUIT", "221").await;

    let got = server.receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let reply = &got[0];
    assert_eq!(reply.reply_id.as_ref().unwrap().0, id);
    assert_eq!(reply.from, "pat@partner.example");
    assert_eq!(reply.envelope_from, "bounce@partner.example");
    assert_eq!(reply.subject, "Re: Registration R-1042 needs your decision");
    assert_eq!(
        reply.in_reply_to.as_deref(),
        Some("alert-1@dealreg.example")
    );
    assert_eq!(
        reply.text,
        "The customer confirmed the budget on Friday.\n.hidden line starts with a dot\n..two dots"
    );
    let raw = String::from_utf8_lossy(&reply.raw);
    assert!(raw.contains("\r\n.hidden line starts with a dot\r\n..two dots\r\n"));
    assert!(!format!("{reply:?}").contains(&to));
    server.stop().await;
}

#[tokio::test]
async fn an_outlook_html_reply_becomes_its_new_text() {
    let server = start(1024 * 1024).await;
    let id = uuid::Uuid::now_v7();
    let to = format!(
        "REPLY+{}@Replies.Example.Com",
        server
            .key
            .sign_reply(id, now() + Duration::days(30))
            .to_uppercase()
    );
    let mut client = Client::connect(server.addr).await;
    let answer = one_session(&mut client, &to, &outlook_reply(&to)).await;
    assert!(answer.starts_with("250"), "{answer}");
    let got = server.receiver.got.lock().unwrap().clone();
    assert_eq!(got[0].reply_id.as_ref().unwrap().0, id);
    assert_eq!(got[0].from, "sam@partner.example");
    assert!(
        got[0]
            .text
            .starts_with("Noted, we will update the forecast."),
        "{:?}",
        got[0].text
    );
    assert!(!got[0].text.contains("Old alert text"), "{:?}", got[0].text);
    assert!(!got[0].text.contains("Sent:"), "{:?}", got[0].text);
    server.stop().await;
}

#[tokio::test]
async fn unknown_recipients_are_refused() {
    let server = start(1024 * 1024).await;
    let token = server
        .key
        .sign_reply(uuid::Uuid::now_v7(), now() + Duration::days(1));
    let mut client = Client::connect(server.addr).await;
    client.expect("MAIL FROM:<a@b.example>", "503").await;
    client.expect("HELO client.example", "250").await;
    client
        .expect("RCPT TO:<x@replies.example.com>", "503")
        .await;
    client.expect("MAIL FROM:<a@b.example>", "250").await;
    client
        .expect(&format!("RCPT TO:<reply+{token}@elsewhere.example>"), "550")
        .await;
    client
        .expect("RCPT TO:<postmaster@replies.example.com>", "550")
        .await;
    let malformed = client
        .expect("RCPT TO:<reply+short@replies.example.com>", "550")
        .await;
    assert!(malformed.contains("not one we issued"), "{malformed}");
    client.expect("DATA", "554").await;
    client.expect("RSET", "250").await;
    client.expect("QUIT", "221").await;
    assert!(server.receiver.got.lock().unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn tampered_and_expired_tokens_reach_the_receiver_as_refused() {
    let server = start(1024 * 1024).await;
    let good = server
        .key
        .sign_reply(uuid::Uuid::now_v7(), now() + Duration::days(1));
    let mut tampered = good.clone().into_bytes();
    tampered[3] = if tampered[3] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    let expired = server
        .key
        .sign_reply(uuid::Uuid::now_v7(), now() - Duration::hours(1));
    for token in [&tampered, &expired] {
        let to = format!("reply+{token}@replies.example.com");
        let mut client = Client::connect(server.addr).await;
        let answer = one_session(&mut client, &to, &gmail_reply(&to)).await;
        assert!(answer.starts_with("250"), "{answer}");
        client.expect("QUIT", "221").await;
    }
    let got = server.receiver.got.lock().unwrap().clone();
    assert_eq!(got[0].reply_id, Err(LinkRefused::Tampered));
    assert!(matches!(got[1].reply_id, Err(LinkRefused::Expired { .. })));

    // The binary keeps such a message aside.
    let dir = tempfile::tempdir().unwrap();
    let aside = Aside::new(dir.path().join("aside"));
    let eml = aside.keep(&got[0].raw, "tampered reply address").unwrap();
    assert_eq!(std::fs::read(&eml).unwrap(), got[0].raw);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eml.with_extension("json")).unwrap()).unwrap();
    assert_eq!(meta["reason"], "tampered reply address");
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_message_is_refused_and_the_server_keeps_serving() {
    let server = start(2000).await;
    let id = uuid::Uuid::now_v7();
    let to = format!(
        "reply+{}@replies.example.com",
        server.key.sign_reply(id, now() + Duration::days(1))
    );
    let mut client = Client::connect(server.addr).await;
    client.expect("EHLO client.example", "250").await;
    client
        .expect("MAIL FROM:<a@b.example> SIZE=5000", "552")
        .await;
    client.expect("MAIL FROM:<a@b.example>", "250").await;
    client.expect(&format!("RCPT TO:<{to}>"), "250").await;
    let big = format!("{}{}", gmail_reply(&to), "x".repeat(3000));
    let answer = client.data(&big).await;
    assert!(answer.starts_with("552"), "{answer}");
    // Same session, a message that fits.
    let answer = one_session(&mut client, &to, &gmail_reply(&to)).await;
    assert!(answer.starts_with("250"), "{answer}");
    // A command line that is far too long is answered, not fatal.
    client
        .expect(&format!("NOOP {}", "y".repeat(5000)), "500")
        .await;
    client.expect("QUIT", "221").await;
    assert_eq!(server.receiver.got.lock().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn a_transient_receiver_error_is_451() {
    let server = start(1024 * 1024).await;
    *server.receiver.transient.lock().unwrap() = true;
    let to = format!(
        "reply+{}@replies.example.com",
        server
            .key
            .sign_reply(uuid::Uuid::now_v7(), now() + Duration::days(1))
    );
    let mut client = Client::connect(server.addr).await;
    let answer = one_session(&mut client, &to, &gmail_reply(&to)).await;
    assert!(answer.starts_with("451"), "{answer}");
    *server.receiver.transient.lock().unwrap() = false;
    let answer = one_session(&mut client, &to, &gmail_reply(&to)).await;
    assert!(answer.starts_with("250"), "{answer}");
    assert_eq!(server.receiver.got.lock().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn idle_sessions_are_closed_and_extra_sessions_told_to_wait() {
    let server = start_with(|s| {
        s.idle_timeout = std::time::Duration::from_millis(300);
        s.max_sessions = 1;
    })
    .await;
    let mut first = Client::connect(server.addr).await;
    // The only session is taken: a second one is told 421 and closed.
    let (read, _write) = TcpStream::connect(server.addr).await.unwrap().into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await.unwrap();
    assert!(line.starts_with("421"), "{line}");
    // The first, silent, is closed after the idle timeout.
    let answer = first.answer().await;
    assert!(answer.starts_with("421"), "{answer}");
    assert!(answer.contains("idle"), "{answer}");
    // Its slot is free again.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut next = Client::connect(server.addr).await;
    next.expect("QUIT", "221").await;
    server.stop().await;
}
