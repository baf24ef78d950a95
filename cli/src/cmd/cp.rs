//! `cp`: files between a container and the local filesystem, as tar
//! streams built and extracted here (Docker's path rules in `cpath`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use berth_proto::berth::v1::{
    copy_from_response, copy_to_request, CopyToRequest, CopyToTarget, PathRequest,
};
use clap::Args;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use super::Ctx;
use crate::client::Daemon;
use crate::cpath::{self, CpError, DestKind, Side};
use crate::error::{CliError, DaemonResult};
use crate::format::units;

/// `berth cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long = "follow-link")]
    pub follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Archive mode (copy all uid/gid information) — always on
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// CONTAINER:SRC_PATH or local SRC_PATH (- for a tar on stdin)
    pub src: String,
    /// CONTAINER:DEST_PATH or local DEST_PATH (- for a tar on stdout)
    pub dest: String,
}

/// A `Write` feeding a channel of chunks (tar built on a blocking thread).
struct ChannelWriter(mpsc::Sender<Vec<u8>>, u64);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.blocking_send(buf.to_vec()).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the upload stopped")
        })?;
        self.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A `Read` draining a channel of chunks (tar extracted on a blocking thread).
struct ChannelReader {
    rx: mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.blocking_recv() {
                Some(c) => {
                    self.cur = c;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// `berth cp`.
pub async fn cp(ctx: &Ctx, a: CpArgs) -> anyhow::Result<()> {
    match (cpath::parse_side(&a.src), cpath::parse_side(&a.dest)) {
        (Side::Local(src), Side::Container { container, path }) => {
            let d = ctx.daemon().await?;
            copy_in(&d, &a, &src, &container, &path).await
        }
        (Side::Container { container, path }, Side::Local(dest)) => {
            let d = ctx.daemon().await?;
            copy_out(&d, &a, &container, &path, &dest).await
        }
        _ => Err(CliError::Usage(CpError::Sides.to_string()).into()),
    }
}

async fn dest_kind(d: &Daemon, container: &str, path: &str) -> Result<DestKind, CliError> {
    let r = d
        .containers
        .clone()
        .stat_path(PathRequest {
            container: container.to_owned(),
            path: path.to_owned(),
        })
        .await;
    match r {
        Ok(s) => Ok(if s.into_inner().mode & libc::S_IFMT == libc::S_IFDIR {
            DestKind::Dir
        } else {
            DestKind::File
        }),
        Err(s) if s.code() == tonic::Code::NotFound => {
            // A missing container is an error; a missing path is a new name.
            d.containers
                .clone()
                .resolve(berth_proto::berth::v1::ContainerRef {
                    container: container.to_owned(),
                })
                .await
                .no_such("container", container)?;
            Ok(DestKind::Missing)
        }
        Err(s) => Err(CliError::from_status(s, Some(("container", container)))),
    }
}

async fn copy_in(
    d: &Daemon,
    a: &CpArgs,
    src: &str,
    container: &str,
    path: &str,
) -> anyhow::Result<()> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
    let (dir, builder) = if src == "-" {
        if dest_kind(d, container, path).await? != DestKind::Dir {
            return Err(CliError::Usage(format!(
                "destination \"{container}:{path}\" must be a directory when copying from stdin"
            ))
            .into());
        }
        // A tar on stdin goes in as it is.
        let h = tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter(tx, 0);
            std::io::copy(&mut std::io::stdin().lock(), &mut w).map_err(|source| CpError::Io {
                what: "reading",
                path: "stdin".into(),
                source,
            })?;
            Ok::<u64, CpError>(w.1)
        });
        (path.to_owned(), h)
    } else {
        let local = PathBuf::from(src);
        let meta = if a.follow_link {
            std::fs::metadata(&local)
        } else {
            std::fs::symlink_metadata(&local)
        };
        let meta = meta.map_err(|_| CpError::NoLocal(src.to_owned()))?;
        let kind = dest_kind(d, container, path).await?;
        let placement = cpath::plan(src, meta.is_dir(), path, kind)?;
        let root = placement.root_name.clone();
        let real = if a.follow_link {
            std::fs::canonicalize(&local).unwrap_or(local)
        } else {
            local
        };
        let h = tokio::task::spawn_blocking(move || {
            let w = cpath::build_tar(&real, root.as_deref(), ChannelWriter(tx, 0))?;
            Ok::<u64, CpError>(w.1)
        });
        (placement.dir, h)
    };
    let target = CopyToRequest {
        part: Some(copy_to_request::Part::Target(CopyToTarget {
            container: container.to_owned(),
            path: dir,
            no_overwrite_dir_non_dir: true,
        })),
    };
    let body = async_stream(target, rx);
    let r = d.containers.clone().copy_to(body).await;
    let sent = builder
        .await
        .map_err(|e| anyhow::anyhow!("the archive builder failed: {e}"))??;
    r.no_such("container", container)?;
    if !a.quiet && src != "-" {
        eprintln!(
            "Successfully copied {} to {container}:{path}",
            units::human_size(sent)
        );
    }
    Ok(())
}

/// The CopyTo request stream: the target, then every chunk of the tar.
fn async_stream(
    target: CopyToRequest,
    mut inner: mpsc::Receiver<Vec<u8>>,
) -> impl tokio_stream::Stream<Item = CopyToRequest> + Send + 'static {
    let (ftx, frx) = mpsc::channel::<CopyToRequest>(8);
    tokio::spawn(async move {
        if ftx.send(target).await.is_err() {
            return;
        }
        while let Some(c) = inner.recv().await {
            let m = CopyToRequest {
                part: Some(copy_to_request::Part::Data(c)),
            };
            if ftx.send(m).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(frx)
}

async fn copy_out(
    d: &Daemon,
    a: &CpArgs,
    container: &str,
    path: &str,
    dest: &str,
) -> anyhow::Result<()> {
    let mut s = d
        .containers
        .clone()
        .copy_from(PathRequest {
            container: container.to_owned(),
            path: path.to_owned(),
        })
        .await
        // NotFound is the container's or the path's: berthd's words say which.
        .daemon()?;
    let first = s
        .next()
        .await
        .ok_or_else(|| anyhow::anyhow!("berthd sent nothing for {container}:{path}"))?;
    let first = first.map_err(|st| CliError::from_status(st, None))?;
    let stat = match first.part {
        Some(copy_from_response::Part::Stat(st)) => st,
        _ => {
            return Err(anyhow::anyhow!(
                "berthd's copy of {container}:{path} did not start with the path's stat"
            ))
        }
    };
    if dest == "-" {
        let mut out = tokio::io::stdout();
        while let Some(m) = s.next().await {
            let m = m.map_err(|st| CliError::from_status(st, None))?;
            if let Some(copy_from_response::Part::Data(b)) = m.part {
                match out.write_all(&b).await {
                    // The reader went away (`| head`): not an error of ours.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    r => r?,
                }
            }
        }
        return match out.flush().await {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
            _ => Ok(()),
        };
    }
    let src_is_dir = stat.mode & libc::S_IFMT == libc::S_IFDIR;
    let kind = cpath::local_kind(Path::new(dest));
    let placement = cpath::plan(path, src_is_dir, dest, kind)?;
    let dir = PathBuf::from(&placement.dir);
    if !dir.is_dir() {
        return Err(CpError::NoDestDir(placement.dir.clone()).into());
    }
    let (tx, rx) = mpsc::channel::<Vec<u8>>(8);
    let root = placement.root_name.clone();
    let extract = tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        };
        let r = cpath::extract_tar(&mut reader, &dir, root.as_deref());
        // Drain so the sender never blocks on an abandoned extraction.
        let mut sink = [0u8; 8192];
        while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
        r
    });
    let mut total = 0u64;
    let mut failure = None;
    while let Some(m) = s.next().await {
        match m {
            Ok(m) => {
                if let Some(copy_from_response::Part::Data(b)) = m.part {
                    total += b.len() as u64;
                    if tx.send(b).await.is_err() {
                        break;
                    }
                }
            }
            Err(st) => {
                failure = Some(CliError::from_status(st, None));
                break;
            }
        }
    }
    drop(tx);
    extract
        .await
        .map_err(|e| anyhow::anyhow!("the extraction failed: {e}"))??;
    if let Some(f) = failure {
        return Err(f.into());
    }
    if !a.quiet {
        eprintln!("Successfully copied {} to {dest}", units::human_size(total));
    }
    Ok(())
}
