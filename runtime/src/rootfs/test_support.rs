//! Test helpers: run a closure in a forked child with its own mount namespace,
//! so tests never touch the host mount table; every mount dies with the child.

#![allow(clippy::unwrap_used, dead_code)]

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::path::PathBuf;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::statfs::{statfs, FsType};
use nix::sys::statvfs::{statvfs, FsFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;
use oci_spec::runtime::{LinuxBuilder, Mount, MountBuilder, Spec, SpecBuilder};

use super::{prepare_rootfs, RootfsConfig};

/// Result type of child closures: Err carries a message back to the parent.
pub type ChildResult = Result<(), String>;

/// Turns any displayable error into the child's failure message, with its source chain.
pub fn msg<E: std::error::Error>(e: E) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Fails the child with `what` unless `cond` holds.
pub fn check(cond: bool, what: impl Into<String>) -> ChildResult {
    if cond {
        Ok(())
    } else {
        Err(what.into())
    }
}

fn fork_child() -> nix::Result<ForkResult> {
    // SAFETY: the child only runs the test closure and then _exit()s; glibc
    // makes malloc usable after fork, and the closure takes no lock another
    // test thread could hold except through logging, which tests do not install.
    unsafe { nix::unistd::fork() }
}

fn child_main(extra: CloneFlags, f: impl FnOnce() -> ChildResult) -> ChildResult {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS | extra).map_err(|e| format!("unshare: {e}"))?;
    // Nothing done in this namespace may propagate back to the host.
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("make / rprivate: {e}"))?;
    f()
}

/// Runs `f` in a forked child inside a new mount namespace (plus `extra`
/// namespaces) and panics with the child's message unless it succeeded.
pub fn in_mount_ns(extra: CloneFlags, f: impl FnOnce() -> ChildResult) {
    let (reader, writer): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
    match fork_child().unwrap() {
        ForkResult::Child => {
            drop(reader);
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| child_main(extra, f)));
            let (code, text) = match result {
                Ok(Ok(())) => (0, String::new()),
                Ok(Err(m)) => (1, m),
                Err(_) => (2, "child panicked".to_string()),
            };
            let _ = nix::unistd::write(writer.as_fd(), text.as_bytes());
            // SAFETY: _exit skips atexit handlers and the test harness' state, which belong to the parent.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(writer);
            let mut text = String::new();
            let _ = std::fs::File::from(reader).read_to_string(&mut text);
            let status = waitpid(child, None).unwrap();
            assert_eq!(status, WaitStatus::Exited(child, 0), "child failed: {text}");
        }
    }
}

/// Mounts a fresh tmpfs on `dir` (inside the child's namespace) so device nodes work there.
pub fn tmpfs_on(dir: &Path) -> ChildResult {
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=755"),
    )
    .map_err(|e| format!("tmpfs on {dir:?}: {e}"))
}

pub fn mount(typ: &str, source: &str, dest: &str, opts: &[&str]) -> Mount {
    MountBuilder::default()
        .typ(typ)
        .source(source)
        .destination(dest)
        .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .unwrap()
}

pub fn bind(source: &Path, dest: &str, opts: &[&str]) -> Mount {
    mount("bind", source.to_str().unwrap(), dest, opts)
}

pub fn spec_with(mounts: Vec<Mount>) -> Spec {
    let linux = LinuxBuilder::default()
        .masked_paths(Vec::<String>::new())
        .readonly_paths(Vec::<String>::new())
        .build()
        .unwrap();
    SpecBuilder::default()
        .mounts(mounts)
        .linux(linux)
        .build()
        .unwrap()
}

pub fn prepare(spec: &Spec, rootfs: &Path) -> ChildResult {
    let cfg = RootfsConfig {
        spec,
        rootfs,
        in_user_ns: false,
        cgroup_ns: false,
        idmapped: None,
    };
    prepare_rootfs(&cfg).map_err(msg)
}

/// A tmpfs-backed rootfs at `<tmp>/root` (created in the parent, mounted in the child).
pub fn rootfs_dir(tmp: &tempfile::TempDir) -> PathBuf {
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    root
}

pub fn magic(path: &Path) -> Result<FsType, String> {
    statfs(path)
        .map(|s| s.filesystem_type())
        .map_err(|e| format!("statfs {path:?}: {e}"))
}

pub fn is_ro(path: &Path) -> Result<bool, String> {
    statvfs(path)
        .map(|s| s.flags().contains(FsFlags::ST_RDONLY))
        .map_err(|e| format!("statvfs {path:?}: {e}"))
}

/// `path` inside `root`, the way the kernel resolves it there (for checks before pivot).
pub fn inside(root: &Path, host_abs: &Path) -> PathBuf {
    root.join(host_abs.strip_prefix("/").unwrap())
}

pub fn source_dir(tmp: &tempfile::TempDir) -> PathBuf {
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("from_source"), b"hello").unwrap();
    src
}

/// A file the container's /sys/fs/cgroup shows on this host's layout (v1/hybrid or unified).
pub fn cgroup_probe() -> &'static str {
    if Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        "memory/memory.limit_in_bytes"
    } else {
        "cgroup.procs"
    }
}
