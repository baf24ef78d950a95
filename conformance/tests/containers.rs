//! Containers: CreateContainer, StartContainer, StopContainer (timeout →
//! SIGKILL, image STOPSIGNAL), RemoveContainer, ContainerStatus fields,
//! ListContainers filters, UpdateContainerResources, ContainerStats,
//! ListContainerStats, OOMKilled; negatives and idempotence.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use berth_conformance::client::{container_config, labels};
use berth_conformance::harness::images::BUSYBOX_STOPSIGNAL;
use berth_proto::cri;
use common::*;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_lifecycle_and_status_fields() {
    let (b, c) = berth();
    let pod_cfg = b.pod_config("ctr-life");
    let pod = c.run_pod(&pod_cfg).await.unwrap();
    let mut cfg = container_config(
        "life",
        &b.busybox(),
        &["sh", "-c", "echo hi; sleep 2; exit 3"],
    );
    cfg.annotations = labels(&[("note", "kept")]);
    cfg.envs = vec![cri::KeyValue {
        key: "FOO".into(),
        value: "bar".into(),
    }];
    let t0 = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let id = c.create_container(&pod, &cfg, &pod_cfg).await.unwrap();

    let st = c.container_status(&id).await.unwrap();
    assert_eq!(st.id, id);
    assert_eq!(st.state, ContainerState::ContainerCreated as i32);
    assert_eq!(st.metadata, cfg.metadata);
    assert!(st.created_at >= t0);
    assert_eq!(st.started_at, 0);
    assert_eq!(st.image.as_ref().unwrap().image, b.busybox());
    assert!(
        st.image_ref.contains("sha256:"),
        "image_ref {:?}",
        st.image_ref
    );
    assert!(
        st.image_id.contains("sha256:"),
        "image_id {:?}",
        st.image_id
    );
    assert_eq!(st.labels, cfg.labels);
    assert_eq!(st.annotations, cfg.annotations);
    assert_eq!(
        st.log_path,
        log_path(&pod_cfg, "life").display().to_string()
    );

    c.start(&id).await.unwrap();
    let st = c.container_status(&id).await.unwrap();
    assert_eq!(st.state, ContainerState::ContainerRunning as i32);
    assert!(st.started_at >= st.created_at);
    // Starting twice is refused.
    assert!(
        c.start(&id).await.is_err(),
        "second StartContainer succeeded"
    );

    let st = c
        .wait_state(&id, ContainerState::ContainerExited, WAIT)
        .await
        .unwrap();
    assert_eq!(st.exit_code, 3);
    assert_eq!(st.reason, "Error");
    assert!(st.finished_at >= st.started_at + 1_500_000_000, "{st:?}");

    let listed = c
        .list_containers(Some(cri::ContainerFilter {
            id: id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let item = &listed[0];
    assert_eq!(item.pod_sandbox_id, pod);
    assert_eq!(item.state, ContainerState::ContainerExited as i32);
    assert_eq!(item.metadata, cfg.metadata);
    assert!(!item.image_ref.is_empty());

    // Stop and remove are idempotent.
    c.stop(&id, 1).await.unwrap();
    c.stop(&id, 1).await.unwrap();
    c.remove(&id).await.unwrap();
    c.remove(&id).await.unwrap();
    assert_code(
        c.container_status(&id).await,
        Code::NotFound,
        "status after remove",
    );
    c.cleanup_pod(&pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_zero_is_completed() {
    let (b, c) = berth();
    let p = pod_with(&b, &c, b.pod_config("completed"), "ok", &["true"]).await;
    let st = c
        .wait_state(&p.ctr, ContainerState::ContainerExited, WAIT)
        .await
        .unwrap();
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_container_ids_are_not_found() {
    let (_b, c) = berth();
    let id = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
    assert_code(
        c.container_status(id).await,
        Code::NotFound,
        "ContainerStatus",
    );
    assert_code(c.start(id).await, Code::NotFound, "StartContainer");
    let r =
        c.rt.clone()
            .container_stats(cri::ContainerStatsRequest {
                container_id: id.into(),
            })
            .await;
    assert_code(r, Code::NotFound, "ContainerStats");
    let r =
        c.rt.clone()
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: id.into(),
                linux: Some(cri::LinuxContainerResources::default()),
                ..Default::default()
            })
            .await;
    assert_code(r, Code::NotFound, "UpdateContainerResources");
    // Removing what is gone succeeds; stopping it is fine or NotFound.
    c.remove(id).await.unwrap();
    if let Err(s) = c.stop(id, 0).await {
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_create_requests_are_rejected() {
    let (b, c) = berth();
    let pod_cfg = b.pod_config("bad-create");
    let pod = c.run_pod(&pod_cfg).await.unwrap();
    let mut rt = c.rt.clone();
    let r = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: None,
            sandbox_config: Some(pod_cfg.clone()),
        })
        .await;
    assert_code(r, Code::InvalidArgument, "no config");
    let mut no_meta = container_config("x", &b.busybox(), &["true"]);
    no_meta.metadata = None;
    assert_code(
        c.create_container(&pod, &no_meta, &pod_cfg).await,
        Code::InvalidArgument,
        "no metadata",
    );
    let mut no_image = container_config("noimg", &b.busybox(), &["true"]);
    no_image.image = None;
    assert_code(
        c.create_container(&pod, &no_image, &pod_cfg).await,
        Code::InvalidArgument,
        "no image",
    );
    let unknown_pod = "00000000000000000000000000000000000000000000000000000000deadbeef";
    assert_code(
        c.create_container(
            unknown_pod,
            &container_config("y", &b.busybox(), &["true"]),
            &pod_cfg,
        )
        .await,
        Code::NotFound,
        "unknown pod",
    );
    // An image that was never pulled.
    let missing = container_config("missing", "berth-test.local/never-pulled:1", &["true"]);
    let s = c
        .create_container(&pod, &missing, &pod_cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(
            s.code(),
            Code::NotFound | Code::FailedPrecondition | Code::InvalidArgument
        ),
        "missing image: {s:?}"
    );
    // A stopped pod takes no new containers.
    c.stop_pod(&pod).await.unwrap();
    let late = container_config("late", &b.busybox(), &["true"]);
    assert!(
        c.create_container(&pod, &late, &pod_cfg).await.is_err(),
        "CreateContainer in a stopped pod succeeded"
    );
    c.cleanup_pod(&pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_container_name_twice_is_already_exists() {
    let (b, c) = berth();
    let pod_cfg = b.pod_config("ctr-twice");
    let pod = c.run_pod(&pod_cfg).await.unwrap();
    let cfg = container_config("dup", &b.busybox(), &["sleep", "1000000"]);
    let first = c.create_container(&pod, &cfg, &pod_cfg).await.unwrap();
    assert_code(
        c.create_container(&pod, &cfg, &pod_cfg).await,
        Code::AlreadyExists,
        "second create",
    );
    // Once the first is removed the name is free again.
    c.remove(&first).await.unwrap();
    let again = c.create_container(&pod, &cfg, &pod_cfg).await.unwrap();
    assert_ne!(first, again);
    c.cleanup_pod(&pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_containers_filters() {
    let (b, c) = berth();
    let pod_cfg = b.pod_config("ctr-list");
    let pod = c.run_pod(&pod_cfg).await.unwrap();
    let mut run_cfg = container_config("runs", &b.busybox(), &["sleep", "1000000"]);
    run_cfg.labels.insert("role".into(), "runner".into());
    let running = c.create_started(&pod, &run_cfg, &pod_cfg).await.unwrap();
    let mut idle_cfg = container_config("idle", &b.busybox(), &["true"]);
    idle_cfg.labels.insert("role".into(), "idle".into());
    let created = c.create_container(&pod, &idle_cfg, &pod_cfg).await.unwrap();

    let in_pod = c
        .list_containers(Some(cri::ContainerFilter {
            pod_sandbox_id: pod.clone(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let mut ids: Vec<&String> = in_pod.iter().map(|x| &x.id).collect();
    ids.sort();
    let mut want = vec![&running, &created];
    want.sort();
    assert_eq!(ids, want);

    let state = |s: ContainerState| cri::ContainerFilter {
        pod_sandbox_id: pod.clone(),
        state: Some(cri::ContainerStateValue { state: s as i32 }),
        ..Default::default()
    };
    let r = c
        .list_containers(Some(state(ContainerState::ContainerRunning)))
        .await
        .unwrap();
    assert_eq!(r.iter().map(|x| &x.id).collect::<Vec<_>>(), vec![&running]);
    let r = c
        .list_containers(Some(state(ContainerState::ContainerCreated)))
        .await
        .unwrap();
    assert_eq!(r.iter().map(|x| &x.id).collect::<Vec<_>>(), vec![&created]);

    let by_label = c
        .list_containers(Some(cri::ContainerFilter {
            pod_sandbox_id: pod.clone(),
            label_selector: labels(&[("role", "idle")]),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(
        by_label.iter().map(|x| &x.id).collect::<Vec<_>>(),
        vec![&created]
    );
    let by_prefix = c
        .list_containers(Some(cri::ContainerFilter {
            id: running[..12].to_string(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(
        by_prefix.iter().map(|x| &x.id).collect::<Vec<_>>(),
        vec![&running]
    );
    let nothing = c
        .list_containers(Some(cri::ContainerFilter {
            pod_sandbox_id: pod.clone(),
            label_selector: labels(&[("role", "nobody")]),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(nothing.is_empty());
    c.cleanup_pod(&pod).await;
}

/// `sleep` as pid 1 ignores SIGTERM: the stop timeout must end in SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_timeout_ends_in_sigkill() {
    let (b, c) = berth();
    let p = pod_with(
        &b,
        &c,
        b.pod_config("sigkill"),
        "stubborn",
        &["sleep", "1000000"],
    )
    .await;
    let t = Instant::now();
    c.stop(&p.ctr, 2).await.unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "stopped after {took:?}, before the timeout"
    );
    assert!(took < Duration::from_secs(12), "stop took {took:?}");
    let st = c.container_status(&p.ctr).await.unwrap();
    assert_eq!(st.state, ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 137, "{st:?}");
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_sigterm_first() {
    let (b, c) = berth();
    let script = "trap 'exit 0' TERM; while :; do sleep 0.1; done";
    let p = pod_with(
        &b,
        &c,
        b.pod_config("sigterm"),
        "polite",
        &["sh", "-c", script],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    c.stop(&p.ctr, 30).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    let st = c.container_status(&p.ctr).await.unwrap();
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
    c.cleanup_pod(&p.pod).await;
}

/// The image says `STOPSIGNAL SIGUSR1`: StopContainer sends that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_uses_the_image_stopsignal() {
    let (b, c) = berth();
    let pod_cfg = b.pod_config("stopsignal");
    let pod = c.run_pod(&pod_cfg).await.unwrap();
    let script = "trap 'exit 42' USR1; trap '' TERM; while :; do sleep 0.1; done";
    let cfg = container_config("usr1", &b.image(BUSYBOX_STOPSIGNAL), &["sh", "-c", script]);
    let id = c.create_started(&pod, &cfg, &pod_cfg).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    c.stop(&id, 30).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    let st = c.container_status(&id).await.unwrap();
    assert_eq!(st.exit_code, 42, "STOPSIGNAL not used: {st:?}");
    c.cleanup_pod(&pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_memory_limit_is_oom_killed() {
    let (b, c) = berth();
    let pod_cfg = b.pod_config("oom");
    let pod = c.run_pod(&pod_cfg).await.unwrap();
    let mut cfg = container_config("hog", &b.busybox(), &["tail", "/dev/zero"]);
    cfg.linux.as_mut().unwrap().resources = Some(cri::LinuxContainerResources {
        memory_limit_in_bytes: 16 << 20,
        ..Default::default()
    });
    let id = c.create_started(&pod, &cfg, &pod_cfg).await.unwrap();
    let st = c
        .wait_state(
            &id,
            ContainerState::ContainerExited,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(st.reason, "OOMKilled", "{st:?}");
    assert_eq!(st.exit_code, 137);
    let limit = st
        .resources
        .and_then(|r| r.linux)
        .map(|l| l.memory_limit_in_bytes);
    assert_eq!(limit, Some(16 << 20), "resources not reported");
    c.cleanup_pod(&pod).await;
}

/// The host-side memory cgroup of the process whose command line has `marker`.
fn memory_limit_of(marker: &str) -> u64 {
    let pid = host_pid_with(marker).unwrap_or_else(|| panic!("no process with {marker}"));
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cg
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            ctrls
                .split(',')
                .any(|x| x == "memory")
                .then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no memory cgroup in {cg}"));
    let file = format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes");
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_container_resources_changes_the_cgroup() {
    let (b, c) = berth();
    let marker = unique_seconds();
    let pod_cfg = b.pod_config("update");
    let pod = c.run_pod(&pod_cfg).await.unwrap();
    let mut cfg = container_config("res", &b.busybox(), &["sleep", &marker]);
    cfg.linux.as_mut().unwrap().resources = Some(cri::LinuxContainerResources {
        memory_limit_in_bytes: 64 << 20,
        cpu_shares: 512,
        ..Default::default()
    });
    let id = c.create_started(&pod, &cfg, &pod_cfg).await.unwrap();
    assert_eq!(memory_limit_of(&format!("sleep {marker}")), 64 << 20);
    let new = cri::LinuxContainerResources {
        memory_limit_in_bytes: 96 << 20,
        cpu_shares: 256,
        ..Default::default()
    };
    c.rt.clone()
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            linux: Some(new),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(memory_limit_of(&format!("sleep {marker}")), 96 << 20);
    let st = c.container_status(&id).await.unwrap();
    let linux = st.resources.and_then(|r| r.linux).unwrap();
    assert_eq!(linux.memory_limit_in_bytes, 96 << 20);
    assert_eq!(linux.cpu_shares, 256);
    c.cleanup_pod(&pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_stats_are_non_zero_and_listed_with_filters() {
    let (b, c) = berth();
    let script = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 1000000";
    let p = pod_with(
        &b,
        &c,
        b.pod_config("ctr-stats"),
        "busy",
        &["sh", "-c", script],
    )
    .await;
    let stats = eventually(Duration::from_secs(30), || async {
        let s =
            c.rt.clone()
                .container_stats(cri::ContainerStatsRequest {
                    container_id: p.ctr.clone(),
                })
                .await
                .ok()?
                .into_inner()
                .stats?;
        let cpu = s.cpu.as_ref()?.usage_core_nano_seconds.as_ref()?.value;
        (cpu > 10_000_000).then_some(s)
    })
    .await
    .expect("container CPU usage stayed under 10ms");
    assert_eq!(stats.attributes.as_ref().unwrap().id, p.ctr);
    assert_eq!(
        stats
            .attributes
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .name,
        "busy"
    );
    let mem = stats.memory.as_ref().unwrap();
    assert!(mem.working_set_bytes.unwrap().value > 0);
    assert!(mem.timestamp > 0);
    assert!(stats.writable_layer.is_some(), "no writable layer usage");

    let by_pod =
        c.rt.clone()
            .list_container_stats(cri::ListContainerStatsRequest {
                filter: Some(cri::ContainerStatsFilter {
                    pod_sandbox_id: p.pod.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .stats;
    assert_eq!(by_pod.len(), 1, "{by_pod:?}");
    let by_label =
        c.rt.clone()
            .list_container_stats(cri::ListContainerStatsRequest {
                filter: Some(cri::ContainerStatsFilter {
                    id: p.ctr.clone(),
                    label_selector: labels(&[("conformance/container", "other")]),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .stats;
    assert!(by_label.is_empty(), "{by_label:?}");
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_args_env_and_workdir_reach_the_process() {
    let (b, c) = berth();
    let pod_cfg = b.pod_config("spec");
    let pod = c.run_pod(&pod_cfg).await.unwrap();
    let mut cfg = container_config("spec", &b.busybox(), &["sh", "-c"]);
    cfg.args = vec![
        "echo \"$FOO $(pwd) $0\"; sleep 1000000".into(),
        "argzero".into(),
    ];
    cfg.envs = vec![cri::KeyValue {
        key: "FOO".into(),
        value: "from-cri".into(),
    }];
    cfg.working_dir = "/tmp".into();
    let id = c.create_started(&pod, &cfg, &pod_cfg).await.unwrap();
    let ok = wait_log_line(
        &log_path(&pod_cfg, "spec"),
        "stdout",
        "from-cri /tmp argzero",
        Duration::from_secs(10),
    )
    .await;
    assert!(ok, "{:?}", parse_log(&log_path(&pod_cfg, "spec")));
    let env = c.exec_ok(&id, &["env"]).await.unwrap();
    assert!(env.contains("FOO=from-cri"), "{env}");
    assert!(
        env.contains("PATH=/usr/local/sbin"),
        "image env missing: {env}"
    );
    c.cleanup_pod(&pod).await;
}
