//! `ContainerSpec` (what `docker create` takes) → the CRI pod sandbox and
//! container configs berthd runs it as, with Docker's rules for the
//! command, ports, volumes and limits. Pure: the free-port picker and the
//! paths come in, nothing touches the system.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use berth_proto::berth::v1 as api;
use berth_proto::cri;

use crate::pods::berth::{
    MANAGED_LABEL, NAME_LABEL, NETWORK_ANNOTATION, PIDS_LIMIT_ANNOTATION, STOP_SIGNAL_ANNOTATION,
};

/// The CRI pod namespace of berth's containers.
pub const POD_NAMESPACE: &str = "berth";
/// CPU period used with `--cpus` (as Docker: 100 ms).
pub const CPU_PERIOD: i64 = 100_000;

/// Errors translating a spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    /// Neither the spec nor the image gives a command.
    #[error("no command specified: the image has no ENTRYPOINT or CMD; give a command")]
    NoCommand,
    /// A value is malformed.
    #[error("invalid {field} {value:?}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// No free host port could be found.
    #[error("no free host port for {container_port}/{protocol}: {reason}")]
    NoFreePort {
        /// The container port.
        container_port: u32,
        /// The protocol.
        protocol: String,
        /// Why.
        reason: String,
    },
}

/// What the image contributes (from its OCI config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    /// ENTRYPOINT.
    pub entrypoint: Vec<String>,
    /// CMD.
    pub cmd: Vec<String>,
    /// EXPOSE (`80/tcp`).
    pub exposed_ports: Vec<String>,
    /// VOLUME paths.
    pub volumes: Vec<String>,
}

impl ImageDefaults {
    /// From the image config JSON (missing parts empty).
    pub fn from_config_json(json: &str) -> ImageDefaults {
        let Ok(img) = serde_json::from_str::<oci_spec::image::ImageConfiguration>(json) else {
            return ImageDefaults::default();
        };
        let Some(c) = img.config() else {
            return ImageDefaults::default();
        };
        ImageDefaults {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            exposed_ports: c.exposed_ports().clone().unwrap_or_default(),
            volumes: c.volumes().clone().unwrap_or_default(),
        }
    }
}

/// A volume a container uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeUse {
    /// The volume name.
    pub name: String,
    /// Made for this container (VOLUME, `-v /path`).
    pub anonymous: bool,
    /// Where it is mounted in the container.
    pub destination: String,
}

/// The translation of one spec.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The pod sandbox config.
    pub pod: cri::PodSandboxConfig,
    /// The container config.
    pub container: cri::ContainerConfig,
    /// The spec as stored: host ports bound, anonymous volumes named.
    pub spec: api::ContainerSpec,
    /// Volumes to make (if missing) before the container.
    pub volumes: Vec<VolumeUse>,
    /// The Docker entrypoint and cmd the container runs.
    pub entrypoint: Vec<String>,
    /// See `entrypoint`.
    pub cmd: Vec<String>,
}

/// What the translation needs besides the spec.
pub struct PlanInput<'a> {
    /// The container name.
    pub name: &'a str,
    /// The pod uid (random).
    pub pod_uid: &'a str,
    /// The image.
    pub image: &'a ImageDefaults,
    /// `<root>/volumes`.
    pub volumes_dir: &'a Path,
    /// The pod's log directory.
    pub log_dir: &'a Path,
    /// Picks a free host port for (host ip, protocol).
    pub free_port: &'a mut dyn FnMut(&str, &str) -> Result<u32, String>,
    /// Makes a new anonymous volume name.
    pub new_volume_name: &'a mut dyn FnMut() -> String,
}

/// The host directory holding a volume's data.
pub fn volume_data_dir(volumes_dir: &Path, name: &str) -> PathBuf {
    volumes_dir.join(name).join("_data")
}

/// Docker's rule: `entrypoint_set` replaces ENTRYPOINT (and drops the
/// image's CMD when no cmd is given), a non-empty cmd replaces CMD.
pub fn effective_command(
    spec: &api::ContainerSpec,
    image: &ImageDefaults,
) -> (Vec<String>, Vec<String>) {
    let entrypoint = if spec.entrypoint_set {
        spec.entrypoint.clone()
    } else {
        image.entrypoint.clone()
    };
    let cmd = if !spec.cmd.is_empty() {
        spec.cmd.clone()
    } else if spec.entrypoint_set {
        Vec::new()
    } else {
        image.cmd.clone()
    };
    (entrypoint, cmd)
}

fn protocol_of(p: &str) -> Result<(cri::Protocol, &'static str), SpecError> {
    match p.to_ascii_lowercase().as_str() {
        "" | "tcp" => Ok((cri::Protocol::Tcp, "tcp")),
        "udp" => Ok((cri::Protocol::Udp, "udp")),
        "sctp" => Ok((cri::Protocol::Sctp, "sctp")),
        _ => Err(SpecError::Invalid {
            field: "port protocol",
            value: p.to_string(),
            reason: "expected tcp, udp or sctp",
        }),
    }
}

/// Parses an EXPOSE entry (`80`, `80/tcp`, `53/udp`).
fn exposed(entry: &str) -> Result<(u32, String), SpecError> {
    let (port, proto) = entry.split_once('/').unwrap_or((entry, "tcp"));
    let port: u32 = port
        .parse()
        .ok()
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| SpecError::Invalid {
            field: "exposed port",
            value: entry.to_string(),
            reason: "not a port number",
        })?;
    Ok((port, protocol_of(proto)?.1.to_string()))
}

fn resolve_ports(
    spec: &api::ContainerSpec,
    image: &ImageDefaults,
    free_port: &mut dyn FnMut(&str, &str) -> Result<u32, String>,
) -> Result<Vec<api::PortMapping>, SpecError> {
    let mut wanted: Vec<api::PortMapping> = spec.ports.clone();
    if spec.publish_all {
        for e in &image.exposed_ports {
            let (port, proto) = exposed(e)?;
            if !wanted.iter().any(|p| {
                p.container_port == port
                    && protocol_of(&p.protocol).map(|x| x.1) == Ok(proto.as_str())
            }) {
                wanted.push(api::PortMapping {
                    host_ip: String::new(),
                    host_port: 0,
                    container_port: port,
                    protocol: proto,
                });
            }
        }
    }
    let mut out = Vec::with_capacity(wanted.len());
    for mut p in wanted {
        if !(1..=65535).contains(&p.container_port) {
            return Err(SpecError::Invalid {
                field: "container port",
                value: p.container_port.to_string(),
                reason: "must be 1-65535",
            });
        }
        if p.host_port > 65535 {
            return Err(SpecError::Invalid {
                field: "host port",
                value: p.host_port.to_string(),
                reason: "must be 0-65535",
            });
        }
        let proto = protocol_of(&p.protocol)?.1.to_string();
        p.protocol = proto;
        if p.host_port == 0 {
            p.host_port =
                free_port(&p.host_ip, &p.protocol).map_err(|reason| SpecError::NoFreePort {
                    container_port: p.container_port,
                    protocol: p.protocol.clone(),
                    reason,
                })?;
        }
        out.push(p);
    }
    Ok(out)
}

/// Splits `-u`: `uid`, `uid:gid`, `name`, `name:group`.
fn user_fields(user: &str, sc: &mut cri::LinuxContainerSecurityContext) {
    let user = user.trim();
    if user.is_empty() {
        return;
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let uid = u.parse::<i64>().ok();
    let gid = g.and_then(|g| g.parse::<i64>().ok());
    match (uid, g, gid) {
        (Some(uid), None, _) => sc.run_as_user = Some(cri::Int64Value { value: uid }),
        (Some(uid), Some(_), Some(gid)) => {
            sc.run_as_user = Some(cri::Int64Value { value: uid });
            sc.run_as_group = Some(cri::Int64Value { value: gid });
        }
        // A name, or a group name: the spec builder resolves both from the
        // image's /etc/passwd and /etc/group.
        _ => sc.run_as_username = user.to_string(),
    }
}

fn env_list(env: &[String]) -> Result<Vec<cri::KeyValue>, SpecError> {
    env.iter()
        .map(|e| {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            if k.is_empty() {
                return Err(SpecError::Invalid {
                    field: "environment variable",
                    value: e.clone(),
                    reason: "empty name",
                });
            }
            Ok(cri::KeyValue {
                key: k.to_string(),
                value: v.to_string(),
            })
        })
        .collect()
}

fn mounts(
    spec: &api::ContainerSpec,
    image: &ImageDefaults,
    new_volume_name: &mut dyn FnMut() -> String,
) -> Result<(Vec<api::Mount>, Vec<VolumeUse>), SpecError> {
    let mut out = Vec::new();
    let mut uses = Vec::new();
    let mut seen = BTreeSet::new();
    for m in &spec.mounts {
        let dest = m.destination.trim_end_matches('/');
        if !m.destination.starts_with('/') {
            return Err(SpecError::Invalid {
                field: "mount destination",
                value: m.destination.clone(),
                reason: "must be an absolute path",
            });
        }
        let dest = if dest.is_empty() { "/" } else { dest };
        if !seen.insert(dest.to_string()) {
            return Err(SpecError::Invalid {
                field: "mount destination",
                value: m.destination.clone(),
                reason: "duplicate mount point",
            });
        }
        let bind = m.kind == "bind" || m.source.starts_with('/');
        let mut m = m.clone();
        m.destination = dest.to_string();
        if bind {
            if !m.source.starts_with('/') {
                return Err(SpecError::Invalid {
                    field: "bind mount source",
                    value: m.source.clone(),
                    reason: "must be an absolute host path",
                });
            }
            m.kind = "bind".into();
        } else {
            let anonymous = m.source.is_empty();
            if anonymous {
                m.source = new_volume_name();
            } else {
                super::names::validate_volume_name(&m.source)?;
            }
            m.kind = "volume".into();
            uses.push(VolumeUse {
                name: m.source.clone(),
                anonymous,
                destination: m.destination.clone(),
            });
        }
        out.push(m);
    }
    for v in &image.volumes {
        let dest = v.trim_end_matches('/');
        let dest = if dest.is_empty() { "/" } else { dest };
        if !seen.insert(dest.to_string()) {
            continue;
        }
        let name = new_volume_name();
        uses.push(VolumeUse {
            name: name.clone(),
            anonymous: true,
            destination: dest.to_string(),
        });
        out.push(api::Mount {
            source: name,
            destination: dest.to_string(),
            read_only: false,
            kind: "volume".into(),
        });
    }
    Ok((out, uses))
}

/// Translates a spec; the returned spec has host ports and anonymous
/// volume names filled in.
pub fn plan(spec: &api::ContainerSpec, input: &mut PlanInput<'_>) -> Result<Plan, SpecError> {
    let (entrypoint, cmd) = effective_command(spec, input.image);
    let process: Vec<String> = entrypoint.iter().chain(cmd.iter()).cloned().collect();
    if process.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let network = match spec.network.as_str() {
        "" | "bridge" | "default" => "bridge",
        "host" => "host",
        "none" => "none",
        other => {
            return Err(SpecError::Invalid {
                field: "network",
                value: other.to_string(),
                reason: "berth supports bridge, host and none",
            })
        }
    };
    if spec.memory_limit < 0 || spec.nano_cpus < 0 || spec.pids_limit < 0 {
        return Err(SpecError::Invalid {
            field: "resource limit",
            value: format!(
                "memory={} nano_cpus={} pids={}",
                spec.memory_limit, spec.nano_cpus, spec.pids_limit
            ),
            reason: "must not be negative",
        });
    }
    if let Some(r) = &spec.restart {
        if !matches!(
            r.name.as_str(),
            "" | "no" | "always" | "unless-stopped" | "on-failure"
        ) {
            return Err(SpecError::Invalid {
                field: "restart policy",
                value: r.name.clone(),
                reason: "expected no, always, unless-stopped or on-failure[:N]",
            });
        }
        if r.name != "on-failure" && r.maximum_retry_count > 0 {
            return Err(SpecError::Invalid {
                field: "restart policy",
                value: format!("{}:{}", r.name, r.maximum_retry_count),
                reason: "only on-failure takes a maximum retry count",
            });
        }
        if spec.auto_remove && !matches!(r.name.as_str(), "" | "no") {
            return Err(SpecError::Invalid {
                field: "restart policy",
                value: r.name.clone(),
                reason: "conflicts with auto-remove (--rm)",
            });
        }
    }
    if !spec.stop_signal.is_empty()
        && crate::pods::container::parse_signal(&spec.stop_signal).is_none()
    {
        return Err(SpecError::Invalid {
            field: "stop signal",
            value: spec.stop_signal.clone(),
            reason: "unknown signal",
        });
    }
    let ports = if network == "bridge" {
        resolve_ports(spec, input.image, input.free_port)?
    } else {
        Vec::new()
    };
    let (mounts, volumes) = mounts(spec, input.image, input.new_volume_name)?;

    let mut labels: HashMap<String, String> = spec.labels.clone();
    labels.insert(MANAGED_LABEL.into(), "true".into());
    labels.insert(NAME_LABEL.into(), input.name.to_string());

    let ns_network = if network == "host" {
        cri::NamespaceMode::Node
    } else {
        cri::NamespaceMode::Pod
    };
    // `--init`: the shared pod PID namespace has the shim's pod init as
    // PID 1, which reaps every orphan; the command runs as its child.
    let ns_pid = if spec.init {
        cri::NamespaceMode::Pod
    } else {
        cri::NamespaceMode::Container
    };
    let namespaces = cri::NamespaceOption {
        network: ns_network as i32,
        pid: ns_pid as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    };
    let mut pod_annotations = HashMap::new();
    if network == "none" {
        pod_annotations.insert(NETWORK_ANNOTATION.to_string(), "none".to_string());
    }
    let hostname = if network == "host" {
        String::new()
    } else if spec.hostname.is_empty() {
        input.name.to_string()
    } else {
        spec.hostname.clone()
    };
    let pod = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: input.name.to_string(),
            uid: input.pod_uid.to_string(),
            namespace: POD_NAMESPACE.to_string(),
            attempt: 0,
        }),
        hostname,
        log_directory: input.log_dir.to_string_lossy().into_owned(),
        port_mappings: ports
            .iter()
            .map(|p| cri::PortMapping {
                protocol: protocol_of(&p.protocol).map(|x| x.0 as i32).unwrap_or(0),
                container_port: p.container_port as i32,
                host_port: p.host_port as i32,
                host_ip: p.host_ip.clone(),
            })
            .collect(),
        labels: labels.clone(),
        annotations: pod_annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces.clone()),
                privileged: spec.privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    let mut sc = cri::LinuxContainerSecurityContext {
        privileged: spec.privileged,
        readonly_rootfs: spec.read_only_rootfs,
        namespace_options: Some(namespaces),
        ..Default::default()
    };
    if !spec.cap_add.is_empty() || !spec.cap_drop.is_empty() {
        sc.capabilities = Some(cri::Capability {
            add_capabilities: spec.cap_add.clone(),
            drop_capabilities: spec.cap_drop.clone(),
            ..Default::default()
        });
    }
    user_fields(&spec.user, &mut sc);
    let resources = cri::LinuxContainerResources {
        memory_limit_in_bytes: spec.memory_limit,
        cpu_period: if spec.nano_cpus > 0 { CPU_PERIOD } else { 0 },
        cpu_quota: spec.nano_cpus / (1_000_000_000 / CPU_PERIOD),
        ..Default::default()
    };
    let mut annotations = HashMap::new();
    if !spec.stop_signal.is_empty() {
        annotations.insert(STOP_SIGNAL_ANNOTATION.to_string(), spec.stop_signal.clone());
    }
    if spec.pids_limit > 0 {
        annotations.insert(
            PIDS_LIMIT_ANNOTATION.to_string(),
            spec.pids_limit.to_string(),
        );
    }
    let cri_mounts = mounts
        .iter()
        .map(|m| cri::Mount {
            container_path: m.destination.clone(),
            host_path: if m.kind == "volume" {
                volume_data_dir(input.volumes_dir, &m.source)
                    .to_string_lossy()
                    .into_owned()
            } else {
                m.source.clone()
            },
            readonly: m.read_only,
            ..Default::default()
        })
        .collect();
    let container = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: input.name.to_string(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: spec.image.clone(),
            ..Default::default()
        }),
        // The whole process goes in `command` so that the CRI's own
        // entrypoint/cmd merge (which cannot clear an ENTRYPOINT) never applies.
        command: process,
        args: Vec::new(),
        working_dir: spec.working_dir.clone(),
        envs: env_list(&spec.env)?,
        mounts: cri_mounts,
        labels,
        annotations,
        log_path: "container.log".into(),
        stdin: spec.open_stdin,
        stdin_once: spec.stdin_once,
        tty: spec.tty,
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(sc),
        }),
        ..Default::default()
    };
    let mut stored = spec.clone();
    stored.name = input.name.to_string();
    stored.ports = ports;
    stored.mounts = mounts;
    Ok(Plan {
        pod,
        container,
        spec: stored,
        volumes,
        entrypoint,
        cmd,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn image() -> ImageDefaults {
        ImageDefaults {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into()],
            exposed_ports: vec!["80/tcp".into(), "53/udp".into()],
            volumes: vec!["/data".into()],
        }
    }

    fn run(spec: &api::ContainerSpec, img: &ImageDefaults) -> Result<Plan, SpecError> {
        let mut next = 40000;
        let mut free = |_: &str, _: &str| {
            next += 1;
            Ok(next)
        };
        let mut n = 0;
        let mut vol = || {
            n += 1;
            format!("anon{n}")
        };
        plan(
            spec,
            &mut PlanInput {
                name: "web",
                pod_uid: "uid",
                image: img,
                volumes_dir: Path::new("/r/volumes"),
                log_dir: Path::new("/r/logs/uid"),
                free_port: &mut free,
                new_volume_name: &mut vol,
            },
        )
    }

    #[test]
    fn docker_command_rules() {
        let img = image();
        let mut s = api::ContainerSpec::default();
        assert_eq!(
            effective_command(&s, &img),
            (vec!["/entry".into()], vec!["serve".into()])
        );
        s.cmd = vec!["sh".into()];
        assert_eq!(
            effective_command(&s, &img),
            (vec!["/entry".into()], vec!["sh".into()])
        );
        s.cmd.clear();
        s.entrypoint_set = true;
        s.entrypoint = vec!["/bin/true".into()];
        // A new entrypoint drops the image's CMD.
        assert_eq!(
            effective_command(&s, &img),
            (vec!["/bin/true".into()], vec![])
        );
        s.entrypoint.clear();
        s.cmd = vec!["ls".into(), "-l".into()];
        let p = run(&s, &img).unwrap();
        assert_eq!(p.container.command, vec!["ls", "-l"]);
        assert!(p.container.args.is_empty());
        s.cmd.clear();
        assert_eq!(run(&s, &img).unwrap_err(), SpecError::NoCommand);
    }

    #[test]
    fn ports_volumes_limits_and_labels() {
        let img = image();
        let s = api::ContainerSpec {
            image: "img".into(),
            ports: vec![api::PortMapping {
                host_ip: "127.0.0.1".into(),
                host_port: 8080,
                container_port: 80,
                protocol: String::new(),
            }],
            publish_all: true,
            mounts: vec![
                api::Mount {
                    source: "/host".into(),
                    destination: "/h/".into(),
                    read_only: true,
                    kind: String::new(),
                },
                api::Mount {
                    source: "named".into(),
                    destination: "/n".into(),
                    ..Default::default()
                },
            ],
            memory_limit: 1 << 20,
            nano_cpus: 1_500_000_000,
            pids_limit: 10,
            user: "1000:1000".into(),
            stop_signal: "SIGINT".into(),
            labels: [("a".to_string(), "b".to_string())].into(),
            env: vec!["A=1".into(), "B".into()],
            ..Default::default()
        };
        let p = run(&s, &img).unwrap();
        // 80/tcp is published already; 53/udp gets a free port.
        assert_eq!(p.spec.ports.len(), 2);
        assert_eq!(p.spec.ports[0].protocol, "tcp");
        assert_eq!(p.spec.ports[1].container_port, 53);
        assert_eq!(p.spec.ports[1].host_port, 40001);
        assert_eq!(p.pod.port_mappings[1].protocol, cri::Protocol::Udp as i32);
        let m = &p.container.mounts;
        assert_eq!(m[0].host_path, "/host");
        assert_eq!(m[0].container_path, "/h");
        assert!(m[0].readonly);
        assert_eq!(m[1].host_path, "/r/volumes/named/_data");
        assert_eq!(m[2].container_path, "/data");
        assert_eq!(m[2].host_path, "/r/volumes/anon1/_data");
        assert_eq!(
            p.volumes
                .iter()
                .map(|v| (v.name.as_str(), v.anonymous))
                .collect::<Vec<_>>(),
            vec![("named", false), ("anon1", true)]
        );
        let linux = p.container.linux.as_ref().unwrap();
        let r = linux.resources.as_ref().unwrap();
        assert_eq!((r.cpu_period, r.cpu_quota), (100_000, 150_000));
        assert_eq!(r.memory_limit_in_bytes, 1 << 20);
        let sc = linux.security_context.as_ref().unwrap();
        assert_eq!(sc.run_as_user.as_ref().unwrap().value, 1000);
        assert_eq!(sc.run_as_group.as_ref().unwrap().value, 1000);
        assert_eq!(p.container.annotations[PIDS_LIMIT_ANNOTATION], "10");
        assert_eq!(p.container.annotations[STOP_SIGNAL_ANNOTATION], "SIGINT");
        assert_eq!(p.container.labels[MANAGED_LABEL], "true");
        assert_eq!(p.pod.labels[NAME_LABEL], "web");
        assert_eq!(p.container.labels["a"], "b");
        assert_eq!(p.container.envs[1].key, "B");
        assert_eq!(p.pod.metadata.as_ref().unwrap().namespace, POD_NAMESPACE);
    }

    /// The pod's namespace options.
    fn pod_namespaces(p: Plan) -> cri::NamespaceOption {
        p.pod
            .linux
            .unwrap()
            .security_context
            .unwrap()
            .namespace_options
            .unwrap()
    }

    #[test]
    fn network_modes_and_validation() {
        let img = image();
        let mut s = api::ContainerSpec {
            network: "host".into(),
            publish_all: true,
            ..Default::default()
        };
        let p = run(&s, &img).unwrap();
        assert!(p.pod.port_mappings.is_empty());
        let ns = pod_namespaces(p);
        assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
        s.network = "none".into();
        s.init = true;
        let p = run(&s, &img).unwrap();
        assert_eq!(p.pod.annotations[NETWORK_ANNOTATION], "none");
        let ns = pod_namespaces(p);
        assert_eq!(ns.pid, cri::NamespaceMode::Pod as i32);
        s.network = "overlay".into();
        assert!(run(&s, &img).is_err());
        s.network.clear();
        s.user = "nobody:users".into();
        let p = run(&s, &img).unwrap();
        let sc = p.container.linux.unwrap().security_context.unwrap();
        assert_eq!(sc.run_as_username, "nobody:users");
        s.restart = Some(api::RestartPolicy {
            name: "always".into(),
            maximum_retry_count: 3,
        });
        assert!(run(&s, &img).is_err());
        s.restart = Some(api::RestartPolicy {
            name: "always".into(),
            maximum_retry_count: 0,
        });
        s.auto_remove = true;
        assert!(run(&s, &img).is_err());
        s.auto_remove = false;
        s.mounts = vec![api::Mount {
            source: "../x".into(),
            destination: "/x".into(),
            ..Default::default()
        }];
        assert!(run(&s, &img).is_err());
        s.mounts[0].source = "ok".into();
        s.mounts[0].destination = "rel".into();
        assert!(run(&s, &img).is_err());
        s.mounts.clear();
        s.stop_signal = "SIGNOPE".into();
        assert!(run(&s, &img).is_err());
    }
}
