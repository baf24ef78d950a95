//! `delete`.

use std::path::Path;

use anyhow::Context as _;
use berth_runtime::container::{Container, ContainerError};
use berth_runtime::state::StateError;

/// `delete` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kill a running container first.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Container id.
    pub container_id: String,
}

/// Runs `delete`.
pub fn run(root: &Path, a: &Args) -> anyhow::Result<()> {
    let c = match Container::load(root, &a.container_id) {
        Ok(c) => c,
        // runc: deleting a missing container is fine with --force.
        Err(ContainerError::State(StateError::NotFound { .. })) if a.force => {
            Container::remove_leftovers(root, &a.container_id)?;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    c.delete(a.force)
        .with_context(|| format!("deleting container {}", a.container_id))
}
