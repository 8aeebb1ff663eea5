//! The pages of `dealreg serve --http`: the channel team's dashboard, the partner's page,
//! the registration form, login, and (with the notifier) the alerts' action links, on one
//! listener. Server-rendered HTML, no JavaScript, charts as inline SVG; every figure comes
//! from the stored views and every change goes through the engine as a command with the
//! signed-in person as the actor. docs/PAGES.md describes the pages and their DOM contract.

pub mod access;
mod dashboard;
mod form;
pub mod layout;
mod partner;
mod server;
pub mod sessions;
mod sla;
pub mod svg;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use dealreg_actions::LinkKey;
use dealreg_clock::Clock;
use dealreg_engine::Engine;
use dealreg_events::EventStore;

pub use server::serve_pages;

/// What the pages need: the engine (commands, and the program's and partners' state),
/// the store (views), the users file and the partner links' key.
pub struct Pages<S, C> {
    pub engine: Arc<Engine<S, C>>,
    pub spec: super::store::StoreSpec,
    /// The users file (`--users`); without one nobody can log in.
    pub users: Option<PathBuf>,
    /// The key partner page links are signed with (beside the users file).
    pub key: Option<Arc<LinkKey>>,
    /// Mark cookies `Secure` (the pages are reached over HTTPS through a proxy).
    pub secure_cookies: bool,
    /// Where the action links' server listens (loopback), when the notifier runs:
    /// `/a/...` requests are handed to it.
    pub links: Option<SocketAddr>,
    sessions: sessions::Sessions,
    sla: tokio::sync::Mutex<sla::Weekly>,
}

impl<S: EventStore, C: Clock> Pages<S, C> {
    pub fn new(
        engine: Arc<Engine<S, C>>,
        spec: super::store::StoreSpec,
        users: Option<PathBuf>,
        secure_cookies: bool,
        links: Option<SocketAddr>,
    ) -> Result<Self, String> {
        let key = users.as_deref().map(access::link_key).transpose()?;
        Ok(Pages {
            engine,
            spec,
            users,
            key,
            secure_cookies,
            links,
            sessions: sessions::Sessions::default(),
            sla: tokio::sync::Mutex::new(sla::Weekly::default()),
        })
    }
}
