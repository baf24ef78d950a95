//! berthd configuration: `/etc/berth/config.toml` when present, every
//! setting defaulted, command-line flags on top.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::network::CniConfig;

/// Where the configuration file is looked for when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/config.toml";

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for berthd.
    #[error("parsing {path}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// The TOML error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("{path}: {key} {reason}")]
    Invalid {
        /// The config file (or "flags").
        path: PathBuf,
        /// The setting.
        key: &'static str,
        /// Why it is refused.
        reason: &'static str,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Persistent data: content, snapshots, metadata DB.
    pub root: PathBuf,
    /// Runtime state (lost at reboot).
    pub state: PathBuf,
    /// CRI socket path; defaults to `<state>/berth.sock`.
    pub socket: Option<PathBuf>,
    /// `tracing` filter, e.g. `info` or `berth=debug,info`.
    pub log_level: String,
    /// Log as JSON lines instead of text.
    pub log_json: bool,
    /// Registry settings.
    pub registry: RegistryConfig,
    /// Layer unpacking limits.
    pub unpack: UnpackConfig,
    /// Pod networking (CNI).
    pub cni: CniConfig,
    /// The streaming server (exec/attach/port-forward).
    pub streaming: StreamingConfig,
    /// Pods and containers.
    pub runtime: RuntimeConfig,
}

/// `[streaming]`: the exec/attach/port-forward HTTP server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// `host:port` the streaming server listens on (port 0: any free port).
    /// The default is loopback only: the kubelet (or crictl) on this node is
    /// the only client.
    pub address: String,
    /// PEM certificate chain: serve HTTPS (needs `tls_key_file` too).
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Seconds a streaming connection may stay without traffic before it is
    /// closed (the kubelet's default, 4 hours); 0 never.
    pub idle_timeout_secs: u64,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: "127.0.0.1:0".to_string(),
            tls_cert_file: None,
            tls_key_file: None,
            idle_timeout_secs: 4 * 3600,
        }
    }
}

/// `[runtime]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// cgroupfs parent of pods whose config names none.
    pub cgroup_parent: String,
    /// The shim binary; `None`: `berth-shim` next to berthd, else in PATH.
    pub shim_path: Option<PathBuf>,
    /// Most bytes ExecSync returns per stream; the rest is dropped.
    pub exec_sync_max_output: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cgroup_parent: "/berth".to_string(),
            shim_path: None,
            exec_sync_max_output: 16 << 20,
        }
    }
}

/// The shim binary's name.
pub const SHIM_BINARY: &str = "berth-shim";

impl RuntimeConfig {
    /// The shim to run: the configured path, else `berth-shim` next to the
    /// running executable, else whatever `berth-shim` PATH finds.
    pub fn shim_path(&self) -> PathBuf {
        if let Some(p) = &self.shim_path {
            return p.clone();
        }
        if let Ok(exe) = std::env::current_exe() {
            if let Some(dir) = exe.parent() {
                let candidate = dir.join(SHIM_BINARY);
                if candidate.is_file() {
                    return candidate;
                }
                // Test binaries live in target/<profile>/deps.
                if let Some(up) = dir.parent() {
                    let candidate = up.join(SHIM_BINARY);
                    if candidate.is_file() {
                        return candidate;
                    }
                }
            }
        }
        PathBuf::from(SHIM_BINARY)
    }
}

/// `[registry]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// containerd-style hosts directory: `<config_path>/<host>/hosts.toml`.
    pub config_path: PathBuf,
    /// Layers downloaded at once across all pulls.
    pub max_concurrent_downloads: usize,
}

/// `[unpack]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnpackConfig {
    /// Largest uncompressed size of one layer, in bytes.
    pub max_unpacked_bytes: u64,
    /// Most tar entries in one layer.
    pub max_entries: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/var/lib/berth"),
            state: PathBuf::from("/run/berth"),
            socket: None,
            log_level: "info".to_string(),
            log_json: false,
            registry: RegistryConfig::default(),
            unpack: UnpackConfig::default(),
            cni: CniConfig::default(),
            streaming: StreamingConfig::default(),
            runtime: RuntimeConfig::default(),
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            config_path: PathBuf::from("/etc/berth/certs.d"),
            max_concurrent_downloads: 3,
        }
    }
}

impl Default for UnpackConfig {
    fn default() -> Self {
        UnpackConfig {
            // 16 GiB and 1M entries: far above real images, far below a bomb
            // that would fill the disk.
            max_unpacked_bytes: 16 << 30,
            max_entries: 1 << 20,
        }
    }
}

/// Command-line overrides (all optional).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--socket`
    pub socket: Option<PathBuf>,
    /// `--root`
    pub root: Option<PathBuf>,
    /// `--state`
    pub state: Option<PathBuf>,
    /// `--log-level`
    pub log_level: Option<String>,
}

impl Config {
    /// Loads `path` (or [`DEFAULT_CONFIG_PATH`] when `None`; a missing default
    /// file means all defaults, a missing explicit file is an error) and
    /// applies `overrides`.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let (file, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let mut config = match std::fs::read_to_string(&file) {
            Ok(text) => Config::parse(&text, &file)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Config::default(),
            Err(source) => return Err(ConfigError::Read { path: file, source }),
        };
        config.apply(overrides);
        Ok(config)
    }

    /// Parses config TOML (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
        if !config.runtime.cgroup_parent.starts_with('/') {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                key: "runtime.cgroup_parent",
                reason: "must be an absolute cgroupfs path",
            });
        }
        if config.runtime.exec_sync_max_output == 0 {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                key: "runtime.exec_sync_max_output",
                reason: "must be at least 1",
            });
        }
        if config.streaming.tls_cert_file.is_some() != config.streaming.tls_key_file.is_some() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                key: "streaming.tls_cert_file",
                reason: "and streaming.tls_key_file must be set together",
            });
        }
        if config
            .streaming
            .address
            .parse::<std::net::SocketAddr>()
            .is_err()
        {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                key: "streaming.address",
                reason: "must be an IP:port socket address",
            });
        }
        if config.registry.max_concurrent_downloads == 0 {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                key: "registry.max_concurrent_downloads",
                reason: "must be at least 1",
            });
        }
        Ok(config)
    }

    /// Applies flag overrides on top of the file.
    pub fn apply(&mut self, o: &Overrides) {
        if let Some(v) = &o.root {
            self.root = v.clone();
        }
        if let Some(v) = &o.state {
            self.state = v.clone();
        }
        if let Some(v) = &o.socket {
            self.socket = Some(v.clone());
        }
        if let Some(v) = &o.log_level {
            self.log_level = v.clone();
        }
    }

    /// The socket path: explicit, else `<state>/berth.sock`, so two daemons
    /// with different state dirs never share a socket.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.state.join("berth.sock"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let c = Config::parse("", Path::new("x")).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.socket_path(), PathBuf::from("/run/berth/berth.sock"));
        assert_eq!(c.registry.config_path, PathBuf::from("/etc/berth/certs.d"));
        assert_eq!(c.cni.conf_dir, PathBuf::from("/etc/cni/net.d"));
        assert_eq!(
            c.cni.bin_dirs,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(c.streaming.address, "127.0.0.1:0");
        assert_eq!(c.runtime.cgroup_parent, "/berth");
        assert_eq!(c.runtime.exec_sync_max_output, 16 << 20);
        assert!(c.runtime.shim_path.is_none());
    }

    #[test]
    fn pod_sections_parse_and_are_checked() {
        let c = Config::parse(
            "[cni]\nconf_dir = \"/c\"\nbin_dirs = [\"/b\"]\n[streaming]\naddress = \"127.0.0.1:1234\"\n\
             [runtime]\ncgroup_parent = \"/k\"\nshim_path = \"/s\"\nexec_sync_max_output = 10\n",
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(c.cni.conf_dir, PathBuf::from("/c"));
        assert_eq!(c.cni.bin_dirs, vec![PathBuf::from("/b")]);
        assert_eq!(c.streaming.address, "127.0.0.1:1234");
        assert_eq!(c.runtime.shim_path(), PathBuf::from("/s"));
        assert_eq!(c.runtime.exec_sync_max_output, 10);
        assert!(matches!(
            Config::parse("[runtime]\ncgroup_parent = \"rel\"", Path::new("x")),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            Config::parse("[runtime]\nexec_sync_max_output = 0", Path::new("x")),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn file_values_then_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            r#"
root = "/srv/berth"
log_level = "debug"
[registry]
config_path = "/tmp/certs.d"
max_concurrent_downloads = 8
[unpack]
max_entries = 10
"#,
        )
        .unwrap();
        let c = Config::load(Some(&path), &Overrides::default()).unwrap();
        assert_eq!(c.root, PathBuf::from("/srv/berth"));
        assert_eq!(c.registry.max_concurrent_downloads, 8);
        assert_eq!(c.unpack.max_entries, 10);
        assert_eq!(
            c.unpack.max_unpacked_bytes,
            UnpackConfig::default().max_unpacked_bytes
        );
        let o = Overrides {
            root: Some("/a".into()),
            state: Some("/b".into()),
            socket: None,
            log_level: Some("warn".into()),
        };
        let c = Config::load(Some(&path), &o).unwrap();
        assert_eq!(c.root, PathBuf::from("/a"));
        assert_eq!(c.socket_path(), PathBuf::from("/b/berth.sock"));
        assert_eq!(c.log_level, "warn");
    }

    #[test]
    fn errors_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        assert!(matches!(
            Config::load(Some(&missing), &Overrides::default()),
            Err(ConfigError::Read { .. })
        ));
        assert!(matches!(
            Config::parse("bogus = 1", Path::new("x")),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            Config::parse("[registry]\nmax_concurrent_downloads = 0", Path::new("x")),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn streaming_tls_needs_both_files_and_an_ip_address() {
        let p = Path::new("t.toml");
        let c = Config::parse(
            "[streaming]\naddress = \"[::1]:0\"\ntls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\"\n",
            p,
        )
        .unwrap();
        assert_eq!(
            c.streaming.tls_key_file.as_deref(),
            Some(Path::new("/k.pem"))
        );
        assert!(matches!(
            Config::parse("[streaming]\ntls_cert_file = \"/c.pem\"\n", p),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            Config::parse("[streaming]\naddress = \"localhost:1\"\n", p),
            Err(ConfigError::Invalid { .. })
        ));
    }
}
