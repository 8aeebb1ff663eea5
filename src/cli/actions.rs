//! What people do from an alert without a portal: the signed links' actions (`serve
//! --http`) and e-mail replies that become notes (`serve --smtp-inbound`), each run as a
//! command through the engine with the person as the actor.
//!
//! Why every action goes through the engine: the link or reply only names *who* and
//! *what*; whether it may happen is the domain's decision, recorded in the log like any
//! other command (a refusal too). The link's id is the command's idempotency key, so a
//! link used twice has one effect and the second use is told so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use dealreg_actions::{
    ActionDone, ActionFailed, ActionRunner, Aside, BoxFuture, Described, Link, Refusal, Reply,
    ReplyReceiver,
};
use dealreg_clock::Clock;
use dealreg_domain::command::{
    AcknowledgeAnnouncement, AddNote, ApproveRegistration, DeclineRegistration,
    RecordAnnouncementRead, RequestExtension, SetNextStep,
};
use dealreg_domain::ids::{AnnouncementId, NoteId};
use dealreg_domain::values::NoteVisibility;
use dealreg_domain::{Actor, Command, PartnerId, RegistrationId};
use dealreg_engine::{CommandEnvelope, Engine, PartnerError};
use dealreg_events::EventStore;
use dealreg_vault::KeyVault;

use super::notifier::{derived_uuid, open_contact, NotifierState};

/// The reason codes a decline link offers.
const DECLINE_CODES: &[&str] = &[
    "no_qualified_opportunity",
    "existing_direct_engagement",
    "duplicate",
    "outside_program_rules",
    "other",
];

/// Runs link actions through the engine.
pub struct LinkActions<S, C> {
    pub engine: Arc<Engine<S, C>>,
}

fn field<'a>(link: &'a Link, name: &str) -> Result<&'a str, ActionFailed> {
    link.fields
        .get(name)
        .and_then(|v| v.as_str())
        .ok_or_else(|| ActionFailed {
            status: 400,
            title: "This link is incomplete".into(),
            text: format!("The link does not say which {name} it is for; ask for a new one."),
        })
}

fn parsed<T: std::str::FromStr>(link: &Link, name: &str) -> Result<T, ActionFailed> {
    field(link, name)?.parse().map_err(|_| ActionFailed {
        status: 400,
        title: "This link is damaged".into(),
        text: format!("The link's {name} is not readable; ask for a new one."),
    })
}

/// The command a link stands for, with the form's fields.
fn command_of(link: &Link, form: &BTreeMap<String, String>) -> Result<Command, ActionFailed> {
    let text = |name: &str| form.get(name).cloned().unwrap_or_default();
    Ok(match link.action.as_str() {
        "approve_registration" => Command::ApproveRegistration(ApproveRegistration {
            account: field(link, "account")?.to_string(),
            registration_id: parsed::<RegistrationId>(link, "registration_id")?,
            rationale: "approved from the alert's link".into(),
        }),
        "decline_registration" => Command::DeclineRegistration(DeclineRegistration {
            account: field(link, "account")?.to_string(),
            registration_id: parsed::<RegistrationId>(link, "registration_id")?,
            reason_code: form
                .get("reason_code")
                .filter(|c| !c.is_empty())
                .cloned()
                .unwrap_or_else(|| "other".into()),
            rationale: text("reason"),
        }),
        "request_extension" => Command::RequestExtension(RequestExtension {
            account: field(link, "account")?.to_string(),
            registration_id: parsed::<RegistrationId>(link, "registration_id")?,
            reason: text("reason"),
        }),
        "set_next_step" => Command::SetNextStep(SetNextStep {
            account: field(link, "account")?.to_string(),
            registration_id: parsed::<RegistrationId>(link, "registration_id")?,
            text: text("text"),
            due_on: text("due").parse().map_err(|_| ActionFailed {
                status: 422,
                title: "The due date is not a date".into(),
                text: "Give the due date as YYYY-MM-DD.".into(),
            })?,
        }),
        "acknowledge_announcement" => Command::AcknowledgeAnnouncement(AcknowledgeAnnouncement {
            partner_id: parsed::<PartnerId>(link, "partner_id")?,
            announcement_id: parsed::<AnnouncementId>(link, "announcement_id")?,
        }),
        other => {
            return Err(ActionFailed {
                status: 404,
                title: "Unknown action".into(),
                text: format!("This link asks for {other:?}, which dealreg does not offer."),
            })
        }
    })
}

fn actor_of(link: &Link) -> Result<Actor, ActionFailed> {
    serde_json::from_value(link.actor.clone()).map_err(|_| ActionFailed {
        status: 400,
        title: "This link is damaged".into(),
        text: "The link does not say who acts; ask for a new one.".into(),
    })
}

impl<S: EventStore, C: Clock> LinkActions<S, C> {
    async fn execute(
        &self,
        actor: Actor,
        command: Command,
        key: String,
    ) -> Result<ActionDone, ActionFailed> {
        let partner = actor.partner().is_some();
        let what = command.name().replace('_', " ");
        let executed = self
            .engine
            .execute(CommandEnvelope {
                idempotency_key: Some(key),
                actor,
                command,
            })
            .await
            .map_err(|e| ActionFailed {
                status: 503,
                title: "Not done: try again in a minute".into(),
                text: format!("The program's log could not take it now ({e}). Nothing was changed; open the link again later."),
            })?;
        let reply = executed.reply;
        match reply.error {
            None => Ok(ActionDone {
                title: "Done".into(),
                text: format!("Recorded: {what}."),
                already_done: executed.replayed,
            }),
            Some(error) => {
                let message = if partner {
                    PartnerError::of(&error).message
                } else {
                    error.message.clone()
                };
                Err(ActionFailed {
                    status: 409,
                    title: "Not done".into(),
                    text: message,
                })
            }
        }
    }
}

impl<S: EventStore, C: Clock> ActionRunner for LinkActions<S, C> {
    fn describe<'a>(&'a self, link: &'a Link) -> BoxFuture<'a, Described> {
        Box::pin(async move {
            let registration = link
                .fields
                .get("registration_id")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            let account = link
                .fields
                .get("account")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            let (title, text) = match link.action.as_str() {
                "approve_registration" => (
                    format!("Approve registration {registration}"),
                    format!("Approving protects the partner's registration on {account} for the program's protection window."),
                ),
                "decline_registration" => (
                    format!("Decline registration {registration}"),
                    format!("Declining frees the customer {account} for others; the partner may appeal. Say why."),
                ),
                "request_extension" => (
                    format!("Ask for more protection time on {account}"),
                    "Your channel manager decides; say why the deal needs longer.".to_string(),
                ),
                "set_next_step" => (
                    format!("Set the next step on {account}"),
                    "What happens next on this deal, and by when.".to_string(),
                ),
                "acknowledge_announcement" => (
                    "Acknowledge the announcement".to_string(),
                    "Confirm that your organisation has read and accepts this change to the program.".to_string(),
                ),
                other => (other.to_string(), String::new()),
            };
            Described {
                title,
                text,
                reason_codes: if link.action == "decline_registration" {
                    DECLINE_CODES.iter().map(|c| c.to_string()).collect()
                } else {
                    Vec::new()
                },
            }
        })
    }

    fn opened<'a>(&'a self, link: &'a Link) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if link.action != "acknowledge_announcement" {
                return Ok(());
            }
            let actor = actor_of(link).map_err(|f| f.text)?;
            let command = Command::RecordAnnouncementRead(RecordAnnouncementRead {
                partner_id: parsed::<PartnerId>(link, "partner_id").map_err(|f| f.text)?,
                announcement_id: parsed::<AnnouncementId>(link, "announcement_id")
                    .map_err(|f| f.text)?,
            });
            self.execute(actor, command, format!("link-read-{}", link.id))
                .await
                .map(|_| ())
                .map_err(|f| f.text)
        })
    }

    fn run<'a>(
        &'a self,
        link: &'a Link,
        form: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<ActionDone, ActionFailed>> {
        Box::pin(async move {
            let actor = actor_of(link)?;
            let command = command_of(link, form)?;
            self.execute(actor, command, format!("link-{}", link.id))
                .await
        })
    }
}

/// Turns e-mail replies to alerts into notes on their registration.
pub struct ReplyNotes<S, C> {
    pub engine: Arc<Engine<S, C>>,
    pub vault: Arc<dyn KeyVault>,
    pub state: Arc<NotifierState>,
    pub aside: Aside,
}

impl<S: EventStore, C: Clock> ReplyNotes<S, C> {
    fn keep_aside(&self, raw: &[u8], reason: &str) -> Result<(), Refusal> {
        match self.aside.keep(raw, reason) {
            Ok(path) => {
                tracing::warn!(kept = %path.display(), %reason, "an e-mail reply was kept aside for a person");
                Ok(())
            }
            Err(e) => Err(Refusal::Transient(format!(
                "cannot keep the message aside: {e}"
            ))),
        }
    }

    async fn take(&self, reply: Reply) -> Result<(), Refusal> {
        let (reply_id, _) = match &reply.reply_id {
            Ok(found) => *found,
            Err(refused) => {
                return self.keep_aside(&reply.raw, &format!("reply address refused: {refused}"))
            }
        };
        let target = match self.state.reply_target(reply_id) {
            Ok(Some(target)) => target,
            Ok(None) => {
                return self.keep_aside(&reply.raw, "no alert was sent with this reply address")
            }
            Err(e) => return Err(Refusal::Transient(e)),
        };
        let Some(contact) = open_contact(self.vault.as_ref(), &target.recipient).await else {
            return self.keep_aside(&reply.raw, "the person this address was for was erased");
        };
        if !contact.email.eq_ignore_ascii_case(reply.from.trim()) {
            return self.keep_aside(&reply.raw, "the sender is not the person the alert went to");
        }
        if reply.text.trim().is_empty() {
            return self.keep_aside(&reply.raw, "the reply has no new text");
        }
        // The same message delivered twice is the same note.
        let note_id = NoteId(derived_uuid(b"", &reply.raw));
        let registration_id: RegistrationId = match target.registration_id.parse() {
            Ok(id) => id,
            Err(_) => {
                return self.keep_aside(&reply.raw, "the reply address names no registration")
            }
        };
        let text: String = reply.text.chars().take(4_000).collect();
        let executed = self
            .engine
            .execute(CommandEnvelope {
                idempotency_key: Some(format!("reply-{note_id}")),
                actor: Actor::Partner {
                    partner_id: target.partner_id,
                    user: target.user.clone(),
                },
                command: Command::AddNote(AddNote {
                    account: target.account.clone(),
                    registration_id,
                    note_id,
                    text,
                    visibility: NoteVisibility::Partner,
                }),
            })
            .await
            .map_err(|e| Refusal::Transient(e.to_string()))?;
        match executed.reply.error {
            None => Ok(()),
            Some(error) => self.keep_aside(
                &reply.raw,
                &format!("the note was refused: {}", error.message),
            ),
        }
    }
}

impl<S: EventStore, C: Clock> ReplyReceiver for ReplyNotes<S, C> {
    fn received<'a>(&'a self, reply: Reply) -> BoxFuture<'a, Result<(), Refusal>> {
        Box::pin(self.take(reply))
    }
}

/// Where replies that cannot become notes are kept: beside the notifier's state file.
pub fn aside_dir(state: &std::path::Path) -> PathBuf {
    let mut name = state.as_os_str().to_owned();
    name.push(".aside");
    PathBuf::from(name)
}
