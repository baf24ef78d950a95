//! Whole-spec tests: namespaces, annotations, mounts, devices, privileged.

#![allow(clippy::unwrap_used)]

use std::io;
use std::path::{Path, PathBuf};

use berth_proto::cri::{
    ContainerConfig, ContainerMetadata, Device, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount,
    MountPropagation, NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
};
use oci_spec::image::ConfigBuilder;
use oci_spec::runtime::{LinuxDeviceType, LinuxNamespaceType};

use super::*;

struct FakeDevices;

impl DeviceLookup for FakeDevices {
    fn lookup(&self, path: &Path) -> io::Result<Option<DeviceInfo>> {
        match path.to_str() {
            Some("/dev/fuse") => Ok(Some(DeviceInfo {
                typ: LinuxDeviceType::C,
                major: 10,
                minor: 229,
                file_mode: 0o666,
                uid: 0,
                gid: 0,
            })),
            Some("/etc/passwd") => Ok(None),
            _ => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn host_devices(&self) -> io::Result<Vec<(PathBuf, DeviceInfo)>> {
        Ok(vec![(
            PathBuf::from("/dev/sda"),
            DeviceInfo {
                typ: LinuxDeviceType::B,
                major: 8,
                minor: 0,
                file_mode: 0o660,
                uid: 0,
                gid: 6,
            },
        )])
    }
}

fn pod_facts() -> PodFacts {
    PodFacts {
        sandbox_id: "sb1".into(),
        cgroup_parent: "/kubepods/pod1".into(),
        netns: Some("/run/berth/netns/sb1".into()),
        ipc: Some("/proc/10/ns/ipc".into()),
        uts: Some("/proc/10/ns/uts".into()),
        pid: Some("/proc/10/ns/pid".into()),
        user: None,
        hosts_path: Some("/var/lib/berth/pods/sb1/hosts".into()),
        hostname_path: Some("/var/lib/berth/pods/sb1/hostname".into()),
        resolv_conf_path: Some("/var/lib/berth/pods/sb1/resolv.conf".into()),
        shm_path: Some("/run/berth/pods/sb1/shm".into()),
    }
}

fn sandbox(privileged: bool) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web-host".into(),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container(sc: LinuxContainerSecurityContext) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        linux: Some(LinuxContainerConfig {
            resources: None,
            security_context: Some(sc),
        }),
        ..Default::default()
    }
}

fn image_config() -> oci_spec::image::Config {
    ConfigBuilder::default()
        .cmd(vec!["/bin/sh".to_string()])
        .volumes(vec!["/data".to_string(), "/cache/".to_string()])
        .build()
        .unwrap()
}

fn build_with_id(
    id: &str,
    config: &ContainerConfig,
    sandbox: &PodSandboxConfig,
    pod: &PodFacts,
    options: &RuntimeOptions,
) -> Result<BuiltContainerSpec, SpecBuildError> {
    let image = image_config();
    let users = UserDb::parse("root:x:0:0::/root:/bin/sh\n", "root:x:0:\n");
    build_container_spec(&ContainerSpecInput {
        container_id: id,
        config,
        sandbox_config: sandbox,
        image_config: Some(&image),
        image_name: "docker.io/library/busybox:latest",
        rootfs: Path::new("/var/lib/berth/rootfs/c1"),
        volumes_dir: Path::new("/var/lib/berth/volumes/c1"),
        users: &users,
        pod,
        target_pid_ns: Some(Path::new("/proc/20/ns/pid")),
        devices: &FakeDevices,
        options,
    })
}

fn build(
    config: &ContainerConfig,
    sandbox: &PodSandboxConfig,
    pod: &PodFacts,
    options: &RuntimeOptions,
) -> Result<BuiltContainerSpec, SpecBuildError> {
    build_with_id("c1", config, sandbox, pod, options)
}

fn ns_of(b: &BuiltContainerSpec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    b.spec
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .clone()
        .unwrap()
        .iter()
        .map(|n| (n.typ(), n.path().clone()))
        .collect()
}

fn mount_opts(b: &BuiltContainerSpec, dest: &str) -> Option<Vec<String>> {
    b.spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new(dest))
        .map(|m| m.options().clone().unwrap_or_default())
}

#[test]
fn basic_spec() {
    let b = build(
        &container(Default::default()),
        &sandbox(false),
        &pod_facts(),
        &RuntimeOptions::default(),
    )
    .unwrap();
    let spec = &b.spec;
    let process = spec.process().as_ref().unwrap();
    assert_eq!(process.args().clone().unwrap(), vec!["/bin/sh"]);
    assert_eq!(spec.hostname().as_deref(), Some("web-host"));
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(
        linux.cgroups_path().as_deref(),
        Some(Path::new("/kubepods/pod1/c1"))
    );
    let ann = spec.annotations().clone().unwrap();
    assert_eq!(ann[annotations::CONTAINER_TYPE], "container");
    assert_eq!(ann[annotations::CONTAINER_NAME], "app");
    assert_eq!(ann[annotations::SANDBOX_ID], "sb1");
    assert_eq!(ann[annotations::SANDBOX_NAME], "web");
    assert_eq!(
        ann[annotations::IMAGE_NAME],
        "docker.io/library/busybox:latest"
    );
    assert_eq!(mount_opts(&b, "/sys").unwrap().last().unwrap(), "ro");
    assert_eq!(
        mount_opts(&b, "/etc/hosts").unwrap(),
        vec!["rbind", "rprivate", "rw"]
    );
    assert!(mount_opts(&b, "/dev/shm").is_some());
    // Both image volumes are anonymous volumes.
    assert_eq!(b.anonymous_volumes.len(), 2);
    assert_eq!(b.anonymous_volumes[1].container_path, Path::new("/cache"));
    // Not privileged: deny-all device rule first, the default seccomp profile.
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    assert!(!rules[0].allow());
    assert!(linux.seccomp().is_none(), "no seccomp field: unconfined");
}

#[test]
fn namespace_modes() {
    let opts = RuntimeOptions::default();
    let with = |pid: NamespaceMode, net: NamespaceMode, ipc: NamespaceMode| {
        container(LinuxContainerSecurityContext {
            namespace_options: Some(NamespaceOption {
                pid: pid as i32,
                network: net as i32,
                ipc: ipc as i32,
                ..Default::default()
            }),
            ..Default::default()
        })
    };
    let b = build(
        &with(
            NamespaceMode::Container,
            NamespaceMode::Pod,
            NamespaceMode::Pod,
        ),
        &sandbox(false),
        &pod_facts(),
        &opts,
    )
    .unwrap();
    let ns = ns_of(&b);
    assert!(ns.contains(&(LinuxNamespaceType::Pid, None)));
    assert!(ns.contains(&(LinuxNamespaceType::Mount, None)));
    assert!(ns.contains(&(
        LinuxNamespaceType::Network,
        Some("/run/berth/netns/sb1".into())
    )));
    assert!(ns.contains(&(LinuxNamespaceType::Uts, Some("/proc/10/ns/uts".into()))));
    assert!(!ns.iter().any(|n| n.0 == LinuxNamespaceType::Cgroup));

    let b = build(
        &with(NamespaceMode::Pod, NamespaceMode::Node, NamespaceMode::Node),
        &sandbox(false),
        &pod_facts(),
        &RuntimeOptions {
            cgroup_v2: true,
            ..Default::default()
        },
    )
    .unwrap();
    let ns = ns_of(&b);
    assert!(ns.contains(&(LinuxNamespaceType::Pid, Some("/proc/10/ns/pid".into()))));
    assert!(ns.contains(&(LinuxNamespaceType::Cgroup, None)));
    for t in [
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
    ] {
        assert!(!ns.iter().any(|n| n.0 == t), "{t:?} is the host's");
    }
    assert_eq!(
        b.spec.hostname(),
        &None,
        "no hostname in the host UTS namespace"
    );

    let b = build(
        &with(
            NamespaceMode::Target,
            NamespaceMode::Pod,
            NamespaceMode::Pod,
        ),
        &sandbox(false),
        &pod_facts(),
        &opts,
    )
    .unwrap();
    assert!(ns_of(&b).contains(&(LinuxNamespaceType::Pid, Some("/proc/20/ns/pid".into()))));

    let b = build(
        &with(NamespaceMode::Node, NamespaceMode::Pod, NamespaceMode::Pod),
        &sandbox(false),
        &pod_facts(),
        &opts,
    )
    .unwrap();
    assert!(!ns_of(&b).iter().any(|n| n.0 == LinuxNamespaceType::Pid));

    let mut pod = pod_facts();
    pod.pid = None;
    assert!(matches!(
        build(
            &with(NamespaceMode::Pod, NamespaceMode::Pod, NamespaceMode::Pod),
            &sandbox(false),
            &pod,
            &opts
        )
        .unwrap_err(),
        SpecBuildError::MissingNamespace { .. }
    ));
}

#[test]
fn privileged_container() {
    let sc = LinuxContainerSecurityContext {
        privileged: true,
        masked_paths: vec!["/proc/kcore".into()],
        readonly_paths: vec!["/proc/sys".into()],
        ..Default::default()
    };
    let err = build(
        &container(sc.clone()),
        &sandbox(false),
        &pod_facts(),
        &Default::default(),
    )
    .unwrap_err();
    assert!(matches!(err, SpecBuildError::PrivilegedNotAllowed));
    let b = build(
        &container(sc),
        &sandbox(true),
        &pod_facts(),
        &Default::default(),
    )
    .unwrap();
    let linux = b.spec.linux().as_ref().unwrap();
    assert_eq!(linux.masked_paths().clone().unwrap(), Vec::<String>::new());
    assert_eq!(
        linux.readonly_paths().clone().unwrap(),
        Vec::<String>::new()
    );
    assert!(linux.seccomp().is_none());
    assert_eq!(mount_opts(&b, "/sys").unwrap().last().unwrap(), "rw");
    let devs = linux.devices().clone().unwrap();
    assert_eq!(devs[0].path(), Path::new("/dev/sda"));
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    assert!(rules.len() == 1 && rules[0].allow());
}

#[test]
fn masked_paths_follow_the_cri() {
    let sc = LinuxContainerSecurityContext {
        masked_paths: vec!["/proc/kcore".into()],
        readonly_paths: vec!["/proc/sys".into()],
        readonly_rootfs: true,
        no_new_privs: true,
        ..Default::default()
    };
    let b = build(
        &container(sc),
        &sandbox(false),
        &pod_facts(),
        &Default::default(),
    )
    .unwrap();
    let linux = b.spec.linux().as_ref().unwrap();
    assert_eq!(linux.masked_paths().clone().unwrap(), vec!["/proc/kcore"]);
    assert_eq!(linux.readonly_paths().clone().unwrap(), vec!["/proc/sys"]);
    assert_eq!(b.spec.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(
        b.spec.process().as_ref().unwrap().no_new_privileges(),
        Some(true)
    );
    assert_eq!(
        mount_opts(&b, "/etc/resolv.conf").unwrap().last().unwrap(),
        "ro"
    );
    // procMount Unmasked: the kubelet sends empty lists.
    let b = build(
        &container(Default::default()),
        &sandbox(false),
        &pod_facts(),
        &Default::default(),
    )
    .unwrap();
    let linux = b.spec.linux().as_ref().unwrap();
    assert!(linux.masked_paths().clone().unwrap().is_empty());
}

#[test]
fn cri_mounts_devices_and_volumes() {
    let mut c = container(Default::default());
    c.mounts = vec![
        Mount {
            container_path: "/data/sub".into(),
            host_path: "/srv/sub".into(),
            propagation: MountPropagation::PropagationHostToContainer as i32,
            ..Default::default()
        },
        Mount {
            container_path: "/data".into(),
            host_path: "/srv/data".into(),
            readonly: true,
            ..Default::default()
        },
        Mount {
            container_path: "/etc/hosts".into(),
            host_path: "/srv/hosts".into(),
            ..Default::default()
        },
    ];
    c.devices = vec![Device {
        container_path: "/dev/fuse".into(),
        host_path: "/dev/fuse".into(),
        permissions: "rw".into(),
    }];
    let b = build(&c, &sandbox(false), &pod_facts(), &Default::default()).unwrap();
    let mounts = b.spec.mounts().clone().unwrap();
    let dests: Vec<&Path> = mounts.iter().map(|m| m.destination().as_path()).collect();
    let pos = |d: &str| dests.iter().position(|x| *x == Path::new(d)).unwrap();
    assert!(pos("/data") < pos("/data/sub"), "parents first: {dests:?}");
    assert_eq!(
        dests
            .iter()
            .filter(|d| **d == Path::new("/etc/hosts"))
            .count(),
        1
    );
    assert_eq!(
        mounts[pos("/etc/hosts")].source().as_deref(),
        Some(Path::new("/srv/hosts"))
    );
    assert_eq!(
        b.spec
            .linux()
            .as_ref()
            .unwrap()
            .rootfs_propagation()
            .as_deref(),
        Some("rslave")
    );
    // /data is a CRI mount, so only /cache is anonymous.
    assert_eq!(b.anonymous_volumes.len(), 1);
    assert_eq!(b.host_paths.len(), 3);
    let linux = b.spec.linux().as_ref().unwrap();
    let dev = &linux.devices().clone().unwrap()[0];
    assert_eq!((dev.major(), dev.minor()), (10, 229));
    let rules = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .clone()
        .unwrap();
    assert!(rules[1].allow());
    assert_eq!(rules[1].access().as_deref(), Some("rw"));

    c.devices[0].host_path = "/etc/passwd".into();
    assert!(matches!(
        build(&c, &sandbox(false), &pod_facts(), &Default::default()).unwrap_err(),
        SpecBuildError::NotADevice { .. }
    ));
    c.devices[0].host_path = "/dev/missing".into();
    assert!(matches!(
        build(&c, &sandbox(false), &pod_facts(), &Default::default()).unwrap_err(),
        SpecBuildError::Device { .. }
    ));
}

#[test]
fn spec_serializes_and_seccomp_default_compiles() {
    let sc = LinuxContainerSecurityContext {
        seccomp: Some(berth_proto::cri::SecurityProfile {
            profile_type: berth_proto::cri::security_profile::ProfileType::RuntimeDefault as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let b = build(
        &container(sc),
        &sandbox(false),
        &pod_facts(),
        &Default::default(),
    )
    .unwrap();
    let seccomp = b.spec.linux().as_ref().unwrap().seccomp().clone().unwrap();
    berth_runtime::seccomp::compile(&seccomp).unwrap();
    let json = serde_json::to_string(&b.spec).unwrap();
    let back: oci_spec::runtime::Spec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, b.spec);
}

#[test]
fn cgroup_path_inputs_are_checked() {
    let c = container(Default::default());
    let opts = RuntimeOptions::default();
    for bad in ["", "..", "a/b"] {
        assert!(matches!(
            build_with_id(bad, &c, &sandbox(false), &pod_facts(), &opts).unwrap_err(),
            SpecBuildError::InvalidContainerId { .. }
        ));
    }
    let mut pod = pod_facts();
    pod.cgroup_parent = "kubepods-burstable-pod1.slice".into();
    assert!(matches!(
        build(&c, &sandbox(false), &pod, &opts).unwrap_err(),
        SpecBuildError::SystemdCgroupParent { .. }
    ));
}

fn userns_sandbox() -> PodSandboxConfig {
    let mut sb = sandbox(false);
    let map = berth_proto::cri::IdMapping {
        host_id: 100000,
        container_id: 0,
        length: 65536,
    };
    sb.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options = Some(NamespaceOption {
        pid: NamespaceMode::Container as i32,
        userns_options: Some(berth_proto::cri::UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: vec![map],
            gids: vec![map],
        }),
        ..Default::default()
    });
    sb
}

#[test]
fn user_namespace_pods_join_the_pinned_userns() {
    let sb = userns_sandbox();
    let mut pod = pod_facts();
    pod.user = Some("/run/berth/pods/sb1/bundle/ns/user".into());
    let mut c = container(LinuxContainerSecurityContext {
        namespace_options: sb
            .linux
            .as_ref()
            .unwrap()
            .security_context
            .as_ref()
            .unwrap()
            .namespace_options
            .clone(),
        ..Default::default()
    });
    c.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: "/srv/data".into(),
        ..Default::default()
    }];
    let b = build(&c, &sb, &pod, &Default::default()).unwrap();
    assert_eq!(
        ns_of(&b)[0],
        (
            LinuxNamespaceType::User,
            Some("/run/berth/pods/sb1/bundle/ns/user".into())
        )
    );
    let linux = b.spec.linux().as_ref().unwrap();
    assert_eq!(linux.uid_mappings().as_ref().unwrap()[0].host_id(), 100000);
    assert_eq!(linux.gid_mappings().as_ref().unwrap()[0].size(), 65536);
    // Volumes and anonymous volumes are id-mapped with the pod's mappings
    // (`idmap`: the bound mount only, not submounts an rbind brings along).
    let mounts = b.spec.mounts().clone().unwrap();
    for dest in ["/data", "/cache"] {
        let m = mounts
            .iter()
            .find(|m| m.destination() == Path::new(dest))
            .unwrap();
        let options = m.options().clone().unwrap();
        assert!(
            options.contains(&"idmap".to_string()),
            "{dest}: {options:?}"
        );
        assert!(
            options.contains(&"rbind".to_string()),
            "{dest}: {options:?}"
        );
        for maps in [m.uid_mappings(), m.gid_mappings()] {
            let maps = maps.as_ref().unwrap();
            assert_eq!(maps.len(), 1);
            assert_eq!(
                (maps[0].container_id(), maps[0].host_id(), maps[0].size()),
                (0, 100000, 65536),
                "{dest}: the pod's mapping"
            );
        }
    }
    assert_eq!(
        mount_opts(&b, "/data").unwrap(),
        vec!["rbind", "rprivate", "rw", "idmap"]
    );
    // Pod files and kernel filesystems are not id-mapped.
    for dest in ["/etc/hosts", "/proc", "/dev"] {
        let m = mounts_of(&b, dest);
        assert!(
            !m.options().clone().unwrap().contains(&"idmap".to_string()),
            "{dest}"
        );
        assert!(m.uid_mappings().is_none(), "{dest}");
    }

    // Explicit CRI mappings on a mount win over the pod's.
    c.mounts[0].uid_mappings = vec![berth_proto::cri::IdMapping {
        host_id: 5000,
        container_id: 0,
        length: 10,
    }];
    c.mounts[0].gid_mappings = c.mounts[0].uid_mappings.clone();
    let b = build(&c, &sb, &pod, &Default::default()).unwrap();
    let data = mounts_of(&b, "/data");
    assert_eq!(data.uid_mappings().as_ref().unwrap()[0].host_id(), 5000);
    assert_eq!(
        mounts_of(&b, "/cache").uid_mappings().as_ref().unwrap()[0].host_id(),
        100000
    );

    // No pinned userns in the pod facts: refused.
    pod.user = None;
    assert!(matches!(
        build(&c, &sb, &pod, &Default::default()).unwrap_err(),
        SpecBuildError::MissingNamespace { .. }
    ));
}

fn mounts_of(b: &BuiltContainerSpec, dest: &str) -> oci_spec::runtime::Mount {
    b.spec
        .mounts()
        .clone()
        .unwrap()
        .into_iter()
        .find(|m| m.destination() == Path::new(dest))
        .unwrap()
}

#[test]
fn explicit_mount_mappings_without_userns_are_idmapped() {
    let mut c = container(Default::default());
    let map = berth_proto::cri::IdMapping {
        host_id: 1000,
        container_id: 0,
        length: 1,
    };
    c.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: "/srv/data".into(),
        uid_mappings: vec![map],
        gid_mappings: vec![map],
        ..Default::default()
    }];
    let b = build(&c, &sandbox(false), &pod_facts(), &Default::default()).unwrap();
    let m = mounts_of(&b, "/data");
    assert_eq!(
        m.options().clone().unwrap(),
        vec!["rbind", "rprivate", "rw", "idmap"]
    );
    assert_eq!(m.gid_mappings().as_ref().unwrap()[0].host_id(), 1000);
    c.mounts[0].gid_mappings.clear();
    assert!(build(&c, &sandbox(false), &pod_facts(), &Default::default()).is_err());
}

#[test]
fn container_userns_mode_container_is_refused() {
    let c = container(LinuxContainerSecurityContext {
        namespace_options: Some(NamespaceOption {
            userns_options: Some(berth_proto::cri::UserNamespace {
                mode: NamespaceMode::Container as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let err = build(&c, &sandbox(false), &pod_facts(), &Default::default()).unwrap_err();
    assert!(
        matches!(err, SpecBuildError::UnsupportedUserNamespaceMode { .. }),
        "{err:?}"
    );
    assert!(err.is_invalid_argument());
}

#[test]
fn host_network_pod_files_and_hostname() {
    let mut sb = sandbox(false);
    sb.hostname.clear();
    let host_ns = NamespaceOption {
        network: NamespaceMode::Node as i32,
        ipc: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ..Default::default()
    };
    sb.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options = Some(host_ns.clone());
    // The facts as berthd derives them for this pod.
    let dir = Path::new("/run/berth/pods/sb1");
    let files = crate::pod_files::pod_file_paths(dir, &sb);
    let ns = pod_namespaces(&dir.join("bundle"), &sb, None);
    let pod = super::pod_facts("sb1", "/kubepods/pod1", ns, &files);
    let c = container(LinuxContainerSecurityContext {
        namespace_options: Some(host_ns),
        ..Default::default()
    });
    let b = build(&c, &sb, &pod, &Default::default()).unwrap();
    let nss = ns_of(&b);
    for t in [
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
    ] {
        assert!(!nss.iter().any(|n| n.0 == t), "{t:?} is the host's");
    }
    assert_eq!(b.spec.hostname(), &None);
    // The node's name in HOSTNAME, and the pod's files still bound.
    let host = nix::unistd::gethostname().unwrap();
    let env = b.spec.process().as_ref().unwrap().env().clone().unwrap();
    assert!(env.contains(&format!("HOSTNAME={}", host.to_string_lossy())));
    assert_eq!(
        mounts_of(&b, "/etc/hostname").source().as_deref(),
        Some(dir.join("hostname").as_path())
    );
    assert_eq!(
        mounts_of(&b, "/etc/hosts").source().as_deref(),
        Some(dir.join("hosts").as_path())
    );
    // hostIPC: the host's /dev/shm is bound.
    assert_eq!(
        mounts_of(&b, "/dev/shm").source().as_deref(),
        Some(Path::new("/dev/shm"))
    );
}
