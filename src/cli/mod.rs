//! The jobs behind the `dealreg` command line. Each module is one subcommand; `store`
//! opens the embedded store they share.

pub mod actions;
pub mod apply;
pub mod audit;
pub mod crm;
pub mod demo;
pub mod events;
pub mod forget;
pub mod history;
pub mod nats_access;
pub mod notifier;
pub mod pages;
pub mod portable;
pub mod rebuild;
pub mod replay;
pub mod serve;
pub mod store;
pub mod timekeeper;
pub mod users;
pub mod verify;
pub mod view;
pub mod what_if;

/// A one-line progress bar on stderr for a long read of the log (`dealreg rebuild`,
/// `dealreg replay`): `doing`, then how far by position. Positions grow with the log on
/// every backend, though they are not counts: the bar counts the events folded.
pub fn progress_bar(doing: &str, p: dealreg_host::runner::Progress) {
    let done = p.position.commit() as f64 / p.head.commit().max(1) as f64;
    let filled = (done * 30.0).round().clamp(0.0, 30.0) as usize;
    eprint!(
        "\r{doing} [{}{}] {:>3.0}% {} events, position {} of {}",
        "#".repeat(filled),
        "-".repeat(30 - filled),
        (done * 100.0).min(100.0),
        p.events,
        p.position,
        p.head
    );
}
