//! The jobs behind the `dealreg` command line. Each module is one subcommand; `store`
//! opens the embedded store they share.

pub mod apply;
pub mod audit;
pub mod crm;
pub mod demo;
pub mod events;
pub mod forget;
pub mod history;
pub mod portable;
pub mod rebuild;
pub mod replay;
pub mod serve;
pub mod store;
pub mod timekeeper;
pub mod verify;
pub mod view;
