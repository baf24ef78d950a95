//! Lifecycle benchmark: create → start → wait for exit → delete of a busybox
//! `true` container, interleaved across berth-runtime, runc and crun.
//!
//! `cargo bench -p berth-runtime --bench lifecycle -- [ITERATIONS] [--crun-private-cgroup2] [--fix-crun-hugetlb]`
//!
//! berth-runtime is `$BERTH_RUNTIME` or the binary cargo built for this bench
//! (target/release). A runtime that is not installed, or whose first
//! container fails, is reported as skipped with its error. crun 1.8 refuses a
//! hybrid cgroup layout in which cgroup2 still owns a controller (here:
//! hugetlb); `--fix-crun-hugetlb` mounts each such controller as its own v1
//! hierarchy first. That mount is left in place on purpose: unmounting leaves
//! a dangling hierarchy that breaks cgroup lookups of other tools.
//! `--crun-private-cgroup2` changes nothing on the host instead: each crun
//! command runs in its own mount namespace without the cgroup2 mount, so crun
//! sees a plain v1 layout (and, unlike runc and berth, creates no cgroup2 dir).

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fs;
use std::io::{Read, Seek};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde_json::json;

const DEFAULT_ITERATIONS: usize = 50;

struct Runtime {
    name: &'static str,
    /// Run this runtime's commands in a private mount namespace without /sys/fs/cgroup/unified.
    hide_cgroup2: bool,
    path: PathBuf,
    root: tempfile::TempDir,
    samples: Vec<Duration>,
    skipped: Option<String>,
}

fn main() -> Result<()> {
    let mut iterations = DEFAULT_ITERATIONS;
    let mut fix_crun = false;
    let mut crun_private = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--bench" => {} // added by `cargo bench`
            "--fix-crun-hugetlb" => fix_crun = true,
            "--crun-private-cgroup2" => crun_private = true,
            n => {
                iterations = n
                    .parse()
                    .with_context(|| format!("not an iteration count: {n}"))?
            }
        }
    }
    nix::sys::prctl::set_child_subreaper(true).context("PR_SET_CHILD_SUBREAPER")?;
    if fix_crun {
        mount_v2_controllers_as_v1()?;
    }
    let bundle = tempfile::Builder::new().prefix("berth-bench-").tempdir()?;
    build_rootfs(&bundle.path().join("rootfs"))?;

    let berth = std::env::var_os("BERTH_RUNTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_berth-runtime")));
    let mut runtimes = Vec::new();
    for (name, path) in [
        ("berth-runtime", Some(berth)),
        ("runc", which("runc")),
        ("crun", which("crun")),
    ] {
        let root = tempfile::Builder::new()
            .prefix("berth-bench-root-")
            .tempdir()?;
        let (path, skipped) = match path {
            Some(p) if p.exists() => (p, None),
            _ => (PathBuf::new(), Some("not installed".to_owned())),
        };
        runtimes.push(Runtime {
            name,
            hide_cgroup2: crun_private && name == "crun",
            path,
            root,
            samples: Vec::new(),
            skipped,
        });
    }

    // One unmeasured run each: warms caches and finds runtimes that cannot run here.
    for rt in runtimes.iter_mut().filter(|r| r.skipped.is_none()) {
        if let Err(e) = lifecycle(rt, bundle.path(), "warmup") {
            rt.skipped = Some(format!("{e:#}"));
        }
    }
    println!(
        "{iterations} iterations of create → start → wait → delete (busybox `true`), interleaved"
    );
    for i in 0..iterations {
        for rt in runtimes.iter_mut().filter(|r| r.skipped.is_none()) {
            match lifecycle(rt, bundle.path(), &i.to_string()) {
                Ok(d) => rt.samples.push(d),
                Err(e) => rt.skipped = Some(format!("failed at iteration {i}: {e:#}")),
            }
        }
    }
    report(&runtimes, fix_crun || crun_private);
    Ok(())
}

/// One measured create → start → wait → delete; always deletes.
fn lifecycle(rt: &Runtime, bundle: &Path, tag: &str) -> Result<Duration> {
    let id = format!("bench-{}-{}-{tag}", rt.name, std::process::id());
    write_config(bundle, &format!("berth-bench-{id}"))?;
    let pid_file = rt.root.path().join(format!("{id}.pid"));
    let t0 = Instant::now();
    let result = (|| {
        run(
            rt,
            &[
                "create",
                "--bundle",
                path_str(bundle)?,
                "--pid-file",
                path_str(&pid_file)?,
                &id,
            ],
        )?;
        let pid: i32 = fs::read_to_string(&pid_file)
            .with_context(|| {
                format!(
                    "create succeeded but wrote no pid file {}",
                    pid_file.display()
                )
            })?
            .trim()
            .parse()
            .context("pid file content")?;
        run(rt, &["start", &id])?;
        wait_exit(pid)?;
        run(rt, &["delete", &id])
    })();
    let elapsed = t0.elapsed();
    if result.is_err() {
        let _ = run(rt, &["delete", "--force", &id]);
    }
    let _ = fs::remove_file(&pid_file);
    result.map(|()| elapsed)
}

/// Runs one runtime command. Its stderr goes to a file, not a pipe: the
/// container init inherits it and would keep a pipe open until it exits.
fn run(rt: &Runtime, args: &[&str]) -> Result<()> {
    let mut err = tempfile::tempfile()?;
    let mut cmd = Command::new(&rt.path);
    if rt.hide_cgroup2 {
        hide_cgroup2(&mut cmd);
    }
    let status = cmd
        .arg("--root")
        .arg(rt.root.path())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err.try_clone()?)
        .status()
        .with_context(|| format!("spawning {}", rt.path.display()))?;
    if !status.success() {
        let mut msg = String::new();
        err.seek(std::io::SeekFrom::Start(0))?;
        err.read_to_string(&mut msg)?;
        bail!(
            "`{} {}` failed ({status}): {}",
            rt.name,
            args.join(" "),
            msg.trim()
        );
    }
    Ok(())
}

/// The init was orphaned to us (subreaper) when `create` returned: reap it.
fn wait_exit(pid: i32) -> Result<()> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) => return Ok(()),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) => {
                // Someone else is its parent: poll until it is gone.
                while Path::new(&format!("/proc/{pid}")).exists()
                    && !fs::read_to_string(format!("/proc/{pid}/stat"))
                        .unwrap_or_default()
                        .contains(") Z")
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                return Ok(());
            }
            Err(e) => bail!("waitpid {pid}: {e}"),
        }
    }
}

fn report(runtimes: &[Runtime], fixed: bool) {
    let median_of = |r: &Runtime| percentile(&r.samples, 0.5);
    let berth = runtimes
        .iter()
        .find(|r| r.name == "berth-runtime" && r.skipped.is_none())
        .and_then(median_of);
    println!();
    println!(
        "{:<14} {:>5} {:>10} {:>10} {:>22}",
        "runtime", "runs", "median ms", "p90 ms", "berth median / this"
    );
    for r in runtimes {
        match (&r.skipped, median_of(r), percentile(&r.samples, 0.9)) {
            (None, Some(med), Some(p90)) => {
                let ratio = berth.map_or("-".to_owned(), |b| format!("{:.2}", ms(b) / ms(med)));
                println!(
                    "{:<14} {:>5} {:>10.1} {:>10.1} {:>22}",
                    r.name,
                    r.samples.len(),
                    ms(med),
                    ms(p90),
                    ratio
                );
            }
            (Some(why), _, _) => println!("{:<14} skipped: {why}", r.name),
            _ => println!("{:<14} no samples", r.name),
        }
    }
    if let Some(crun) = runtimes.iter().find(|r| r.name == "crun") {
        if crun
            .skipped
            .as_deref()
            .is_some_and(|w| w.contains("hybrid"))
            && !fixed
        {
            println!(
                "\ncrun refuses a hybrid cgroup layout where cgroup2 owns a controller; rerun with \
                 --crun-private-cgroup2 (crun alone runs without the cgroup2 mount, host unchanged) \
                 or --fix-crun-hugetlb (mounts those controllers as v1 hierarchies, left mounted)."
            );
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile.
fn percentile(samples: &[Duration], p: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort();
    let rank = ((p * s.len() as f64).ceil() as usize).clamp(1, s.len());
    Some(s[rank - 1])
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("non-UTF-8 path {}", p.display()))
}

fn build_rootfs(root: &Path) -> Result<()> {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
        fs::create_dir_all(root.join(d))?;
    }
    fs::copy("/bin/busybox", root.join("bin/busybox"))
        .context("busybox-static is needed (/bin/busybox)")?;
    for a in ["sh", "true"] {
        symlink("busybox", root.join("bin").join(a))?;
    }
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    fs::write(root.join("etc/group"), "root:x:0:\n")?;
    Ok(())
}

/// `runc spec`'s defaults, not interactive, running `true` in a unique cgroup.
fn write_config(bundle: &Path, cgroups_path: &str) -> Result<()> {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["true"],
            "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&config)?,
    )?;
    Ok(())
}

/// Runs the command in a new mount namespace where /sys/fs/cgroup/unified is unmounted.
fn hide_cgroup2(cmd: &mut Command) {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    use std::os::unix::process::CommandExt;
    // SAFETY: this benchmark is single-threaded, so the forked child may
    // allocate (path conversion) before exec; the calls only change the
    // child's own mount namespace.
    unsafe {
        cmd.pre_exec(|| {
            unshare(CloneFlags::CLONE_NEWNS)?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_SLAVE,
                None::<&str>,
            )?;
            match umount2("/sys/fs/cgroup/unified", MntFlags::MNT_DETACH) {
                Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(e.into()),
            }
        });
    }
}

/// crun 1.8 workaround: bind every controller cgroup2 owns to its own v1 hierarchy.
fn mount_v2_controllers_as_v1() -> Result<()> {
    use nix::mount::{mount, MsFlags};
    let list = Path::new("/sys/fs/cgroup/unified/cgroup.controllers");
    let Ok(ctrls) = fs::read_to_string(list) else {
        println!("--fix-crun-hugetlb: no hybrid cgroup2 mount, nothing to do");
        return Ok(());
    };
    for c in ctrls.split_whitespace() {
        let dir = Path::new("/sys/fs/cgroup").join(c);
        fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        mount(
            Some("cgroup"),
            &dir,
            Some("cgroup"),
            MsFlags::empty(),
            Some(c),
        )
        .with_context(|| format!("mount cgroup v1 '{c}' on {}", dir.display()))?;
        println!(
            "--fix-crun-hugetlb: mounted cgroup v1 '{c}' hierarchy at {} (left mounted)",
            dir.display()
        );
    }
    Ok(())
}
