//! `state`.

use std::path::Path;

use berth_runtime::container::Container;

/// `state` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Container id.
    pub container_id: String,
}

/// Prints the state JSON.
pub fn run(root: &Path, a: &Args) -> anyhow::Result<()> {
    let c = Container::load(root, &a.container_id)?;
    println!("{}", serde_json::to_string_pretty(&c.report())?);
    Ok(())
}
