//! `dealreg users add|link`: the users file of the pages (`serve --http --users FILE`) and
//! partners' signed page links.
//!
//! A password is read from stdin, never from the command line (argv is visible to every
//! user of the machine in `ps`); a link token is written to a file with mode 0600 and
//! never printed, since whoever holds it is the partner user until it expires.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::pages::access::{self, Role, User, Users, PARTNER_PAGE};

#[derive(Subcommand)]
pub enum UsersJob {
    /// Add a user (or replace its role and password), reading the password from stdin.
    Add {
        /// The users file (TOML; created with mode 0600 when missing).
        #[arg(long)]
        file: PathBuf,
        /// The person's user name (`--name`: `--user` is the global alias of --nats-user).
        #[arg(long)]
        name: String,
        /// channel_manager, rev_ops, auditor, direct_sales or partner.
        #[arg(long)]
        role: Role,
        /// The partner a `partner` user acts for.
        #[arg(long)]
        partner: Option<uuid::Uuid>,
    },
    /// Write a signed link to a partner user's page into --out (mode 0600); prints the
    /// file, the link's id and its expiry, never the link.
    Link {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        partner: uuid::Uuid,
        /// The person's user name (`--name`: `--user` is the global alias of --nats-user).
        #[arg(long)]
        name: String,
        /// Hours the link stays valid.
        #[arg(long, default_value_t = 72)]
        hours: u32,
        /// Where the pages are reached, e.g. http://127.0.0.1:8080.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base: String,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(job: UsersJob) -> Result<ExitCode, String> {
    match job {
        UsersJob::Add {
            file,
            name,
            role,
            partner,
        } => add(&file, &name, role, partner),
        UsersJob::Link {
            file,
            partner,
            name,
            hours,
            base,
            out,
        } => link(&file, partner, &name, hours, &base, &out),
    }
}

fn add(
    file: &Path,
    name: &str,
    role: Role,
    partner: Option<uuid::Uuid>,
) -> Result<ExitCode, String> {
    match (role, partner) {
        (Role::Partner, None) => return Err("a partner user needs --partner UUID".into()),
        (Role::Partner, Some(_)) => {}
        (_, Some(_)) => return Err("--partner is for partner users only".into()),
        _ => {}
    }
    if name.trim().is_empty() {
        return Err("--name is empty".into());
    }
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err("the password (read from stdin) is empty".into());
    }
    let hash = access::hash_password(password)?;
    let mut users = Users::read(file)?;
    users.users.retain(|u| u.name != name);
    users.users.push(User {
        name: name.to_string(),
        role,
        partner_id: partner,
        password_hash: Some(hash),
    });
    users.write(file)?;
    println!("{name} ({role:?}) written to {}", file.display());
    Ok(ExitCode::SUCCESS)
}

fn link(
    file: &Path,
    partner: uuid::Uuid,
    name: &str,
    hours: u32,
    base: &str,
    out: &Path,
) -> Result<ExitCode, String> {
    let users = Users::read(file)?;
    if users.partner_user(name, partner).is_none() {
        return Err(format!(
            "{} has no partner user {name} of partner {partner}; add it first (dealreg users add)",
            file.display()
        ));
    }
    let key = access::link_key(file)?;
    let expires_at = chrono::Utc::now() + chrono::Duration::hours(i64::from(hours));
    let actor = serde_json::json!({ "kind": "partner", "partner_id": partner, "user": name });
    let link = dealreg_actions::Link::new(PARTNER_PAGE, serde_json::Map::new(), actor, expires_at);
    let token = key.sign(&link);
    let url = format!("{}/p/{token}\n", base.trim_end_matches('/'));
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let io = |e: std::io::Error| format!("cannot write {}: {e}", out.display());
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
    tmp.write_all(url.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(out).map_err(|e| io(e.error))?;
    println!(
        "link written to {} (link {}, expires {} UTC)",
        out.display(),
        link.id,
        expires_at.format("%Y-%m-%d %H:%M")
    );
    Ok(ExitCode::SUCCESS)
}
