//! `run`: create + start; in the foreground wait for the init (forwarding
//! signals to it, relaying its terminal when there is no --console-socket),
//! delete the container and exit with its status.

use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{bail, Context as _};
use berth_runtime::container::Container;
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use super::create::CreateFlags;
use crate::tty_relay::{self, ConsoleListener};

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
    let mut opts = a.flags.options(root, id);
    // A terminal without a socket to hand it to: relay it ourselves, like runc.
    let console = if opts.console_socket.is_none() && wants_terminal(&a.flags.bundle) {
        if a.detach {
            bail!("{}", tty_relay::DETACH_NEEDS_SOCKET);
        }
        let l = ConsoleListener::new()?;
        opts.console_socket = Some(l.path().to_path_buf());
        Some(l)
    } else {
        None
    };
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
    let master = match console.as_ref().map(ConsoleListener::receive_master) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            let _ = c.clone().delete(true);
            return Err(e);
        }
    };
    drop(console);
    if let Some(m) = &master {
        tty_relay::copy_winsize(m.as_fd());
    }
    // Blocked only now: the init was cloned with the original mask and the
    // user process must not inherit blocked signals.
    let set = tty_relay::block_signals()?;
    if let Err(e) = c.start() {
        let _ = c.clone().delete(true);
        return Err(e).with_context(|| format!("starting container {id}"));
    }
    let pid = Pid::from_raw(c.pid());
    let waited = match master {
        Some(m) => tty_relay::relay(m, pid, &set),
        None => wait_forwarding(pid, &set),
    };
    let code = match waited {
        Ok(code) => code,
        Err(e) => {
            // Nobody is left to watch the container: do not leave it behind.
            if !a.keep {
                let _ = c.delete(true);
            }
            return Err(e);
        }
    };
    if !a.keep {
        c.delete(true)
            .with_context(|| format!("deleting container {id}"))?;
    }
    Ok(super::exit_byte(code))
}

/// Whether the bundle's process asks for a terminal (an unreadable bundle is
/// reported by create instead).
fn wants_terminal(bundle: &Path) -> bool {
    berth_runtime::spec::load_bundle(bundle)
        .ok()
        .and_then(|l| l.spec.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false)
}

/// Waits for `pid`, forwarding every blocked signal but SIGCHLD to it.
fn wait_forwarding(pid: Pid, set: &SigSet) -> anyhow::Result<i32> {
    loop {
        if let Some(code) = super::reap(pid)? {
            return Ok(code);
        }
        let sig = set.wait().context("waiting for signals")?;
        if sig != Signal::SIGCHLD {
            if let Err(err) = nix::sys::signal::kill(pid, sig) {
                tracing::debug!(%err, ?sig, "forwarding signal");
            }
        }
    }
}
