//! Capabilities, seccomp, masked/read-only paths and sysctls.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use berth_proto::cri::{
    security_profile::ProfileType, LinuxContainerSecurityContext, PodSandboxConfig,
};
use oci_spec::runtime::{Capability, LinuxCapabilities, LinuxSeccomp};

use super::{runtime_default_profile, SpecBuildError};

/// The capabilities a non-privileged container gets (containerd's list).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Parses a capability name, with or without the `CAP_` prefix, any case.
fn parse_cap(name: &str) -> Result<Capability, SpecBuildError> {
    serde_json::from_value(serde_json::Value::String(name.trim().to_string())).map_err(|_| {
        SpecBuildError::UnknownCapability {
            name: name.to_string(),
        }
    })
}

/// Every capability both this build of the caps crate and oci-spec know.
fn all_capabilities() -> HashSet<Capability> {
    caps::all()
        .into_iter()
        .filter_map(|c| parse_cap(&c.to_string()).ok())
        .collect()
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

/// The capability sets: every capability when privileged, else the default
/// set with the CRI's adds and drops applied as containerd does (add `ALL`
/// starts from everything, drop `ALL` from nothing, then named adds and
/// named drops). Bounding, effective and permitted are equal. Plain adds are
/// not made inheritable (CVE-2022-24769); `add_ambient_capabilities` go into
/// every set including ambient and inheritable (the kernel needs both), as
/// the CRI defines, unless dropped.
pub fn capabilities(
    sc: Option<&LinuxContainerSecurityContext>,
) -> Result<LinuxCapabilities, SpecBuildError> {
    let cri = sc.and_then(|s| s.capabilities.as_ref());
    let (add, drop, ambient_add) = cri
        .map(|c| {
            (
                c.add_capabilities.as_slice(),
                c.drop_capabilities.as_slice(),
                c.add_ambient_capabilities.as_slice(),
            )
        })
        .unwrap_or((&[], &[], &[]));
    let dropped = drop
        .iter()
        .filter(|n| !is_all(n))
        .map(|n| parse_cap(n))
        .collect::<Result<HashSet<_>, _>>()?;
    let mut set = if sc.is_some_and(|s| s.privileged) {
        all_capabilities()
    } else {
        let mut set: HashSet<Capability> = DEFAULT_CAPABILITIES
            .iter()
            .map(|n| parse_cap(n))
            .collect::<Result<_, _>>()?;
        if add.iter().any(|n| is_all(n)) {
            set = all_capabilities();
        }
        if drop.iter().any(|n| is_all(n)) {
            set.clear();
        }
        for name in add.iter().filter(|n| !is_all(n)) {
            set.insert(parse_cap(name)?);
        }
        set.retain(|c| !dropped.contains(c));
        set
    };
    let mut ambient = HashSet::new();
    for name in ambient_add {
        let cap = parse_cap(name)?;
        if !dropped.contains(&cap) {
            ambient.insert(cap);
            set.insert(cap);
        }
    }
    let ambient = (!ambient.is_empty()).then_some(ambient);
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    caps.set_inheritable(ambient.clone());
    caps.set_ambient(ambient);
    Ok(caps)
}

fn load_localhost(reference: &str) -> Result<LinuxSeccomp, SpecBuildError> {
    let path = Path::new(reference);
    if !path.is_absolute() {
        return Err(SpecBuildError::InvalidSeccompProfile {
            profile: reference.to_string(),
            reason: "a Localhost profile must be an absolute path",
        });
    }
    let text =
        std::fs::read_to_string(path).map_err(|source| SpecBuildError::ReadSeccompProfile {
            path: path.to_path_buf(),
            source,
        })?;
    serde_json::from_str(&text).map_err(|source| SpecBuildError::ParseSeccompProfile {
        path: path.to_path_buf(),
        source,
    })
}

/// The seccomp filter: none for privileged containers, `Unconfined` or no
/// profile at all; containerd's equivalent default for `RuntimeDefault`
/// (its capability-gated rules follow `caps`' bounding set); a JSON profile
/// read from an absolute path for `Localhost`. The deprecated
/// `seccomp_profile_path` strings are honoured when `seccomp` is unset.
// Older kubelets and crictl still send only `seccomp_profile_path`.
#[allow(deprecated)]
pub fn seccomp_profile(
    sc: Option<&LinuxContainerSecurityContext>,
    caps: &LinuxCapabilities,
) -> Result<Option<LinuxSeccomp>, SpecBuildError> {
    let Some(sc) = sc else { return Ok(None) };
    if sc.privileged {
        return Ok(None);
    }
    let bounding = caps.bounding().clone().unwrap_or_default();
    if let Some(profile) = &sc.seccomp {
        return match ProfileType::try_from(profile.profile_type) {
            Ok(ProfileType::RuntimeDefault) => runtime_default_profile(&bounding).map(Some),
            Ok(ProfileType::Unconfined) => Ok(None),
            Ok(ProfileType::Localhost) => load_localhost(&profile.localhost_ref).map(Some),
            Err(_) => Err(SpecBuildError::InvalidSeccompProfile {
                profile: profile.profile_type.to_string(),
                reason: "unknown profile type",
            }),
        };
    }
    match sc.seccomp_profile_path.as_str() {
        "" | "unconfined" => Ok(None),
        "runtime/default" | "docker/default" => runtime_default_profile(&bounding).map(Some),
        other => match other.strip_prefix("localhost/") {
            Some(path) => load_localhost(path).map(Some),
            None => Err(SpecBuildError::InvalidSeccompProfile {
                profile: other.to_string(),
                reason: "unknown profile",
            }),
        },
    }
}

/// The AppArmor profile: a `Localhost` profile by name when AppArmor is
/// enabled, refused when it is not (as containerd does, so a pod never runs
/// without the confinement it asked for); `RuntimeDefault`, `Unconfined` and
/// none give no profile (berth loads no default AppArmor profile of its
/// own); privileged containers get none. The deprecated
/// `apparmor_profile` string is honoured when `apparmor` is unset.
// Older kubelets and crictl still send only `apparmor_profile`.
#[allow(deprecated)]
pub(super) fn apparmor_profile(
    sc: Option<&LinuxContainerSecurityContext>,
    apparmor_enabled: bool,
) -> Result<Option<String>, SpecBuildError> {
    let Some(sc) = sc.filter(|s| !s.privileged) else {
        return Ok(None);
    };
    let localhost = match &sc.apparmor {
        Some(p) => match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::Localhost) => Some(p.localhost_ref.clone()),
            Ok(_) => None,
            Err(_) => {
                return Err(SpecBuildError::InvalidAppArmorProfile {
                    profile: p.profile_type.to_string(),
                })
            }
        },
        None => match sc.apparmor_profile.as_str() {
            "" | "runtime/default" | "unconfined" => None,
            other => match other.strip_prefix("localhost/") {
                Some(name) => Some(name.to_string()),
                None => {
                    return Err(SpecBuildError::InvalidAppArmorProfile {
                        profile: other.to_string(),
                    })
                }
            },
        },
    };
    match localhost {
        Some(name) if name.is_empty() || name.contains(['\n', '\0']) => {
            Err(SpecBuildError::InvalidAppArmorProfile { profile: name })
        }
        Some(name) if !apparmor_enabled => {
            Err(SpecBuildError::AppArmorUnavailable { profile: name })
        }
        other => Ok(other),
    }
}

/// Masked and read-only paths exactly as the CRI gives them (the kubelet
/// sends containerd's defaults, or empty lists for `procMount: Unmasked`);
/// none for privileged containers.
pub(super) fn masked_and_readonly(
    sc: Option<&LinuxContainerSecurityContext>,
    privileged: bool,
) -> (Vec<String>, Vec<String>) {
    match sc {
        Some(sc) if !privileged => (sc.masked_paths.clone(), sc.readonly_paths.clone()),
        _ => (Vec::new(), Vec::new()),
    }
}

/// The pod's sysctls, refused when malformed or not isolated by the
/// namespaces the container has (see `berth_runtime::sysctl::check_allowed`).
pub(super) fn sysctls(
    sandbox: &PodSandboxConfig,
    net_ns: bool,
    ipc_ns: bool,
    uts_ns: bool,
) -> Result<HashMap<String, String>, SpecBuildError> {
    let Some(all) = sandbox.linux.as_ref().map(|l| &l.sysctls) else {
        return Ok(HashMap::new());
    };
    for (key, value) in all {
        berth_runtime::sysctl::check_allowed(key, net_ns, ipc_ns, uts_ns).map_err(|source| {
            SpecBuildError::Sysctl {
                key: key.clone(),
                source,
            }
        })?;
        if value.contains(['\n', '\0']) {
            return Err(SpecBuildError::InvalidSysctlValue { key: key.clone() });
        }
    }
    Ok(all.clone())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use berth_proto::cri::{Capability as CriCaps, LinuxPodSandboxConfig, SecurityProfile};

    fn sc_with_caps(add: &[&str], drop: &[&str]) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            capabilities: Some(CriCaps {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn bounding(c: &LinuxCapabilities) -> HashSet<Capability> {
        c.bounding().clone().unwrap()
    }

    #[test]
    fn default_caps_with_add_and_drop() {
        let c = capabilities(None).unwrap();
        assert_eq!(bounding(&c).len(), DEFAULT_CAPABILITIES.len());
        assert!(c.inheritable().is_none());
        let c = capabilities(Some(&sc_with_caps(
            &["sys_admin"],
            &["CAP_KILL", "net_raw"],
        )))
        .unwrap();
        let b = bounding(&c);
        assert!(b.contains(&Capability::SysAdmin));
        assert!(!b.contains(&Capability::Kill) && !b.contains(&Capability::NetRaw));
        assert_eq!(b.len(), DEFAULT_CAPABILITIES.len() - 1);
        assert_eq!(c.effective(), c.bounding());
        assert_eq!(c.permitted(), c.bounding());
    }

    #[test]
    fn drop_all_then_add() {
        let c = capabilities(Some(&sc_with_caps(&["NET_ADMIN", "CAP_CHOWN"], &["ALL"]))).unwrap();
        assert_eq!(
            bounding(&c),
            [Capability::NetAdmin, Capability::Chown]
                .into_iter()
                .collect()
        );
        let c = capabilities(Some(&sc_with_caps(&["all"], &["SYS_ADMIN"]))).unwrap();
        let b = bounding(&c);
        assert!(b.contains(&Capability::SysModule) && !b.contains(&Capability::SysAdmin));
        assert!(matches!(
            capabilities(Some(&sc_with_caps(&["NOT_A_CAP"], &[]))).unwrap_err(),
            SpecBuildError::UnknownCapability { .. }
        ));
    }

    #[test]
    fn ambient_capabilities() {
        let mut sc = sc_with_caps(&[], &["MKNOD"]);
        sc.capabilities.as_mut().unwrap().add_ambient_capabilities =
            vec!["NET_ADMIN".into(), "CAP_MKNOD".into()];
        let c = capabilities(Some(&sc)).unwrap();
        let only_net_admin: HashSet<_> = [Capability::NetAdmin].into();
        assert_eq!(c.ambient().clone().unwrap(), only_net_admin);
        assert_eq!(c.inheritable().clone().unwrap(), only_net_admin);
        let b = bounding(&c);
        assert!(b.contains(&Capability::NetAdmin) && !b.contains(&Capability::Mknod));
    }

    #[test]
    fn privileged_gets_everything_and_no_seccomp() {
        let sc = LinuxContainerSecurityContext {
            privileged: true,
            seccomp: Some(SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                ..Default::default()
            }),
            masked_paths: vec!["/proc/kcore".into()],
            ..Default::default()
        };
        let c = capabilities(Some(&sc)).unwrap();
        assert!(bounding(&c).len() >= 38, "{}", bounding(&c).len());
        assert!(seccomp_profile(Some(&sc), &c).unwrap().is_none());
        assert_eq!(masked_and_readonly(Some(&sc), true), (vec![], vec![]));
    }

    #[test]
    #[allow(deprecated)]
    fn seccomp_modes() {
        let caps = capabilities(None).unwrap();
        let mut sc = LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: ProfileType::Unconfined as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(seccomp_profile(Some(&sc), &caps).unwrap().is_none());
        assert!(seccomp_profile(None, &caps).unwrap().is_none());

        sc.seccomp = Some(SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            ..Default::default()
        });
        let p = seccomp_profile(Some(&sc), &caps).unwrap().unwrap();
        assert!(!p.syscalls().clone().unwrap().is_empty());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("profile.json");
        std::fs::write(
            &file,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        sc.seccomp = Some(SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: file.to_string_lossy().into_owned(),
        });
        let p = seccomp_profile(Some(&sc), &caps).unwrap().unwrap();
        assert_eq!(
            p.syscalls().clone().unwrap()[0].names(),
            &vec!["mkdir".to_string()]
        );
        berth_runtime::seccomp::compile(&p).unwrap();

        sc.seccomp = Some(SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: "profile.json".into(),
        });
        assert!(matches!(
            seccomp_profile(Some(&sc), &caps).unwrap_err(),
            SpecBuildError::InvalidSeccompProfile { .. }
        ));
        sc.seccomp = Some(SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: dir
                .path()
                .join("missing.json")
                .to_string_lossy()
                .into_owned(),
        });
        assert!(matches!(
            seccomp_profile(Some(&sc), &caps).unwrap_err(),
            SpecBuildError::ReadSeccompProfile { .. }
        ));
        // The deprecated path form.
        sc.seccomp = None;
        sc.seccomp_profile_path = format!("localhost/{}", file.display());
        assert!(seccomp_profile(Some(&sc), &caps).unwrap().is_some());
        sc.seccomp_profile_path = "bogus".into();
        assert!(seccomp_profile(Some(&sc), &caps).is_err());
    }

    #[test]
    #[allow(deprecated)]
    fn apparmor_localhost_needs_apparmor() {
        let mut sc = LinuxContainerSecurityContext {
            apparmor: Some(SecurityProfile {
                profile_type: ProfileType::Localhost as i32,
                localhost_ref: "my-profile".into(),
            }),
            ..Default::default()
        };
        assert_eq!(
            apparmor_profile(Some(&sc), true).unwrap().as_deref(),
            Some("my-profile")
        );
        assert!(matches!(
            apparmor_profile(Some(&sc), false).unwrap_err(),
            SpecBuildError::AppArmorUnavailable { .. }
        ));
        sc.privileged = true;
        assert_eq!(apparmor_profile(Some(&sc), false).unwrap(), None);
        sc.privileged = false;
        sc.apparmor = Some(SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            ..Default::default()
        });
        assert_eq!(apparmor_profile(Some(&sc), false).unwrap(), None);
        sc.apparmor = None;
        sc.apparmor_profile = "localhost/other".into();
        assert_eq!(
            apparmor_profile(Some(&sc), true).unwrap().as_deref(),
            Some("other")
        );
        sc.apparmor_profile = "bogus".into();
        assert!(apparmor_profile(Some(&sc), true).is_err());
        assert_eq!(apparmor_profile(None, false).unwrap(), None);
    }

    #[test]
    fn sysctl_validation() {
        let mut pod = PodSandboxConfig {
            linux: Some(LinuxPodSandboxConfig::default()),
            ..Default::default()
        };
        let set = |pod: &mut PodSandboxConfig, k: &str, v: &str| {
            let l = pod.linux.as_mut().unwrap();
            l.sysctls.clear();
            l.sysctls.insert(k.into(), v.into());
        };
        set(&mut pod, "net.ipv4.ip_forward", "1");
        assert_eq!(sysctls(&pod, true, true, true).unwrap().len(), 1);
        assert!(sysctls(&pod, false, true, true).is_err(), "host network");
        set(&mut pod, "kernel.shm_rmid_forced", "1");
        assert!(sysctls(&pod, true, true, true).is_ok());
        assert!(sysctls(&pod, true, false, true).is_err(), "host IPC");
        set(&mut pod, "kernel.panic", "1");
        assert!(sysctls(&pod, true, true, true).is_err(), "host-wide");
        set(&mut pod, "net.ipv4.conf.all/../../../kernel/panic", "1");
        assert!(matches!(
            sysctls(&pod, true, true, true).unwrap_err(),
            SpecBuildError::Sysctl { .. }
        ));
        set(&mut pod, "net.core.somaxconn", "1\nkernel.panic=1");
        assert!(matches!(
            sysctls(&pod, true, true, true).unwrap_err(),
            SpecBuildError::InvalidSysctlValue { .. }
        ));
    }
}
