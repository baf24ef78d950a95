//! `berth`: the Docker workflow at a terminal, talking to berthd over its
//! Unix socket (CRI plus the berth.v1 extension API).

mod auth;
mod client;
mod cmd;
mod cpath;
mod error;
mod format;
mod parse;
mod progress;
mod term;

use std::process::ExitCode;

use clap::Parser;

use crate::cmd::{Cli, Command};

fn main() -> ExitCode {
    init_tracing();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 1,
                _ => 125,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let run_like = matches!(cli.command, Command::Run(_) | Command::Create(_))
        || matches!(&cli.command, Command::Container { cmd } if cmd.is_run_like());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: starting the async runtime: {e}");
            return ExitCode::from(125);
        }
    };
    let result = rt.block_on(cmd::dispatch(cli));
    // Background stdin readers must not keep the process alive.
    rt.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let (code, msg) = error::exit_for(&e, run_like);
            if let Some(m) = msg {
                eprintln!("{m}");
            }
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

/// Logs go to stderr, off unless `BERTH_LOG` asks (`BERTH_LOG=debug`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
