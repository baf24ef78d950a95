//! `kill`.

use std::path::Path;
use std::str::FromStr;

use anyhow::{bail, Context as _};
use berth_runtime::container::Container;
use nix::sys::signal::Signal;

/// `kill` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Signal every process of the container.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Container id.
    pub container_id: String,
    /// Signal name (KILL, SIGKILL) or number; default SIGTERM.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

/// Parses "9", "KILL", "SIGKILL", "kill".
pub fn parse_signal(s: &str) -> anyhow::Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).with_context(|| format!("invalid signal number {n}"));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    match Signal::from_str(&name) {
        Ok(sig) => Ok(sig),
        Err(_) => bail!("unknown signal {s:?}"),
    }
}

/// Runs `kill`.
pub fn run(root: &Path, a: &Args) -> anyhow::Result<()> {
    let sig = parse_signal(&a.signal)?;
    let c = Container::load(root, &a.container_id)?;
    c.kill(sig, a.all)
        .with_context(|| format!("signalling container {}", a.container_id))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("term").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("SIGUSR1").unwrap(), Signal::SIGUSR1);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("999").is_err());
    }
}
