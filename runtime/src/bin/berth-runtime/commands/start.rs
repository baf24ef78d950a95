//! `start`.

use std::path::Path;

use anyhow::Context as _;
use berth_runtime::container::Container;

/// `start` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container id.
    pub container_id: String,
}

/// Runs `start`.
pub fn run(root: &Path, a: &Args) -> anyhow::Result<()> {
    let c = Container::load(root, &a.container_id)?;
    c.start()
        .with_context(|| format!("starting container {}", a.container_id))
}
