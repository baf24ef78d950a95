//! `berth-runtime`: runc's command line over the berth-runtime library.
//!
//! The process stays single-threaded: the library clones container
//! processes from it.

mod commands;
mod log;
mod tty_relay;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// Global flags, named and shaped like runc's.
#[derive(Debug, Parser)]
#[command(
    name = "berth-runtime",
    version,
    about = "berth's OCI runtime (runc-compatible command line)"
)]
pub struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    pub root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use the systemd cgroup driver (not supported yet).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Path to criu (accepted for compatibility, unused).
    #[arg(long, global = true, hide = true)]
    pub criu: Option<String>,
    /// The command.
    #[command(subcommand)]
    pub command: commands::Command,
}

/// `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// JSON lines with "level", "msg", "time" (what containerd parses).
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _guard = match log::init(cli.log.as_deref(), cli.log_format, cli.debug) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("berth-runtime: opening log: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let logged = cli.log.is_some();
    if cli.systemd_cgroup {
        return fail(
            anyhow::anyhow!("systemd cgroup driver is not supported yet; use cgroupfs"),
            logged,
        );
    }
    match commands::run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => fail(e, logged),
    }
}

/// Reports a fatal error on stderr and, with `--log`, in the log file
/// (containerd reads the last error line from there), like runc.
fn fail(e: anyhow::Error, logged: bool) -> ExitCode {
    // Library errors often print their cause inline too; skip repeats.
    let mut msg = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if msg.contains(&s) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&s);
    }
    if logged {
        tracing::error!("{msg}");
    }
    eprintln!("berth-runtime: {msg}");
    ExitCode::FAILURE
}
