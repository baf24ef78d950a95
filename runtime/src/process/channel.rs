//! The typed parent <-> child channel: a `SOCK_SEQPACKET` socketpair, one
//! message per packet (a tag byte + a short UTF-8 payload), optionally with
//! one file descriptor attached (SCM_RIGHTS).
//!
//! Both ends are close-on-exec, so a successful `execve` in the child shows
//! up in the parent as end-of-file.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

/// Largest packet; error messages are truncated to fit.
const MAX_MSG: usize = 4096;

/// Errors on the channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// socketpair/sendmsg/recvmsg failed.
    #[error("sync channel {op}: {source}")]
    Sys {
        /// The failing operation.
        op: &'static str,
        /// Errno.
        #[source]
        source: nix::Error,
    },
    /// The peer sent something the protocol does not allow here.
    #[error("sync channel: unexpected message {got:?} (expected {expected})")]
    Unexpected {
        /// What arrived.
        got: Msg,
        /// What the receiver waited for.
        expected: &'static str,
    },
    /// A packet did not decode.
    #[error("sync channel: malformed packet (tag {0})")]
    Malformed(u8),
    /// The peer closed its end (exited, or exec'd).
    #[error("sync channel: peer closed the channel")]
    Closed,
}

/// The messages of the create / exec handshakes.
#[derive(Debug)]
pub enum Msg {
    /// Parent → child: uid/gid maps written (the child joins its v1
    /// cgroups itself next, see `cgroups::join`); go on.
    Go,
    /// Child → parent: rootfs mounted (before pivot); run prestart/createRuntime hooks.
    MountsReady,
    /// Parent → child: those hooks ran.
    HooksDone,
    /// Child → parent: pty master attached (to forward to the console socket).
    Console(OwnedFd),
    /// Child → parent: seccomp user-notification listener fd.
    SeccompListener(OwnedFd),
    /// Child → parent: set-up finished (init: now blocking on the exec FIFO).
    Ready,
    /// Child → parent: set-up failed with this message.
    Error(String),
    /// Intermediate child → parent: the real init is this host pid (answer `Go`).
    InitPid(i32),
}

impl Msg {
    fn tag(&self) -> u8 {
        match self {
            Msg::Go => 1,
            Msg::MountsReady => 2,
            Msg::HooksDone => 3,
            Msg::Console(_) => 4,
            Msg::SeccompListener(_) => 5,
            Msg::Ready => 6,
            Msg::Error(_) => 7,
            Msg::InitPid(_) => 8,
        }
    }
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// Creates a connected pair (parent end, child end), both close-on-exec.
pub fn pair() -> Result<(Channel, Channel), ChannelError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|source| ChannelError::Sys {
        op: "socketpair",
        source,
    })?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    /// Sends one message.
    pub fn send(&self, msg: &Msg) -> Result<(), ChannelError> {
        let mut buf = vec![msg.tag()];
        let mut fds: Vec<RawFd> = Vec::new();
        match msg {
            Msg::Error(text) => {
                let mut end = text.len().min(MAX_MSG - 1);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                buf.extend_from_slice(&text.as_bytes()[..end]);
            }
            Msg::Console(fd) | Msg::SeccompListener(fd) => fds.push(fd.as_raw_fd()),
            Msg::InitPid(pid) => buf.extend_from_slice(&pid.to_le_bytes()),
            _ => {}
        }
        let iov = [IoSlice::new(&buf)];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::Error::EINTR) => continue,
                Err(nix::Error::EPIPE) => return Err(ChannelError::Closed),
                Err(source) => return Err(ChannelError::Sys { op: "send", source }),
            }
        }
    }

    /// Receives one message; `Closed` on end-of-file.
    pub fn recv(&self) -> Result<Msg, ChannelError> {
        let mut buf = vec![0u8; MAX_MSG];
        let mut cmsg_space = nix::cmsg_space!([RawFd; 1]);
        let (len, fd) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg_space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(m) => {
                    let mut fd = None;
                    if let Ok(cmsgs) = m.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(raw) = c {
                                for r in raw {
                                    // SAFETY: SCM_RIGHTS hands us a fresh descriptor we now own.
                                    let owned = unsafe { OwnedFd::from_raw_fd(r) };
                                    if fd.is_none() {
                                        fd = Some(owned);
                                    }
                                }
                            }
                        }
                    }
                    break (m.bytes, fd);
                }
                Err(nix::Error::EINTR) => continue,
                Err(source) => return Err(ChannelError::Sys { op: "recv", source }),
            }
        };
        if len == 0 {
            return Err(ChannelError::Closed);
        }
        let tag = buf[0];
        let msg = match (tag, fd) {
            (1, None) => Msg::Go,
            (2, None) => Msg::MountsReady,
            (3, None) => Msg::HooksDone,
            (4, Some(fd)) => Msg::Console(fd),
            (5, Some(fd)) => Msg::SeccompListener(fd),
            (6, None) => Msg::Ready,
            (7, None) => Msg::Error(String::from_utf8_lossy(&buf[1..len]).into_owned()),
            (8, None) if len == 5 => {
                Msg::InitPid(i32::from_le_bytes([buf[1], buf[2], buf[3], buf[4]]))
            }
            _ => return Err(ChannelError::Malformed(tag)),
        };
        Ok(msg)
    }

    /// Receives and requires a payload-less message of the given kind.
    pub fn expect(&self, want: fn(&Msg) -> bool, name: &'static str) -> Result<(), ChannelError> {
        let got = self.recv()?;
        if want(&got) {
            Ok(())
        } else {
            Err(ChannelError::Unexpected {
                got,
                expected: name,
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_fd() {
        let (a, b) = pair().unwrap();
        a.send(&Msg::Go).unwrap();
        assert!(matches!(b.recv().unwrap(), Msg::Go));
        b.send(&Msg::Error("boom: ünïcode".into())).unwrap();
        match a.recv().unwrap() {
            Msg::Error(s) => assert_eq!(s, "boom: ünïcode"),
            m => panic!("{m:?}"),
        }
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        b.send(&Msg::Console(f.into())).unwrap();
        assert!(matches!(a.recv().unwrap(), Msg::Console(_)));
        b.send(&Msg::InitPid(4242)).unwrap();
        assert!(matches!(a.recv().unwrap(), Msg::InitPid(4242)));
        drop(b);
        assert!(matches!(a.recv(), Err(ChannelError::Closed)));
    }

    #[test]
    fn long_error_is_truncated() {
        let (a, b) = pair().unwrap();
        a.send(&Msg::Error("é".repeat(5000))).unwrap();
        match b.recv().unwrap() {
            Msg::Error(s) => assert!(s.len() < MAX_MSG && s.starts_with('é')),
            m => panic!("{m:?}"),
        }
    }
}
