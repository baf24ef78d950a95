//! The last steps before `execve`, shared by the container init and `exec`:
//! process attributes, LSM labels, seccomp, user switch, capabilities, cwd,
//! descriptor hygiene, and the `execve` itself.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{LinuxSeccomp, Process};

use super::sys;
use super::InitError;

/// Warn only once per process about an oom_score_adj we cannot lower.
static OOM_WARNED: AtomicBool = AtomicBool::new(false);

/// What the final set-up needs besides the process entry.
#[derive(Debug)]
pub struct Finalize<'a> {
    /// The process to run.
    pub process: &'a Process,
    /// The container's seccomp profile, if any.
    pub seccomp: Option<&'a LinuxSeccomp>,
    /// Number of fds from 3 up the caller asked to keep.
    pub preserve_fds: u32,
}

/// What `exec` still needs: the resolved program and a seccomp filter to
/// load as late as possible (when noNewPrivileges).
#[derive(Debug)]
pub struct Pending {
    seccomp: Option<crate::seccomp::SeccompProgram>,
    program: PathBuf,
}

/// Everything up to (not including) the exec: rlimits, oom_score_adj, LSM,
/// no_new_privs, seccomp (early when it needs privileges), bounding set,
/// user switch, capabilities, umask, cwd.
///
/// Seccomp listener fds are handed to `on_listener`.
pub fn before_exec(
    f: &Finalize<'_>,
    on_listener: &mut dyn FnMut(std::os::fd::OwnedFd) -> Result<(), InitError>,
) -> Result<Pending, InitError> {
    let p = f.process;
    if let Some(rl) = p.rlimits() {
        crate::rlimits::apply(rl)?;
    }
    if let Some(adj) = p.oom_score_adj() {
        set_oom_score_adj(adj)?;
    }
    if let Some(profile) = p.apparmor_profile().as_deref().filter(|s| !s.is_empty()) {
        crate::lsm::apply_apparmor(profile)?;
    }
    if let Some(label) = p.selinux_label().as_deref().filter(|s| !s.is_empty()) {
        crate::lsm::apply_selinux_exec_label(label)?;
    }
    let nnp = p.no_new_privileges().unwrap_or(false);
    if nnp {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| InitError::sys("prctl(PR_SET_NO_NEW_PRIVS)", e))?;
    }
    let filter = f.seccomp.map(crate::seccomp::compile).transpose()?;
    let mut deferred = None;
    match filter {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load
        // it before the user switch drops capabilities.
        Some(prog) if !nnp => {
            if let Some(fd) = prog.load()? {
                on_listener(fd)?;
            }
        }
        Some(prog) => deferred = Some(prog),
        None => {}
    }
    let cwd = p.cwd();
    // The cwd may not exist in the image; create it as root (we are past
    // pivot_root, so "/" is the container root and nothing escapes it).
    if !cwd.exists() {
        std::fs::create_dir_all(cwd).map_err(|source| InitError::Io {
            op: "creating cwd",
            path: cwd.clone(),
            source,
        })?;
    }
    fix_stdio_owner(p.user().uid(), p.user().gid())?;
    if let Some(caps) = p.capabilities() {
        crate::caps::drop_bounding(caps)?;
    }
    switch_user(p)?;
    if let Some(caps) = p.capabilities() {
        crate::caps::apply(caps)?;
    }
    let umask = p.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        umask as libc::mode_t,
    ));
    enter_cwd(cwd)?;
    // Resolved now (as the final user, in the final cwd) so that `create`
    // already fails for a missing program, like runc.
    let args = p.args().as_deref().unwrap_or_default();
    let arg0 = args
        .first()
        .ok_or_else(|| InitError::Invalid("process.args must not be empty".into()))?;
    let program = find_executable(arg0, p.env().as_deref().unwrap_or_default())?;
    Ok(Pending {
        seccomp: deferred,
        program,
    })
}

/// Loads a deferred seccomp filter, hides every runtime fd and execs.
pub fn exec(
    f: &Finalize<'_>,
    pending: Pending,
    on_listener: &mut dyn FnMut(std::os::fd::OwnedFd) -> Result<(), InitError>,
) -> Result<std::convert::Infallible, InitError> {
    let args = f.process.args().as_deref().unwrap_or_default();
    let env = f.process.env().as_deref().unwrap_or_default();
    let program = pending.program;
    let c = |s: &str| CString::new(s).map_err(|_| InitError::Invalid(format!("NUL byte in {s:?}")));
    let argv = args.iter().map(|a| c(a)).collect::<Result<Vec<_>, _>>()?;
    let envp = env.iter().map(|e| c(e)).collect::<Result<Vec<_>, _>>()?;
    let path = CString::new(program.as_os_str().as_bytes())
        .map_err(|_| InitError::Invalid("NUL byte in program path".into()))?;
    // Before seccomp: a profile may refuse rt_sigaction.
    sys::reset_signals().map_err(|e| InitError::sys("resetting signal dispositions", e))?;
    if let Some(prog) = pending.seccomp {
        if let Some(fd) = prog.load()? {
            on_listener(fd)?;
        }
    }
    // Nothing but stdio and the preserved fds may survive the exec
    // (CVE-2024-21626: a leaked host directory fd is a way out of the root).
    for fd in 3..3 + f.preserve_fds {
        sys::clear_cloexec(fd as i32)
            .map_err(|e| InitError::sys("clearing FD_CLOEXEC on a preserved fd", e))?;
    }
    sys::cloexec_from(3 + f.preserve_fds).map_err(|e| InitError::sys("close_range", e))?;
    let err = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
    Err(InitError::Exec {
        path: program,
        source: err,
    })
}

/// Lowering oom_score_adj needs CAP_SYS_RESOURCE, which the build hosts
/// lack: keep the current value, warn once, do not fail the container.
fn set_oom_score_adj(adj: i32) -> Result<(), InitError> {
    let path = Path::new("/proc/self/oom_score_adj");
    match std::fs::write(path, adj.to_string()) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) => {
            if !OOM_WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(adj, err = %e, "cannot set oom_score_adj (no CAP_SYS_RESOURCE); keeping the current value");
            }
            Ok(())
        }
        Err(source) => Err(InitError::Io {
            op: "writing",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Hands stdio (pipes, fifos, the pty) to the container user, so that a
/// non-root process can reopen /dev/stdout or /proc/self/fd/1. /dev/null
/// and fds already owned by the user are left alone; filesystems that
/// refuse the chown are not an error (the fd still works as is).
fn fix_stdio_owner(uid: u32, gid: u32) -> Result<(), InitError> {
    use std::os::fd::BorrowedFd;
    if uid == 0 {
        return Ok(());
    }
    for fd in 0..3 {
        // SAFETY: 0-2 are this process' stdio for the whole call.
        let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
        let st = match nix::sys::stat::fstat(bfd) {
            Ok(st) => st,
            Err(nix::Error::EBADF) => continue,
            Err(e) => return Err(InitError::sys("fstat on stdio", e)),
        };
        let is_char = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
        if st.st_uid == uid || (is_char && st.st_rdev == libc::makedev(1, 3)) {
            continue;
        }
        match nix::unistd::fchown(bfd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))) {
            Ok(()) | Err(nix::Error::EINVAL | nix::Error::EPERM | nix::Error::EROFS) => {}
            Err(e) => return Err(InitError::sys("fchown on stdio", e)),
        }
    }
    Ok(())
}

/// setgroups + setresgid + setresuid, keeping capabilities across the
/// switch so `caps::apply` can set the final sets.
fn switch_user(p: &Process) -> Result<(), InitError> {
    let user = p.user();
    let gid = Gid::from_raw(user.gid());
    let uid = Uid::from_raw(user.uid());
    crate::caps::set_keep_caps(true)?;
    let groups: Vec<Gid> = user
        .additional_gids()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    match nix::unistd::setgroups(&groups) {
        Ok(()) => {}
        // A user namespace with setgroups "deny" only allows an empty list.
        Err(nix::Error::EPERM) if groups.is_empty() && setgroups_denied() => {}
        Err(e) => return Err(InitError::sys("setgroups", e)),
    }
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| InitError::sys("setresgid", e))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| InitError::sys("setresuid", e))?;
    crate::caps::set_keep_caps(false)?;
    Ok(())
}

fn setgroups_denied() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny")
}

/// chdir, then make sure the kernel sees the cwd inside our root: a cwd
/// reached through a leaked host fd shows up as "(unreachable)/..." or a
/// relative path (CVE-2024-21626); refuse it.
pub fn enter_cwd(cwd: &Path) -> Result<(), InitError> {
    nix::unistd::chdir(cwd).map_err(|source| InitError::Cwd {
        path: cwd.to_path_buf(),
        source,
    })?;
    match nix::unistd::getcwd() {
        Ok(now) if now.is_absolute() && !now.starts_with("(unreachable)") => Ok(()),
        Ok(now) => Err(InitError::Invalid(format!(
            "cwd {} resolves outside the container root ({})",
            cwd.display(),
            now.display()
        ))),
        Err(e) => Err(InitError::Invalid(format!(
            "cwd {} resolves outside the container root (getcwd: {e})",
            cwd.display()
        ))),
    }
}

/// Looks `arg0` up in the PATH of the *container's* environment.
pub fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf, InitError> {
    if arg0.contains('/') {
        return Ok(PathBuf::from(arg0));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(arg0);
        if let Ok(md) = std::fs::metadata(&cand) {
            use std::os::unix::fs::PermissionsExt;
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return Ok(cand);
            }
        }
    }
    Err(InitError::NotFound(arg0.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_in_container_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(find_executable("sh", &env).unwrap().ends_with("sh"));
        assert_eq!(
            find_executable("/x/y", &env).unwrap(),
            PathBuf::from("/x/y")
        );
        assert!(matches!(
            find_executable("no-such-binary-xyz", &env),
            Err(InitError::NotFound(_))
        ));
    }

    #[test]
    fn cwd_check_accepts_normal_dir() {
        // Runs in a child so the test harness' cwd is untouched.
        match sys::clone_fork(nix::sched::CloneFlags::empty()).unwrap() {
            sys::CloneResult::Child => {
                let ok = enter_cwd(Path::new("/tmp")).is_ok()
                    && enter_cwd(Path::new("/no/such/dir")).is_err();
                sys::exit_now(if ok { 0 } else { 1 })
            }
            sys::CloneResult::Parent(pid) => {
                let st = nix::sys::wait::waitpid(pid, None).unwrap();
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(pid, 0));
            }
        }
    }
}
