//! `bench-pull`: cold CRI PullImage times of berthd against containerd 1.6
//! from a loopback registry (issue 3, point 7). Needs root.
//!
//! `cargo run --release -p berth-conformance --bin bench-pull -- [--iterations 5]`

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use berth_conformance::bench_cli;
use berth_conformance::pull_bench::images::BigImageParams;
use berth_conformance::pull_bench::{self, measure, Options};
use clap::Parser;

/// Cold pull benchmark: berthd vs containerd 1.6 (CRI), same registry,
/// same hosts.toml mirror, same client.
#[derive(Debug, Parser)]
struct Args {
    /// Timed cold pulls per image and runtime.
    #[arg(long, default_value_t = 5)]
    iterations: usize,
    /// Untimed cold pulls per image and runtime before timing.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Layers of the big image.
    #[arg(long, default_value_t = 5)]
    big_layers: usize,
    /// MiB of file data per big-image layer.
    #[arg(long, default_value_t = 60)]
    big_layer_mib: u64,
    /// berthd binary (default: build the workspace's release berthd when
    /// run through cargo, else the berthd next to this executable).
    #[arg(long, env = "BERTHD")]
    berthd: Option<PathBuf>,
    /// berthd --log-level (`info` logs per-pull timings in its log).
    #[arg(long, default_value = "info")]
    berthd_log_level: String,
    /// Where the temporary work directory goes (on a real disk, not tmpfs).
    #[arg(long, default_value = "/var/tmp")]
    work_parent: PathBuf,
    /// Keep the work directory (daemon logs, configs) after the run.
    #[arg(long)]
    keep: bool,
}

/// The release berthd: built now when we run under cargo (so it is never
/// stale), then taken from next to this executable.
fn locate_berthd() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating bench-pull itself")?;
    let dir = exe.parent().context("bench-pull has no parent directory")?;
    let candidate = dir.join("berthd");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("workspace root")?;
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace)
            .args(["build", "-p", "berth-cri-server", "--bin", "berthd"]);
        if dir.ends_with("release") {
            cmd.arg("--release");
        }
        let status = cmd.status().context("running cargo build for berthd")?;
        if !status.success() {
            bail!("cargo build -p berth-cri-server --bin berthd failed ({status})");
        }
    }
    if !candidate.is_file() {
        bail!(
            "no berthd at {}: build it (cargo build --release -p berth-cri-server) or pass --berthd / BERTHD",
            candidate.display()
        );
    }
    Ok(candidate)
}

fn main() -> Result<()> {
    bench_cli::init_tracing();
    let args = Args::parse();
    if !bench_cli::is_root() {
        bail!("bench-pull needs root (overlay snapshots, containerd)");
    }
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let berthd = match args.berthd.clone() {
        Some(p) => p,
        None => locate_berthd()?,
    };
    let opts = Options {
        iterations: args.iterations,
        warmup: args.warmup,
        big: BigImageParams {
            layers: args.big_layers,
            layer_mib: args.big_layer_mib,
        },
        berthd,
        berthd_log_level: args.berthd_log_level.clone(),
        work_parent: args.work_parent.clone(),
        keep: args.keep,
    };
    let report = berth_conformance::interrupt::block_on_interruptible(pull_bench::run(&opts))?;

    println!();
    for (name, v) in &report.versions {
        println!("{name}: {v}");
    }
    for img in &report.images {
        println!(
            "image {}: {} layers, {:.1} MB compressed, pulled as {}",
            img.label,
            img.layers,
            img.compressed_bytes as f64 / 1e6,
            img.reference
        );
    }
    println!(
        "cold pulls: {} timed (+{} warm-up) per image and runtime, interleaved",
        opts.iterations, opts.warmup
    );
    println!();
    print!("{}", measure::table(&report.series, "containerd", "berthd"));
    println!();
    print!("{}", measure::raw_samples(&report.series));
    if let Some(p) = &report.kept {
        println!("work directory kept: {}", p.display());
    }
    Ok(())
}
