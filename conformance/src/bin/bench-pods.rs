//! `bench-pods`: pod lifecycle latency and idle-pod memory of berthd
//! against containerd 1.6 + runc (issue 4, point 10). Needs root and the
//! workspace built (`cargo build --release --workspace`).
//!
//! `target/release/bench-pods [--iterations 50] [--skip-containerd]`

use anyhow::{bail, Result};
use berth_conformance::bench_cli;
use berth_conformance::pod_bench::{self, stats, Options};
use clap::Parser;

/// Pod lifecycle benchmark: berthd vs containerd 1.6 + runc, same CNI
/// config, same images, same client.
#[derive(Debug, Parser)]
struct Args {
    /// Timed lifecycle iterations per runtime.
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Untimed iterations per runtime first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Idle-pod counts at which memory is measured (comma-separated;
    /// empty to skip the density part).
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    density: Vec<usize>,
    /// Measure berthd only.
    #[arg(long)]
    skip_containerd: bool,
}

fn main() -> Result<()> {
    bench_cli::init_tracing();
    let args = Args::parse();
    if !bench_cli::is_root() {
        bail!("bench-pods needs root (namespaces, cgroups, CNI, iptables)");
    }
    if args.iterations == 0 {
        bail!("--iterations must be at least 1");
    }
    let mut density = args.density.clone();
    density.sort_unstable();
    density.dedup();
    density.retain(|n| *n > 0);
    let opts = Options {
        iterations: args.iterations,
        warmup: args.warmup,
        density,
        skip_containerd: args.skip_containerd,
    };
    let report = berth_conformance::interrupt::block_on_interruptible(pod_bench::run(&opts))?;

    println!();
    for v in &report.versions {
        println!("{v}");
    }
    println!(
        "{} timed iterations (+{} warm-up) per runtime, alternating; StopContainer timeout 0",
        opts.iterations, opts.warmup
    );
    println!();
    print!(
        "{}",
        stats::latency_table(&report.berthd, report.containerd.as_ref())
    );
    if !report.density.is_empty() {
        println!();
        print!("{}", stats::density_table(&report.density));
    }
    Ok(())
}
