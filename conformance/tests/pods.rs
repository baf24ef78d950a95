//! Pod sandboxes: RunPodSandbox, PodSandboxStatus, ListPodSandbox and its
//! filters, StopPodSandbox, RemovePodSandbox, PodSandboxStats,
//! ListPodSandboxStats; negatives and idempotence; namespace modes
//! (host network, shared PID namespace).
#![allow(clippy::unwrap_used)]

mod common;

use berth_conformance::client::{container_config, labels, match_pod_namespaces};
use berth_proto::cri;
use common::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle_status_and_idempotent_stop_remove() {
    let (b, c) = berth();
    let config = b.pod_config("lifecycle");
    let before = chrono::Utc::now().timestamp_nanos_opt().unwrap();
    let id = c.run_pod(&config).await.unwrap();
    assert!(!id.is_empty());

    let resp = c.pod_status(&id, true).await.unwrap();
    let st = resp.status.clone().unwrap();
    assert_eq!(st.id, id);
    assert_eq!(st.metadata, config.metadata);
    assert_eq!(st.state, cri::PodSandboxState::SandboxReady as i32);
    assert!(
        st.created_at >= before,
        "created_at {} < {before}",
        st.created_at
    );
    assert_eq!(st.labels, config.labels);
    assert_eq!(st.annotations, config.annotations);
    let ip: std::net::Ipv4Addr = st
        .network
        .as_ref()
        .unwrap()
        .ip
        .parse()
        .unwrap_or_else(|e| panic!("pod IP {:?}: {e}", st.network));
    let prefix = b.net.subnet.rsplit_once('.').unwrap().0;
    assert!(
        ip.to_string().starts_with(prefix),
        "{ip} not in {}",
        b.net.subnet
    );
    let ns = st.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
    assert_eq!(ns.pid, cri::NamespaceMode::Container as i32);
    assert_eq!(ns.ipc, cri::NamespaceMode::Pod as i32);
    assert!(
        !resp.info.is_empty(),
        "verbose PodSandboxStatus has no info"
    );

    c.stop_pod(&id).await.unwrap();
    let st = c.pod_status(&id, false).await.unwrap().status.unwrap();
    assert_eq!(st.state, cri::PodSandboxState::SandboxNotready as i32);
    // Stopping again is fine, as the kubelet expects.
    c.stop_pod(&id).await.unwrap();
    c.remove_pod(&id).await.unwrap();
    assert_code(
        c.pod_status(&id, false).await,
        Code::NotFound,
        "status after remove",
    );
    c.remove_pod(&id).await.unwrap();
    let listed = c
        .list_pods(Some(cri::PodSandboxFilter {
            id: id.clone(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(listed.is_empty(), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_without_stop_stops_the_pod_and_its_containers() {
    let (b, c) = berth();
    let p = sleeping_pod(&b, &c, "rm-running").await;
    c.remove_pod(&p.pod).await.unwrap();
    assert_code(c.pod_status(&p.pod, false).await, Code::NotFound, "pod");
    assert_code(
        c.container_status(&p.ctr).await,
        Code::NotFound,
        "container",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pod_ids_are_not_found() {
    let (_b, c) = berth();
    let unknown = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_code(c.pod_status(unknown, false).await, Code::NotFound, "status");
    let r =
        c.rt.clone()
            .pod_sandbox_stats(cri::PodSandboxStatsRequest {
                pod_sandbox_id: unknown.into(),
            })
            .await;
    assert_code(r, Code::NotFound, "PodSandboxStats");
    // Removing what does not exist succeeds (already removed); stopping it
    // is either fine or NotFound, never another error.
    c.remove_pod(unknown).await.unwrap();
    if let Err(s) = c.stop_pod(unknown).await {
        assert_eq!(s.code(), Code::NotFound, "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_run_requests_are_invalid_argument() {
    let (b, c) = berth();
    let r =
        c.rt.clone()
            .run_pod_sandbox(cri::RunPodSandboxRequest::default())
            .await;
    assert_code(r, Code::InvalidArgument, "no config");
    let mut no_meta = b.pod_config("no-meta");
    no_meta.metadata = None;
    assert_code(
        c.run_pod(&no_meta).await,
        Code::InvalidArgument,
        "no metadata",
    );
    let mut no_name = b.pod_config("x");
    no_name.metadata.as_mut().unwrap().name.clear();
    assert_code(
        c.run_pod(&no_name).await,
        Code::InvalidArgument,
        "empty name",
    );
    let handler = b.pod_config("handler");
    let r =
        c.rt.clone()
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(handler),
                runtime_handler: "no-such-handler".into(),
            })
            .await;
    let s = r.unwrap_err();
    assert!(
        matches!(s.code(), Code::InvalidArgument | Code::NotFound),
        "unknown runtime handler: {s:?}"
    );
    let s = c.pod_status("", false).await.unwrap_err();
    assert!(
        matches!(s.code(), Code::InvalidArgument | Code::NotFound),
        "empty id: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_pod_metadata_twice_is_already_exists() {
    let (b, c) = berth();
    let config = b.pod_config("twice");
    let id = c.run_pod(&config).await.unwrap();
    assert_code(c.run_pod(&config).await, Code::AlreadyExists, "second run");
    // The next attempt of the same pod is a different sandbox.
    let mut next = config.clone();
    next.metadata.as_mut().unwrap().attempt = 1;
    c.stop_pod(&id).await.unwrap();
    let id2 = c.run_pod(&next).await.unwrap();
    assert_ne!(id, id2);
    c.cleanup_pod(&id).await;
    c.cleanup_pod(&id2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pods_filters_by_id_state_and_labels() {
    let (b, c) = berth();
    let mut a_cfg = b.pod_config("list-a");
    a_cfg.labels.insert("tier".into(), "front".into());
    let mut b_cfg = b.pod_config("list-b");
    b_cfg.labels.insert("tier".into(), "back".into());
    let a = c.run_pod(&a_cfg).await.unwrap();
    let bb = c.run_pod(&b_cfg).await.unwrap();
    c.stop_pod(&bb).await.unwrap();

    let all = c.list_pods(None).await.unwrap();
    assert!(all.iter().any(|p| p.id == a) && all.iter().any(|p| p.id == bb));
    let item = all.iter().find(|p| p.id == a).unwrap();
    assert_eq!(item.metadata, a_cfg.metadata);
    assert_eq!(item.labels, a_cfg.labels);
    assert_eq!(item.annotations, a_cfg.annotations);

    let by_id = c
        .list_pods(Some(cri::PodSandboxFilter {
            id: a.clone(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(by_id.iter().map(|p| &p.id).collect::<Vec<_>>(), vec![&a]);

    // Truncated ids are accepted as prefixes, as crictl sends them.
    let by_prefix = c
        .list_pods(Some(cri::PodSandboxFilter {
            id: a[..12].to_string(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(by_prefix.len(), 1, "{by_prefix:?}");

    let uid_a = &a_cfg.metadata.as_ref().unwrap().uid;
    let uid_b = &b_cfg.metadata.as_ref().unwrap().uid;
    let ready = c
        .list_pods(Some(cri::PodSandboxFilter {
            state: Some(cri::PodSandboxStateValue {
                state: cri::PodSandboxState::SandboxReady as i32,
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(ready.iter().any(|p| p.id == a));
    assert!(ready.iter().all(|p| p.id != bb));
    assert!(ready
        .iter()
        .all(|p| p.state == cri::PodSandboxState::SandboxReady as i32));

    let back = c
        .list_pods(Some(cri::PodSandboxFilter {
            label_selector: labels(&[("tier", "back"), ("conformance/uid", uid_b)]),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(back.iter().map(|p| &p.id).collect::<Vec<_>>(), vec![&bb]);
    let none = c
        .list_pods(Some(cri::PodSandboxFilter {
            label_selector: labels(&[("tier", "back"), ("conformance/uid", uid_a)]),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
    c.cleanup_pod(&a).await;
    c.cleanup_pod(&bb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_stats_cover_the_pod_and_its_containers() {
    let (b, c) = berth();
    let p = pod_with(
        &b,
        &c,
        b.pod_config("stats"),
        "busy",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 1000000",
        ],
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let stats =
        c.rt.clone()
            .pod_sandbox_stats(cri::PodSandboxStatsRequest {
                pod_sandbox_id: p.pod.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap();
    assert_eq!(stats.attributes.as_ref().unwrap().id, p.pod);
    let linux = stats.linux.unwrap();
    let cpu = linux.cpu.unwrap().usage_core_nano_seconds.unwrap().value;
    assert!(cpu > 0, "pod cpu usage is 0");
    let mem = linux.memory.unwrap().working_set_bytes.unwrap().value;
    assert!(mem > 0, "pod working set is 0");
    // sh (and nothing else yet): at least one process.
    let procs = linux.process.as_ref().expect("pod process usage");
    assert!(
        procs.process_count.as_ref().is_some_and(|n| n.value >= 1),
        "{procs:?}"
    );
    // The pod's own namespace: its CNI interface, never the host's.
    let net = linux.network.expect("pod network usage");
    let eth0 = net.default_interface.expect("default interface");
    assert_eq!(eth0.name, "eth0");
    assert!(
        eth0.rx_bytes.is_some() && eth0.tx_bytes.is_some(),
        "{eth0:?}"
    );
    assert!(
        net.interfaces.iter().all(|i| i.name != "lo"),
        "{:?}",
        net.interfaces
    );
    assert!(
        linux
            .containers
            .iter()
            .any(|s| s.attributes.as_ref().map(|a| a.id.as_str()) == Some(p.ctr.as_str())),
        "container missing from pod stats: {:?}",
        linux.containers
    );

    let uid = p.config.metadata.as_ref().unwrap().uid.clone();
    let listed =
        c.rt.clone()
            .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
                filter: Some(cri::PodSandboxStatsFilter {
                    label_selector: labels(&[("conformance/uid", &uid)]),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .stats;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].attributes.as_ref().unwrap().id, p.pod);
    let by_id =
        c.rt.clone()
            .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
                filter: Some(cri::PodSandboxStatsFilter {
                    id: p.pod.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .stats;
    assert_eq!(by_id.len(), 1);
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_and_etc_files_come_from_the_pod_config() {
    let (b, c) = berth();
    let mut config = b.pod_config("named-pod");
    config.dns_config = Some(cri::DnsConfig {
        servers: vec!["127.0.0.53".into()],
        searches: vec!["conformance.test".into()],
        options: vec!["ndots:2".into()],
    });
    let p = pod_with(&b, &c, config, "probe", &["sleep", "1000000"]).await;
    assert_eq!(
        c.exec_ok(&p.ctr, &["hostname"]).await.unwrap().trim(),
        "named-pod"
    );
    let resolv = c
        .exec_ok(&p.ctr, &["cat", "/etc/resolv.conf"])
        .await
        .unwrap();
    assert!(resolv.contains("nameserver 127.0.0.53"), "{resolv}");
    assert!(resolv.contains("search conformance.test"), "{resolv}");
    assert!(resolv.contains("options ndots:2"), "{resolv}");
    let hosts = c.exec_ok(&p.ctr, &["cat", "/etc/hosts"]).await.unwrap();
    assert!(hosts.contains("localhost"), "{hosts}");
    c.cleanup_pod(&p.pod).await;
}

/// The namespace options of a pod config made by `pod_config`.
fn pod_namespaces(config: &mut cri::PodSandboxConfig) -> &mut cri::NamespaceOption {
    config
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
}

fn ns_link(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_network_pod_uses_the_host_netns() {
    let (b, c) = berth();
    let mut config = b.pod_config("hostnet");
    pod_namespaces(&mut config).network = cri::NamespaceMode::Node as i32;
    let p = pod_with(&b, &c, config, "probe", &["sleep", "1000000"]).await;
    let inside = c
        .exec_ok(&p.ctr, &["readlink", "/proc/self/ns/net"])
        .await
        .unwrap();
    assert_eq!(inside.trim(), ns_link("net"));
    let st = c.pod_status(&p.pod, false).await.unwrap().status.unwrap();
    let mode = st
        .linux
        .unwrap()
        .namespaces
        .unwrap()
        .options
        .unwrap()
        .network;
    assert_eq!(mode, cri::NamespaceMode::Node as i32);

    // A pod-network pod, by contrast, has its own netns.
    let q = sleeping_pod(&b, &c, "podnet").await;
    let other = c
        .exec_ok(&q.ctr, &["readlink", "/proc/self/ns/net"])
        .await
        .unwrap();
    assert_ne!(other.trim(), ns_link("net"));
    c.cleanup_pod(&p.pod).await;
    c.cleanup_pod(&q.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_pid_namespace_pod_sees_its_other_containers() {
    let (b, c) = berth();
    let mut config = b.pod_config("sharedpid");
    pod_namespaces(&mut config).pid = cri::NamespaceMode::Pod as i32;
    let marker = unique_seconds();
    let p = pod_with(&b, &c, config, "first", &["sleep", &marker]).await;
    let mut second_cfg = container_config("second", &b.busybox(), &["sleep", "1000000"]);
    match_pod_namespaces(&mut second_cfg, &p.config);
    let second = c
        .create_started(&p.pod, &second_cfg, &p.config)
        .await
        .unwrap();
    let a = c
        .exec_ok(&p.ctr, &["readlink", "/proc/self/ns/pid"])
        .await
        .unwrap();
    let bb = c
        .exec_ok(&second, &["readlink", "/proc/self/ns/pid"])
        .await
        .unwrap();
    assert_eq!(
        a, bb,
        "containers of a shared-PID pod are in different PID namespaces"
    );
    assert_ne!(a.trim(), ns_link("pid"));
    let ps = c.exec_ok(&second, &["ps", "-o", "args"]).await.unwrap();
    assert!(
        ps.contains(&format!("sleep {marker}")),
        "second cannot see first:\n{ps}"
    );
    // The pod's own init is pid 1, not a container's process.
    let init = c
        .exec_ok(&second, &["cat", "/proc/1/cmdline"])
        .await
        .unwrap();
    assert!(
        !init.contains(&marker),
        "first container is pid 1: {init:?}"
    );
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_pid_namespace_pod_isolates_containers() {
    let (b, c) = berth();
    let marker = unique_seconds();
    let p = pod_with(&b, &c, b.pod_config("ownpid"), "first", &["sleep", &marker]).await;
    let second = c
        .create_started(
            &p.pod,
            &container_config("second", &b.busybox(), &["sleep", "1000000"]),
            &p.config,
        )
        .await
        .unwrap();
    let ps = c.exec_ok(&second, &["ps", "-o", "args"]).await.unwrap();
    assert!(!ps.contains(&marker), "PID namespaces leak:\n{ps}");
    let one = c
        .exec_ok(&p.ctr, &["cat", "/proc/1/cmdline"])
        .await
        .unwrap();
    assert!(
        one.contains(&marker),
        "container's process is not pid 1: {one:?}"
    );
    // Same pod: same network and IPC namespaces.
    for kind in ["net", "ipc", "uts"] {
        let path = format!("/proc/self/ns/{kind}");
        let x = c.exec_ok(&p.ctr, &["readlink", &path]).await.unwrap();
        let y = c.exec_ok(&second, &["readlink", &path]).await.unwrap();
        assert_eq!(
            x, y,
            "{kind} namespace differs between containers of one pod"
        );
    }
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_pod_stops_its_containers_and_keeps_their_status() {
    let (b, c) = berth();
    let p = sleeping_pod(&b, &c, "stop-kills").await;
    c.stop_pod(&p.pod).await.unwrap();
    let st = c.container_status(&p.ctr).await.unwrap();
    assert_eq!(st.state, ContainerState::ContainerExited as i32, "{st:?}");
    assert!(st.finished_at > 0);
    assert!(c.exec_sync(&p.ctr, &["true"], 5).await.is_err());
    // Still listed in the pod until the pod is removed.
    let listed = c
        .list_containers(Some(cri::ContainerFilter {
            pod_sandbox_id: p.pod.clone(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    c.remove_pod(&p.pod).await.unwrap();
}

/// `hostUsers: false`: the pod gets its own user namespace with the
/// kubelet's mappings; its containers run as root inside it, mapped to an
/// unprivileged host uid, and still have the pod's network. The rootfs and
/// volumes are id-mapped: image files and host files owned by host root show
/// as root inside, the pod's writes to a hostPath volume land as host root,
/// and its writes to the rootfs keep the pod's host uid in the writable layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_namespace_pod_maps_root_to_an_unprivileged_host_id() {
    let (b, c) = berth();
    let mut config = b.pod_config("userns");
    let map = |host_id| cri::IdMapping {
        host_id,
        container_id: 0,
        length: 65536,
    };
    pod_namespaces(&mut config).userns_options = Some(cri::UserNamespace {
        mode: cri::NamespaceMode::Pod as i32,
        uids: vec![map(1_000_000_000)],
        gids: vec![map(1_000_000_000)],
    });
    let vol = tempfile::tempdir().unwrap();
    std::fs::write(vol.path().join("host-file"), "h").unwrap();
    let pod = c.run_pod(&config).await.unwrap();
    let mut cc = container_config("inside", &b.busybox(), &["sleep", "1000000"]);
    match_pod_namespaces(&mut cc, &config);
    cc.mounts = vec![cri::Mount {
        container_path: "/vol".into(),
        host_path: vol.path().to_string_lossy().into_owned(),
        ..Default::default()
    }];
    let ctr = c.create_started(&pod, &cc, &config).await.unwrap();
    let p = PodWith { config, pod, ctr };
    let owners = c
        .exec_ok(
            &p.ctr,
            &[
                "sh",
                "-c",
                "stat -c %u:%g /bin/busybox /vol/host-file && echo x > /vol/from-pod && echo y > /from-pod",
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        owners.lines().collect::<Vec<_>>(),
        ["0:0", "0:0"],
        "image file and host file owners seen inside: {owners:?}"
    );
    let owner = |path: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        (m.uid(), m.gid())
    };
    assert_eq!(owner(&vol.path().join("from-pod")), (0, 0));
    let upper = b.fp.root.join("root/containers").join(&p.ctr).join("upper");
    assert_eq!(
        owner(&upper.join("from-pod")),
        (1_000_000_000, 1_000_000_000)
    );
    let uid_map = c
        .exec_ok(&p.ctr, &["cat", "/proc/self/uid_map"])
        .await
        .unwrap();
    let fields: Vec<&str> = uid_map.split_whitespace().collect();
    assert_eq!(fields, ["0", "1000000000", "65536"], "{uid_map:?}");
    assert_eq!(c.exec_ok(&p.ctr, &["id", "-u"]).await.unwrap().trim(), "0");
    assert_ne!(
        c.exec_ok(&p.ctr, &["readlink", "/proc/self/ns/user"])
            .await
            .unwrap()
            .trim(),
        ns_link("user")
    );
    // The pod network works from inside the user namespace.
    let ip = c.pod_status(&p.pod, false).await.unwrap().status.unwrap();
    let ip = ip.network.unwrap().ip;
    let addrs = c.exec_ok(&p.ctr, &["ip", "-4", "addr"]).await.unwrap();
    assert!(addrs.contains(&ip), "pod IP {ip} not in {addrs}");
    // On the host the container's processes run as the mapped uid.
    let st = c.container_status_full(&p.ctr, true).await.unwrap();
    let pid = st
        .info
        .get("info")
        .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
        .and_then(|v| v["pid"].as_i64())
        .unwrap_or_else(|| panic!("no pid in verbose ContainerStatus info: {:?}", st.info));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.contains("1000000000"), "{uid_line}");
    c.cleanup_pod(&p.pod).await;
}
