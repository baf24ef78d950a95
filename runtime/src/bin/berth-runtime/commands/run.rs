//! `run`: create + start; in the foreground wait for the init (forwarding
//! signals to it), delete the container and exit with its status.

use std::path::Path;

use anyhow::Context as _;
use berth_runtime::container::Container;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::create::CreateFlags;

/// `run` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub flags: CreateFlags,
    /// Return after start instead of waiting.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep the container's state after it exits.
    #[arg(long)]
    pub keep: bool,
    /// Container id.
    pub container_id: String,
}

/// Runs `run`.
pub fn run(root: &Path, a: &Args) -> anyhow::Result<u8> {
    let id = &a.container_id;
    let opts = a.flags.options(root, id);
    // The init may be a grandchild (pid namespace under a joined user
    // namespace); as subreaper we still get to wait for it.
    nix::sys::prctl::set_child_subreaper(true).context("prctl(PR_SET_CHILD_SUBREAPER)")?;
    let c = Container::create(&opts).with_context(|| format!("creating container {id}"))?;
    if a.detach {
        if let Err(e) = c.start() {
            let _ = c.clone().delete(true);
            return Err(e).with_context(|| format!("starting container {id}"));
        }
        return Ok(0);
    }
    // Blocked only now: the init was cloned with the original mask and the
    // user process must not inherit blocked signals.
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set.thread_block().context("blocking signals")?;
    if let Err(e) = c.start() {
        let _ = c.clone().delete(true);
        return Err(e).with_context(|| format!("starting container {id}"));
    }
    let pid = Pid::from_raw(c.pid());
    let code = loop {
        if let Some(code) = reap(pid)? {
            break code;
        }
        let sig = set.wait().context("waiting for signals")?;
        if sig != Signal::SIGCHLD {
            if let Err(err) = nix::sys::signal::kill(pid, sig) {
                tracing::debug!(%err, ?sig, "forwarding signal");
            }
        }
    };
    if !a.keep {
        c.delete(true)
            .with_context(|| format!("deleting container {id}"))?;
    }
    Ok(super::exit_byte(code))
}

/// Exit code once `pid` has exited.
fn reap(pid: Pid) -> anyhow::Result<Option<i32>> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Some(128 + sig as i32)),
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e).context("waitpid"),
        }
    }
}
