//! The views host: the read side of dealreg, fed by the log. One pump ([`tail`]) reads
//! each new event once; the projection runner ([`runner`], with [`parallel`] folds) keeps
//! every view of the catalogue ([`registry`]) saved at a position; [`host`] holds the
//! views lease and the deployment's duties (the follow-up [`reactor`], the
//! [`timekeeper`], the [`feed`] publisher and further duties such as the CRM sync).
//!
//! Why a crate of its own: the command side (`dealreg-engine`) decides and appends and
//! knows nothing of views; this crate reads what it wrote. It issues commands only through
//! the engine's public API (the reactor's follow-ups, the timekeeper's due commands).

pub mod beside;
pub mod feed;
pub mod host;
pub mod parallel;
pub mod reactor;
pub mod registry;
pub mod runner;
pub mod tail;
pub mod timekeeper;
