//! Signed action links and compact signed reply addresses.
//!
//! A link is the whole authority to act: whoever holds the token can act as the link's
//! actor, once (the link id is the idempotency key), until it expires. So the token is
//! signed with HMAC-SHA256 under a key only this deployment holds, verified in constant
//! time, and never written to a log, an error or a `Debug` output.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, TimeZone, Utc};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Tokens longer than this are refused before any decoding, so a crafted URL cannot make
/// the server decode or parse an arbitrarily large payload.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The version prefix of link tokens: a later key (rotation) gets "v2." and both can be
/// verified side by side during the change-over.
const LINK_VERSION: &str = "v1.";

/// Domain separation: a reply MAC is computed over this prefix and the compact payload, so a
/// reply token's MAC can never be replayed as a link's and the other way round.
const REPLY_CONTEXT: &[u8] = b"dealreg-reply-v1\0";

/// Bytes of the HMAC kept in a reply address (80 bits): the local part of an address has
/// room for 64 octets only, and 80 bits is far beyond what an online guesser can try.
const REPLY_MAC_LEN: usize = 10;

/// 16 bytes of link id, 4 bytes of expiry (minutes since the epoch), then the MAC.
const REPLY_LEN: usize = 16 + 4 + REPLY_MAC_LEN;

/// One action for one person: what the link lets its holder do, and until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// UUID v7; the idempotency key the action runs under: a link used twice has one effect.
    pub id: Uuid,
    /// What the link does, e.g. `approve_registration`, `decline_registration`.
    pub action: String,
    /// What the link fixes (account, registration id, announcement id ...): the form may
    /// add inputs (a reason), never change these.
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Who acts (the binary puts its Actor JSON here).
    pub actor: serde_json::Value,
    /// After this instant the link is refused as expired.
    pub expires_at: DateTime<Utc>,
}

impl Link {
    /// A new link with a fresh v7 id.
    pub fn new(
        action: impl Into<String>,
        fields: serde_json::Map<String, serde_json::Value>,
        actor: serde_json::Value,
        expires_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            action: action.into(),
            fields,
            actor,
            expires_at,
        }
    }
}

/// Why a link (or a reply address) was not honoured. The texts are written for the person
/// who clicked: what happened, that nothing was done, and what to do next. A tampered token
/// and a token signed with another key give the same answer, so the page tells an attacker
/// nothing about which keys exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefused {
    /// Not shaped like one of our tokens at all (cut off, too long, unknown version).
    #[error(
        "This link is incomplete or damaged; it may have been cut off when the e-mail was \
         wrapped or copied. Nothing was done. Open the link again from the original e-mail, \
         or ask your partner manager for a new link."
    )]
    Malformed,
    /// Shaped like a token but its signature does not match: changed, or signed with a key
    /// that is no longer in use.
    #[error(
        "This link could not be verified: it was changed after it was sent, or it is no \
         longer valid. Nothing was done. Ask your partner manager for a new link."
    )]
    Tampered,
    /// Genuine but past its expiry.
    #[error(
        "This link expired on {} UTC. Nothing was done. Ask your partner manager for a new \
         link.", expired_at.format("%Y-%m-%d %H:%M")
    )]
    Expired {
        /// When the link stopped being valid.
        expired_at: DateTime<Utc>,
    },
}

/// Failures of loading or creating the key file. The key's bytes are never part of these.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The key file could not be read, created or renamed into place.
    #[error("link key file {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: std::io::Error,
    },
    /// The key file exists but does not hold a key (wrong length or not base64url).
    #[error("link key file {path} does not hold a 32-byte base64url key: {reason}")]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it (never its content).
        reason: String,
    },
    /// The system's random generator failed.
    #[error("the system random generator failed")]
    Random,
}

/// The signing key of links and reply addresses: 32 random bytes.
pub struct LinkKey {
    key: hmac::Key,
}

impl fmt::Debug for LinkKey {
    /// Never the bytes: a key in a log is a key given away.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkKey(<redacted>)")
    }
}

impl LinkKey {
    /// A fresh random key.
    ///
    /// # Panics
    /// Only if the operating system's random generator fails, which leaves nothing sensible
    /// to do; [`LinkKey::try_generate`] reports it instead.
    #[allow(clippy::expect_used)]
    pub fn generate() -> Self {
        Self::try_generate().expect("the system random generator failed")
    }

    /// A fresh random key, reporting a failing random generator.
    pub fn try_generate() -> Result<Self, LinkError> {
        let bytes = random_key_bytes()?;
        Ok(Self::from_bytes(&bytes))
    }

    /// A key from its 32 bytes (tests, or keys kept elsewhere).
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        }
    }

    /// Loads the key file, or creates it when missing: written to a temporary file in the
    /// same directory (mode 0600 on unix from its creation) and then linked into place
    /// without overwriting, so a half-written key is never read and two processes starting
    /// together end up with the same key (the loser reads the winner's).
    pub fn load_or_create(path: &Path) -> Result<Self, LinkError> {
        let io = |source| LinkError::Io {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => return Self::parse_file(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let bytes = random_key_bytes()?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        // tempfile creates the file with mode 0600 on unix.
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
        let mut text = URL_SAFE_NO_PAD.encode(bytes);
        text.push('\n');
        tmp.write_all(text.as_bytes()).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        match tmp.persist_noclobber(path) {
            Ok(_) => {
                tracing::info!(path = %path.display(), "created a new link signing key");
                Ok(Self::from_bytes(&bytes))
            }
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(io)?;
                Self::parse_file(path, &text)
            }
            Err(e) => Err(io(e.error)),
        }
    }

    fn parse_file(path: &Path, text: &str) -> Result<Self, LinkError> {
        let bad = |reason: &str| LinkError::BadKeyFile {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let decoded = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| bad("not base64url"))?;
        let bytes: [u8; 32] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| bad("not 32 bytes long"))?;
        Ok(Self::from_bytes(&bytes))
    }

    /// The link's token: `v1.` + base64url(JSON payload) + `.` + base64url(HMAC-SHA256 over
    /// everything before the last dot, version included).
    pub fn sign(&self, link: &Link) -> String {
        // Serializing a plain struct of JSON values cannot fail; an empty payload would
        // only produce a token that verifies as Malformed, never a wrong action.
        let payload = serde_json::to_vec(link).unwrap_or_default();
        let mut token = String::with_capacity(payload.len() * 4 / 3 + 64);
        token.push_str(LINK_VERSION);
        token.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let tag = hmac::sign(&self.key, token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
        token
    }

    /// Checks a token and returns its link. Anything shaped like a token whose signature
    /// does not match (including undecodable parts) is `Tampered`; a token that is not
    /// shaped like one, or longer than [`MAX_TOKEN_LEN`], is `Malformed`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Link, LinkRefused> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(LinkRefused::Malformed);
        }
        let rest = token
            .strip_prefix(LINK_VERSION)
            .ok_or(LinkRefused::Malformed)?;
        let (payload_b64, mac_b64) = rest.split_once('.').ok_or(LinkRefused::Malformed)?;
        if payload_b64.is_empty() || mac_b64.is_empty() || mac_b64.contains('.') {
            return Err(LinkRefused::Malformed);
        }
        let mac = URL_SAFE_NO_PAD
            .decode(mac_b64)
            .map_err(|_| LinkRefused::Tampered)?;
        let signed = &token[..LINK_VERSION.len() + payload_b64.len()];
        hmac::verify(&self.key, signed.as_bytes(), &mac).map_err(|_| LinkRefused::Tampered)?;
        // Past this point the payload is ours: a decoding failure means we signed
        // something we cannot read (a newer format), not an attack.
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| LinkRefused::Malformed)?;
        let link: Link = serde_json::from_slice(&payload).map_err(|_| LinkRefused::Malformed)?;
        if now >= link.expires_at {
            return Err(LinkRefused::Expired {
                expired_at: link.expires_at,
            });
        }
        Ok(link)
    }

    /// A compact signed token for a reply address (`reply+<token>@domain`): 16 bytes of
    /// link id, 4 bytes of expiry in whole minutes since the epoch (rounded up), 10 bytes of
    /// HMAC, in lowercase base32 without padding: 48 characters, so `reply+` and the token
    /// fit the 64 octets RFC 5321 allows a local part, and servers that change the case of
    /// the local part do not break it.
    pub fn sign_reply(&self, id: Uuid, expires_at: DateTime<Utc>) -> String {
        let secs = expires_at.timestamp();
        let minutes = secs.div_euclid(60) + i64::from(secs.rem_euclid(60) != 0);
        let minutes = u32::try_from(minutes.max(0)).unwrap_or(u32::MAX);
        let mut bytes = [0u8; REPLY_LEN];
        bytes[..16].copy_from_slice(id.as_bytes());
        bytes[16..20].copy_from_slice(&minutes.to_be_bytes());
        let tag = self.reply_tag(&bytes[..20]);
        bytes[20..].copy_from_slice(&tag.as_ref()[..REPLY_MAC_LEN]);
        base32_encode(&bytes)
    }

    /// Checks a reply token (the part after `reply+`); returns the link id and the expiry
    /// (to the minute). Letters may come in either case.
    pub fn verify_reply(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(Uuid, DateTime<Utc>), LinkRefused> {
        if token.len() != base32_len(REPLY_LEN) {
            return Err(LinkRefused::Malformed);
        }
        let bytes = base32_decode(token).ok_or(LinkRefused::Malformed)?;
        if bytes.len() != REPLY_LEN {
            return Err(LinkRefused::Malformed);
        }
        let tag = self.reply_tag(&bytes[..20]);
        if !constant_time_eq(&tag.as_ref()[..REPLY_MAC_LEN], &bytes[20..]) {
            return Err(LinkRefused::Tampered);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[..16]);
        let mut minutes = [0u8; 4];
        minutes.copy_from_slice(&bytes[16..20]);
        let minutes = i64::from(u32::from_be_bytes(minutes));
        let expires_at = Utc
            .timestamp_opt(minutes * 60, 0)
            .single()
            .ok_or(LinkRefused::Malformed)?;
        if now >= expires_at {
            return Err(LinkRefused::Expired {
                expired_at: expires_at,
            });
        }
        Ok((Uuid::from_bytes(id), expires_at))
    }

    fn reply_tag(&self, payload: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(REPLY_CONTEXT);
        ctx.update(payload);
        ctx.sign()
    }
}

fn random_key_bytes() -> Result<[u8; 32], LinkError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| LinkError::Random)?;
    Ok(bytes)
}

/// Compares without an early exit, so the time taken says nothing about how many leading
/// bytes of a guessed MAC were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

fn base32_len(bytes: usize) -> usize {
    (bytes * 8).div_ceil(5)
}

/// RFC 4648 base32, lowercase, without padding.
fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(base32_len(data.len()));
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in data {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decodes [`base32_encode`]'s output, either case; `None` on any other character or on
/// non-zero trailing bits (so each token has exactly one spelling, case aside).
fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c.to_ascii_lowercase() {
            c @ b'a'..=b'z' => c - b'a',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    if bits > 0 && buffer & ((1 << bits) - 1) != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_round_trip() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = base32_encode(&data);
            assert_eq!(text.len(), base32_len(len));
            assert_eq!(base32_decode(&text).unwrap(), data);
            assert_eq!(base32_decode(&text.to_uppercase()).unwrap(), data);
        }
        assert_eq!(base32_encode(b"foobar"), "mzxw6ytboi");
    }
}
