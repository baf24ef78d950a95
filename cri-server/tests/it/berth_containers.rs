//! berth.v1 Containers, Volumes and System against a real berthd (child
//! process, private CNI bridge, loopback registry with busybox).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use berth_proto::berth::v1 as api;
use berth_proto::berth::v1::containers_client::ContainersClient;
use berth_proto::berth::v1::system_client::SystemClient;
use berth_proto::berth::v1::volumes_client::VolumesClient;
use tonic::transport::Channel;

use crate::pods_env::PodEnv;
use crate::support::connect;

async fn client(env: &PodEnv) -> ContainersClient<Channel> {
    ContainersClient::new(connect(&env.dirs.socket()).await)
}

fn spec(env: &PodEnv, name: &str, cmd: &[&str]) -> api::ContainerSpec {
    api::ContainerSpec {
        image: env.image.clone(),
        name: name.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

async fn create(
    c: &mut ContainersClient<Channel>,
    s: api::ContainerSpec,
) -> api::CreateContainerResponse {
    c.create(api::CreateContainerRequest { spec: Some(s) })
        .await
        .unwrap()
        .into_inner()
}

fn cref(s: &str) -> api::ContainerRef {
    api::ContainerRef {
        container: s.to_string(),
    }
}

async fn start(c: &mut ContainersClient<Channel>, r: &str) {
    c.start(cref(r)).await.unwrap();
}

async fn summary(c: &mut ContainersClient<Channel>, id: &str) -> Option<api::ContainerSummary> {
    c.list(api::ListContainersRequest {
        all: true,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .containers
    .into_iter()
    .find(|s| s.id == id)
}

async fn inspect(c: &mut ContainersClient<Channel>, r: &str) -> serde_json::Value {
    let json = c.inspect(cref(r)).await.unwrap().into_inner().json;
    serde_json::from_str(&json).unwrap()
}

async fn logs(c: &mut ContainersClient<Channel>, r: &str, tail: i64, follow: bool) -> String {
    let mut s = c
        .logs(api::LogsRequest {
            container: r.to_string(),
            follow,
            tail,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = String::new();
    while let Some(e) = s.message().await.unwrap() {
        out.push_str(&String::from_utf8_lossy(&e.data));
    }
    out
}

async fn poll<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tar_file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

async fn copy_to(
    c: &mut ContainersClient<Channel>,
    r: &str,
    dir: &str,
    tar: Vec<u8>,
) -> Result<(), tonic::Status> {
    let msgs = vec![
        api::CopyToRequest {
            part: Some(api::copy_to_request::Part::Target(api::CopyToTarget {
                container: r.to_string(),
                path: dir.to_string(),
                no_overwrite_dir_non_dir: false,
            })),
        },
        api::CopyToRequest {
            part: Some(api::copy_to_request::Part::Data(tar)),
        },
    ];
    c.copy_to(tokio_stream::iter(msgs)).await.map(|_| ())
}

async fn copy_from(
    c: &mut ContainersClient<Channel>,
    r: &str,
    path: &str,
) -> Result<(api::PathStat, Vec<u8>), tonic::Status> {
    let mut s = c
        .copy_from(api::PathRequest {
            container: r.to_string(),
            path: path.to_string(),
        })
        .await?
        .into_inner();
    let mut stat = None;
    let mut data = Vec::new();
    while let Some(m) = s.message().await? {
        match m.part {
            Some(api::copy_from_response::Part::Stat(st)) => stat = Some(st),
            Some(api::copy_from_response::Part::Data(d)) => data.extend(d),
            None => {}
        }
    }
    Ok((stat.unwrap(), data))
}

fn tar_entry(tar: &[u8], name: &str) -> Option<String> {
    let mut a = tar::Archive::new(tar);
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == name {
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            return Some(s);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_in_place_cp_diff_logs_top_wait_rename() {
    let env = PodEnv::new().await;
    let mut c = client(&env).await;
    let loop_cmd = [
        "sh",
        "-c",
        "echo hello; echo oops >&2; while true; do sleep 1; done",
    ];
    let web = create(&mut c, spec(&env, "web", &loop_cmd)).await;
    assert_eq!(web.name, "web");
    // Names are unique; generated ones are docker-like.
    let dup = c
        .create(api::CreateContainerRequest {
            spec: Some(spec(&env, "web", &["true"])),
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), tonic::Code::AlreadyExists, "{dup:?}");
    let anon = create(&mut c, spec(&env, "", &["true"])).await;
    assert!(anon.name.contains('_'), "{}", anon.name);
    let missing = c
        .create(api::CreateContainerRequest {
            spec: Some(api::ContainerSpec {
                image: "nosuch:latest".into(),
                cmd: vec!["true".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert!(
        missing.message().contains("No such image"),
        "{}",
        missing.message()
    );
    let s = summary(&mut c, &web.id).await.unwrap();
    assert_eq!(
        (s.state.as_str(), s.status.as_str()),
        ("created", "Created")
    );

    // Start by id prefix; Resolve agrees.
    start(&mut c, &web.id[..12]).await;
    let res = c.resolve(cref("web")).await.unwrap().into_inner();
    assert_eq!(res.container_id, web.id);
    let s = summary(&mut c, &web.id).await.unwrap();
    assert_eq!(s.state, "running");
    assert!(s.status.starts_with("Up "), "{}", s.status);
    let nf = c.start(cref("nosuch")).await.unwrap_err();
    assert_eq!(nf.code(), tonic::Code::NotFound);
    assert_eq!(nf.message(), "No such container: nosuch");

    // Top lists the shell and its sleep.
    let top = c
        .top(api::TopRequest {
            container: "web".into(),
            ps_args: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(top.titles[1], "PID");
    assert!(
        top.processes
            .iter()
            .any(|p| p.columns[7].contains("while true")),
        "{top:?}"
    );

    // cp in, then out; diff sees it.
    copy_to(
        &mut c,
        "web",
        "/tmp",
        tar_file("note.txt", b"kept across restarts"),
    )
    .await
    .unwrap();
    let (st, data) = copy_from(&mut c, "web", "/tmp/note.txt").await.unwrap();
    assert_eq!(st.name, "note.txt");
    assert_eq!(
        tar_entry(&data, "note.txt").unwrap(),
        "kept across restarts"
    );
    let diff = c.diff(cref("web")).await.unwrap().into_inner().changes;
    assert!(
        diff.iter()
            .any(|ch| ch.kind == "A" && ch.path == "/tmp/note.txt"),
        "{diff:?}"
    );

    // A symlink pointing outside the root: both directions stay inside.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("secret"), b"host secret").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "out", host.path()).unwrap();
    copy_to(&mut c, "web", "/", b.into_inner().unwrap())
        .await
        .unwrap();
    let e = copy_from(&mut c, "web", "/out/secret").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    let e = copy_to(&mut c, "web", "/out", tar_file("planted", b"x"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(!host.path().join("planted").exists());
    let stat = c
        .stat_path(api::PathRequest {
            container: "web".into(),
            path: "/out".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stat.link_target, host.path().display().to_string());

    // Logs: both streams, tail.
    poll("logs", 10, || {
        let mut c = c.clone();
        async move { logs(&mut c, "web", -1, false).await.contains("oops") }
    })
    .await;
    let all = logs(&mut c, "web", -1, false).await;
    assert!(all.contains("hello\n") && all.contains("oops\n"), "{all:?}");
    assert_eq!(logs(&mut c, "web", 1, false).await.lines().count(), 1);

    // Removing a running container needs force.
    let e = c
        .remove(api::RemoveContainerRequest {
            container: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("stop it first or use --force"),
        "{}",
        e.message()
    );

    // Stop, start again in place: same id, the file is still there.
    let pid1 = inspect(&mut c, "web").await["State"]["Pid"]
        .as_u64()
        .unwrap();
    c.stop(api::StopContainerRequest {
        container: "web".into(),
        timeout: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let s = summary(&mut c, &web.id).await.unwrap();
    assert_eq!(s.state, "exited");
    assert!(s.status.starts_with("Exited (137)"), "{}", s.status);
    let (_, data) = copy_from(&mut c, "web", "/tmp/note.txt").await.unwrap();
    assert!(tar_entry(&data, "note.txt").is_some());
    start(&mut c, "web").await;
    let j = inspect(&mut c, "web").await;
    assert_eq!(j["Id"], web.id);
    assert_eq!(j["State"]["Running"], true);
    assert_ne!(j["State"]["Pid"].as_u64().unwrap(), pid1);
    let (_, data) = copy_from(&mut c, "web", "/tmp/note.txt").await.unwrap();
    assert_eq!(
        tar_entry(&data, "note.txt").unwrap(),
        "kept across restarts"
    );
    c.restart(api::StopContainerRequest {
        container: "web".into(),
        timeout: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(summary(&mut c, &web.id).await.unwrap().state, "running");

    // Kill + Wait give the signal's exit code; rename keeps the id.
    let waiter = {
        let mut c = c.clone();
        tokio::spawn(async move { c.wait(cref("web")).await.unwrap().into_inner().exit_code })
    };
    c.kill(api::KillContainerRequest {
        container: "web".into(),
        signal: "KILL".into(),
    })
    .await
    .unwrap();
    assert_eq!(waiter.await.unwrap(), 137);
    c.rename(api::RenameContainerRequest {
        container: "web".into(),
        new_name: "web2".into(),
    })
    .await
    .unwrap();
    assert_eq!(inspect(&mut c, "web2").await["Name"], "/web2");
    assert_eq!(
        c.inspect(cref("web")).await.unwrap_err().code(),
        tonic::Code::NotFound
    );

    // A missing executable is a FailedPrecondition naming it (the CLI's
    // 127): found missing at create for a PATH lookup.
    let e = c
        .create(api::CreateContainerRequest {
            spec: Some(spec(&env, "bad", &["nosuchcmd"])),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("executable file not found"),
        "{}",
        e.message()
    );
    assert!(c.inspect(cref("bad")).await.is_err());
    // A path is checked inside the container's root at create.
    for (cmd, code, text) in [
        (
            "/no/such/binary",
            tonic::Code::FailedPrecondition,
            "executable file not found",
        ),
        ("/etc", tonic::Code::FailedPrecondition, "permission denied"),
        (
            "/etc/passwd",
            tonic::Code::FailedPrecondition,
            "permission denied",
        ),
    ] {
        let e = c
            .create(api::CreateContainerRequest {
                spec: Some(spec(&env, "bad", &[cmd])),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{cmd}: {e:?}");
        assert!(e.message().contains(text), "{cmd}: {}", e.message());
    }
    // Nothing is left of the refused creates.
    assert!(c.inspect(cref("bad")).await.is_err());

    // Logs follow ends when the container exits.
    let short = create(
        &mut c,
        spec(&env, "short", &["sh", "-c", "echo a; sleep 1; echo b"]),
    )
    .await;
    start(&mut c, &short.id).await;
    let followed = logs(&mut c, "short", -1, true).await;
    assert_eq!(followed, "a\nb\n");
    assert_eq!(
        c.wait(cref("short")).await.unwrap().into_inner().exit_code,
        0
    );

    for r in ["web2", "short", anon.name.as_str()] {
        c.remove(api::RemoveContainerRequest {
            container: r.into(),
            force: true,
            volumes: true,
        })
        .await
        .unwrap();
    }
    assert!(summary(&mut c, &web.id).await.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn ports_volumes_and_network_modes() {
    let env = PodEnv::new().await;
    let mut c = client(&env).await;
    let mut v = VolumesClient::new(connect(&env.dirs.socket()).await);

    // A published port picked by berthd answers on 127.0.0.1.
    let mut s = spec(
        &env,
        "http",
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo page-one > /www/index.html && exec httpd -f -p 80 -h /www",
        ],
    );
    s.ports = vec![api::PortMapping {
        host_ip: "127.0.0.1".into(),
        host_port: 0,
        container_port: 80,
        protocol: "tcp".into(),
    }];
    let http = create(&mut c, s).await;
    start(&mut c, &http.id).await;
    let port = summary(&mut c, &http.id).await.unwrap().ports[0].host_port;
    assert!(port > 0);
    let j = inspect(&mut c, "http").await;
    assert_eq!(
        j["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"],
        port.to_string()
    );
    let mut body = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !body.contains("page-one") {
        assert!(
            Instant::now() < deadline,
            "port {port} never served the page: {body:?}"
        );
        if let Ok(mut sock) = std::net::TcpStream::connect(("127.0.0.1", port as u16)) {
            sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let _ = sock.write_all(b"GET / HTTP/1.0\r\n\r\n");
            body.clear();
            let _ = sock.read_to_string(&mut body);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A named volume survives its container.
    let mut w = spec(&env, "writer", &["sh", "-c", "echo persisted > /data/f"]);
    w.mounts = vec![api::Mount {
        source: "vol1".into(),
        destination: "/data".into(),
        read_only: false,
        kind: "volume".into(),
    }];
    let writer = create(&mut c, w.clone()).await;
    start(&mut c, &writer.id).await;
    assert_eq!(
        c.wait(cref("writer")).await.unwrap().into_inner().exit_code,
        0
    );
    let vol = v
        .inspect(api::VolumeRef {
            name: "vol1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(vol.used_by, vec!["writer".to_string()]);
    let e = v
        .remove(api::RemoveVolumeRequest {
            name: "vol1".into(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    c.remove(api::RemoveContainerRequest {
        container: "writer".into(),
        force: false,
        volumes: true,
    })
    .await
    .unwrap();
    let mut r = w;
    r.name = "reader".into();
    r.cmd = vec!["cat".into(), "/data/f".into()];
    let reader = create(&mut c, r).await;
    start(&mut c, &reader.id).await;
    assert_eq!(
        c.wait(cref("reader")).await.unwrap().into_inner().exit_code,
        0
    );
    assert_eq!(logs(&mut c, "reader", -1, false).await, "persisted\n");

    // --network none: only lo.
    let mut n = spec(&env, "isolated", &["ls", "/sys/class/net"]);
    n.network = "none".into();
    let isolated = create(&mut c, n).await;
    start(&mut c, &isolated.id).await;
    c.wait(cref("isolated")).await.unwrap();
    assert_eq!(logs(&mut c, "isolated", -1, false).await, "lo\n");

    // --init: the command runs under the pod's init (PID 1 reaps orphans),
    // with the pids and memory limits in its cgroup.
    let mut i = spec(
        &env,
        "inited",
        &["sh", "-c", "echo $$; tr '\\0' ' ' < /proc/1/cmdline; echo"],
    );
    i.init = true;
    i.pids_limit = 42;
    i.memory_limit = 64 << 20;
    let inited = create(&mut c, i).await;
    start(&mut c, &inited.id).await;
    c.wait(cref("inited")).await.unwrap();
    let out = logs(&mut c, "inited", -1, false).await;
    let mut lines = out.lines();
    assert_ne!(lines.next(), Some("1"), "{out:?}");
    assert!(
        lines.next().unwrap_or("").contains("__berth_pod_init"),
        "{out:?}"
    );
    let j = inspect(&mut c, "inited").await;
    assert_eq!(j["HostConfig"]["Init"], true);
    assert_eq!(j["HostConfig"]["PidsLimit"], 42);
    let cfg: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            env.dirs
                .state()
                .join("containers")
                .join(&inited.id)
                .join("bundle/config.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["linux"]["resources"]["pids"]["limit"], 42);
    assert_eq!(cfg["linux"]["resources"]["memory"]["limit"], 64 << 20);

    // Volumes list/prune; a volume still used is kept.
    let listed = v
        .list(api::ListVolumesRequest {
            filters: vec!["name=vol1".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .volumes;
    assert_eq!(listed.len(), 1);
    v.create(api::CreateVolumeRequest {
        name: "spare".into(),
        labels: Default::default(),
    })
    .await
    .unwrap();
    let pruned = v
        .prune(api::PruneVolumesRequest { all: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pruned.deleted, vec!["spare".to_string()]);
    for name in ["http", "reader", "isolated", "inited"] {
        c.remove(api::RemoveContainerRequest {
            container: name.into(),
            force: true,
            volumes: true,
        })
        .await
        .unwrap();
    }
    v.remove(api::RemoveVolumeRequest {
        name: "vol1".into(),
        force: false,
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_policies_auto_remove_and_berthd_restart() {
    let mut env = PodEnv::new().await;
    let mut c = client(&env).await;
    let policy = |name: &str, max: u32| {
        Some(api::RestartPolicy {
            name: name.into(),
            maximum_retry_count: max,
        })
    };
    // always: exits are followed by restarts.
    let mut s = spec(&env, "bouncer", &["sh", "-c", "sleep 1; exit 3"]);
    s.restart = policy("always", 0);
    let bouncer = create(&mut c, s).await;
    start(&mut c, &bouncer.id).await;
    // on-failure:2 gives up after two restarts.
    let mut s = spec(&env, "flaky", &["sh", "-c", "exit 1"]);
    s.restart = policy("on-failure", 2);
    let flaky = create(&mut c, s).await;
    start(&mut c, &flaky.id).await;
    // --rm: gone after exit, Wait still gets its code.
    let mut s = spec(&env, "gone", &["sh", "-c", "sleep 1; exit 4"]);
    s.auto_remove = true;
    let gone = create(&mut c, s).await;
    start(&mut c, &gone.id).await;
    assert_eq!(
        c.wait(cref(&gone.id)).await.unwrap().into_inner().exit_code,
        4
    );
    // A Wait that comes after the removal still gets the code, by id.
    let mut s = spec(&env, "quick", &["sh", "-c", "exit 5"]);
    s.auto_remove = true;
    let quick = create(&mut c, s).await;
    start(&mut c, &quick.id).await;
    poll("quick auto-removed", 20, || {
        let mut c = c.clone();
        let id = quick.id.clone();
        async move { summary(&mut c, &id).await.is_none() }
    })
    .await;
    assert_eq!(
        c.wait(cref(&quick.id))
            .await
            .unwrap()
            .into_inner()
            .exit_code,
        5
    );
    poll("auto-remove", 20, || {
        let mut c = c.clone();
        let id = gone.id.clone();
        async move { summary(&mut c, &id).await.is_none() }
    })
    .await;
    poll("bouncer restarts", 30, || {
        let mut c = c.clone();
        let id = bouncer.id.clone();
        async move { summary(&mut c, &id).await.unwrap().restart_count >= 2 }
    })
    .await;
    poll("flaky gives up", 30, || {
        let mut c = c.clone();
        let id = flaky.id.clone();
        async move {
            let s = summary(&mut c, &id).await.unwrap();
            s.restart_count == 2 && s.state == "exited"
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = summary(&mut c, &flaky.id).await.unwrap();
    assert_eq!(
        (s.restart_count, s.state.as_str(), s.exit_code),
        (2, "exited", 1)
    );

    // always + a long-running command: kill berthd, kill the container
    // while berthd is down; the restarted berthd brings it back.
    let mut s = spec(&env, "keeper", &["sleep", "1000"]);
    s.restart = policy("always", 0);
    let keeper = create(&mut c, s).await;
    start(&mut c, &keeper.id).await;
    let pid = inspect(&mut c, "keeper").await["State"]["Pid"]
        .as_i64()
        .unwrap();
    env.kill9();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // The shim records the exit on its own.
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.start();
    let mut c = client(&env).await;
    poll("keeper back after berthd restart", 30, || {
        let mut c = c.clone();
        async move {
            let j = inspect(&mut c, "keeper").await;
            j["State"]["Running"] == true && j["State"]["Pid"].as_i64() != Some(pid)
        }
    })
    .await;
    let before = summary(&mut c, &bouncer.id).await.unwrap().restart_count;
    poll("bouncer still restarted after berthd restart", 30, || {
        let mut c = c.clone();
        let id = bouncer.id.clone();
        async move { summary(&mut c, &id).await.unwrap().restart_count > before }
    })
    .await;
    // An explicit stop is respected.
    c.stop(api::StopContainerRequest {
        container: "keeper".into(),
        timeout: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(summary(&mut c, &keeper.id).await.unwrap().state, "exited");
    for id in [&bouncer.id, &flaky.id, &keeper.id] {
        c.remove(api::RemoveContainerRequest {
            container: id.clone(),
            force: true,
            volumes: true,
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn system_info_disk_usage_and_prune() {
    let env = PodEnv::new().await;
    let mut c = client(&env).await;
    let mut sys = SystemClient::new(connect(&env.dirs.socket()).await);
    let done = create(&mut c, spec(&env, "done", &["sh", "-c", "echo x > /f"])).await;
    start(&mut c, &done.id).await;
    c.wait(cref("done")).await.unwrap();
    let up = create(&mut c, spec(&env, "up", &["sleep", "1000"])).await;
    start(&mut c, &up.id).await;
    let info = sys.info(api::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(
        (
            info.containers,
            info.containers_running,
            info.containers_stopped
        ),
        (2, 1, 1)
    );
    assert_eq!(info.images, 1);
    assert!(info.network_ready, "{}", info.network_message);
    assert!(info.cpus >= 1 && info.memory_bytes > 0);
    assert!(!info.kernel_version.is_empty());
    let df = sys
        .disk_usage(api::DiskUsageRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(df.images.len(), 1);
    assert_eq!(df.images[0].containers, 2);
    let d = df.containers.iter().find(|x| x.name == "done").unwrap();
    assert!(d.size_rw > 0);
    assert!(df.layers_size > 0);
    let pruned = sys
        .prune(api::SystemPruneRequest {
            all: false,
            volumes: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pruned.containers_deleted, vec![done.id.clone()]);
    // The image is in use (and tagged): kept.
    assert!(pruned.images_deleted.is_empty());
    assert!(summary(&mut c, &up.id).await.is_some());
    c.remove(api::RemoveContainerRequest {
        container: "up".into(),
        force: true,
        volumes: true,
    })
    .await
    .unwrap();
    // Unused now: `all` removes it.
    let pruned = sys
        .prune(api::SystemPruneRequest {
            all: true,
            volumes: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pruned.images_deleted.len(), 1, "{pruned:?}");
    let info = sys.info(api::InfoRequest {}).await.unwrap().into_inner();
    assert_eq!((info.containers, info.images), (0, 0));
}
