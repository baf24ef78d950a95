//! Terminals: the child opens a pty from the container's own devpts
//! instance (after pivot_root, so `/dev/ptmx` is the container's), makes the
//! slave its controlling terminal and stdio, and hands the master to the
//! parent, which forwards it over `--console-socket` like runc.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;

use super::sys;

/// Errors setting up a terminal.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A pty syscall failed.
    #[error("console: {op}: {source}")]
    Sys {
        /// The failing call.
        op: &'static str,
        /// Errno.
        #[source]
        source: nix::Error,
    },
    /// Talking to the console socket failed.
    #[error("console socket {path}: {source}")]
    Socket {
        /// Socket path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn sys_err(op: &'static str) -> impl FnOnce(nix::Error) -> ConsoleError {
    move |source| ConsoleError::Sys { op, source }
}

/// A freshly opened pty: master (to send away) and slave path in the container.
#[derive(Debug)]
pub struct Pty {
    /// Master side.
    pub master: OwnedFd,
    /// Slave path as seen in the container, e.g. `/dev/pts/0`.
    pub slave_path: PathBuf,
    /// Open slave.
    pub slave: OwnedFd,
}

/// Opens a pty from `/dev/ptmx` of the current mount namespace.
pub fn open_pty(size: Option<(u16, u16)>) -> Result<Pty, ConsoleError> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(sys_err("posix_openpt"))?;
    nix::pty::grantpt(&master).map_err(sys_err("grantpt"))?;
    nix::pty::unlockpt(&master).map_err(sys_err("unlockpt"))?;
    let name = nix::pty::ptsname_r(&master).map_err(sys_err("ptsname"))?;
    let slave = open(
        Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys_err("opening the pty slave"))?;
    let master = OwnedFd::from(master);
    if let Some((rows, cols)) = size {
        sys::set_winsize(master.as_fd(), rows, cols).map_err(sys_err("TIOCSWINSZ"))?;
    }
    Ok(Pty {
        master,
        slave_path: PathBuf::from(name),
        slave,
    })
}

/// Makes `slave` the controlling terminal (caller is a session leader) and stdio.
pub fn attach_slave(slave: &OwnedFd) -> Result<(), ConsoleError> {
    sys::set_controlling_tty(slave.as_fd()).map_err(sys_err("TIOCSCTTY"))?;
    for target in 0..3 {
        sys::dup_onto(slave.as_fd(), target).map_err(sys_err("dup2 onto stdio"))?;
    }
    Ok(())
}

/// Sends the pty master to the `--console-socket` listener (SCM_RIGHTS,
/// with the pty name as payload, the way runc's consumers expect).
pub fn send_to_socket(socket: &Path, master: &OwnedFd, name: &str) -> Result<(), ConsoleError> {
    let err = |source| ConsoleError::Socket {
        path: socket.to_path_buf(),
        source,
    };
    let stream = UnixStream::connect(socket).map_err(err)?;
    let fds = [master.as_raw_fd()];
    let payload = if name.is_empty() { "/dev/ptmx" } else { name };
    let iov = [IoSlice::new(payload.as_bytes())];
    sendmsg::<()>(
        stream.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| err(std::io::Error::from(e)))?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn pty_master_reaches_console_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("console.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let pty = open_pty(Some((24, 80))).unwrap();
        send_to_socket(&sock, &pty.master, pty.slave_path.to_str().unwrap()).unwrap();
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let n = msg.cmsgs().unwrap().count();
        assert_eq!(n, 1);
        assert!(msg.bytes > 0);
    }
}
