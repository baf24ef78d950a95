//! A stock containerd (Debian's 1.6) runs a busybox image through
//! berth-shim (`runtime_type = io.containerd.berth.v2`). Skipped when
//! containerd or ctr is not installed.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;

const CONTAINERD: &str = "/usr/bin/containerd";
const CTR: &str = "/usr/bin/ctr";

/// A private containerd: temp root/state/socket, CRI plugin off, PATH with
/// `containerd-shim-berth-v2` pointing at the built shim.
struct PrivateContainerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    namespace: String,
}

impl PrivateContainerd {
    fn start() -> PrivateContainerd {
        let dir = tempfile::Builder::new()
            .prefix("berth-shim-ctrd")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let bin = d.join("bin");
        fs::create_dir_all(&bin).unwrap();
        symlink(SHIM, bin.join("containerd-shim-berth-v2")).unwrap();
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
        );
        fs::write(d.join("config.toml"), config).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new(CONTAINERD)
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let me = PrivateContainerd {
            dir,
            child: Some(child),
            namespace: unique("berth-it"),
        };
        assert!(
            wait_until(Duration::from_secs(30), || me
                .ctr(&["version"])
                .status
                .success()),
            "containerd did not come up:\n{}",
            me.log()
        );
        me
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new(CTR)
            .arg("-a")
            .arg(self.socket())
            .args(["-n", &self.namespace])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            if !wait_until(Duration::from_secs(10), || {
                matches!(c.try_wait(), Ok(Some(_)))
            }) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        // A shim containerd did not shut down (a failed run) still names
        // this containerd's socket on its command line.
        let sock = self.socket().display().to_string();
        for pid in pids_with_arg(&sock) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for m in mounts_under(self.dir.path()).into_iter().rev() {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        // ctr's default cgroup parent is /<namespace>.
        for ctrl in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = fs::remove_dir(ctrl.path().join(&self.namespace));
        }
    }
}

/// Pids whose command line has `arg` as one argument.
fn pids_with_arg(arg: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn ctr_run_prints_hello_through_berth_shim() {
    if !Path::new(CONTAINERD).exists() || !Path::new(CTR).exists() {
        eprintln!("containerd or ctr not installed: skipped");
        return;
    }
    let ctrd = PrivateContainerd::start();
    let layout = ctrd.dir.path().join("layout");
    berth_test_images::fixtures::busybox_layout(&layout).unwrap();
    let archive = ctrd.dir.path().join("busybox.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let base = "localhost/berth-shim-it/busybox";
    let out = ctrd.ctr(&[
        "images",
        "import",
        "--snapshotter",
        "native",
        "--base-name",
        base,
        archive.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "import: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        ctrd.log()
    );
    let image = format!("{base}:latest");
    let id = unique("t1");
    let out = ctrd.ctr(&[
        "run",
        "--rm",
        "--snapshotter",
        "native",
        "--runtime",
        "io.containerd.berth.v2",
        &image,
        &id,
        "echo",
        "hello",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("hello"),
        "ctr run: status {:?}\nstdout: {stdout}\nstderr: {}\ncontainerd log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        ctrd.log()
    );
    // --rm deleted the task and the container; the shim went away with it.
    let out = ctrd.ctr(&["tasks", "ls", "-q"]);
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
    assert!(!Path::new("/run/berth/runtime").join(&id).exists());
}
