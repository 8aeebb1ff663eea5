//! Identifiers. Partners, registrations and opportunities are UUID v7 chosen by the caller
//! (so a retried command names the same thing); conflict ids and account keys belong to the
//! domain, because `decide` is pure and cannot mint random ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{DomainError, RejectionCode};

macro_rules! uuid_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("The id of a ", $what, " (UUID v7, chosen by the caller).")]
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            PartialOrd,
            Ord,
            Hash,
            Serialize,
            Deserialize,
            schemars::JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }
    };
}

uuid_id!(PartnerId, "partner organisation");
uuid_id!(RegistrationId, "deal registration");
uuid_id!(OpportunityId, "direct-sales opportunity");
uuid_id!(AnnouncementId, "program announcement");
uuid_id!(NoteId, "note on a registration");

/// A conflict on an account: `<account>/<product line>/<n>`, numbered per account.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct ConflictId(pub String);

impl fmt::Display for ConflictId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Product lines compare case- and space-insensitively: ` Analytics` and `analytics` are one
/// line, so the uniqueness rule cannot be sidestepped by spelling.
pub fn normalise_product_line(raw: &str) -> String {
    raw.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The customer account: the normalised registrable domain of the customer.
///
/// Why the registrable domain: the uniqueness test (docs/RULES.md 8) says domain matching
/// includes subdomains, so `eu.acme.co.uk`, `https://www.ACME.co.uk/contact` and
/// `acme.co.uk` are one customer. The public suffix list tells where the registrable part
/// starts (`co.uk` is a suffix, so `acme.co.uk` is the account).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct AccountKey(pub String);

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AccountKey {
    /// Normalises a customer domain, URL or e-mail address to its account key.
    pub fn from_domain(raw: &str) -> Result<AccountKey, DomainError> {
        let invalid = |why: &str| {
            DomainError::new(
                RejectionCode::InvalidField,
                format!("customer domain `{raw}` {why}; send the customer's web domain, e.g. `acme.com`"),
            )
            .with_details(serde_json::json!({ "field": "customer.domain", "value": raw }))
        };
        let mut host = raw.trim().to_ascii_lowercase();
        if let Some(scheme) = host.find("://") {
            host = host[scheme + 3..].to_string();
        }
        if let Some(end) = host.find(['/', '?', '#']) {
            host.truncate(end);
        }
        if let Some(at) = host.rfind('@') {
            host = host[at + 1..].to_string();
        }
        // An IP address names a machine, not a customer: `[2001:db8::1]`, `2001:db8::1`
        // (more than one colon), or four dotted numbers with or without a port.
        if host.starts_with('[') || host.matches(':').count() > 1 {
            return Err(invalid("is an IP address"));
        }
        if let Some(colon) = host.rfind(':') {
            host.truncate(colon);
        }
        if host.parse::<std::net::Ipv4Addr>().is_ok() {
            return Err(invalid("is an IP address"));
        }
        let host = host
            .trim_end_matches('.')
            .trim_start_matches("www.")
            .to_string();
        if host.is_empty() {
            return Err(invalid("is empty"));
        }
        if host.len() > 253 {
            return Err(invalid("is longer than 253 characters"));
        }
        let labels_ok = host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
        if !labels_ok || !host.contains('.') {
            return Err(invalid("is not a valid domain name"));
        }
        // No top-level domain is all digits: `192.168.1` or `10.0.1.10.` are addresses.
        if host
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(invalid("is an IP address, not a domain name"));
        }
        let registrable = psl::domain_str(&host)
            .ok_or_else(|| invalid("has no registrable part (it is a public suffix)"))?;
        Ok(AccountKey(registrable.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_urls_and_case_fold_to_the_registrable_domain() {
        for raw in [
            "acme.co.uk",
            "https://EU.Acme.co.uk/x?y=1",
            "www.acme.co.uk.",
            "sales@eu.acme.co.uk",
            "acme.co.uk:443",
        ] {
            assert_eq!(
                AccountKey::from_domain(raw).unwrap().0,
                "acme.co.uk",
                "{raw}"
            );
        }
        assert_eq!(
            AccountKey::from_domain("shop.globex.com").unwrap().0,
            "globex.com"
        );
    }

    #[test]
    fn non_domains_are_refused_with_the_field_named() {
        for raw in [
            "",
            "localhost",
            "co.uk",
            "acme..com",
            "-acme.com",
            "ac me.com",
            "192.168.1.10",
            "10.0.1.10",
            "http://192.168.1.10:8080/crm",
            "sales@10.0.0.1",
            "192.168.1",
            "2001:db8::1",
            "[2001:db8::1]",
            "https://[2001:db8::1]:443/x",
            "::ffff:192.168.1.10",
        ] {
            let err = AccountKey::from_domain(raw).unwrap_err();
            assert_eq!(err.code, RejectionCode::InvalidField, "{raw}");
            assert_eq!(err.details["field"], "customer.domain");
        }
    }
}
