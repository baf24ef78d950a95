//! CNI results (spec 0.3.x, 0.4.0, 1.0.0) and CNI error objects.

use std::net::IpAddr;

use serde::Deserialize;

/// Errors interpreting a plugin's result.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// The result is not the JSON shape of a CNI result.
    #[error("CNI result is not valid JSON")]
    Json(#[source] serde_json::Error),
    /// The result is JSON but not an object.
    #[error("CNI result is not a JSON object")]
    NotObject,
    /// The result uses a spec version whose layout is not supported.
    #[error("CNI result version {0:?} is not supported (need 0.3.0 or later)")]
    Version(String),
    /// An `ips[].address` is not `IP/prefix`.
    #[error("CNI result has an invalid address {0:?}")]
    Address(String),
}

/// One interface from a result.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Interface {
    /// Interface name (`eth0`, `berth0`, the host veth).
    pub name: String,
    /// MAC address, when reported.
    #[serde(default)]
    pub mac: String,
    /// The netns path when the interface is inside the pod; empty on the host.
    #[serde(default)]
    pub sandbox: String,
}

/// One address from a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// The gateway, when reported.
    pub gateway: Option<IpAddr>,
    /// Index into [`CniResult::interfaces`], when reported.
    pub interface: Option<usize>,
}

/// The parts of a CNI result the runtime uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniResult {
    /// The result's `cniVersion`.
    pub cni_version: String,
    /// Interfaces created.
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    pub ips: Vec<IpConfig>,
}

impl CniResult {
    /// The addresses that belong to an interface inside the pod (or to no
    /// known interface), in result order.
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        self.ips
            .iter()
            .filter(
                |ip| match ip.interface.and_then(|i| self.interfaces.get(i)) {
                    Some(iface) => !iface.sandbox.is_empty(),
                    None => true,
                },
            )
            .map(|ip| ip.address)
            .collect()
    }
}

#[derive(Deserialize)]
struct RawIp {
    address: String,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    interface: Option<usize>,
}

#[derive(Deserialize)]
struct RawResult {
    #[serde(rename = "cniVersion", default)]
    cni_version: String,
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<RawIp>,
}

/// Parses a result of spec 0.3.0 or later (the `ips[]` layout).
pub fn parse_result(json: &[u8]) -> Result<CniResult, ResultError> {
    let value: serde_json::Value = serde_json::from_slice(json).map_err(ResultError::Json)?;
    // serde would also accept a JSON array as a struct of defaults.
    if !value.is_object() {
        return Err(ResultError::NotObject);
    }
    let raw: RawResult = serde_json::from_value(value).map_err(ResultError::Json)?;
    // 0.1.0 and 0.2.0 used ip4/ip6 objects instead of ips[].
    if matches!(raw.cni_version.as_str(), "0.1.0" | "0.2.0") {
        return Err(ResultError::Version(raw.cni_version));
    }
    let ips = raw
        .ips
        .into_iter()
        .map(|ip| {
            let (addr, prefix) = parse_cidr(&ip.address)?;
            Ok(IpConfig {
                address: addr,
                prefix,
                gateway: ip.gateway,
                interface: ip.interface,
            })
        })
        .collect::<Result<Vec<_>, ResultError>>()?;
    Ok(CniResult {
        cni_version: raw.cni_version,
        interfaces: raw.interfaces,
        ips,
    })
}

fn parse_cidr(s: &str) -> Result<(IpAddr, u8), ResultError> {
    let bad = || ResultError::Address(s.to_string());
    let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok((addr, prefix))
}

/// The error object a failing plugin prints on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CniErrorObject {
    /// Error code (1-99 are defined by the spec, 100+ by plugins).
    pub code: u32,
    /// Short message.
    #[serde(default)]
    pub msg: String,
    /// Longer details.
    #[serde(default)]
    pub details: String,
}

/// Parses a plugin's error output; `None` when it is not a CNI error object.
pub fn parse_error(stdout: &[u8]) -> Option<CniErrorObject> {
    serde_json::from_slice(stdout).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{
      "cniVersion": "1.0.0",
      "interfaces": [
        {"name": "berth0", "mac": "aa:bb:cc:dd:ee:01"},
        {"name": "veth1", "mac": "aa:bb:cc:dd:ee:02"},
        {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/berth/netns/p1"}
      ],
      "ips": [
        {"address": "10.89.0.5/16", "gateway": "10.89.0.1", "interface": 2},
        {"address": "fd00::5/64", "interface": 2}
      ],
      "routes": [{"dst": "0.0.0.0/0"}],
      "dns": {}
    }"#;

    const V04: &str = r#"{
      "cniVersion": "0.4.0",
      "interfaces": [{"name": "eth0", "sandbox": "/proc/1/ns/net"}],
      "ips": [{"version": "4", "address": "192.168.1.7/24", "gateway": "192.168.1.1", "interface": 0}]
    }"#;

    #[test]
    fn parses_1_0_0() {
        let r = parse_result(V1.as_bytes()).unwrap();
        assert_eq!(r.cni_version, "1.0.0");
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.interfaces[2].sandbox, "/run/berth/netns/p1");
        assert_eq!(r.ips[0].prefix, 16);
        assert_eq!(r.ips[0].gateway, Some("10.89.0.1".parse().unwrap()));
        assert_eq!(
            r.pod_ips(),
            vec![
                "10.89.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
    }

    #[test]
    fn parses_0_4_0() {
        let r = parse_result(V04.as_bytes()).unwrap();
        assert_eq!(r.pod_ips(), vec!["192.168.1.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(r.ips[0].interface, Some(0));
    }

    #[test]
    fn host_side_addresses_are_not_pod_ips() {
        let json = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"br"}],
            "ips":[{"address":"10.0.0.1/24","interface":0}]}"#;
        assert!(parse_result(json.as_bytes()).unwrap().pod_ips().is_empty());
    }

    #[test]
    fn refuses_bad_results() {
        for bad in [
            r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.0.0.2/24"}}"#,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2"}]}"#,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/33"}]}"#,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"nope/8"}]}"#,
            "[]",
        ] {
            assert!(parse_result(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_error_objects() {
        let e = parse_error(
            br#"{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no bridge"}"#,
        )
        .unwrap();
        assert_eq!(e.code, 7);
        assert_eq!(e.msg, "invalid config");
        assert_eq!(e.details, "no bridge");
        assert!(parse_error(b"plugin crashed").is_none());
    }
}
