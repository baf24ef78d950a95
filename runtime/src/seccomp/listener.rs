//! Handing the `SCMP_ACT_NOTIFY` listener fd to the seccomp agent named by
//! `linux.seccomp.listenerPath` (runtime-spec "seccomp" section).

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::{ContainerProcessStateBuilder, State, SECCOMP_FD_NAME};

use super::SeccompError;

/// Sends the seccomp notify fd to the agent at `listener_path`, as the
/// runtime-spec describes: a `ContainerProcessState` JSON (with
/// `fds: ["seccompFd"]`, the container pid as seen by the runtime and the
/// spec's `listenerMetadata`) in one message, the fd in `SCM_RIGHTS`.
pub fn send_to_listener(
    listener_path: &Path,
    notify_fd: BorrowedFd<'_>,
    pid: i32,
    metadata: Option<&str>,
    state: &State,
) -> Result<(), SeccompError> {
    let mut builder = ContainerProcessStateBuilder::default()
        .version(state.version().clone())
        .fds(vec![SECCOMP_FD_NAME.to_string()])
        .pid(pid)
        .state(state.clone());
    if let Some(m) = metadata {
        builder = builder.metadata(m.to_string());
    }
    let body = builder
        .build()
        .map_err(|e| SeccompError::ProcessState(serde::ser::Error::custom(e)))
        .and_then(|s| serde_json::to_vec(&s).map_err(SeccompError::ProcessState))?;
    let stream =
        UnixStream::connect(listener_path).map_err(|source| SeccompError::ListenerConnect {
            path: listener_path.to_path_buf(),
            source,
        })?;
    let fds = [notify_fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(&body)];
    sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).map_err(|source| {
        SeccompError::ListenerSend {
            path: listener_path.to_path_buf(),
            source,
        }
    })?;
    Ok(())
}
