//! `exec`: a command in a running container through berth.v1 Exec and the
//! streaming client; its exit code is berth's.

use berth_proto::berth::v1::ExecRequest;
use clap::Args;

use super::{stdio, Ctx};
use crate::error::{CliError, DaemonResult};

/// `berth exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Username or UID (format: "<name|uid>[:<group|gid>]")
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Container (name, id or id prefix)
    pub container: String,
    /// Command and arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// The environment entries of `-e` (`KEY=VALUE`, or `KEY` taken from
/// this process's environment and skipped when unset, as docker does).
pub fn env_entries(a: &ExecArgs) -> Vec<String> {
    let lookup = |k: &str| std::env::var(k).ok();
    a.env
        .iter()
        .filter_map(|e| crate::parse::env_entry(e, &lookup))
        .collect()
}

/// `berth exec`: berth.v1 Exec carries -e/-u/-w (berthd resolves the user
/// in the container's own /etc/passwd), the session runs over the same
/// streaming server as the CRI's Exec.
pub async fn exec(ctx: &Ctx, a: ExecArgs) -> anyhow::Result<()> {
    if let Some(u) = &a.user {
        if u.is_empty() || u.starts_with(':') {
            return Err(CliError::Usage(format!(
                "invalid user {u:?}: use USER[:GROUP] or UID[:GID]"
            ))
            .into());
        }
    }
    let d = ctx.daemon().await?;
    let detach = a.detach;
    let cmd = if detach {
        // Detached: the process outlives the session in the background
        // (the container's shell starts it and returns).
        let mut v = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            "\"$@\" >/dev/null 2>&1 </dev/null &".to_owned(),
            "sh".to_owned(),
        ];
        v.extend(a.command.iter().cloned());
        v
    } else {
        a.command.clone()
    };
    let url = d
        .containers
        .clone()
        .exec(ExecRequest {
            container: a.container.clone(),
            cmd,
            env: env_entries(&a),
            user: a.user.clone().unwrap_or_default(),
            working_dir: a.workdir.clone().unwrap_or_default(),
            tty: a.tty && !detach,
            stdin: a.interactive && !detach,
            stdout: true,
            stderr: !a.tty || detach,
        })
        .await
        .no_such("container", &a.container)?
        .url;
    let status = stdio::session(&url, a.interactive && !detach, a.tty && !detach).await?;
    if !status.success() {
        return Err(CliError::Exit(status.0).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: ExecArgs,
    }

    #[test]
    fn flags_parse_and_env_entries_follow_docker() {
        let t = T::try_parse_from([
            "x",
            "-e",
            "A=1",
            "-e",
            "BERTH_EXEC_TEST_UNSET",
            "-w",
            "/tmp",
            "web",
            "ls",
            "-l",
        ])
        .unwrap();
        assert_eq!(t.a.container, "web");
        assert_eq!(t.a.command, vec!["ls", "-l"]);
        assert_eq!(t.a.workdir.as_deref(), Some("/tmp"));
        // An unset KEY is dropped, as docker does.
        assert_eq!(env_entries(&t.a), vec!["A=1"]);
        let t = T::try_parse_from(["x", "-it", "web", "sh"]).unwrap();
        assert!(t.a.interactive && t.a.tty);
        let t = T::try_parse_from(["x", "-u", "33:33", "web", "id", "-u"]).unwrap();
        assert_eq!(t.a.user.as_deref(), Some("33:33"));
    }
}
