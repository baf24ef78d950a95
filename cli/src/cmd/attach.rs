//! `attach`: the local terminal to a running container's streams.

use berth_proto::berth::v1::ContainerRef;
use berth_proto::cri;
use clap::Args;

use super::{stdio, Ctx};
use crate::error::{CliError, DaemonResult};

/// `berth attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Container (name, id or id prefix)
    pub container: String,
}

/// `berth attach`.
pub async fn attach(ctx: &Ctx, a: AttachArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let c = &a.container;
    let r = d
        .containers
        .clone()
        .resolve(ContainerRef {
            container: c.clone(),
        })
        .await
        .no_such("container", c)?;
    let json = d
        .containers
        .clone()
        .inspect(ContainerRef {
            container: c.clone(),
        })
        .await
        .no_such("container", c)?
        .json;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    let flag = |p: &str| v.pointer(p).and_then(|t| t.as_bool()).unwrap_or(false);
    let tty = flag("/Config/Tty");
    let stdin = flag("/Config/OpenStdin") && !a.no_stdin;
    let url =
        d.rt.clone()
            .attach(cri::AttachRequest {
                container_id: r.container_id,
                stdin,
                tty,
                stdout: true,
                stderr: !tty,
            })
            .await
            .no_such("container", c)?
            .url;
    stdio::session(&url, stdin, tty).await?;
    let code = d
        .containers
        .clone()
        .wait(ContainerRef {
            container: c.clone(),
        })
        .await
        .no_such("container", c)?
        .exit_code;
    if code != 0 {
        return Err(CliError::Exit(code).into());
    }
    Ok(())
}
