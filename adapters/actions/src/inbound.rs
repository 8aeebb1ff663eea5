//! E-mail replies become notes: a minimal SMTP server (RFC 5321) that takes mail for
//! `reply+<token>@<domain>`, parses it, strips the quoted alert, and hands the new text to
//! the binary.
//!
//! Recipient policy: an address outside the domain, or not `reply+...`, or whose token is
//! not shaped like one of ours (malformed) is refused at RCPT with 550: no one can ever act
//! on it. A token that is shaped right but tampered or expired is ACCEPTED, and the receiver
//! gets `Err(Tampered)` / `Err(Expired)`: a person who replies late to a genuine alert
//! should not get a bounce that looks like an outage, and the binary keeps such messages
//! aside ([`Aside`]) for a person to look at. The server answers 250 only after the
//! receiver has taken the message, and 451 when the receiver fails transiently, so the
//! sending server retries and nothing acknowledged is lost.

use std::future::Future;
use std::io;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use uuid::Uuid;

use crate::links::{LinkKey, LinkRefused};
use crate::pages::Clock;
use crate::BoxFuture;

/// Longest command line accepted (RFC 5321 allows 512 octets; parameters make some longer).
const MAX_COMMAND_LINE: usize = 2048;

/// Longest line of message text kept whole; RFC 5321 says 1000, real mail is sloppier.
const MAX_TEXT_LINE: usize = 64 * 1024;

/// Where the server listens, and its limits.
#[derive(Debug, Clone)]
pub struct InboundSettings {
    /// The domain of the reply addresses (`reply+...@domain`), also the greeting's name.
    pub domain: String,
    /// The largest message accepted, in bytes (advertised as SIZE; larger ones get 552).
    pub max_message_bytes: usize,
    /// Sessions served at once; one more is told 421 and closed.
    pub max_sessions: usize,
    /// A session silent this long is closed with 421.
    pub idle_timeout: Duration,
}

impl InboundSettings {
    /// The defaults: 1 MiB messages, 32 sessions, 60 s idle.
    pub fn new(domain: impl Into<String>) -> Self {
        Self {
            domain: domain.into(),
            max_message_bytes: 1024 * 1024,
            max_sessions: 32,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// One received reply.
#[derive(Clone, PartialEq)]
pub struct Reply {
    /// The link id and expiry of the reply address's token, or why it was refused.
    pub reply_id: Result<(Uuid, DateTime<Utc>), LinkRefused>,
    /// The From header's address (the envelope sender when the header has none).
    pub from: String,
    /// The envelope sender (MAIL FROM), empty for a bounce.
    pub envelope_from: String,
    /// The Subject header.
    pub subject: String,
    /// The In-Reply-To header's message id, if any.
    pub in_reply_to: Option<String>,
    /// The new text of the reply: quoted text and signature removed, trimmed.
    pub text: String,
    /// The message as received (after dot-unstuffing), for keeping aside.
    pub raw: Vec<u8>,
}

impl std::fmt::Debug for Reply {
    /// The raw message holds the reply address (its token): only its size is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("reply_id", &self.reply_id)
            .field("from", &self.from)
            .field("envelope_from", &self.envelope_from)
            .field("subject", &self.subject)
            .field("in_reply_to", &self.in_reply_to)
            .field("text", &self.text)
            .field("raw_bytes", &self.raw.len())
            .finish()
    }
}

/// Why the receiver did not take a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Try again later (store down): answered 451, the sender retries.
    #[error("temporarily unable to take the message: {0}")]
    Transient(String),
    /// Never (answered 554): the sender bounces it to the person.
    #[error("message refused: {0}")]
    Permanent(String),
}

/// The binary's side: turns a reply into a note, or keeps it aside.
pub trait ReplyReceiver: Send + Sync + 'static {
    /// Takes one reply; `Ok` once it is durably recorded (as a note, or kept aside).
    fn received<'a>(&'a self, reply: Reply) -> BoxFuture<'a, Result<(), Refusal>>;
}

/// Serves SMTP on `listener` until `shutdown` completes; sessions in flight are then told
/// 421 at their next command and closed.
pub async fn serve_inbound(
    listener: TcpListener,
    settings: InboundSettings,
    key: Arc<LinkKey>,
    receiver: Arc<dyn ReplyReceiver>,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
) {
    let settings = Arc::new(settings);
    let permits = Arc::new(Semaphore::new(settings.max_sessions.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (mut stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accepting an SMTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many SMTP sessions; refusing one");
            let line = format!(
                "421 {} too many connections, try again later\r\n",
                settings.domain
            );
            tokio::spawn(async move {
                let _ = stream.write_all(line.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let session = Session {
            settings: settings.clone(),
            key: key.clone(),
            receiver: receiver.clone(),
            clock: clock.clone(),
            stop: stop_rx.clone(),
        };
        tokio::spawn(async move {
            let _permit = permit;
            match session.run(stream).await {
                Ok(()) => tracing::debug!(%peer, "SMTP session ended"),
                Err(e) => tracing::debug!(%peer, error = %e, "SMTP session ended with an error"),
            }
        });
    }
    let _ = stop_tx.send(true);
    tracing::info!("SMTP server stopped accepting");
}

struct Session {
    settings: Arc<InboundSettings>,
    key: Arc<LinkKey>,
    receiver: Arc<dyn ReplyReceiver>,
    clock: Clock,
    stop: watch::Receiver<bool>,
}

/// One mail transaction (MAIL .. DATA).
#[derive(Default)]
struct Transaction {
    mail_from: Option<String>,
    recipient: Option<Result<(Uuid, DateTime<Utc>), LinkRefused>>,
}

enum Line {
    Complete(Vec<u8>),
    TooLong,
    Eof,
}

enum Wait {
    Line(Line),
    Idle,
    Stopping,
}

impl Session {
    async fn run(mut self, stream: TcpStream) -> io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let domain = self.settings.domain.clone();
        reply(&mut write, &format!("220 {domain} ESMTP dealreg replies")).await?;
        let mut greeted = false;
        let mut tx = Transaction::default();
        loop {
            let line = match self.next_line(&mut read, MAX_COMMAND_LINE).await? {
                Wait::Line(Line::Complete(l)) => l,
                Wait::Line(Line::TooLong) => {
                    reply(&mut write, "500 line too long").await?;
                    continue;
                }
                Wait::Line(Line::Eof) => return Ok(()),
                Wait::Idle => {
                    reply(&mut write, &format!("421 {domain} idle too long, closing")).await?;
                    return Ok(());
                }
                Wait::Stopping => {
                    reply(&mut write, &format!("421 {domain} shutting down")).await?;
                    return Ok(());
                }
            };
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            let (verb, arg) = match line.split_once(' ') {
                Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
                None => (line.to_ascii_uppercase(), ""),
            };
            match verb.as_str() {
                "EHLO" | "HELO" if arg.is_empty() => {
                    reply(&mut write, "501 say who you are: EHLO <domain>").await?;
                }
                "EHLO" => {
                    greeted = true;
                    tx = Transaction::default();
                    let text = format!(
                        "250-{domain} hello\r\n250-SIZE {}\r\n250 8BITMIME",
                        self.settings.max_message_bytes
                    );
                    reply(&mut write, &text).await?;
                }
                "HELO" => {
                    greeted = true;
                    tx = Transaction::default();
                    reply(&mut write, &format!("250 {domain}")).await?;
                }
                "MAIL" => {
                    let answer = self.mail(greeted, &mut tx, arg);
                    reply(&mut write, &answer).await?;
                }
                "RCPT" => {
                    let answer = self.rcpt(&mut tx, arg);
                    reply(&mut write, &answer).await?;
                }
                "DATA" => {
                    if !arg.is_empty() {
                        reply(&mut write, "501 DATA takes no argument").await?;
                    } else if tx.mail_from.is_none() {
                        reply(&mut write, "503 MAIL first").await?;
                    } else if tx.recipient.is_none() {
                        reply(&mut write, "554 no valid recipients").await?;
                    } else {
                        reply(&mut write, "354 end data with <CR><LF>.<CR><LF>").await?;
                        match self.data(&mut read).await? {
                            DataEnd::Message(raw) => {
                                let answer = self.deliver(std::mem::take(&mut tx), raw).await;
                                reply(&mut write, &answer).await?;
                            }
                            DataEnd::TooBig => {
                                tx = Transaction::default();
                                reply(&mut write, "552 message size exceeds fixed maximum").await?;
                            }
                            DataEnd::WayTooBig => {
                                reply(&mut write, "552 message size exceeds fixed maximum").await?;
                                return Ok(());
                            }
                            DataEnd::Closed => return Ok(()),
                            DataEnd::Idle => {
                                reply(&mut write, &format!("421 {domain} idle too long")).await?;
                                return Ok(());
                            }
                        }
                    }
                }
                "RSET" => {
                    tx = Transaction::default();
                    reply(&mut write, "250 OK").await?;
                }
                "NOOP" => reply(&mut write, "250 OK").await?,
                "QUIT" => {
                    reply(&mut write, &format!("221 {domain} closing")).await?;
                    return Ok(());
                }
                "VRFY" => {
                    reply(
                        &mut write,
                        "252 cannot VRFY user, but will accept message and attempt delivery",
                    )
                    .await?
                }
                "HELP" => reply(&mut write, "214 see RFC 5321").await?,
                "EXPN" | "STARTTLS" | "AUTH" | "TURN" | "ETRN" | "BDAT" => {
                    reply(&mut write, "502 command not implemented").await?
                }
                _ => reply(&mut write, "500 command not recognized").await?,
            }
        }
    }

    async fn next_line(
        &mut self,
        read: &mut BufReader<OwnedReadHalf>,
        max: usize,
    ) -> io::Result<Wait> {
        if *self.stop.borrow() {
            return Ok(Wait::Stopping);
        }
        let idle = self.settings.idle_timeout;
        tokio::select! {
            r = tokio::time::timeout(idle, read_line(read, max)) => match r {
                Ok(line) => Ok(Wait::Line(line?)),
                Err(_) => Ok(Wait::Idle),
            },
            _ = self.stop.changed() => Ok(Wait::Stopping),
        }
    }

    fn mail(&self, greeted: bool, tx: &mut Transaction, arg: &str) -> String {
        if !greeted {
            return "503 EHLO first".to_string();
        }
        if tx.mail_from.is_some() {
            return "503 nested MAIL command".to_string();
        }
        let Some((path, params)) = parse_path(arg, "FROM:") else {
            return "501 syntax: MAIL FROM:<address>".to_string();
        };
        for param in params.split_whitespace() {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            match name.to_ascii_uppercase().as_str() {
                "SIZE" => match value.parse::<u64>() {
                    Ok(n) if n > self.settings.max_message_bytes as u64 => {
                        return "552 message size exceeds fixed maximum".to_string()
                    }
                    Ok(_) => {}
                    Err(_) => return "501 bad SIZE parameter".to_string(),
                },
                "BODY"
                    if value.eq_ignore_ascii_case("8BITMIME")
                        || value.eq_ignore_ascii_case("7BIT") => {}
                _ => return "555 parameter not recognized".to_string(),
            }
        }
        tx.mail_from = Some(path);
        "250 OK".to_string()
    }

    fn rcpt(&self, tx: &mut Transaction, arg: &str) -> String {
        if tx.mail_from.is_none() {
            return "503 MAIL first".to_string();
        }
        let Some((path, _params)) = parse_path(arg, "TO:") else {
            return "501 syntax: RCPT TO:<address>".to_string();
        };
        if tx.recipient.is_some() {
            // One reply per transaction: the client sends the others in a new one
            // (RFC 5321 4.5.3.1.10), so each gets its own 250 or 451.
            return "452 too many recipients, send the others separately".to_string();
        }
        let Some((local, domain)) = path.rsplit_once('@') else {
            return "550 no such mailbox".to_string();
        };
        if !domain.eq_ignore_ascii_case(&self.settings.domain) {
            return "550 no such mailbox".to_string();
        }
        let Some(token) = strip_prefix_ignore_case(local, "reply+") else {
            return "550 no such mailbox".to_string();
        };
        match self.key.verify_reply(token, (self.clock)()) {
            Err(LinkRefused::Malformed) => {
                tracing::info!("refused a reply address that is not one of ours");
                "550 no such mailbox: this reply address is not one we issued; write to your \
                 partner manager directly"
                    .to_string()
            }
            verified => {
                tracing::debug!(reply = ?verified.as_ref().map(|(id, _)| *id), "reply recipient accepted");
                tx.recipient = Some(verified);
                "250 OK".to_string()
            }
        }
    }

    async fn data(&mut self, read: &mut BufReader<OwnedReadHalf>) -> io::Result<DataEnd> {
        let max = self.settings.max_message_bytes;
        let mut raw = Vec::new();
        let mut too_big = false;
        let mut seen: usize = 0;
        loop {
            let idle = self.settings.idle_timeout;
            let line = match tokio::time::timeout(idle, read_line(read, MAX_TEXT_LINE)).await {
                Err(_) => return Ok(DataEnd::Idle),
                Ok(line) => line?,
            };
            let line = match line {
                Line::Eof => return Ok(DataEnd::Closed),
                Line::TooLong => {
                    too_big = true;
                    seen = seen.saturating_add(MAX_TEXT_LINE);
                    continue;
                }
                Line::Complete(l) => l,
            };
            if line == b".\r\n" || line == b".\n" {
                break;
            }
            let content = match line.strip_prefix(b".") {
                Some(rest) => rest,
                None => &line[..],
            };
            seen = seen.saturating_add(content.len());
            if seen > max {
                too_big = true;
                raw = Vec::new();
                // A client that never stops is cut off instead of read forever.
                if seen > max.saturating_mul(4) {
                    return Ok(DataEnd::WayTooBig);
                }
            }
            if !too_big {
                raw.extend_from_slice(content);
            }
        }
        if too_big {
            return Ok(DataEnd::TooBig);
        }
        Ok(DataEnd::Message(raw))
    }

    async fn deliver(&self, tx: Transaction, raw: Vec<u8>) -> String {
        let (Some(envelope_from), Some(reply_id)) = (tx.mail_from, tx.recipient) else {
            return "503 no transaction".to_string();
        };
        let parsed = parse_reply(&raw);
        let id = reply_id.as_ref().ok().map(|(id, _)| *id);
        let refused = reply_id.as_ref().err().cloned();
        let from = if parsed.from.is_empty() {
            envelope_from.clone()
        } else {
            parsed.from
        };
        let reply_value = Reply {
            reply_id,
            from,
            envelope_from,
            subject: parsed.subject,
            in_reply_to: parsed.in_reply_to,
            text: parsed.text,
            raw,
        };
        match self.receiver.received(reply_value).await {
            Ok(()) => {
                tracing::info!(reply = ?id, refused = ?refused, "reply received");
                "250 OK, received".to_string()
            }
            Err(Refusal::Transient(e)) => {
                tracing::warn!(reply = ?id, error = %e, "reply not taken, the sender will retry");
                "451 temporarily unable to take the message, try again later".to_string()
            }
            Err(Refusal::Permanent(e)) => {
                tracing::warn!(reply = ?id, error = %e, "reply refused");
                format!("554 {}", one_line(&e))
            }
        }
    }
}

enum DataEnd {
    Message(Vec<u8>),
    TooBig,
    WayTooBig,
    Closed,
    Idle,
}

fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Parses `FROM:<path> params` / `TO:<path> params`; returns the address without brackets
/// (source routes dropped) and the parameters.
fn parse_path<'a>(arg: &'a str, keyword: &str) -> Option<(String, &'a str)> {
    let rest = strip_prefix_ignore_case(arg, keyword)?.trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let mut path = &rest[..end];
    if path.starts_with('@') {
        // A source route, "@a,@b:user@domain": RFC 5321 says to ignore it.
        path = path.split_once(':').map(|(_, p)| p).unwrap_or("");
    }
    Some((path.to_string(), rest[end + 1..].trim()))
}

async fn reply(write: &mut OwnedWriteHalf, text: &str) -> io::Result<()> {
    let mut line = String::with_capacity(text.len() + 2);
    line.push_str(text);
    line.push_str("\r\n");
    write.write_all(line.as_bytes()).await?;
    write.flush().await
}

/// Reads one line (with its ending) of at most `max` bytes; a longer one is read to its end
/// and dropped.
async fn read_line(read: &mut BufReader<OwnedReadHalf>, max: usize) -> io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let available = read.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let used = chunk.len();
        if !too_long && line.len() + chunk.len() <= max {
            line.extend_from_slice(chunk);
        } else {
            too_long = true;
            line = Vec::new();
        }
        read.consume(used);
        if done {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete(line)
            });
        }
    }
}

/// What the binary needs from a received message.
struct Parsed {
    from: String,
    subject: String,
    in_reply_to: Option<String>,
    text: String,
}

fn parse_reply(raw: &[u8]) -> Parsed {
    let Some(message) = mail_parser::MessageParser::default().parse(raw) else {
        return Parsed {
            from: String::new(),
            subject: String::new(),
            in_reply_to: None,
            text: String::new(),
        };
    };
    let from = message
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .unwrap_or("")
        .to_string();
    let subject = message.subject().unwrap_or("").to_string();
    let in_reply_to = message.in_reply_to().as_text().map(str::to_string);
    let body = message
        .body_text(0)
        .map(|b| b.into_owned())
        .unwrap_or_default();
    Parsed {
        from,
        subject,
        in_reply_to,
        text: strip_quoted(&body),
    }
}

/// The new text of a reply: drops `>` quoted lines, everything from an attribution line
/// (`On <date>, <name> wrote:`, also wrapped over two lines), from `-----Original
/// Message-----`, from Outlook's `From: ... Sent: ...` header block (with or without the
/// line of underscores above it), and from a `-- ` signature delimiter; then trims.
pub fn strip_quoted(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().collect();
    let mut kept: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim();
        if starts_quote(&lines, i) {
            break;
        }
        if line == "-- " || line == "--" {
            break;
        }
        if !trimmed.starts_with('>') {
            kept.push(line.trim_end());
        }
        i += 1;
    }
    kept.join("\n").trim().to_string()
}

fn starts_quote(lines: &[&str], i: usize) -> bool {
    let trimmed = lines[i].trim();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("on ") {
        if lower.ends_with("wrote:") {
            return true;
        }
        if let Some(next) = lines.get(i + 1) {
            if next.trim().to_ascii_lowercase().ends_with("wrote:") {
                return true;
            }
        }
    }
    if lower.starts_with("-----") && lower.contains("original message") {
        return true;
    }
    let outlook_block = |from: usize| {
        lines.get(from).is_some_and(|l| {
            l.trim_start().to_ascii_lowercase().starts_with("from:")
                && lines
                    .iter()
                    .skip(from + 1)
                    .take(4)
                    .any(|l| l.trim_start().to_ascii_lowercase().starts_with("sent:"))
        })
    };
    if trimmed.len() >= 10 && trimmed.chars().all(|c| c == '_') {
        let next = lines
            .iter()
            .skip(i + 1)
            .position(|l| !l.trim().is_empty())
            .map(|p| p + i + 1);
        if next.is_some_and(outlook_block) {
            return true;
        }
    }
    outlook_block(i)
}

/// A folder where replies that cannot become notes are kept for a person to look at.
#[derive(Debug, Clone)]
pub struct Aside {
    dir: PathBuf,
}

impl Aside {
    /// Messages go to `dir` (created when first needed).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Writes the raw message as `<id>.eml` and the reason as `<id>.json`, each to a
    /// temporary file renamed into place, the JSON last: a `.json` file means its message
    /// is whole. Returns the `.eml` path.
    pub fn keep(&self, raw: &[u8], reason: &str) -> io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let id = Uuid::now_v7();
        let eml = self.dir.join(format!("{id}.eml"));
        write_atomically(&self.dir, &eml, raw)?;
        let meta = serde_json::json!({
            "reason": reason,
            "kept_at": Utc::now(),
            "bytes": raw.len(),
            "message": format!("{id}.eml"),
        });
        let meta = serde_json::to_vec_pretty(&meta).map_err(io::Error::other)?;
        write_atomically(&self.dir, &self.dir.join(format!("{id}.json")), &meta)?;
        tracing::info!(path = %eml.display(), reason, "reply kept aside");
        Ok(eml)
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_gmail_outlook_and_signatures() {
        let gmail = "Thanks, approved on our side.\n\nOn Mon, Dec 7, 2026 at 10:00 AM Desk <\nreply+x@example.com> wrote:\n> old text\n> more";
        assert_eq!(strip_quoted(gmail), "Thanks, approved on our side.");
        let outlook = "New text here\r\n\r\n________________________________\r\nFrom: Desk <d@example.com>\r\nSent: Monday\r\nTo: me\r\nSubject: x\r\n\r\nold";
        assert_eq!(strip_quoted(outlook), "New text here");
        let original = "Yes\n-----Original Message-----\nFrom: a\nold";
        assert_eq!(strip_quoted(original), "Yes");
        let sig = "Line one\n> quoted inline\nLine two\n-- \nJane\nACME";
        assert_eq!(strip_quoted(sig), "Line one\nLine two");
    }

    #[test]
    fn parses_paths() {
        assert_eq!(
            parse_path("FROM:<a@b.c> SIZE=10", "FROM:"),
            Some(("a@b.c".to_string(), "SIZE=10"))
        );
        assert_eq!(
            parse_path("to: <@r1,@r2:x@y>", "TO:"),
            Some(("x@y".to_string(), ""))
        );
        assert_eq!(parse_path("FROM:a@b", "FROM:"), None);
        assert_eq!(parse_path("FROM:<>", "FROM:"), Some((String::new(), "")));
    }
}
