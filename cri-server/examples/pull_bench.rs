//! Cold pull + unpack benchmark: berthd against containerd 1.6's CRI plugin,
//! both driven by the same tonic CRI client, both pulling from one loopback
//! registry through a hosts.toml mirror for `bench.invalid`.
//!
//! ```sh
//! cargo build --release -p berth-cri-server --bin berthd --example pull_bench
//! target/release/examples/pull_bench [BIG_MIB]   # as root; default 300
//! ```
//!
//! For each image (busybox; a 5-layer image of BIG_MIB MiB) and each runtime,
//! five cold pulls (image removed, so content and snapshots are gone, before
//! each) are timed; the median, the containerd/berthd ratio, and the peak RSS
//! (VmHWM) of each daemon are printed.

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_proto::cri;
use berth_proto::cri::image_service_client::ImageServiceClient;
use berth_test_images::{big_layout, busybox_layout, push_fixture, Registry};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

const RUNS: usize = 5;
const HOST: &str = "bench.invalid";

struct Daemon {
    name: &'static str,
    child: Child,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

fn wait_for_socket(path: &Path, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        if let Some(st) = child.try_wait()? {
            bail!("daemon exited: {st}");
        }
        if Instant::now() > deadline {
            bail!("{} did not appear", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn start_berthd(work: &Path, hosts: &Path) -> Result<Daemon> {
    let exe = std::env::current_exe()?;
    let berthd = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("berthd"))
        .context("locating berthd next to the example")?;
    let dir = work.join("berthd");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[registry]\nconfig_path = {:?}\n",
            hosts.display().to_string()
        ),
    )?;
    let socket = dir.join("state/berth.sock");
    let mut child = Command::new(&berthd)
        .arg("--config")
        .arg(&config)
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--state")
        .arg(dir.join("state"))
        .arg("--log-level")
        .arg("warn")
        .spawn()
        .with_context(|| format!("starting {}", berthd.display()))?;
    wait_for_socket(&socket, &mut child)?;
    Ok(Daemon {
        name: "berthd",
        child,
        socket,
    })
}

fn start_containerd(work: &Path, hosts: &Path) -> Result<Daemon> {
    let dir = work.join("containerd");
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("containerd.sock");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{hosts}"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = socket.display(),
            hosts = hosts.display(),
        ),
    )?;
    let log = std::fs::File::create(dir.join("containerd.log"))?;
    let mut child = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting containerd")?;
    wait_for_socket(&socket, &mut child)?;
    Ok(Daemon {
        name: "containerd",
        child,
        socket,
    })
}

async fn connect(socket: &Path) -> Result<ImageServiceClient<Channel>> {
    let path = socket.to_path_buf();
    let ch = Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await?;
    Ok(ImageServiceClient::new(ch))
}

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

/// Median of `RUNS` cold pulls, in seconds.
async fn cold_pulls(c: &mut ImageServiceClient<Channel>, image: &str) -> Result<(f64, Vec<f64>)> {
    let mut times = Vec::new();
    for _ in 0..RUNS {
        c.remove_image(cri::RemoveImageRequest { image: spec(image) })
            .await
            .context("removing before a cold pull")?;
        let started = Instant::now();
        c.pull_image(cri::PullImageRequest {
            image: spec(image),
            auth: None,
            sandbox_config: None,
        })
        .await
        .with_context(|| format!("pulling {image}"))?;
        times.push(started.elapsed().as_secs_f64());
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    Ok((sorted[RUNS / 2], times))
}

#[tokio::main]
async fn main() -> Result<()> {
    let big_mib: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(300);
    let work = tempfile::Builder::new().prefix("berth-bench-").tempdir()?;
    let registry = Registry::start()?;
    let bb = busybox_layout(&work.path().join("busybox"))?;
    push_fixture(&registry, &bb.layout, &bb.tag, "busybox:latest").await?;
    let big = big_layout(&work.path().join("big"), big_mib)?;
    push_fixture(&registry, &big.layout, &big.tag, "big:latest").await?;
    let hosts = work.path().join("certs.d");
    std::fs::create_dir_all(hosts.join(HOST))?;
    std::fs::write(
        hosts.join(HOST).join("hosts.toml"),
        format!(
            "[host.\"{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            registry.url()
        ),
    )?;
    let images = [
        ("busybox", format!("{HOST}/busybox:latest")),
        ("5-layer", format!("{HOST}/big:latest")),
    ];
    let daemons = [
        start_berthd(work.path(), &hosts)?,
        start_containerd(work.path(), &hosts)?,
    ];
    let mut medians = vec![vec![0.0; images.len()]; daemons.len()];
    // Interleave runtimes per image so both see the same machine state.
    for (i, (label, image)) in images.iter().enumerate() {
        for (d, daemon) in daemons.iter().enumerate() {
            let mut c = connect(&daemon.socket).await?;
            let (median, all) = cold_pulls(&mut c, image).await?;
            medians[d][i] = median;
            let runs: Vec<String> = all.iter().map(|t| format!("{t:.3}")).collect();
            println!(
                "{label:8} {:10} median {median:7.3}s  runs [{}]",
                daemon.name,
                runs.join(", ")
            );
        }
    }
    println!();
    for (i, (label, _)) in images.iter().enumerate() {
        println!(
            "{label:8} berthd {:.3}s  containerd {:.3}s  ratio containerd/berthd {:.2}x",
            medians[0][i],
            medians[1][i],
            medians[1][i] / medians[0][i]
        );
    }
    for daemon in &daemons {
        if let Some(kib) = daemon.peak_rss_kib() {
            println!(
                "{:10} peak RSS (VmHWM) {:.1} MiB",
                daemon.name,
                kib as f64 / 1024.0
            );
        }
    }
    Ok(())
}
