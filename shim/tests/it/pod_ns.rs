//! Pod-level namespaces (shared PID namespace with the pod init, user
//! namespace pods) and the `delete` action after a dead shim.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::*;

#[test]
fn containers_share_the_pod_pid_namespace_with_the_pod_init() {
    let netns = Netns::new();
    let pod = Pod::start();
    let rootfs_src = pod.dir.path().join("rootfs-src");
    busybox_rootfs(&rootfs_src);
    let sb = pod.sandbox_bundle(&sandbox_spec(Some(&netns.path()), "pidpod", true));
    let init = pod
        .create(&pod.id, &sb, None, ["", "", ""])
        .unwrap_or_else(|e| panic!("sandbox: {e}\n{}", pod.shim_log()));
    let c = unique("pidc");
    let mut spec = container_spec(&c, &sb, &netns.path(), &["cat", "/proc/1/cmdline"]);
    spec["linux"]["namespaces"][0] = json!({"type": "pid", "path": sb.join("ns/pid")});
    let b = pod.bundle(&c, &spec);
    let log = pod.dir.path().join("pid.log");
    let cri = format!("cri://{}", log.display());
    pod.create(&c, &b, Some(&rootfs_src), ["", &cri, &cri])
        .unwrap_or_else(|e| panic!("create: {e}\n{}", pod.shim_log()));
    pod.start_task(&c, "").unwrap();
    assert_eq!(pod.wait(&c, ""), 0);
    let text: String = cri_lines(&log).into_iter().map(|(_, t)| t).collect();
    assert!(
        text.contains("__berth_pod_init"),
        "pid 1 is not the pod init: {text:?}"
    );
    pod.delete(&c, "").unwrap();
    // The pod init is a real process of the shim; SIGTERM ends it cleanly.
    assert!(pid_alive(init as i32));
    pod.kill(&pod.id, "", 15, false).unwrap();
    assert_eq!(pod.wait(&pod.id, ""), 0);
    assert!(wait_until(Duration::from_secs(5), || !pid_alive(
        init as i32
    )));
    pod.delete(&pod.id, "").unwrap();
    assert!(!sb.join("ns").exists());
    pod.shutdown();
}

#[test]
fn user_namespace_pod_pins_its_namespaces_with_the_mapping() {
    let pod = Pod::start();
    let mut spec = sandbox_spec(None, "userpod", false);
    let nss = spec["linux"]["namespaces"].as_array_mut().unwrap();
    nss.push(json!({"type": "user"}));
    // No path: the shim makes the pod's netns, owned by the pod's userns.
    nss.push(json!({"type": "network"}));
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    spec["linux"]["uidMappings"] = map.clone();
    spec["linux"]["gidMappings"] = map;
    let sb = pod.sandbox_bundle(&spec);
    pod.create(&pod.id, &sb, None, ["", "", ""])
        .unwrap_or_else(|e| panic!("sandbox: {e}\n{}", pod.shim_log()));
    let ino = |p: &Path| fs::metadata(p).unwrap().ino();
    for ns in ["user", "net", "ipc", "uts"] {
        let pin = sb.join("ns").join(ns);
        assert!(pin.exists(), "{ns} not pinned");
        assert_ne!(
            ino(&pin),
            ino(&Path::new("/proc/self/ns").join(ns)),
            "{ns} is the host's"
        );
    }
    // Enter the pinned namespaces with nsenter and look around.
    let out = Command::new("nsenter")
        .arg(format!("--user={}", sb.join("ns/user").display()))
        .arg(format!("--uts={}", sb.join("ns/uts").display()))
        .arg(format!("--net={}", sb.join("ns/net").display()))
        .args([
            "sh",
            "-c",
            "hostname; cat /proc/self/uid_map; ip -o link show",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?}", out);
    assert!(text.starts_with("userpod\n"), "{text}");
    let map: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", "100000", "65536"]);
    // A fresh netns: only lo, and it is up.
    let links: Vec<&str> = text.lines().skip(2).collect();
    assert_eq!(links.len(), 1, "{links:?}");
    assert!(
        links[0].contains(": lo:") && links[0].contains(",UP"),
        "{links:?}"
    );
    // A container joins the pod's user, network, ipc and uts namespaces.
    let rootfs_src = pod.dir.path().join("rootfs-src");
    busybox_rootfs(&rootfs_src);
    let c = unique("userc");
    let ns = sb.join("ns");
    let mut cspec = container_spec(
        &c,
        &sb,
        &ns.join("net"),
        &["sh", "-c", "hostname; cat /proc/self/uid_map"],
    );
    cspec["linux"]["namespaces"] = json!([
        {"type": "user", "path": ns.join("user")},
        {"type": "pid"},
        {"type": "network", "path": ns.join("net")},
        {"type": "ipc", "path": ns.join("ipc")},
        {"type": "uts", "path": ns.join("uts")},
        {"type": "mount"},
    ]);
    let b = pod.bundle(&c, &cspec);
    let log = pod.dir.path().join("userc.log");
    let cri = format!("cri://{}", log.display());
    pod.create(&c, &b, Some(&rootfs_src), ["", &cri, &cri])
        .unwrap_or_else(|e| panic!("create in userns pod: {e}\n{}", pod.shim_log()));
    pod.start_task(&c, "").unwrap();
    assert_eq!(pod.wait(&c, ""), 0);
    let lines: Vec<String> = cri_lines(&log).into_iter().map(|(_, t)| t).collect();
    assert_eq!(lines[0], "userpod");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map, ["0", "100000", "65536"]);
    pod.delete(&c, "").unwrap();
    pod.kill(&pod.id, "", 9, false).unwrap();
    pod.delete(&pod.id, "").unwrap();
    assert!(!sb.join("ns").exists());
    pod.shutdown();
}

#[test]
fn delete_action_cleans_up_after_a_dead_shim() {
    let netns = Netns::new();
    let pod = Pod::start();
    let rootfs_src = pod.dir.path().join("rootfs-src");
    busybox_rootfs(&rootfs_src);
    let sb = pod.sandbox_bundle(&sandbox_spec(Some(&netns.path()), "dead", true));
    let pod_init = pod.create(&pod.id, &sb, None, ["", "", ""]).unwrap() as i32;
    let c = unique("dead");
    let spec = container_spec(&c, &sb, &netns.path(), &["sleep", "1000"]);
    let b = pod.bundle(&c, &spec);
    pod.create(&c, &b, Some(&rootfs_src), ["", "", ""])
        .unwrap_or_else(|e| panic!("create: {e}\n{}", pod.shim_log()));
    let pid = pod.start_task(&c, "").unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pod.shim_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(5), || !pid_alive(
        pod.shim_pid
    )));
    assert!(pid_alive(pid), "the container must outlive its shim");
    for (id, bundle) in [(c.as_str(), &b), (pod.id.as_str(), &sb)] {
        let out = Command::new(SHIM)
            .args([
                "-namespace",
                "berth",
                "-id",
                id,
                "-address",
                "/x/berth.sock",
                "delete",
            ])
            .current_dir(bundle)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "delete {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(wait_until(Duration::from_secs(5), || !pid_alive(pid)));
    assert!(wait_until(Duration::from_secs(5), || !pid_alive(pod_init)));
    assert!(!Path::new("/run/berth/runtime").join(&c).exists());
    assert!(mounts_under(pod.dir.path()).is_empty());
    assert!(!sb.join("ns").exists());
}

#[test]
fn sigterm_ends_only_an_idle_shim() {
    let pod = Pod::start();
    let sb = pod.sandbox_bundle(&sandbox_spec(None, "term", false));
    pod.create(&pod.id, &sb, None, ["", "", ""]).unwrap();
    let term = || {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pod.shim_pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap()
    };
    term();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        pid_alive(pod.shim_pid),
        "a shim with a task must survive SIGTERM"
    );
    pod.kill(&pod.id, "", 9, false).unwrap();
    pod.delete(&pod.id, "").unwrap();
    term();
    assert!(wait_until(Duration::from_secs(5), || !pid_alive(
        pod.shim_pid
    )));
}
