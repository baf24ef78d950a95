//! Pods and containers through berthd and real berth-shims (root): the
//! lifecycle with CRI logs, a kill -9 of berthd with containers running,
//! and 20 pods started in parallel.

use std::time::{Duration, Instant};

use berth_proto::cri;
use berth_proto::cri::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::pods_env::*;
use crate::support::stop_and_remove_pod;

async fn pod_status(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> Result<cri::PodSandboxStatus, tonic::Status> {
    rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
        pod_sandbox_id: id.to_string(),
        verbose: true,
    })
    .await
    .map(|r| r.into_inner().status.unwrap())
}

/// Waits until `path` holds CRI log lines for both `out` and `err`.
async fn wait_log(path: &std::path::Path, out: &str, err: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(out) && text.contains(err) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "log {} has {text:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_and_container_lifecycle_with_cri_logs() {
    let env = PodEnv::new().await;
    let mut rt = env.rt().await;

    let status = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let conds = status.status.unwrap().conditions;
    assert!(conds.iter().all(|c| c.status), "{conds:?}");

    let pod_cfg = env.pod_config("life");
    let pod = run_pod(&mut rt, &pod_cfg).await.unwrap();
    assert_eq!(pod.len(), 64);
    // The same name, namespace, uid and attempt is taken.
    let dup = run_pod(&mut rt, &pod_cfg).await.unwrap_err();
    assert_eq!(dup.code(), tonic::Code::AlreadyExists, "{dup:?}");

    let st = pod_status(&mut rt, &pod).await.unwrap();
    assert_eq!(st.state, cri::PodSandboxState::SandboxReady as i32);
    let ip = st.network.unwrap().ip;
    assert!(env.in_subnet(&ip), "pod ip {ip}");
    let netns = env.dirs.state().join("netns").join(&pod);
    assert!(netns.exists());

    // A long-running container writing to both streams.
    let main = start_container(
        &mut rt,
        &pod,
        env.container_config(
            "main",
            &[
                "sh",
                "-c",
                "echo hello-out; echo hello-err >&2; trap '' TERM; exec sleep 1000",
            ],
        ),
        &pod_cfg,
    )
    .await
    .unwrap();
    let log_path = env.logs_dir("life").join("main/0.log");
    let text = wait_log(&log_path, "hello-out", "hello-err").await;
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.iter().any(|l| l.ends_with(" stdout F hello-out")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.ends_with(" stderr F hello-err")),
        "{lines:?}"
    );
    for l in &lines {
        let ts = l.split(' ').next().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{l}");
    }
    let st = container_status(&mut rt, &main).await.unwrap();
    assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
    assert_eq!(st.log_path, log_path.display().to_string());
    assert!(st.image_id.starts_with("sha256:"));
    assert!(st.started_at > 0);

    // ExecSync: output, exit code, hostname of the pod.
    let r = exec(
        &mut rt,
        &main,
        &["sh", "-c", "echo exec-out; echo exec-err >&2; exit 3"],
    )
    .await;
    assert_eq!(r.stdout, b"exec-out\n");
    assert_eq!(r.stderr, b"exec-err\n");
    assert_eq!(r.exit_code, 3);
    let r = exec(&mut rt, &main, &["hostname"]).await;
    assert_eq!(r.stdout, b"life\n");

    // Containers that exit by themselves.
    let ok = start_container(
        &mut rt,
        &pod,
        env.container_config("ok", &["true"]),
        &pod_cfg,
    )
    .await
    .unwrap();
    let failing = start_container(
        &mut rt,
        &pod,
        env.container_config("fail", &["sh", "-c", "exit 7"]),
        &pod_cfg,
    )
    .await
    .unwrap();
    let st = wait_exited(&mut rt, &ok).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
    let st = wait_exited(&mut rt, &failing).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (7, "Error"));
    assert!(st.finished_at >= st.started_at);

    // Filters.
    let listed = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod.clone(),
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, main);

    // Stats of the running container.
    let stats = rt
        .container_stats(cri::ContainerStatsRequest {
            container_id: main.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    assert!(stats
        .memory
        .and_then(|m| m.usage_bytes)
        .is_some_and(|v| v.value > 0));

    // Stop: the process ignores SIGTERM, so SIGKILL after the timeout.
    let t0 = Instant::now();
    rt.stop_container(cri::StopContainerRequest {
        container_id: main.clone(),
        timeout: 2,
    })
    .await
    .unwrap();
    assert!(t0.elapsed() >= Duration::from_secs(2));
    let st = container_status(&mut rt, &main).await.unwrap();
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 137);
    // Idempotent stop and remove; then NotFound.
    rt.stop_container(cri::StopContainerRequest {
        container_id: main.clone(),
        timeout: 0,
    })
    .await
    .unwrap();
    for _ in 0..2 {
        rt.remove_container(cri::RemoveContainerRequest {
            container_id: main.clone(),
        })
        .await
        .unwrap();
    }
    let nf = container_status(&mut rt, &main).await.unwrap_err();
    assert_eq!(nf.code(), tonic::Code::NotFound);
    assert!(!env.dirs.state().join("containers").join(&main).exists());

    for _ in 0..2 {
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    }
    let st = pod_status(&mut rt, &pod).await.unwrap();
    assert_eq!(st.state, cri::PodSandboxState::SandboxNotready as i32);
    assert!(!netns.exists());
    for _ in 0..2 {
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    }
    let nf = pod_status(&mut rt, &pod).await.unwrap_err();
    assert_eq!(nf.code(), tonic::Code::NotFound);
    assert!(!env.dirs.state().join("pods").join(&pod).exists());
    // The pod's containers went with it, and the shim exited.
    let all = rt
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert!(all.is_empty(), "{all:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shim_pids(&env).is_empty() {
        assert!(Instant::now() < deadline, "shim still running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_and_restart_keeps_containers_manageable() {
    let mut env = PodEnv::new().await;
    let mut rt = env.rt().await;
    let pod_cfg = env.pod_config("survivor");
    let pod = run_pod(&mut rt, &pod_cfg).await.unwrap();
    let long = start_container(
        &mut rt,
        &pod,
        env.container_config("long", &["sleep", "1000"]),
        &pod_cfg,
    )
    .await
    .unwrap();
    let short = start_container(
        &mut rt,
        &pod,
        env.container_config("short", &["sh", "-c", "sleep 2; exit 5"]),
        &pod_cfg,
    )
    .await
    .unwrap();

    env.kill9();
    // Leftovers of objects the DB does not know: removed at start-up.
    let ghost = "f".repeat(64);
    let ghost_dirs = [
        env.dirs.root().join("containers").join(&ghost),
        env.dirs.state().join("containers").join(&ghost),
        env.dirs.state().join("pods").join(&ghost),
    ];
    for d in &ghost_dirs {
        std::fs::create_dir_all(d.join("x")).unwrap();
    }
    // `short` exits while berthd is down.
    tokio::time::sleep(Duration::from_secs(4)).await;
    env.start();
    for d in &ghost_dirs {
        assert!(!d.exists(), "{} survived reconciliation", d.display());
    }
    let mut rt = env.rt().await;

    let st = container_status(&mut rt, &long).await.unwrap();
    assert_eq!(
        st.state,
        cri::ContainerState::ContainerRunning as i32,
        "{}",
        env.log()
    );
    let st = container_status(&mut rt, &short).await.unwrap();
    assert_eq!(st.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 5);
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: [("app".to_string(), "survivor".to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].state, cri::PodSandboxState::SandboxReady as i32);

    // Still manageable: exec, then stop.
    let r = exec(&mut rt, &long, &["echo", "alive"]).await;
    assert_eq!(r.stdout, b"alive\n");
    rt.stop_container(cri::StopContainerRequest {
        container_id: long.clone(),
        timeout: 1,
    })
    .await
    .unwrap();
    // sleep dies of the SIGTERM: 128 + 15.
    assert_eq!(wait_exited(&mut rt, &long).await.exit_code, 143);

    // A pod whose shim dies while berthd is down: its running container is
    // reported exited after the restart.
    let pod2_cfg = env.pod_config("orphan");
    let pod2 = run_pod(&mut rt, &pod2_cfg).await.unwrap();
    let c2 = start_container(
        &mut rt,
        &pod2,
        env.container_config("c", &["sleep", "1000"]),
        &pod2_cfg,
    )
    .await
    .unwrap();
    env.kill9();
    let pod2_dir = env.dirs.state().join("pods").join(&pod2);
    for pid in shim_pids(&env) {
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        if cwd.starts_with(&pod2_dir) {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.start();
    let mut rt = env.rt().await;
    let st = container_status(&mut rt, &c2).await.unwrap();
    assert_eq!(
        st.state,
        cri::ContainerState::ContainerExited as i32,
        "{st:?}"
    );
    assert!(!st.reason.is_empty());
    let st = pod_status(&mut rt, &pod2).await.unwrap();
    assert_eq!(st.state, cri::PodSandboxState::SandboxNotready as i32);

    for p in [&pod, &pod2] {
        stop_and_remove_pod(&mut rt, p).await;
    }
    let left = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(left.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_pods_start_in_parallel() {
    let env = PodEnv::new().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut rt = env.rt().await;
        let pod_cfg = env.pod_config(&format!("par{i}"));
        let c_cfg = env.container_config("c", &["sleep", "1000"]);
        tasks.push(tokio::spawn(async move {
            let pod = run_pod(&mut rt, &pod_cfg).await?;
            let c = start_container(&mut rt, &pod, c_cfg, &pod_cfg).await?;
            Ok::<_, tonic::Status>((pod, c))
        }));
    }
    let mut started = Vec::new();
    for t in tasks {
        started.push(t.await.unwrap().unwrap());
    }
    let mut rt = env.rt().await;
    let running = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(running.len(), 20);
    let mut ips = std::collections::HashSet::new();
    for (pod, _) in &started {
        let st = pod_status(&mut rt, pod).await.unwrap();
        assert!(ips.insert(st.network.unwrap().ip));
    }
    let mut tasks = Vec::new();
    for (pod, _) in started {
        let mut rt = env.rt().await;
        tasks.push(tokio::spawn(async move {
            rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await?;
            rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod,
            })
            .await?;
            Ok::<_, tonic::Status>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}
