//! Per-registry endpoint configuration read from containerd's `hosts.toml`
//! format, so a node's existing containerd mirror files work unchanged.
//!
//! For a registry host `H`, `<config_path>/H/hosts.toml` (else
//! `<config_path>/_default/hosts.toml`) lists `[host."<url>"]` mirrors, tried
//! in file order, and optionally `server`, the origin, tried last. Without any
//! file the origin alone is used. As in containerd, a file that names mirrors
//! but no `server` never falls back to the origin: that is how a node is kept
//! off the internet.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::reference::DOCKER_HUB_DOMAIN;

/// The host Docker Hub's registry API is served from.
const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";

/// Errors reading a `hosts.toml`.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    /// The file exists but cannot be read.
    #[error("reading {path}")]
    Read {
        /// The hosts.toml path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for the hosts format.
    #[error("parsing {path}")]
    Parse {
        /// The hosts.toml path.
        path: PathBuf,
        /// The TOML error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A `server` or `host` key is not a usable URL.
    #[error("{path}: invalid endpoint URL {url:?}: {reason}")]
    Url {
        /// The hosts.toml path.
        path: PathBuf,
        /// The offending URL.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An unknown capability name.
    #[error("{path}: unknown capability {capability:?} (expected pull, resolve or push)")]
    Capability {
        /// The hosts.toml path.
        path: PathBuf,
        /// The offending capability.
        capability: String,
    },
}

/// What an endpoint may be used for (containerd's capability names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Fetch blobs and manifests by digest.
    pub pull: bool,
    /// Resolve a tag to a digest.
    pub resolve: bool,
    /// Push content.
    pub push: bool,
}

impl Capabilities {
    /// pull + resolve + push (containerd's default for `server`).
    pub const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: true,
    };
    /// pull + resolve (containerd's default for a `[host]` mirror).
    pub const PULL_RESOLVE: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: false,
    };
}

/// HTTP scheme of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTPS.
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A client certificate: the certificate file and, when separate, its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// PEM certificate (may also hold the key).
    pub cert: PathBuf,
    /// PEM private key, when in its own file.
    pub key: Option<PathBuf>,
}

/// One place to fetch a registry's content from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// http or https.
    pub scheme: Scheme,
    /// `host[:port]`.
    pub authority: String,
    /// The API root the repository path is appended to: `/v2` normally,
    /// or the URL's own path with `override_path` (e.g. `/v2/registry.k8s.io`).
    pub api_root: String,
    /// What this endpoint may be used for.
    pub capabilities: Capabilities,
    /// Accept any TLS certificate.
    pub skip_verify: bool,
    /// Extra CA certificates (PEM files).
    pub ca: Vec<PathBuf>,
    /// Client certificates for mutual TLS.
    pub client: Vec<ClientCert>,
    /// Extra request headers (name, value), repeated names allowed.
    pub headers: Vec<(String, String)>,
    /// True for the registry's own server (`server` or the built-in default).
    pub is_origin: bool,
}

impl Endpoint {
    /// URL prefix of `repository` on this endpoint, e.g.
    /// `http://127.0.0.1:5000/v2/registry.k8s.io/pause`.
    pub fn repository_url(&self, repository: &str) -> String {
        format!(
            "{}://{}{}/{}",
            self.scheme.as_str(),
            self.authority,
            self.api_root,
            repository
        )
    }

    /// The `/v2/` ping URL used to discover the auth challenge. For a
    /// path-prefixed mirror this is the prefixed root, as containerd does.
    pub fn base_url(&self) -> String {
        format!(
            "{}://{}{}/",
            self.scheme.as_str(),
            self.authority,
            self.api_root
        )
    }

    /// The built-in origin endpoint for a registry host without a hosts.toml:
    /// HTTPS, except plain HTTP for loopback hosts and `localhost` (local test
    /// registries rarely have certificates; nothing leaves the machine).
    pub fn default_origin(registry_host: &str) -> Endpoint {
        let authority = if registry_host == DOCKER_HUB_DOMAIN {
            DOCKER_HUB_API_HOST.to_string()
        } else {
            registry_host.to_string()
        };
        let scheme = if is_loopback_host(registry_host) {
            Scheme::Http
        } else {
            Scheme::Https
        };
        Endpoint {
            scheme,
            authority,
            api_root: "/v2".to_string(),
            capabilities: Capabilities::ALL,
            skip_verify: false,
            ca: Vec::new(),
            client: Vec::new(),
            headers: Vec::new(),
            is_origin: true,
        }
    }
}

/// True for `localhost[:port]` and loopback IP addresses (with or without port).
pub fn is_loopback_host(host: &str) -> bool {
    let bare = strip_port(host);
    if bare == "localhost" {
        return true;
    }
    let bare = bare.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// A value that may be written as one string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `client` may be `"cert"`, `["cert", ...]` or `[["cert", "key"], ...]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ClientSpec {
    One(String),
    Many(Vec<ClientItem>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ClientItem {
    Cert(String),
    Pair(Vec<String>),
}

#[derive(Debug, Deserialize, Default)]
struct HostFields {
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    ca: Option<OneOrMany>,
    client: Option<ClientSpec>,
    header: Option<BTreeMap<String, OneOrMany>>,
    override_path: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct HostsFile {
    server: Option<String>,
    #[serde(flatten)]
    top: HostFields,
    /// Kept in file order (toml's `preserve_order`): mirrors are tried in it.
    #[serde(default)]
    host: toml::Table,
}

/// The ordered endpoints for a registry host, read from `config_path`
/// (containerd's `certs.d` layout). A missing directory or file means the origin
/// alone; an unreadable or invalid file is an error (never a silent fallback
/// to the internet).
pub fn endpoints_for(config_path: &Path, registry_host: &str) -> Result<Vec<Endpoint>, HostsError> {
    for dir in host_dir_names(registry_host) {
        let path = config_path.join(dir).join("hosts.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => return parse_hosts_toml(&text, &path, registry_host),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(HostsError::Read { path, source }),
        }
    }
    Ok(vec![Endpoint::default_origin(registry_host)])
}

/// Directory names tried for a host: the host itself, then `_default`.
fn host_dir_names(registry_host: &str) -> Vec<String> {
    vec![registry_host.to_string(), "_default".to_string()]
}

/// Parses one hosts.toml. `path` is used for messages and to resolve
/// relative `ca`/`client` paths (relative to the file's directory).
pub fn parse_hosts_toml(
    text: &str,
    path: &Path,
    registry_host: &str,
) -> Result<Vec<Endpoint>, HostsError> {
    let file: HostsFile = toml::from_str(text).map_err(|source| HostsError::Parse {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let base_dir = path.parent().unwrap_or(Path::new("/"));
    let mut endpoints = Vec::new();
    for (url, value) in file.host {
        let fields: HostFields =
            value
                .try_into()
                .map_err(|source: toml::de::Error| HostsError::Parse {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                })?;
        endpoints.push(build_endpoint(
            &url,
            fields,
            path,
            base_dir,
            false,
            registry_host,
        )?);
    }
    if let Some(server) = &file.server {
        endpoints.push(build_endpoint(
            server,
            file.top,
            path,
            base_dir,
            true,
            registry_host,
        )?);
    } else if endpoints.is_empty() {
        endpoints.push(Endpoint::default_origin(registry_host));
    }
    Ok(endpoints)
}

fn build_endpoint(
    url: &str,
    fields: HostFields,
    path: &Path,
    base_dir: &Path,
    is_origin: bool,
    registry_host: &str,
) -> Result<Endpoint, HostsError> {
    let url_err = |reason| HostsError::Url {
        path: path.to_path_buf(),
        url: url.to_string(),
        reason,
    };
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        Some(_) => return Err(url_err("scheme must be http or https")),
        // containerd: no scheme means HTTPS.
        None => (Scheme::Https, url),
    };
    let (authority, url_path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(url_err("missing host"));
    }
    if url_path.contains(['?', '#']) {
        return Err(url_err("query and fragment are not allowed"));
    }
    let url_path = url_path.trim_end_matches('/');
    let override_path = fields.override_path.unwrap_or(false);
    let api_root = if override_path || url_path.ends_with("/v2") {
        url_path.to_string()
    } else {
        format!("{url_path}/v2")
    };
    let capabilities = match fields.capabilities {
        None if is_origin => Capabilities::ALL,
        None => Capabilities::PULL_RESOLVE,
        Some(list) => {
            let mut caps = Capabilities::default();
            for c in list {
                match c.as_str() {
                    "pull" => caps.pull = true,
                    "resolve" => caps.resolve = true,
                    "push" => caps.push = true,
                    _ => {
                        return Err(HostsError::Capability {
                            path: path.to_path_buf(),
                            capability: c,
                        })
                    }
                }
            }
            caps
        }
    };
    let resolve = |p: String| {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            base_dir.join(p)
        }
    };
    let ca = fields
        .ca
        .map(|c| c.into_vec().into_iter().map(resolve).collect())
        .unwrap_or_default();
    let client = match fields.client {
        None => Vec::new(),
        Some(ClientSpec::One(cert)) => vec![ClientCert {
            cert: resolve(cert),
            key: None,
        }],
        Some(ClientSpec::Many(items)) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    ClientItem::Cert(cert) => out.push(ClientCert {
                        cert: resolve(cert),
                        key: None,
                    }),
                    ClientItem::Pair(pair) => {
                        let mut it = pair.into_iter();
                        let Some(cert) = it.next() else {
                            return Err(url_err("empty client certificate entry"));
                        };
                        out.push(ClientCert {
                            cert: resolve(cert),
                            key: it.next().map(resolve),
                        });
                    }
                }
            }
            out
        }
    };
    let headers = fields
        .header
        .unwrap_or_default()
        .into_iter()
        .flat_map(|(k, v)| v.into_vec().into_iter().map(move |v| (k.clone(), v)))
        .collect();
    // An origin written as the Docker Hub name means its API host.
    let authority =
        if is_origin && authority == DOCKER_HUB_DOMAIN && registry_host == DOCKER_HUB_DOMAIN {
            DOCKER_HUB_API_HOST.to_string()
        } else {
            authority.to_string()
        };
    Ok(Endpoint {
        scheme,
        authority,
        api_root,
        capabilities,
        skip_verify: fields.skip_verify.unwrap_or(false),
        ca,
        client,
        headers,
        is_origin,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str, host: &str) -> Vec<Endpoint> {
        parse_hosts_toml(text, Path::new("/etc/berth/certs.d/x/hosts.toml"), host).unwrap()
    }

    #[test]
    fn no_file_means_origin_only() {
        let dir = tempfile::tempdir().unwrap();
        let eps = endpoints_for(dir.path(), "docker.io").unwrap();
        assert_eq!(eps.len(), 1);
        assert!(eps[0].is_origin);
        assert_eq!(
            eps[0].repository_url("library/busybox"),
            "https://registry-1.docker.io/v2/library/busybox"
        );
        let eps = endpoints_for(dir.path(), "127.0.0.1:5000").unwrap();
        assert_eq!(eps[0].repository_url("a"), "http://127.0.0.1:5000/v2/a");
        let eps = endpoints_for(dir.path(), "localhost:5000").unwrap();
        assert_eq!(eps[0].scheme, Scheme::Http);
        let eps = endpoints_for(dir.path(), "quay.io").unwrap();
        assert_eq!(eps[0].scheme, Scheme::Https);
    }

    #[test]
    fn mirrors_in_file_order_then_server_as_fallback() {
        let eps = parse(
            r#"
server = "https://registry.k8s.io"
[host."http://127.0.0.1:5002"]
  capabilities = ["pull", "resolve"]
[host."http://127.0.0.1:5001"]
  capabilities = ["pull"]
  skip_verify = true
  ca = "ca.pem"
  client = [["client.crt", "client.key"]]
  [host."http://127.0.0.1:5001".header]
    x-one = "a"
    x-many = ["b", "c"]
"#,
            "registry.k8s.io",
        );
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0].authority, "127.0.0.1:5002");
        assert_eq!(eps[0].capabilities, Capabilities::PULL_RESOLVE);
        assert_eq!(eps[1].authority, "127.0.0.1:5001");
        assert!(eps[1].capabilities.pull && !eps[1].capabilities.resolve);
        assert!(eps[1].skip_verify);
        assert_eq!(
            eps[1].ca,
            vec![PathBuf::from("/etc/berth/certs.d/x/ca.pem")]
        );
        assert_eq!(
            eps[1].client,
            vec![ClientCert {
                cert: "/etc/berth/certs.d/x/client.crt".into(),
                key: Some("/etc/berth/certs.d/x/client.key".into())
            }]
        );
        let mut h = eps[1].headers.clone();
        h.sort();
        assert_eq!(
            h,
            vec![
                ("x-many".to_string(), "b".to_string()),
                ("x-many".to_string(), "c".to_string()),
                ("x-one".to_string(), "a".to_string())
            ]
        );
        assert!(eps[2].is_origin);
        assert_eq!(eps[2].capabilities, Capabilities::ALL);
        assert_eq!(
            eps[2].repository_url("pause"),
            "https://registry.k8s.io/v2/pause"
        );
    }

    #[test]
    fn mirrors_without_server_never_fall_back() {
        let eps = parse(r#"[host."http://127.0.0.1:1"]"#, "quay.io");
        assert_eq!(eps.len(), 1);
        assert!(!eps[0].is_origin);
        assert_eq!(eps[0].repository_url("x/y"), "http://127.0.0.1:1/v2/x/y");
    }

    #[test]
    fn override_path_uses_the_path_as_api_root() {
        let eps = parse(
            r#"
[host."http://127.0.0.1:5000/v2/registry.k8s.io"]
  capabilities = ["pull", "resolve"]
  override_path = true
"#,
            "registry.k8s.io",
        );
        assert_eq!(
            format!("{}/manifests/3.10", eps[0].repository_url("pause")),
            "http://127.0.0.1:5000/v2/registry.k8s.io/pause/manifests/3.10"
        );
        // Without override_path, containerd appends /v2 to a path.
        let eps = parse(r#"[host."https://mirror.local/cache"]"#, "docker.io");
        assert_eq!(
            eps[0].repository_url("library/busybox"),
            "https://mirror.local/cache/v2/library/busybox"
        );
        let eps = parse(r#"[host."https://mirror.local/cache/v2/"]"#, "docker.io");
        assert_eq!(eps[0].api_root, "/cache/v2");
    }

    #[test]
    fn docker_hub_server_and_scheme_less_urls() {
        let eps = parse(r#"server = "https://docker.io""#, "docker.io");
        assert_eq!(eps[0].authority, "registry-1.docker.io");
        let eps = parse(r#"[host."mirror.local:5000"]"#, "docker.io");
        assert_eq!(eps[0].scheme, Scheme::Https);
        assert_eq!(eps[0].authority, "mirror.local:5000");
    }

    #[test]
    fn bad_files_are_errors_not_fallbacks() {
        let p = Path::new("/x/hosts.toml");
        assert!(matches!(
            parse_hosts_toml("server = [", p, "h"),
            Err(HostsError::Parse { .. })
        ));
        assert!(matches!(
            parse_hosts_toml(r#"server = "ftp://h""#, p, "h"),
            Err(HostsError::Url { .. })
        ));
        assert!(matches!(
            parse_hosts_toml("[host.\"http://a\"]\ncapabilities = [\"fly\"]", p, "h"),
            Err(HostsError::Capability { .. })
        ));
    }

    #[test]
    fn host_dir_then_default_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("_default")).unwrap();
        std::fs::write(
            dir.path().join("_default/hosts.toml"),
            "[host.\"http://127.0.0.1:9\"]\n",
        )
        .unwrap();
        let eps = endpoints_for(dir.path(), "example.com").unwrap();
        assert_eq!(eps[0].authority, "127.0.0.1:9");
        std::fs::create_dir_all(dir.path().join("example.com")).unwrap();
        std::fs::write(
            dir.path().join("example.com/hosts.toml"),
            "server = \"https://example.com\"\n",
        )
        .unwrap();
        let eps = endpoints_for(dir.path(), "example.com").unwrap();
        assert_eq!(eps.len(), 1);
        assert!(eps[0].is_origin);
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback_host("127.0.0.1:5000"));
        assert!(is_loopback_host("127.1.2.3"));
        assert!(is_loopback_host("localhost"));
        assert!(is_loopback_host("localhost:80"));
        assert!(is_loopback_host("[::1]:5000"));
        assert!(!is_loopback_host("docker.io"));
        assert!(!is_loopback_host("10.0.0.1:5000"));
    }
}
