//! `logs`: the container's log, optionally followed.

use berth_proto::berth::v1::LogsRequest;
use clap::Args;
use tokio_stream::StreamExt;

use super::{stdio, Ctx};
use crate::error::{CliError, DaemonResult};
use crate::parse;

/// `berth logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs ("all" for all)
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Show logs since timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp (e.g. 2013-01-02T13:23:37Z) or relative (e.g. 42m for 42 minutes)
    #[arg(long)]
    pub until: Option<String>,
    /// Container (name, id or id prefix)
    pub container: String,
}

/// `--tail` as the proto wants it (-1 all).
pub fn tail_value(s: &str) -> Result<i64, CliError> {
    if s == "all" {
        return Ok(-1);
    }
    s.parse::<i64>()
        .map(|n| if n < 0 { -1 } else { n })
        .map_err(|_| {
            CliError::Usage(format!(
                "invalid value {s:?} for --tail: use a number or \"all\""
            ))
        })
}

/// `berth logs`.
pub async fn logs(ctx: &Ctx, a: LogsArgs) -> anyhow::Result<()> {
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let time = |s: &Option<String>| -> Result<i64, CliError> {
        match s {
            None => Ok(0),
            Some(s) => parse::parse_time(s, now).map_err(|e| CliError::Usage(e.to_string())),
        }
    };
    let req = LogsRequest {
        container: a.container.clone(),
        follow: a.follow,
        tail: tail_value(&a.tail)?,
        since: time(&a.since)?,
        until: time(&a.until)?,
    };
    let d = ctx.daemon().await?;
    let mut s = d
        .containers
        .clone()
        .logs(req)
        .await
        .no_such("container", &a.container)?;
    while let Some(m) = s.next().await {
        let e = m.map_err(|st| CliError::from_status(st, Some(("container", &a.container))))?;
        if let Err(e) = stdio::write_entry(&e, a.timestamps).await {
            // A closed pipe (`berth logs x | head`) ends quietly.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_values() {
        assert_eq!(tail_value("all").unwrap(), -1);
        assert_eq!(tail_value("10").unwrap(), 10);
        assert_eq!(tail_value("-3").unwrap(), -1);
        assert!(tail_value("ten").is_err());
    }
}
