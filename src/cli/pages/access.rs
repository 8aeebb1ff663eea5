//! Who may come in: the users file (name, role, partner, argon2id hash), password checks,
//! and the key of partner links kept beside the users file.
//!
//! Why a file and not the log: people's passwords are not facts of the program and must
//! never be in an immutable log; the file is small, written atomically with mode 0600,
//! and read again on every login (adding a user needs no restart; removing a partner user
//! stops its links working at once, see [`Users::partner_user`]).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use dealreg_domain::{Actor, PartnerId, VendorRole};
use serde::{Deserialize, Serialize};

/// A person's role as the users file records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    ChannelManager,
    RevOps,
    Auditor,
    DirectSales,
    /// A partner's user: sees only its partner's page.
    Partner,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Ok(match s {
            "channel_manager" => Role::ChannelManager,
            "rev_ops" => Role::RevOps,
            "auditor" => Role::Auditor,
            "direct_sales" => Role::DirectSales,
            "partner" => Role::Partner,
            other => return Err(format!("unknown role `{other}`: one of channel_manager, rev_ops, auditor, direct_sales, partner")),
        })
    }
}

impl Role {
    /// The role in people's words, as the pages' header shows it.
    pub fn label(self) -> &'static str {
        match self {
            Role::ChannelManager => "channel manager",
            Role::RevOps => "RevOps",
            Role::Auditor => "auditor",
            Role::DirectSales => "direct sales",
            Role::Partner => "partner",
        }
    }

    fn vendor_role(self) -> Option<VendorRole> {
        Some(match self {
            Role::ChannelManager => VendorRole::ChannelManager,
            Role::RevOps => VendorRole::RevOps,
            Role::Auditor => VendorRole::Auditor,
            Role::DirectSales => VendorRole::DirectSales,
            Role::Partner => return None,
        })
    }
}

/// One person in the users file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// The partner a partner user acts for (required for `partner`, absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<uuid::Uuid>,
    /// argon2id PHC string (`$argon2id$v=19$...`); absent for a partner user who comes
    /// in by signed link only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
}

impl User {
    /// Whom the engine sees acting for this person.
    pub fn actor(&self) -> Option<Actor> {
        match (self.role.vendor_role(), self.partner_id) {
            (Some(role), _) => Some(Actor::Vendor {
                role,
                user: self.name.clone(),
            }),
            (None, Some(p)) => Some(Actor::Partner {
                partner_id: PartnerId(p),
                user: self.name.clone(),
            }),
            (None, None) => None,
        }
    }
}

/// The users file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Users {
    #[serde(default, rename = "user")]
    pub users: Vec<User>,
}

impl Users {
    /// Reads the file (a missing one is an empty list).
    pub fn read(path: &Path) -> Result<Users, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                toml::from_str(&text).map_err(|e| format!("users file {}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Users::default()),
            Err(e) => Err(format!("cannot read users file {}: {e}", path.display())),
        }
    }

    /// Writes the file atomically (a temporary file, mode 0600, renamed into place).
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let io = |e: std::io::Error| format!("cannot write users file {}: {e}", path.display());
        // tempfile creates the file with mode 0600 on unix.
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
        tmp.write_all(text.as_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    pub fn find(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The partner user `name` of `partner`, if the file still has them: a link names
    /// both, and a link of a removed user (or one moved to another partner) stops working.
    pub fn partner_user(&self, name: &str, partner: uuid::Uuid) -> Option<&User> {
        self.find(name)
            .filter(|u| u.role == Role::Partner && u.partner_id == Some(partner))
    }
}

/// The argon2id hash of `password` with a fresh random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing the password failed: {e}"))
}

/// Whether `password` matches the PHC string `hash` (constant time in argon2's check).
/// CPU-heavy by design: call it on the blocking pool.
pub fn password_matches(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of nothing anyone knows, checked when the user name is unknown so an unknown
/// name takes as long as a wrong password (no user enumeration by timing).
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password("decoy password nobody has").unwrap_or_else(|_| {
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0000000000000000000000000000000000000000000".into()
        })
    })
}

/// The partner links' key file: `<users file>.key`.
pub fn link_key_path(users: &Path) -> PathBuf {
    let mut name = users.as_os_str().to_owned();
    name.push(".key");
    PathBuf::from(name)
}

/// Loads (or creates, 0600) the partner links' key beside the users file.
pub fn link_key(users: &Path) -> Result<Arc<dealreg_actions::LinkKey>, String> {
    dealreg_actions::LinkKey::load_or_create(&link_key_path(users))
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// The action name of partner page links.
pub const PARTNER_PAGE: &str = "partner_page";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_wrong_passwords_do_not() {
        let hash = hash_password("correct horse").unwrap_or_default();
        assert!(hash.starts_with("$argon2id$"));
        assert!(password_matches("correct horse", &hash));
        assert!(!password_matches("wrong", &hash));
        assert!(!password_matches("x", "not a hash"));
    }
}
