//! Test environment for the pod tests: a loopback registry with busybox, a
//! private CNI network (bridge `bp<random>`, a /24 of 10.251.0.0/16, ipMasq
//! off, an iptables FORWARD rule dropping bridge traffic to any other
//! interface), berthd as a child process with private dirs, and cleanup of
//! all of it (shims, mounts, cgroups, the rule, the bridge) on drop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_proto::cri;
use berth_proto::cri::image_service_client::ImageServiceClient;
use berth_proto::cri::runtime_service_client::RuntimeServiceClient;
use berth_test_images::{busybox_layout, push_fixture, Registry};
use tonic::transport::Channel;

use crate::support::{connect, pull, random, run, ChildDaemon, Dirs};

/// The shim built next to berthd (`cargo build -p berth-shim`).
pub fn shim_path() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_berthd"))
        .parent()
        .unwrap()
        .join("berth-shim");
    assert!(
        p.is_file(),
        "{} missing: run `cargo build -p berth-shim` with the same target dir first",
        p.display()
    );
    p
}

pub struct PodEnv {
    pub dirs: Dirs,
    pub _registry: Registry,
    pub image: String,
    pub bridge: String,
    pub subnet: u8,
    pub cgroup_parent: String,
    pub daemon: Option<ChildDaemon>,
}

impl PodEnv {
    pub async fn new() -> PodEnv {
        let registry = Registry::start().unwrap();
        let work = tempfile::tempdir().unwrap();
        let bb = busybox_layout(&work.path().join("busybox")).unwrap();
        push_fixture(&registry, &bb.layout, &bb.tag, "busybox:latest")
            .await
            .unwrap();
        let image = format!("{}/busybox:latest", registry.host());
        let dirs = Dirs::new();
        let bridge = format!("bp{:06x}", random() & 0xff_ffff);
        let subnet = loop {
            let s = (random() % 254 + 1) as u8;
            let out = run("ip", &["-4", "route", "show", &format!("10.251.{s}.0/24")]);
            if out.stdout.is_empty() {
                break s;
            }
        };
        let out = run(
            "iptables",
            &[
                "-I", "FORWARD", "1", "-i", &bridge, "!", "-o", &bridge, "-j", "DROP",
            ],
        );
        assert!(out.status.success(), "iptables: {out:?}");
        let conf = dirs.tmp.path().join("cni");
        std::fs::create_dir_all(&conf).unwrap();
        let list = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("{bridge}-net"),
            "plugins": [
                {
                    "type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": format!("10.251.{subnet}.0/24")}]],
                        "dataDir": dirs.tmp.path().join("ipam"),
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        });
        std::fs::write(conf.join("10-test.conflist"), list.to_string()).unwrap();
        let cgroup_parent = format!("/berth-it-{:08x}", random() & 0xffff_ffff);
        let config = format!(
            "[registry]\nconfig_path = {:?}\n[cni]\nconf_dir = {:?}\nbin_dirs = [\"/usr/lib/cni\", \"/opt/cni/bin\"]\n\
             [runtime]\ncgroup_parent = {:?}\nshim_path = {:?}\n",
            dirs.hosts().display().to_string(),
            conf.display().to_string(),
            cgroup_parent,
            shim_path().display().to_string(),
        );
        std::fs::write(dirs.tmp.path().join("config.toml"), config).unwrap();
        let mut env = PodEnv {
            dirs,
            _registry: registry,
            image,
            bridge,
            subnet,
            cgroup_parent,
            daemon: None,
        };
        env.start();
        let mut images = ImageServiceClient::new(connect(&env.dirs.socket()).await);
        pull(&mut images, &env.image).await.unwrap();
        env
    }

    /// Starts berthd (again).
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dirs.tmp.path().join("berthd.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berthd"))
            .arg("--config")
            .arg(self.dirs.tmp.path().join("config.toml"))
            .arg("--root")
            .arg(self.dirs.root())
            .arg("--state")
            .arg(self.dirs.state())
            .arg("--log-level")
            .arg("info")
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(self.dirs.socket()).is_err() {
            assert!(
                Instant::now() < deadline,
                "berthd did not come up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.daemon = Some(ChildDaemon { child });
    }

    pub fn kill9(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill9();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dirs.tmp.path().join("berthd.log")).unwrap_or_default()
    }

    pub async fn rt(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(connect(&self.dirs.socket()).await)
    }

    pub fn logs_dir(&self, pod: &str) -> PathBuf {
        self.dirs.tmp.path().join("logs").join(pod)
    }

    pub fn pod_config(&self, name: &str) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.to_string(),
                uid: format!("uid-{name}"),
                namespace: "berth-it".to_string(),
                attempt: 0,
            }),
            hostname: name.to_string(),
            log_directory: self.logs_dir(name).display().to_string(),
            labels: HashMap::from([("app".to_string(), name.to_string())]),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("{}/{name}", self.cgroup_parent),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub fn container_config(&self, name: &str, cmd: &[&str]) -> cri::ContainerConfig {
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}/0.log"),
            labels: HashMap::from([("c".to_string(), name.to_string())]),
            ..Default::default()
        }
    }

    pub fn in_subnet(&self, ip: &str) -> bool {
        ip.starts_with(&format!("10.251.{}.", self.subnet))
    }
}

/// Runs a pod and returns its id.
pub async fn run_pod(
    rt: &mut RuntimeServiceClient<Channel>,
    config: &cri::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    })
    .await
    .map(|r| r.into_inner().pod_sandbox_id)
}

/// Creates and starts a container; returns its id.
pub async fn start_container(
    rt: &mut RuntimeServiceClient<Channel>,
    pod_id: &str,
    config: cri::ContainerConfig,
    pod: &cri::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.to_string(),
            config: Some(config),
            sandbox_config: Some(pod.clone()),
        })
        .await?
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await?;
    Ok(id)
}

pub async fn container_status(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
) -> Result<cri::ContainerStatus, tonic::Status> {
    rt.container_status(cri::ContainerStatusRequest {
        container_id: id.to_string(),
        verbose: false,
    })
    .await
    .map(|r| r.into_inner().status.unwrap())
}

/// Polls until the container has exited.
pub async fn wait_exited(rt: &mut RuntimeServiceClient<Channel>, id: &str) -> cri::ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = container_status(rt, id).await.unwrap();
        if st.state == cri::ContainerState::ContainerExited as i32 {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} did not exit: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn exec(
    rt: &mut RuntimeServiceClient<Channel>,
    id: &str,
    cmd: &[&str],
) -> cri::ExecSyncResponse {
    rt.exec_sync(cri::ExecSyncRequest {
        container_id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout: 10,
    })
    .await
    .unwrap()
    .into_inner()
}

/// Processes whose cwd is under `dir` (the shims of this test's pods).
fn processes_under(dir: &Path) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(e.path().join("cwd")) {
            if cwd.starts_with(dir) {
                out.push(pid);
            }
        }
    }
    out
}

/// Pids of shims of this environment.
pub fn shim_pids(env: &PodEnv) -> Vec<i32> {
    processes_under(&env.dirs.state().join("pods"))
}

fn remove_cgroups(parent: &str) {
    let rel = parent.trim_start_matches('/');
    for ctrl in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let root = ctrl.path().join(rel);
        if !root.is_dir() {
            continue;
        }
        // Deepest first.
        let mut dirs = vec![root.clone()];
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(rd) = std::fs::read_dir(&dirs[i]) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        dirs.push(e.path());
                    }
                }
            }
            i += 1;
        }
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

impl Drop for PodEnv {
    fn drop(&mut self) {
        self.kill9();
        for pid in shim_pids(self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        // Containers of killed shims: kill what is left in our cgroups.
        for ctrl in ["pids", "memory", "cpu", "freezer"] {
            let procs = format!("/sys/fs/cgroup/{ctrl}{}", self.cgroup_parent);
            if let Ok(out) = Command::new("find")
                .args([&procs, "-name", "cgroup.procs"])
                .output()
            {
                for f in String::from_utf8_lossy(&out.stdout).lines() {
                    for pid in std::fs::read_to_string(f).unwrap_or_default().lines() {
                        if let Ok(pid) = pid.parse::<i32>() {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        let base = self.dirs.tmp.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<String> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|p| p.starts_with(&base))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        remove_cgroups(&self.cgroup_parent);
        let _ = run("ip", &["link", "del", &self.bridge]);
        let _ = run(
            "iptables",
            &[
                "-D",
                "FORWARD",
                "-i",
                &self.bridge,
                "!",
                "-o",
                &self.bridge,
                "-j",
                "DROP",
            ],
        );
    }
}
