//! Small syscall wrappers nix does not offer; every `unsafe` of the process
//! module lives here.

use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// Result of [`clone_fork`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneResult {
    /// We are the parent; this is the child.
    Parent(Pid),
    /// We are the new child.
    Child,
}

/// `clone(2)` used like `fork(2)`: no new stack, SIGCHLD on exit, plus
/// `flags` (the `CLONE_NEW*` set).
///
/// The caller must be single-threaded: the child runs on a copy of the
/// caller's memory with only the calling thread, so locks held by other
/// threads would never be released.
pub fn clone_fork(flags: CloneFlags) -> Result<CloneResult, Errno> {
    let raw = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: with a null stack pointer the kernel duplicates the caller's
    // stack exactly like fork(); no pointers are passed (parent/child tid and
    // tls are 0 and unused without the matching flags). The library documents
    // that it must be called from a single-threaded process.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            raw,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(CloneResult::Child),
        pid => Ok(CloneResult::Parent(Pid::from_raw(pid as i32))),
    }
}

/// `struct clone_args` of clone3(2) up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (linux/sched.h; clone3 only).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Like [`clone_fork`], but the child starts in the cgroup2 directory
/// `cgroup` (`clone3(2)` with `CLONE_INTO_CGROUP`): no cgroup migration, so
/// no wait on the kernel's global threadgroup lock. Same single-threaded
/// caller requirement.
pub fn clone_into_cgroup(flags: CloneFlags, cgroup: BorrowedFd<'_>) -> Result<CloneResult, Errno> {
    let fd = u64::try_from(cgroup.as_raw_fd()).map_err(|_| Errno::EBADF)?;
    let mut args = CloneArgs {
        flags: flags.bits() as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: fd,
        ..Default::default()
    };
    // SAFETY: as in clone_fork: stack 0 and stack_size 0 make the kernel
    // duplicate the caller's stack like fork(); `args` is a valid, fully
    // initialised clone_args of the size passed, and no pointer-carrying
    // flag (pidfd, tids, tls, set_tid) is set.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(CloneResult::Child),
        pid => Ok(CloneResult::Parent(Pid::from_raw(pid as i32))),
    }
}

/// Runs the body of a child made by [`clone_fork`] and leaves with
/// `_exit(2)` if it returns or panics: a child must never unwind or return
/// into the caller's code, which would run the caller's logic twice.
pub fn run_child(body: impl FnOnce()) -> ! {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    exit_now(2)
}

/// Leaves the process immediately without running atexit handlers or
/// flushing buffers shared with the parent (what a forked child must do).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it never returns.
    unsafe { libc::_exit(code) }
}

/// Marks every fd >= `first` close-on-exec (`close_range(2)` with
/// CLOSE_RANGE_CLOEXEC), so nothing from the runtime leaks into the
/// container (CVE-2024-21626).
pub fn cloexec_from(first: u32) -> Result<(), Errno> {
    // SAFETY: close_range only changes descriptor flags; no memory is passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(Errno::last())
    }
}

/// Joins a fresh anonymous-named session keyring (`KEYCTL_JOIN_SESSION_KEYRING`).
pub fn join_session_keyring(name: &std::ffi::CStr) -> Result<(), Errno> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let ret =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `setdomainname(2)` (nix has no wrapper).
pub fn set_domainname(name: &std::ffi::CStr) -> Result<(), Errno> {
    let len = name.to_bytes().len();
    // SAFETY: the pointer and length describe the bytes of a live CStr.
    let ret = unsafe { libc::setdomainname(name.as_ptr(), len) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Makes the terminal `fd` the controlling terminal of this session (TIOCSCTTY).
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument, no memory.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Sets the window size of the terminal `fd` (TIOCSWINSZ).
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<(), Errno> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a `winsize` struct that lives on our stack.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Duplicates `fd` onto `target` (dup2), used for stdio.
pub fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> Result<(), Errno> {
    // SAFETY: dup2 on a valid borrowed fd; `target` is one of 0, 1, 2 which
    // the process owns as stdio.
    let ret = unsafe { libc::dup2(fd.as_raw_fd(), target) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Installs the caller-provided stdio fds as 0, 1, 2 of this process.
/// Each fd must be >= 3 or already equal to its target.
pub fn install_stdio(fds: [RawFd; 3]) -> Result<(), Errno> {
    for (target, fd) in (0..).zip(fds) {
        if fd == target {
            continue;
        }
        if fd < 3 {
            return Err(Errno::EINVAL);
        }
        // SAFETY: dup2 with integer fds; an invalid `fd` yields EBADF and
        // the targets 0-2 are this process' own stdio.
        let ret = unsafe { libc::dup2(fd, target) };
        if ret < 0 {
            return Err(Errno::last());
        }
    }
    Ok(())
}

/// Clears FD_CLOEXEC on `fd` if it is open (preserved fds must survive exec).
pub fn clear_cloexec(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: fcntl F_GETFD/F_SETFD on an integer fd; a closed fd yields EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(Errno::last());
    }
    // SAFETY: as above.
    let ret = unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// The kernel's `struct sigaction` (x86_64 and aarch64 layout, both with
/// `sa_restorer`), for the raw `rt_sigaction` call.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Gives the process every signal's default disposition and an empty
/// signal mask, so the container's program starts as if from a fresh
/// `init`: dispositions set to "ignore" survive `execve`, and a shell that
/// inherits an ignored SIGTERM never stops on it. The raw syscall, because
/// glibc's `sigaction` refuses the two real-time signals it reserves.
pub fn reset_signals() -> Result<(), Errno> {
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `dfl` is a valid kernel sigaction for the duration of the
        // call, the old action is not asked for, and the size is the
        // kernel's 64-bit signal set.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                std::mem::size_of::<u64>(),
            )
        };
        if rc != 0 {
            return Err(Errno::last());
        }
    }
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn clone_fork_runs_child_and_reports_status() {
        match clone_fork(CloneFlags::empty()).unwrap() {
            CloneResult::Child => exit_now(7),
            CloneResult::Parent(pid) => {
                let st = nix::sys::wait::waitpid(pid, None).unwrap();
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(pid, 7));
            }
        }
    }

    #[test]
    fn install_stdio_replaces_stdin_in_a_child() {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open("/proc/version").unwrap();
        let raw = f.as_raw_fd();
        match clone_fork(CloneFlags::empty()).unwrap() {
            CloneResult::Child => {
                let ok = install_stdio([raw, 1, 2]).is_ok()
                    && std::fs::read_link("/proc/self/fd/0")
                        .is_ok_and(|p| p == std::path::Path::new("/proc/version"))
                    && install_stdio([1, 0, 2]) == Err(Errno::EINVAL);
                exit_now(if ok { 0 } else { 1 })
            }
            CloneResult::Parent(pid) => {
                let st = nix::sys::wait::waitpid(pid, None).unwrap();
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(pid, 0));
            }
        }
    }

    #[test]
    fn clear_cloexec_on_closed_fd_fails() {
        assert_eq!(clear_cloexec(987_654), Err(Errno::EBADF));
    }
}
