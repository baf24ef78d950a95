//! `save`, `load` (OCI archive; docker-archive accepted on load) and
//! `commit`.

use std::path::PathBuf;

use berth_proto::berth::v1::{Chunk, CommitRequest, SaveRequest};
use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;

use super::Ctx;
use crate::error::{CliError, DaemonResult};
use crate::term;

/// `berth save`.
#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Images (reference or id)
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `berth load`.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long)]
    pub input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// `berth commit`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Commit message
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image (CMD, ENV, ENTRYPOINT, WORKDIR, USER, EXPOSE, LABEL, VOLUME, STOPSIGNAL)
    #[arg(short = 'c', long = "change")]
    pub change: Vec<String>,
    /// Pause container during commit
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pause: bool,
    /// Container (name, id or id prefix)
    pub container: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

/// Chunk size streamed to `load`.
const CHUNK: usize = 256 << 10;

/// `berth save`.
pub async fn save(ctx: &Ctx, a: SaveArgs) -> anyhow::Result<()> {
    if a.output.is_none() && term::stdout_is_tty() {
        return Err(CliError::Usage(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect".into(),
        )
        .into());
    }
    let d = ctx.daemon().await?;
    let first = a.images.first().cloned().unwrap_or_default();
    let mut s = d
        .images
        .clone()
        .save(SaveRequest {
            images: a.images.clone(),
        })
        .await
        .no_such("image", &first)?;
    let (mut out, tmp): (
        Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
        Option<(PathBuf, PathBuf)>,
    ) = match &a.output {
        Some(p) => {
            // Written beside the target and renamed: no half archive left.
            let tmp = p.with_extension(format!("partial-{}", std::process::id()));
            let f = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", tmp.display()))?;
            (Box::new(f), Some((tmp, p.clone())))
        }
        None => (Box::new(tokio::io::stdout()), None),
    };
    let r: anyhow::Result<()> = async {
        while let Some(m) = s.next().await {
            let c = m.map_err(|st| CliError::from_status(st, Some(("image", &first))))?;
            out.write_all(&c.data).await?;
        }
        out.flush().await?;
        Ok(())
    }
    .await;
    match (r, tmp) {
        (Ok(()), Some((tmp, p))) => {
            tokio::fs::rename(&tmp, &p).await.map_err(|e| {
                anyhow::anyhow!("renaming {} to {}: {e}", tmp.display(), p.display())
            })?;
            Ok(())
        }
        (Ok(()), None) => Ok(()),
        (Err(e), Some((tmp, _))) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
        (Err(e), None) => Err(e),
    }
}

/// `berth load`.
pub async fn load(ctx: &Ctx, a: LoadArgs) -> anyhow::Result<()> {
    let mut input: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match &a.input {
        Some(p) => Box::new(
            tokio::fs::File::open(p)
                .await
                .map_err(|e| anyhow::anyhow!("opening {}: {e}", p.display()))?,
        ),
        None => {
            if term::stdin_is_tty() {
                return Err(CliError::Usage(
                    "requested load from stdin, but stdin is empty (use -i FILE or pipe an archive in)".into(),
                )
                .into());
            }
            Box::new(tokio::io::stdin())
        }
    };
    let d = ctx.daemon().await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(4);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = input.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            if tx
                .send(Chunk {
                    data: buf[..n].to_vec(),
                })
                .await
                .is_err()
            {
                return Ok(());
            }
        }
    });
    let r = d
        .images
        .clone()
        .load(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    match reader.await {
        Ok(Err(e)) => return Err(anyhow::anyhow!("reading the archive: {e}")),
        Err(e) => return Err(anyhow::anyhow!("reading the archive: {e}")),
        Ok(Ok(())) => {}
    }
    let r = r
        .map(tonic::Response::into_inner)
        .map_err(|s| CliError::from_status(s, None))?;
    if !a.quiet {
        for l in r.loaded {
            if l.starts_with("sha256:") {
                println!("Loaded image ID: {l}");
            } else {
                println!("Loaded image: {}", super::images::familiar(&l));
            }
        }
    }
    Ok(())
}

/// `berth commit`: prints the new image id.
pub async fn commit(ctx: &Ctx, a: CommitArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let r = d
        .images
        .clone()
        .commit(CommitRequest {
            container: a.container.clone(),
            reference: a.reference.unwrap_or_default(),
            message: a.message.unwrap_or_default(),
            author: a.author.unwrap_or_default(),
            changes: a.change,
            pause: a.pause,
        })
        .await
        .no_such("container", &a.container)?;
    println!("{}", r.image_id);
    Ok(())
}
