//! A pod through berth-shim as berthd drives it: sandbox, containers with
//! CRI logs, exec through FIFOs, stats, kill/wait, exit records, log
//! reopen, errors, shutdown.

use std::fs;
use std::time::Duration;

use containerd_shim_protos::api::{
    CloseIORequest, ExecProcessRequest, PauseRequest, PidsRequest, ResizePtyRequest, ResumeRequest,
    StateRequest, StatsRequest, UpdateTaskRequest,
};
use containerd_shim_protos::cgroups::metrics::Metrics;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc::context::Context;
use containerd_shim_protos::ttrpc::{Code, Error};
use containerd_shim_protos::types::task::Status;
use serde_json::json;

use crate::support::*;

fn code_of(e: Error) -> Code {
    match e {
        Error::RpcStatus(s) => s.code(),
        other => panic!("not a status: {other:?}"),
    }
}

#[test]
fn pod_with_containers_exec_stats_logs_and_shutdown() {
    let netns = Netns::new();
    let pod = Pod::start();
    let rootfs_src = pod.dir.path().join("rootfs-src");
    busybox_rootfs(&rootfs_src);

    // Sandbox: new ipc + uts (hostname), joined netns, pod PID namespace.
    let sb = pod.sandbox_bundle(&sandbox_spec(Some(&netns.path()), "shim-pod", true));
    let sb_pid = pod
        .create(&pod.id, &sb, None, ["", "", ""])
        .unwrap_or_else(|e| panic!("sandbox create: {e}\n{}", pod.shim_log()));
    assert!(sb_pid > 1);
    for ns in ["ipc", "uts", "pid"] {
        assert!(sb.join("ns").join(ns).exists(), "{ns} not pinned");
    }
    assert_eq!(pod.start_task(&pod.id, "").unwrap(), sb_pid);
    let dup = pod.create(&pod.id, &sb, None, ["", "", ""]).unwrap_err();
    assert_eq!(code_of(dup), Code::ALREADY_EXISTS);

    // Container 1: writes to stdout and stderr, exits 0.
    let c1 = unique("c1");
    let log1 = pod.dir.path().join("logs").join("c1.log");
    fs::create_dir_all(log1.parent().unwrap()).unwrap();
    let cri1 = format!("cri://{}", log1.display());
    let spec1 = container_spec(
        &c1,
        &sb,
        &netns.path(),
        &[
            "sh",
            "-c",
            "echo hello; echo oops >&2; hostname; grep SigIgn /proc/self/status",
        ],
    );
    let b1 = pod.bundle(&c1, &spec1);
    pod.create(&c1, &b1, Some(&rootfs_src), ["", &cri1, &cri1])
        .unwrap_or_else(|e| panic!("create c1: {e}\n{}", pod.shim_log()));
    pod.start_task(&c1, "").unwrap();
    assert_eq!(pod.wait(&c1, ""), 0);
    let lines = cri_lines(&log1);
    assert!(
        lines.contains(&("stdout".into(), "hello".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("stderr".into(), "oops".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&("stdout".into(), "shim-pod".into())),
        "container did not join the pod's UTS namespace: {lines:?}"
    );
    // Nothing the shim or its starter ignored leaks into the container
    // (busybox sh ignores SIGQUIT itself): SIGINT, SIGPIPE, SIGTERM, SIGXFSZ.
    let sig_ign = lines
        .iter()
        .find_map(|(_, t)| t.strip_prefix("SigIgn:"))
        .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
        .unwrap();
    let leaked = [2u64, 13, 15, 25]
        .iter()
        .filter(|s| sig_ign & (1 << (*s - 1)) != 0)
        .count();
    assert_eq!(
        leaked, 0,
        "ignored signals {sig_ign:#x} reached the container"
    );
    let ex = exit_json(&b1);
    assert_eq!(ex["exit_code"], json!(0));
    assert_eq!(ex["oom_killed"], json!(false));
    assert!(ex["exited_at"].as_str().unwrap().ends_with('Z'));
    assert!(!mounts_under(&b1).is_empty(), "rootfs should be mounted");
    assert_eq!(pod.delete(&c1, "").unwrap(), 0);
    assert!(
        mounts_under(&b1).is_empty(),
        "rootfs still mounted after delete"
    );
    assert_eq!(code_of(pod.delete(&c1, "").unwrap_err()), Code::NOT_FOUND);

    // Container 2: long running, logs a tick; exec, stats, reopen, kill.
    let c2 = unique("c2");
    let log2 = pod.dir.path().join("logs").join("c2.log");
    let cri2 = format!("cri://{}", log2.display());
    let spec2 = container_spec(
        &c2,
        &sb,
        &netns.path(),
        &["sh", "-c", "while true; do echo tick; sleep 0.1; done"],
    );
    let b2 = pod.bundle(&c2, &spec2);
    pod.create(&c2, &b2, Some(&rootfs_src), ["", &cri2, &cri2])
        .unwrap_or_else(|e| panic!("create c2: {e}\n{}", pod.shim_log()));
    let mut st = StateRequest::new();
    st.id = c2.clone();
    let state = pod.client.state(Context::default(), &st).unwrap();
    assert_eq!(state.status.enum_value().unwrap(), Status::CREATED);
    pod.start_task(&c2, "").unwrap();
    let state = pod.client.state(Context::default(), &st).unwrap();
    assert_eq!(state.status.enum_value().unwrap(), Status::RUNNING);
    assert_eq!(
        code_of(pod.delete(&c2, "").unwrap_err()),
        Code::FAILED_PRECONDITION
    );

    // Exec through FIFOs, exit code 3, sees the pod's PID namespace.
    let out_fifo = pod.dir.path().join("exec-out");
    let err_fifo = pod.dir.path().join("exec-err");
    mkfifo(&out_fifo);
    mkfifo(&err_fifo);
    let out_reader = read_fifo(&out_fifo);
    let err_reader = read_fifo(&err_fifo);
    let process = json!({
        "args": ["sh", "-c", "echo out; echo err >&2; exit 3"],
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
        "terminal": false
    });
    let mut ex = ExecProcessRequest::new();
    ex.id = c2.clone();
    ex.exec_id = "e1".into();
    ex.stdout = out_fifo.display().to_string();
    ex.stderr = err_fifo.display().to_string();
    ex.spec = Some(Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
        value: serde_json::to_vec(&process).unwrap(),
        ..Default::default()
    })
    .into();
    pod.client.exec(Context::default(), &ex).unwrap();
    let exec_pid = pod
        .start_task(&c2, "e1")
        .unwrap_or_else(|e| panic!("exec start: {e}\n{}", pod.shim_log()));
    assert!(exec_pid > 0);
    assert_eq!(pod.wait(&c2, "e1"), 3);
    assert_eq!(out_reader.join().unwrap(), "out\n");
    assert_eq!(err_reader.join().unwrap(), "err\n");
    assert_eq!(pod.delete(&c2, "e1").unwrap(), 3);

    // Exec with stdin from a FIFO; CloseIO delivers EOF.
    let in_fifo = pod.dir.path().join("exec-in");
    let cat_out = pod.dir.path().join("exec-cat-out");
    mkfifo(&in_fifo);
    mkfifo(&cat_out);
    let cat_reader = read_fifo(&cat_out);
    let process = json!({
        "args": ["cat"], "cwd": "/", "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0}, "terminal": false
    });
    let mut ex = ExecProcessRequest::new();
    ex.id = c2.clone();
    ex.exec_id = "e3".into();
    ex.stdin = in_fifo.display().to_string();
    ex.stdout = cat_out.display().to_string();
    ex.spec = Some(Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
        value: serde_json::to_vec(&process).unwrap(),
        ..Default::default()
    })
    .into();
    pod.client.exec(Context::default(), &ex).unwrap();
    pod.start_task(&c2, "e3").unwrap();
    {
        let mut w = fs::OpenOptions::new().write(true).open(&in_fifo).unwrap();
        std::io::Write::write_all(&mut w, b"via stdin\n").unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut close = CloseIORequest::new();
    close.id = c2.clone();
    close.exec_id = "e3".into();
    close.stdin = true;
    pod.client.close_io(Context::default(), &close).unwrap();
    assert_eq!(pod.wait(&c2, "e3"), 0);
    assert_eq!(cat_reader.join().unwrap(), "via stdin\n");
    pod.delete(&c2, "e3").unwrap();

    // Exec with a terminal: output through the pty, ResizePty reaches it.
    let tty_fifo = pod.dir.path().join("exec-tty");
    mkfifo(&tty_fifo);
    let tty_reader = read_fifo(&tty_fifo);
    let process = json!({
        "args": ["sh", "-c", "tty; sleep 0.5; stty size"],
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
        "terminal": true
    });
    let mut ex = ExecProcessRequest::new();
    ex.id = c2.clone();
    ex.exec_id = "e2".into();
    ex.terminal = true;
    ex.stdout = tty_fifo.display().to_string();
    ex.spec = Some(Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
        value: serde_json::to_vec(&process).unwrap(),
        ..Default::default()
    })
    .into();
    pod.client.exec(Context::default(), &ex).unwrap();
    pod.start_task(&c2, "e2")
        .unwrap_or_else(|e| panic!("tty exec start: {e}\n{}", pod.shim_log()));
    let mut rz = ResizePtyRequest::new();
    rz.id = c2.clone();
    rz.exec_id = "e2".into();
    rz.width = 100;
    rz.height = 40;
    pod.client.resize_pty(Context::default(), &rz).unwrap();
    assert_eq!(pod.wait(&c2, "e2"), 0);
    let tty_out = tty_reader.join().unwrap();
    assert!(tty_out.contains("/dev/pts/"), "{tty_out:?}");
    assert!(tty_out.contains("40 100\r\n"), "{tty_out:?}");
    pod.delete(&c2, "e2").unwrap();

    // Pids and stats.
    let mut pr = PidsRequest::new();
    pr.id = c2.clone();
    let pids = pod.client.pids(Context::default(), &pr).unwrap();
    assert!(!pids.processes.is_empty());
    let mut sr = StatsRequest::new();
    sr.id = c2.clone();
    let stats = pod.client.stats(Context::default(), &sr).unwrap();
    assert_eq!(stats.stats.type_url, "io.containerd.cgroups.v1.Metrics");
    let m = Metrics::parse_from_bytes(&stats.stats.value).unwrap();
    assert!(m.cpu.usage.total > 0, "{m:?}");
    assert!(m.memory.usage.usage > 0, "{m:?}");
    assert!(m.pids.current >= 1, "{m:?}");

    // ReopenContainerLog: the rotated file stops growing, a new one starts.
    assert!(wait_until(Duration::from_secs(5), || cri_lines(&log2)
        .len()
        >= 2));
    let rotated = pod.dir.path().join("logs").join("c2.log.1");
    fs::rename(&log2, &rotated).unwrap();
    let mut up = UpdateTaskRequest::new();
    up.id = c2.clone();
    up.annotations
        .insert("berth.io/reopen-log".into(), "true".into());
    pod.client.update(Context::default(), &up).unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        cri_lines(&log2).iter().any(|(_, t)| t == "tick")
    }));

    // Update resources (pids limit) through the LinuxResources JSON.
    let mut up = UpdateTaskRequest::new();
    up.id = c2.clone();
    up.resources = Some(Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
        value: br#"{"pids":{"limit":77}}"#.to_vec(),
        ..Default::default()
    })
    .into();
    pod.client.update(Context::default(), &up).unwrap();
    let m = Metrics::parse_from_bytes(
        &pod.client
            .stats(Context::default(), &sr)
            .unwrap()
            .stats
            .value,
    )
    .unwrap();
    assert_eq!(m.pids.limit, 77);

    // Pause / Resume through the freezer.
    let mut pa = PauseRequest::new();
    pa.id = c2.clone();
    pod.client.pause(Context::default(), &pa).unwrap();
    let state = pod.client.state(Context::default(), &st).unwrap();
    assert_eq!(state.status.enum_value().unwrap(), Status::PAUSED);
    let mut re = ResumeRequest::new();
    re.id = c2.clone();
    pod.client.resume(Context::default(), &re).unwrap();
    let state = pod.client.state(Context::default(), &st).unwrap();
    assert_eq!(state.status.enum_value().unwrap(), Status::RUNNING);

    // Kill + Wait: 128 + SIGKILL, recorded in exit.json.
    pod.kill(&c2, "", 9, false).unwrap();
    assert_eq!(pod.wait(&c2, ""), 137);
    assert_eq!(exit_json(&b2)["exit_code"], json!(137));
    assert_eq!(
        code_of(pod.kill(&c2, "", 9, false).unwrap_err()),
        Code::NOT_FOUND
    );
    let mut up = UpdateTaskRequest::new();
    up.id = c2.clone();
    up.annotations
        .insert("berth.io/reopen-log".into(), "true".into());
    assert_eq!(
        code_of(pod.client.update(Context::default(), &up).unwrap_err()),
        Code::FAILED_PRECONDITION
    );
    assert_eq!(pod.delete(&c2, "").unwrap(), 137);

    // Sandbox: kill the pod init, wait, delete unpins.
    pod.kill(&pod.id, "", 15, false).unwrap();
    assert_eq!(pod.wait(&pod.id, ""), 0);
    pod.delete(&pod.id, "").unwrap();
    assert!(!sb.join("ns").exists());
    assert!(mounts_under(pod.dir.path()).is_empty());
    let mut unknown = StateRequest::new();
    unknown.id = "nope".into();
    assert_eq!(
        code_of(pod.client.state(Context::default(), &unknown).unwrap_err()),
        Code::NOT_FOUND
    );
    let topics = pod.recorder.topics.lock().unwrap().clone();
    for t in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
    ] {
        assert!(topics.iter().any(|x| x == t), "no {t} event in {topics:?}");
    }
    pod.shutdown();
    for c in [&c1, &c2] {
        assert!(
            !std::path::Path::new(&format!("/sys/fs/cgroup/memory/berth-shim-it-{c}")).exists()
        );
    }
}

#[test]
fn oom_kill_is_recorded() {
    let netns = Netns::new();
    let pod = Pod::start();
    let rootfs_src = pod.dir.path().join("rootfs-src");
    busybox_rootfs(&rootfs_src);
    let sb = pod.sandbox_bundle(&sandbox_spec(Some(&netns.path()), "oom-pod", false));
    pod.create(&pod.id, &sb, None, ["", "", ""])
        .unwrap_or_else(|e| panic!("sandbox: {e}\n{}", pod.shim_log()));
    let c = unique("oom");
    let mut spec = container_spec(
        &c,
        &sb,
        &netns.path(),
        &[
            "sh",
            "-c",
            "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
        ],
    );
    spec["linux"]["resources"]["memory"] =
        json!({"limit": 16 * 1024 * 1024, "swap": 16 * 1024 * 1024});
    let b = pod.bundle(&c, &spec);
    pod.create(&c, &b, Some(&rootfs_src), ["", "", ""])
        .unwrap_or_else(|e| panic!("create: {e}\n{}", pod.shim_log()));
    pod.start_task(&c, "").unwrap();
    assert_eq!(pod.wait(&c, ""), 137);
    let ex = exit_json(&b);
    assert_eq!(ex["oom_killed"], json!(true), "{ex:?}");
    assert_eq!(ex["exit_code"], json!(137));
    let topics = pod.recorder.topics.lock().unwrap().clone();
    assert!(topics.iter().any(|t| t == "/tasks/oom"), "{topics:?}");
    pod.delete(&c, "").unwrap();
    // Sandbox without a pod init: Kill ends its "process".
    pod.kill(&pod.id, "", 9, false).unwrap();
    assert_eq!(pod.wait(&pod.id, ""), 137);
    pod.delete(&pod.id, "").unwrap();
    pod.shutdown();
    assert!(mounts_under(pod.dir.path()).is_empty());
}
