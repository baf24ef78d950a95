//! `stats`: CPU %, memory, network and PIDs of containers, from CRI
//! ListContainerStats (CPU and memory, two samples for CPU %) and
//! ListPodSandboxStats (processes, network).

use std::collections::HashMap;
use std::time::Duration;

use berth_proto::berth::v1::{ContainerSummary, InfoRequest, ListContainersRequest, TopRequest};
use berth_proto::cri;
use clap::Args;

use super::Ctx;
use crate::client::Daemon;
use crate::error::{CliError, DaemonResult};
use crate::format::{self, render_rows, short_id, units, Row};
use crate::term;

/// `berth stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long = "no-stream")]
    pub no_stream: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a template ('table', 'json', '{{.Name}}'...)
    #[arg(long)]
    pub format: Option<String>,
    /// Containers (default: all running)
    pub containers: Vec<String>,
}

/// One CPU sample: cumulative core-nanoseconds at a time (ns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSample {
    /// Timestamp, ns.
    pub at: i64,
    /// Cumulative CPU time, ns.
    pub used: u64,
}

/// CPU % between two samples (100% is one core busy), docker's way.
pub fn cpu_percent(prev: CpuSample, cur: CpuSample) -> f64 {
    let dt = cur.at - prev.at;
    if dt <= 0 || cur.used < prev.used {
        return 0.0;
    }
    (cur.used - prev.used) as f64 / dt as f64 * 100.0
}

/// What one row shows.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// CPU %.
    pub cpu: f64,
    /// Working set bytes.
    pub mem: u64,
    /// The limit (or the host's memory).
    pub limit: u64,
    /// Received bytes.
    pub rx: u64,
    /// Sent bytes.
    pub tx: u64,
    /// Processes, if known.
    pub pids: Option<u64>,
}

/// A stats row as templates see it.
pub fn row(s: &ContainerSummary, u: &Usage, trunc: bool) -> Row {
    let mut r = Row::new();
    let mem_pct = if u.limit > 0 {
        u.mem as f64 / u.limit as f64 * 100.0
    } else {
        0.0
    };
    r.insert(
        "ID".into(),
        if trunc { short_id(&s.id) } else { s.id.clone() },
    );
    r.insert(
        "Container".into(),
        if trunc { short_id(&s.id) } else { s.id.clone() },
    );
    r.insert("Name".into(), s.name.clone());
    r.insert("CPUPerc".into(), format!("{:.2}%", u.cpu));
    r.insert(
        "MemUsage".into(),
        format!(
            "{} / {}",
            units::binary_size(u.mem),
            units::binary_size(u.limit)
        ),
    );
    r.insert("MemPerc".into(), format!("{mem_pct:.2}%"));
    r.insert(
        "NetIO".into(),
        format!("{} / {}", units::human_size(u.rx), units::human_size(u.tx)),
    );
    r.insert("BlockIO".into(), "--".into());
    r.insert("PIDs".into(), u.pids.map_or("--".into(), |p| p.to_string()));
    r
}

fn header(f: &str) -> String {
    match f {
        "ID" | "Container" => "CONTAINER ID".into(),
        _ => format::default_header(f),
    }
}

const DEFAULT: &str =
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.PIDs}}";

struct Sample {
    cpu: HashMap<String, CpuSample>,
    mem: HashMap<String, (u64, u64)>,
    pod: HashMap<String, (u64, u64, Option<u64>)>,
}

fn val(v: &Option<cri::UInt64Value>) -> u64 {
    v.as_ref().map_or(0, |v| v.value)
}

async fn sample(d: &Daemon) -> Result<Sample, CliError> {
    let cs =
        d.rt.clone()
            .list_container_stats(cri::ListContainerStatsRequest { filter: None })
            .await
            .daemon()?
            .stats;
    let mut cpu = HashMap::new();
    let mut mem = HashMap::new();
    for s in cs {
        let Some(id) = s.attributes.as_ref().map(|a| a.id.clone()) else {
            continue;
        };
        if let Some(c) = &s.cpu {
            cpu.insert(
                id.clone(),
                CpuSample {
                    at: c.timestamp,
                    used: val(&c.usage_core_nano_seconds),
                },
            );
        }
        if let Some(m) = &s.memory {
            mem.insert(id, (val(&m.working_set_bytes), val(&m.available_bytes)));
        }
    }
    // Pod stats add processes and network; an older berthd may lack them.
    let mut pod = HashMap::new();
    if let Ok(r) =
        d.rt.clone()
            .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest { filter: None })
            .await
    {
        for p in r.into_inner().stats {
            let (Some(a), Some(l)) = (p.attributes, p.linux) else {
                continue;
            };
            let (rx, tx) = l.network.as_ref().map_or((0, 0), |n| {
                n.interfaces
                    .iter()
                    .chain(n.default_interface.iter())
                    .take(1)
                    .fold((0, 0), |acc, i| {
                        (acc.0 + val(&i.rx_bytes), acc.1 + val(&i.tx_bytes))
                    })
            });
            let pids = l
                .process
                .as_ref()
                .and_then(|p| p.process_count.as_ref())
                .map(|v| v.value);
            pod.insert(a.id, (rx, tx, pids));
        }
    }
    Ok(Sample { cpu, mem, pod })
}

/// Processes in the container from `top`, when the pod stats lack them.
async fn count_processes(d: &Daemon, id: &str) -> Option<u64> {
    let r = d
        .containers
        .clone()
        .top(TopRequest {
            container: id.to_owned(),
            ps_args: vec![],
        })
        .await
        .ok()?;
    Some(r.into_inner().processes.len() as u64)
}

async fn targets(d: &Daemon, a: &StatsArgs) -> Result<Vec<ContainerSummary>, CliError> {
    if a.containers.is_empty() {
        let r = d
            .containers
            .clone()
            .list(ListContainersRequest {
                all: a.all,
                filters: vec![],
                include_cri: false,
            })
            .await
            .daemon()?;
        return Ok(r.containers);
    }
    let mut out = Vec::new();
    for c in &a.containers {
        out.push(super::ps::summary_of(d, c).await?);
    }
    Ok(out)
}

/// `berth stats`.
pub async fn stats(ctx: &Ctx, a: StatsArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let host_mem = d
        .system
        .clone()
        .info(InfoRequest {})
        .await
        .map(|r| r.into_inner().memory_bytes.max(0) as u64)
        .unwrap_or(0);
    let tty = term::stdout_is_tty();
    let mut prev = sample(&d).await?;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let list = targets(&d, &a).await?;
        let cur = sample(&d).await?;
        let mut top_pids = HashMap::new();
        for s in &list {
            if cur.pod.get(&s.pod_id).and_then(|p| p.2).is_none() && s.state == "running" {
                top_pids.insert(s.id.clone(), count_processes(&d, &s.id).await);
            }
        }
        let rows: Vec<Row> = list
            .iter()
            .map(|s| {
                let cpu = match (prev.cpu.get(&s.id), cur.cpu.get(&s.id)) {
                    (Some(p), Some(c)) => cpu_percent(*p, *c),
                    _ => 0.0,
                };
                let (mem, avail) = cur.mem.get(&s.id).copied().unwrap_or((0, 0));
                let limit = if avail > 0 { mem + avail } else { host_mem };
                let (rx, tx, pids) = cur.pod.get(&s.pod_id).copied().unwrap_or((0, 0, None));
                let pids = pids.or_else(|| top_pids.get(&s.id).copied().flatten());
                row(
                    s,
                    &Usage {
                        cpu,
                        mem,
                        limit,
                        rx,
                        tx,
                        pids,
                    },
                    !a.no_trunc,
                )
            })
            .collect();
        let out = render_rows(&rows, a.format.as_deref(), DEFAULT, &header)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        if tty && !a.no_stream {
            // Redraw in place like docker's live view.
            print!("\x1b[2J\x1b[H{out}");
        } else {
            print!("{out}");
        }
        if a.no_stream {
            return Ok(());
        }
        prev = cur;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_from_two_samples() {
        let a = CpuSample { at: 0, used: 0 };
        let b = CpuSample {
            at: 1_000_000_000,
            used: 500_000_000,
        };
        assert!((cpu_percent(a, b) - 50.0).abs() < 1e-9);
        assert_eq!(cpu_percent(b, a), 0.0);
        let c = CpuSample {
            at: 2_000_000_000,
            used: 2_500_000_000,
        };
        assert!((cpu_percent(b, c) - 200.0).abs() < 1e-9);
    }

    #[test]
    fn stats_row() {
        let s = ContainerSummary {
            id: "0123456789abcdef".into(),
            name: "web".into(),
            ..Default::default()
        };
        let u = Usage {
            cpu: 1.234,
            mem: 1 << 20,
            limit: 1 << 30,
            rx: 1234,
            tx: 0,
            pids: Some(3),
        };
        let r = row(&s, &u, true);
        assert_eq!(r["CPUPerc"], "1.23%");
        assert_eq!(r["MemUsage"], "1MiB / 1GiB");
        assert_eq!(r["MemPerc"], "0.10%");
        assert_eq!(r["NetIO"], "1.23kB / 0B");
        assert_eq!(r["PIDs"], "3");
        let out = render_rows(&[r], None, DEFAULT, &header).unwrap();
        assert!(out.starts_with("CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O       PIDS\n"), "{out}");
    }
}
