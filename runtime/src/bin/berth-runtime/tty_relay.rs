//! Foreground terminal for `run` and `exec -t` without `--console-socket`:
//! like runc, the CLI receives the pty master on a private socket of its own
//! and relays it to its stdio (raw mode, window size, signals) until the
//! container process exits. Single-threaded: one poll(2) loop over stdin,
//! the master and a signalfd.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::sys::termios::{self, SetArg, Termios};
use nix::unistd::Pid;

/// How long output is still drained after the process exited, in case
/// something else in the container keeps the pty slave open.
const DRAIN_IDLE: Duration = Duration::from_millis(100);
/// Upper bound on draining after exit.
const DRAIN_MAX: Duration = Duration::from_secs(2);

/// The message for a terminal that cannot be relayed because of `--detach`.
pub const DETACH_NEEDS_SOCKET: &str =
    "process.terminal is true and --detach is set: pass --console-socket to receive the pty master";

/// A listening console socket in a fresh 0700 temp dir, removed on drop.
#[derive(Debug)]
pub struct ConsoleListener {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleListener {
    /// Binds `console.sock` in a new private directory under the temp dir.
    pub fn new() -> anyhow::Result<ConsoleListener> {
        let template = std::env::temp_dir().join("berth-runtime-tty-XXXXXX");
        // mkdtemp creates the directory with mode 0700: nobody else can connect.
        let dir = nix::unistd::mkdtemp(&template)
            .with_context(|| format!("creating a private directory {}", template.display()))?;
        let path = dir.join("console.sock");
        let bound = UnixListener::bind(&path).and_then(|l| {
            l.set_nonblocking(true)?;
            Ok(l)
        });
        match bound {
            Ok(listener) => Ok(ConsoleListener {
                dir,
                path,
                listener,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(e).with_context(|| format!("binding console socket {}", path.display()))
            }
        }
    }

    /// The socket path, to pass as the library's `console_socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Takes the pty master the library sent (it has already connected and
    /// sent by the time create/exec returned, so this never waits).
    pub fn receive_master(&self) -> anyhow::Result<OwnedFd> {
        let (stream, _) = match self.listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                bail!("no pty master arrived on {}", self.path.display())
            }
            Err(e) => return Err(e).context("accepting on the console socket"),
        };
        stream
            .set_nonblocking(false)
            .and_then(|()| stream.set_read_timeout(Some(Duration::from_secs(10))))
            .context("configuring the console connection")?;
        receive_fd(stream.as_fd())
    }
}

impl Drop for ConsoleListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Err(err) = std::fs::remove_dir(&self.dir) {
            tracing::debug!(%err, dir = %self.dir.display(), "removing console socket dir");
        }
    }
}

/// Receives one fd (SCM_RIGHTS) from a connected unix socket.
fn receive_fd(sock: BorrowedFd<'_>) -> anyhow::Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            other => break other.context("receiving the pty master")?,
        }
    };
    let mut received = Vec::new();
    for cmsg in msg.cmsgs().context("reading control messages")? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            received.extend(fds.into_iter().map(own_received_fd));
        }
    }
    // Extra fds (none expected) are closed when `received` drops.
    match received.into_iter().next() {
        Some(fd) => Ok(fd),
        None => bail!("console socket message carried no fd"),
    }
}

/// Takes ownership of an fd installed by SCM_RIGHTS.
fn own_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the kernel just installed `fd` in this process for this
    // message; nothing else refers to it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Blocks the signals a foreground `run`/`exec` handles (forwarded ones plus
/// SIGCHLD and SIGWINCH) and returns them, for sigwait or a signalfd. Call
/// only once the container process exists: children inherit the mask.
pub fn block_signals() -> anyhow::Result<SigSet> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set.thread_block().context("blocking signals")?;
    Ok(set)
}

/// The caller's terminal in raw mode; the saved settings come back on drop.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin when it is a terminal (`None` otherwise).
    fn enter() -> anyhow::Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !nix::unistd::isatty(stdin.as_fd()).unwrap_or(false) {
            return Ok(None);
        }
        let saved = termios::tcgetattr(stdin.as_fd()).context("tcgetattr on stdin")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .context("putting the terminal in raw mode")?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let stdin = std::io::stdin();
        if let Err(err) = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &self.saved) {
            tracing::warn!(%err, "restoring the terminal settings");
        }
    }
}

/// Relays the pty `master` to this process' stdio until `child` exited and
/// its output is drained; returns its exit code (128+signal when killed).
/// `signals` must be blocked already (see [`block_signals`]).
pub fn relay(master: OwnedFd, child: Pid, signals: &SigSet) -> anyhow::Result<i32> {
    let sfd = SignalFd::with_flags(signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .context("signalfd")?;
    let flags = fcntl(&master, FcntlArg::F_GETFL).context("fcntl(F_GETFL) on the pty master")?;
    fcntl(
        &master,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .context("making the pty master non-blocking")?;
    copy_winsize(master.as_fd());
    let _raw = RawMode::enter()?;
    let mut r = Relay {
        master,
        child,
        sfd,
        stdin_open: true,
        master_open: true,
        pending: Vec::new(),
        exit: None,
    };
    r.run()
}

/// State of one relay loop.
struct Relay {
    master: OwnedFd,
    child: Pid,
    sfd: SignalFd,
    /// Whether stdin is still read (until EOF, or the process exited).
    stdin_open: bool,
    /// Whether the master still delivers output (until EOF/EIO).
    master_open: bool,
    /// Input read from stdin, not yet accepted by the master.
    pending: Vec<u8>,
    /// The process' exit code, once reaped.
    exit: Option<i32>,
}

impl Relay {
    fn run(&mut self) -> anyhow::Result<i32> {
        // It may have exited before its SIGCHLD could be caught by the mask.
        self.exit = crate::commands::reap(self.child)?;
        let mut drain_until = None;
        loop {
            if let Some(code) = self.exit {
                let until = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN_MAX);
                self.stdin_open = false;
                if !self.master_open || Instant::now() >= until {
                    return Ok(code);
                }
            }
            let stdin = std::io::stdin();
            let mut master_events = PollFlags::empty();
            if self.master_open {
                master_events |= PollFlags::POLLIN;
                if !self.pending.is_empty() {
                    master_events |= PollFlags::POLLOUT;
                }
            }
            // Back-pressure: read more input only once the last is passed on.
            let stdin_events = if self.stdin_open && self.pending.is_empty() {
                PollFlags::POLLIN
            } else {
                PollFlags::empty()
            };
            let mut fds = [
                PollFd::new(self.sfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.master.as_fd(), master_events),
                PollFd::new(stdin.as_fd(), stdin_events),
            ];
            let timeout = if self.exit.is_some() {
                PollTimeout::from(DRAIN_IDLE.as_millis() as u16)
            } else {
                PollTimeout::NONE
            };
            match poll(&mut fds, timeout) {
                Ok(0) => {
                    if let Some(code) = self.exit {
                        return Ok(code);
                    }
                    continue;
                }
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context("poll"),
            }
            let ready = |fd: &PollFd| fd.revents().unwrap_or(PollFlags::empty());
            let (sig_ev, master_ev, stdin_ev) = (ready(&fds[0]), ready(&fds[1]), ready(&fds[2]));
            if let Err(e) = self.handle(sig_ev, master_ev, stdin_ev) {
                // Once reaped, the pid may be reused: the caller must not
                // act on it, so report the exit and only log the failure.
                let Some(code) = self.exit else {
                    return Err(e);
                };
                tracing::warn!(
                    error = format!("{e:#}"),
                    "relaying after the process exited"
                );
                return Ok(code);
            }
        }
    }

    /// Handles one poll round's events.
    fn handle(
        &mut self,
        sig_ev: PollFlags,
        master_ev: PollFlags,
        stdin_ev: PollFlags,
    ) -> anyhow::Result<()> {
        // Signals first: a resize sent before some input applies before it.
        if !sig_ev.is_empty() {
            self.handle_signals()?;
        }
        if master_ev.intersects(PollFlags::POLLOUT) {
            self.flush_input()?;
        }
        if master_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            self.copy_output()?;
        }
        if stdin_ev.intersects(PollFlags::POLLNVAL) {
            // No stdin at all (fd 0 closed): nothing to relay, and polling
            // it again would spin.
            self.stdin_open = false;
        } else if stdin_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            self.read_input()?;
        }
        Ok(())
    }

    fn handle_signals(&mut self) -> anyhow::Result<()> {
        while let Some(info) = self.sfd.read_signal().context("reading the signalfd")? {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            match sig {
                Signal::SIGCHLD => {
                    if self.exit.is_none() {
                        self.exit = crate::commands::reap(self.child)?;
                    }
                }
                Signal::SIGWINCH => copy_winsize(self.master.as_fd()),
                // Reaped: its pid may belong to someone else by now.
                _ if self.exit.is_some() => {}
                _ => {
                    if let Err(err) = nix::sys::signal::kill(self.child, sig) {
                        tracing::debug!(%err, ?sig, "forwarding signal");
                    }
                }
            }
        }
        Ok(())
    }

    /// Master → stdout, until the master would block.
    fn copy_output(&mut self) -> anyhow::Result<()> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match nix::unistd::read(&self.master, &mut buf) {
                // EIO: the last slave fd is closed (Linux reports it so, not as EOF).
                Ok(0) | Err(Errno::EIO) => {
                    self.master_open = false;
                    self.pending.clear();
                    return Ok(());
                }
                Ok(n) => write_all(std::io::stdout().as_fd(), &buf[..n])
                    .context("writing the container's output to stdout")?,
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context("reading the pty master"),
            }
        }
    }

    /// One read of stdin into `pending` (stdin stays blocking: it is the
    /// caller's file description, shared with their shell).
    fn read_input(&mut self) -> anyhow::Result<()> {
        let mut buf = [0u8; 4096];
        match nix::unistd::read(std::io::stdin().as_fd(), &mut buf) {
            // EOF, or a hung-up terminal: stop reading, keep relaying output.
            Ok(0) | Err(Errno::EIO) => self.stdin_open = false,
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                self.flush_input()?;
            }
            Err(Errno::EAGAIN | Errno::EINTR) => {}
            Err(e) => return Err(e).context("reading stdin"),
        }
        Ok(())
    }

    /// `pending` → master, as much as it takes now.
    fn flush_input(&mut self) -> anyhow::Result<()> {
        while !self.pending.is_empty() {
            match nix::unistd::write(&self.master, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(Errno::EIO) => {
                    self.pending.clear();
                    return Ok(());
                }
                Err(e) => return Err(e).context("writing to the pty master"),
            }
        }
        Ok(())
    }
}

/// Writes all of `data` to `fd`, waiting when it is non-blocking and full.
fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                poll(&mut fds, PollTimeout::NONE)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// (rows, cols) of the caller's terminal: the first of stdin, stdout,
/// stderr that is one.
pub fn caller_winsize() -> Option<(u16, u16)> {
    [0, 1, 2].into_iter().find_map(winsize_of)
}

/// Copies the size of the caller's terminal to the pty; no terminal, no
/// change. Done before the process runs too, so it never sees a 0x0 pty.
pub fn copy_winsize(master: BorrowedFd<'_>) {
    let Some((rows, cols)) = caller_winsize() else {
        return;
    };
    if let Err(err) = berth_runtime::process::sys::set_winsize(master, rows, cols) {
        tracing::debug!(%err, "setting the pty window size");
    }
}

/// (rows, cols) of terminal `fd`, if it is a terminal with a size.
fn winsize_of(fd: RawFd) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct on our stack;
    // an fd that is not a terminal just fails with ENOTTY.
    let ret = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
    (ret == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn listener_dir_is_private_and_removed_on_drop() {
        let l = ConsoleListener::new().unwrap();
        let dir = l.path().parent().unwrap().to_path_buf();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(l.path().exists());
        drop(l);
        assert!(!dir.exists());
    }

    #[test]
    fn receives_the_fd_the_library_sends() {
        let l = ConsoleListener::new().unwrap();
        let pty = berth_runtime::process::console::open_pty(Some((24, 80))).unwrap();
        berth_runtime::process::console::send_to_socket(l.path(), &pty.master, "").unwrap();
        let got = l.receive_master().unwrap();
        // The received fd is the same pty: its size is the one set above.
        assert_eq!(winsize_of(got.as_raw_fd()), Some((24, 80)));
    }

    #[test]
    fn receive_without_sender_fails_instead_of_hanging() {
        let l = ConsoleListener::new().unwrap();
        let err = l.receive_master().unwrap_err();
        assert!(err.to_string().contains("no pty master"), "{err:#}");
    }
}
