//! A pod's shared files: `hostname`, `hosts` and `resolv.conf` in the pod
//! directory, and the pod's `/dev/shm` tmpfs. Every container of the pod
//! bind-mounts them (see `container_spec`).
//!
//! - `hostname`: the pod's hostname (the host's with hostNetwork and no
//!   hostname given), newline-terminated.
//! - `hosts`: localhost entries plus each pod IP with the hostname, like the
//!   kubelet's managed hosts file; hostNetwork pods get a copy of the host's
//!   `/etc/hosts` (a copy, so a container cannot edit the host's file).
//!   The kubelet usually mounts its own `/etc/hosts` over ours.
//! - `resolv.conf`: from the CRI `DNSConfig` (`search`, `nameserver`,
//!   `options` lines); without one, a copy of the host's.
//! - `shm/`: a 64 MiB tmpfs (nosuid, nodev, noexec, mode 1777) shared by the
//!   pod's containers; hostIPC pods use the host's `/dev/shm` instead.

use std::io;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_proto::cri::{DnsConfig, NamespaceMode, PodSandboxConfig};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

/// Size of a pod's /dev/shm (containerd's and Docker's default).
pub const SHM_SIZE: &str = "65536k";

/// Errors from preparing or removing a pod's files.
#[derive(Debug, thiserror::Error)]
pub enum PodFilesError {
    /// Reading a host file to copy failed.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing a pod file or creating a directory failed.
    #[error("failed to write {path}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A DNS server, search domain or option would corrupt resolv.conf.
    #[error("invalid DNS {what} {value:?}")]
    InvalidDns {
        /// "server", "search domain" or "option".
        what: &'static str,
        /// The value given.
        value: String,
    },
    /// The hostname holds whitespace or control characters.
    #[error("invalid hostname {hostname:?}")]
    InvalidHostname {
        /// The hostname given.
        hostname: String,
    },
    /// A pod IP is not an IP address.
    #[error("invalid pod IP {ip:?}")]
    InvalidPodIp {
        /// The value given.
        ip: String,
    },
    /// The host's hostname cannot be read.
    #[error("failed to read the host's hostname")]
    HostHostname(#[source] Errno),
    /// Mounting the pod's /dev/shm tmpfs failed.
    #[error("failed to mount the pod's shm tmpfs at {path}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Errno,
    },
    /// Unmounting the pod's /dev/shm tmpfs failed.
    #[error("failed to unmount the pod's shm tmpfs at {path}")]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Errno,
    },
}

impl PodFilesError {
    /// Whether the pod config itself is wrong (gRPC `InvalidArgument`).
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            Self::InvalidDns { .. } | Self::InvalidHostname { .. } | Self::InvalidPodIp { .. }
        )
    }
}

/// The host files a pod may copy (a seam for tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFiles {
    /// The host's hosts file.
    pub hosts: PathBuf,
    /// The host's resolver configuration.
    pub resolv_conf: PathBuf,
}

impl Default for HostFiles {
    fn default() -> Self {
        Self {
            hosts: PathBuf::from("/etc/hosts"),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
        }
    }
}

/// Host paths of a pod's shared files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFiles {
    /// Bound at /etc/hostname.
    pub hostname: PathBuf,
    /// Bound at /etc/hosts.
    pub hosts: PathBuf,
    /// Bound at /etc/resolv.conf.
    pub resolv_conf: PathBuf,
    /// Bound at /dev/shm: `<pod dir>/shm`, or `/dev/shm` with hostIPC.
    pub shm: PathBuf,
}

fn mode_is_node(raw: Option<i32>) -> bool {
    raw.is_some_and(|m| NamespaceMode::try_from(m).is_ok_and(|m| m == NamespaceMode::Node))
}

fn ns_option(
    config: &PodSandboxConfig,
    pick: fn(&berth_proto::cri::NamespaceOption) -> i32,
) -> Option<i32> {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .map(pick)
}

fn host_network(config: &PodSandboxConfig) -> bool {
    mode_is_node(ns_option(config, |o| o.network))
}

fn host_ipc(config: &PodSandboxConfig) -> bool {
    mode_is_node(ns_option(config, |o| o.ipc))
}

/// The paths [`write_pod_files`] and [`mount_pod_shm`] use (no I/O).
pub fn pod_file_paths(pod_dir: &Path, config: &PodSandboxConfig) -> PodFiles {
    PodFiles {
        hostname: pod_dir.join("hostname"),
        hosts: pod_dir.join("hosts"),
        resolv_conf: pod_dir.join("resolv.conf"),
        shm: if host_ipc(config) {
            PathBuf::from("/dev/shm")
        } else {
            pod_dir.join("shm")
        },
    }
}

fn is_plain_token(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#' || c == ';')
}

/// resolv.conf text from the CRI DNS config; None when it sets nothing (the
/// host's file is copied then).
fn resolv_conf(dns: &DnsConfig) -> Result<Option<String>, PodFilesError> {
    if dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty() {
        return Ok(None);
    }
    let bad = |what, value: &String| PodFilesError::InvalidDns {
        what,
        value: value.clone(),
    };
    let mut out = String::new();
    if let Some(s) = dns.searches.iter().find(|s| !is_plain_token(s)) {
        return Err(bad("search domain", s));
    }
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        let ip: IpAddr = server.parse().map_err(|_| bad("server", server))?;
        out.push_str(&format!("nameserver {ip}\n"));
    }
    if let Some(o) = dns.options.iter().find(|o| !is_plain_token(o)) {
        return Err(bad("option", o));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Ok(Some(out))
}

/// The kubelet-style managed hosts file: localhost entries, then each pod IP
/// with the pod's hostname.
fn managed_hosts(hostname: &str, pod_ips: &[String]) -> Result<String, PodFilesError> {
    let mut out = String::from(
        "# Kubernetes-managed hosts file (berth).\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    for ip in pod_ips {
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| PodFilesError::InvalidPodIp { ip: ip.clone() })?;
        if !hostname.is_empty() {
            out.push_str(&format!("{addr}\t{hostname}\n"));
        }
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Vec<u8>, PodFilesError> {
    std::fs::read(path).map_err(|source| PodFilesError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `path` whole or not at all (temp file + rename), mode 0644.
fn write_atomic(path: &Path, content: &[u8]) -> Result<(), PodFilesError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |source| PodFilesError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(err)?;
    // Explicit mode: the umask must not hide these files from container users.
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .and_then(|()| f.write_all(content))
        .and_then(|()| f.sync_all())
        .map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The hostname the pod's files carry: the config's, or the host's when the
/// config gives none (hostNetwork pods).
fn pod_hostname(config: &PodSandboxConfig) -> Result<String, PodFilesError> {
    let name = if config.hostname.is_empty() {
        nix::unistd::gethostname()
            .map_err(PodFilesError::HostHostname)?
            .to_string_lossy()
            .into_owned()
    } else {
        config.hostname.clone()
    };
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(PodFilesError::InvalidHostname { hostname: name });
    }
    Ok(name)
}

/// Writes `<pod_dir>/{hostname,hosts,resolv.conf}` (creating `pod_dir`) and
/// returns every path containers bind, /dev/shm included (mounted
/// separately by [`mount_pod_shm`]). Call it once the pod IPs are known
/// (after CNI ADD); pass no IPs with hostNetwork.
pub fn write_pod_files(
    pod_dir: &Path,
    config: &PodSandboxConfig,
    pod_ips: &[String],
    host: &HostFiles,
) -> Result<PodFiles, PodFilesError> {
    std::fs::create_dir_all(pod_dir).map_err(|source| PodFilesError::Write {
        path: pod_dir.to_path_buf(),
        source,
    })?;
    let files = pod_file_paths(pod_dir, config);
    let hostname = pod_hostname(config)?;
    let resolv = match config.dns_config.as_ref() {
        Some(dns) => resolv_conf(dns)?,
        None => None,
    };
    let hosts = if host_network(config) {
        read(&host.hosts)?
    } else {
        managed_hosts(&hostname, pod_ips)?.into_bytes()
    };
    let resolv = match resolv {
        Some(text) => text.into_bytes(),
        None => read(&host.resolv_conf)?,
    };
    write_atomic(&files.hostname, format!("{hostname}\n").as_bytes())?;
    write_atomic(&files.hosts, &hosts)?;
    write_atomic(&files.resolv_conf, &resolv)?;
    tracing::debug!(pod_dir = %pod_dir.display(), "pod files written");
    Ok(files)
}

/// Whether `path` is the root of a mount (its device differs from its parent's).
fn is_mount_point(path: &Path) -> Result<bool, io::Error> {
    let meta = std::fs::symlink_metadata(path)?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    let pmeta = std::fs::metadata(parent)?;
    Ok(meta.dev() != pmeta.dev() || meta.ino() == pmeta.ino())
}

/// Mounts the pod's /dev/shm tmpfs at `<pod_dir>/shm` and returns its path;
/// with hostIPC returns `/dev/shm` and mounts nothing. Already mounted: Ok.
pub fn mount_pod_shm(pod_dir: &Path, config: &PodSandboxConfig) -> Result<PathBuf, PodFilesError> {
    let path = pod_file_paths(pod_dir, config).shm;
    if host_ipc(config) {
        return Ok(path);
    }
    let write_err = |source| PodFilesError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(&path).map_err(write_err)?;
    if is_mount_point(&path).map_err(write_err)? {
        return Ok(path);
    }
    let data = format!("mode=1777,size={SHM_SIZE}");
    nix::mount::mount(
        Some("shm"),
        &path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(|source| PodFilesError::Mount {
        path: path.clone(),
        source,
    })?;
    tracing::debug!(path = %path.display(), "pod shm mounted");
    Ok(path)
}

/// Unmounts `<pod_dir>/shm` (lazily, so a container still holding it cannot
/// block pod removal) and removes the directory. Nothing there: Ok.
pub fn unmount_pod_shm(pod_dir: &Path) -> Result<(), PodFilesError> {
    let path = pod_dir.join("shm");
    match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point; ENOENT: already gone.
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(source) => return Err(PodFilesError::Unmount { path, source }),
    }
    match std::fs::remove_dir(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(PodFilesError::Write { path, source: e })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use berth_proto::cri::{LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption};

    fn config(net: NamespaceMode, ipc: NamespaceMode) -> PodSandboxConfig {
        PodSandboxConfig {
            hostname: "web-0".into(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: net as i32,
                        ipc: ipc as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn host_files(dir: &Path) -> HostFiles {
        let h = HostFiles {
            hosts: dir.join("host-hosts"),
            resolv_conf: dir.join("host-resolv"),
        };
        std::fs::write(&h.hosts, "10.0.0.1 node\n").unwrap();
        std::fs::write(&h.resolv_conf, "nameserver 192.0.2.53\n").unwrap();
        h
    }

    fn text(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn pod_network_files_from_dns_config() {
        let dir = tempfile::tempdir().unwrap();
        let host = host_files(dir.path());
        let pod_dir = dir.path().join("pod");
        let mut c = config(NamespaceMode::Pod, NamespaceMode::Pod);
        c.dns_config = Some(DnsConfig {
            servers: vec!["10.96.0.10".into(), "fd00::a".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into(), "edns0".into()],
        });
        let ips = vec!["10.88.0.7".to_string(), "fd00::7".to_string()];
        let f = write_pod_files(&pod_dir, &c, &ips, &host).unwrap();
        assert_eq!(f, pod_file_paths(&pod_dir, &c));
        assert_eq!(f.shm, pod_dir.join("shm"));
        assert_eq!(text(&f.hostname), "web-0\n");
        let hosts = text(&f.hosts);
        assert!(hosts.contains("127.0.0.1\tlocalhost\n"), "{hosts}");
        assert!(hosts.contains("::1\tlocalhost ip6-localhost ip6-loopback\n"));
        assert!(
            hosts.ends_with("10.88.0.7\tweb-0\nfd00::7\tweb-0\n"),
            "{hosts}"
        );
        assert!(!hosts.contains("10.0.0.1 node"), "not the host's file");
        assert_eq!(
            text(&f.resolv_conf),
            "search default.svc.cluster.local svc.cluster.local\n\
             nameserver 10.96.0.10\nnameserver fd00::a\noptions ndots:5 edns0\n"
        );
        let mode = std::fs::metadata(&f.hosts).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o644);
        // Rewriting is fine (restarts) and leaves no temp file behind.
        write_pod_files(&pod_dir, &c, &ips, &host).unwrap();
        assert!(!pod_dir.join("hosts.tmp").exists());
    }

    #[test]
    fn host_network_and_no_dns_copy_the_host_files() {
        let dir = tempfile::tempdir().unwrap();
        let host = host_files(dir.path());
        let mut c = config(NamespaceMode::Node, NamespaceMode::Node);
        c.hostname.clear();
        c.dns_config = Some(DnsConfig::default());
        let f = write_pod_files(&dir.path().join("pod"), &c, &[], &host).unwrap();
        assert_eq!(text(&f.hosts), "10.0.0.1 node\n");
        assert_eq!(text(&f.resolv_conf), "nameserver 192.0.2.53\n");
        let own = nix::unistd::gethostname().unwrap();
        assert_eq!(text(&f.hostname), format!("{}\n", own.to_string_lossy()));
        assert_eq!(f.shm, Path::new("/dev/shm"), "hostIPC uses the host's");
    }

    #[test]
    fn injection_attempts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let host = host_files(dir.path());
        let pod_dir = dir.path().join("pod");
        let mut c = config(NamespaceMode::Pod, NamespaceMode::Pod);
        let cases = [
            DnsConfig {
                servers: vec!["10.0.0.1\nnameserver 6.6.6.6".into()],
                ..Default::default()
            },
            DnsConfig {
                searches: vec!["a b".into()],
                ..Default::default()
            },
            DnsConfig {
                options: vec!["ndots:1\nsearch evil".into()],
                ..Default::default()
            },
        ];
        for dns in cases {
            c.dns_config = Some(dns);
            let err = write_pod_files(&pod_dir, &c, &[], &host).unwrap_err();
            assert!(err.is_invalid_argument(), "{err}");
        }
        c.dns_config = None;
        let err = write_pod_files(&pod_dir, &c, &["10.0.0.1\tevil".into()], &host).unwrap_err();
        assert!(matches!(err, PodFilesError::InvalidPodIp { .. }));
        c.hostname = "a\nb".into();
        assert!(matches!(
            write_pod_files(&pod_dir, &c, &[], &host).unwrap_err(),
            PodFilesError::InvalidHostname { .. }
        ));
        let missing = HostFiles {
            hosts: host.hosts.clone(),
            resolv_conf: dir.path().join("absent"),
        };
        c.hostname = "ok".into();
        let err = write_pod_files(&pod_dir, &c, &[], &missing).unwrap_err();
        assert!(matches!(err, PodFilesError::Read { .. }) && !err.is_invalid_argument());
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Mounts and unmounts the pod shm in a private mount namespace of a
    /// scratch thread, so nothing leaks into the host's mount table.
    #[test]
    fn shm_tmpfs_mount_and_unmount() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let pod_dir = dir.path().to_path_buf();
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            let c = config(NamespaceMode::Pod, NamespaceMode::Pod);
            let shm = mount_pod_shm(&pod_dir, &c).unwrap();
            assert_eq!(shm, pod_dir.join("shm"));
            assert!(is_mount_point(&shm).unwrap());
            let st = nix::sys::statfs::statfs(&shm).unwrap();
            assert_eq!(st.filesystem_type(), nix::sys::statfs::TMPFS_MAGIC);
            let vfs = nix::sys::statvfs::statvfs(&shm).unwrap();
            let flags = vfs.flags();
            use nix::sys::statvfs::FsFlags;
            assert!(flags.contains(FsFlags::ST_NOSUID | FsFlags::ST_NODEV | FsFlags::ST_NOEXEC));
            assert_eq!(vfs.blocks() * vfs.fragment_size(), 64 << 20);
            assert_eq!(std::fs::metadata(&shm).unwrap().mode() & 0o7777, 0o1777);
            // Idempotent: a second call does not stack another tmpfs.
            std::fs::write(shm.join("marker"), b"x").unwrap();
            mount_pod_shm(&pod_dir, &c).unwrap();
            assert!(shm.join("marker").exists());
            unmount_pod_shm(&pod_dir).unwrap();
            assert!(!shm.exists());
            unmount_pod_shm(&pod_dir).unwrap();
            // hostIPC: nothing mounted.
            let c = config(NamespaceMode::Pod, NamespaceMode::Node);
            assert_eq!(mount_pod_shm(&pod_dir, &c).unwrap(), Path::new("/dev/shm"));
            assert!(!pod_dir.join("shm").exists());
        })
        .join()
        .unwrap();
    }
}
