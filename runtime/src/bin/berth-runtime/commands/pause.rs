//! `pause` and `resume`.

use std::path::Path;

use anyhow::Context as _;
use berth_runtime::container::Container;

/// `pause`/`resume` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container id.
    pub container_id: String,
}

/// Runs `pause`.
pub fn pause(root: &Path, a: &Args) -> anyhow::Result<()> {
    let mut c = Container::load(root, &a.container_id)?;
    c.pause()
        .with_context(|| format!("pausing container {}", a.container_id))
}

/// Runs `resume`.
pub fn resume(root: &Path, a: &Args) -> anyhow::Result<()> {
    let mut c = Container::load(root, &a.container_id)?;
    c.resume()
        .with_context(|| format!("resuming container {}", a.container_id))
}
