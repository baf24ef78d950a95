//! Running a benchmark to completion or until the user stops it.

use std::future::Future;

use anyhow::{bail, Context, Result};

/// Runs `run` on a multi-threaded tokio runtime; Ctrl-C or SIGTERM drop it
/// instead, so the daemons, mounts and temp dirs it owns are cleaned up by
/// their `Drop` before the error is returned.
pub fn block_on_interruptible<T, E>(run: impl Future<Output = Result<T, E>>) -> Result<T>
where
    E: Into<anyhow::Error>,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            r = run => r.map_err(Into::into),
            _ = tokio::signal::ctrl_c() => bail!("interrupted; cleaned up"),
            _ = term.recv() => bail!("terminated; cleaned up"),
        }
    })
}
