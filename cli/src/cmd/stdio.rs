//! Relaying a container's streams to the terminal: remote-command
//! sessions (exec, attach; raw mode and window size with a tty) and the
//! log-following relay foreground `run` uses when nothing is attached.

use std::time::Duration;

use berth_proto::berth::v1::{ContainerRef, LogEntry, LogsRequest};
use berth_streaming::client::{self as sclient, ClientError, ExecIo, ExitStatus, Transport};
use berth_streaming::remotecommand::TerminalSize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::client::Daemon;
use crate::error::{clean_message, invoke_code, CliError, DaemonResult};
use crate::term;

/// Runs a remote-command session at `url` with the local stdio; with `tty`
/// the local terminal goes raw and its size follows SIGWINCH.
pub async fn session(url: &str, stdin: bool, tty: bool) -> anyhow::Result<ExitStatus> {
    let raw = if tty && stdin && term::stdin_is_tty() {
        Some(term::RawMode::enter()?)
    } else {
        None
    };
    let resize = if tty { Some(resize_feed()) } else { None };
    let io = ExecIo {
        stdin: stdin.then(|| Box::pin(tokio::io::stdin()) as _),
        stdout: Some(Box::pin(tokio::io::stdout())),
        stderr: (!tty).then(|| Box::pin(tokio::io::stderr()) as _),
        tty,
        resize,
        protocols: None,
    };
    let r = sclient::exec(url, Transport::Spdy, io).await;
    drop(raw);
    r.map_err(|e| match e {
        ClientError::Remote(msg) => match invoke_code(&clean_message(&msg)) {
            Some(code) => CliError::Invoke {
                code,
                message: format!("Error response from daemon: {}", clean_message(&msg)),
            }
            .into(),
            None => anyhow::Error::new(CliError::Daemon {
                code: tonic::Code::Unknown,
                message: clean_message(&msg),
            }),
        },
        other => anyhow::Error::new(other).context("the streaming session failed"),
    })
}

/// Terminal sizes: the current one now, then one per SIGWINCH.
fn resize_feed() -> mpsc::Receiver<TerminalSize> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let size = || {
            let out = std::io::stdout();
            use std::os::fd::AsFd;
            term::window_size(out.as_fd()).map(|(width, height)| TerminalSize { width, height })
        };
        if let Some(s) = size() {
            if tx.send(s).await.is_err() {
                return;
            }
        }
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some(s) = size() {
                if tx.send(s).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Writes one log entry to stdout or stderr, optionally timestamped.
pub async fn write_entry(e: &LogEntry, timestamps: bool) -> std::io::Result<()> {
    let mut data = Vec::with_capacity(e.data.len() + 32);
    if timestamps {
        data.extend_from_slice(crate::format::units::rfc3339_nanos(e.timestamp).as_bytes());
        data.push(b' ');
    }
    data.extend_from_slice(&e.data);
    if e.stream == "stderr" {
        let mut err = tokio::io::stderr();
        err.write_all(&data).await?;
        err.flush().await
    } else {
        let mut out = tokio::io::stdout();
        out.write_all(&data).await?;
        out.flush().await
    }
}

/// Follows the container's log to the terminal until it exits; returns its
/// exit code. Lines written just before the exit are read again without
/// following, from the last timestamp seen, so none are lost. `since`
/// (ns, 0 all) skips what earlier runs of a restarted container wrote.
pub async fn follow_until_exit(d: &Daemon, container: &str, since: i64) -> anyhow::Result<i32> {
    let mut c = d.containers.clone();
    let mut logs = c
        .logs(LogsRequest {
            container: container.to_owned(),
            follow: true,
            tail: -1,
            since,
            until: 0,
        })
        .await
        .no_such("container", container)?;
    let mut wc = d.containers.clone();
    let wait_ref = ContainerRef {
        container: container.to_owned(),
    };
    let wait = wc.wait(wait_ref);
    tokio::pin!(wait);
    // (timestamp, entries printed at that timestamp)
    let mut last = (0i64, 0usize);
    let print = |e: LogEntry, last: &mut (i64, usize)| {
        if e.timestamp == last.0 {
            last.1 += 1;
        } else {
            *last = (e.timestamp, 1);
        }
        e
    };
    let code = loop {
        tokio::select! {
            w = &mut wait => break w.no_such("container", container)?.exit_code,
            m = logs.next() => match m {
                Some(Ok(e)) => { let e = print(e, &mut last); write_entry(&e, false).await?; }
                Some(Err(s)) => return Err(CliError::from_status(s, Some(("container", container))).into()),
                None => {
                    // The stream ended with the container: its code is next.
                    break wait.await.no_such("container", container)?.exit_code;
                }
            }
        }
    };
    // Drain what the follower had not delivered yet, briefly.
    let drain = async {
        while let Some(Ok(e)) = logs.next().await {
            let e = print(e, &mut last);
            write_entry(&e, false).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    if tokio::time::timeout(Duration::from_secs(2), drain)
        .await
        .is_err()
    {
        catch_up(d, container, last).await?;
    }
    Ok(code)
}

/// Prints the entries after `last` with a non-following read.
async fn catch_up(d: &Daemon, container: &str, last: (i64, usize)) -> anyhow::Result<()> {
    let mut s = d
        .containers
        .clone()
        .logs(LogsRequest {
            container: container.to_owned(),
            follow: false,
            tail: -1,
            since: last.0,
            until: 0,
        })
        .await
        .no_such("container", container)?;
    let mut skip = last.1;
    while let Some(m) = s.next().await {
        let e = m.map_err(|st| CliError::from_status(st, Some(("container", container))))?;
        if e.timestamp == last.0 && skip > 0 {
            skip -= 1;
            continue;
        }
        if e.timestamp < last.0 {
            continue;
        }
        write_entry(&e, false).await?;
    }
    Ok(())
}
