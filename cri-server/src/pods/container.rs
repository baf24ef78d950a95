//! Container lifecycle: CreateContainer, StartContainer, StopContainer,
//! RemoveContainer, and recording exits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::cri;
use containerd_shim_protos::ttrpc;
use nix::mount::{umount2, MntFlags};
use tracing::{info, warn};

use super::layers::{copy_image_dir, read_image_file};
use super::records::{container_name_key, ContainerRecord};
use super::sandbox::{bundle_dir, namespace_options, write_json, SIGKILL};
use super::shim::{CreateTask, ShimClient, ShimError, TaskExit};
use super::{new_id, now_nanos, Container, ContainerState, Pod, PodError, PodManager, PodState};
use crate::container_spec::{
    build_container_spec, pod_facts, pod_namespaces, pod_user_namespace, ContainerSpecInput,
    HostDevices, RuntimeOptions, UserDb,
};
use crate::pod_files::pod_file_paths;
use crate::store::{ImageRecord, ObjectKind};

/// SIGTERM, the default stop signal.
const SIGTERM: u32 = 15;
/// How long a SIGKILLed container may take to be reported exited.
const KILL_WAIT: Duration = Duration::from_secs(30);

/// The exit record the shim writes to `<bundle>/exit.json`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ExitFile {
    /// Exit code (128+N for signal N).
    pub exit_code: i32,
    /// RFC 3339 exit time.
    pub exited_at: String,
    /// Killed by the OOM killer.
    #[serde(default)]
    pub oom_killed: bool,
}

impl ExitFile {
    /// Reads `<bundle>/exit.json`, if present and valid.
    pub fn read(bundle: &Path) -> Option<ExitFile> {
        let data = std::fs::read(bundle.join("exit.json")).ok()?;
        serde_json::from_slice(&data).ok()
    }

    /// The exit time in ns since the epoch (0 if unparsable).
    pub fn exited_at_nanos(&self) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&self.exited_at)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .unwrap_or(0)
    }
}

/// Parses a STOPSIGNAL (`SIGTERM`, `TERM`, `15`).
pub fn parse_signal(s: &str) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .ok()
        .and_then(|sig| u32::try_from(sig as i32).ok())
}

pub(crate) fn runtime_options() -> RuntimeOptions {
    RuntimeOptions {
        cgroup_v2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        swap_controller: Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
            || Path::new("/sys/fs/cgroup/memory.swap.max").exists(),
    }
}

/// The container config as the spec is built from it: network and IPC
/// follow the pod (as containerd does, whatever the container asks), and
/// PID mode POD in a pod without a shared PID namespace means a PID
/// namespace of its own.
fn effective_config(
    pod: &cri::PodSandboxConfig,
    config: &cri::ContainerConfig,
) -> cri::ContainerConfig {
    let pod_opts = namespace_options(pod);
    let mut config = config.clone();
    let opts = config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .namespace_options
        .get_or_insert_with(Default::default);
    opts.network = pod_opts.network;
    opts.ipc = pod_opts.ipc;
    let pod_mode = cri::NamespaceMode::Pod as i32;
    if opts.pid == pod_mode && pod_opts.pid != pod_mode {
        opts.pid = if pod_opts.pid == cri::NamespaceMode::Node as i32 {
            pod_opts.pid
        } else {
            cri::NamespaceMode::Container as i32
        };
    }
    config
}

/// Drops capabilities berthd's own bounding set lacks (this host withholds
/// some, e.g. CAP_SYS_RESOURCE): a privileged or `ALL` container gets every
/// capability the host can give, as containerd does, instead of failing.
fn restrict_to_host_capabilities(spec: &mut serde_json::Value) {
    let Ok(bounding) = caps::read(None, caps::CapSet::Bounding) else {
        return;
    };
    let host: std::collections::HashSet<String> = bounding.iter().map(|c| c.to_string()).collect();
    let Some(sets) = spec
        .pointer_mut("/process/capabilities")
        .and_then(|v| v.as_object_mut())
    else {
        return;
    };
    for list in sets.values_mut() {
        if let Some(items) = list.as_array_mut() {
            items.retain(|cap| cap.as_str().is_some_and(|name| host.contains(name)));
        }
    }
}

/// The overlay mount options of a container's rootfs.
pub(crate) fn overlay_options(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    volatile: bool,
    userns: Option<&crate::container_spec::PodUserNamespace>,
) -> Vec<String> {
    let lowerdir = layers
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let mut options = vec![
        format!("lowerdir={lowerdir}"),
        format!("upperdir={}", upper.display()),
        format!("workdir={}", work.display()),
    ];
    // Durability trade-off: without `volatile` overlayfs syncs the whole
    // upper file system (the node's root disk) on a syncfs in the container
    // and when the rootfs is unmounted, which made RemoveContainer wait for
    // unrelated dirty data (up to hundreds of ms on a busy disk); `volatile`
    // also turns the container's fsyncs of rootfs files into no-ops. A CRI
    // writable layer is disposable: it is mounted once, never remounted, and
    // after a node crash the kubelet makes new containers with fresh layers.
    // Volumes and logs are not on it and keep their syncs. berth's Docker
    // containers are the exception: they are started again in place (the
    // layer is remounted, which `volatile` refuses) and users expect their
    // files to survive a crash.
    if volatile {
        options.push("volatile".to_string());
    }
    options.extend(userns.iter().flat_map(|u| u.rootfs_mount_options()));
    options
}

fn mkdirs(dirs: &[&Path]) -> Result<(), PodError> {
    for d in dirs {
        std::fs::create_dir_all(d).map_err(PodError::io("creating", d))?;
    }
    Ok(())
}

impl PodManager {
    /// CreateContainer: reserves the name, holds the image's snapshots,
    /// builds the bundle and creates the task in the pod's shim.
    pub async fn create_container(
        &self,
        pod_id: &str,
        config: cri::ContainerConfig,
    ) -> Result<String, PodError> {
        let meta = config
            .metadata
            .as_ref()
            .ok_or_else(|| PodError::InvalidArgument("container metadata is required".into()))?;
        if meta.name.is_empty() {
            return Err(PodError::InvalidArgument(
                "container metadata needs a name".into(),
            ));
        }
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_name.is_empty() {
            return Err(PodError::InvalidArgument(
                "container image is required".into(),
            ));
        }
        let sc = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref());
        if sc.is_some_and(|s| {
            s.run_as_group.is_some() && s.run_as_user.is_none() && s.run_as_username.is_empty()
        }) {
            return Err(PodError::InvalidArgument(
                "run_as_group is set without run_as_user or run_as_username".into(),
            ));
        }
        let _pod_guard = self.locks.read(pod_id).await;
        let pod = self.load_pod(pod_id).await?;
        if pod.rec.state != PodState::Ready {
            return Err(PodError::FailedPrecondition(format!(
                "pod sandbox {pod_id} is not ready"
            )));
        }
        let name = image_name.clone();
        let image = self
            .db(move |s| s.find_image(&name))
            .await?
            .ok_or_else(|| PodError::NotFound {
                kind: "image",
                id: image_name.clone(),
            })?;
        let id = new_id()?;
        let mut c = Container {
            id: id.clone(),
            pod_id: pod_id.to_string(),
            config,
            rec: ContainerRecord {
                state: ContainerState::Unknown,
                created_at: now_nanos(),
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
                message: String::new(),
                pid: 0,
                image: image_name,
                image_id: image.id.clone(),
                image_ref: image
                    .repo_digests
                    .first()
                    .cloned()
                    .unwrap_or_else(|| image.id.clone()),
                chain_ids: image.chain_ids.clone(),
                log_path: String::new(),
                bundle: self.cfg.container_state_dir(&id).join("bundle"),
                data_dir: self.cfg.container_data_dir(&id),
                stop_signal: None,
                process: serde_json::Value::Null,
            },
        };
        let row = c.to_row()?;
        // Name reservation and snapshot holds commit together: from here on
        // GC keeps the image's snapshots.
        let chains: Vec<String> = c.rec.chain_ids.iter().rev().cloned().collect();
        let Some(lowers) = self
            .db(move |s| s.insert_object_holding_snapshots(ObjectKind::Container, &row, &chains))
            .await?
        else {
            let key = container_name_key(pod_id, &c.config);
            let existing = self
                .pod_containers(pod_id)
                .await?
                .into_iter()
                .find(|o| container_name_key(pod_id, &o.config) == key)
                .map(|o| o.id)
                .unwrap_or_default();
            return Err(PodError::AlreadyExists {
                kind: "container",
                name: key,
                existing,
            });
        };
        let _guard = self.locks.write(&id).await;
        match self.setup_container(&pod, &mut c, &image, lowers).await {
            Ok(()) => {
                c.rec.state = ContainerState::Created;
                self.save_container(&c).await?;
                info!(container_id = %id, pod_id = %pod_id, "container created");
                self.emit_container_event(&c, cri::ContainerEventType::ContainerCreatedEvent)
                    .await;
                Ok(id)
            }
            Err(err) => {
                warn!(container_id = %id, error = %crate::error::chain(&err), "container set-up failed, undoing");
                if let Err(e) = self.delete_container(&c).await {
                    warn!(container_id = %id, error = %crate::error::chain(&e), "cannot forget failed container");
                }
                self.locks.forget(&id);
                Err(err)
            }
        }
    }

    async fn setup_container(
        &self,
        pod: &Pod,
        c: &mut Container,
        image: &ImageRecord,
        lowers: Vec<(String, Option<PathBuf>)>,
    ) -> Result<(), PodError> {
        let mut layers = Vec::new();
        for (chain, path) in lowers {
            layers.push(path.ok_or_else(|| {
                PodError::FailedPrecondition(format!(
                    "image {} lacks its layer snapshot {chain}; pull it again",
                    image.id
                ))
            })?);
        }
        if layers.is_empty() {
            return Err(PodError::FailedPrecondition(format!(
                "image {} has no layers",
                image.id
            )));
        }
        let bundle = c.rec.bundle.clone();
        let rootfs = bundle.join("rootfs");
        let data = c.rec.data_dir.clone();
        let (upper, work, volumes) = (data.join("upper"), data.join("work"), data.join("volumes"));
        mkdirs(&[&rootfs, &upper, &work, &volumes])?;
        let userns = pod_user_namespace(&pod.config)?;
        if let Some(userns) = &userns {
            // The shim id-maps the image layers (host root shows as the pod's
            // root); the writable layer is not mapped, so the overlay's `/`
            // (the upper directory) must belong to the pod's root. Only that
            // directory: the work dir is overlayfs' own, used with its
            // mounter's (host root) credentials.
            let (uid, gid) = (userns.host_root_uid(), userns.host_root_gid());
            nix::unistd::chown(
                upper.as_path(),
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| PodError::Io {
                op: "chowning to the pod's root",
                path: upper.clone(),
                source: e.into(),
            })?;
        }

        let image_config: Option<oci_spec::image::ImageConfiguration> =
            serde_json::from_str(&image.config).ok();
        let image_cfg = image_config.as_ref().and_then(|i| i.config().clone());
        c.rec.stop_signal = super::berth::stop_signal(&c.config)
            .or_else(|| image_cfg.as_ref().and_then(|i| i.stop_signal().clone()));
        let users = UserDb::parse(
            &read_image_file(&layers, "etc/passwd").unwrap_or_default(),
            &read_image_file(&layers, "etc/group").unwrap_or_default(),
        );
        let pod_bundle = bundle_dir(&pod.rec.dir);
        let facts = pod_facts(
            &pod.id,
            &pod.rec.cgroup_parent,
            pod_namespaces(&pod_bundle, &pod.config, pod.rec.netns.as_deref()),
            &pod_file_paths(&pod.rec.dir, &pod.config),
        );
        let target_pid_ns = self.target_pid_ns(&c.config).await?;
        let config = effective_config(&pod.config, &c.config);
        let built = build_container_spec(&ContainerSpecInput {
            container_id: &c.id,
            config: &config,
            sandbox_config: &pod.config,
            image_config: image_cfg.as_ref(),
            image_name: &c.rec.image,
            rootfs: &rootfs,
            volumes_dir: &volumes,
            users: &users,
            pod: &facts,
            target_pid_ns: target_pid_ns.as_deref(),
            devices: &HostDevices,
            options: &runtime_options(),
        })?;
        for v in &built.anonymous_volumes {
            mkdirs(&[&v.host_path])?;
            copy_image_dir(&layers, &v.container_path, &v.host_path)
                .map_err(PodError::io("seeding image volume", &v.host_path))?;
        }
        for p in &built.host_paths {
            mkdirs(&[p])?;
        }
        let mut spec = serde_json::to_value(&built.spec).map_err(|source| PodError::Json {
            id: c.id.clone(),
            source,
        })?;
        restrict_to_host_capabilities(&mut spec);
        super::berth::apply_to_spec(&c.config, &mut spec);
        c.rec.process = spec
            .get("process")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        write_json(&bundle.join("config.json"), &spec, &c.id)?;

        if !pod.config.log_directory.is_empty() && !c.config.log_path.is_empty() {
            let path = Path::new(&pod.config.log_directory).join(&c.config.log_path);
            if let Some(parent) = path.parent() {
                mkdirs(&[parent])?;
            }
            c.rec.log_path = path.to_string_lossy().into_owned();
        }
        let out = if c.rec.log_path.is_empty() {
            String::new()
        } else {
            format!("cri://{}", c.rec.log_path)
        };
        let stdin = if c.config.stdin {
            let fifo = self.cfg.container_state_dir(&c.id).join("stdin");
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(
                |e| PodError::Io {
                    op: "creating stdin FIFO",
                    path: fifo.clone(),
                    source: e.into(),
                },
            )?;
            fifo.to_string_lossy().into_owned()
        } else {
            String::new()
        };
        // No save here: the record written at the end (state Created) holds
        // all of this. A crash before it leaves the reserved row in state
        // Unknown with its bundle and snapshots, which reconciliation turns
        // into an exited container the kubelet can remove; the kubelet was
        // never told this container exists.
        let shim = self.shim_for(pod).await?;
        shim.create(&CreateTask {
            id: c.id.clone(),
            bundle,
            overlay: Some(overlay_options(
                &layers,
                &upper,
                &work,
                !super::berth::is_managed(&c.config),
                userns.as_ref(),
            )),
            terminal: c.config.tty,
            stdin,
            stdout: out.clone(),
            stderr: out,
        })
        .await
        .map_err(PodError::shim(&pod.id))?;
        Ok(())
    }

    /// For PID mode TARGET: the target container's PID namespace.
    async fn target_pid_ns(
        &self,
        config: &cri::ContainerConfig,
    ) -> Result<Option<PathBuf>, PodError> {
        let opts = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        if opts.pid != cri::NamespaceMode::Target as i32 {
            return Ok(None);
        }
        let target = self.load_container(&opts.target_id).await?;
        if target.rec.state != ContainerState::Running || target.rec.pid == 0 {
            return Err(PodError::FailedPrecondition(format!(
                "target container {} is not running",
                opts.target_id
            )));
        }
        Ok(Some(PathBuf::from(format!(
            "/proc/{}/ns/pid",
            target.rec.pid
        ))))
    }

    /// StartContainer.
    pub async fn start_container(self: &Arc<Self>, id: &str) -> Result<(), PodError> {
        let _guard = self.locks.write(id).await;
        let mut c = self.load_container(id).await?;
        if c.rec.state != ContainerState::Created {
            return Err(PodError::FailedPrecondition(format!(
                "container {id} is {:?}, not created",
                c.rec.state
            )));
        }
        let pod = self.load_pod(&c.pod_id).await?;
        if pod.rec.state != PodState::Ready {
            return Err(PodError::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                c.pod_id
            )));
        }
        let shim = self.shim_for(&pod).await?;
        self.start_task_recorded(&mut c, &pod, shim).await?;
        Ok(())
    }

    /// Starts the created task of `c` and records the outcome: running
    /// with its pid (event, exit waiter) or exited with `StartError`.
    pub(crate) async fn start_task_recorded(
        self: &Arc<Self>,
        c: &mut Container,
        pod: &Pod,
        shim: ShimClient,
    ) -> Result<u32, PodError> {
        // Taken before the call: a process that exits at once must not
        // finish before it started.
        let started_at = now_nanos();
        match shim.start_task(&c.id, "").await {
            Ok(pid) => {
                c.rec.state = ContainerState::Running;
                c.rec.pid = pid;
                c.rec.started_at = started_at;
                self.save_container(c).await?;
                info!(container_id = %c.id, pid, "container started");
                self.emit_container_event(c, cri::ContainerEventType::ContainerStartedEvent)
                    .await;
                self.spawn_exit_waiter(shim, pod.rec.shim_address.clone(), c.id.clone());
                Ok(pid)
            }
            Err(e) => {
                let err = PodError::shim(&pod.id)(e);
                c.set_exited(128, now_nanos(), false);
                c.rec.reason = "StartError".into();
                c.rec.message = crate::error::chain(&err);
                self.save_container(c).await?;
                Err(err)
            }
        }
    }

    /// Waits in the background for a running container to exit and
    /// records the exit. Reconnects when the connection drops but the shim
    /// lives; a shim that is gone marks the container exited.
    pub(crate) fn spawn_exit_waiter(
        self: &Arc<Self>,
        shim: ShimClient,
        address: String,
        id: String,
    ) {
        let mgr = self.clone();
        tokio::spawn(async move {
            let mut shim = shim;
            let mut result = shim.wait(&id, "", None).await;
            for _ in 0..3 {
                match &result {
                    Err(e) if e.is_unreachable() => match ShimClient::connect(&address).await {
                        Ok(s) => {
                            shim = s;
                            result = shim.wait(&id, "", None).await;
                        }
                        Err(_) => break,
                    },
                    _ => break,
                }
            }
            mgr.record_exit(&id, result).await;
        });
    }

    async fn record_exit(&self, id: &str, result: Result<TaskExit, ShimError>) {
        let _guard = self.locks.write(id).await;
        let Ok(mut c) = self.load_container(id).await else {
            return;
        };
        if c.rec.state != ContainerState::Running {
            return;
        }
        // An exit from before the current start belongs to an earlier run
        // of a container started again in place (berth.v1): its waiter may
        // only get the lock once the new run has started.
        if let Ok(exit) = &result {
            if exit.exited_at > 0 && exit.exited_at < c.rec.started_at {
                return;
            }
        }
        self.apply_exit(&mut c, result.as_ref().ok().copied(), result.as_ref().err());
        if let Err(e) = self.save_container(&c).await {
            warn!(container_id = %id, error = %crate::error::chain(&e), "cannot record exit");
        }
        info!(container_id = %id, exit_code = c.rec.exit_code, reason = %c.rec.reason, "container exited");
        self.emit_container_event(&c, cri::ContainerEventType::ContainerStoppedEvent)
            .await;
    }

    /// Marks `c` exited from the shim's answer, its exit file, or neither
    /// (shim gone: reason Error, message "shim died").
    pub(crate) fn apply_exit(
        &self,
        c: &mut Container,
        exit: Option<TaskExit>,
        err: Option<&ShimError>,
    ) {
        let file = ExitFile::read(&c.rec.bundle);
        match (exit, file) {
            (Some(e), f) => {
                let oom = f.as_ref().is_some_and(|f| f.oom_killed);
                c.set_exited(
                    i32::try_from(e.exit_status).unwrap_or(255),
                    e.exited_at,
                    oom,
                );
            }
            (None, Some(f)) => c.set_exited(f.exit_code, f.exited_at_nanos(), f.oom_killed),
            (None, None) => {
                c.set_exited(255, now_nanos(), false);
                c.rec.reason = "Error".into();
                c.rec.message = match err {
                    Some(e) if !e.is_unreachable() => crate::error::chain(e),
                    _ => "shim died".into(),
                };
            }
        }
    }

    /// StopContainer: the stop signal, then SIGKILL after `timeout_secs`.
    /// Stopping an exited, never-started or unknown container succeeds.
    pub async fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<(), PodError> {
        let _guard = self.locks.write(id).await;
        let mut c = match self.load_container(id).await {
            Ok(c) => c,
            // The kubelet expects stopping a removed container to succeed.
            Err(PodError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_container_locked(&mut c, timeout_secs, None).await
    }

    /// StopContainer with `signal` instead of the container's stop signal
    /// (`berth stop -s`).
    pub async fn stop_container_with_signal(
        &self,
        id: &str,
        timeout_secs: i64,
        signal: u32,
    ) -> Result<(), PodError> {
        let _guard = self.locks.write(id).await;
        let mut c = self.load_container(id).await?;
        self.stop_container_locked(&mut c, timeout_secs, Some(signal))
            .await
    }

    async fn stop_container_locked(
        &self,
        c: &mut Container,
        timeout_secs: i64,
        signal: Option<u32>,
    ) -> Result<(), PodError> {
        if !matches!(c.rec.state, ContainerState::Running) {
            return Ok(());
        }
        let pod = self.load_pod(&c.pod_id).await?;
        let shim = match self.shim_for(&pod).await {
            Ok(s) => s,
            Err(PodError::Shim { source, .. }) if source.is_unreachable() => {
                self.finish_stop(c, None, Some(&source)).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if timeout_secs > 0 {
            let sig = signal.unwrap_or_else(|| {
                c.rec
                    .stop_signal
                    .as_deref()
                    .and_then(parse_signal)
                    .unwrap_or(SIGTERM)
            });
            match shim.kill(&c.id, "", sig, false).await {
                Ok(()) => {}
                Err(e) if e.is_not_found() || e.is_unreachable() => {
                    return self.finish_stop(c, None, Some(&e)).await;
                }
                Err(e) => {
                    warn!(container_id = %c.id, error = %crate::error::chain(&e), "stop signal failed, killing")
                }
            }
            let wait = Duration::from_secs(u64::try_from(timeout_secs).unwrap_or(0));
            if let Ok(exit) = shim.wait(&c.id, "", Some(wait)).await {
                return self.finish_stop(c, Some(exit), None).await;
            }
        }
        match shim.kill(&c.id, "", SIGKILL, false).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() || e.is_unreachable() => {
                return self.finish_stop(c, None, Some(&e)).await;
            }
            // Already exited between our calls: Wait below answers.
            Err(e) => {
                warn!(container_id = %c.id, error = %crate::error::chain(&e), "SIGKILL failed")
            }
        }
        match shim.wait(&c.id, "", Some(KILL_WAIT)).await {
            Ok(exit) => self.finish_stop(c, Some(exit), None).await,
            Err(e) if e.is_not_found() || e.is_unreachable() => {
                self.finish_stop(c, None, Some(&e)).await
            }
            Err(_) => Err(PodError::Timeout {
                what: "stopping container",
                id: c.id.clone(),
            }),
        }
    }

    async fn finish_stop(
        &self,
        c: &mut Container,
        exit: Option<TaskExit>,
        err: Option<&ShimError>,
    ) -> Result<(), PodError> {
        self.apply_exit(c, exit, err);
        self.save_container(c).await?;
        info!(container_id = %c.id, exit_code = c.rec.exit_code, "container stopped");
        self.emit_container_event(c, cri::ContainerEventType::ContainerStoppedEvent)
            .await;
        Ok(())
    }

    /// RemoveContainer: kills it if running, deletes the task and every
    /// file, releases its snapshots. Removing an unknown container succeeds.
    pub async fn remove_container(&self, id: &str) -> Result<(), PodError> {
        let _guard = self.locks.write(id).await;
        let mut c = match self.load_container(id).await {
            Ok(c) => c,
            Err(PodError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_container_locked(&mut c, 0, None).await?;
        if let Ok(pod) = self.load_pod(&c.pod_id).await {
            if let Ok(shim) = self.shim_for(&pod).await {
                match shim.delete(id, "").await {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() || e.is_unreachable() => {}
                    // Our record said exited (e.g. a StartContainer whose
                    // answer was lost) while the shim still runs it: the
                    // kubelet expects a forced removal, so kill and retry.
                    Err(e) if e.code() == Some(ttrpc::Code::FAILED_PRECONDITION) => {
                        warn!(container_id = %id, error = %crate::error::chain(&e), "shim still runs the container, killing it before removal");
                        self.kill_and_delete(&shim, id)
                            .await
                            .map_err(PodError::shim(&pod.id))?;
                    }
                    Err(e) => return Err(PodError::shim(&pod.id)(e)),
                }
            }
        }
        self.delete_container(&c).await?;
        self.locks.forget(id);
        self.forget_cpu_sample(id);
        info!(container_id = %id, "container removed");
        self.emit_container_event(&c, cri::ContainerEventType::ContainerDeletedEvent)
            .await;
        Ok(())
    }

    /// SIGKILLs a task the shim still runs, waits for its exit and
    /// deletes it from the shim.
    async fn kill_and_delete(&self, shim: &ShimClient, id: &str) -> Result<(), ShimError> {
        match shim.kill(id, "", SIGKILL, false).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        shim.wait(id, "", Some(KILL_WAIT)).await?;
        match shim.delete(id, "").await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Unmounts and removes a container's dirs, then deletes its row and
    /// drops its snapshot refs in one transaction.
    pub(crate) async fn delete_container(&self, c: &Container) -> Result<(), PodError> {
        let state = self.cfg.container_state_dir(&c.id);
        let data = c.rec.data_dir.clone();
        let rootfs = c.rec.bundle.join("rootfs");
        let removed = tokio::task::spawn_blocking(move || {
            let _ = umount2(&rootfs, MntFlags::MNT_DETACH);
            for d in [&state, &data] {
                match std::fs::remove_dir_all(d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => warn!(?err, dir = %d.display(), "cannot remove container dir"),
                }
            }
        })
        .await;
        if let Err(e) = removed {
            warn!(container_id = %c.id, error = %e, "container dir removal panicked");
        }
        let (id, chains) = (c.id.clone(), c.rec.chain_ids.clone());
        self.db(move |s| s.delete_object_releasing_snapshots(ObjectKind::Container, &id, &chains))
            .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse() {
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("term"), Some(15));
        assert_eq!(parse_signal("SIGKILL"), Some(9));
        assert_eq!(parse_signal("2"), Some(2));
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("BOGUS"), None);
    }

    #[test]
    fn exit_file_parses() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("exit.json"),
            r#"{"exit_code":137,"exited_at":"2024-01-02T03:04:05.000000006Z","oom_killed":true}"#,
        )
        .unwrap();
        let f = ExitFile::read(d.path()).unwrap();
        assert_eq!(f.exit_code, 137);
        assert!(f.oom_killed);
        assert_eq!(f.exited_at_nanos(), 1_704_164_645_000_000_006);
        assert!(ExitFile::read(&d.path().join("none")).is_none());
    }
}
