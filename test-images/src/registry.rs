//! A throw-away OCI registry for tests: Debian's `docker-registry` (CNCF
//! distribution 2.8) on `127.0.0.1:<free port>`, storing into a temp dir.
//!
//! The process is killed and its storage removed when the [`Registry`] is
//! dropped, so tests may start as many as they like in parallel.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of the distribution binary shipped by Debian's `docker-registry` package.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const HTPASSWD_BIN: &str = "/usr/bin/htpasswd";
const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors starting or talking to the test registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file or directory of the harness could not be created.
    #[error("preparing registry files at {path}")]
    Setup {
        /// The path being written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A helper program (`docker-registry`, `htpasswd`) could not be run.
    #[error("running {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `htpasswd` refused to produce an entry.
    #[error("htpasswd failed: {stderr}")]
    Htpasswd {
        /// What htpasswd printed.
        stderr: String,
    },
    /// The registry exited or never answered `GET /v2/`.
    #[error("registry on {addr} did not become ready: {reason}; log:\n{log}")]
    NotReady {
        /// The address it was supposed to listen on.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
        /// The end of the registry's log.
        log: String,
    },
}

/// A running loopback registry. Dropping it kills the process and deletes its storage.
pub struct Registry {
    /// Where the registry listens (always 127.0.0.1).
    pub addr: SocketAddr,
    auth: Option<(String, String)>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry without authentication.
    pub fn start() -> Result<Self, RegistryError> {
        Self::start_inner(None)
    }

    /// Starts a registry that requires HTTP basic auth for `user` / `pass`
    /// (htpasswd file with a bcrypt hash, as distribution requires).
    pub fn start_with_htpasswd(user: &str, pass: &str) -> Result<Self, RegistryError> {
        Self::start_inner(Some((user.to_string(), pass.to_string())))
    }

    /// `127.0.0.1:PORT`, the registry host as it appears in image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL (for hosts.toml `server` / `[host."..."]`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The credentials this registry requires, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The directory holding the registry's blobs and repositories.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Kills the registry now but keeps the address reserved in this value
    /// (tests of a mirror that is down). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Already-exited children make kill fail harmlessly.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn start_inner(auth: Option<(String, String)>) -> Result<Self, RegistryError> {
        let mut dir = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .map_err(|source| RegistryError::Setup {
                path: std::env::temp_dir(),
                source,
            })?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|source| RegistryError::Setup {
            path: data.clone(),
            source,
        })?;
        let htpasswd = match &auth {
            Some((user, pass)) => Some(write_htpasswd(dir.path(), user, pass)?),
            None => None,
        };
        let mut last_err = None;
        // The free port is found by binding port 0 and releasing it; another
        // process can grab it in between, so a registry that fails to bind
        // is retried on a new port.
        for _ in 0..START_ATTEMPTS {
            let addr = free_loopback_port(dir.path())?;
            let config = dir.path().join("config.yml");
            write_file(&config, &config_yaml(&data, addr, htpasswd.as_deref()))?;
            let log_path = dir.path().join("registry.log");
            let log = std::fs::File::create(&log_path).map_err(|source| RegistryError::Setup {
                path: log_path.clone(),
                source,
            })?;
            let log_err = log.try_clone().map_err(|source| RegistryError::Setup {
                path: log_path.clone(),
                source,
            })?;
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .env_remove("REGISTRY_HTTP_ADDR")
                .spawn()
                .map_err(|source| RegistryError::Spawn {
                    program: REGISTRY_BIN.to_string(),
                    source,
                })?;
            let mut reg = Registry {
                addr,
                auth: auth.clone(),
                child: Some(child),
                dir,
            };
            match reg.wait_ready() {
                Ok(()) => {
                    tracing::debug!(%addr, "test registry ready");
                    return Ok(reg);
                }
                Err(e) => {
                    reg.stop();
                    last_err = Some(e);
                    dir = reg.take_dir()?;
                }
            }
        }
        Err(last_err.unwrap_or_else(|| RegistryError::NotReady {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            reason: "no start attempt was made".into(),
            log: String::new(),
        }))
    }

    /// Hands the temp dir back for another start attempt (Drop then removes a fresh empty one).
    fn take_dir(&mut self) -> Result<tempfile::TempDir, RegistryError> {
        let fresh = tempfile::TempDir::new().map_err(|source| RegistryError::Setup {
            path: std::env::temp_dir(),
            source,
        })?;
        Ok(std::mem::replace(&mut self.dir, fresh))
    }

    fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text.get(start..).unwrap_or(&text).to_string()
    }

    fn wait_ready(&mut self) -> Result<(), RegistryError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                return Err(RegistryError::NotReady {
                    addr: self.addr,
                    reason: format!("process exited with {status}"),
                    log: self.log_tail(),
                });
            }
            // 200 without auth, 401 with auth: both mean the API is serving.
            match http_status(self.addr, "/v2/") {
                Ok(200) | Ok(401) => return Ok(()),
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(code) => {
                    return Err(RegistryError::NotReady {
                        addr: self.addr,
                        reason: format!("GET /v2/ answered {code}"),
                        log: self.log_tail(),
                    })
                }
                Err(e) => {
                    return Err(RegistryError::NotReady {
                        addr: self.addr,
                        reason: format!("GET /v2/ failed: {e}"),
                        log: self.log_tail(),
                    })
                }
            }
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("addr", &self.addr)
            .field("auth", &self.auth.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// Minimal HTTP/1.0 GET against a loopback address, returning the status
/// code. Enough for readiness probes without pulling in an HTTP client.
pub fn http_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let m = s.read(&mut head[n..])?;
        if m == 0 {
            break;
        }
        n += m;
    }
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad status line {line:?}"),
            )
        })
}

fn free_loopback_port(dir: &Path) -> Result<SocketAddr, RegistryError> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|source| RegistryError::Setup {
        path: dir.to_path_buf(),
        source,
    })?;
    l.local_addr().map_err(|source| RegistryError::Setup {
        path: dir.to_path_buf(),
        source,
    })
}

fn config_yaml(data: &Path, addr: SocketAddr, htpasswd: Option<&Path>) -> String {
    let mut y = format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  secret: berth-test-{}\n",
        data.display(),
        std::process::id()
    );
    if let Some(h) = htpasswd {
        y.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
            h.display()
        ));
    }
    y
}

fn write_file(path: &Path, text: &str) -> Result<(), RegistryError> {
    std::fs::write(path, text).map_err(|source| RegistryError::Setup {
        path: path.to_path_buf(),
        source,
    })
}

fn write_htpasswd(dir: &Path, user: &str, pass: &str) -> Result<PathBuf, RegistryError> {
    // distribution only accepts bcrypt entries, hence -B.
    let out = Command::new(HTPASSWD_BIN)
        .args(["-Bbn", user, pass])
        .output()
        .map_err(|source| RegistryError::Spawn {
            program: HTPASSWD_BIN.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(RegistryError::Htpasswd {
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let path = dir.join("htpasswd");
    write_file(&path, &String::from_utf8_lossy(&out.stdout))?;
    Ok(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_cleans_up() {
        let mut reg = Registry::start().unwrap();
        assert_eq!(http_status(reg.addr, "/v2/").unwrap(), 200);
        let storage = reg.storage_dir();
        assert!(storage.is_dir());
        reg.stop();
        assert!(!reg.is_running());
        assert!(http_status(reg.addr, "/v2/").is_err());
        drop(reg);
        assert!(!storage.exists());
    }

    #[test]
    fn htpasswd_registry_demands_auth() {
        let reg = Registry::start_with_htpasswd("alice", "s3cret").unwrap();
        assert_eq!(http_status(reg.addr, "/v2/").unwrap(), 401);
        assert_eq!(reg.credentials(), Some(("alice", "s3cret")));
    }

    #[test]
    fn two_registries_get_different_ports() {
        let a = Registry::start().unwrap();
        let b = Registry::start().unwrap();
        assert_ne!(a.addr, b.addr);
        assert!(a.host().starts_with("127.0.0.1:"));
    }
}
