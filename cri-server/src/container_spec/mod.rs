//! The OCI runtime specs of a pod: the sandbox task's ([`sandbox`]) and each
//! container's, built from the CRI `ContainerConfig`, its pod's
//! `PodSandboxConfig`, the image config and facts about the pod (namespace
//! paths, pod files, cgroup parent).
//!
//! [`build_container_spec`] decides only: it touches neither the container's
//! rootfs nor the host, except reading a `Localhost` seccomp profile, the
//! host name (hostNetwork pods), whether AppArmor is enabled, and looking
//! devices up through the [`DeviceLookup`] seam. The caller reads the image's
//! /etc/passwd and /etc/group into a [`UserDb`], creates the anonymous volume
//! directories and missing hostPath directories listed in
//! [`BuiltContainerSpec`] and writes the spec (for pods with a user namespace,
//! [`userns`] says what the rootfs needs). Only the
//! `cgroupfs` cgroup driver is supported (`cgroupsPath` =
//! `<pod cgroup parent>/<container id>`).

mod command;
mod mounts;
mod resources;
pub mod sandbox;
mod seccomp_default;
mod security;
mod user;
pub mod userns;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_proto::cri::{ContainerConfig, NamespaceMode, NamespaceOption, PodSandboxConfig};
use oci_spec::runtime::{
    Linux, LinuxNamespace, LinuxNamespaceType, LinuxResources, Process, Root, Spec, User,
};
use oci_spec::OciSpecError;

pub use command::{process_args, process_env, working_dir, DEFAULT_PATH_ENV};
pub use mounts::{AnonymousVolume, DeviceInfo, DeviceLookup, HostDevices};
pub use resources::linux_resources;
pub use sandbox::{
    build_sandbox_spec, pinned_ns_dir, pod_cgroup_parent, pod_facts, pod_namespaces, PodNamespaces,
    SandboxSpecInput,
};
pub use seccomp_default::runtime_default_profile;
pub use security::{capabilities, seccomp_profile, DEFAULT_CAPABILITIES};
pub use user::{resolve_user, GroupEntry, PasswdEntry, ResolvedUser, UserDb};
pub use userns::{pod_user_namespace, PodUserNamespace};

/// Annotation keys containerd sets on every container spec; tools and NRI
/// plugins read them.
pub mod annotations {
    /// "sandbox" or "container".
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    /// The container's CRI metadata name.
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    /// The pod sandbox id.
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    /// The pod's metadata name.
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    /// The pod's namespace.
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    /// The pod's uid.
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    /// The image reference the container was created from.
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
    /// The pod's log directory (on the sandbox spec).
    pub const SANDBOX_LOG_DIRECTORY: &str = "io.kubernetes.cri.sandbox-log-directory";
}

/// Errors from building a container spec. Most are the caller's fault and
/// map to gRPC `InvalidArgument` (see [`SpecBuildError::is_invalid_argument`]).
#[derive(Debug, thiserror::Error)]
pub enum SpecBuildError {
    /// A required part of the CRI request is absent.
    #[error("{what} is required")]
    MissingField {
        /// Which field.
        what: &'static str,
    },
    /// Neither the CRI config nor the image gives anything to run.
    #[error("no command specified: the container config and the image give neither command, args, entrypoint nor cmd")]
    NoCommand,
    /// A CRI env key is empty or holds `=` or NUL.
    #[error("invalid environment variable name {key:?}")]
    InvalidEnv {
        /// The key.
        key: String,
    },
    /// The working directory is not absolute.
    #[error("working directory {dir:?} is not absolute")]
    RelativeWorkingDir {
        /// The directory.
        dir: String,
    },
    /// A uid/gid does not fit in 32 bits.
    #[error("{what} {value} is not a valid id")]
    InvalidId {
        /// Which setting.
        what: &'static str,
        /// The value given.
        value: i64,
    },
    /// A user name is not in the image's /etc/passwd.
    #[error("user {user:?} not found in the image's /etc/passwd")]
    UnknownUser {
        /// The name.
        user: String,
    },
    /// A group name is not in the image's /etc/group.
    #[error("group {group:?} not found in the image's /etc/group")]
    UnknownGroup {
        /// The name.
        group: String,
    },
    /// runAsGroup without runAsUser or runAsUsername.
    #[error("runAsGroup {gid} is specified without runAsUser or runAsUsername")]
    RunAsGroupWithoutUser {
        /// The group given.
        gid: i64,
    },
    /// A privileged container in a pod that is not privileged.
    #[error("a privileged container is not allowed in a pod that is not privileged")]
    PrivilegedNotAllowed,
    /// A mount or device has a bad path or option combination.
    #[error("invalid mount {container_path:?}: {reason}")]
    InvalidMount {
        /// The destination in the container.
        container_path: String,
        /// What is wrong.
        reason: String,
    },
    /// Looking a device up on the host failed.
    #[error("failed to look up device {path}")]
    Device {
        /// The host path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A host path given as a device is not a character or block device.
    #[error("{path} is not a character or block device")]
    NotADevice {
        /// The host path.
        path: PathBuf,
    },
    /// A capability name is unknown.
    #[error("unknown capability {name:?}")]
    UnknownCapability {
        /// The name as given.
        name: String,
    },
    /// A seccomp profile reference is malformed.
    #[error("invalid seccomp profile {profile:?}: {reason}")]
    InvalidSeccompProfile {
        /// The reference as given.
        profile: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An AppArmor profile reference is malformed.
    #[error("invalid AppArmor profile {profile:?}")]
    InvalidAppArmorProfile {
        /// The reference as given.
        profile: String,
    },
    /// A Localhost AppArmor profile was asked for but AppArmor is off.
    #[error("AppArmor profile {profile:?} requested but AppArmor is not enabled on this host")]
    AppArmorUnavailable {
        /// The profile name.
        profile: String,
    },
    /// A Localhost seccomp profile cannot be read.
    #[error("failed to read seccomp profile {path}")]
    ReadSeccompProfile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A Localhost seccomp profile is not a valid OCI seccomp object.
    #[error("seccomp profile {path} is not a valid OCI seccomp profile")]
    ParseSeccompProfile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A sysctl is malformed or not isolated by the pod's namespaces.
    #[error("sysctl {key:?} refused")]
    Sysctl {
        /// The key.
        key: String,
        /// Why.
        #[source]
        source: berth_runtime::sysctl::SysctlError,
    },
    /// A sysctl value holds a newline or NUL.
    #[error("sysctl {key:?} has an invalid value")]
    InvalidSysctlValue {
        /// The key.
        key: String,
    },
    /// A resource value is out of range or malformed.
    #[error("invalid resource {what}: {value}")]
    InvalidResource {
        /// Which resource.
        what: String,
        /// The value given.
        value: String,
    },
    /// `unified` resources need cgroup v2.
    #[error("unified cgroup resources given but the host does not use cgroup v2")]
    UnifiedOnV1,
    /// A namespace the config asks to join has no path in the pod facts.
    #[error("the {what} namespace to join is unknown")]
    MissingNamespace {
        /// Which namespace.
        what: &'static str,
    },
    /// The container id cannot name a cgroup below the pod's.
    #[error("container id {id:?} is not a valid cgroup name")]
    InvalidContainerId {
        /// The id.
        id: String,
    },
    /// The pod cgroup parent is a systemd slice; only cgroupfs is supported.
    #[error("cgroup parent {parent:?} is a systemd slice, but berth uses the cgroupfs driver")]
    SystemdCgroupParent {
        /// The parent given by the kubelet.
        parent: String,
    },
    /// A user namespace mode the CRI gives no meaning to for pods.
    #[error("user namespace mode {mode} is not supported (only POD and NODE)")]
    UnsupportedUserNamespaceMode {
        /// The mode asked for.
        mode: &'static str,
    },
    /// The user namespace options are malformed.
    #[error("invalid user namespace options: {reason}")]
    InvalidUserNamespace {
        /// What is wrong.
        reason: String,
    },
    /// An oci-spec builder refused a value.
    #[error("failed to build the spec's {what}")]
    Build {
        /// Which part.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: OciSpecError,
    },
}

impl SpecBuildError {
    /// Whether the request itself is wrong (gRPC `InvalidArgument`), as
    /// opposed to a failure on this host.
    pub fn is_invalid_argument(&self) -> bool {
        !matches!(
            self,
            Self::Device { .. } | Self::ReadSeccompProfile { .. } | Self::Build { .. }
        )
    }
}

/// Host-side facts about the pod the container joins.
#[derive(Debug, Clone, Default)]
pub struct PodFacts {
    /// The pod sandbox id.
    pub sandbox_id: String,
    /// The pod's cgroup (cgroupfs path, e.g. `/kubepods/burstable/pod<uid>`);
    /// the container's is `<this>/<id>`.
    pub cgroup_parent: String,
    /// The pod's network namespace (None with hostNetwork).
    pub netns: Option<PathBuf>,
    /// The pod's IPC namespace (None with hostIPC).
    pub ipc: Option<PathBuf>,
    /// The pod's UTS namespace (None with hostNetwork).
    pub uts: Option<PathBuf>,
    /// The pod's shared PID namespace (for PID mode `POD`).
    pub pid: Option<PathBuf>,
    /// The pod's user namespace (for user namespace mode `POD`).
    pub user: Option<PathBuf>,
    /// The pod's /etc/hosts file.
    pub hosts_path: Option<PathBuf>,
    /// The pod's /etc/hostname file.
    pub hostname_path: Option<PathBuf>,
    /// The pod's /etc/resolv.conf file.
    pub resolv_conf_path: Option<PathBuf>,
    /// The pod's /dev/shm directory to bind (for hostIPC pods: `/dev/shm`;
    /// None: a private tmpfs for this container).
    pub shm_path: Option<PathBuf>,
}

/// Host capabilities the spec depends on.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// The host uses the cgroup v2 unified hierarchy.
    pub cgroup_v2: bool,
    /// The memory swap controller is available (memory.memsw / memory.swap.max).
    pub swap_controller: bool,
}

/// Everything [`build_container_spec`] needs.
pub struct ContainerSpecInput<'a> {
    /// The container id.
    pub container_id: &'a str,
    /// The CRI container config.
    pub config: &'a ContainerConfig,
    /// The pod's CRI config.
    pub sandbox_config: &'a PodSandboxConfig,
    /// The image config's `config` part (None: the image has none).
    pub image_config: Option<&'a oci_spec::image::Config>,
    /// The image name to record in the annotations.
    pub image_name: &'a str,
    /// The container's rootfs on the host.
    pub rootfs: &'a Path,
    /// Directory under which anonymous image volumes are placed.
    pub volumes_dir: &'a Path,
    /// The image's users and groups.
    pub users: &'a UserDb,
    /// Facts about the pod.
    pub pod: &'a PodFacts,
    /// For PID mode `TARGET`: the target container's PID namespace path.
    pub target_pid_ns: Option<&'a Path>,
    /// How devices are looked up on the host.
    pub devices: &'a dyn DeviceLookup,
    /// Host capabilities.
    pub options: &'a RuntimeOptions,
}

/// The built spec with the host-side work the caller must do first.
#[derive(Debug, Clone)]
pub struct BuiltContainerSpec {
    /// The OCI runtime spec.
    pub spec: Spec,
    /// Image volumes without a CRI mount: directories to create (and fill
    /// from the image) before the container starts.
    pub anonymous_volumes: Vec<AnonymousVolume>,
    /// hostPath sources of CRI mounts, to create (as directories) when missing.
    pub host_paths: Vec<PathBuf>,
}

fn ns(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ);
    n.set_path(path);
    n
}

fn mode(raw: i32) -> NamespaceMode {
    NamespaceMode::try_from(raw).unwrap_or(NamespaceMode::Pod)
}

fn namespaces(
    input: &ContainerSpecInput<'_>,
    opts: &NamespaceOption,
    user: Option<&PodUserNamespace>,
) -> Result<Vec<LinuxNamespace>, SpecBuildError> {
    let pod = input.pod;
    let need =
        |p: &Option<PathBuf>, what| p.clone().ok_or(SpecBuildError::MissingNamespace { what });
    let mut out = Vec::new();
    if user.is_some() {
        out.push(ns(
            LinuxNamespaceType::User,
            Some(need(&pod.user, "pod user")?),
        ));
    }
    out.push(ns(LinuxNamespaceType::Mount, None));
    match mode(opts.pid) {
        NamespaceMode::Container => out.push(ns(LinuxNamespaceType::Pid, None)),
        NamespaceMode::Pod => out.push(ns(
            LinuxNamespaceType::Pid,
            Some(need(&pod.pid, "pod PID")?),
        )),
        NamespaceMode::Target => {
            let p = input
                .target_pid_ns
                .ok_or(SpecBuildError::MissingNamespace { what: "target PID" })?;
            out.push(ns(LinuxNamespaceType::Pid, Some(p.to_path_buf())));
        }
        NamespaceMode::Node => {}
    }
    if mode(opts.ipc) != NamespaceMode::Node {
        out.push(ns(
            LinuxNamespaceType::Ipc,
            Some(need(&pod.ipc, "pod IPC")?),
        ));
    }
    // Kubernetes ties the UTS namespace to the network one (hostNetwork).
    if mode(opts.network) != NamespaceMode::Node {
        out.push(ns(
            LinuxNamespaceType::Uts,
            Some(need(&pod.uts, "pod UTS")?),
        ));
        out.push(ns(
            LinuxNamespaceType::Network,
            Some(need(&pod.netns, "pod network")?),
        ));
    }
    if input.options.cgroup_v2 {
        out.push(ns(LinuxNamespaceType::Cgroup, None));
    }
    Ok(out)
}

/// Refuses ids that cannot name a cgroup below the parent and systemd-slice
/// parents (berth drives cgroupfs only).
pub(crate) fn check_cgroup_names(id: &str, parent: &str) -> Result<(), SpecBuildError> {
    if id.is_empty() || id == "." || id == ".." || id.contains(['/', '\0']) {
        return Err(SpecBuildError::InvalidContainerId { id: id.to_string() });
    }
    if parent.ends_with(".slice") {
        return Err(SpecBuildError::SystemdCgroupParent {
            parent: parent.to_string(),
        });
    }
    Ok(())
}

fn spec_annotations(input: &ContainerSpecInput<'_>) -> HashMap<String, String> {
    let meta = input.sandbox_config.metadata.clone().unwrap_or_default();
    let name = input
        .config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    [
        (annotations::CONTAINER_TYPE, "container".to_string()),
        (annotations::CONTAINER_NAME, name),
        (annotations::SANDBOX_ID, input.pod.sandbox_id.clone()),
        (annotations::SANDBOX_NAME, meta.name),
        (annotations::SANDBOX_NAMESPACE, meta.namespace),
        (annotations::SANDBOX_UID, meta.uid),
        (annotations::IMAGE_NAME, input.image_name.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Builds the container's OCI spec (see the module docs for what the caller
/// does around it).
pub fn build_container_spec(
    input: &ContainerSpecInput<'_>,
) -> Result<BuiltContainerSpec, SpecBuildError> {
    let config = input.config;
    let image = input.image_config;
    let sc = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    let privileged = sc.is_some_and(|s| s.privileged);
    let pod_privileged = input
        .sandbox_config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.privileged);
    if privileged && !pod_privileged {
        return Err(SpecBuildError::PrivilegedNotAllowed);
    }
    if config.metadata.is_none() {
        return Err(SpecBuildError::MissingField {
            what: "container metadata",
        });
    }
    check_cgroup_names(input.container_id, &input.pod.cgroup_parent)?;
    let slice = |v: Option<&Vec<String>>| v.cloned().unwrap_or_default();

    let ns_opts = sc
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    let user_ns = userns::for_container(
        sc.and_then(|s| s.namespace_options.as_ref()),
        input.sandbox_config,
    )?;
    let namespaces = namespaces(input, &ns_opts, user_ns.as_ref())?;
    let has = |t| namespaces.iter().any(|n| n.typ() == t);
    let own_uts = has(LinuxNamespaceType::Uts);
    let mut hostname = input.sandbox_config.hostname.clone();
    if hostname.is_empty() && !own_uts {
        // hostNetwork pods come without a hostname: they have the node's.
        match nix::unistd::gethostname() {
            Ok(h) => hostname = h.to_string_lossy().into_owned(),
            Err(err) => tracing::warn!(%err, "cannot read the host name for HOSTNAME"),
        }
    }

    let args = process_args(
        &config.command,
        &config.args,
        &slice(image.and_then(|c| c.entrypoint().as_ref())),
        &slice(image.and_then(|c| c.cmd().as_ref())),
    )?;
    let env = process_env(
        &slice(image.and_then(|c| c.env().as_ref())),
        &config.envs,
        &hostname,
        config.tty,
    )?;
    let cwd = working_dir(
        &config.working_dir,
        image.and_then(|c| c.working_dir().as_deref()),
    )?;
    let image_user = image.and_then(|c| c.user().clone()).unwrap_or_default();
    let resolved = resolve_user(input.users, sc, &image_user)?;
    let mut user = User::default();
    user.set_uid(resolved.uid);
    user.set_gid(resolved.gid);
    user.set_additional_gids(Some(resolved.additional_gids.clone()));
    user.set_username(None);
    user.set_umask(None);

    let caps = capabilities(sc)?;
    let seccomp = seccomp_profile(sc, &caps)?;
    let mounted = mounts::build_mounts(
        input,
        privileged,
        mounts::IdmapPolicy {
            pod_userns: user_ns.as_ref(),
        },
    )?;
    let (devices, device_rules) = mounts::devices(input.devices, &config.devices, privileged)?;

    let (mut resources, oom_score_adj) = linux_resources(
        config.linux.as_ref().and_then(|l| l.resources.as_ref()),
        input.options,
    )?;
    resources.set_devices(Some(device_rules));

    let mut process = Process::default();
    process.set_terminal(Some(config.tty));
    process.set_console_size(None);
    process.set_user(user);
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    process.set_capabilities(Some(caps));
    process.set_rlimits(None);
    process.set_no_new_privileges(Some(sc.is_some_and(|s| s.no_new_privs)));
    process.set_apparmor_profile(security::apparmor_profile(
        sc,
        berth_runtime::lsm::apparmor_enabled(),
    )?);
    process.set_selinux_label(None);
    process.set_oom_score_adj(oom_score_adj);

    let mut linux = Linux::default();
    // Joined by path; the mappings are recorded as well (as containerd does).
    linux.set_uid_mappings(user_ns.as_ref().map(|u| u.uid_mappings.clone()));
    linux.set_gid_mappings(user_ns.as_ref().map(|u| u.gid_mappings.clone()));
    linux.set_namespaces(Some(namespaces.clone()));
    linux.set_devices(Some(devices));
    linux.set_resources(Some::<LinuxResources>(resources));
    linux.set_cgroups_path(Some(
        Path::new(&input.pod.cgroup_parent).join(input.container_id),
    ));
    linux.set_sysctl(Some(security::sysctls(
        input.sandbox_config,
        has(LinuxNamespaceType::Network),
        has(LinuxNamespaceType::Ipc),
        own_uts,
    )?));
    linux.set_seccomp(if privileged { None } else { seccomp });
    let (masked, readonly) = security::masked_and_readonly(sc, privileged);
    linux.set_masked_paths(Some(masked));
    linux.set_readonly_paths(Some(readonly));
    linux.set_rootfs_propagation(mounted.rootfs_propagation);
    linux.set_mount_label(None);
    linux.set_intel_rdt(None);
    linux.set_personality(None);

    let mut root = Root::default();
    root.set_path(input.rootfs.to_path_buf());
    root.set_readonly(Some(sc.is_some_and(|s| s.readonly_rootfs)));

    let mut spec = Spec::default();
    spec.set_version(berth_runtime::default_spec::OCI_VERSION.to_string());
    spec.set_root(Some(root));
    spec.set_hostname((own_uts && !hostname.is_empty()).then_some(hostname));
    spec.set_domainname(None);
    spec.set_mounts(Some(mounted.mounts));
    spec.set_process(Some(process));
    spec.set_hooks(None);
    spec.set_annotations(Some(spec_annotations(input)));
    spec.set_linux(Some(linux));
    Ok(BuiltContainerSpec {
        spec,
        anonymous_volumes: mounted.anonymous_volumes,
        host_paths: mounted.host_paths,
    })
}
