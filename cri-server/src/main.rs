//! `berthd`: the berth CRI daemon.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use berth_cri_server::config::{Config, Overrides};
use berth_cri_server::server::{shutdown_signal, Daemon};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// berthd serves the Kubernetes CRI v1 on a Unix socket.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file (default /etc/berth/config.toml, used when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// CRI socket path (default STATE/berth.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Persistent data directory (default /var/lib/berth).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Runtime state directory (default /run/berth).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Log filter, e.g. info, debug, berth_image=debug.
    #[arg(long)]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let overrides = Overrides {
        socket: args.socket,
        root: args.root,
        state: args.state,
        log_level: args.log_level,
    };
    match run(args.config, overrides) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = ?err, "berthd failed");
            eprintln!("berthd: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Marks every inherited descriptor above stderr close-on-exec, so shims
/// (which outlive berthd) and their children never hold what berthd's own
/// parent left open (locks, pipes). Runs before any thread exists.
fn cloexec_inherited_fds() {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets a flag on
    // descriptors 3 and up; it takes no pointers and closes nothing.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        tracing::warn!(%err, "close_range(CLOEXEC) failed: inherited descriptors may leak to shims");
    }
}

fn run(config_path: Option<PathBuf>, overrides: Overrides) -> anyhow::Result<()> {
    let config =
        Config::load(config_path.as_deref(), &overrides).context("loading configuration")?;
    let filter = EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("invalid log level {:?}", config.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    if config.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    // Still single-threaded: nothing can be spawned with a leaked descriptor.
    cloexec_inherited_fds();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let daemon = Daemon::bind(&config).await.context("starting berthd")?;
        daemon.serve(shutdown_signal()).await.context("serving")
    })
}
