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
