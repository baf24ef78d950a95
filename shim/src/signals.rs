//! Signal dispositions. Ignored signals survive execve, so whatever the
//! shim or a helper ignores, every container process would start with
//! (a shell never un-ignores SIGTERM it was started with, and the pod
//! would then only stop by SIGKILL). So nothing is ever set to SIG_IGN
//! here: signals the shim must survive get a no-op handler, which execve
//! resets to the default, and every other signal is reset to SIG_DFL
//! (undoing what the Rust runtime and the shim's starter ignored).

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

extern "C" fn noop(_: libc::c_int) {}

/// Resets every signal to its default disposition, installs a no-op
/// handler for `survive`, and unblocks everything.
pub fn reset(survive: &[Signal]) {
    for signo in 1..=libc::SIGRTMAX() {
        if signo == libc::SIGKILL || signo == libc::SIGSTOP {
            continue;
        }
        let handler = if survive.iter().any(|s| *s as libc::c_int == signo) {
            noop as extern "C" fn(libc::c_int) as libc::sighandler_t
        } else {
            libc::SIG_DFL
        };
        set_handler(signo, handler);
    }
    if let Err(err) =
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
    {
        tracing::warn!(%err, "unblocking signals");
    }
}

fn set_handler(signo: libc::c_int, handler: libc::sighandler_t) {
    // SAFETY: sigaction with either SIG_DFL or `noop`, which touches no
    // state and is async-signal-safe; the struct is fully initialised.
    // Signals the C library reserves for itself answer EINVAL, ignored.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = handler;
        act.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(signo, &act, std::ptr::null_mut());
    }
}

/// Write end of the pipe the SIGTERM/SIGINT handler pokes (-1: none).
static TERM_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_term_signal(_: libc::c_int) {
    let fd = TERM_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) of one byte from a static buffer is
        // async-signal-safe; a full pipe just drops the byte.
        unsafe {
            libc::write(fd, b"t".as_ptr().cast(), 1);
        }
    }
}

/// Calls `f` (on a thread of its own) for every SIGTERM or SIGINT, which
/// the process otherwise survives. The handler resets to the default on
/// execve like any handler.
pub fn on_term(f: impl Fn() + Send + 'static) -> std::io::Result<()> {
    use std::io::Read;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
        .map_err(std::io::Error::from)?;
    // The reader blocks; only the handler's end stays non-blocking.
    nix::fcntl::fcntl(
        &r,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .map_err(std::io::Error::from)?;
    std::thread::Builder::new()
        .name("sigterm".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut r = std::fs::File::from(r);
            let mut b = [0u8; 16];
            while let Ok(n) = r.read(&mut b) {
                if n == 0 {
                    break;
                }
                f();
            }
        })?;
    use std::os::fd::IntoRawFd;
    TERM_PIPE.store(w.into_raw_fd(), std::sync::atomic::Ordering::Relaxed);
    for s in [libc::SIGTERM, libc::SIGINT] {
        set_handler(
            s,
            on_term_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    Ok(())
}
