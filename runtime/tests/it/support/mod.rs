//! Shared helpers: bundle builder, runtime runner, console socket, commands with timeouts.

pub mod bundle;
pub mod cmd;
pub mod console;
pub mod probe;
pub mod runner;

pub use bundle::Bundle;
pub use runner::{Container, Finished, Runtime};
