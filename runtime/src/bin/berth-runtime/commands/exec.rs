//! `exec`.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context as _};
use berth_runtime::container::{Container, ExecOptions};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{BoxBuilder, Capability, Process};

use crate::tty_relay::{self, ConsoleListener};

/// `exec` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// process.json to run (instead of the command line).
    #[arg(short = 'p', long)]
    pub process: Option<PathBuf>,
    /// Allocate a pty (relayed here unless --console-socket is given).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Unix socket receiving the pty master.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables (KEY=value).
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// uid[:gid] to run as.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Additional gids.
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// Extra capabilities.
    #[arg(short = 'c', long = "cap")]
    pub caps: Vec<String>,
    /// Set no_new_privs.
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Return once the process started.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// File to write the process' pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Pass N extra fds (from 3).
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// AppArmor profile for the process.
    #[arg(long)]
    pub apparmor: Option<String>,
    /// SELinux label for the process.
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// Container id.
    pub container_id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Runs `exec`; the exit code is the process' unless --detach.
pub fn run(root: &Path, a: &Args) -> anyhow::Result<u8> {
    let c = Container::load(root, &a.container_id)?;
    let mut process = build_process(&c, a)?;
    // A terminal without a socket to hand it to: relay it ourselves, like runc.
    let console = if process.terminal().unwrap_or(false) && a.console_socket.is_none() {
        if a.detach {
            bail!("{}", tty_relay::DETACH_NEEDS_SOCKET);
        }
        // The process runs before the master reaches us: size the pty upfront.
        if let Some((rows, cols)) = tty_relay::caller_winsize() {
            let size = BoxBuilder::default()
                .height(u64::from(rows))
                .width(u64::from(cols))
                .build()
                .context("console size")?;
            process.set_console_size(Some(size));
        }
        Some(ConsoleListener::new()?)
    } else {
        None
    };
    let opts = ExecOptions {
        process,
        console_socket: a
            .console_socket
            .clone()
            .or_else(|| console.as_ref().map(|l| l.path().to_path_buf())),
        pid_file: a.pid_file.clone(),
        preserve_fds: a.preserve_fds,
        stdio: None,
    };
    let p = c
        .exec(&opts)
        .with_context(|| format!("exec in container {}", a.container_id))?;
    if a.detach {
        return Ok(0);
    }
    let Some(console) = console else {
        return Ok(super::exit_byte(p.wait()?));
    };
    let pid = Pid::from_raw(p.pid);
    let relayed = console.receive_master().and_then(|master| {
        drop(console);
        let set = tty_relay::block_signals()?;
        tty_relay::relay(master, pid, &set)
    });
    match relayed {
        Ok(code) => Ok(super::exit_byte(code)),
        Err(e) => {
            // Nobody is left to talk to the process: do not leave it behind.
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = p.wait();
            Err(e)
        }
    }
}

fn build_process(c: &Container, a: &Args) -> anyhow::Result<Process> {
    if let Some(path) = &a.process {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut p: Process =
            serde_json::from_slice(&data).with_context(|| format!("parsing {}", path.display()))?;
        if a.tty {
            p.set_terminal(Some(true));
        }
        return Ok(p);
    }
    if a.command.is_empty() {
        bail!("exec needs a command or --process");
    }
    let mut p = c
        .spec()?
        .process()
        .clone()
        .context("container has no process in its spec")?;
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if !a.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for e in &a.env {
            let key = e.split('=').next().unwrap_or(e);
            env.retain(|old| old.split('=').next() != Some(key));
            env.push(e.clone());
        }
        p.set_env(Some(env));
    }
    if let Some(u) = &a.user {
        let (uid, gid) = match u.split_once(':') {
            Some((u, g)) => (u.parse::<u32>(), Some(g.parse::<u32>())),
            None => (u.parse::<u32>(), None),
        };
        let uid = uid.with_context(|| format!("--user {u}: need numeric uid[:gid]"))?;
        p.user_mut().set_uid(uid);
        if let Some(g) = gid {
            p.user_mut()
                .set_gid(g.with_context(|| format!("--user {u}: need numeric uid[:gid]"))?);
        }
    }
    if !a.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(a.additional_gids.clone()));
    }
    if !a.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.caps {
            let up = name.to_ascii_uppercase();
            let full = if up.starts_with("CAP_") {
                up
            } else {
                format!("CAP_{up}")
            };
            let cap =
                Capability::from_str(&full).map_err(|e| anyhow::anyhow!("--cap {name}: {e}"))?;
            for set in [
                caps.bounding().clone(),
                caps.effective().clone(),
                caps.permitted().clone(),
            ]
            .iter()
            .enumerate()
            {
                let mut s = set.1.clone().unwrap_or_default();
                s.insert(cap);
                match set.0 {
                    0 => caps.set_bounding(Some(s)),
                    1 => caps.set_effective(Some(s)),
                    _ => caps.set_permitted(Some(s)),
                };
            }
        }
        p.set_capabilities(Some(caps));
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &a.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    if let Some(label) = &a.process_label {
        p.set_selinux_label(Some(label.clone()));
    }
    Ok(p)
}
