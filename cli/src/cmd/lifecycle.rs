//! Small container commands: start, stop, restart, kill, rm, wait,
//! rename, port, top, diff.

use berth_proto::berth::v1::{
    ContainerRef, KillContainerRequest, RemoveContainerRequest, RenameContainerRequest,
    StopContainerRequest, TopRequest,
};
use clap::Args;

use super::{for_each, Ctx};
use crate::error::{CliError, DaemonResult};
use crate::format::table;

/// One or more containers.
#[derive(Debug, Args)]
pub struct ContainersArgs {
    /// Containers (name, id or id prefix)
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Exactly one container.
#[derive(Debug, Args)]
pub struct OneContainer {
    /// Container (name, id or id prefix)
    pub container: String,
}

/// `berth start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Containers (name, id or id prefix)
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth stop` / `berth restart`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", visible_alias = "timeout")]
    pub time: Option<i32>,
    /// Signal to send to the container
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    /// Containers (name, id or id prefix)
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    /// Containers (name, id or id prefix)
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    pub volumes: bool,
    /// Containers (name, id or id prefix)
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `berth rename`.
#[derive(Debug, Args)]
pub struct RenameArgs {
    /// Container (name, id or id prefix)
    pub container: String,
    /// New name
    pub new_name: String,
}

/// `berth port`.
#[derive(Debug, Args)]
pub struct PortArgs {
    /// Container (name, id or id prefix)
    pub container: String,
    /// Only this private port (PORT[/PROTO])
    pub private_port: Option<String>,
}

/// `berth top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Container (name, id or id prefix)
    pub container: String,
    /// ps options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

fn cref(c: &str) -> ContainerRef {
    ContainerRef {
        container: c.to_owned(),
    }
}

/// `berth start`.
pub async fn start(ctx: &Ctx, a: StartArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            return Err(CliError::Usage(
                "you cannot start and attach multiple containers at once".into(),
            )
            .into());
        }
        let c = &a.containers[0];
        let json = d
            .containers
            .clone()
            .inspect(cref(c))
            .await
            .no_such("container", c)?
            .json;
        let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        let tty = v
            .pointer("/Config/Tty")
            .and_then(|t| t.as_bool())
            .unwrap_or(false);
        let since = super::run::now_nanos();
        d.containers
            .clone()
            .start(cref(c))
            .await
            .no_such("container", c)?;
        let code = super::run::relay(&d, c, a.interactive, tty, since).await?;
        if code != 0 {
            return Err(CliError::Exit(code).into());
        }
        return Ok(());
    }
    for_each(&a.containers, |c| {
        let mut cl = d.containers.clone();
        async move {
            cl.start(cref(&c))
                .await
                .no_such("container", &c)
                .map(|_| Some(c))
        }
    })
    .await
}

/// `berth stop` (`restart` with `restart`).
pub async fn stop(ctx: &Ctx, a: StopArgs, restart: bool) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let timeout = a.time.unwrap_or(-1);
    let signal = a.signal.clone().unwrap_or_default();
    for_each(&a.containers, |c| {
        let mut cl = d.containers.clone();
        let signal = signal.clone();
        async move {
            let req = StopContainerRequest {
                container: c.clone(),
                timeout,
                signal,
            };
            let r = if restart {
                cl.restart(req).await
            } else {
                cl.stop(req).await
            };
            r.no_such("container", &c).map(|_| Some(c))
        }
    })
    .await
}

/// `berth kill`.
pub async fn kill(ctx: &Ctx, a: KillArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let signal = a.signal.clone();
    for_each(&a.containers, |c| {
        let mut cl = d.containers.clone();
        let signal = signal.clone();
        async move {
            cl.kill(KillContainerRequest {
                container: c.clone(),
                signal,
            })
            .await
            .no_such("container", &c)
            .map(|_| Some(c))
        }
    })
    .await
}

/// `berth rm`.
pub async fn rm(ctx: &Ctx, a: RmArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    for_each(&a.containers, |c| {
        let mut cl = d.containers.clone();
        async move {
            cl.remove(RemoveContainerRequest {
                container: c.clone(),
                force: a.force,
                volumes: a.volumes,
            })
            .await
            .no_such("container", &c)
            .map(|_| Some(c))
        }
    })
    .await
}

/// `berth wait`: prints each exit code.
pub async fn wait(ctx: &Ctx, a: ContainersArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    for_each(&a.containers, |c| {
        let mut cl = d.containers.clone();
        async move {
            cl.wait(cref(&c))
                .await
                .no_such("container", &c)
                .map(|r| Some(r.exit_code.to_string()))
        }
    })
    .await
}

/// `berth rename`.
pub async fn rename(ctx: &Ctx, a: RenameArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    d.containers
        .clone()
        .rename(RenameContainerRequest {
            container: a.container.clone(),
            new_name: a.new_name,
        })
        .await
        .no_such("container", &a.container)?;
    Ok(())
}

/// `berth port`: `80/tcp -> 0.0.0.0:8080`.
pub async fn port(ctx: &Ctx, a: PortArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let s = super::ps::summary_of(&d, &a.container).await?;
    let want = a.private_port.as_deref().map(|p| match p.split_once('/') {
        Some((n, proto)) => (n.to_owned(), proto.to_owned()),
        None => (p.to_owned(), "tcp".to_owned()),
    });
    let mut found = false;
    for p in &s.ports {
        let proto = if p.protocol.is_empty() {
            "tcp"
        } else {
            &p.protocol
        };
        if let Some((n, wp)) = &want {
            if *n != p.container_port.to_string() || wp != proto {
                continue;
            }
        }
        if p.host_port == 0 {
            continue;
        }
        found = true;
        let ip = if p.host_ip.is_empty() {
            "0.0.0.0"
        } else {
            &p.host_ip
        };
        let host = if ip.contains(':') {
            format!("[{ip}]:{}", p.host_port)
        } else {
            format!("{ip}:{}", p.host_port)
        };
        if want.is_some() {
            println!("{host}");
        } else {
            println!("{}/{proto} -> {host}", p.container_port);
        }
    }
    if let (Some(p), false) = (&a.private_port, found) {
        return Err(CliError::Daemon {
            code: tonic::Code::NotFound,
            message: format!("No public port '{p}' published for {}", a.container),
        }
        .into());
    }
    Ok(())
}

/// `berth top`.
pub async fn top(ctx: &Ctx, a: TopArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let r = d
        .containers
        .clone()
        .top(TopRequest {
            container: a.container.clone(),
            ps_args: a.ps_args,
        })
        .await
        .no_such("container", &a.container)?;
    let mut text = r.titles.join("\t");
    text.push('\n');
    for row in r.processes {
        text.push_str(&row.columns.join("\t"));
        text.push('\n');
    }
    print!("{}", table::align(&text));
    Ok(())
}

/// `berth diff`: `C /etc`, `A /etc/x`.
pub async fn diff(ctx: &Ctx, a: OneContainer) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let r = d
        .containers
        .clone()
        .diff(cref(&a.container))
        .await
        .no_such("container", &a.container)?;
    for c in r.changes {
        println!("{} {}", c.kind, c.path);
    }
    Ok(())
}
