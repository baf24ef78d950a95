//! One file per subcommand; `run` dispatches.

mod create;
mod delete;
mod events;
mod exec;
mod features;
mod kill;
mod list;
mod pause;
mod ps;
mod run;
mod spec;
mod start;
mod state;
mod update;

use anyhow::Context as _;
use clap::Subcommand;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::Cli;

/// runc's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container (its process waits for `start`).
    Create(create::Args),
    /// Start a created container.
    Start(start::Args),
    /// Create and start a container, wait for it, then delete it.
    Run(run::Args),
    /// Print the state of a container as JSON.
    State(state::Args),
    /// Send a signal to the container's init (or every process with --all).
    Kill(kill::Args),
    /// Delete a container and its resources.
    Delete(delete::Args),
    /// Run a new process inside a container.
    Exec(exec::Args),
    /// List the processes of a container.
    Ps(ps::Args),
    /// Stream container stats and OOM events.
    Events(events::Args),
    /// Update a container's resource limits.
    Update(update::Args),
    /// Freeze every process of a container.
    Pause(pause::Args),
    /// Thaw a paused container.
    Resume(pause::Args),
    /// Print what this runtime supports (runtime-spec features).
    Features,
    /// Write a default config.json.
    Spec(spec::Args),
    /// List containers.
    #[command(alias = "ls")]
    List(list::Args),
}

/// Runs the chosen command; the value is the process exit code.
pub fn run(cli: &Cli) -> anyhow::Result<u8> {
    let root = cli.root.as_path();
    match &cli.command {
        Command::Create(a) => create::run(root, a).map(|()| 0),
        Command::Start(a) => start::run(root, a).map(|()| 0),
        Command::Run(a) => run::run(root, a),
        Command::State(a) => state::run(root, a).map(|()| 0),
        Command::Kill(a) => kill::run(root, a).map(|()| 0),
        Command::Delete(a) => delete::run(root, a).map(|()| 0),
        Command::Exec(a) => exec::run(root, a),
        Command::Ps(a) => ps::run(root, a).map(|()| 0),
        Command::Events(a) => events::run(root, a).map(|()| 0),
        Command::Update(a) => update::run(root, a).map(|()| 0),
        Command::Pause(a) => pause::pause(root, a).map(|()| 0),
        Command::Resume(a) => pause::resume(root, a).map(|()| 0),
        Command::Features => features::run().map(|()| 0),
        Command::Spec(a) => spec::run(a).map(|()| 0),
        Command::List(a) => list::run(root, a).map(|()| 0),
    }
}

/// Exit status as a process exit code byte.
pub fn exit_byte(code: i32) -> u8 {
    u8::try_from(code & 0xff).unwrap_or(1)
}

/// Exit code once `pid` has exited (128+signal when killed); `None` while it runs.
pub fn reap(pid: Pid) -> anyhow::Result<Option<i32>> {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Some(128 + sig as i32)),
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e).with_context(|| format!("waitpid {pid}")),
        }
    }
}
