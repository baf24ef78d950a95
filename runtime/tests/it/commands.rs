//! The other runc subcommands: pause/resume, update, ps, events --stats,
//! features, spec.

use std::fs;
use std::thread::sleep;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::cmd::{self, CMD_TIMEOUT};
use crate::support::probe::kv;
use crate::support::runner::proc_cgroup_dirs;
use crate::support::{Bundle, Container, Runtime};

fn sleeper(tag: &str) -> Container {
    let mut b = Bundle::new();
    b.sh("sleep 1000 & echo started; wait");
    let mut c = Container::new(&Runtime::under_test(), tag, b);
    c.launch();
    c.wait_for_stdout("started");
    c
}

#[test]
fn pause_freezes_and_resume_thaws() {
    let mut b = Bundle::new();
    b.sh("i=0; while true; do i=$((i+1)); echo $i; sleep 0.02; done");
    let mut c = Container::new(&Runtime::under_test(), "pause", b);
    c.launch();
    c.wait_for_stdout("3\n");
    assert!(c.cmd(&["pause", &c.id]).ok().success());
    assert_eq!(c.status(), "paused");
    let freezer = proc_cgroup_dirs(c.pid())
        .into_iter()
        .find(|(ctrl, _)| ctrl == "freezer")
        .map(|(_, d)| d.join("freezer.state"));
    if let Some(f) = freezer {
        assert_eq!(fs::read_to_string(f).unwrap().trim(), "FROZEN");
    }
    let before = c.stdout().len();
    sleep(Duration::from_millis(300));
    assert_eq!(
        c.stdout().len(),
        before,
        "container kept running while paused"
    );
    assert!(c.cmd(&["resume", &c.id]).ok().success());
    assert_eq!(c.status(), "running");
    sleep(Duration::from_millis(300));
    assert!(c.stdout().len() > before, "container did not resume");
}

#[test]
fn update_changes_limits_from_flags_and_file() {
    let c = sleeper("update");
    let out = c.cmd(&[
        "update",
        "--pids-limit",
        "42",
        "--cpu-quota",
        "30000",
        &c.id,
    ]);
    assert!(out.success(), "{out}");
    let probe = "echo pids=$(cat /sys/fs/cgroup/pids/pids.max); \
                 echo quota=$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us); \
                 echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)";
    let s = c.exec_sh(probe).ok().stdout;
    assert_eq!(kv(&s, "pids").as_deref(), Some("42"), "{s}");
    assert_eq!(kv(&s, "quota").as_deref(), Some("30000"), "{s}");

    let r = c.work().join("resources.json");
    fs::write(
        &r,
        json!({"memory": {"limit": 96 << 20}, "cpu": {"quota": 40000, "period": 100000}, "pids": {"limit": 43}})
            .to_string(),
    )
    .unwrap();
    let out = c.cmd(&["update", "--resources", r.to_str().unwrap(), &c.id]);
    assert!(out.success(), "{out}");
    let s = c.exec_sh(probe).ok().stdout;
    assert_eq!(kv(&s, "mem").as_deref(), Some("100663296"), "{s}");
    assert_eq!(kv(&s, "quota").as_deref(), Some("40000"), "{s}");
    assert_eq!(kv(&s, "pids").as_deref(), Some("43"), "{s}");
}

#[test]
fn ps_lists_the_containers_processes() {
    let c = sleeper("ps");
    let out = c.cmd(&["ps", "--format", "json", &c.id]).ok();
    let pids: Vec<i64> = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(pids.contains(&(c.pid() as i64)), "{out}");
    assert_eq!(pids.len(), 2, "sh and sleep expected: {out}");
    for p in pids {
        let cmdline = fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default();
        assert!(
            cmdline.starts_with("sh") || cmdline.starts_with("sleep"),
            "{p}: {cmdline:?}"
        );
    }
}

#[test]
fn events_stats_reports_cgroup_usage() {
    let c = sleeper("stats");
    let out = c.cmd(&["events", "--stats", &c.id]).ok();
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["type"], "stats", "{v}");
    assert_eq!(v["id"], c.id.as_str(), "{v}");
    let d = &v["data"];
    assert_eq!(d["pids"]["current"].as_u64(), Some(2), "{v}");
    assert!(
        d["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0, "{v}");
}

#[test]
fn features_describes_the_runtime() {
    let rt = Runtime::under_test();
    let mut c = rt.command(std::path::Path::new("/nonexistent-root-unused"));
    c.arg("features");
    let out = cmd::run(c, CMD_TIMEOUT).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        v["ociVersionMin"]
            .as_str()
            .is_some_and(|s| s.starts_with("1.")),
        "{v}"
    );
    assert!(
        v["ociVersionMax"]
            .as_str()
            .is_some_and(|s| s.starts_with("1.")),
        "{v}"
    );
    let hooks: Vec<&str> = v["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&h), "{h} missing: {v}");
    }
    let nss: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for ns in ["pid", "network", "ipc", "uts", "mount", "user", "cgroup"] {
        assert!(nss.contains(&ns), "{ns} missing: {v}");
    }
    assert!(
        v["linux"]["seccomp"]["enabled"].as_bool() == Some(true),
        "{v}"
    );
    assert!(
        v["mountOptions"]
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o == "rbind")),
        "{v}"
    );
}

#[test]
fn spec_writes_a_config_that_runs() {
    let b = Bundle::new();
    let rt = Runtime::under_test();
    let mut c = rt.command(std::path::Path::new("/nonexistent-root-unused"));
    c.args(["spec", "--bundle"]).arg(b.path());
    cmd::run(c, CMD_TIMEOUT).ok();
    let text = fs::read_to_string(b.path().join("config.json")).unwrap();
    let spec: oci_spec::runtime::Spec = serde_json::from_str(&text).unwrap();
    assert_eq!(
        spec.root().as_ref().unwrap().path(),
        std::path::Path::new("rootfs")
    );
    let mut v: Value = serde_json::from_str(&text).unwrap();
    assert!(
        v["process"]["terminal"].as_bool().unwrap_or(false),
        "default spec is interactive like runc's"
    );
    v["process"]["terminal"] = json!(false);
    v["process"]["args"] = json!(["sh", "-c", "echo from-default-spec"]);
    let mut b = b;
    *b.config_mut() = v;
    let mut c = Container::new(&rt, "spec", b);
    let f = c.run_to_exit();
    assert!(f.stdout.contains("from-default-spec"), "{f:?}");

    let d = tempfile::tempdir().unwrap();
    let mut c = rt.command(std::path::Path::new("/nonexistent-root-unused"));
    c.args(["spec", "--rootless", "--bundle"]).arg(d.path());
    cmd::run(c, CMD_TIMEOUT).ok();
    let v: Value =
        serde_json::from_str(&fs::read_to_string(d.path().join("config.json")).unwrap()).unwrap();
    let nss = v["linux"]["namespaces"].as_array().unwrap();
    assert!(nss.iter().any(|n| n["type"] == "user"), "{v}");
    assert!(
        v["linux"]["uidMappings"]
            .as_array()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

#[test]
fn log_file_in_json_format() {
    let c = Container::new(&Runtime::under_test(), "logjson", Bundle::new());
    let log = c.work().join("runtime.log");
    let mut cmd = c.command();
    cmd.arg("--log")
        .arg(&log)
        .args(["--log-format", "json", "state", &c.id]);
    let out = cmd::run(cmd, CMD_TIMEOUT);
    assert!(!out.success(), "{out}");
    let text = fs::read_to_string(&log).unwrap_or_default();
    let entries: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let err = entries
        .iter()
        .find(|e| e["level"] == "error")
        .unwrap_or_else(|| panic!("no error entry in the log: {text:?}"));
    assert!(
        err["msg"]
            .as_str()
            .is_some_and(|m| m.contains("does not exist")),
        "{err}"
    );
}

#[test]
fn systemd_cgroup_driver_is_refused_clearly() {
    let mut b = Bundle::new();
    b.args(&["true"]);
    let c = Container::new(&Runtime::under_test(), "systemd", b);
    c.bundle.write_config();
    let bundle = c.bundle.path().to_str().unwrap().to_owned();
    let id = c.id.clone();
    let out = c.cmd(&["--systemd-cgroup", "create", "--bundle", &bundle, &id]);
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("systemd"), "unclear error: {out}");
    // Nothing may be left half-created.
    assert!(!c.cmd(&["state", &id]).success());
}
