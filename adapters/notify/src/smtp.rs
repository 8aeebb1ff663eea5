//! E-mail over SMTP with lettre.

use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox as LettreMailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::{CarrierError, Secret};

/// A display name and an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

impl Mailbox {
    pub fn new(name: impl Into<String>, address: impl Into<String>) -> Self {
        Mailbox {
            name: Some(name.into()),
            address: address.into(),
        }
    }

    fn to_lettre(&self, role: &str) -> Result<LettreMailbox, CarrierError> {
        let address = self.address.parse().map_err(|e| {
            CarrierError::permanent(format!("invalid {role} address {:?}: {e}", self.address))
        })?;
        Ok(LettreMailbox::new(self.name.clone(), address))
    }
}

/// One e-mail to one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// Stable per alert and recipient, without angle brackets (e.g. `a1b2@dealreg`): a
    /// resend carries the same Message-ID so a mail client or the receiver can recognise
    /// it as the same message.
    pub message_id: String,
    pub from: Mailbox,
    pub to: Mailbox,
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    /// The text/plain part.
    pub text: String,
    /// The text/html part; with it the message is multipart/alternative.
    pub html: Option<String>,
    /// Extra headers, e.g. `("X-Dealreg-Alert", "registration_approved")`.
    pub headers: Vec<(String, String)>,
}

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain SMTP: for loopback tests only; credentials travel in clear.
    None,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Where and how to send e-mail.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// User name and password, when the server requires AUTH.
    pub credentials: Option<(String, Secret)>,
    /// Bounds connecting and the whole exchange of one send: a hung server (accepting
    /// connections but never answering) becomes a Transient error. lettre's own timeout
    /// alone did not end a send to a frozen server in our test, hence the outer bound.
    pub timeout: Duration,
    /// A PEM certificate to trust besides the public roots (webpki-roots): a private CA,
    /// or a test server's. `None` for public mail services.
    pub extra_root_pem: Option<Vec<u8>>,
}

/// Sends [`Email`]s through one SMTP server.
pub struct SmtpCarrier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// Plain SMTP and STARTTLS sessions are driven here on a socket with `TCP_NODELAY`
    /// ([`SmtpCarrier::send`] says why); implicit TLS goes through `transport`.
    session: Option<Session>,
    password: Option<Secret>,
    timeout: Duration,
}

/// What a session needs: where, whether to upgrade with STARTTLS, who logs in.
struct Session {
    host: String,
    port: u16,
    starttls: Option<TlsParameters>,
    credentials: Option<Credentials>,
}

impl std::fmt::Debug for SmtpCarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpCarrier").finish_non_exhaustive()
    }
}

impl SmtpCarrier {
    /// Builds the transport; no connection is made until the first send.
    pub fn new(settings: SmtpSettings) -> Result<Self, CarrierError> {
        let (tls, starttls) = match settings.security {
            Security::None => (Tls::None, None),
            Security::StartTls => {
                let parameters = tls_parameters(&settings)?;
                (Tls::Required(parameters.clone()), Some(parameters))
            }
            Security::Tls => (Tls::Wrapper(tls_parameters(&settings)?), None),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .tls(tls)
            .timeout(Some(settings.timeout));
        let mut password = None;
        if let Some((user, secret)) = &settings.credentials {
            builder =
                builder.credentials(Credentials::new(user.clone(), secret.expose().to_owned()));
            password = Some(secret.clone());
        }
        let session = (settings.security != Security::Tls).then(|| Session {
            host: settings.host.clone(),
            port: settings.port,
            starttls,
            credentials: settings
                .credentials
                .as_ref()
                .map(|(user, secret)| Credentials::new(user.clone(), secret.expose().to_owned())),
        });
        Ok(SmtpCarrier {
            transport: builder.build(),
            session,
            password,
            timeout: settings.timeout,
        })
    }

    /// Sends one e-mail. An invalid address or header is Permanent without any
    /// connection being made.
    ///
    /// Why plain and STARTTLS sessions are driven here on a `TCP_NODELAY` socket: lettre
    /// writes the message and its final `.` in two writes without reading between them,
    /// so on a socket with Nagle's algorithm the second waits for the server's delayed
    /// acknowledgement of the first (40 ms on Linux): measured, 48 ms a message to
    /// aiosmtpd on loopback against 3 ms from Python's smtplib to the same server
    /// (benches/README.md, `notifier`).
    pub async fn send(&self, email: &Email) -> Result<(), CarrierError> {
        let recipient: Vec<&str> = std::iter::once(email.to.address.as_str())
            .chain(email.to.name.as_deref())
            .collect();
        let message = build_message(email).map_err(|e| e.without(&recipient))?;
        let sent = match &self.session {
            Some(session) => tokio::time::timeout(self.timeout, session.send(&message)).await,
            None => {
                tokio::time::timeout(self.timeout, async {
                    self.transport
                        .send(message)
                        .await
                        .map_err(SessionFailure::Smtp)
                })
                .await
            }
        };
        let Ok(sent) = sent else {
            let error = CarrierError::transient(format!(
                "the SMTP server did not complete the exchange within {:?}",
                self.timeout
            ));
            tracing::warn!(message_id = %email.message_id, %error, "e-mail not sent");
            return Err(error);
        };
        match sent {
            Ok(response) => {
                tracing::debug!(message_id = %email.message_id, code = %response.code(), "e-mail accepted by the SMTP server");
                Ok(())
            }
            Err(failure) => {
                let classified = match failure {
                    SessionFailure::Smtp(error) => self.classify(&error),
                    // Refused, reset, unreachable: the server may be back later.
                    SessionFailure::Connect(error) => {
                        CarrierError::transient(format!("cannot reach the SMTP server: {error}"))
                    }
                }
                .without(&recipient);
                tracing::warn!(message_id = %email.message_id, error = %classified, "e-mail not sent");
                Err(classified)
            }
        }
    }

    fn classify(&self, error: &lettre::transport::smtp::Error) -> CarrierError {
        let mut reason = error.to_string();
        if let Some(source) = std::error::Error::source(error) {
            let source = source.to_string();
            if !reason.contains(&source) {
                reason = format!("{reason}: {source}");
            }
        }
        if let Some(password) = &self.password {
            reason = password.scrub(&reason);
        }
        // 5xx answers (including 535 for refused credentials) and client-side errors
        // (a message lettre cannot send) will fail the same way again; 4xx answers,
        // refused connections, timeouts and TLS trouble may pass later.
        if error.is_permanent() || error.is_client() {
            CarrierError::permanent(reason)
        } else {
            CarrierError::transient(reason)
        }
    }
}

/// Why a session failed: before SMTP (the socket), or in it.
enum SessionFailure {
    Connect(std::io::Error),
    Smtp(lettre::transport::smtp::Error),
}

impl Session {
    /// One SMTP session: connect, EHLO, STARTTLS (and EHLO again), AUTH, the message,
    /// QUIT.
    async fn send(
        &self,
        message: &Message,
    ) -> Result<lettre::transport::smtp::response::Response, SessionFailure> {
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(SessionFailure::Connect)?;
        stream.set_nodelay(true).map_err(SessionFailure::Connect)?;
        let hello = ClientId::default();
        let mut connection = AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello)
            .await
            .map_err(SessionFailure::Smtp)?;
        if let Some(parameters) = &self.starttls {
            connection
                .starttls(parameters.clone(), &hello)
                .await
                .map_err(SessionFailure::Smtp)?;
        }
        if let Some(credentials) = &self.credentials {
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(SessionFailure::Smtp)?;
        }
        let response = connection
            .send(message.envelope(), &message.formatted())
            .await
            .map_err(SessionFailure::Smtp)?;
        // The message is accepted; a QUIT that fails changes nothing.
        let _ = connection.quit().await;
        Ok(response)
    }
}

fn tls_parameters(settings: &SmtpSettings) -> Result<TlsParameters, CarrierError> {
    let host = &settings.host;
    let invalid = |e: lettre::transport::smtp::Error| {
        CarrierError::permanent(format!("TLS settings for {host}: {e}"))
    };
    let mut builder = TlsParameters::builder(host.clone());
    if let Some(pem) = &settings.extra_root_pem {
        builder = builder.add_root_certificate(Certificate::from_pem(pem).map_err(invalid)?);
    }
    builder.build_rustls().map_err(invalid)
}

fn build_message(email: &Email) -> Result<Message, CarrierError> {
    // Subjects come from templates filled with partner data: a line break there would
    // otherwise be an attempt at header injection. lettre encodes, we also flatten.
    let subject = email.subject.replace(['\r', '\n'], " ");
    let mut builder = Message::builder()
        .message_id(Some(format!(
            "<{}>",
            email.message_id.trim_matches(['<', '>'])
        )))
        .from(email.from.to_lettre("From")?)
        .to(email.to.to_lettre("To")?)
        .subject(subject);
    if let Some(reply_to) = &email.reply_to {
        builder = builder.reply_to(reply_to.to_lettre("Reply-To")?);
    }
    for (name, value) in &email.headers {
        let header = HeaderName::new_from_ascii(name.clone())
            .map_err(|e| CarrierError::permanent(format!("invalid header name {name:?}: {e}")))?;
        builder = builder.raw_header(HeaderValue::new(header, value.replace(['\r', '\n'], " ")));
    }
    let built = match &email.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            email.text.clone(),
            html.clone(),
        )),
        None => builder.singlepart(SinglePart::plain(email.text.clone())),
    };
    built.map_err(|e| CarrierError::permanent(format!("e-mail could not be built: {e}")))
}
