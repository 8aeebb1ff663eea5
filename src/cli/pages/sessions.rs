//! Sessions, CSRF tokens and login throttling, kept in this process's memory.
//!
//! A session is a random 256-bit token in a cookie; only its SHA-256 is kept here, so a
//! memory dump or a debug print does not hand out live sessions. Sessions end after 8 h
//! without a request or 12 h after login, whichever comes first. A restart logs everyone
//! out, and sessions are per process (several `serve` processes behind one address need
//! sticky routing): docs/PAGES.md says so.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use super::access::Role;

/// Idle expiry.
pub const IDLE: Duration = Duration::hours(8);
/// Absolute expiry.
pub const ABSOLUTE: Duration = Duration::hours(12);
/// Failed logins for one user name before it is refused for [`LOCKOUT`].
pub const MAX_FAILURES: u32 = 5;
pub const LOCKOUT: Duration = Duration::minutes(1);

/// The session cookie's name.
pub const COOKIE: &str = "dealreg_session";
/// The pre-session cookie of the login form's CSRF token.
pub const LOGIN_COOKIE: &str = "dealreg_login";

/// Who a session is for.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub partner_id: Option<uuid::Uuid>,
    /// The token every POST of this session carries in its `csrf` field.
    pub csrf: String,
    created: DateTime<Utc>,
    seen: DateTime<Utc>,
}

#[derive(Default)]
struct Failures {
    count: u32,
    until: Option<DateTime<Utc>>,
}

/// The process's sessions and login failures.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<String, Failures>>,
}

/// 32 random bytes as hex.
pub fn random_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| format!("the system random generator failed: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Compares two secrets without an early exit on the first differing byte.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (digest(a), digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl Sessions {
    /// Starts a session; returns the cookie token (the only copy) and the session.
    pub fn start(
        &self,
        user: &str,
        role: Role,
        partner_id: Option<uuid::Uuid>,
        now: DateTime<Utc>,
    ) -> Result<(String, Session), String> {
        let token = random_token()?;
        let session = Session {
            user: user.to_string(),
            role,
            partner_id,
            csrf: random_token()?,
            created: now,
            seen: now,
        };
        let mut live = self
            .live
            .lock()
            .map_err(|_| "the session table is poisoned")?;
        live.retain(|_, s| alive(s, now));
        live.insert(digest(&token), session.clone());
        Ok((token, session))
    }

    /// The live session of `token`, its idle clock restarted.
    pub fn get(&self, token: &str, now: DateTime<Utc>) -> Option<Session> {
        let mut live = self.live.lock().ok()?;
        let key = digest(token);
        match live.get_mut(&key) {
            Some(s) if alive(s, now) => {
                s.seen = now;
                Some(s.clone())
            }
            Some(_) => {
                live.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn end(&self, token: &str) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(&digest(token));
        }
    }

    /// Until when logins of `user` are refused, if they are now.
    pub fn locked_until(&self, user: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let failures = self.failures.lock().ok()?;
        failures
            .get(user)
            .and_then(|f| f.until)
            .filter(|u| *u > now)
    }

    /// Counts a failed login; the fifth in a row refuses the name for a minute.
    pub fn failed(&self, user: &str, now: DateTime<Utc>) {
        if let Ok(mut failures) = self.failures.lock() {
            // Bound the table: names are attacker-chosen.
            if failures.len() > 10_000 {
                failures.retain(|_, f| f.until.is_some_and(|u| u > now));
            }
            let f = failures.entry(user.to_string()).or_default();
            if f.until.is_some_and(|u| u <= now) {
                *f = Failures::default();
            }
            f.count += 1;
            if f.count >= MAX_FAILURES {
                f.until = Some(now + LOCKOUT);
            }
        }
    }

    pub fn succeeded(&self, user: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(user);
        }
    }
}

fn alive(s: &Session, now: DateTime<Utc>) -> bool {
    now - s.seen < IDLE && now - s.created < ABSOLUTE
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure when asked.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<i64>) -> String {
    let mut c = format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_idle_and_absolute() {
        let s = Sessions::default();
        let t0 = Utc::now();
        let (token, _) = s
            .start("a", Role::Auditor, None, t0)
            .unwrap_or_default_session();
        assert!(s.get(&token, t0 + Duration::hours(7)).is_some());
        assert!(s.get(&token, t0 + Duration::hours(14)).is_none());
        let (token, _) = s
            .start("a", Role::Auditor, None, t0)
            .unwrap_or_default_session();
        assert!(s.get(&token, t0 + Duration::hours(9)).is_none());
    }

    #[test]
    fn five_failures_lock_a_name_for_a_minute() {
        let s = Sessions::default();
        let t0 = Utc::now();
        for _ in 0..4 {
            s.failed("x", t0);
        }
        assert!(s.locked_until("x", t0).is_none());
        s.failed("x", t0);
        assert!(s.locked_until("x", t0).is_some());
        assert!(s.locked_until("x", t0 + Duration::seconds(61)).is_none());
    }

    trait OrDefault {
        fn unwrap_or_default_session(self) -> (String, Session);
    }
    impl OrDefault for Result<(String, Session), String> {
        fn unwrap_or_default_session(self) -> (String, Session) {
            match self {
                Ok(v) => v,
                Err(e) => panic!("{e}"),
            }
        }
    }
}
