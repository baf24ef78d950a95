//! State that survives (issue 4 point 7): `kill -9` of berthd, then a
//! restart on the same root and state. Uses its own daemon, not the shared
//! one, since it kills it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use berth_conformance::client::container_config;
use berth_conformance::harness::{procs, Berth};
use berth_proto::cri;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_keeps_pods_and_containers_manageable() {
    init_tracing();
    let b = Berth::start().unwrap_or_else(|e| panic!("{e}"));
    let c = b.client();

    // Pod P: a ticker (A), one that exits 7 while berthd is down (B), one
    // only created (C).
    let ticker = "i=0; while :; do echo t-$i; i=$((i+1)); sleep 0.2; done";
    let p = pod_with(&b, &c, b.pod_config("survivor"), "a", &["sh", "-c", ticker]).await;
    let exits = container_config("b", &b.busybox(), &["sh", "-c", "sleep 3; exit 7"]);
    let bid = c.create_started(&p.pod, &exits, &p.config).await.unwrap();
    let idle = container_config("c", &b.busybox(), &["sleep", "1000000"]);
    let cid = c.create_container(&p.pod, &idle, &p.config).await.unwrap();
    // Pod Q: stopped before the crash.
    let q_cfg = b.pod_config("stopped");
    let q = c.run_pod(&q_cfg).await.unwrap();
    c.stop_pod(&q).await.unwrap();
    // Pod R: its shim will be killed too.
    let r = sleeping_pod(&b, &c, "orphaned").await;

    let shims_before = b.shim_pids();
    assert!(
        !shims_before.is_empty(),
        "no shim processes found for this daemon"
    );
    b.kill9();
    // Kill R's shim and everything under it while berthd is down.
    let r_shim: Vec<u32> = procs::processes_with_arg(&format!("-id {}", r.pod))
        .into_iter()
        .filter(|x| x.cmdline.contains(&b.fp.shim_needle()))
        .map(|x| x.pid)
        .collect();
    assert_eq!(r_shim.len(), 1, "R's shim: {r_shim:?}");
    let mut doomed = procs::descendants(&r_shim);
    doomed.extend(&r_shim);
    procs::kill_all(&doomed);
    assert!(procs::wait_gone(&doomed, Duration::from_secs(5)).is_empty());
    // B exits while nobody listens.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let survivors: Vec<u32> = shims_before
        .iter()
        .copied()
        .filter(|p| !r_shim.contains(p))
        .collect();
    for pid in &survivors {
        assert!(procs::alive(*pid), "shim {pid} died with berthd");
    }
    let log = log_path(&p.config, "a");
    let lines_at_crash = stream_lines(&parse_log(&log).unwrap(), "stdout").len();

    b.spawn().unwrap_or_else(|e| panic!("restart: {e}"));
    let c = b.client();

    let pods = c.list_pods(None).await.unwrap();
    let state_of = |id: &str| pods.iter().find(|x| x.id == id).map(|x| x.state);
    assert_eq!(
        state_of(&p.pod),
        Some(cri::PodSandboxState::SandboxReady as i32)
    );
    assert_eq!(
        state_of(&q),
        Some(cri::PodSandboxState::SandboxNotready as i32)
    );
    assert!(state_of(&r.pod).is_some(), "pod R forgotten");

    let a = c.container_status(&p.ctr).await.unwrap();
    assert_eq!(a.state, ContainerState::ContainerRunning as i32, "{a:?}");
    let bs = c
        .wait_state(
            &bid,
            ContainerState::ContainerExited,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(bs.exit_code, 7, "{bs:?}");
    assert_eq!(bs.reason, "Error");
    assert!(bs.finished_at > bs.started_at);
    let cs = c.container_status(&cid).await.unwrap();
    assert_eq!(cs.state, ContainerState::ContainerCreated as i32);

    // R's container is known to be gone, with a reason.
    let rs = c
        .wait_state(
            &r.ctr,
            ContainerState::ContainerExited,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(
        !rs.reason.is_empty(),
        "dead shim's container has no reason: {rs:?}"
    );

    // The running container is still manageable: exec, logs, stop.
    let out = c.exec_ok(&p.ctr, &["echo", "still-here"]).await.unwrap();
    assert_eq!(out.trim(), "still-here");
    let grew = eventually(Duration::from_secs(5), || async {
        let n = stream_lines(&parse_log(&log).ok()?, "stdout").len();
        (n > lines_at_crash + 2).then_some(())
    })
    .await;
    assert!(grew.is_some(), "log stopped growing after the restart");
    c.stop(&p.ctr, 1).await.unwrap();
    let a = c.container_status(&p.ctr).await.unwrap();
    assert_eq!(a.state, ContainerState::ContainerExited as i32);
    // The created one can still start.
    c.start(&cid).await.unwrap();
    c.wait_state(
        &cid,
        ContainerState::ContainerRunning,
        Duration::from_secs(5),
    )
    .await
    .unwrap();

    for pod in [&p.pod, &q, &r.pod] {
        c.stop_pod(pod).await.unwrap();
        c.remove_pod(pod).await.unwrap();
    }
    assert!(c.list_pods(None).await.unwrap().is_empty());
    let left = eventually(Duration::from_secs(10), || async {
        b.shim_pids().is_empty().then_some(())
    })
    .await;
    assert!(
        left.is_some(),
        "shims still running after every pod was removed: {:?}",
        b.shim_pids()
    );
}

/// A restart with nothing running and a clean shutdown leaves no shim, no
/// mount and no netns behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_of_an_idle_daemon_is_clean() {
    init_tracing();
    let b = Berth::start().unwrap_or_else(|e| panic!("{e}"));
    let c = b.client();
    let p = sleeping_pod(&b, &c, "idle").await;
    c.stop_pod(&p.pod).await.unwrap();
    c.remove_pod(&p.pod).await.unwrap();
    b.kill9();
    b.spawn().unwrap();
    let c = b.client();
    assert!(c.list_pods(None).await.unwrap().is_empty());
    assert!(c.list_containers(None).await.unwrap().is_empty());
    let netns = b.fp.state.join("netns");
    let pinned: Vec<_> = std::fs::read_dir(&netns)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    assert!(pinned.is_empty(), "netns left: {pinned:?}");
    let mounts = berth_conformance::harness::cleanup::mounts_under(&b.fp.state);
    assert!(mounts.is_empty(), "mounts left under state: {mounts:?}");
}
