//! Pod user namespaces (`hostUsers: false`, CRI `NamespaceOption.userns_options`).
//!
//! A pod with user namespace mode `POD` gets one user namespace, created by the
//! shim from the sandbox spec's mappings and pinned at `<bundle>/ns/user`;
//! every container of the pod joins it by path. Mode `NODE` (or no options)
//! means the host's user namespace. `CONTAINER` and `TARGET` are refused, as
//! the CRI defines no meaning for them with user namespaces.
//!
//! What the id mappings mean for files: without id-mapped mounts a file
//! owned by uid 0 on the host's disk appears as the overflow uid (`nobody`)
//! inside the pod. So the container spec id-maps CRI mounts and anonymous
//! image volumes with the pod's mappings (`idmap` plus the mount's
//! `uidMappings`/`gidMappings`): on-disk uid `n` appears as container uid `n`,
//! and what the pod writes there lands as the same `n` on disk, as with
//! containerd 2 (berth-runtime makes these mounts before it joins the pod's
//! user namespace, where it could not). The rootfs is id-mapped by whoever
//! mounts it: berthd asks the shim for an overlay with containerd 2's
//! `uidmap=`/`gidmap=` options, and the shim id-maps the image layers (an
//! overlay mount cannot be id-mapped itself); the writable layer stays
//! unmapped, its root directory owned by [`PodUserNamespace::host_root_uid`]
//! / [`PodUserNamespace::host_root_gid`], so the container's writes keep the
//! pod's host ids. Mount destinations such as `/etc/hosts` are made by
//! berth-runtime before it enters the user namespace
//! (`berth_runtime::rootfs::create_mount_targets`).

use berth_proto::cri::{IdMapping, NamespaceMode, NamespaceOption, PodSandboxConfig};
use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};

use super::SpecBuildError;

/// The id mappings of a pod's user namespace (exactly one uid and one gid
/// range, each starting at container id 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUserNamespace {
    /// uid ranges, container id → host id.
    pub uid_mappings: Vec<LinuxIdMapping>,
    /// gid ranges, container id → host id.
    pub gid_mappings: Vec<LinuxIdMapping>,
}

impl PodUserNamespace {
    /// The host uid the container's root maps to (the owner its rootfs needs).
    pub fn host_root_uid(&self) -> u32 {
        self.uid_mappings.first().map_or(0, |m| m.host_id())
    }

    /// The host gid the container's root group maps to.
    pub fn host_root_gid(&self) -> u32 {
        self.gid_mappings.first().map_or(0, |m| m.host_id())
    }

    /// The rootfs mount options asking the shim to id-map the image layers
    /// (containerd 2's `uidmap=<container>:<host>:<size>[,...]` and `gidmap=`).
    pub fn rootfs_mount_options(&self) -> Vec<String> {
        let text = |maps: &[LinuxIdMapping]| {
            maps.iter()
                .map(|m| format!("{}:{}:{}", m.container_id(), m.host_id(), m.size()))
                .collect::<Vec<_>>()
                .join(",")
        };
        vec![
            format!("uidmap={}", text(&self.uid_mappings)),
            format!("gidmap={}", text(&self.gid_mappings)),
        ]
    }
}

fn invalid(reason: impl Into<String>) -> SpecBuildError {
    SpecBuildError::InvalidUserNamespace {
        reason: reason.into(),
    }
}

/// One CRI mapping as an OCI one; refuses empty ranges and ranges that wrap.
pub(super) fn oci_mapping(m: &IdMapping, what: &str) -> Result<LinuxIdMapping, SpecBuildError> {
    if m.length == 0 {
        return Err(invalid(format!("{what} mapping has length 0")));
    }
    let fits = |start: u32| start.checked_add(m.length - 1).is_some();
    if !fits(m.host_id) || !fits(m.container_id) {
        return Err(invalid(format!(
            "{what} mapping {}:{}:{} overflows 32 bits",
            m.container_id, m.host_id, m.length
        )));
    }
    LinuxIdMappingBuilder::default()
        .container_id(m.container_id)
        .host_id(m.host_id)
        .size(m.length)
        .build()
        .map_err(|source| SpecBuildError::Build {
            what: "id mapping",
            source,
        })
}

/// A pod range: one mapping that maps container id 0 (the kubelet sends one
/// contiguous range per pod; several or none would need a policy nobody defines).
fn pod_range(maps: &[IdMapping], what: &str) -> Result<Vec<LinuxIdMapping>, SpecBuildError> {
    match maps {
        [m] if m.container_id == 0 => Ok(vec![oci_mapping(m, what)?]),
        [_] => Err(invalid(format!("container {what} 0 is not mapped"))),
        [] => Err(invalid(format!("mode POD needs a {what} mapping"))),
        _ => Err(invalid(format!(
            "exactly one {what} mapping is supported, {} given",
            maps.len()
        ))),
    }
}

fn mode_name(mode: NamespaceMode) -> &'static str {
    match mode {
        NamespaceMode::Pod => "POD",
        NamespaceMode::Container => "CONTAINER",
        NamespaceMode::Node => "NODE",
        NamespaceMode::Target => "TARGET",
    }
}

/// The user namespace asked for by `opts` (None: the host's).
pub(super) fn from_options(
    opts: Option<&NamespaceOption>,
) -> Result<Option<PodUserNamespace>, SpecBuildError> {
    let Some(userns) = opts.and_then(|o| o.userns_options.as_ref()) else {
        return Ok(None);
    };
    let mode = NamespaceMode::try_from(userns.mode)
        .map_err(|_| invalid(format!("unknown user namespace mode {}", userns.mode)))?;
    match mode {
        NamespaceMode::Node => {
            if userns.uids.is_empty() && userns.gids.is_empty() {
                Ok(None)
            } else {
                Err(invalid("mode NODE takes no id mappings"))
            }
        }
        NamespaceMode::Pod => {
            let other = |m: i32| NamespaceMode::try_from(m).unwrap_or(NamespaceMode::Pod);
            if let Some(o) = opts {
                if other(o.network) == NamespaceMode::Node
                    || other(o.pid) == NamespaceMode::Node
                    || other(o.ipc) == NamespaceMode::Node
                {
                    return Err(invalid(
                        "a pod user namespace cannot be combined with host network, PID or IPC",
                    ));
                }
            }
            Ok(Some(PodUserNamespace {
                uid_mappings: pod_range(&userns.uids, "uid")?,
                gid_mappings: pod_range(&userns.gids, "gid")?,
            }))
        }
        NamespaceMode::Container | NamespaceMode::Target => {
            Err(SpecBuildError::UnsupportedUserNamespaceMode {
                mode: mode_name(mode),
            })
        }
    }
}

/// The pod's user namespace from its sandbox config: None for mode NODE or
/// no options; an error for modes CONTAINER/TARGET and for bad mappings.
pub fn pod_user_namespace(
    config: &PodSandboxConfig,
) -> Result<Option<PodUserNamespace>, SpecBuildError> {
    from_options(
        config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref()),
    )
}

/// The user namespace a container runs in: its own options when it has any
/// (they must agree with the pod's: a container cannot leave or change the
/// pod's user namespace), else the pod's.
pub(super) fn for_container(
    container_opts: Option<&NamespaceOption>,
    sandbox: &PodSandboxConfig,
) -> Result<Option<PodUserNamespace>, SpecBuildError> {
    let pod = pod_user_namespace(sandbox)?;
    if container_opts.is_some_and(|o| o.userns_options.is_some()) {
        let own = from_options(container_opts)?;
        if own != pod {
            return Err(invalid(
                "the container's user namespace options differ from its pod's",
            ));
        }
    }
    Ok(pod)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use berth_proto::cri::UserNamespace;

    fn opts(mode: NamespaceMode, uids: Vec<IdMapping>, gids: Vec<IdMapping>) -> NamespaceOption {
        NamespaceOption {
            network: NamespaceMode::Pod as i32,
            pid: NamespaceMode::Container as i32,
            ipc: NamespaceMode::Pod as i32,
            userns_options: Some(UserNamespace {
                mode: mode as i32,
                uids,
                gids,
            }),
            ..Default::default()
        }
    }

    fn map(container_id: u32, host_id: u32, length: u32) -> IdMapping {
        IdMapping {
            host_id,
            container_id,
            length,
        }
    }

    #[test]
    fn pod_mode_with_one_range() {
        let o = opts(
            NamespaceMode::Pod,
            vec![map(0, 1000, 100000)],
            vec![map(0, 2000, 100000)],
        );
        let u = from_options(Some(&o)).unwrap().unwrap();
        assert_eq!(u.host_root_uid(), 1000);
        assert_eq!(u.host_root_gid(), 2000);
        assert_eq!(u.uid_mappings[0].size(), 100000);
        assert_eq!(u.uid_mappings[0].container_id(), 0);
        assert_eq!(
            u.rootfs_mount_options(),
            vec!["uidmap=0:1000:100000", "gidmap=0:2000:100000"]
        );
    }

    #[test]
    fn node_mode_and_absent_options_mean_host() {
        assert_eq!(from_options(None).unwrap(), None);
        let o = opts(NamespaceMode::Node, vec![], vec![]);
        assert_eq!(from_options(Some(&o)).unwrap(), None);
        let o = opts(NamespaceMode::Node, vec![map(0, 1000, 10)], vec![]);
        assert!(from_options(Some(&o)).is_err());
    }

    #[test]
    fn bad_pod_mappings_are_refused() {
        let bad = [
            // critest: more than one mapping.
            (
                vec![map(0, 1000, 100000), map(0, 2000, 100000)],
                "exactly one",
            ),
            // critest: container id 0 not mapped.
            (vec![map(1, 1000, 100000)], "0 is not mapped"),
            (vec![], "needs a uid mapping"),
            (vec![map(0, 1000, 0)], "length 0"),
            (vec![map(0, u32::MAX, 2)], "overflows"),
        ];
        for (uids, want) in bad {
            let o = opts(NamespaceMode::Pod, uids, vec![map(0, 1000, 10)]);
            let err = from_options(Some(&o)).unwrap_err();
            assert!(
                err.to_string().contains(want) || format!("{err:?}").contains(want),
                "{err:?}"
            );
            assert!(err.is_invalid_argument());
        }
    }

    #[test]
    fn container_and_target_modes_are_unsupported() {
        for mode in [NamespaceMode::Container, NamespaceMode::Target] {
            let o = opts(mode, vec![], vec![]);
            assert!(matches!(
                from_options(Some(&o)).unwrap_err(),
                SpecBuildError::UnsupportedUserNamespaceMode { .. }
            ));
        }
    }

    #[test]
    fn host_namespaces_conflict_with_a_pod_userns() {
        let mut o = opts(
            NamespaceMode::Pod,
            vec![map(0, 1000, 10)],
            vec![map(0, 1000, 10)],
        );
        o.network = NamespaceMode::Node as i32;
        assert!(from_options(Some(&o)).is_err());
    }

    #[test]
    fn container_options_must_match_the_pod() {
        let pod_opts = opts(
            NamespaceMode::Pod,
            vec![map(0, 1000, 10)],
            vec![map(0, 1000, 10)],
        );
        let sandbox = PodSandboxConfig {
            linux: Some(berth_proto::cri::LinuxPodSandboxConfig {
                security_context: Some(berth_proto::cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(pod_opts.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(for_container(None, &sandbox).unwrap().is_some());
        assert!(for_container(Some(&pod_opts), &sandbox).unwrap().is_some());
        let other = opts(
            NamespaceMode::Pod,
            vec![map(0, 5000, 10)],
            vec![map(0, 1000, 10)],
        );
        assert!(for_container(Some(&other), &sandbox).is_err());
        let node = opts(NamespaceMode::Node, vec![], vec![]);
        assert!(for_container(Some(&node), &sandbox).is_err());
    }
}
