//! The NATS credentials every job uses for every NATS connection it opens: the service's
//! (`serve`), the JetStream store's and key vault's (`--store jetstream:...`, a KurrentDB
//! store's `keys=jetstream:...`) and the CRM feed's. Given once, on the command line or in
//! the environment; the secrets only in the environment (or in a URL's user part), so they
//! are never in the process list, and never printed.

use std::path::PathBuf;

use clap::Args;
use dealreg_nats_connect::{Access, Liveness};

/// The password of `--nats-user`.
pub const PASSWORD_ENV: &str = "DEALREG_NATS_PASSWORD";
/// A bearer token, for servers that authorise by token.
pub const TOKEN_ENV: &str = "DEALREG_NATS_TOKEN";

#[derive(Args, Debug, Clone, Default)]
pub struct NatsAccessArgs {
    /// A credentials file (JWT and nkey seed), for servers run with accounts in operator
    /// mode. Used by every NATS connection of the job (service, store, key vault, feed).
    #[arg(
        long = "nats-creds",
        visible_alias = "creds",
        global = true,
        env = "DEALREG_NATS_CREDS"
    )]
    pub creds: Option<PathBuf>,
    /// A file holding an nkey seed (`SU...`), for servers that list users by nkey.
    #[arg(
        long = "nats-nkey",
        visible_alias = "nkey",
        global = true,
        env = "DEALREG_NATS_NKEY"
    )]
    pub nkey: Option<PathBuf>,
    /// User name, for servers with user/password authorisation; the password comes from
    /// DEALREG_NATS_PASSWORD, so it is not in the process list.
    #[arg(
        long = "nats-user",
        visible_alias = "user",
        global = true,
        env = "DEALREG_NATS_USER"
    )]
    pub user: Option<String>,
    /// Require TLS to the server.
    #[arg(long = "nats-tls", visible_alias = "tls", global = true)]
    pub tls: bool,
    /// A CA certificate (PEM) to trust for the server's certificate.
    #[arg(long = "nats-tls-ca", visible_alias = "tls-ca", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for mutual TLS, with --nats-tls-key.
    #[arg(
        long = "nats-tls-cert",
        visible_alias = "tls-cert",
        global = true,
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    #[arg(
        long = "nats-tls-key",
        visible_alias = "tls-key",
        global = true,
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Seconds without an answer from the NATS server before a connection is dropped and
    /// another server of the list is tried (a server that froze without closing its
    /// connections is found this way).
    #[arg(long = "nats-silence-secs", global = true, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub silence_secs: u64,
}

impl NatsAccessArgs {
    /// The access every connection of this job uses, with the secrets read from the
    /// environment.
    pub fn access(&self) -> Result<Access, String> {
        let password = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty());
        let user = match (&self.user, password) {
            (Some(user), Some(password)) => Some((user.clone(), password)),
            (Some(_), None) => {
                return Err(format!(
                    "--nats-user needs the password in {PASSWORD_ENV} (not on the command line, where the process list shows it)"
                ))
            }
            (None, _) => None,
        };
        Ok(Access {
            creds: self.creds.clone(),
            nkey: self.nkey.clone(),
            user,
            token: std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
            tls: self.tls,
            tls_ca: self.tls_ca.clone(),
            tls_client: self.tls_cert.clone().zip(self.tls_key.clone()),
        })
    }

    /// How a silent server is found: a probe every third of the silence allowed.
    pub fn liveness(&self) -> Liveness {
        let silence = std::time::Duration::from_secs(self.silence_secs);
        Liveness {
            every: (silence / 3).max(std::time::Duration::from_millis(200)),
            silence,
        }
    }
}

/// The access and liveness of this process, set once at start by `main` from the command
/// line, for the places that open connections deep in a job (the store, the key vault).
static ACCESS: std::sync::OnceLock<(Access, Liveness)> = std::sync::OnceLock::new();

/// Records the job's NATS access; called once by `main` before the job runs.
pub fn set(args: &NatsAccessArgs) -> Result<(), String> {
    let access = args.access()?;
    let _ = ACCESS.set((access, args.liveness()));
    Ok(())
}

/// The job's NATS access (anonymous when `set` was not called).
pub fn access() -> Access {
    ACCESS.get().map(|(a, _)| a.clone()).unwrap_or_default()
}

/// The job's liveness settings.
pub fn liveness() -> Liveness {
    ACCESS.get().map(|(_, l)| *l).unwrap_or_default()
}
