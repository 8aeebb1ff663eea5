//! aiosmtpd as a child process delivering into a Maildir.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The one script that runs aiosmtpd's `Controller`: the command line
/// (`python3 -m aiosmtpd -c aiosmtpd.handlers.Mailbox DIR`) cannot require AUTH.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/smtp_server.py");

/// How long the server may take to accept connections: Python's start is slow on a busy
/// machine, but a test must fail with a reason rather than hang.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// Why the SMTP server could not be started or read.
#[derive(Debug, thiserror::Error)]
pub enum SmtpServerError {
    #[error("python3 is not installed or not on PATH ({0}): run scripts/setup")]
    NoPython(std::io::Error),
    #[error("the Python module aiosmtpd is not installed: run scripts/setup")]
    NoAiosmtpd,
    #[error("the SMTP server did not start: {0}")]
    Start(String),
    #[error("i/o on the SMTP server's files: {0}")]
    Io(#[from] std::io::Error),
    #[error("{expected} message(s) expected in the Maildir, {found} arrived within {waited:?}")]
    NotArrived {
        expected: usize,
        found: usize,
        waited: Duration,
    },
}

/// One message as aiosmtpd stored it (aiosmtpd adds `X-Peer`, `X-MailFrom`, `X-RcptTo`).
#[derive(Debug, Clone)]
pub struct Received {
    pub raw: Vec<u8>,
}

/// A running aiosmtpd on 127.0.0.1. Dropping it kills the process.
pub struct SmtpServer {
    child: Child,
    port: u16,
    maildir: PathBuf,
    ca_pem: Option<Vec<u8>>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for SmtpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpServer")
            .field("pid", &self.child.id())
            .field("port", &self.port)
            .field("maildir", &self.maildir)
            .finish()
    }
}

impl SmtpServer {
    /// Starts a server accepting any mail without authentication.
    pub fn start() -> Result<SmtpServer, SmtpServerError> {
        Self::launch(None, false)
    }

    /// Starts a server that offers STARTTLS and requires it before MAIL, with a
    /// certificate for 127.0.0.1 issued by a throwaway CA made with the `openssl` command
    /// ([`SmtpServer::ca_pem`] gives the CA for the client to trust).
    pub fn start_with_starttls() -> Result<SmtpServer, SmtpServerError> {
        Self::launch(None, true)
    }

    /// The PEM of the CA that issued the server's certificate, for a STARTTLS server.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// Starts a server that requires AUTH (PLAIN or LOGIN, allowed without TLS on
    /// loopback) and accepts only this user with this password.
    pub fn start_with_auth(user: &str, password: &str) -> Result<SmtpServer, SmtpServerError> {
        Self::launch(Some((user, password)), false)
    }

    fn launch(auth: Option<(&str, &str)>, tls: bool) -> Result<SmtpServer, SmtpServerError> {
        check_python()?;
        let mut last = String::new();
        // The port is found free and then released before Python binds it: another
        // process may take it in between, so a clash is retried with a new port.
        for _ in 0..5 {
            match Self::launch_once(auth, tls) {
                Ok(server) => return Ok(server),
                Err(SmtpServerError::Start(reason)) => last = reason,
                Err(other) => return Err(other),
            }
        }
        Err(SmtpServerError::Start(last))
    }

    fn launch_once(auth: Option<(&str, &str)>, tls: bool) -> Result<SmtpServer, SmtpServerError> {
        let dir = tempfile::tempdir()?;
        let ca_pem = if tls {
            Some(make_certificates(dir.path())?)
        } else {
            None
        };
        let maildir = dir.path().join("Maildir");
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let mut command = Command::new("python3");
        command
            .arg(SCRIPT)
            .arg("--port")
            .arg(port.to_string())
            .arg("--maildir")
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some((user, password)) = auth {
            // The password goes through the environment, not argv, so a process listing
            // does not show it.
            command
                .arg("--user")
                .arg(user)
                .env("DEALREG_SMTP_PASSWORD", password);
        }
        if tls {
            command
                .arg("--tls-cert")
                .arg(dir.path().join("cert.pem"))
                .arg("--tls-key")
                .arg(dir.path().join("key.pem"));
        }
        let child = command.spawn().map_err(SmtpServerError::NoPython)?;
        let mut server = SmtpServer {
            child,
            port,
            maildir,
            ca_pem,
            _dir: dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), SmtpServerError> {
        let started = Instant::now();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while started.elapsed() < READY_WITHIN {
            if let Some(status) = self.child.try_wait()? {
                return Err(SmtpServerError::Start(format!(
                    "aiosmtpd exited ({status}): {}",
                    self.log_tail()
                )));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && self.maildir.join("new").is_dir()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(SmtpServerError::Start(format!(
            "port {} not accepting connections after {READY_WITHIN:?}: {}",
            self.port,
            self.log_tail()
        )))
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Some(dir) = self.maildir.parent() {
            if let Ok(mut file) = std::fs::File::open(dir.join("server.log")) {
                let _ = file.read_to_string(&mut text);
            }
        }
        let start = text.len().saturating_sub(2000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].trim().to_owned()
    }

    /// The port aiosmtpd listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Maildir messages are delivered into.
    pub fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// The process id, for a test that wants to signal it itself.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every message delivered so far (`new/` and `cur/`), oldest first by file time.
    pub fn messages(&self) -> Result<Vec<Received>, SmtpServerError> {
        let mut files = Vec::new();
        for sub in ["new", "cur"] {
            let dir = self.maildir.join(sub);
            if !dir.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let modified = entry.metadata()?.modified()?;
                files.push((modified, entry.file_name(), entry.path()));
            }
        }
        files.sort();
        files
            .into_iter()
            .map(|(_, _, path)| {
                Ok(Received {
                    raw: std::fs::read(path)?,
                })
            })
            .collect()
    }

    /// Waits (polling, bounded) until at least `n` messages were delivered.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<Received>, SmtpServerError> {
        let started = Instant::now();
        loop {
            let messages = self.messages()?;
            if messages.len() >= n {
                return Ok(messages);
            }
            if started.elapsed() >= timeout {
                return Err(SmtpServerError::NotArrived {
                    expected: n,
                    found: messages.len(),
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel but never
    /// answered, as with a hung mail server.
    pub fn sigstop(&self) -> Result<(), SmtpServerError> {
        self.signal("-STOP")?;
        // Signals are delivered asynchronously: wait until the process is seen stopped,
        // or a test could be greeted in the moment between `kill` and the stop.
        self.wait_state(true);
        Ok(())
    }

    /// Waits (at most 2 s) until the process's state (Linux `/proc/PID/stat`) is or is
    /// no longer `T` (stopped). Without /proc it returns at once.
    fn wait_state(&self, stopped: bool) {
        let path = format!("/proc/{}/stat", self.child.id());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(2) {
            let Ok(stat) = std::fs::read_to_string(&path) else {
                return;
            };
            // The state follows the command name, which is in parentheses.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next());
            if (state == Some("T")) == stopped {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Thaws a server frozen by [`SmtpServer::sigstop`].
    pub fn sigcont(&self) -> Result<(), SmtpServerError> {
        self.signal("-CONT")?;
        self.wait_state(false);
        Ok(())
    }

    fn signal(&self, signal: &str) -> Result<(), SmtpServerError> {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(SmtpServerError::Start(format!(
                "kill {signal} {} failed: {status}",
                self.child.id()
            )))
        }
    }

    /// Kills the process (by its id) and waits for it.
    pub fn stop(mut self) -> Result<(), SmtpServerError> {
        self.kill()
    }

    fn kill(&mut self) -> Result<(), SmtpServerError> {
        if self.child.try_wait()?.is_none() {
            // A stopped process cannot die of SIGKILL until it is continued on some
            // systems' bookkeeping; continue it first, ignoring the outcome.
            let _ = self.signal("-CONT");
            self.child.kill()?;
            self.child.wait()?;
        }
        Ok(())
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn check_python() -> Result<(), SmtpServerError> {
    let status = Command::new("python3")
        .args(["-c", "import aiosmtpd.controller"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(SmtpServerError::NoPython)?;
    if status.success() {
        Ok(())
    } else {
        Err(SmtpServerError::NoAiosmtpd)
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, written into `dir`
/// (`cert.pem`, `key.pem`); returns the CA's PEM. Two certificates rather than one
/// self-signed: rustls (webpki) refuses a CA certificate presented as the server's own.
fn make_certificates(dir: &Path) -> Result<Vec<u8>, SmtpServerError> {
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )?;
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=dealreg test CA",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
        ],
    ];
    for args in steps {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| SmtpServerError::Start(format!("openssl is needed for STARTTLS: {e}")))?;
        if !output.status.success() {
            return Err(SmtpServerError::Start(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
    }
    Ok(std::fs::read(dir.join("ca.pem"))?)
}
