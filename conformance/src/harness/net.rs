//! A private CNI network per test daemon: a bridge with a unique name and
//! a free `10.x.y.0/24` subnet, its conflist (bridge + host-local + portmap,
//! no masquerading), and an iptables FORWARD rule that drops everything
//! leaving the bridge for another interface, so pod traffic never leaves
//! the machine. [`TestNetwork::cleanup`] deletes the rule, the bridge and
//! the IPAM state.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Directories searched for the CNI plugins, in order.
pub const CNI_BIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];

/// Errors setting up or tearing down the test network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// No directory holds the `bridge` plugin.
    #[error("no CNI bridge plugin in {dirs:?} (install containernetworking-plugins)")]
    NoPlugins {
        /// Directories searched.
        dirs: Vec<PathBuf>,
    },
    /// A conflist or directory could not be written.
    #[error("writing {path}")]
    Write {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A command (`iptables`, `ip`) could not be run or failed.
    #[error("{cmd}: {detail}")]
    Command {
        /// The command line.
        cmd: String,
        /// Exit status and stderr, or the spawn error.
        detail: String,
    },
    /// Every candidate subnet is in use.
    #[error("no free 10.x.y.0/24 subnet found")]
    NoSubnet,
}

/// The pod network of one test daemon.
#[derive(Debug, Clone)]
pub struct TestNetwork {
    /// Bridge and network name (`bt<hex>`, under the 15-byte limit).
    pub bridge: String,
    /// The pod subnet, e.g. `10.213.7.0/24`.
    pub subnet: String,
    /// The gateway (the bridge's address), e.g. `10.213.7.1`.
    pub gateway: String,
    /// host-local's data directory.
    pub ipam_dir: PathBuf,
    /// Directory with the CNI plugins.
    pub bin_dir: PathBuf,
    rule_installed: bool,
}

fn run(cmd: &str, args: &[&str]) -> Result<String, NetError> {
    let line = format!("{cmd} {}", args.join(" "));
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| NetError::Command {
            cmd: line.clone(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(NetError::Command {
            cmd: line,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The CNI plugin directory holding `bridge`.
pub fn plugin_dir() -> Result<PathBuf, NetError> {
    CNI_BIN_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|d| d.join("bridge").is_file())
        .ok_or_else(|| NetError::NoPlugins {
            dirs: CNI_BIN_DIRS.iter().map(PathBuf::from).collect(),
        })
}

/// Whether `10.a.b.0/24` overlaps an address or route already on the host
/// (any 10.a.b.* string in `ip addr` / `ip route` output).
fn subnet_in_use(a: u8, b: u8, host_text: &str) -> bool {
    let prefix = format!("10.{a}.{b}.");
    let wide = format!("10.{a}.0.0/16");
    host_text.contains(&prefix) || host_text.contains(&wide)
}

/// The rule spec (after `-I/-D FORWARD`) dropping bridge → elsewhere.
fn rule_args(bridge: &str) -> Vec<String> {
    [
        "-i",
        bridge,
        "!",
        "-o",
        bridge,
        "-m",
        "comment",
        "--comment",
        &format!("berth-test {bridge}"),
        "-j",
        "DROP",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl TestNetwork {
    /// Picks a free subnet for bridge `bt<suffix>` and installs the
    /// FORWARD drop rule. `ipam_dir` keeps host-local's leases private.
    pub fn create(suffix: &str, ipam_dir: &Path) -> Result<TestNetwork, NetError> {
        let bin_dir = plugin_dir()?;
        let host = format!(
            "{}\n{}",
            run("ip", &["-4", "-o", "addr"])?,
            run("ip", &["-4", "route", "show", "table", "all"])?
        );
        // The suffix is random hex: derive the subnet from it, then walk
        // forward past any in use (the 10.200-254 range is rarely used).
        let seed = u32::from_str_radix(suffix.get(..6).unwrap_or(suffix), 16).unwrap_or(0);
        let (a, b) = (0..13_000u32)
            .map(|i| {
                let n = seed.wrapping_add(i) % (55 * 256);
                (200 + (n / 256) as u8, (n % 256) as u8)
            })
            .find(|(a, b)| !subnet_in_use(*a, *b, &host))
            .ok_or(NetError::NoSubnet)?;
        let mut net = TestNetwork {
            bridge: format!("bt{suffix}"),
            subnet: format!("10.{a}.{b}.0/24"),
            gateway: format!("10.{a}.{b}.1"),
            ipam_dir: ipam_dir.to_path_buf(),
            bin_dir,
            rule_installed: false,
        };
        let mut args = vec!["-w".to_string(), "-I".into(), "FORWARD".into()];
        args.extend(rule_args(&net.bridge));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("iptables", &args)?;
        net.rule_installed = true;
        Ok(net)
    }

    /// A network created by an earlier (dead) run, for [`TestNetwork::cleanup`]:
    /// its rule is assumed installed.
    pub fn adopt(bridge: &str, ipam_dir: &Path) -> TestNetwork {
        TestNetwork {
            bridge: bridge.to_string(),
            subnet: String::new(),
            gateway: String::new(),
            ipam_dir: ipam_dir.to_path_buf(),
            bin_dir: PathBuf::new(),
            rule_installed: true,
        }
    }

    /// The conflist JSON: bridge (gateway, hairpin, no masquerade) with
    /// host-local IPAM in the private data dir, then portmap.
    pub fn conflist(&self) -> String {
        format!(
            r#"{{
  "cniVersion": "1.0.0",
  "name": "{bridge}",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{bridge}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{ "subnet": "{subnet}", "gateway": "{gateway}" }}]],
        "routes": [{{ "dst": "0.0.0.0/0" }}],
        "dataDir": "{ipam}"
      }}
    }},
    {{
      "type": "portmap",
      "capabilities": {{ "portMappings": true }}
    }}
  ]
}}
"#,
            bridge = self.bridge,
            subnet = self.subnet,
            gateway = self.gateway,
            ipam = self.ipam_dir.display(),
        )
    }

    /// Writes the conflist as `<dir>/10-<bridge>.conflist`.
    pub fn write_conflist(&self, dir: &Path) -> Result<PathBuf, NetError> {
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| NetError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(write_err(dir))?;
        let path = dir.join(format!("10-{}.conflist", self.bridge));
        std::fs::write(&path, self.conflist()).map_err(write_err(&path))?;
        Ok(path)
    }

    /// Removes the FORWARD rule, the bridge and the IPAM leases. Each
    /// step is attempted; the first error is returned. Idempotent.
    pub fn cleanup(&mut self) -> Result<(), NetError> {
        let mut first = None;
        if self.rule_installed {
            let mut args = vec!["-w".to_string(), "-D".into(), "FORWARD".into()];
            args.extend(rule_args(&self.bridge));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            match run("iptables", &args) {
                Ok(_) => self.rule_installed = false,
                Err(e) => first = first.or(Some(e)),
            }
        }
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            if let Err(e) = run("ip", &["link", "del", &self.bridge]) {
                first = first.or(Some(e));
            }
        }
        if self.ipam_dir.exists() {
            if let Err(source) = std::fs::remove_dir_all(&self.ipam_dir) {
                first = first.or(Some(NetError::Write {
                    path: self.ipam_dir.clone(),
                    source,
                }));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Whether the FORWARD rule is currently installed (checked with `iptables -C`).
    pub fn rule_present(&self) -> bool {
        let mut args = vec!["-w".to_string(), "-C".into(), "FORWARD".into()];
        args.extend(rule_args(&self.bridge));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("iptables", &args).is_ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subnet_collisions_are_seen() {
        let host = "2: eth0    inet 10.200.3.4/24 brd\n10.201.0.0/16 dev x\n";
        assert!(subnet_in_use(200, 3, host));
        assert!(subnet_in_use(201, 77, host));
        assert!(!subnet_in_use(200, 4, host));
    }

    /// Needs root and iptables: the rule appears and disappears.
    #[test]
    fn rule_and_conflist_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut net = TestNetwork::create("0ddba11", &dir.path().join("ipam")).unwrap();
        assert!(net.rule_present());
        assert!(net.subnet.starts_with("10.2"));
        let path = net.write_conflist(&dir.path().join("net.d")).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains("\"bridge\": \"bt0ddba11\""));
        assert!(text.contains(&net.subnet));
        assert!(text.contains("\"ipMasq\": false"));
        net.cleanup().unwrap();
        assert!(!net.rule_present());
        net.cleanup().unwrap();
    }
}
