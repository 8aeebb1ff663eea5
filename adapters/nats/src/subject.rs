//! The subjects of the service: where commands, queries and feeds live.
//!
//! Why the actor is in the subject: a NATS server's permissions are granted on subjects,
//! so a partner user allowed to publish only under `dealreg.partner.<its id>.>` cannot
//! send as anyone else, whatever its bodies claim. Every subject is built and read here
//! and nowhere else, so the docs, the AsyncAPI document and the server configuration name
//! the same strings the code uses.
//!
//! ```text
//! dealreg.partner.<partner_id>.cmd.<command>     a partner's commands
//! dealreg.vendor.<role>.cmd.<command>            a vendor role's commands
//! dealreg.system.<component>.cmd.<command>       the engine's and adapters' commands
//! dealreg.partner.<partner_id>.query.<view>      pipeline, ledger, registration
//! dealreg.vendor.query.<view>                    pipeline, conflicts, ledger, metrics, registration
//! dealreg.feed.<view>.<table>.vendor             every row change of a published view
//! dealreg.feed.<view>.<table>.partner.<id>       the partner-safe changes of one partner's rows
//! ```

use dealreg_domain::{Actor, PartnerId, VendorRole};
use dealreg_engine::{Address, InputError, InputErrorCode};

/// The first token of every subject.
pub const ROOT: &str = "dealreg";
/// The JetStream stream that keeps the feeds.
pub const FEED_STREAM: &str = "DEALREG_FEED";
/// What the feed stream captures.
pub const FEED_SUBJECTS: &str = "dealreg.feed.>";
/// The header a caller may set to name the user acting (the subject names the partner
/// or role; the user is who in it).
pub const USER_HEADER: &str = "Dealreg-User";
/// The user recorded when neither the body nor the header names one.
pub const DEFAULT_USER: &str = "nats";

/// Who a subject sends as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    Partner(PartnerId),
    Vendor(VendorRole),
    System(String),
}

impl Sender {
    /// The subject token pair naming this sender (`partner.<id>`, `vendor.rev_ops`).
    fn tokens(&self) -> String {
        match self {
            Sender::Partner(id) => format!("partner.{id}"),
            Sender::Vendor(role) => format!("vendor.{}", role_token(*role)),
            Sender::System(component) => format!("system.{component}"),
        }
    }

    fn actor(&self, user: &str) -> Actor {
        match self {
            Sender::Partner(partner_id) => Actor::Partner {
                partner_id: *partner_id,
                user: user.to_string(),
            },
            Sender::Vendor(role) => Actor::Vendor {
                role: *role,
                user: user.to_string(),
            },
            Sender::System(component) => Actor::System {
                component: component.clone(),
            },
        }
    }
}

/// The subject of `command` sent by `sender`.
pub fn command(sender: &Sender, command: &str) -> String {
    format!("{ROOT}.{}.cmd.{command}", sender.tokens())
}

/// The subject filter of one command's endpoint: every sender.
pub fn command_endpoint(command: &str) -> String {
    format!("{ROOT}.*.*.cmd.{command}")
}

/// Every command subject (the endpoint that answers names no command knows).
pub const ANY_COMMAND: &str = "dealreg.*.*.cmd.*";

/// A partner's query subject.
pub fn partner_query(partner: PartnerId, view: &str) -> String {
    format!("{ROOT}.partner.{partner}.query.{view}")
}

/// A vendor query subject.
pub fn vendor_query(view: &str) -> String {
    format!("{ROOT}.vendor.query.{view}")
}

/// The feed subject of a row change, for the vendor or for one partner.
pub fn feed(view: &str, table: &str, partner: Option<&str>) -> String {
    match partner {
        Some(partner) => format!("{ROOT}.feed.{view}.{table}.partner.{partner}"),
        None => format!("{ROOT}.feed.{view}.{table}.vendor"),
    }
}

fn role_token(role: VendorRole) -> &'static str {
    match role {
        VendorRole::ChannelManager => "channel_manager",
        VendorRole::RevOps => "rev_ops",
        VendorRole::Auditor => "auditor",
        VendorRole::DirectSales => "direct_sales",
    }
}

fn role_of(token: &str) -> Option<VendorRole> {
    [
        VendorRole::ChannelManager,
        VendorRole::RevOps,
        VendorRole::Auditor,
        VendorRole::DirectSales,
    ]
    .into_iter()
    .find(|r| role_token(*r) == token)
}

fn bad_subject(subject: &str, why: &str) -> InputError {
    InputError {
        code: InputErrorCode::InvalidCommand,
        message: format!("the subject `{subject}` {why}; commands go to dealreg.partner.<partner_id>.cmd.<command>, dealreg.vendor.<role>.cmd.<command> or dealreg.system.<component>.cmd.<command> (see docs/NATS.md)"),
        details: serde_json::json!({ "field": "subject", "subject": subject }),
    }
}

/// Who sends a command on `subject`, and which command: the address the body is read
/// against.
pub fn command_address(
    subject: &str,
    user: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<Address, InputError> {
    let tokens: Vec<&str> = subject.split('.').collect();
    let [ROOT, kind, who, "cmd", name] = tokens.as_slice() else {
        return Err(bad_subject(subject, "is not a command subject"));
    };
    let sender = match *kind {
        "partner" => PartnerId(
            who.parse()
                .map_err(|_| bad_subject(subject, "names no partner id (a UUID)"))?,
        )
        .into(),
        "vendor" => Sender::Vendor(
            role_of(who).ok_or_else(|| bad_subject(subject, "names no vendor role"))?,
        ),
        "system" => Sender::System(who.to_string()),
        _ => return Err(bad_subject(subject, "names no kind of sender")),
    };
    let user = user
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .unwrap_or(DEFAULT_USER);
    Ok(Address {
        actor: sender.actor(user),
        command: name.to_string(),
        idempotency_key: idempotency_key.map(str::to_string),
    })
}

impl From<PartnerId> for Sender {
    fn from(id: PartnerId) -> Self {
        Sender::Partner(id)
    }
}

/// A query subject read: who asks and about which view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asker {
    Partner(PartnerId),
    Vendor,
}

/// Who asks on `subject`, and for which view.
pub fn query_address(subject: &str) -> Option<(Asker, String)> {
    let tokens: Vec<&str> = subject.split('.').collect();
    match tokens.as_slice() {
        [ROOT, "partner", id, "query", view] => id
            .parse()
            .ok()
            .map(|id| (Asker::Partner(PartnerId(id)), view.to_string())),
        [ROOT, "vendor", "query", view] => Some((Asker::Vendor, view.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_subject_names_its_sender_and_command() {
        let id = PartnerId(uuid::Uuid::now_v7());
        let subject = command(&Sender::Partner(id), "submit_registration");
        let address = command_address(&subject, Some("pat"), Some("k1")).unwrap();
        assert_eq!(
            address.actor,
            Actor::Partner {
                partner_id: id,
                user: "pat".into()
            }
        );
        assert_eq!(address.command, "submit_registration");
        assert_eq!(address.idempotency_key.as_deref(), Some("k1"));
        let vendor = command(&Sender::Vendor(VendorRole::RevOps), "record_revenue");
        assert!(command_address(&vendor, None, None)
            .unwrap()
            .actor
            .is_role(VendorRole::RevOps));
    }

    #[test]
    fn a_subject_that_names_no_sender_is_refused_with_the_grammar() {
        for subject in [
            "dealreg.partner.not-a-uuid.cmd.submit_registration",
            "dealreg.vendor.cfo.cmd.approve_registration",
            "dealreg.robot.x.cmd.approve_registration",
            "dealreg.partner.cmd",
        ] {
            let e = command_address(subject, None, None).unwrap_err();
            assert_eq!(e.code, InputErrorCode::InvalidCommand, "{subject}");
            assert!(e.message.contains("dealreg.partner.<partner_id>"), "{e}");
        }
    }

    #[test]
    fn query_subjects_are_read_back() {
        let id = PartnerId(uuid::Uuid::now_v7());
        assert_eq!(
            query_address(&partner_query(id, "pipeline")),
            Some((Asker::Partner(id), "pipeline".into()))
        );
        assert_eq!(
            query_address(&vendor_query("conflicts")),
            Some((Asker::Vendor, "conflicts".into()))
        );
        assert_eq!(query_address("dealreg.partner.x.query.pipeline"), None);
    }
}
