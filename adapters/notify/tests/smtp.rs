//! The SMTP carrier against a real SMTP server: aiosmtpd on loopback
//! (dealreg-notify-fake), messages read back from its Maildir with mail-parser.

use std::time::{Duration, Instant};

use dealreg_notify::{CarrierError, Email, Mailbox, Secret, Security, SmtpCarrier, SmtpSettings};
use dealreg_notify_fake::SmtpServer;
use mail_parser::{MessageParser, MimeHeaders};

fn settings(port: u16, credentials: Option<(&str, &str)>) -> SmtpSettings {
    SmtpSettings {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        credentials: credentials.map(|(u, p)| (u.to_owned(), Secret::new(p))),
        timeout: Duration::from_secs(5),
        extra_root_pem: None,
    }
}

fn email() -> Email {
    Email {
        message_id: "0190a1b2c3d4-cm-7@dealreg".into(),
        from: Mailbox::new("Partner Program", "alerts@dealreg.example"),
        to: Mailbox::new("Jörg Müller", "joerg@partner.example"),
        reply_to: Some(Mailbox::new("Channel team", "channel@vendor.example")),
        subject: "Approved: your registration for Müller & Söhne".into(),
        text: "Hello Jörg,\n\nYour registration was approved.\n".into(),
        html: Some("<p>Hello J&ouml;rg,</p><p>Your registration was <b>approved</b>.</p>".into()),
        headers: vec![
            ("X-Dealreg-Alert".into(), "registration_approved".into()),
            ("X-Dealreg-Registration".into(), "reg-42".into()),
        ],
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multipart_email_arrives_with_every_header_and_both_parts() {
    let server = SmtpServer::start().unwrap();
    let carrier = SmtpCarrier::new(settings(server.port(), None)).unwrap();
    let sent = email();
    carrier.send(&sent).await.unwrap();

    let messages = server.wait_for(1, Duration::from_secs(10)).unwrap();
    assert_eq!(messages.len(), 1);
    let parsed = MessageParser::default().parse(&messages[0].raw).unwrap();
    let from = parsed.from().unwrap().first().unwrap();
    assert_eq!(from.address(), Some("alerts@dealreg.example"));
    assert_eq!(from.name(), Some("Partner Program"));
    let to = parsed.to().unwrap().first().unwrap();
    assert_eq!(to.address(), Some("joerg@partner.example"));
    assert_eq!(to.name(), Some("Jörg Müller"));
    let reply_to = parsed.reply_to().unwrap().first().unwrap();
    assert_eq!(reply_to.address(), Some("channel@vendor.example"));
    assert_eq!(parsed.subject(), Some(sent.subject.as_str()));
    assert_eq!(parsed.message_id(), Some("0190a1b2c3d4-cm-7@dealreg"));
    let content_type = parsed.content_type().unwrap();
    assert_eq!(content_type.ctype(), "multipart");
    assert_eq!(content_type.subtype(), Some("alternative"));
    assert_eq!(parsed.text_body_count(), 1);
    assert_eq!(parsed.html_body_count(), 1);
    assert_eq!(
        parsed.body_text(0).unwrap().trim_end(),
        sent.text.trim_end()
    );
    assert_eq!(
        parsed.body_html(0).unwrap().trim_end(),
        sent.html.as_deref().unwrap()
    );
    assert_eq!(
        parsed.header("X-Dealreg-Alert").unwrap().as_text(),
        Some("registration_approved")
    );
    assert_eq!(
        parsed.header("X-Dealreg-Registration").unwrap().as_text(),
        Some("reg-42")
    );
    server.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_text_only_email_is_a_single_plain_part_and_a_resend_keeps_its_message_id() {
    let server = SmtpServer::start().unwrap();
    let carrier = SmtpCarrier::new(settings(server.port(), None)).unwrap();
    let mut sent = email();
    sent.html = None;
    sent.reply_to = None;
    carrier.send(&sent).await.unwrap();
    carrier.send(&sent).await.unwrap();

    let messages = server.wait_for(2, Duration::from_secs(10)).unwrap();
    for message in &messages {
        let parsed = MessageParser::default().parse(&message.raw).unwrap();
        assert_eq!(parsed.content_type().unwrap().ctype(), "text");
        assert_eq!(parsed.message_id(), Some("0190a1b2c3d4-cm-7@dealreg"));
        assert!(parsed.reply_to().is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_line_break_in_the_subject_cannot_add_a_header() {
    let server = SmtpServer::start().unwrap();
    let carrier = SmtpCarrier::new(settings(server.port(), None)).unwrap();
    let mut sent = email();
    sent.subject = "Approved\r\nBcc: attacker@evil.example".into();
    carrier.send(&sent).await.unwrap();
    let messages = server.wait_for(1, Duration::from_secs(10)).unwrap();
    let parsed = MessageParser::default().parse(&messages[0].raw).unwrap();
    assert!(parsed.bcc().is_none());
    assert_eq!(
        parsed.subject(),
        Some("Approved  Bcc: attacker@evil.example")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_right_credentials_are_accepted_by_a_server_that_requires_auth() {
    let server = SmtpServer::start_with_auth("dealreg", "correct horse").unwrap();
    let carrier =
        SmtpCarrier::new(settings(server.port(), Some(("dealreg", "correct horse")))).unwrap();
    carrier.send(&email()).await.unwrap();
    assert_eq!(
        server.wait_for(1, Duration::from_secs(10)).unwrap().len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_login_is_permanent_and_does_not_name_the_password() {
    let server = SmtpServer::start_with_auth("dealreg", "correct horse").unwrap();
    let password = "wrong-battery-staple-4711";
    let carrier = SmtpCarrier::new(settings(server.port(), Some(("dealreg", password)))).unwrap();
    let error = carrier.send(&email()).await.unwrap_err();
    assert!(matches!(error, CarrierError::Permanent { .. }), "{error:?}");
    assert!(!error.to_string().contains(password), "{error}");
    assert!(!format!("{error:?}").contains(password), "{error:?}");
    assert!(server.messages().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sending_without_credentials_to_a_server_that_requires_auth_is_permanent() {
    let server = SmtpServer::start_with_auth("dealreg", "correct horse").unwrap();
    let carrier = SmtpCarrier::new(settings(server.port(), None)).unwrap();
    let error = carrier.send(&email()).await.unwrap_err();
    assert!(matches!(error, CarrierError::Permanent { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_port_is_transient() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let carrier = SmtpCarrier::new(settings(port, Some(("dealreg", "s3cret-pw")))).unwrap();
    let error = carrier.send(&email()).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(!error.to_string().contains("s3cret-pw"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_server_is_transient_within_the_timeout() {
    let server = SmtpServer::start().unwrap();
    let mut frozen = settings(server.port(), None);
    frozen.timeout = Duration::from_secs(1);
    let carrier = SmtpCarrier::new(frozen).unwrap();
    server.sigstop().unwrap();
    let started = Instant::now();
    let error = carrier.send(&email()).await.unwrap_err();
    let waited = started.elapsed();
    server.sigcont().unwrap();
    assert!(error.is_transient(), "{error:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_address_is_permanent_before_any_connection() {
    let carrier = SmtpCarrier::new(settings(1, None)).unwrap();
    let mut bad = email();
    bad.to.address = "not an address".into();
    let error = carrier.send(&bad).await.unwrap_err();
    assert!(matches!(error, CarrierError::Permanent { .. }), "{error:?}");
    // The recipient's address is personal data: the error (logged, kept as a dead
    // letter) names it only as <recipient>.
    let shown = error.to_string();
    assert!(!shown.contains("not an address"), "{shown}");
    assert!(shown.contains("<recipient>"), "{shown}");
}

#[test]
fn settings_debug_does_not_show_the_password() {
    let shown = format!("{:?}", settings(25, Some(("dealreg", "pa55word"))));
    assert!(!shown.contains("pa55word"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_with_the_servers_ca_delivers_and_without_it_is_refused() {
    let server = SmtpServer::start_with_starttls().unwrap();
    let mut tls = settings(server.port(), None);
    tls.security = Security::StartTls;
    tls.extra_root_pem = Some(server.ca_pem().unwrap().to_vec());
    SmtpCarrier::new(tls.clone())
        .unwrap()
        .send(&email())
        .await
        .unwrap();
    assert_eq!(
        server.wait_for(1, Duration::from_secs(10)).unwrap().len(),
        1
    );

    // An untrusted certificate: the send fails, and nothing arrives.
    tls.extra_root_pem = None;
    let error = SmtpCarrier::new(tls)
        .unwrap()
        .send(&email())
        .await
        .unwrap_err();
    // Reported Transient: lettre gives TLS trouble one kind, and a handshake can fail
    // for passing reasons too; the notifier's retry limit ends it.
    assert!(error.is_transient(), "{error:?}");
    assert!(
        error.to_string().to_lowercase().contains("certificate")
            || error.to_string().contains("tls"),
        "{error}"
    );
    // Plain SMTP to a server that requires STARTTLS is refused before MAIL.
    let error = SmtpCarrier::new(settings(server.port(), None))
        .unwrap()
        .send(&email())
        .await
        .unwrap_err();
    assert!(matches!(error, CarrierError::Permanent { .. }), "{error:?}");
    assert_eq!(server.messages().unwrap().len(), 1);
}
