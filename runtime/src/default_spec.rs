//! The config.json written by `berth-runtime spec [--rootless]`: a busybox-
//! friendly starting point (interactive `sh`, read-only rootfs, the standard
//! kernel filesystems, a minimal capability set) that users edit.
//!
//! Built from `Default` values with every field set explicitly (builders
//! where oci-spec has no setters), so nothing changes silently when oci-spec
//! changes its own defaults.

use std::collections::HashSet;
use std::path::PathBuf;

use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxDeviceCgroup, LinuxIdMapping, LinuxIdMappingBuilder,
    LinuxNamespace, LinuxNamespaceType, LinuxResources, Mount, PosixRlimitBuilder, PosixRlimitType,
    Process, Root, Spec, User,
};
use oci_spec::OciSpecError;

/// Errors from building the default spec.
#[derive(Debug, thiserror::Error)]
pub enum DefaultSpecError {
    /// An oci-spec builder refused a value.
    #[error("failed to build the default spec's {what}")]
    Build {
        /// Which part.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: OciSpecError,
    },
}

/// The runtime-spec version the generated config declares.
pub const OCI_VERSION: &str = "1.2.0";

/// Paths hidden from the container (bind of /dev/null or an empty tmpfs).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths made read-only in the container.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    // runc-style: no "options" key at all when there are none.
    m.set_options((!options.is_empty()).then(|| strings(options)));
    m.set_uid_mappings(None);
    m.set_gid_mappings(None);
    m
}

fn standard_mounts(rootless: bool) -> Vec<Mount> {
    // devpts gid=5 (tty) only exists when the host's gid 5 is mapped.
    let devpts: &[&str] = if rootless {
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
        ]
    } else {
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]
    };
    // A sysfs mount needs a network namespace owned by the container's user
    // namespace; rootless containers share the host's network, so they get a
    // read-only recursive bind of the host's /sys instead.
    let sys = if rootless {
        mount(
            "/sys",
            "none",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        )
    } else {
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )
    };
    vec![
        mount("/proc", "proc", "proc", &[]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount("/dev/pts", "devpts", "devpts", devpts),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        sys,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ]
}

fn default_capabilities() -> LinuxCapabilities {
    let set: HashSet<Capability> = [
        Capability::AuditWrite,
        Capability::Kill,
        Capability::NetBindService,
    ]
    .into_iter()
    .collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    // Nothing is inherited across exec unless the user asks for it.
    caps.set_inheritable(None);
    caps.set_ambient(None);
    caps
}

fn default_process() -> Result<Process, DefaultSpecError> {
    let mut user = User::default();
    user.set_uid(0);
    user.set_gid(0);
    user.set_umask(None);
    user.set_additional_gids(None);
    user.set_username(None);

    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(1024u64)
        .hard(1024u64)
        .build()
        .map_err(|source| DefaultSpecError::Build {
            what: "rlimits",
            source,
        })?;

    let mut p = Process::default();
    p.set_terminal(Some(true));
    p.set_console_size(None);
    p.set_user(user);
    p.set_args(Some(vec!["sh".to_string()]));
    p.set_command_line(None);
    p.set_env(Some(strings(&[
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "TERM=xterm",
    ])));
    p.set_cwd(PathBuf::from("/"));
    p.set_capabilities(Some(default_capabilities()));
    p.set_rlimits(Some(vec![nofile]));
    p.set_no_new_privileges(Some(true));
    p.set_apparmor_profile(None);
    p.set_oom_score_adj(None);
    p.set_selinux_label(None);
    p.set_io_priority(None);
    p.set_scheduler(None);
    p.set_exec_cpu_affinity(None);
    Ok(p)
}

fn namespace(typ: LinuxNamespaceType) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(None);
    ns
}

fn single_mapping(host_id: u32) -> Result<Vec<LinuxIdMapping>, DefaultSpecError> {
    let m = LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(host_id)
        .size(1u32)
        .build()
        .map_err(|source| DefaultSpecError::Build {
            what: "id mappings",
            source,
        })?;
    Ok(vec![m])
}

/// The default spec (see [`try_default_spec`]). The builders it uses only
/// fail on unset required fields and every field is set, so the fallback to
/// oci-spec's own (similar) default is not expected to be taken; it is
/// logged if it ever is.
pub fn default_spec(rootless: bool) -> Spec {
    try_default_spec(rootless).unwrap_or_else(|err| {
        tracing::error!(%err, "building berth's default spec failed; using oci-spec's default");
        Spec::default()
    })
}

/// The default spec. `rootless` adds a user namespace mapping root in the
/// container to the calling user, leaves the network namespace shared, binds
/// /sys instead of mounting sysfs and sets no cgroup resources.
pub fn try_default_spec(rootless: bool) -> Result<Spec, DefaultSpecError> {
    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"));
    root.set_readonly(Some(true));

    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Pid),
        namespace(LinuxNamespaceType::Ipc),
        namespace(LinuxNamespaceType::Uts),
        namespace(LinuxNamespaceType::Mount),
        namespace(LinuxNamespaceType::Cgroup),
    ];
    let mut linux = oci_spec::runtime::Linux::default();
    if rootless {
        namespaces.push(namespace(LinuxNamespaceType::User));
        linux.set_uid_mappings(Some(single_mapping(nix::unistd::geteuid().as_raw())?));
        linux.set_gid_mappings(Some(single_mapping(nix::unistd::getegid().as_raw())?));
        linux.set_resources(None);
    } else {
        namespaces.insert(1, namespace(LinuxNamespaceType::Network));
        linux.set_uid_mappings(None);
        linux.set_gid_mappings(None);
        let mut deny_all = LinuxDeviceCgroup::default();
        deny_all.set_allow(false);
        deny_all.set_typ(None);
        deny_all.set_major(None);
        deny_all.set_minor(None);
        deny_all.set_access(Some("rwm".to_string()));
        let mut resources = LinuxResources::default();
        resources.set_devices(Some(vec![deny_all]));
        linux.set_resources(Some(resources));
    }
    linux.set_namespaces(Some(namespaces));
    linux.set_masked_paths(Some(strings(MASKED_PATHS)));
    linux.set_readonly_paths(Some(strings(READONLY_PATHS)));
    linux.set_sysctl(None);
    linux.set_devices(None);
    linux.set_cgroups_path(None);
    linux.set_rootfs_propagation(None);
    linux.set_seccomp(None);

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string());
    spec.set_root(Some(root));
    spec.set_process(Some(default_process()?));
    spec.set_hostname(Some("berth".to_string()));
    spec.set_domainname(None);
    spec.set_mounts(Some(standard_mounts(rootless)));
    spec.set_hooks(None);
    spec.set_annotations(None);
    spec.set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn names(spec: &Spec) -> Vec<LinuxNamespaceType> {
        let linux = spec.linux().as_ref().unwrap();
        linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.typ())
            .collect()
    }

    #[test]
    fn default_spec_round_trips_and_is_complete() {
        let spec = try_default_spec(false).unwrap();
        assert_eq!(default_spec(false), spec);
        let json = serde_json::to_string_pretty(&spec).unwrap();
        let back: Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
        // Also through oci-spec's own file loader, as the runtime reads it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        spec.save(&path).unwrap();
        assert_eq!(Spec::load(&path).unwrap(), spec);
        // And it passes the runtime's own bundle validation.
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        let loaded = crate::spec::load_bundle(dir.path()).unwrap();
        assert_eq!(loaded.spec, spec);
        assert!(loaded.rootfs.ends_with("rootfs"));

        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["ociVersion"], "1.2.0");
        assert_eq!(v["process"]["terminal"], true);
        assert_eq!(v["process"]["args"], serde_json::json!(["sh"]));
        assert_eq!(
            v["root"],
            serde_json::json!({"path": "rootfs", "readonly": true})
        );
        let mut caps: Vec<String> =
            serde_json::from_value(v["process"]["capabilities"]["bounding"].clone()).unwrap();
        caps.sort();
        assert_eq!(
            caps,
            ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
        );
        assert!(v["process"]["capabilities"].get("ambient").is_none());
        assert_eq!(
            v["process"]["rlimits"],
            serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}])
        );
        let dests: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup"
            ]
        );
        assert_eq!(
            names(&spec),
            [
                LinuxNamespaceType::Pid,
                LinuxNamespaceType::Network,
                LinuxNamespaceType::Ipc,
                LinuxNamespaceType::Uts,
                LinuxNamespaceType::Mount,
                LinuxNamespaceType::Cgroup
            ]
        );
        assert!(v["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .contains(&"/proc/kcore".into()));
        assert!(v["linux"]["readonlyPaths"]
            .as_array()
            .unwrap()
            .contains(&"/proc/sys".into()));
        assert_eq!(
            v["linux"]["resources"]["devices"],
            serde_json::json!([{"allow": false, "access": "rwm"}])
        );
        assert!(v["linux"].get("uidMappings").is_none());
    }

    #[test]
    fn rootless_spec_maps_the_caller() {
        let spec = try_default_spec(true).unwrap();
        let back: Spec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
        crate::spec::validate(&spec).unwrap();
        let ns = names(&spec);
        assert!(ns.contains(&LinuxNamespaceType::User));
        assert!(!ns.contains(&LinuxNamespaceType::Network));
        let linux = spec.linux().as_ref().unwrap();
        let uid = &linux.uid_mappings().as_ref().unwrap()[0];
        assert_eq!(
            (uid.container_id(), uid.host_id(), uid.size()),
            (0, nix::unistd::geteuid().as_raw(), 1)
        );
        let gid = &linux.gid_mappings().as_ref().unwrap()[0];
        assert_eq!(gid.host_id(), nix::unistd::getegid().as_raw());
        assert!(linux.resources().is_none());
        let mounts = spec.mounts().as_ref().unwrap();
        let sys = mounts
            .iter()
            .find(|m| m.destination().to_str() == Some("/sys"))
            .unwrap();
        assert!(sys
            .options()
            .as_ref()
            .unwrap()
            .contains(&"rbind".to_string()));
        let pts = mounts
            .iter()
            .find(|m| m.destination().to_str() == Some("/dev/pts"))
            .unwrap();
        assert!(!pts
            .options()
            .as_ref()
            .unwrap()
            .iter()
            .any(|o| o.starts_with("gid=")));
    }
}
