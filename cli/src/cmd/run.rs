//! `run`: create (pulling the image if it is missing), start, and either
//! print the id (`-d`) or stay with the container until it exits.

use berth_proto::berth::v1::{ContainerRef, KillContainerRequest, RemoveContainerRequest};
use berth_proto::cri;
use clap::Args;

use super::create::{build_spec, create_container, ContainerOpts};
use super::{stdio, Ctx};
use crate::client::Daemon;
use crate::error::{CliError, DaemonResult};

/// `berth run`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Container flags.
    #[command(flatten)]
    pub opts: ContainerOpts,
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Proxy received signals to the process (non-TTY mode only)
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set)]
    pub sig_proxy: bool,
    /// The image to run
    pub image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `berth run`.
pub async fn run(ctx: &Ctx, a: RunArgs) -> anyhow::Result<()> {
    // berthd removes detached --rm containers itself; in the foreground the
    // CLI removes it after reading the exit code (which removal would lose).
    let spec = build_spec(&a.opts, &a.image, &a.command, a.rm && a.detach)?;
    let d = ctx.daemon().await?;
    let (id, _name) = create_container(&d, spec, &a.opts.pull).await?;
    if a.detach {
        start(&d, &id).await.inspect_err(|_| {
            if a.rm {
                tokio::spawn(remove(d.clone(), id.clone()));
            }
        })?;
        println!("{id}");
        return Ok(());
    }
    let result = foreground(&d, &id, &a).await;
    if a.rm {
        remove(d.clone(), id.clone()).await;
    }
    let code = result?;
    if code != 0 {
        return Err(CliError::Exit(code).into());
    }
    Ok(())
}

async fn start(d: &Daemon, id: &str) -> Result<(), CliError> {
    d.containers
        .clone()
        .start(ContainerRef {
            container: id.to_owned(),
        })
        .await
        .no_such("container", id)
        .map(|_| ())
}

async fn remove(d: Daemon, id: String) {
    let r = d
        .containers
        .clone()
        .remove(RemoveContainerRequest {
            container: id.clone(),
            force: true,
            volumes: true,
        })
        .await;
    if let Err(e) = r {
        eprintln!("Error: removing container {id}: {}", e.message());
    }
}

/// Starts the container and relays its streams until it exits; returns
/// its exit code.
async fn foreground(d: &Daemon, id: &str, a: &RunArgs) -> anyhow::Result<i32> {
    let since = now_nanos();
    start(d, id).await?;
    let proxy =
        (a.sig_proxy && !a.opts.tty).then(|| tokio::spawn(proxy_signals(d.clone(), id.to_owned())));
    let r = relay(d, id, a.opts.interactive, a.opts.tty, since).await;
    if let Some(p) = proxy {
        p.abort();
    }
    r
}

/// Attach (with -i, for stdin) or follow the log (output only: nothing is
/// lost between start and attach), then the exit code. `since`: when the
/// container was started (ns), so a restarted one's old output is skipped.
pub async fn relay(
    d: &Daemon,
    id: &str,
    interactive: bool,
    tty: bool,
    since: i64,
) -> anyhow::Result<i32> {
    if !interactive {
        return stdio::follow_until_exit(d, id, since).await;
    }
    let resolved = d
        .containers
        .clone()
        .resolve(ContainerRef {
            container: id.to_owned(),
        })
        .await
        .no_such("container", id)?;
    let attached = async {
        let url =
            d.rt.clone()
                .attach(cri::AttachRequest {
                    container_id: resolved.container_id.clone(),
                    stdin: true,
                    tty,
                    stdout: true,
                    stderr: !tty,
                })
                .await
                .no_such("container", id)?
                .url;
        stdio::session(&url, true, tty).await
    }
    .await;
    if let Err(e) = attached {
        // CRI attaches only to a running container: one that already ran
        // to its end before the attach still has its output in the log.
        if !exited_before_attach(&e) {
            return Err(e);
        }
        tracing::debug!(error = %e, "the container ended before the attach; reading its log");
        return stdio::follow_until_exit(d, id, since).await;
    }
    let code = d
        .containers
        .clone()
        .wait(ContainerRef {
            container: id.to_owned(),
        })
        .await
        .no_such("container", id)?
        .exit_code;
    Ok(code)
}

/// Whether an attach failed because the container had already exited.
fn exited_before_attach(e: &anyhow::Error) -> bool {
    let msg = e
        .chain()
        .find_map(|c| c.downcast_ref::<CliError>())
        .map(|c| c.to_string())
        .unwrap_or_default();
    msg.contains("no output to attach") || msg.contains("not running")
}

/// Now in ns since the epoch.
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// Forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to the container (docker's
/// `--sig-proxy`).
async fn proxy_signals(d: Daemon, id: String) {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        (SignalKind::interrupt(), "SIGINT"),
        (SignalKind::terminate(), "SIGTERM"),
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::quit(), "SIGQUIT"),
    ];
    let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static str>(8);
    for (k, name) in kinds {
        let Ok(mut s) = signal(k) else { continue };
        let tx = tx.clone();
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                if tx.send(name).await.is_err() {
                    return;
                }
            }
        });
    }
    while let Some(sig) = rx.recv().await {
        let r = d
            .containers
            .clone()
            .kill(KillContainerRequest {
                container: id.clone(),
                signal: sig.to_owned(),
            })
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %e.message(), sig, "forwarding a signal");
        }
    }
}
