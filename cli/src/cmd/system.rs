//! `info`, `version`, `system df`, `system prune`.

use berth_proto::berth::v1::{
    DiskUsageRequest, DiskUsageResponse, InfoRequest, InfoResponse, SystemPruneRequest,
};
use berth_proto::cri;
use clap::{Args, Subcommand};
use serde_json::json;

use super::Ctx;
use crate::error::{CliError, DaemonResult};
use crate::format::{table, units};

/// `berth system ...`.
#[derive(Debug, Subcommand)]
pub enum SystemCmd {
    /// Display system-wide information
    Info(InfoArgs),
    /// Show berth disk usage
    Df(DfArgs),
    /// Remove unused data
    Prune(PruneArgs),
}

/// `berth info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Format output ('json' or a template over the JSON)
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

/// `berth version`.
#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Format output ('json' or a template over the JSON)
    #[arg(short = 'f', long)]
    pub format: Option<String>,
}

/// `berth system df`.
#[derive(Debug, Args)]
pub struct DfArgs {
    /// Show detailed information on space usage
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// `berth system prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused images not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// Runs a system command.
pub async fn system(ctx: &Ctx, cmd: SystemCmd) -> anyhow::Result<()> {
    match cmd {
        SystemCmd::Info(a) => info(ctx, a).await,
        SystemCmd::Df(a) => df(ctx, a).await,
        SystemCmd::Prune(a) => prune(ctx, a).await,
    }
}

fn info_json(i: &InfoResponse) -> serde_json::Value {
    json!({
        "ServerVersion": i.version, "GitCommit": i.git_commit, "ApiVersion": i.api_version,
        "Containers": i.containers, "ContainersRunning": i.containers_running,
        "ContainersPaused": i.containers_paused, "ContainersStopped": i.containers_stopped,
        "Images": i.images, "Driver": i.storage_driver, "BerthRootDir": i.root_dir,
        "BerthStateDir": i.state_dir, "CgroupDriver": i.cgroup_driver, "CgroupVersion": i.cgroup_version,
        "KernelVersion": i.kernel_version, "OperatingSystem": i.operating_system,
        "Architecture": i.architecture, "NCPU": i.cpus, "MemTotal": i.memory_bytes, "Name": i.hostname,
        "DefaultRuntime": i.runtime, "NetworkReady": i.network_ready, "NetworkMessage": i.network_message,
        "RegistryMirrors": i.registry_mirrors, "SecurityOptions": i.security_options,
    })
}

/// The `info` text.
pub fn info_text(host: &str, i: &InfoResponse) -> String {
    let mut s = String::new();
    let mut l = |t: String| {
        s.push_str(&t);
        s.push('\n');
    };
    l("Client:".into());
    l(format!(" Version:    {}", env!("CARGO_PKG_VERSION")));
    l(format!(" Host:       {host}"));
    l(String::new());
    l("Server:".into());
    l(format!(" Containers: {}", i.containers));
    l(format!("  Running: {}", i.containers_running));
    l(format!("  Paused: {}", i.containers_paused));
    l(format!("  Stopped: {}", i.containers_stopped));
    l(format!(" Images: {}", i.images));
    l(format!(" Server Version: {}", i.version));
    l(format!(" Storage Driver: {}", i.storage_driver));
    l(format!(" Cgroup Driver: {}", i.cgroup_driver));
    l(format!(" Cgroup Version: {}", i.cgroup_version));
    l(format!(" Runtime: {}", i.runtime));
    l(format!(
        " Network: {}",
        if i.network_ready {
            "ready".to_owned()
        } else {
            format!("not ready ({})", i.network_message)
        }
    ));
    if !i.security_options.is_empty() {
        l(" Security Options:".into());
        for o in &i.security_options {
            l(format!("  {o}"));
        }
    }
    l(format!(" Kernel Version: {}", i.kernel_version));
    l(format!(" Operating System: {}", i.operating_system));
    l(format!(" Architecture: {}", i.architecture));
    l(format!(" CPUs: {}", i.cpus));
    l(format!(
        " Total Memory: {}",
        units::binary_size(i.memory_bytes.max(0) as u64)
    ));
    l(format!(" Name: {}", i.hostname));
    l(format!(" Berth Root Dir: {}", i.root_dir));
    l(format!(" Berth State Dir: {}", i.state_dir));
    if !i.registry_mirrors.is_empty() {
        l(" Registry Mirrors:".into());
        for m in &i.registry_mirrors {
            l(format!("  {m}"));
        }
    }
    s
}

fn formatted(format: &str, v: &serde_json::Value) -> Result<String, CliError> {
    if format == "json" {
        return Ok(v.to_string());
    }
    crate::format::inspect::render(format, v).map_err(|e| CliError::Usage(e.to_string()))
}

/// `berth info`.
pub async fn info(ctx: &Ctx, a: InfoArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let i = d.system.clone().info(InfoRequest {}).await.daemon()?;
    match a.format {
        Some(f) => println!("{}", formatted(&f, &info_json(&i))?),
        None => print!("{}", info_text(&ctx.host, &i)),
    }
    Ok(())
}

/// `berth version`: the client's, then the server's (if reachable).
pub async fn version(ctx: &Ctx, a: VersionArgs) -> anyhow::Result<()> {
    let client = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": "v1",
        "Os": std::env::consts::OS,
        "Arch": go_arch(),
    });
    let server = async {
        let d = ctx.daemon().await?;
        let v = d.rt.clone().version(cri::VersionRequest { version: "v1".into() }).await.daemon()?;
        let i = d.system.clone().info(InfoRequest {}).await.daemon().ok();
        Ok::<_, CliError>(json!({
            "Version": i.as_ref().map(|i| i.version.clone()).unwrap_or(v.runtime_version.clone()),
            "GitCommit": i.as_ref().map(|i| i.git_commit.clone()).unwrap_or_default(),
            "ApiVersion": i.as_ref().map(|i| i.api_version.clone()).filter(|s| !s.is_empty()).unwrap_or_else(|| "v1".into()),
            "RuntimeName": v.runtime_name,
            "RuntimeVersion": v.runtime_version,
            "CriApiVersion": v.runtime_api_version,
            "KernelVersion": i.as_ref().map(|i| i.kernel_version.clone()).unwrap_or_default(),
        }))
    }
    .await;
    if let Some(f) = &a.format {
        let all = json!({ "Client": client, "Server": server.as_ref().ok() });
        println!("{}", formatted(f, &all)?);
        return server.map(|_| ()).map_err(Into::into);
    }
    println!("Client:");
    println!(
        " Version:           {}",
        client["Version"].as_str().unwrap_or("")
    );
    println!(" API version:       v1");
    println!(" OS/Arch:           {}/{}", std::env::consts::OS, go_arch());
    let s = server?;
    let g = |k: &str| s[k].as_str().unwrap_or("").to_owned();
    println!();
    println!("Server: berthd");
    println!(" Engine:");
    println!("  Version:          {}", g("Version"));
    println!("  API version:      {}", g("ApiVersion"));
    println!("  Git commit:       {}", g("GitCommit"));
    println!("  Kernel version:   {}", g("KernelVersion"));
    println!(" CRI:");
    println!(
        "  Runtime:          {} {}",
        g("RuntimeName"),
        g("RuntimeVersion")
    );
    println!("  API version:      {}", g("CriApiVersion"));
    Ok(())
}

/// The architecture as Go (and docker) names it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn reclaim(size: u64, reclaimable: u64) -> String {
    let pct = (reclaimable * 100).checked_div(size).unwrap_or(0);
    format!("{} ({pct}%)", units::human_size(reclaimable))
}

/// The summary table of `system df`.
pub fn df_text(u: &DiskUsageResponse) -> String {
    let img_size: u64 = if u.layers_size > 0 {
        u.layers_size
    } else {
        u.images.iter().map(|i| i.size).sum()
    };
    let img_active = u.images.iter().filter(|i| i.containers > 0).count();
    let img_reclaim: u64 = u
        .images
        .iter()
        .filter(|i| i.containers == 0)
        .map(|i| i.size.saturating_sub(i.shared_size))
        .sum();
    let c_size: u64 = u.containers.iter().map(|c| c.size_rw).sum();
    let c_active = u.containers.iter().filter(|c| c.state == "running").count();
    let c_reclaim: u64 = u
        .containers
        .iter()
        .filter(|c| c.state != "running")
        .map(|c| c.size_rw)
        .sum();
    let v_size: u64 = u.volumes.iter().map(|v| v.size).sum();
    let v_active = u.volumes.iter().filter(|v| v.links > 0).count();
    let v_reclaim: u64 = u
        .volumes
        .iter()
        .filter(|v| v.links == 0)
        .map(|v| v.size)
        .sum();
    let mut t = String::from("TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE\n");
    t.push_str(&format!(
        "Images\t{}\t{img_active}\t{}\t{}\n",
        u.images.len(),
        units::human_size(img_size),
        reclaim(img_size, img_reclaim.min(img_size))
    ));
    t.push_str(&format!(
        "Containers\t{}\t{c_active}\t{}\t{}\n",
        u.containers.len(),
        units::human_size(c_size),
        reclaim(c_size, c_reclaim)
    ));
    t.push_str(&format!(
        "Local Volumes\t{}\t{v_active}\t{}\t{}\n",
        u.volumes.len(),
        units::human_size(v_size),
        reclaim(v_size, v_reclaim)
    ));
    table::align(&t)
}

async fn df(ctx: &Ctx, a: DfArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let u = d
        .system
        .clone()
        .disk_usage(DiskUsageRequest {})
        .await
        .daemon()?;
    if !a.verbose {
        print!("{}", df_text(&u));
        return Ok(());
    }
    let mut t = String::from(
        "Images space usage:\n\nREPOSITORY:TAG\tIMAGE ID\tSIZE\tSHARED SIZE\tCONTAINERS\n",
    );
    for i in &u.images {
        let tags = if i.repo_tags.is_empty() {
            "<none>".into()
        } else {
            i.repo_tags.join(",")
        };
        t.push_str(&format!(
            "{tags}\t{}\t{}\t{}\t{}\n",
            crate::format::short_id(&i.id),
            units::human_size(i.size),
            units::human_size(i.shared_size),
            i.containers
        ));
    }
    print!("{}", table::align(&t));
    let mut t =
        String::from("\nContainers space usage:\n\nCONTAINER ID\tIMAGE\tSIZE\tSTATE\tNAMES\n");
    for c in &u.containers {
        t.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\n",
            crate::format::short_id(&c.id),
            c.image,
            units::human_size(c.size_rw),
            c.state,
            c.name
        ));
    }
    print!("{}", table::align(&t));
    let mut t = String::from("\nLocal Volumes space usage:\n\nVOLUME NAME\tLINKS\tSIZE\n");
    for v in &u.volumes {
        t.push_str(&format!(
            "{}\t{}\t{}\n",
            v.name,
            v.links,
            units::human_size(v.size)
        ));
    }
    print!("{}", table::align(&t));
    Ok(())
}

async fn prune(ctx: &Ctx, a: PruneArgs) -> anyhow::Result<()> {
    let mut w = String::from("WARNING! This will remove:\n  - all stopped containers\n");
    if a.volumes {
        w.push_str("  - all anonymous volumes not used by at least one container\n");
    }
    w.push_str(if a.all {
        "  - all images without at least one container associated to them"
    } else {
        "  - all dangling images"
    });
    if !a.force && !super::images::confirm(&w) {
        return Ok(());
    }
    let d = ctx.daemon().await?;
    let r = d
        .system
        .clone()
        .prune(SystemPruneRequest {
            all: a.all,
            volumes: a.volumes,
        })
        .await
        .daemon()?;
    super::images::print_pruned(
        &[
            ("Deleted Containers:", "", &r.containers_deleted),
            ("Deleted Images:", "deleted: ", &r.images_deleted),
            ("Deleted Volumes:", "", &r.volumes_deleted),
        ],
        r.reclaimed_bytes,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::berth::v1::{DiskUsageContainer, DiskUsageImage, DiskUsageVolume};

    #[test]
    fn df_table() {
        let u = DiskUsageResponse {
            images: vec![
                DiskUsageImage {
                    id: "a".into(),
                    size: 4_000_000,
                    containers: 1,
                    ..Default::default()
                },
                DiskUsageImage {
                    id: "b".into(),
                    size: 1_000_000,
                    containers: 0,
                    ..Default::default()
                },
            ],
            containers: vec![DiskUsageContainer {
                size_rw: 100,
                state: "exited".into(),
                ..Default::default()
            }],
            volumes: vec![DiskUsageVolume {
                name: "v".into(),
                size: 36,
                links: 1,
            }],
            layers_size: 5_000_000,
        };
        let out = df_text(&u);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE"
        );
        assert_eq!(
            lines[1],
            "Images          2         1         5MB       1MB (20%)"
        );
        assert_eq!(
            lines[2],
            "Containers      1         0         100B      100B (100%)"
        );
        assert_eq!(
            lines[3],
            "Local Volumes   1         1         36B       0B (0%)"
        );
    }

    #[test]
    fn info_mentions_counts() {
        let i = InfoResponse {
            containers: 3,
            containers_running: 1,
            images: 2,
            ..Default::default()
        };
        let t = info_text("unix:///x.sock", &i);
        assert!(t.contains(" Containers: 3\n  Running: 1\n"));
        assert!(t.contains(" Images: 2\n"));
    }
}
