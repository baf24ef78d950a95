//! The command line: global flags, subcommands and dispatch. Each
//! subcommand's flags and handler live in their own module.

pub mod archive;
pub mod attach;
pub mod completion;
pub mod cp;
pub mod create;
pub mod exec;
pub mod images;
pub mod inspect;
pub mod lifecycle;
pub mod login;
pub mod logs;
pub mod ps;
pub mod pull;
pub mod run;
pub mod stats;
pub mod stdio;
pub mod system;
pub mod volume;

use clap::{Parser, Subcommand};

use crate::client::{self, Daemon, DEFAULT_HOST};
use crate::error::CliError;

/// berth: run containers the Docker way on berthd.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, propagate_version = true)]
pub struct Cli {
    /// Daemon socket to connect to.
    #[arg(short = 'H', long = "host", env = "BERTH_HOST", default_value = DEFAULT_HOST, global = true, overrides_with = "host")]
    pub host: String,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every top-level command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and run a new container from an image
    Run(run::RunArgs),
    /// Create a new container
    Create(create::CreateArgs),
    /// Start one or more stopped containers
    Start(lifecycle::StartArgs),
    /// Stop one or more running containers
    Stop(lifecycle::StopArgs),
    /// Restart one or more containers
    Restart(lifecycle::StopArgs),
    /// Kill one or more running containers
    Kill(lifecycle::KillArgs),
    /// Remove one or more containers
    Rm(lifecycle::RmArgs),
    /// List containers
    #[command(alias = "ls")]
    Ps(ps::PsArgs),
    /// Fetch the logs of a container
    Logs(logs::LogsArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// Attach local standard input, output, and error streams to a running container
    Attach(attach::AttachArgs),
    /// Return low-level information on containers, images or volumes
    Inspect(inspect::InspectArgs),
    /// Display the running processes of a container
    Top(lifecycle::TopArgs),
    /// Display a live stream of container(s) resource usage statistics
    Stats(stats::StatsArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// List port mappings for the container
    Port(lifecycle::PortArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(lifecycle::ContainersArgs),
    /// Rename a container
    Rename(lifecycle::RenameArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(lifecycle::OneContainer),
    /// Download an image from a registry
    Pull(pull::PullArgs),
    /// Upload an image to a registry
    Push(pull::PushArgs),
    /// List images
    Images(images::ImagesArgs),
    /// Remove one or more images
    Rmi(images::RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(images::TagArgs),
    /// Show the history of an image
    History(images::HistoryArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(archive::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(archive::LoadArgs),
    /// Create a new image from a container's changes
    Commit(archive::CommitArgs),
    /// Log in to a registry
    Login(login::LoginArgs),
    /// Log out from a registry
    Logout(login::LogoutArgs),
    /// Manage images
    Image {
        /// The image command.
        #[command(subcommand)]
        cmd: ImageCmd,
    },
    /// Manage containers
    Container {
        /// The container command.
        #[command(subcommand)]
        cmd: ContainerCmd,
    },
    /// Manage volumes
    Volume {
        /// The volume command.
        #[command(subcommand)]
        cmd: volume::VolumeCmd,
    },
    /// Manage berthd
    System {
        /// The system command.
        #[command(subcommand)]
        cmd: system::SystemCmd,
    },
    /// Display system-wide information
    Info(system::InfoArgs),
    /// Show the berth version information
    Version(system::VersionArgs),
    /// Generate the shell completion script
    Completion(completion::CompletionArgs),
}

/// `berth image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// List images
    #[command(alias = "list")]
    Ls(images::ImagesArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(images::RmiArgs),
    /// Display detailed information on one or more images
    Inspect(inspect::TypedInspectArgs),
    /// Download an image from a registry
    Pull(pull::PullArgs),
    /// Upload an image to a registry
    Push(pull::PushArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(images::TagArgs),
    /// Show the history of an image
    History(images::HistoryArgs),
    /// Remove unused images
    Prune(images::PruneArgs),
    /// Save one or more images to a tar archive
    Save(archive::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(archive::LoadArgs),
}

/// `berth container ...`.
#[derive(Debug, Subcommand)]
pub enum ContainerCmd {
    /// List containers
    #[command(alias = "ps", alias = "list")]
    Ls(ps::PsArgs),
    /// Create and run a new container from an image
    Run(run::RunArgs),
    /// Create a new container
    Create(create::CreateArgs),
    /// Start one or more stopped containers
    Start(lifecycle::StartArgs),
    /// Stop one or more running containers
    Stop(lifecycle::StopArgs),
    /// Restart one or more containers
    Restart(lifecycle::StopArgs),
    /// Kill one or more running containers
    Kill(lifecycle::KillArgs),
    /// Remove one or more containers
    #[command(alias = "remove")]
    Rm(lifecycle::RmArgs),
    /// Fetch the logs of a container
    Logs(logs::LogsArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// Display detailed information on one or more containers
    Inspect(inspect::TypedInspectArgs),
    /// Copy files/folders between a container and the local filesystem
    Cp(cp::CpArgs),
    /// Display the running processes of a container
    Top(lifecycle::TopArgs),
    /// Display resource usage statistics
    Stats(stats::StatsArgs),
    /// List port mappings for the container
    Port(lifecycle::PortArgs),
    /// Block until one or more containers stop
    Wait(lifecycle::ContainersArgs),
    /// Rename a container
    Rename(lifecycle::RenameArgs),
    /// Inspect changes on a container's filesystem
    Diff(lifecycle::OneContainer),
    /// Attach to a running container
    Attach(attach::AttachArgs),
    /// Create a new image from a container's changes
    Commit(archive::CommitArgs),
}

impl ContainerCmd {
    /// `run`/`create`, whose failures exit 125.
    pub fn is_run_like(&self) -> bool {
        matches!(self, ContainerCmd::Run(_) | ContainerCmd::Create(_))
    }
}

/// What every command gets: the daemon address, connected on demand.
pub struct Ctx {
    /// The `-H` value.
    pub host: String,
}

impl Ctx {
    /// Connects to berthd.
    pub async fn daemon(&self) -> Result<Daemon, CliError> {
        client::connect(&self.host).await
    }
}

/// Runs the parsed command.
pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    crate::error::set_host(&cli.host);
    let ctx = Ctx { host: cli.host };
    let ctx = &ctx;
    match cli.command {
        Command::Run(a) => run::run(ctx, a).await,
        Command::Create(a) => create::create(ctx, a).await,
        Command::Start(a) => lifecycle::start(ctx, a).await,
        Command::Stop(a) => lifecycle::stop(ctx, a, false).await,
        Command::Restart(a) => lifecycle::stop(ctx, a, true).await,
        Command::Kill(a) => lifecycle::kill(ctx, a).await,
        Command::Rm(a) => lifecycle::rm(ctx, a).await,
        Command::Ps(a) => ps::ps(ctx, a).await,
        Command::Logs(a) => logs::logs(ctx, a).await,
        Command::Exec(a) => exec::exec(ctx, a).await,
        Command::Attach(a) => attach::attach(ctx, a).await,
        Command::Inspect(a) => inspect::inspect(ctx, a).await,
        Command::Top(a) => lifecycle::top(ctx, a).await,
        Command::Stats(a) => stats::stats(ctx, a).await,
        Command::Cp(a) => cp::cp(ctx, a).await,
        Command::Port(a) => lifecycle::port(ctx, a).await,
        Command::Wait(a) => lifecycle::wait(ctx, a).await,
        Command::Rename(a) => lifecycle::rename(ctx, a).await,
        Command::Diff(a) => lifecycle::diff(ctx, a).await,
        Command::Pull(a) => pull::pull(ctx, a).await,
        Command::Push(a) => pull::push(ctx, a).await,
        Command::Images(a) => images::images(ctx, a).await,
        Command::Rmi(a) => images::rmi(ctx, a).await,
        Command::Tag(a) => images::tag(ctx, a).await,
        Command::History(a) => images::history(ctx, a).await,
        Command::Save(a) => archive::save(ctx, a).await,
        Command::Load(a) => archive::load(ctx, a).await,
        Command::Commit(a) => archive::commit(ctx, a).await,
        Command::Login(a) => login::login(ctx, a).await,
        Command::Logout(a) => login::logout(a),
        Command::Image { cmd } => image_cmd(ctx, cmd).await,
        Command::Container { cmd } => container_cmd(ctx, cmd).await,
        Command::Volume { cmd } => volume::volume(ctx, cmd).await,
        Command::System { cmd } => system::system(ctx, cmd).await,
        Command::Info(a) => system::info(ctx, a).await,
        Command::Version(a) => system::version(ctx, a).await,
        Command::Completion(a) => completion::completion(a),
    }
}

async fn image_cmd(ctx: &Ctx, cmd: ImageCmd) -> anyhow::Result<()> {
    match cmd {
        ImageCmd::Ls(a) => images::images(ctx, a).await,
        ImageCmd::Rm(a) => images::rmi(ctx, a).await,
        ImageCmd::Inspect(a) => inspect::inspect_typed(ctx, a, inspect::Kind::Image).await,
        ImageCmd::Pull(a) => pull::pull(ctx, a).await,
        ImageCmd::Push(a) => pull::push(ctx, a).await,
        ImageCmd::Tag(a) => images::tag(ctx, a).await,
        ImageCmd::History(a) => images::history(ctx, a).await,
        ImageCmd::Prune(a) => images::prune(ctx, a).await,
        ImageCmd::Save(a) => archive::save(ctx, a).await,
        ImageCmd::Load(a) => archive::load(ctx, a).await,
    }
}

async fn container_cmd(ctx: &Ctx, cmd: ContainerCmd) -> anyhow::Result<()> {
    match cmd {
        ContainerCmd::Ls(a) => ps::ps(ctx, a).await,
        ContainerCmd::Run(a) => run::run(ctx, a).await,
        ContainerCmd::Create(a) => create::create(ctx, a).await,
        ContainerCmd::Start(a) => lifecycle::start(ctx, a).await,
        ContainerCmd::Stop(a) => lifecycle::stop(ctx, a, false).await,
        ContainerCmd::Restart(a) => lifecycle::stop(ctx, a, true).await,
        ContainerCmd::Kill(a) => lifecycle::kill(ctx, a).await,
        ContainerCmd::Rm(a) => lifecycle::rm(ctx, a).await,
        ContainerCmd::Logs(a) => logs::logs(ctx, a).await,
        ContainerCmd::Exec(a) => exec::exec(ctx, a).await,
        ContainerCmd::Inspect(a) => inspect::inspect_typed(ctx, a, inspect::Kind::Container).await,
        ContainerCmd::Cp(a) => cp::cp(ctx, a).await,
        ContainerCmd::Top(a) => lifecycle::top(ctx, a).await,
        ContainerCmd::Stats(a) => stats::stats(ctx, a).await,
        ContainerCmd::Port(a) => lifecycle::port(ctx, a).await,
        ContainerCmd::Wait(a) => lifecycle::wait(ctx, a).await,
        ContainerCmd::Rename(a) => lifecycle::rename(ctx, a).await,
        ContainerCmd::Diff(a) => lifecycle::diff(ctx, a).await,
        ContainerCmd::Attach(a) => attach::attach(ctx, a).await,
        ContainerCmd::Commit(a) => archive::commit(ctx, a).await,
    }
}

/// Runs `f` on each name, printing the name on success (docker's `stop
/// a b`): every name is tried, the exit is 1 if any failed.
pub async fn for_each<F, Fut>(names: &[String], mut f: F) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>, CliError>>,
{
    let mut failed = false;
    for n in names {
        match f(n.clone()).await {
            Ok(Some(out)) => println!("{out}"),
            Ok(None) => {}
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    if failed {
        return Err(CliError::Exit(1).into());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "cli_tests.rs"]
mod tests;
