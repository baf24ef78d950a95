//! `exec`: a command in a running container through CRI Exec and the
//! streaming client; its exit code is berth's.

use berth_proto::berth::v1::ContainerRef;
use berth_proto::cri;
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

/// The argv CRI Exec runs. CRI Exec has no env, user or working-dir
/// fields, so -w and -e are applied inside the container by tools the
/// image must have (a shell `cd`, `env`); -u cannot be done that way with
/// numeric ids in a busybox image, so it is refused until berthd serves
/// an exec with a user.
pub fn exec_argv(a: &ExecArgs) -> Result<Vec<String>, CliError> {
    if let Some(u) = &a.user {
        return Err(CliError::Usage(format!(
            "exec --user {u} is not supported yet: berthd's exec (CRI Exec) has no user field; run the command through the image's own su/chpst, or set the user at create time with `run -u`"
        )));
    }
    let lookup = |k: &str| std::env::var(k).ok();
    let env: Vec<String> = a
        .env
        .iter()
        .filter_map(|e| crate::parse::env_entry(e, &lookup))
        .collect();
    let mut argv = Vec::new();
    if let Some(w) = &a.workdir {
        // `cd DIR && exec "$@"` keeps the argv intact (no re-quoting).
        argv.extend([
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            "cd \"$0\" && exec \"$@\"".to_owned(),
            w.clone(),
        ]);
    }
    if !env.is_empty() {
        argv.push("env".into());
        argv.extend(env);
    }
    argv.extend(a.command.iter().cloned());
    Ok(argv)
}

/// `berth exec`.
pub async fn exec(ctx: &Ctx, a: ExecArgs) -> anyhow::Result<()> {
    let argv = exec_argv(&a)?;
    let d = ctx.daemon().await?;
    let id = d
        .containers
        .clone()
        .resolve(ContainerRef {
            container: a.container.clone(),
        })
        .await
        .no_such("container", &a.container)?
        .container_id;
    let detach = a.detach;
    let url =
        d.rt.clone()
            .exec(cri::ExecRequest {
                container_id: id,
                cmd: if detach {
                    // Detached: the process outlives the session in the background.
                    let mut v = vec![
                        "/bin/sh".to_owned(),
                        "-c".to_owned(),
                        "\"$@\" >/dev/null 2>&1 </dev/null &".to_owned(),
                        "sh".to_owned(),
                    ];
                    v.extend(argv);
                    v
                } else {
                    argv
                },
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
    fn argv_wraps_env_and_workdir() {
        let t = T::try_parse_from(["x", "-e", "A=1", "-w", "/tmp", "web", "ls", "-l"]).unwrap();
        assert_eq!(t.a.container, "web");
        assert_eq!(
            exec_argv(&t.a).unwrap(),
            vec![
                "/bin/sh",
                "-c",
                "cd \"$0\" && exec \"$@\"",
                "/tmp",
                "env",
                "A=1",
                "ls",
                "-l"
            ]
        );
        let t = T::try_parse_from(["x", "-it", "web", "sh"]).unwrap();
        assert!(t.a.interactive && t.a.tty);
        assert_eq!(exec_argv(&t.a).unwrap(), vec!["sh"]);
        let t = T::try_parse_from(["x", "-u", "33:33", "web", "id", "-u"]).unwrap();
        assert!(matches!(exec_argv(&t.a), Err(CliError::Usage(_))));
    }
}
