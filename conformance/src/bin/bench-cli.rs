//! `bench-cli`: wall time of `berth run --rm IMAGE true` against
//! `podman run --rm IMAGE true` and crictl's runp+create+start+wait+rmp
//! (issue 6, item 6). Needs root and the workspace built
//! (`cargo build --release --workspace`).
//!
//! `target/release/bench-cli [--runs 20] [--warmup 2] [--skip-podman] [--no-install] [--crictl PATH]`

use std::path::PathBuf;

use anyhow::{bail, Result};
use berth_conformance::bench_cli;
use berth_conformance::cli_bench::{self, Options, CRICTL_BIN};
use clap::Parser;

/// One throw-away container from a terminal: berth vs podman vs crictl.
#[derive(Debug, Parser)]
struct Args {
    /// Timed runs per command.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Untimed runs per command first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Measure berth (and crictl) only.
    #[arg(long)]
    skip_podman: bool,
    /// Do not apt-get install podman when it is missing.
    #[arg(long)]
    no_install: bool,
    /// crictl binary (its column is skipped when absent).
    #[arg(long, default_value = CRICTL_BIN)]
    crictl: PathBuf,
}

fn main() -> Result<()> {
    bench_cli::init_tracing();
    let args = Args::parse();
    if !bench_cli::is_root() {
        bail!("bench-cli needs root (berthd, podman and crictl run containers)");
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let opts = Options {
        runs: args.runs,
        warmup: args.warmup,
        skip_podman: args.skip_podman,
        install_podman: !args.no_install,
        crictl: args.crictl,
    };
    let report = cli_bench::run(&opts)?;
    println!();
    for v in &report.versions {
        println!("{v}");
    }
    for n in &report.notes {
        println!("note: {n}");
    }
    println!(
        "{} timed runs (+{} warm-up) per command, alternating; wall time of the whole command line(s)",
        opts.runs, opts.warmup
    );
    println!();
    print!("{}", cli_bench::table(&report));
    Ok(())
}
