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

/// Switches to `-u USER[:GROUP]` inside the container with the image's
/// own `su` (busybox or util-linux), after resolving the user in its
/// /etc/passwd. Only the user's primary group can be asked for: `su`
/// cannot set another, and a different one is refused rather than
/// ignored. Arguments: the user, the group (may be empty), the command.
const SU_SCRIPT: &str = r#"u=$1 g=$2; shift 2
name= pgid=
while IFS=: read -r n _ id gid _; do
  case $u in
    *[!0-9]*) [ "$n" = "$u" ] && { name=$n; pgid=$gid; break; } ;;
    *) [ "$id" = "$u" ] && { name=$n; pgid=$gid; break; } ;;
  esac
done < /etc/passwd
[ -n "$name" ] || { echo "unable to find user $u: no matching entries in passwd file" >&2; exit 126; }
if [ -n "$g" ]; then
  want=$g
  case $g in *[!0-9]*) want=$(while IFS=: read -r gn _ gi _; do [ "$gn" = "$g" ] && { echo "$gi"; break; }; done < /etc/group) ;; esac
  [ "$want" = "$pgid" ] || { echo "berth exec -u: group $g is not the primary group of $name ($pgid); only that one can be used" >&2; exit 126; }
fi
exec su -s /bin/sh -c 'exec "$0" "$@"' -- "$name" "$@""#;

/// The argv CRI Exec runs. CRI Exec has no env, user or working-dir
/// fields, so they are applied inside the container by tools the image
/// must have: a shell `cd` (-w), `su` (-u, see [`SU_SCRIPT`]) and `env`
/// (-e), in that order so the command sees all three.
pub fn exec_argv(a: &ExecArgs) -> Result<Vec<String>, CliError> {
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
    if let Some(u) = &a.user {
        let (user, group) = u.split_once(':').unwrap_or((u.as_str(), ""));
        if user.is_empty() {
            return Err(CliError::Usage(format!(
                "invalid user {u:?}: use USER[:GROUP] or UID[:GID]"
            )));
        }
        argv.extend([
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            SU_SCRIPT.to_owned(),
            "sh".to_owned(),
            user.to_owned(),
            group.to_owned(),
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
        let argv = exec_argv(&t.a).unwrap();
        assert_eq!(argv[..2], ["/bin/sh", "-c"]);
        assert_eq!(argv[3..], ["sh", "33", "33", "id", "-u"]);
        let t = T::try_parse_from(["x", "-u", ":5", "web", "id"]).unwrap();
        assert!(exec_argv(&t.a).is_err());
    }

    /// The -u script against a fake root's passwd/group, with a stub `su`
    /// that prints what it was asked to run as.
    #[test]
    fn su_script_resolves_users_and_refuses_other_groups() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path();
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            etc.join("group"),
            "root:x:0:\nwww-data:x:33:\nstaff:x:50:\n",
        )
        .unwrap();
        std::fs::write(etc.join("su"), "#!/bin/sh\necho \"su $*\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(etc.join("su"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let script = SU_SCRIPT
            .replace("/etc/passwd", &etc.join("passwd").display().to_string())
            .replace("/etc/group", &etc.join("group").display().to_string());
        let run = |user: &str, group: &str| {
            let out = std::process::Command::new("/bin/sh")
                .args(["-c", &script, "sh", user, group, "id", "-u"])
                .env("PATH", format!("{}:/usr/bin:/bin", etc.display()))
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        let expect = "su -s /bin/sh -c exec \"$0\" \"$@\" -- www-data id -u\n";
        assert_eq!(run("33", ""), (Some(0), expect.to_owned()));
        assert_eq!(run("www-data", "33"), (Some(0), expect.to_owned()));
        assert_eq!(run("33", "www-data"), (Some(0), expect.to_owned()));
        assert_eq!(run("33", "50").0, Some(126));
        assert_eq!(run("4242", "").0, Some(126));
    }
}
