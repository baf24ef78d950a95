//! Container and exec stdio: the three fds a process gets, and the copy
//! threads behind them.
//!
//! - `cri:///path` (stdout/stderr): both streams go through pipes into one
//!   CRI-format [`LogWriter`] (one poll thread per container).
//! - `file:///path`: the file, opened for append, is the fd itself.
//! - a plain path is a FIFO someone reads (containerd, berthd's exec): the
//!   process writes to it directly, no copy.
//! - stdin FIFO: copied into a pipe by a thread; the shim keeps the FIFO
//!   open for writing so the process sees EOF only on `CloseIO`.
//! - empty: /dev/null.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::attach::{self, AttachError, Hub};
use crate::log_writer::{LogWriter, LogWriterError, Stream};

/// Stack size of the copy threads (they only shuffle buffers).
const COPY_STACK: usize = 128 * 1024;

/// Errors of stdio set-up.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// Opening a FIFO or file failed.
    #[error("opening {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The CRI log file could not be opened or reopened.
    #[error("container log: {0}")]
    Log(#[from] LogWriterError),
    /// pipe(2) or thread creation failed.
    #[error("{op}: {source}")]
    Sys {
        /// What was attempted.
        op: &'static str,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An stdio URI the shim does not handle.
    #[error("unsupported stdio {0:?} (FIFO path, cri:///path, file:///path or empty)")]
    Unsupported(String),
    /// The process has no CRI log to reopen.
    #[error("the process does not write a CRI log")]
    NoLog,
    /// The attach socket could not be set up.
    #[error("attach socket")]
    Attach(#[from] AttachError),
}

/// Where an output stream goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Null,
    Cri(PathBuf),
    File(PathBuf),
    Fifo(PathBuf),
}

fn parse(s: &str) -> Result<Target, StdioError> {
    if s.is_empty() {
        return Ok(Target::Null);
    }
    if let Some(p) = s.strip_prefix("cri://") {
        return absolute(p, s).map(Target::Cri);
    }
    if let Some(p) = s.strip_prefix("file://") {
        return absolute(p, s).map(Target::File);
    }
    if let Some(p) = s.strip_prefix("fifo://") {
        return absolute(p, s).map(Target::Fifo);
    }
    absolute(s, s).map(Target::Fifo)
}

fn absolute(p: &str, orig: &str) -> Result<PathBuf, StdioError> {
    if p.starts_with('/') {
        Ok(PathBuf::from(p))
    } else {
        Err(StdioError::Unsupported(orig.to_string()))
    }
}

/// A done flag the output copier sets when every stream reached EOF.
type DoneFlag = Arc<(Mutex<bool>, Condvar)>;

/// The shim's side of a process' stdio.
#[derive(Default)]
pub struct IoHandle {
    log: Option<Arc<Mutex<LogWriter>>>,
    done: Option<DoneFlag>,
    stdin: Option<Arc<Mutex<Option<OwnedFd>>>>,
    /// The pty master of a terminal process.
    console: Option<Arc<OwnedFd>>,
    /// Set once the process is gone: stdin copiers stop.
    closed: Arc<AtomicBool>,
    /// Set by CloseIO: stdin copiers drain what the FIFO still holds, then
    /// close the process' stdin (a pipe's EOF, a terminal's EOF character).
    stdin_eof: Arc<AtomicBool>,
    /// A copier owns the terminal's stdin (and sends its EOF character).
    tty_stdin: bool,
    /// Wakes the stdin copier when `stdin_eof` is set.
    stdin_wake: Option<OwnedFd>,
    /// Output fan-out to attach clients (CRI log targets only).
    attach: Option<Arc<Hub>>,
    /// The attach socket, once served.
    attach_server: Option<attach::AttachServer>,
}

/// Where the output of a terminal goes once its pty master arrives.
enum Sink {
    Null,
    Log(Arc<Mutex<LogWriter>>),
    Fd(OwnedFd),
}

/// Terminal targets waiting for the pty master.
struct PendingTty {
    out: Sink,
    hub: Option<Arc<Hub>>,
    stdin: Option<OwnedFd>,
    done: DoneFlag,
}

/// Fds for the process plus the shim-side handle.
pub struct PreparedIo {
    /// stdin, stdout, stderr for the process (/dev/null for a terminal:
    /// the runtime replaces them with the pty slave).
    pub child: [OwnedFd; 3],
    /// Copy threads and log writer.
    pub handle: IoHandle,
    tty: Option<PendingTty>,
}

impl PreparedIo {
    /// Starts copying between a terminal process' pty master and its
    /// stdio targets (terminal mode only; a no-op otherwise).
    pub fn attach_console(&mut self, master: OwnedFd) -> Result<(), StdioError> {
        let Some(tty) = self.tty.take() else {
            return Ok(());
        };
        let master = Arc::new(master);
        self.handle.console = Some(master.clone());
        if let Some(fifo) = tty.stdin {
            let m = master.clone();
            let closed = self.handle.closed.clone();
            let eof = self.handle.stdin_eof.clone();
            let (wake_r, wake_w) = pipe()?;
            self.handle.stdin_wake = Some(wake_w);
            self.handle.tty_stdin = true;
            spawn("tty-stdin", move || {
                let mut buf = vec![0u8; 32 * 1024];
                while let Some(n) = read_unless_closed(&fifo, &closed, (&eof, &wake_r), &mut buf) {
                    if write_all(m.as_fd(), &buf[..n]).is_err() {
                        return;
                    }
                }
                if eof.load(Ordering::SeqCst) && !closed.load(Ordering::SeqCst) {
                    let _ = write_all(m.as_fd(), &[4]);
                }
            })?;
        }
        let done = tty.done;
        let out = tty.out;
        let hub = tty.hub;
        spawn("tty-out", move || {
            copy_tty_out(&master, out, hub.as_deref());
            *done.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
            done.1.notify_all();
        })
    }

    /// The child fds borrowed, as the helper wants them.
    pub fn borrowed(&self) -> [BorrowedFd<'_>; 3] {
        [
            self.child[0].as_fd(),
            self.child[1].as_fd(),
            self.child[2].as_fd(),
        ]
    }
}

impl IoHandle {
    /// Reopens the CRI log file (after the kubelet rotated it).
    pub fn reopen_log(&self) -> Result<(), StdioError> {
        let log = self.log.as_ref().ok_or(StdioError::NoLog)?;
        log.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reopen()?;
        Ok(())
    }

    /// Serves the attach socket in `bundle` (a no-op without a CRI log:
    /// only CRI-logged output is teed).
    pub fn serve_attach(&mut self, bundle: &Path) -> Result<(), StdioError> {
        if let Some(hub) = &self.attach {
            self.attach_server = Some(attach::serve(bundle, hub.clone())?);
        }
        Ok(())
    }

    /// Waits (at most `timeout`) until the output copier saw EOF everywhere.
    pub fn wait_output(&self, timeout: Duration) -> bool {
        let Some(done) = &self.done else {
            return true;
        };
        let guard = done.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = done
            .1
            .wait_timeout_while(guard, timeout, |d| !*d)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }

    /// Sets the terminal size (no terminal: nothing to do).
    pub fn resize(&self, width: u16, height: u16) -> Result<(), crate::console::ConsoleError> {
        match &self.console {
            Some(m) => crate::console::resize(m.as_fd(), width, height),
            None => Ok(()),
        }
    }

    /// The process is gone: stops the stdin copiers and drops the pipe.
    pub fn release(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Some(s) = &self.stdin {
            s.lock().unwrap_or_else(PoisonError::into_inner).take();
        }
    }

    /// Closes the process' stdin once what the FIFO still holds has been
    /// passed on (it reads EOF once the pipe drains; a terminal gets the
    /// EOF character). The copier does the closing: dropping the pipe here
    /// would lose bytes a client wrote just before CloseIO.
    pub fn close_stdin(&self) {
        // One wake-up byte at most: the pipe is never read.
        let first = !self.stdin_eof.swap(true, Ordering::SeqCst);
        if let (true, Some(w)) = (first, &self.stdin_wake) {
            let _ = write_all(w.as_fd(), &[1]);
        }
        if self.tty_stdin {
            return;
        }
        if let Some(m) = &self.console {
            let _ = write_all(m.as_fd(), &[4]);
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), StdioError> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| StdioError::Sys {
        op: "pipe",
        source: e.into(),
    })
}

fn open_path(path: &Path, write: bool, append: bool) -> Result<OwnedFd, StdioError> {
    let err = |source| StdioError::Open {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .append(append)
        .create(append)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(err)?;
    Ok(OwnedFd::from(f))
}

/// Opens a FIFO without blocking on its other end: O_RDWR first (always
/// succeeds on Linux), then the wanted direction through /proc/self/fd.
fn open_fifo(path: &Path, write: bool) -> Result<(OwnedFd, OwnedFd), StdioError> {
    let rdwr = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| StdioError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let proc_path = PathBuf::from(format!("/proc/self/fd/{}", rdwr.as_raw_fd()));
    let one_way = open_path(&proc_path, write, false)?;
    Ok((one_way, OwnedFd::from(rdwr)))
}

fn dev_null(write: bool) -> Result<OwnedFd, StdioError> {
    open_path(Path::new("/dev/null"), write, false)
}

fn open_stdin_fifo(stdin: &str) -> Result<OwnedFd, StdioError> {
    let path = PathBuf::from(stdin.strip_prefix("fifo://").unwrap_or(stdin));
    // Read through an O_RDWR fd: the shim itself then counts as a
    // writer, so the process sees EOF only on CloseIO.
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map(OwnedFd::from)
        .map_err(|source| StdioError::Open { path, source })
}

/// Terminal stdio: the process gets /dev/null until the runtime gives it
/// the pty slave; output (stdout and stderr are one stream) and stdin are
/// wired to the master by [`PreparedIo::attach_console`].
fn prepare_tty(stdin: &str, stdout: &str, tee: Tee) -> Result<PreparedIo, StdioError> {
    let mut handle = IoHandle::default();
    let done: DoneFlag = Arc::new((Mutex::new(false), Condvar::new()));
    handle.done = Some(done.clone());
    let target = parse(stdout)?;
    let teed = match (&target, tee) {
        (Target::Cri(_), _) | (Target::Null, Tee::CriAndNull) => Some(Hub::new()),
        _ => None,
    };
    handle.attach = teed.clone();
    let out = match target {
        Target::Null => Sink::Null,
        Target::File(p) => Sink::Fd(open_path(&p, true, true)?),
        Target::Fifo(p) => Sink::Fd(open_fifo(&p, true)?.0),
        Target::Cri(p) => {
            let w = Arc::new(Mutex::new(LogWriter::open(p)?));
            handle.log = Some(w.clone());
            Sink::Log(w)
        }
    };
    let stdin = if stdin.is_empty() {
        None
    } else {
        Some(open_stdin_fifo(stdin)?)
    };
    Ok(PreparedIo {
        child: [dev_null(false)?, dev_null(true)?, dev_null(true)?],
        handle,
        tty: Some(PendingTty {
            out,
            hub: teed,
            stdin,
            done,
        }),
    })
}

/// Which outputs go through the attach tee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tee {
    /// CRI-logged output only (execs: their FIFOs have a reader already).
    Cri,
    /// Also output that has no target: a container without a log path can
    /// still be attached to.
    CriAndNull,
}

/// Opens the stdio of a process as described by the task request.
pub fn prepare(
    stdin: &str,
    stdout: &str,
    stderr: &str,
    terminal: bool,
) -> Result<PreparedIo, StdioError> {
    prepare_with(stdin, stdout, stderr, terminal, Tee::Cri)
}

/// [`prepare`] for a container's init: output without a target still
/// reaches attach clients.
pub fn prepare_container(
    stdin: &str,
    stdout: &str,
    stderr: &str,
    terminal: bool,
) -> Result<PreparedIo, StdioError> {
    prepare_with(stdin, stdout, stderr, terminal, Tee::CriAndNull)
}

fn prepare_with(
    stdin: &str,
    stdout: &str,
    stderr: &str,
    terminal: bool,
    tee: Tee,
) -> Result<PreparedIo, StdioError> {
    if terminal {
        return prepare_tty(stdin, stdout, tee);
    }
    let out = parse(stdout)?;
    let err = parse(stderr)?;
    let mut handle = IoHandle::default();

    // stdin
    let child_in = if stdin.is_empty() {
        dev_null(false)?
    } else {
        let fifo = open_stdin_fifo(stdin)?;
        let (r, w) = pipe()?;
        let w = Arc::new(Mutex::new(Some(w)));
        handle.stdin = Some(w.clone());
        let (wake_r, wake_w) = pipe()?;
        handle.stdin_wake = Some(wake_w);
        spawn_stdin_copier(
            fifo,
            w,
            handle.closed.clone(),
            (handle.stdin_eof.clone(), wake_r),
        )?;
        r
    };

    // stdout / stderr
    let mut log_pipes: Vec<(Stream, OwnedFd)> = Vec::new();
    let mut log_path: Option<PathBuf> = None;
    let mut child_out: Vec<OwnedFd> = Vec::new();
    for (stream, target) in [(Stream::Stdout, &out), (Stream::Stderr, &err)] {
        let fd = match target {
            Target::Null if tee == Tee::CriAndNull => {
                let (r, w) = pipe()?;
                log_pipes.push((stream, r));
                w
            }
            Target::Null => dev_null(true)?,
            Target::File(p) => open_path(p, true, true)?,
            Target::Fifo(p) => open_fifo(p, true)?.0,
            Target::Cri(p) => {
                if let Some(prev) = &log_path {
                    if prev != p {
                        return Err(StdioError::Unsupported(format!(
                            "stdout and stderr to different CRI logs ({} and {})",
                            prev.display(),
                            p.display()
                        )));
                    }
                }
                log_path = Some(p.clone());
                let (r, w) = pipe()?;
                log_pipes.push((stream, r));
                w
            }
        };
        child_out.push(fd);
    }
    if !log_pipes.is_empty() {
        let writer = match log_path {
            Some(p) => Some(Arc::new(Mutex::new(LogWriter::open(p)?))),
            None => None,
        };
        let done: DoneFlag = Arc::new((Mutex::new(false), Condvar::new()));
        let hub = Hub::new();
        handle.log = writer.clone();
        handle.done = Some(done.clone());
        handle.attach = Some(hub.clone());
        spawn_log_copier(log_pipes, writer, hub, done)?;
    }
    let mut it = child_out.into_iter();
    let (Some(o), Some(e)) = (it.next(), it.next()) else {
        return Err(StdioError::Unsupported(
            "internal: missing output fds".into(),
        ));
    };
    Ok(PreparedIo {
        child: [child_in, o, e],
        handle,
        tty: None,
    })
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), StdioError> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(COPY_STACK)
        .spawn(f)
        .map(|_| ())
        .map_err(|source| StdioError::Sys {
            op: "spawning a copy thread",
            source,
        })
}

/// Copies a pty master's output until every slave is closed (EIO).
fn copy_tty_out(master: &OwnedFd, out: Sink, hub: Option<&Hub>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match nix::unistd::read(master, &mut buf) {
            Ok(0) | Err(nix::Error::EIO) => break,
            Ok(n) => n,
            Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => continue,
            Err(err) => {
                tracing::warn!(%err, "reading the pty master");
                break;
            }
        };
        match &out {
            Sink::Null => {}
            Sink::Fd(fd) => {
                if write_all(fd.as_fd(), &buf[..n]).is_err() {
                    // The reader went away; keep draining the pty.
                }
            }
            Sink::Log(w) => {
                let mut w = w.lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(err) = w.write_stream(Stream::Stdout, &buf[..n]) {
                    tracing::warn!(%err, "writing the container log");
                }
            }
        }
        if let Some(hub) = hub {
            hub.publish(Stream::Stdout, &buf[..n]);
        }
    }
    if let Sink::Log(w) = &out {
        if let Err(err) = w.lock().unwrap_or_else(PoisonError::into_inner).flush_all() {
            tracing::warn!(%err, "flushing the container log");
        }
    }
    if let Some(hub) = hub {
        hub.close();
    }
}

/// Reads the stdin FIFO, waking up twice a second to notice that the
/// process is gone (the shim holds a writer, so no EOF ever comes). Once
/// `eof` is set (its pipe wakes the poll), returns what is still buffered
/// and then None.
fn read_unless_closed(
    fifo: &OwnedFd,
    closed: &AtomicBool,
    (eof, wake): (&AtomicBool, &OwnedFd),
    buf: &mut [u8],
) -> Option<usize> {
    loop {
        if closed.load(Ordering::SeqCst) {
            return None;
        }
        let draining = eof.load(Ordering::SeqCst);
        let wait = if draining { 0u16 } else { 500 };
        let mut fds = [
            PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::from(wait)) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(_) => return None,
        }
        let ready = fds[0].revents().is_some_and(|r| {
            r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
        });
        if !ready {
            if eof.load(Ordering::SeqCst) {
                return None;
            }
            continue;
        }
        match nix::unistd::read(fifo, buf) {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => {}
            Err(_) => return None,
        }
    }
}

fn spawn_stdin_copier(
    fifo: OwnedFd,
    pipe_w: Arc<Mutex<Option<OwnedFd>>>,
    closed: Arc<AtomicBool>,
    (eof, wake): (Arc<AtomicBool>, OwnedFd),
) -> Result<(), StdioError> {
    std::thread::Builder::new()
        .name("stdin".into())
        .stack_size(COPY_STACK)
        .spawn(move || {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                if pipe_w
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_none()
                {
                    break;
                }
                let Some(n) = read_unless_closed(&fifo, &closed, (&eof, &wake), &mut buf) else {
                    break;
                };
                let guard = pipe_w.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(w) = guard.as_ref() else { break };
                if write_all(w.as_fd(), &buf[..n]).is_err() {
                    break;
                }
            }
            pipe_w.lock().unwrap_or_else(PoisonError::into_inner).take();
        })
        .map_err(|source| StdioError::Sys {
            op: "spawning the stdin thread",
            source,
        })?;
    Ok(())
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> Result<(), nix::Error> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn spawn_log_copier(
    pipes: Vec<(Stream, OwnedFd)>,
    writer: Option<Arc<Mutex<LogWriter>>>,
    hub: Arc<Hub>,
    done: DoneFlag,
) -> Result<(), StdioError> {
    std::thread::Builder::new()
        .name("cri-log".into())
        .stack_size(COPY_STACK)
        .spawn(move || {
            copy_to_log(pipes, writer.as_deref(), &hub);
            hub.close();
            *done.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
            done.1.notify_all();
        })
        .map_err(|source| StdioError::Sys {
            op: "spawning the log thread",
            source,
        })?;
    Ok(())
}

/// Copies container output into the CRI log (when there is one) and the
/// attach tee.
fn copy_to_log(mut pipes: Vec<(Stream, OwnedFd)>, writer: Option<&Mutex<LogWriter>>, hub: &Hub) {
    let mut buf = vec![0u8; 32 * 1024];
    while !pipes.is_empty() {
        let mut fds: Vec<PollFd<'_>> = pipes
            .iter()
            .map(|(_, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(err) => {
                tracing::error!(%err, "poll on container output");
                break;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut closed = Vec::new();
        for (i, (stream, fd)) in pipes.iter().enumerate() {
            if !ready[i] {
                continue;
            }
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => closed.push(i),
                Ok(n) => {
                    if let Some(writer) = writer {
                        let mut w = writer.lock().unwrap_or_else(PoisonError::into_inner);
                        if let Err(err) = w.write_stream(*stream, &buf[..n]) {
                            tracing::warn!(%err, "writing the container log");
                        }
                    }
                    hub.publish(*stream, &buf[..n]);
                }
                Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => {}
                Err(_) => closed.push(i),
            }
        }
        for i in closed.into_iter().rev() {
            let (stream, _) = pipes.remove(i);
            if let Some(writer) = writer {
                let mut w = writer.lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(err) = w.flush_partial(stream) {
                    tracing::warn!(%err, "flushing the container log");
                }
            }
        }
    }
    if let Some(writer) = writer {
        if let Err(err) = writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flush_all()
        {
            tracing::warn!(%err, "flushing the container log");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::log_writer::parse_cri_log;
    use std::io::Read;

    #[test]
    fn parse_targets() {
        assert_eq!(parse("").unwrap(), Target::Null);
        assert_eq!(
            parse("cri:///var/log/a.log").unwrap(),
            Target::Cri("/var/log/a.log".into())
        );
        assert_eq!(parse("file:///x").unwrap(), Target::File("/x".into()));
        assert_eq!(parse("/run/f").unwrap(), Target::Fifo("/run/f".into()));
        assert!(parse("binary:///usr/bin/x").is_err());
        assert!(parse("relative").is_err());
    }

    #[test]
    fn cri_output_lands_in_the_log_and_stdin_closes_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let fifo = dir.path().join("in");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let uri = format!("cri://{}", log.display());
        let io = prepare(fifo.to_str().unwrap(), &uri, &uri, false).unwrap();
        let [child_in, out, err] = io.child;
        write_all(out.as_fd(), b"hello\npart").unwrap();
        write_all(err.as_fd(), b"oops\n").unwrap();
        drop(out);
        drop(err);
        assert!(io.handle.wait_output(Duration::from_secs(5)));
        let lines = parse_cri_log(&std::fs::read(&log).unwrap()).unwrap();
        let mut texts: Vec<(String, String)> = lines
            .iter()
            .map(|l| {
                (
                    format!("{:?}", l.stream),
                    String::from_utf8_lossy(&l.content).into(),
                )
            })
            .collect();
        texts.sort();
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(texts.iter().any(|(_, t)| t == "hello"));
        assert!(texts.iter().any(|(_, t)| t == "part"));
        assert!(texts.iter().any(|(s, t)| s == "Stderr" && t == "oops"));
        // stdin: data written to the FIFO reaches the pipe; EOF after close.
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        std::io::Write::write_all(&mut w, b"in\n").unwrap();
        let mut r = std::fs::File::from(child_in);
        let mut buf = [0u8; 3];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"in\n");
        io.handle.close_stdin();
        // A write racing the close is passed on or refused (EPIPE once the
        // drained copier has closed the FIFO); either way stdin ends.
        let _ = std::io::Write::write_all(&mut w, b"x");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty() || rest == b"x");
        assert!(io.handle.reopen_log().is_ok());
    }

    #[test]
    fn close_stdin_passes_on_what_the_fifo_still_holds() {
        // CloseIO right after the client's last write (a streaming exec's
        // stdin EOF) must not lose the bytes the copier has not read yet.
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let fifo = dir.path().join("in");
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            let io = prepare(fifo.to_str().unwrap(), "", "", false).unwrap();
            let [child_in, _out, _err] = io.child;
            let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
            let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            std::io::Write::write_all(&mut w, &data).unwrap();
            drop(w);
            io.handle.close_stdin();
            let mut got = Vec::new();
            std::fs::File::from(child_in).read_to_end(&mut got).unwrap();
            assert_eq!(got.len(), data.len(), "round {round}");
            assert!(got == data, "round {round}: bytes changed");
        }
    }

    #[test]
    fn container_output_without_a_log_is_teed_too() {
        let dir = tempfile::tempdir().unwrap();
        // Plain prepare: no target, nothing to attach to.
        assert!(prepare("", "", "", false).unwrap().handle.attach.is_none());
        let io = prepare_container("", "", "", false).unwrap();
        let [_in, out, err] = io.child;
        let mut handle = io.handle;
        handle.serve_attach(dir.path()).unwrap();
        let hub = handle.attach.clone().unwrap();
        let mut c = std::os::unix::net::UnixStream::connect(dir.path().join(attach::ATTACH_SOCKET))
            .unwrap();
        // The ready frame: registered, nothing written after it is lost.
        let mut ready = [1u8; 5];
        c.read_exact(&mut ready).unwrap();
        assert_eq!(ready, [attach::FRAME_READY, 0, 0, 0, 0]);
        assert!(hub_has_client(&hub));
        write_all(out.as_fd(), b"x").unwrap();
        drop((out, err));
        let mut got = Vec::new();
        c.read_to_end(&mut got).unwrap();
        assert_eq!(got, [attach::FRAME_STDOUT, 0, 0, 0, 1, b'x']);
        assert!(handle.wait_output(Duration::from_secs(5)));
        assert!(matches!(handle.reopen_log(), Err(StdioError::NoLog)));
    }

    fn hub_has_client(hub: &Hub) -> bool {
        hub.client_count() > 0
    }

    #[test]
    fn cri_output_is_teed_to_attach_clients() {
        use std::os::unix::net::UnixStream;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let uri = format!("cri://{}", log.display());
        let io = prepare("", &uri, &uri, false).unwrap();
        let [_in, out, err] = io.child;
        let mut handle = io.handle;
        handle.serve_attach(dir.path()).unwrap();
        let mut c = UnixStream::connect(dir.path().join(attach::ATTACH_SOCKET)).unwrap();
        // The accept thread registers the client asynchronously: write
        // until the first frame arrives.
        let mut head = [0u8; 5];
        c.read_exact(&mut head).unwrap();
        assert_eq!(head[0], attach::FRAME_READY);
        write_all(err.as_fd(), b"e").unwrap();
        c.read_exact(&mut head).unwrap();
        assert_eq!(head, [attach::FRAME_STDERR, 0, 0, 0, 1]);
        let mut e = [0u8; 1];
        c.read_exact(&mut e).unwrap();
        assert_eq!(&e, b"e");
        c.set_read_timeout(None).unwrap();
        let mut rest = Vec::new();
        drop(err);
        write_all(out.as_fd(), b"bye").unwrap();
        drop(out);
        c.read_to_end(&mut rest).unwrap();
        assert!(
            rest.ends_with(&[attach::FRAME_STDOUT, 0, 0, 0, 3, b'b', b'y', b'e']),
            "{rest:?}"
        );
        assert!(handle.wait_output(Duration::from_secs(5)));
    }
}
