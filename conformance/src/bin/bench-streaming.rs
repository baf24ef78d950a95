//! `bench-streaming`: ExecSync and streaming exec round-trip latency
//! (median/p90) and streaming stdout throughput, berthd against containerd
//! 1.6 + runc in the same run (issue 5, point 5). Needs root and the
//! workspace built (`cargo build --release --workspace`).
//!
//! `target/release/bench-streaming [--iterations 100] [--mib 256] [--skip-containerd]`
//!
//! Round trip: one `true` in a running busybox container, timed from the
//! RPC to the exit status (streaming: Exec RPC, connect, upgrade, streams,
//! status). Throughput: `dd` of zeroes to stdout, read by the client.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_conformance::bench_cli;
use berth_conformance::client::{container_config, match_pod_namespaces, Cri};
use berth_conformance::harness::images::{BUSYBOX, PAUSE};
use berth_conformance::harness::Berth;
use berth_conformance::pod_bench::{self, stats::Percentiles};
use berth_conformance::streaming::{self as st, Streams};
use berth_streaming::client::{self, ExecIo, Transport};
use clap::Parser;
use tokio::io::AsyncReadExt;

/// Streaming benchmark: berthd vs containerd 1.6 + runc, same image, same client.
#[derive(Debug, Parser)]
struct Args {
    /// Timed round trips per runtime and method.
    #[arg(long, default_value_t = 100)]
    iterations: usize,
    /// MiB streamed per throughput sample.
    #[arg(long, default_value_t = 256)]
    mib: usize,
    /// Throughput samples per runtime and transport.
    #[arg(long, default_value_t = 3)]
    samples: usize,
    /// Measure berthd only.
    #[arg(long)]
    skip_containerd: bool,
}

/// One runtime with a running container to exec into.
struct Subject {
    name: &'static str,
    cri: Cri,
    pod: String,
    ctr: String,
}

#[derive(Default)]
struct Results {
    exec_sync: Vec<Duration>,
    spdy: Vec<Duration>,
    websocket: Vec<Duration>,
    mbps_spdy: Vec<f64>,
    mbps_websocket: Vec<f64>,
}

async fn subject(name: &'static str, cri: Cri, b: &Berth) -> Result<Subject> {
    cri.wait_ready(Duration::from_secs(30))
        .await
        .with_context(|| format!("{name} not ready"))?;
    for img in [BUSYBOX, PAUSE] {
        cri.pull(&img.reference())
            .await
            .with_context(|| format!("{name}: pull {}", img.reference()))?;
    }
    let config = b.pod_config(&format!("bench-stream-{name}"));
    let pod = cri
        .run_pod(&config)
        .await
        .with_context(|| format!("{name}: RunPodSandbox"))?;
    let mut cc = container_config("sleeper", &b.busybox(), &["sleep", "1000000"]);
    match_pod_namespaces(&mut cc, &config);
    let ctr = cri
        .create_started(&pod, &cc, &config)
        .await
        .with_context(|| format!("{name}: container"))?;
    Ok(Subject {
        name,
        cri,
        pod,
        ctr,
    })
}

async fn round_trip(s: &Subject, how: Option<Transport>) -> Result<Duration> {
    let t = Instant::now();
    match how {
        None => {
            let r = s
                .cri
                .exec_sync(&s.ctr, &["true"], 10)
                .await
                .with_context(|| format!("{}: ExecSync", s.name))?;
            if r.exit_code != 0 {
                bail!("{}: ExecSync true exited {}", s.name, r.exit_code);
            }
        }
        Some(tr) => {
            let o = st::exec(&s.cri, &s.ctr, &["true"], tr, Streams::OUTPUT, None)
                .await
                .with_context(|| format!("{}: exec over {tr:?}", s.name))?;
            if !o.status.success() {
                bail!("{}: exec true over {tr:?} exited {}", s.name, o.status.0);
            }
        }
    }
    Ok(t.elapsed())
}

/// MB/s of `mib` MiB of zeroes from `dd` in the container to the client.
async fn throughput(s: &Subject, tr: Transport, mib: usize) -> Result<f64> {
    let count = format!("count={mib}");
    let cmd = ["dd", "if=/dev/zero", "bs=1048576", count.as_str()];
    let url = st::exec_url(&s.cri, &s.ctr, &cmd, Streams::OUTPUT).await?;
    let (w, mut r) = tokio::io::duplex(1 << 20);
    let counter = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0usize;
        while let Ok(k) = r.read(&mut buf).await {
            if k == 0 {
                break;
            }
            n += k;
        }
        n
    });
    let io = ExecIo {
        stdout: Some(Box::pin(w)),
        stderr: Some(Box::pin(tokio::io::sink())),
        ..Default::default()
    };
    let t = Instant::now();
    let status = client::exec(&url, tr, io)
        .await
        .with_context(|| format!("{}: dd over {tr:?}", s.name))?;
    let took = t.elapsed();
    let n = counter.await?;
    if !status.success() || n != mib << 20 {
        bail!("{}: dd over {tr:?}: exit {}, {n} bytes", s.name, status.0);
    }
    Ok(n as f64 / 1e6 / took.as_secs_f64())
}

async fn measure(subjects: &[Subject], args: &Args) -> Result<Vec<Results>> {
    let mut out: Vec<Results> = subjects.iter().map(|_| Results::default()).collect();
    let warmup = 5;
    for i in 0..warmup + args.iterations {
        // Alternate who goes first so neither always runs on a warmer cache.
        let order: Vec<usize> = if i % 2 == 0 {
            (0..subjects.len()).collect()
        } else {
            (0..subjects.len()).rev().collect()
        };
        for k in order {
            let s = &subjects[k];
            let a = round_trip(s, None).await?;
            let b = round_trip(s, Some(Transport::Spdy)).await?;
            let c = round_trip(s, Some(Transport::WebSocket)).await?;
            if i >= warmup {
                out[k].exec_sync.push(a);
                out[k].spdy.push(b);
                out[k].websocket.push(c);
            }
        }
    }
    for _ in 0..args.samples {
        for (k, s) in subjects.iter().enumerate() {
            out[k]
                .mbps_spdy
                .push(throughput(s, Transport::Spdy, args.mib).await?);
            out[k]
                .mbps_websocket
                .push(throughput(s, Transport::WebSocket, args.mib).await?);
        }
    }
    Ok(out)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn print(subjects: &[Subject], results: &[Results], args: &Args) {
    println!();
    println!(
        "{} round trips per runtime and method (+5 warm-up, alternating); throughput: median of {} x {} MiB",
        args.iterations, args.samples, args.mib
    );
    let mut header = String::from("| metric |");
    let mut rule = String::from("| --- |");
    for s in subjects {
        header.push_str(&format!(" {} |", s.name));
        rule.push_str(" --- |");
    }
    println!("{header}\n{rule}");
    let lat = |name: &str, get: &dyn Fn(&Results) -> &Vec<Duration>| {
        let mut row = format!("| {name} median / p90 (ms) |");
        for r in results {
            match Percentiles::of(get(r)) {
                Some(p) => row.push_str(&format!(" {:.2} / {:.2} |", p.median, p.p90)),
                None => row.push_str(" - |"),
            }
        }
        println!("{row}");
    };
    lat("ExecSync `true`", &|r| &r.exec_sync);
    lat("exec `true` SPDY", &|r| &r.spdy);
    lat("exec `true` WebSocket", &|r| &r.websocket);
    let tput = |name: &str, get: &dyn Fn(&Results) -> &Vec<f64>| {
        let mut row = format!("| {name} stdout (MB/s) |");
        for r in results {
            row.push_str(&format!(" {:.0} |", median(get(r))));
        }
        println!("{row}");
    };
    tput("SPDY", &|r| &r.mbps_spdy);
    tput("WebSocket", &|r| &r.mbps_websocket);
}

async fn run(args: &Args) -> Result<()> {
    let berth = tokio::task::block_in_place(Berth::start)?;
    let mut ctd = if args.skip_containerd {
        None
    } else {
        Some(tokio::task::block_in_place(|| {
            pod_bench::start_containerd(&berth)
        })?)
    };
    let result = async {
        let mut subjects = vec![subject("berthd", berth.client(), &berth).await?];
        if let Some(d) = &ctd {
            subjects.push(subject("containerd", Cri::new(&d.socket), &berth).await?);
        }
        for s in &subjects {
            let v = s.cri.version().await?;
            println!("{}: {} {}", s.name, v.runtime_name, v.runtime_version);
        }
        let results = measure(&subjects, args).await;
        for s in &subjects {
            s.cri.cleanup_pod(&s.pod).await;
        }
        print(&subjects, &results?, args);
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Some(d) = ctd.as_mut() {
        if let Err(e) = d.stop(Duration::from_secs(10)) {
            tracing::warn!(error = %e, "stopping containerd");
        }
        // containerd leaves its shims running when it exits.
        pod_bench::kill_containerd_shims(d);
    }
    drop(ctd);
    tokio::task::block_in_place(|| drop(berth));
    result
}

fn main() -> Result<()> {
    bench_cli::init_tracing();
    let args = Args::parse();
    if !bench_cli::is_root() {
        bail!("bench-streaming needs root (namespaces, cgroups, CNI)");
    }
    if args.iterations == 0 || args.samples == 0 || args.mib == 0 {
        bail!("--iterations, --samples and --mib must be at least 1");
    }
    berth_conformance::interrupt::block_on_interruptible(run(&args))
}
