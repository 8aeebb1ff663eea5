//! The jobs behind the `dealreg` command line. Each module is one subcommand.

pub mod apply;
pub mod demo;
pub mod events;
pub mod verify;
pub mod view;
