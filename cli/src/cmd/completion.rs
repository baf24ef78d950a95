//! `completion bash|zsh|fish`: the shell completion script on stdout.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// `berth completion`.
#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell (bash, zsh, fish)
    #[arg(value_parser = ["bash", "zsh", "fish"])]
    pub shell: String,
}

/// Writes the completion script for `shell` to `out`.
pub fn write_completion(shell: &str, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    let shell = match shell {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => anyhow::bail!("unsupported shell {other:?}: use bash, zsh or fish"),
    };
    let mut cmd = super::Cli::command();
    clap_complete::generate(shell, &mut cmd, "berth", out);
    Ok(())
}

/// `berth completion`.
pub fn completion(a: CompletionArgs) -> anyhow::Result<()> {
    write_completion(&a.shell, &mut std::io::stdout())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn scripts_for_each_shell() {
        for (sh, marker) in [
            ("bash", "complete -F"),
            ("zsh", "#compdef berth"),
            ("fish", "complete -c berth"),
        ] {
            let mut out = Vec::new();
            write_completion(sh, &mut out).unwrap();
            let s = String::from_utf8(out).unwrap();
            assert!(s.contains(marker), "{sh}");
            assert!(s.contains("rmi"), "{sh} lacks subcommands");
        }
    }
}
