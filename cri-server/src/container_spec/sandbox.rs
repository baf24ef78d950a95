//! The sandbox task's bundle spec: the pod's namespaces for the shim to
//! create and pin (no rootfs, no process), and where containers find them.
//!
//! The shim reads `linux.namespaces`: `network` with the path of the netns
//! berthd pinned (absent with hostNetwork), `ipc`/`uts` without a path =
//! create (absent = the host's), `pid` without a path only when the pod
//! shares one PID namespace (mode `POD`), `user` with `linux.uidMappings` /
//! `gidMappings` for a pod user namespace. It pins what it creates at
//! `<bundle>/ns/<type>`; [`pod_namespaces`] gives those paths to containers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use berth_proto::cri::{NamespaceMode, NamespaceOption, PodSandboxConfig};
use oci_spec::runtime::{Linux, LinuxNamespaceType, Spec};

use super::{annotations, ns, security, userns, PodFacts, SpecBuildError};
use crate::pod_files::PodFiles;

/// Everything [`build_sandbox_spec`] needs.
#[derive(Debug, Clone, Copy)]
pub struct SandboxSpecInput<'a> {
    /// The pod sandbox id (also the sandbox task id).
    pub pod_id: &'a str,
    /// The kubelet's pod config.
    pub config: &'a PodSandboxConfig,
    /// The pinned pod netns; None only with hostNetwork.
    pub netns: Option<&'a Path>,
    /// The pod cgroup parent (cgroupfs path), see [`pod_cgroup_parent`].
    pub cgroup_parent: &'a str,
}

/// Where a pod's namespaces are, for its containers to join.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNamespaces {
    /// The pod network namespace (None with hostNetwork).
    pub netns: Option<PathBuf>,
    /// The pinned IPC namespace (None with hostIPC).
    pub ipc: Option<PathBuf>,
    /// The pinned UTS namespace (None with hostNetwork).
    pub uts: Option<PathBuf>,
    /// The pinned shared PID namespace (only for PID mode `POD`).
    pub pid: Option<PathBuf>,
    /// The pinned user namespace (only for user namespace mode `POD`).
    pub user: Option<PathBuf>,
}

fn namespace_options(config: &PodSandboxConfig) -> NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

fn is_node(raw: i32) -> bool {
    NamespaceMode::try_from(raw).is_ok_and(|m| m == NamespaceMode::Node)
}

fn is_pod(raw: i32) -> bool {
    NamespaceMode::try_from(raw).is_ok_and(|m| m == NamespaceMode::Pod)
}

/// The kubelet's `linux.cgroup_parent`, or `default` (berthd's configured
/// parent) when the kubelet gives none.
pub fn pod_cgroup_parent(config: &PodSandboxConfig, default: &str) -> String {
    match config.linux.as_ref().map(|l| l.cgroup_parent.as_str()) {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => default.to_string(),
    }
}

/// `<bundle>/ns`: where the shim pins the namespaces it creates.
pub fn pinned_ns_dir(bundle: &Path) -> PathBuf {
    bundle.join("ns")
}

/// The pod's namespace paths as containers join them (no I/O: the shim
/// pins them when it creates the sandbox task).
pub fn pod_namespaces(
    bundle: &Path,
    config: &PodSandboxConfig,
    netns: Option<&Path>,
) -> PodNamespaces {
    let opts = namespace_options(config);
    let dir = pinned_ns_dir(bundle);
    let host_net = is_node(opts.network);
    let userns = opts.userns_options.as_ref().is_some_and(|u| is_pod(u.mode));
    PodNamespaces {
        netns: if host_net {
            None
        } else {
            netns.map(Path::to_path_buf)
        },
        ipc: (!is_node(opts.ipc)).then(|| dir.join("ipc")),
        uts: (!host_net).then(|| dir.join("uts")),
        pid: is_pod(opts.pid).then(|| dir.join("pid")),
        user: userns.then(|| dir.join("user")),
    }
}

/// The [`PodFacts`] of a pod for [`super::build_container_spec`].
pub fn pod_facts(
    pod_id: &str,
    cgroup_parent: &str,
    namespaces: PodNamespaces,
    files: &PodFiles,
) -> PodFacts {
    PodFacts {
        sandbox_id: pod_id.to_string(),
        cgroup_parent: cgroup_parent.to_string(),
        netns: namespaces.netns,
        ipc: namespaces.ipc,
        uts: namespaces.uts,
        pid: namespaces.pid,
        user: namespaces.user,
        hosts_path: Some(files.hosts.clone()),
        hostname_path: Some(files.hostname.clone()),
        resolv_conf_path: Some(files.resolv_conf.clone()),
        shm_path: Some(files.shm.clone()),
    }
}

fn sandbox_annotations(input: &SandboxSpecInput<'_>) -> HashMap<String, String> {
    let meta = input.config.metadata.clone().unwrap_or_default();
    [
        (annotations::CONTAINER_TYPE, "sandbox".to_string()),
        (annotations::SANDBOX_ID, input.pod_id.to_string()),
        (annotations::SANDBOX_NAME, meta.name),
        (annotations::SANDBOX_NAMESPACE, meta.namespace),
        (annotations::SANDBOX_UID, meta.uid),
        (
            annotations::SANDBOX_LOG_DIRECTORY,
            input.config.log_directory.clone(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Builds the sandbox task's `config.json` (see the module docs).
pub fn build_sandbox_spec(input: &SandboxSpecInput<'_>) -> Result<Spec, SpecBuildError> {
    let config = input.config;
    if config.metadata.is_none() {
        return Err(SpecBuildError::MissingField {
            what: "pod sandbox metadata",
        });
    }
    super::check_cgroup_names(input.pod_id, input.cgroup_parent)?;
    let opts = namespace_options(config);
    let user = userns::pod_user_namespace(config)?;
    let host_net = is_node(opts.network);
    let host_ipc = is_node(opts.ipc);

    let mut namespaces = Vec::new();
    if user.is_some() {
        // First: the shim creates the others inside it, so they belong to it.
        namespaces.push(ns(LinuxNamespaceType::User, None));
    }
    if !host_net {
        let path = input.netns.ok_or(SpecBuildError::MissingNamespace {
            what: "pod network",
        })?;
        namespaces.push(ns(LinuxNamespaceType::Network, Some(path.to_path_buf())));
        namespaces.push(ns(LinuxNamespaceType::Uts, None));
    }
    if !host_ipc {
        namespaces.push(ns(LinuxNamespaceType::Ipc, None));
    }
    if is_pod(opts.pid) {
        namespaces.push(ns(LinuxNamespaceType::Pid, None));
    }

    let mut linux = Linux::default();
    linux.set_namespaces(Some(namespaces));
    linux.set_uid_mappings(user.as_ref().map(|u| u.uid_mappings.clone()));
    linux.set_gid_mappings(user.as_ref().map(|u| u.gid_mappings.clone()));
    linux.set_sysctl(Some(security::sysctls(
        config, !host_net, !host_ipc, !host_net,
    )?));
    linux.set_cgroups_path(Some(Path::new(input.cgroup_parent).join(input.pod_id)));
    linux.set_resources(None);
    linux.set_devices(None);
    linux.set_masked_paths(None);
    linux.set_readonly_paths(None);
    linux.set_seccomp(None);
    linux.set_rootfs_propagation(None);
    linux.set_mount_label(None);
    linux.set_intel_rdt(None);
    linux.set_personality(None);

    let mut spec = Spec::default();
    spec.set_version(berth_runtime::default_spec::OCI_VERSION.to_string());
    spec.set_root(None);
    spec.set_process(None);
    spec.set_mounts(None);
    spec.set_hooks(None);
    spec.set_hostname((!host_net && !config.hostname.is_empty()).then(|| config.hostname.clone()));
    spec.set_domainname(None);
    spec.set_annotations(Some(sandbox_annotations(input)));
    spec.set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use berth_proto::cri::{
        IdMapping, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, PodSandboxMetadata,
        UserNamespace,
    };

    fn config(opts: NamespaceOption) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "uid-1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "web-0".into(),
            log_directory: "/var/log/pods/x".into(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: "/kubepods/pod-uid-1".into(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(opts),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn modes(net: NamespaceMode, pid: NamespaceMode, ipc: NamespaceMode) -> NamespaceOption {
        NamespaceOption {
            network: net as i32,
            pid: pid as i32,
            ipc: ipc as i32,
            ..Default::default()
        }
    }

    fn input<'a>(c: &'a PodSandboxConfig, netns: Option<&'a Path>) -> SandboxSpecInput<'a> {
        SandboxSpecInput {
            pod_id: "pod1",
            config: c,
            netns,
            cgroup_parent: "/kubepods/pod-uid-1",
        }
    }

    fn ns_list(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        spec.linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .clone()
            .unwrap()
            .into_iter()
            .map(|n| (n.typ(), n.path().clone()))
            .collect()
    }

    #[test]
    fn pod_namespaces_are_created_and_netns_joined() {
        use NamespaceMode::*;
        let c = config(modes(Pod, Pod, Pod));
        let netns = Path::new("/run/berth/netns/pod1");
        let spec = build_sandbox_spec(&input(&c, Some(netns))).unwrap();
        assert_eq!(
            ns_list(&spec),
            vec![
                (LinuxNamespaceType::Network, Some(netns.to_path_buf())),
                (LinuxNamespaceType::Uts, None),
                (LinuxNamespaceType::Ipc, None),
                (LinuxNamespaceType::Pid, None),
            ]
        );
        assert_eq!(spec.hostname().as_deref(), Some("web-0"));
        assert!(spec.process().is_none() && spec.root().is_none());
        let ann = spec.annotations().clone().unwrap();
        assert_eq!(ann[annotations::CONTAINER_TYPE], "sandbox");
        assert_eq!(ann[annotations::SANDBOX_ID], "pod1");
        assert_eq!(ann[annotations::SANDBOX_NAME], "web");
        assert_eq!(ann[annotations::SANDBOX_NAMESPACE], "default");
        assert_eq!(ann[annotations::SANDBOX_UID], "uid-1");
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/kubepods/pod-uid-1/pod1"))
        );
        assert!(linux.uid_mappings().is_none());
        // A JSON round trip keeps it (the shim reads config.json).
        let back: Spec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn host_namespaces_are_left_out() {
        use NamespaceMode::*;
        let c = config(modes(Node, Container, Node));
        let spec = build_sandbox_spec(&input(&c, None)).unwrap();
        assert!(ns_list(&spec).is_empty());
        assert_eq!(spec.hostname(), &None, "host UTS: no hostname");
        // Not hostNetwork but no netns: refused.
        let c = config(modes(Pod, Container, Pod));
        assert!(matches!(
            build_sandbox_spec(&input(&c, None)).unwrap_err(),
            SpecBuildError::MissingNamespace { .. }
        ));
    }

    #[test]
    fn user_namespace_comes_first_with_mappings() {
        use NamespaceMode::*;
        let mut o = modes(Pod, Container, Pod);
        let m = IdMapping {
            host_id: 1000,
            container_id: 0,
            length: 100000,
        };
        o.userns_options = Some(UserNamespace {
            mode: Pod as i32,
            uids: vec![m],
            gids: vec![m],
        });
        let c = config(o);
        let spec = build_sandbox_spec(&input(&c, Some(Path::new("/run/n")))).unwrap();
        assert_eq!(ns_list(&spec)[0], (LinuxNamespaceType::User, None));
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(linux.uid_mappings().as_ref().unwrap()[0].host_id(), 1000);
        assert_eq!(linux.gid_mappings().as_ref().unwrap()[0].size(), 100000);

        let mut o = modes(Pod, Container, Pod);
        o.userns_options = Some(UserNamespace {
            mode: Container as i32,
            ..Default::default()
        });
        let c = config(o);
        let err = build_sandbox_spec(&input(&c, Some(Path::new("/run/n")))).unwrap_err();
        assert!(err.is_invalid_argument(), "{err}");
    }

    #[test]
    fn sysctls_are_validated_against_the_pod_namespaces() {
        use NamespaceMode::*;
        let mut c = config(modes(Pod, Container, Pod));
        let l = c.linux.as_mut().unwrap();
        l.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
        l.sysctls
            .insert("kernel.shm_rmid_forced".into(), "1".into());
        let spec = build_sandbox_spec(&input(&c, Some(Path::new("/run/n")))).unwrap();
        assert_eq!(
            spec.linux()
                .as_ref()
                .unwrap()
                .sysctl()
                .as_ref()
                .unwrap()
                .len(),
            2
        );
        // hostNetwork: net.* would change the host.
        let mut c2 = c.clone();
        c2.linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
            .namespace_options = Some(modes(Node, Container, Pod));
        assert!(matches!(
            build_sandbox_spec(&input(&c2, None)).unwrap_err(),
            SpecBuildError::Sysctl { .. }
        ));
        c.linux
            .as_mut()
            .unwrap()
            .sysctls
            .insert("kernel.panic".into(), "1".into());
        assert!(build_sandbox_spec(&input(&c, Some(Path::new("/run/n")))).is_err());
    }

    #[test]
    fn bad_ids_and_parents_are_refused() {
        let c = config(NamespaceOption::default());
        let mut i = input(&c, Some(Path::new("/run/n")));
        i.pod_id = "../x";
        assert!(matches!(
            build_sandbox_spec(&i).unwrap_err(),
            SpecBuildError::InvalidContainerId { .. }
        ));
        let mut i = input(&c, Some(Path::new("/run/n")));
        i.cgroup_parent = "kubepods.slice";
        assert!(matches!(
            build_sandbox_spec(&i).unwrap_err(),
            SpecBuildError::SystemdCgroupParent { .. }
        ));
    }

    #[test]
    fn namespace_paths_and_cgroup_parent() {
        use NamespaceMode::*;
        let bundle = Path::new("/run/berth/pods/p/bundle");
        let netns = Path::new("/run/berth/netns/p");
        let mut o = modes(Pod, Pod, Pod);
        o.userns_options = Some(UserNamespace {
            mode: Pod as i32,
            ..Default::default()
        });
        let p = pod_namespaces(bundle, &config(o), Some(netns));
        assert_eq!(p.netns.as_deref(), Some(netns));
        assert_eq!(p.ipc, Some(bundle.join("ns/ipc")));
        assert_eq!(p.uts, Some(bundle.join("ns/uts")));
        assert_eq!(p.pid, Some(bundle.join("ns/pid")));
        assert_eq!(p.user, Some(bundle.join("ns/user")));
        let p = pod_namespaces(bundle, &config(modes(Node, Container, Node)), Some(netns));
        assert_eq!(p, PodNamespaces::default());

        let mut c = config(NamespaceOption::default());
        assert_eq!(pod_cgroup_parent(&c, "/berth"), "/kubepods/pod-uid-1");
        c.linux.as_mut().unwrap().cgroup_parent.clear();
        assert_eq!(pod_cgroup_parent(&c, "/berth"), "/berth");
    }
}
