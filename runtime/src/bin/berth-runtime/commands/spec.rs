//! `spec`.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

/// `spec` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write config.json into.
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Spec for a rootless container (user namespace with mappings).
    #[arg(long)]
    pub rootless: bool,
}

/// Writes `<bundle>/config.json`; refuses to overwrite like runc.
pub fn run(a: &Args) -> anyhow::Result<()> {
    let path = a.bundle.join("config.json");
    if path.exists() {
        bail!("file {} exists; remove it first", path.display());
    }
    let spec = berth_runtime::default_spec::default_spec(a.rootless);
    let json = serde_json::to_string_pretty(&spec)?;
    std::fs::write(&path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
