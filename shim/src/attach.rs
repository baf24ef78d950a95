//! Attach tee: everything a container writes to its CRI log is also sent
//! to the clients connected on `<bundle>/attach.sock` (berthd's attach
//! backend). Only output goes through the socket: berthd writes attach
//! input to the container's stdin FIFO and resizes through `ResizePty`.
//!
//! Wire format, shim → client: first a ready frame `[0][0u32]` once the
//! client is registered (output from then on reaches it: berthd starts
//! forwarding input only after it), then until the container's output
//! ends (then the shim shuts the connection down) frames
//! `[stream: u8 (1 stdout, 2 stderr)][length: u32 big-endian][bytes]`.
//!
//! The socket is created mode 0600 in the bundle (root-only): whoever can
//! connect reads the container's output.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::log_writer::Stream;

/// File name of the attach socket inside a container's bundle.
pub const ATTACH_SOCKET: &str = "attach.sock";
/// Frame tag of the ready frame (no payload).
pub const FRAME_READY: u8 = 0;
/// Frame stream byte for stdout.
pub const FRAME_STDOUT: u8 = 1;
/// Frame stream byte for stderr.
pub const FRAME_STDERR: u8 = 2;
/// How long one client may block the container's output before it is
/// dropped (a stuck reader must not stall the container forever).
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the accept loop looks at its stop flag.
const ACCEPT_POLL_MS: u16 = 500;

/// Errors of the attach socket.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Binding or configuring the socket failed.
    #[error("attach socket {path}: {op}")]
    Socket {
        /// What was attempted.
        op: &'static str,
        /// The socket path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// The output fan-out of one container: the log copier publishes, attach
/// clients receive.
#[derive(Debug, Default)]
pub struct Hub {
    clients: Mutex<Vec<UnixStream>>,
    closed: AtomicBool,
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Sends `data` of `stream` to every client; a client that fails (or
    /// blocks longer than the write timeout) is dropped.
    pub fn publish(&self, stream: Stream, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        if clients.is_empty() {
            return;
        }
        let frame = encode_frame(stream, data);
        clients.retain_mut(|c| match c.write_all(&frame) {
            Ok(()) => true,
            Err(err) => {
                tracing::debug!(%err, "dropping an attach client");
                false
            }
        });
    }

    /// The output ended: every client sees EOF, later clients at once.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let clients =
            std::mem::take(&mut *self.clients.lock().unwrap_or_else(PoisonError::into_inner));
        for c in clients {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// How many clients are connected.
    pub fn client_count(&self) -> usize {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the output has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn add(&self, mut client: UnixStream) {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock: close() takes the same lock, so a client
        // is either shut down here or by close().
        if self.is_closed() {
            let _ = client.shutdown(std::net::Shutdown::Both);
            return;
        }
        // Ready under the lock: no output can be published between it and
        // the registration.
        if client.write_all(&[FRAME_READY, 0, 0, 0, 0]).is_ok() {
            clients.push(client);
        }
    }
}

/// One frame of the wire format.
pub fn encode_frame(stream: Stream, data: &[u8]) -> Vec<u8> {
    let tag = match stream {
        Stream::Stdout => FRAME_STDOUT,
        Stream::Stderr => FRAME_STDERR,
    };
    let mut frame = Vec::with_capacity(5 + data.len());
    frame.push(tag);
    // Copy buffers are 32 KiB: the length always fits.
    frame.extend_from_slice(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes());
    frame.extend_from_slice(data);
    frame
}

/// The listening attach socket; dropping it stops the accept thread and
/// removes the socket file.
#[derive(Debug)]
pub struct AttachServer {
    stop: Arc<AtomicBool>,
    path: PathBuf,
}

impl Drop for AttachServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Err(err) = std::fs::remove_file(&self.path) {
            if err.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(%err, path = %self.path.display(), "removing the attach socket");
            }
        }
    }
}

/// Listens on `<bundle>/attach.sock` and hands every client to `hub`.
pub fn serve(bundle: &Path, hub: Arc<Hub>) -> Result<AttachServer, AttachError> {
    let path = bundle.join(ATTACH_SOCKET);
    let err = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| AttachError::Socket { op, path, source }
    };
    // A leftover of an earlier shim for the same bundle would make bind fail.
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err("removing a stale socket", &path)(e)),
    }
    // Bundle paths can exceed sun_path (108 bytes): bind through a short
    // /proc/self/fd path of the bundle directory instead.
    let dir = std::fs::File::open(bundle).map_err(err("opening the bundle", bundle))?;
    let short = PathBuf::from(format!(
        "/proc/self/fd/{}/{ATTACH_SOCKET}",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    ));
    let listener = UnixListener::bind(&short).map_err(err("bind", &path))?;
    drop(dir);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(err("chmod", &path))?;
    listener
        .set_nonblocking(true)
        .map_err(err("set_nonblocking", &path))?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    std::thread::Builder::new()
        .name("attach".into())
        .stack_size(128 * 1024)
        .spawn(move || accept_loop(&listener, &hub, &thread_stop))
        .map_err(err("spawning the accept thread", &path))?;
    Ok(AttachServer { stop, path })
}

fn accept_loop(listener: &UnixListener, hub: &Hub, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ACCEPT_POLL_MS)) {
            Ok(0) | Err(nix::Error::EINTR) => continue,
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(%err, "poll on the attach socket");
                return;
            }
        }
        match listener.accept() {
            Ok((client, _)) => {
                // Blocking writes bounded by a timeout; the listener's
                // non-blocking flag is not inherited on Linux.
                if client.set_nonblocking(false).is_err()
                    || client
                        .set_write_timeout(Some(CLIENT_WRITE_TIMEOUT))
                        .is_err()
                {
                    continue;
                }
                hub.add(client);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => {
                tracing::warn!(%err, "accepting an attach client");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_frame(c: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        if c.read_exact(&mut head).is_err() {
            return None;
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut data = vec![0u8; len];
        c.read_exact(&mut data).unwrap();
        Some((head[0], data))
    }

    /// Connects to a socket whose path may exceed sun_path.
    fn connect_long(path: &Path) -> UnixStream {
        let dir = std::fs::File::open(path.parent().unwrap()).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let short = format!(
            "/proc/self/fd/{}/{name}",
            std::os::fd::AsRawFd::as_raw_fd(&dir)
        );
        UnixStream::connect(short).unwrap()
    }

    fn connect(path: &Path, hub: &Hub, before: usize) -> UnixStream {
        let c = connect_long(path);
        // Wait until the accept thread registered it.
        for _ in 0..200 {
            if hub.clients.lock().unwrap().len() > before {
                return c;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("client never registered");
    }

    #[test]
    fn clients_get_framed_output_then_eof() {
        // Deeper than sun_path allows: the bind must not depend on it.
        let top = tempfile::tempdir().unwrap();
        let deep = top.path().join("d".repeat(100));
        std::fs::create_dir(&deep).unwrap();
        let dir = tempfile::tempdir_in(&deep).unwrap();
        let hub = Hub::new();
        let server = serve(dir.path(), hub.clone()).unwrap();
        let path = dir.path().join(ATTACH_SOCKET);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Nobody attached: publishing is a no-op.
        hub.publish(Stream::Stdout, b"lost");
        let mut a = connect(&path, &hub, 0);
        let mut b = connect(&path, &hub, 1);
        for c in [&mut a, &mut b] {
            assert_eq!(read_frame(c).unwrap(), (FRAME_READY, Vec::new()));
        }
        hub.publish(Stream::Stdout, b"out");
        hub.publish(Stream::Stderr, b"err");
        for c in [&mut a, &mut b] {
            assert_eq!(read_frame(c).unwrap(), (FRAME_STDOUT, b"out".to_vec()));
            assert_eq!(read_frame(c).unwrap(), (FRAME_STDERR, b"err".to_vec()));
        }
        // A client that goes away is dropped on the next write.
        drop(b);
        hub.publish(Stream::Stdout, b"x");
        hub.publish(Stream::Stdout, b"y");
        assert_eq!(hub.clients.lock().unwrap().len(), 1);
        assert_eq!(read_frame(&mut a).unwrap().1, b"x");
        assert_eq!(read_frame(&mut a).unwrap().1, b"y");
        hub.close();
        assert!(read_frame(&mut a).is_none());
        // After the end a new client sees EOF at once.
        let mut late = connect_long(&path);
        late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(late.read(&mut buf).unwrap(), 0);
        drop(server);
        assert!(!path.exists());
    }
}
