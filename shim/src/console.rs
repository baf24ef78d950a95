//! Terminals: the console socket that receives a process' pty master from
//! berth-runtime, and window-size changes on that master.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// Where console sockets are made (short: unix socket paths max 108 bytes).
const CONSOLE_DIR: &str = "/run/berth/console";

/// Errors of console handling.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Creating or binding the socket failed.
    #[error("console socket {path}: {source}")]
    Socket {
        /// Socket path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No pty master arrived.
    #[error("console socket {0}: no pty master received")]
    NoMaster(PathBuf),
    /// TIOCSWINSZ failed.
    #[error("resizing the terminal: {0}")]
    Resize(#[source] nix::Error),
}

/// A listening socket for one pty master; removed on drop.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Binds a fresh socket under /run/berth/console.
    pub fn new() -> Result<ConsoleSocket, ConsoleError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = Path::new(CONSOLE_DIR);
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ConsoleError::Socket { path, source }
        };
        std::fs::create_dir_all(dir).map_err(err(dir))?;
        let path = dir.join(format!(
            "{}-{}.sock",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(err(&path))?;
        Ok(ConsoleSocket { listener, path })
    }

    /// The socket path handed to berth-runtime.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the pty master the runtime sent (it connects and sends before
    /// the helper replies, so the connection is already queued).
    pub fn receive(&self, timeout: Duration) -> Result<OwnedFd, ConsoleError> {
        let no_master = || ConsoleError::NoMaster(self.path.clone());
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(
            std::os::fd::AsFd::as_fd(&self.listener),
            PollFlags::POLLIN,
        )];
        if !matches!(poll(&mut fds, PollTimeout::from(ms)), Ok(n) if n > 0) {
            return Err(no_master());
        }
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|source| ConsoleError::Socket {
                path: self.path.clone(),
                source,
            })?;
        let mut buf = [0u8; 256];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| ConsoleError::Socket {
            path: self.path.clone(),
            source: e.into(),
        })?;
        let cmsgs = msg.cmsgs().map_err(|e| ConsoleError::Socket {
            path: self.path.clone(),
            source: e.into(),
        })?;
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // SAFETY: SCM_RIGHTS just installed this fd in our
                    // table; nothing else owns it.
                    return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        Err(no_master())
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Sets the window size of a pty (master side).
pub fn resize(master: BorrowedFd<'_>, width: u16, height: u16) -> Result<(), ConsoleError> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize struct from the pointer, which
    // lives for the whole call; the fd is a valid borrowed pty master.
    let ret = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if ret < 0 {
        return Err(ConsoleError::Resize(nix::Error::last()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn master_passes_through_the_socket_and_resizes() {
        let sock = ConsoleSocket::new().unwrap();
        let pty = nix::pty::openpty(None, None).unwrap();
        let path = sock.path().to_path_buf();
        let sender = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let fds = [pty.master.as_raw_fd()];
        nix::sys::socket::sendmsg::<()>(
            sender.as_raw_fd(),
            &[std::io::IoSlice::new(b"/dev/ptmx")],
            &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let master = sock.receive(Duration::from_secs(2)).unwrap();
        resize(master.as_fd(), 100, 40).unwrap();
        let mut ws: libc::winsize = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize into `ws`.
        let r = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!(r, 0);
        assert_eq!((ws.ws_col, ws.ws_row), (100, 40));
        drop(sock);
        assert!(!path.exists());
    }
}
