//! The receiving end of `--console-socket`: a unix socket on which the
//! runtime sends the pty master with SCM_RIGHTS.

use std::fs::File;
use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread::sleep;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// A listening console socket.
pub struct ConsoleSocket {
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn bind(path: &Path) -> ConsoleSocket {
        let listener = UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        ConsoleSocket { listener }
    }

    /// Receives the pty master in a background thread (the runtime blocks until it is taken).
    pub fn receive_in_background(self, timeout: Duration) -> JoinHandle<Result<File, String>> {
        std::thread::spawn(move || self.receive(timeout))
    }

    /// Accepts the runtime's connection and returns the pty master it sends.
    pub fn receive(&self, timeout: Duration) -> Result<File, String> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("accept: {e}")),
            }
            if Instant::now() > deadline {
                return Err("no connection on the console socket".into());
            }
            sleep(Duration::from_millis(5));
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("recvmsg: {e}"))?;
        for c in msg.cmsgs().map_err(|e| e.to_string())? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                let mut owned: Vec<OwnedFd> = fds
                    .into_iter()
                    // SAFETY: SCM_RIGHTS just installed these fds in this process; nothing else owns them.
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                    .collect();
                if let Some(fd) = owned.pop() {
                    return Ok(File::from(fd));
                }
            }
        }
        Err("message without SCM_RIGHTS".into())
    }
}

/// Reads a pty master until the slave side is closed everywhere (EIO) or `timeout`.
pub fn read_until_hangup(mut master: File, timeout: Duration) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match master.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break, // EIO once the last slave fd is closed
            }
        }
        let _ = tx.send(String::from_utf8_lossy(&all).into_owned());
    });
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("pty output did not end within {timeout:?}"))
}
