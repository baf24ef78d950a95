//! create / start / state / kill / delete / run: the lifecycle as runc defines it.

use std::fs;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use crate::support::runner::{cgroup_leaf, mounts_containing, proc_cgroup_dirs};
use crate::support::{Bundle, Container, Runtime};

#[test]
fn init_is_pid_1() {
    let mut b = Bundle::new();
    b.sh("echo pid=$$; echo ppid=$PPID; cat /proc/1/cmdline | tr '\\0' ' '; echo");
    let mut c = Container::new(&Runtime::under_test(), "pid1", b);
    let f = c.run_to_exit();
    assert!(f.stdout.contains("pid=1\n"), "{f:?}");
    assert!(f.stdout.contains("ppid=0\n"), "{f:?}");
    assert!(f.stdout.contains("sh -c echo pid=$$"), "{f:?}");
    if let Some(st) = f.status {
        assert!(st.success(), "{f:?}");
    }
}

#[test]
fn exit_code_is_the_process_exit_code() {
    let mut b = Bundle::new();
    b.sh("echo to-out; echo to-err >&2; exit 7");
    let mut c = Container::new(&Runtime::under_test(), "exitcode", b);
    let f = c.run_to_exit();
    assert_eq!(f.stdout, "to-out\n", "{f:?}");
    assert!(f.stderr.contains("to-err"), "{f:?}");
    let st = f
        .status
        .expect("the container init should be reaped by the test (subreaper)");
    assert_eq!(st.code(), Some(7), "{f:?}");
}

/// The user process writes a marker into a bind-mounted host dir: absent after create.
#[test]
fn create_does_not_run_the_process_before_start() {
    let host = tempfile::tempdir().unwrap();
    let mut b = Bundle::new();
    b.rootfs_dir("/mnt/host");
    b.mount(
        "/mnt/host",
        "bind",
        host.path().to_str().unwrap(),
        &["rbind", "rw"],
    );
    b.sh("echo ran > /mnt/host/marker");
    let mut c = Container::new(&Runtime::under_test(), "prestart", b);
    c.create_ok();
    sleep(Duration::from_millis(300));
    let marker = host.path().join("marker");
    assert!(!marker.exists(), "user process ran before start");
    assert_eq!(c.status(), "created");
    assert!(c.start().success());
    c.wait();
    assert_eq!(fs::read_to_string(&marker).unwrap(), "ran\n");
}

#[test]
fn state_reports_each_status() {
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let rt = Runtime::under_test();
    let mut c = Container::new(&rt, "state", b);
    c.create_ok();
    let st = c.state();
    assert_eq!(st["id"], c.id.as_str());
    assert_eq!(st["status"], "created");
    assert_eq!(st["pid"].as_i64(), Some(c.pid() as i64), "{st}");
    let bundle = Path::new(st["bundle"].as_str().unwrap());
    assert_eq!(
        fs::canonicalize(bundle).unwrap(),
        fs::canonicalize(c.bundle.path()).unwrap()
    );
    assert!(
        st["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{st}"
    );
    assert!(c.start().success());
    assert_eq!(c.status(), "running");
    assert!(c.kill("KILL").success());
    c.wait();
    c.wait_status("stopped");
}

#[test]
fn state_of_unknown_container_fails() {
    let c = Container::new(&Runtime::under_test(), "unknown", Bundle::new());
    let out = c.cmd(&["state", &c.id]);
    assert!(!out.success(), "{out}");
}

#[test]
fn kill_delivers_the_signal() {
    let mut b = Bundle::new();
    // pid 1 ignores signals it has no handler for: install one for TERM.
    b.sh("trap 'echo got-term; exit 42' TERM; echo ready; while true; do sleep 0.05; done");
    let mut c = Container::new(&Runtime::under_test(), "kill", b);
    c.launch();
    c.wait_for_stdout("ready");
    assert!(c.kill("TERM").success());
    let st = c.wait();
    assert!(c.stdout().contains("got-term"), "{}", c.stdout());
    if let Some(st) = st {
        assert_eq!(st.code(), Some(42));
    }
    assert_eq!(c.status(), "stopped");
}

#[test]
fn kill_all_signals_every_process() {
    let mut b = Bundle::new();
    b.sh("sleep 1000 & sleep 1000 & echo ready; wait");
    let mut c = Container::new(&Runtime::under_test(), "killall", b);
    c.launch();
    c.wait_for_stdout("ready");
    let out = c.cmd(&["kill", "--all", &c.id, "KILL"]);
    assert!(out.success(), "{out}");
    let st = c.wait().expect("init reaped by the test");
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
}

#[test]
fn delete_of_running_container_needs_force() {
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let mut c = Container::new(&Runtime::under_test(), "delrun", b);
    c.launch();
    let out = c.cmd(&["delete", &c.id]);
    assert!(
        !out.success(),
        "delete without --force removed a running container: {out}"
    );
    assert_eq!(c.status(), "running");
    assert!(c.delete(true).success());
    assert!(!crate::support::runner::pid_alive(c.pid()));
}

/// Cgroup dirs the init is in that the runtime created for this container.
fn container_cgroup_dirs(c: &Container) -> Vec<std::path::PathBuf> {
    let leaf = cgroup_leaf(&c.id);
    let dirs: Vec<_> = proc_cgroup_dirs(c.pid())
        .into_iter()
        .filter(|(_, d)| d.to_string_lossy().contains(&leaf))
        .map(|(_, d)| d)
        .collect();
    assert!(
        dirs.len() >= 3,
        "init not in its cgroupsPath {leaf}: {dirs:?}"
    );
    for d in &dirs {
        assert!(d.is_dir(), "{} missing while running", d.display());
    }
    dirs
}

fn assert_nothing_left(c: &Container, cgroups: &[std::path::PathBuf]) {
    for d in cgroups {
        assert!(!d.exists(), "cgroup {} left behind", d.display());
    }
    assert!(!c.state_dir().exists(), "state dir left behind");
    let leftovers: Vec<_> = fs::read_dir(c.root())
        .map(|it| it.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers
            .iter()
            .all(|n| !n.to_string_lossy().contains(&c.id)),
        "state left in --root: {leftovers:?}"
    );
    let mounts = mounts_containing("self", &c.bundle.path().to_string_lossy());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let out = c.cmd(&["state", &c.id]);
    assert!(!out.success(), "state still answers after delete: {out}");
}

#[test]
fn delete_after_exit_leaves_nothing_behind() {
    let mut b = Bundle::new();
    b.args(&["sleep", "0.5"]);
    let mut c = Container::new(&Runtime::under_test(), "delexit", b);
    c.launch();
    let cgroups = container_cgroup_dirs(&c);
    c.wait();
    c.wait_status("stopped");
    let out = c.delete(false);
    assert!(out.success(), "{out}");
    assert_nothing_left(&c, &cgroups);
}

#[test]
fn delete_force_of_running_container_leaves_nothing_behind() {
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let mut c = Container::new(&Runtime::under_test(), "delforce", b);
    c.launch();
    let cgroups = container_cgroup_dirs(&c);
    let out = c.delete(true);
    assert!(out.success(), "{out}");
    assert_nothing_left(&c, &cgroups);
    assert!(!crate::support::runner::pid_alive(c.pid()));
}

#[test]
fn delete_force_of_created_container_leaves_nothing_behind() {
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let mut c = Container::new(&Runtime::under_test(), "delcreated", b);
    c.create_ok();
    let cgroups = container_cgroup_dirs(&c);
    let out = c.delete(true);
    assert!(out.success(), "{out}");
    assert_nothing_left(&c, &cgroups);
}

#[test]
fn run_in_foreground_returns_the_exit_code_and_cleans_up() {
    let mut b = Bundle::new();
    b.sh("echo from-run; exit 3");
    let c = Container::new(&Runtime::under_test(), "run", b);
    c.bundle.write_config();
    let bundle = c.bundle.path().to_str().unwrap().to_owned();
    let out = c.cmd(&["run", "--bundle", &bundle, &c.id]);
    assert_eq!(out.code(), Some(3), "{out}");
    assert!(out.stdout.contains("from-run"), "{out}");
    let st = c.cmd(&["state", &c.id]);
    assert!(!st.success(), "run left the container behind: {st}");
}

#[test]
fn run_detached_then_delete() {
    let mut b = Bundle::new();
    b.args(&["sleep", "1000"]);
    let c = Container::new(&Runtime::under_test(), "rundetach", b);
    c.bundle.write_config();
    let bundle = c.bundle.path().to_str().unwrap().to_owned();
    let out = c.cmd(&["run", "--detach", "--bundle", &bundle, &c.id]);
    assert!(out.success(), "{out}");
    assert_eq!(c.status(), "running");
    let out = c.cmd(&["delete", "--force", &c.id]);
    assert!(out.success(), "{out}");
}
