//! Pod networking through CNI plugins.
//!
//! [`Network`] runs the plugins of the first config in the conf dir: ADD in
//! list order when a pod sandbox starts, DEL in reverse when it stops or is
//! removed. The config and the final ADD result are cached per pod under the
//! cache dir, so DEL gets the same config and `prevResult` after a berthd
//! restart or a config change, as the spec asks. [`netns::PodNetns`] creates
//! the pinned namespace the plugins are pointed at.

pub mod conflist;
pub mod netdev;
pub mod netns;
pub mod plugin;
pub mod result;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use conflist::{ConflistError, NetworkConfigList};
pub use netns::{NetnsError, PodNetns, DEFAULT_NETNS_DIR};
pub use plugin::PluginError;
pub use result::{CniResult, Interface, ResultError};

use plugin::{Command, Invocation};

/// The interface name inside every pod.
pub const POD_IFNAME: &str = "eth0";

/// How long one plugin call may take before it is killed.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The `[cni]` section of berthd's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CniConfig {
    /// Where network configs are looked for (first in lexical order wins).
    pub conf_dir: PathBuf,
    /// Where plugin binaries are looked for, in order; also `CNI_PATH`.
    pub bin_dirs: Vec<PathBuf>,
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
        }
    }
}

/// Errors of pod network set-up and tear-down.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// No usable network config.
    #[error(transparent)]
    Config(#[from] ConflistError),
    /// A plugin failed.
    #[error("pod {pod_id}: network {network}")]
    Plugin {
        /// The pod sandbox id.
        pod_id: String,
        /// The network name.
        network: String,
        /// The plugin failure (boxed: it is large and errors travel often).
        #[source]
        source: Box<PluginError>,
    },
    /// A plugin's ADD output is not a usable result.
    #[error("pod {pod_id}: result of CNI plugin {plugin}")]
    Result {
        /// The pod sandbox id.
        pod_id: String,
        /// The plugin type.
        plugin: String,
        /// The parse error.
        #[source]
        source: ResultError,
    },
    /// The per-pod cache could not be written or read.
    #[error("CNI result cache {path}")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// CHECK was asked for a pod that has no cached ADD result.
    #[error("pod {0}: no cached network result to check")]
    NotAttached(String),
}

/// Readiness of the pod network, for CRI Status `NetworkReady`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkStatus {
    reason: Option<String>,
}

impl NetworkStatus {
    /// Whether pods can be networked.
    pub fn ready(&self) -> bool {
        self.reason.is_none()
    }

    /// Why the network is not ready (`None` when ready).
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }
}

/// A host port mapping (the `portMappings` capability).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortMapping {
    /// Port on the host.
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    /// Port in the pod.
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp` (lower case, as portmap expects).
    pub protocol: String,
    /// Host address to bind; empty for all.
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// Traffic limits (the `bandwidth` capability), in bits per second and bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bandwidth {
    /// Ingress rate.
    #[serde(rename = "ingressRate")]
    pub ingress_rate: u64,
    /// Ingress burst.
    #[serde(rename = "ingressBurst")]
    pub ingress_burst: u64,
    /// Egress rate.
    #[serde(rename = "egressRate")]
    pub egress_rate: u64,
    /// Egress burst.
    #[serde(rename = "egressBurst")]
    pub egress_burst: u64,
}

/// What the network needs to know about a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkRequest {
    /// Pod sandbox id (`CNI_CONTAINERID`, `K8S_POD_INFRA_CONTAINER_ID`).
    pub pod_id: String,
    /// Kubernetes namespace of the pod.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod UID.
    pub uid: String,
    /// The pinned netns path.
    pub netns: PathBuf,
    /// Host port mappings; entries with host port 0 are not passed on.
    pub port_mappings: Vec<PortMapping>,
    /// Optional traffic shaping.
    pub bandwidth: Option<Bandwidth>,
}

/// The outcome of a successful set-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkResult {
    /// The pod's addresses, primary first.
    pub ips: Vec<IpAddr>,
    /// The interfaces the plugins reported.
    pub interfaces: Vec<Interface>,
    /// The network name.
    pub network: String,
}

/// What is cached per pod between ADD and DEL.
#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    name: String,
    #[serde(rename = "cniVersion")]
    cni_version: String,
    plugins: Vec<Map<String, Value>>,
    result: Value,
}

/// The CNI front end berthd calls.
#[derive(Debug, Clone)]
pub struct Network {
    config: CniConfig,
    cache_dir: PathBuf,
    timeout: Duration,
}

impl Network {
    /// A network using `config`, caching per-pod state under `cache_dir`.
    pub fn new(config: CniConfig, cache_dir: impl Into<PathBuf>) -> Network {
        Network {
            config,
            cache_dir: cache_dir.into(),
            timeout: DEFAULT_PLUGIN_TIMEOUT,
        }
    }

    /// Changes the per-plugin timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Network {
        self.timeout = timeout;
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &CniConfig {
        &self.config
    }

    /// Loads the current network config (re-read on every call, so a config
    /// written after start-up is picked up, as the kubelet expects).
    pub fn load(&self) -> Result<NetworkConfigList, ConflistError> {
        conflist::load_first(&self.config.conf_dir)
    }

    /// Whether a valid config exists and all its plugins are installed.
    pub fn status(&self) -> NetworkStatus {
        let reason = match self.load() {
            Err(e) => Some(e.to_string()),
            Ok(list) => (0..list.plugins.len())
                .find_map(|i| plugin::find_plugin(&self.config.bin_dirs, list.plugin_type(i)).err())
                .map(|e| e.to_string()),
        };
        NetworkStatus { reason }
    }

    /// Runs ADD for every plugin in order; on failure, undoes with DEL.
    pub async fn setup(&self, req: &PodNetworkRequest) -> Result<PodNetworkResult, NetworkError> {
        let list = self.load()?;
        let caps = capabilities(req);
        let args = cni_args(req);
        let netns = req.netns.to_string_lossy();
        let inv = self.invocation(Command::Add, req, &netns, &args);
        let mut prev: Option<Value> = None;
        for (i, conf) in list.plugins.iter().enumerate() {
            let ty = list.plugin_type(i);
            let stdin =
                plugin::plugin_config(&list.name, &list.cni_version, conf, prev.as_ref(), &caps);
            let out = match plugin::exec(&inv, ty, &stdin).await {
                Ok(out) => out,
                Err(source) => {
                    self.undo(req, &list, prev.as_ref()).await;
                    return Err(NetworkError::Plugin {
                        pod_id: req.pod_id.clone(),
                        network: list.name.clone(),
                        source: Box::new(source),
                    });
                }
            };
            let parsed = serde_json::from_slice::<Value>(&out)
                .map_err(ResultError::Json)
                .and_then(|v| result::parse_result(&out).map(|_| v));
            match parsed {
                Ok(v) => prev = Some(v),
                Err(source) => {
                    self.undo(req, &list, prev.as_ref()).await;
                    return Err(NetworkError::Result {
                        pod_id: req.pod_id.clone(),
                        plugin: ty.to_string(),
                        source,
                    });
                }
            }
        }
        let raw = prev.unwrap_or(Value::Null);
        let parsed = result::parse_result(raw.to_string().as_bytes()).map_err(|source| {
            NetworkError::Result {
                pod_id: req.pod_id.clone(),
                plugin: list
                    .plugin_type(list.plugins.len().saturating_sub(1))
                    .to_string(),
                source,
            }
        })?;
        self.write_cache(&req.pod_id, &list, raw)?;
        tracing::info!(pod_id = %req.pod_id, network = %list.name, ips = ?parsed.pod_ips(), "pod network set up");
        Ok(PodNetworkResult {
            ips: parsed.pod_ips(),
            interfaces: parsed.interfaces.clone(),
            network: list.name,
        })
    }

    /// Runs DEL for every plugin in reverse order. Idempotent; when the netns
    /// is gone `CNI_NETNS` is passed empty so plugins release what they hold
    /// on the host (IPAM leases, port maps) anyway.
    pub async fn teardown(&self, req: &PodNetworkRequest) -> Result<(), NetworkError> {
        let (list, prev) = match self.read_cache(&req.pod_id)? {
            Some(c) => (
                NetworkConfigList {
                    path: self.cache_path(&req.pod_id),
                    name: c.name,
                    cni_version: c.cni_version,
                    plugins: c.plugins,
                },
                Some(c.result),
            ),
            None => match self.load() {
                Ok(list) => (list, None),
                // Never attached and nothing configured: nothing to undo.
                Err(ConflistError::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            },
        };
        self.del(req, &list, prev.as_ref()).await?;
        let path = self.cache_path(&req.pod_id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(NetworkError::Cache { path, source }),
        }
        tracing::info!(pod_id = %req.pod_id, network = %list.name, "pod network torn down");
        Ok(())
    }

    /// Runs CHECK for every plugin against the cached ADD result.
    pub async fn check(&self, req: &PodNetworkRequest) -> Result<(), NetworkError> {
        let cached = self
            .read_cache(&req.pod_id)?
            .ok_or_else(|| NetworkError::NotAttached(req.pod_id.clone()))?;
        let caps = capabilities(req);
        let args = cni_args(req);
        let netns = req.netns.to_string_lossy();
        let inv = self.invocation(Command::Check, req, &netns, &args);
        for conf in &cached.plugins {
            let ty = conf.get("type").and_then(Value::as_str).unwrap_or_default();
            let stdin = plugin::plugin_config(
                &cached.name,
                &cached.cni_version,
                conf,
                Some(&cached.result),
                &caps,
            );
            plugin::exec(&inv, ty, &stdin)
                .await
                .map_err(|source| NetworkError::Plugin {
                    pod_id: req.pod_id.clone(),
                    network: cached.name.clone(),
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }

    async fn del(
        &self,
        req: &PodNetworkRequest,
        list: &NetworkConfigList,
        prev: Option<&Value>,
    ) -> Result<(), NetworkError> {
        let caps = capabilities(req);
        let args = cni_args(req);
        let netns = if req.netns.exists() {
            req.netns.to_string_lossy().into_owned()
        } else {
            String::new()
        };
        let inv = self.invocation(Command::Del, req, &netns, &args);
        for (i, conf) in list.plugins.iter().enumerate().rev() {
            let stdin = plugin::plugin_config(&list.name, &list.cni_version, conf, prev, &caps);
            plugin::exec(&inv, list.plugin_type(i), &stdin)
                .await
                .map_err(|source| NetworkError::Plugin {
                    pod_id: req.pod_id.clone(),
                    network: list.name.clone(),
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }

    /// Best-effort DEL after a failed ADD, so no lease or rule leaks.
    async fn undo(&self, req: &PodNetworkRequest, list: &NetworkConfigList, prev: Option<&Value>) {
        if let Err(err) = self.del(req, list, prev).await {
            tracing::warn!(?err, pod_id = %req.pod_id, "cleanup after failed CNI ADD failed");
        }
    }

    fn invocation<'a>(
        &'a self,
        command: Command,
        req: &'a PodNetworkRequest,
        netns: &'a str,
        args: &'a str,
    ) -> Invocation<'a> {
        Invocation {
            command,
            container_id: &req.pod_id,
            netns,
            ifname: POD_IFNAME,
            args,
            bin_dirs: &self.config.bin_dirs,
            timeout: self.timeout,
        }
    }

    fn cache_path(&self, pod_id: &str) -> PathBuf {
        // Pod ids are validated hex by the caller; keep any '/' out anyway.
        self.cache_dir
            .join(format!("{}.json", pod_id.replace('/', "_")))
    }

    fn write_cache(
        &self,
        pod_id: &str,
        list: &NetworkConfigList,
        result: Value,
    ) -> Result<(), NetworkError> {
        let path = self.cache_path(pod_id);
        let cached = Cached {
            name: list.name.clone(),
            cni_version: list.cni_version.clone(),
            plugins: list.plugins.clone(),
            result,
        };
        let io = |source| NetworkError::Cache {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.cache_dir).map_err(io)?;
        let bytes = serde_json::to_vec(&cached).map_err(|e| io(e.into()))?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    fn read_cache(&self, pod_id: &str) -> Result<Option<Cached>, NetworkError> {
        let path = self.cache_path(pod_id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(NetworkError::Cache { path, source }),
        };
        match serde_json::from_slice(&bytes) {
            Ok(c) => Ok(Some(c)),
            Err(err) => {
                // A torn cache must not block DEL forever: fall back to the
                // current config without prevResult.
                tracing::warn!(?err, path = %path.display(), "ignoring unreadable CNI cache");
                Ok(None)
            }
        }
    }
}

fn cni_args(req: &PodNetworkRequest) -> String {
    plugin::build_cni_args(&req.namespace, &req.name, &req.pod_id, &req.uid)
}

/// The runtime values of the capabilities berth supports.
fn capabilities(req: &PodNetworkRequest) -> Map<String, Value> {
    let mut caps = Map::new();
    let ports: Vec<&PortMapping> = req
        .port_mappings
        .iter()
        .filter(|p| p.host_port != 0)
        .collect();
    if !ports.is_empty() {
        caps.insert("portMappings".into(), serde_json::json!(ports));
    }
    if let Some(bw) = &req.bandwidth {
        caps.insert("bandwidth".into(), serde_json::json!(bw));
    }
    caps
}

/// The cache dir berthd uses under its state dir.
pub fn default_cache_dir(state: &Path) -> PathBuf {
    state.join("cni-cache")
}

#[cfg(test)]
mod tests;
