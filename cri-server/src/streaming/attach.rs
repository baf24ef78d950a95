//! Streaming attach: join a running container's own stdio.
//!
//! Output comes from the shim's attach tee (`<bundle>/attach.sock`,
//! frames `[stream u8][len u32 BE][bytes]`, see berth-shim's `attach`
//! module); input goes into the container's stdin FIFO that berthd made
//! when the container was created with `stdin`; resizes are `ResizePty`
//! on the init. The attach ends when the container's output ends, when
//! the client leaves, or (as containerd does) when the client's stdin ends
//! on a container without `stdinOnce`; with `stdinOnce` the end of the
//! first attach's stdin closes the container's stdin.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_proto::cri;
use berth_streaming::remotecommand::{CommandResult, OutputWriter, ServerStreams, StdinReader};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tracing::debug;

use super::ClientStreams;
use crate::pods::{fifo, PodError, PodManager, ShimClient};

/// The shim's attach socket in a container bundle.
pub const ATTACH_SOCKET: &str = "attach.sock";
/// Frame tags: ready (once, first), stdout, stderr.
const FRAME_READY: u8 = 0;
const FRAME_STDOUT: u8 = 1;
const FRAME_STDERR: u8 = 2;
/// How long the shim may take to register an attach client.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Largest frame the shim sends (its copy buffers are 32 KiB).
const MAX_FRAME: usize = 1 << 20;

/// Errors reading the shim's attach frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed.
    #[error("reading the attach socket")]
    Io(#[from] std::io::Error),
    /// A frame header announced something impossible.
    #[error("malformed attach frame (stream {stream}, length {len})")]
    Malformed {
        /// The stream byte.
        stream: u8,
        /// The announced length.
        len: usize,
    },
}

/// Reads one frame; `None` at a clean end of the output.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<(u8, Vec<u8>)>, FrameError> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME || !matches!(head[0], FRAME_READY | FRAME_STDOUT | FRAME_STDERR) {
        return Err(FrameError::Malformed {
            stream: head[0],
            len,
        });
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data).await?;
    Ok(Some((head[0], data)))
}

/// Runs an attach session to its end and reports its result.
pub async fn run(pods: Arc<PodManager>, req: cri::AttachRequest, streams: ServerStreams) {
    let (client, status) = ClientStreams::split(streams);
    let result = match attach(&pods, &req, client).await {
        Ok(()) => CommandResult::Success,
        Err(e) => CommandResult::Error(crate::error::chain(&e)),
    };
    debug!(container_id = %req.container_id, ?result, "attach finished");
    if let Err(err) = status.finish(result).await {
        debug!(error = %crate::error::chain(&err), "sending the attach status");
    }
}

/// Why the output side stopped.
enum End {
    OutputDone,
    StdinDone,
    ClientGone,
}

async fn attach(
    pods: &PodManager,
    req: &cri::AttachRequest,
    client: ClientStreams,
) -> Result<(), PodError> {
    let (c, shim) = pods.running_container_shim(&req.container_id).await?;
    let socket = c.rec.bundle.join(ATTACH_SOCKET);
    let mut output = connect(&c.rec.bundle)
        .await
        .map_err(PodError::io("connecting to the attach socket", &socket))?;
    // Input is forwarded only once the shim has registered us, so the
    // output it causes is never missed.
    match tokio::time::timeout(READY_TIMEOUT, read_frame(&mut output)).await {
        Ok(Ok(Some((FRAME_READY, _)))) => {}
        Ok(Ok(None)) => {
            return Err(PodError::FailedPrecondition(format!(
                "container {} has no output to attach to any more",
                c.id
            )))
        }
        other => {
            let e = match other {
                Ok(Err(e)) => std::io::Error::other(e),
                _ => std::io::Error::from(std::io::ErrorKind::TimedOut),
            };
            return Err(PodError::io("waiting for the attach socket", &socket)(e));
        }
    }
    let ClientStreams {
        stdin,
        stdout,
        stderr,
        resize,
        mut disconnected,
    } = client;
    // stdinOnce: the first attach that brought stdin closes it at its end.
    let close_at_end = c.config.stdin_once && c.config.stdin && stdin.is_some();
    let mut stdin_task = None;
    if let Some(client_in) = stdin {
        if c.config.stdin {
            let path = pods.config().container_state_dir(&c.id).join("stdin");
            stdin_task = Some(tokio::spawn(copy_stdin(client_in, path)));
        } else {
            // Nothing to feed: the client's stdin is read and dropped.
            stdin_task = Some(tokio::spawn(drain(client_in)));
        }
    }
    let resize_task = resize.map(|mut sizes| {
        let (shim, id) = (shim.clone(), c.id.clone());
        tokio::spawn(async move {
            while let Some(s) = sizes.recv().await {
                let (w, h) = (u32::from(s.width), u32::from(s.height));
                if let Err(e) = shim.resize_pty(&id, "", w, h).await {
                    debug!(error = %crate::error::chain(&e), "attach resize");
                }
            }
        })
    });
    let mut out = tokio::spawn(copy_output(output, stdout, stderr));
    let stdin_done = async {
        match stdin_task.as_mut() {
            Some(t) => {
                let _ = t.await;
            }
            None => std::future::pending().await,
        }
    };
    let end = tokio::select! {
        _ = &mut out => End::OutputDone,
        _ = stdin_done => End::StdinDone,
        _ = disconnected.wait() => End::ClientGone,
    };
    if close_at_end {
        close_stdin(&shim, &c.id).await;
    }
    if let End::StdinDone = end {
        if close_at_end {
            // The container sees EOF and usually exits: let the rest of
            // its output through, unless the client leaves.
            tokio::select! {
                _ = &mut out => {}
                _ = disconnected.wait() => {}
            }
        }
    }
    out.abort();
    if let Some(t) = stdin_task {
        t.abort();
    }
    if let Some(t) = resize_task {
        t.abort();
    }
    Ok(())
}

/// Connects to the bundle's attach socket through a short
/// `/proc/self/fd` path: bundle paths can exceed sun_path (108 bytes).
async fn connect(bundle: &Path) -> std::io::Result<UnixStream> {
    let dir = std::fs::File::open(bundle)?;
    let short = format!(
        "/proc/self/fd/{}/{ATTACH_SOCKET}",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    );
    let stream = UnixStream::connect(short).await;
    drop(dir);
    stream
}

async fn close_stdin(shim: &ShimClient, id: &str) {
    if let Err(e) = shim.close_stdin(id, "").await {
        debug!(error = %crate::error::chain(&e), container_id = %id, "closing stdin after stdinOnce attach");
    }
}

/// Forwards frames to the client's outputs until the container's output
/// ends, then ends the client's streams.
async fn copy_output(
    mut socket: UnixStream,
    mut stdout: Option<OutputWriter>,
    mut stderr: Option<OutputWriter>,
) {
    loop {
        let (tag, data) = match read_frame(&mut socket).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(err) => {
                debug!(error = %crate::error::chain(&err), "attach output");
                break;
            }
        };
        let target = if tag == FRAME_STDERR {
            stderr.as_mut()
        } else {
            stdout.as_mut()
        };
        if let Some(w) = target {
            if w.write_all(&data).await.is_err() {
                break;
            }
        }
    }
    for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = w.shutdown().await;
    }
}

/// Copies the client's stdin into the container's stdin FIFO.
async fn copy_stdin(mut client: StdinReader, path: PathBuf) {
    let mut w = match open_stdin(&path) {
        Ok(w) => w,
        Err(err) => {
            debug!(%err, path = %path.display(), "opening the container's stdin");
            return drain(client).await;
        }
    };
    if let Err(err) = tokio::io::copy(&mut client, &mut w).await {
        debug!(%err, "attach stdin copy ended");
    }
}

fn open_stdin(path: &Path) -> std::io::Result<tokio::net::unix::pipe::Sender> {
    fifo::writer(path)
}

async fn drain(mut client: StdinReader) {
    let _ = tokio::io::copy(&mut client, &mut tokio::io::sink()).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bad_ones_are_refused() {
        let mut bytes = vec![
            FRAME_READY,
            0,
            0,
            0,
            0,
            FRAME_STDOUT,
            0,
            0,
            0,
            2,
            b'h',
            b'i',
        ];
        bytes.extend_from_slice(&[FRAME_STDERR, 0, 0, 0, 0]);
        let mut r = &bytes[..];
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Some((FRAME_READY, Vec::new()))
        );
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Some((FRAME_STDOUT, b"hi".to_vec()))
        );
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Some((FRAME_STDERR, Vec::new()))
        );
        assert_eq!(read_frame(&mut r).await.unwrap(), None);
        let bad = [9u8, 0, 0, 0, 1, 0];
        assert!(matches!(
            read_frame(&mut &bad[..]).await,
            Err(FrameError::Malformed { stream: 9, .. })
        ));
        let huge = [FRAME_STDOUT, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut &huge[..]).await.is_err());
    }
}
