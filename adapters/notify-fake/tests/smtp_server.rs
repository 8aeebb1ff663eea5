//! The aiosmtpd wrapper itself: it starts, receives, stops, and freezes on request.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use dealreg_notify_fake::SmtpServer;

fn smtp_session(port: u16, lines: &[&str]) -> Vec<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut answers = Vec::new();
    let read_reply = |reader: &mut BufReader<TcpStream>| {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            reply.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] == b' ' {
                break;
            }
        }
        reply
    };
    answers.push(read_reply(&mut reader));
    for line in lines {
        writer.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        // The message text after DATA gets no reply of its own; the "." that ends it does.
        if line.starts_with("Subject:") {
            continue;
        }
        answers.push(read_reply(&mut reader));
    }
    answers
}

#[test]
fn a_raw_smtp_session_lands_in_the_maildir() {
    let server = SmtpServer::start().unwrap();
    let answers = smtp_session(
        server.port(),
        &[
            "EHLO test",
            "MAIL FROM:<a@example.com>",
            "RCPT TO:<b@example.com>",
            "DATA",
            "Subject: hello\r\n\r\nbody",
            ".",
            "QUIT",
        ],
    );
    assert!(answers[0].starts_with("220"), "{answers:?}");
    assert!(
        answers
            .iter()
            .any(|a| a.starts_with("250 OK") || a.starts_with("250 Message")),
        "{answers:?}"
    );
    let messages = server.wait_for(1, Duration::from_secs(10)).unwrap();
    let raw = String::from_utf8_lossy(&messages[0].raw);
    assert!(raw.contains("Subject: hello"), "{raw}");
    let pid = server.pid();
    server.stop().unwrap();
    // Killed and reaped: no such process any more.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn auth_is_required_when_asked() {
    let server = SmtpServer::start_with_auth("u", "p").unwrap();
    let answers = smtp_session(
        server.port(),
        &["EHLO test", "MAIL FROM:<a@example.com>", "QUIT"],
    );
    assert!(answers[1].contains("AUTH"), "{answers:?}");
    assert!(answers[2].starts_with("530"), "{answers:?}");
}

#[test]
fn a_frozen_server_does_not_greet_until_thawed() {
    let server = SmtpServer::start().unwrap();
    server.sigstop().unwrap();
    let stream = TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    assert!(
        reader.read_line(&mut line).is_err(),
        "greeted while frozen: {line}"
    );
    server.sigcont().unwrap();
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("220"), "{line}");
}

#[test]
fn wait_for_reports_what_did_not_arrive() {
    let server = SmtpServer::start().unwrap();
    let error = server.wait_for(1, Duration::from_millis(100)).unwrap_err();
    assert!(
        error.to_string().contains("1 message(s) expected"),
        "{error}"
    );
}
