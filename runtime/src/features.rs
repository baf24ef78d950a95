//! `berth-runtime features`: what this runtime build supports on this host,
//! in the runtime-spec `features.md` shape (what `runc features` prints).
//! Values are probed where the host decides (libseccomp archs and flags,
//! AppArmor, SELinux, id-mapped mounts), fixed where the code decides.

use libseccomp::{ScmpAction, ScmpArch, ScmpFilterContext};
use oci_spec::runtime::{Arch, LinuxSeccompFilterFlag};
use serde_json::{json, Value};

use crate::hooks::HookStage;

/// Oldest runtime-spec version berth accepts.
pub const OCI_VERSION_MIN: &str = "1.0.0";
/// Newest runtime-spec version berth knows.
pub const OCI_VERSION_MAX: &str = "1.2.0";

/// Mount options the rootfs code recognises (flags, propagation, recursive
/// attributes and `tmpcopyup`); filesystem data options are passed through
/// and not listed. Kept in step with `rootfs::mount_options` by a test.
pub const MOUNT_OPTIONS: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

const HOOK_STAGES: [HookStage; 6] = [
    HookStage::Prestart,
    HookStage::CreateRuntime,
    HookStage::CreateContainer,
    HookStage::StartContainer,
    HookStage::Poststart,
    HookStage::Poststop,
];

const ALL_ARCHES: [Arch; 24] = [
    Arch::ScmpArchNative,
    Arch::ScmpArchX86,
    Arch::ScmpArchX86_64,
    Arch::ScmpArchX32,
    Arch::ScmpArchArm,
    Arch::ScmpArchAarch64,
    Arch::ScmpArchMips,
    Arch::ScmpArchMips64,
    Arch::ScmpArchMips64n32,
    Arch::ScmpArchMipsel,
    Arch::ScmpArchMipsel64,
    Arch::ScmpArchMipsel64n32,
    Arch::ScmpArchPpc,
    Arch::ScmpArchPpc64,
    Arch::ScmpArchPpc64le,
    Arch::ScmpArchS390,
    Arch::ScmpArchS390x,
    Arch::ScmpArchParisc,
    Arch::ScmpArchParisc64,
    Arch::ScmpArchRiscv64,
    Arch::ScmpArchLoongarch64,
    Arch::ScmpArchM68k,
    Arch::ScmpArchSh,
    Arch::ScmpArchSheb,
];

const KNOWN_FLAGS: [LinuxSeccompFilterFlag; 4] = [
    LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
    LinuxSeccompFilterFlag::SeccompFilterFlagLog,
    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
    LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
];

/// Architectures the installed libseccomp knows. One filter cannot mix
/// endiannesses, so each arch is probed on a scratch filter whose native
/// arch was removed first. `SCMP_ARCH_NATIVE` is an alias and not listed.
fn supported_arches() -> Vec<String> {
    ALL_ARCHES
        .iter()
        .filter(|arch| **arch != Arch::ScmpArchNative)
        .filter(|arch| {
            let Ok(mut ctx) = ScmpFilterContext::new(ScmpAction::Allow) else {
                return false;
            };
            let a = crate::seccomp::to_arch(**arch);
            if ctx.is_arch_present(a).unwrap_or(false) {
                return true;
            }
            ctx.remove_arch(ScmpArch::native()).is_ok() && ctx.add_arch(a).is_ok()
        })
        .map(|a| a.to_string())
        .collect()
}

fn seccomp_actions() -> Vec<&'static str> {
    let mut actions = vec![
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_LOG",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_TRAP",
    ];
    if crate::seccomp::notify_supported() {
        actions.push("SCMP_ACT_NOTIFY");
    }
    actions.sort_unstable();
    actions
}

/// Whether the kernel has mount_setattr(2) (needed for id-mapped mounts).
fn kernel_has_mount_setattr() -> bool {
    // SAFETY: an invalid dirfd and null attr make the call fail without
    // touching memory; only ENOSYS tells "no such syscall".
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1 as libc::c_int,
            c"".as_ptr(),
            0 as libc::c_uint,
            std::ptr::null::<libc::c_void>(),
            0usize,
        )
    };
    rc == 0 || nix::errno::Errno::last() != nix::errno::Errno::ENOSYS
}

/// id-mapped mounts need the kernel call and the rootfs code to accept the
/// `idmap` option.
fn idmap_supported() -> bool {
    let rootfs_accepts = crate::rootfs::mount_options::parse(&["idmap".to_string()]).is_ok();
    rootfs_accepts && kernel_has_mount_setattr()
}

/// The features document as JSON.
pub fn features() -> Value {
    let mut caps: Vec<caps::Capability> = caps::all().into_iter().collect();
    caps.sort_by_key(|c| c.index());
    let capabilities: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
    let known_flags: Vec<String> = KNOWN_FLAGS.iter().map(|f| f.to_string()).collect();
    let supported_flags: Vec<String> = crate::seccomp::supported_flags()
        .iter()
        .map(|f| f.to_string())
        .collect();
    let libseccomp_version = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_else(|_| "unknown".to_string());
    json!({
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": HOOK_STAGES.iter().map(|h| h.name()).collect::<Vec<_>>(),
        "mountOptions": MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": capabilities,
            "cgroup": {
                "v1": true,
                "v2": true,
                "systemd": false,
                "systemdUser": false,
                "rdma": false
            },
            "seccomp": {
                "enabled": true,
                "actions": seccomp_actions(),
                "operators": [
                    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                    "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
                ],
                "archs": supported_arches(),
                "knownFlags": known_flags,
                "supportedFlags": supported_flags
            },
            "apparmor": {"enabled": crate::lsm::apparmor_enabled()},
            "selinux": {"enabled": crate::lsm::selinux_enabled()},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": idmap_supported()}}
        },
        "annotations": {
            "io.berth.runtime.version": env!("CARGO_PKG_VERSION"),
            "io.berth.runtime.libseccomp.version": libseccomp_version,
            "io.berth.runtime.checkpoint.enabled": "false"
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use oci_spec::runtime::Features;

    #[test]
    fn features_json_parses_as_the_spec_type() {
        let v = features();
        let f: Features = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(f.oci_version_min(), "1.0.0");
        assert_eq!(f.oci_version_max(), "1.2.0");
        assert_eq!(
            f.hooks().as_ref().unwrap(),
            &[
                "prestart",
                "createRuntime",
                "createContainer",
                "startContainer",
                "poststart",
                "poststop"
            ]
        );
        let linux = f.linux().as_ref().unwrap();
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 8);
        let caps = linux.capabilities().as_ref().unwrap();
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(caps.iter().all(|c| c.starts_with("CAP_")));
        let seccomp = linux.seccomp().as_ref().unwrap();
        assert_eq!(seccomp.enabled(), &Some(true));
        // Arch names round-trip through the spec's enum (checked by the
        // typed parse above) and the native arch is always there.
        let archs = seccomp.archs().as_ref().unwrap();
        if cfg!(target_arch = "x86_64") {
            assert!(archs.contains(&Arch::ScmpArchX86_64));
            assert!(archs.contains(&Arch::ScmpArchX86));
        }
        // Big-endian arches are known too (probed without the native arch).
        assert!(archs.contains(&Arch::ScmpArchS390x));
        assert!(!archs.contains(&Arch::ScmpArchNative));
        let supported = seccomp.supported_flags().as_ref().unwrap();
        let known = seccomp.known_flags().as_ref().unwrap();
        assert!(supported.iter().all(|f| known.contains(f)));
        assert!(supported.contains(&"SECCOMP_FILTER_FLAG_TSYNC".to_string()));
        assert!(v["annotations"]["io.berth.runtime.version"].is_string());
        assert_eq!(v["linux"]["cgroup"]["systemd"], false);
        assert_eq!(
            v["linux"]["apparmor"]["enabled"],
            crate::lsm::apparmor_enabled()
        );
    }

    #[test]
    fn mount_options_match_the_rootfs_parser() {
        for opt in MOUNT_OPTIONS {
            let parsed = crate::rootfs::mount_options::parse(&[opt.to_string()])
                .unwrap_or_else(|e| panic!("{opt}: {e}"));
            // A recognised option never lands in the filesystem data.
            assert!(parsed.data.is_empty(), "{opt} is not recognised by rootfs");
        }
        // Unsupported extensions are not advertised.
        assert!(!MOUNT_OPTIONS.contains(&"idmap"));
        let idmap = crate::rootfs::mount_options::parse(&["idmap".to_string()]);
        assert_eq!(
            features()["linux"]["mountExtensions"]["idmap"]["enabled"],
            idmap.is_ok() && kernel_has_mount_setattr()
        );
    }

    #[test]
    fn kernel_probe_sees_mount_setattr_on_modern_kernels() {
        let release = nix::sys::utsname::uname().unwrap();
        let rel = release.release().to_string_lossy().to_string();
        let mut parts = rel.split(|c: char| !c.is_ascii_digit());
        let major: u32 = parts.next().unwrap().parse().unwrap();
        let minor: u32 = parts.next().unwrap().parse().unwrap();
        assert_eq!(kernel_has_mount_setattr(), (major, minor) >= (5, 12));
    }
}
