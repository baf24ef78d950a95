//! Parsing of `run`/`create` flag values into berth.v1 messages, with
//! Docker's accepted forms and error texts.

use std::path::Path;

use berth_proto::berth::v1::{Mount, PortMapping, RestartPolicy};

/// A flag value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// `-p` value.
    #[error("invalid publish spec {spec:?}: {why}")]
    Port {
        /// The value.
        spec: String,
        /// What is wrong.
        why: String,
    },
    /// `-v` value.
    #[error("invalid volume specification {spec:?}: {why}")]
    Volume {
        /// The value.
        spec: String,
        /// What is wrong.
        why: String,
    },
    /// `--restart` value.
    #[error(
        "invalid restart policy {0:?}: use no, always, unless-stopped or on-failure[:max-retries]"
    )]
    Restart(String),
    /// `-m` value.
    #[error("invalid size {0:?}: use a number with an optional b, k, m or g suffix (e.g. 512m)")]
    Memory(String),
    /// `--cpus` value.
    #[error("invalid value {0:?} for --cpus: use a positive number like 1.5")]
    Cpus(String),
    /// `--since`/`--until` value.
    #[error("invalid time {0:?}: use RFC 3339 (2024-01-02T15:04:05Z), a Unix timestamp or a duration like 10m")]
    Time(String),
    /// `--env-file` could not be read.
    #[error("reading env file {path}")]
    EnvFile {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `KEY=VALUE` list entry (labels, filters).
    #[error("invalid {what} {value:?}: expected KEY=VALUE")]
    KeyValue {
        /// Which list.
        what: &'static str,
        /// The value.
        value: String,
    },
}

fn port_err(spec: &str, why: impl Into<String>) -> ParseError {
    ParseError::Port {
        spec: spec.to_owned(),
        why: why.into(),
    }
}

fn port_range(spec: &str, s: &str) -> Result<(u32, u32), ParseError> {
    let one = |p: &str| -> Result<u32, ParseError> {
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n),
            _ => Err(port_err(spec, format!("invalid port {p:?}"))),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                return Err(port_err(spec, format!("invalid range {s:?}")));
            }
            Ok((a, b))
        }
        None => {
            let p = one(s)?;
            Ok((p, p))
        }
    }
}

/// `-p [ip:][host_port[-end]:]container_port[-end][/proto]`.
pub fn parse_port(spec: &str) -> Result<Vec<PortMapping>, ParseError> {
    let (addr_ports, proto) = match spec.rsplit_once('/') {
        Some((a, p)) => (a, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_owned()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(port_err(spec, format!("unknown protocol {proto:?}")));
    }
    // An IPv6 host address is bracketed: [::1]:8080:80.
    let (ip, rest) = if let Some(r) = addr_ports.strip_prefix('[') {
        let (ip, after) = r
            .split_once("]:")
            .ok_or_else(|| port_err(spec, "unterminated [IPv6] address"))?;
        (ip.to_owned(), after.to_owned())
    } else {
        let parts: Vec<&str> = addr_ports.split(':').collect();
        match parts.len() {
            1 | 2 => (String::new(), addr_ports.to_owned()),
            3 => (parts[0].to_owned(), format!("{}:{}", parts[1], parts[2])),
            _ => return Err(port_err(spec, "too many colons")),
        }
    };
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(port_err(spec, format!("invalid IP address {ip:?}")));
    }
    let (host, ctr) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", rest.as_str()),
    };
    let (c0, c1) = port_range(spec, ctr)?;
    let host_range = if host.is_empty() {
        None
    } else {
        Some(port_range(spec, host)?)
    };
    let count = c1 - c0 + 1;
    if let Some((h0, h1)) = host_range {
        if h1 - h0 + 1 != count && h0 != h1 {
            return Err(port_err(
                spec,
                "host and container port ranges differ in size",
            ));
        }
    }
    Ok((0..count)
        .map(|i| PortMapping {
            host_ip: ip.clone(),
            host_port: match host_range {
                None => 0,
                Some((h0, h1)) if h0 == h1 => h0,
                Some((h0, _)) => h0 + i,
            },
            container_port: c0 + i,
            protocol: proto.clone(),
        })
        .collect())
}

fn vol_err(spec: &str, why: impl Into<String>) -> ParseError {
    ParseError::Volume {
        spec: spec.to_owned(),
        why: why.into(),
    }
}

fn valid_volume_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphanumeric())
        && n.len() >= 2
        && c.all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
}

/// `-v [source:]destination[:ro|rw]`: host paths (absolute, or `./rel`
/// made absolute against `cwd`) are binds, other sources named volumes,
/// a destination alone an anonymous volume.
pub fn parse_volume(spec: &str, cwd: &Path) -> Result<Mount, ParseError> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] if d.starts_with('/') => (*s, *d, ""),
        [d, o] => ("", *d, *o),
        [s, d, o] => (*s, *d, *o),
        _ => return Err(vol_err(spec, "too many colons")),
    };
    if !dst.starts_with('/') {
        return Err(vol_err(spec, "the container path must be absolute"));
    }
    if dst == "/" {
        return Err(vol_err(spec, "the container path cannot be /"));
    }
    let mut read_only = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => read_only = true,
            "rw" => read_only = false,
            // SELinux relabelling and propagation: no meaning here.
            "z" | "Z" | "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave"
            | "nocopy" => {}
            _ => return Err(vol_err(spec, format!("unknown option {o:?}"))),
        }
    }
    let (source, kind) = if src.is_empty() {
        (String::new(), "volume")
    } else if src.starts_with('/') {
        (src.to_owned(), "bind")
    } else if src.starts_with('.') || src.starts_with('~') {
        let p = if let Some(rest) = src.strip_prefix("~/") {
            std::env::var("HOME")
                .map(|h| Path::new(&h).join(rest))
                .map_err(|_| vol_err(spec, "~ cannot be expanded: HOME is not set"))?
        } else {
            cwd.join(src)
        };
        (normalize(&p), "bind")
    } else if valid_volume_name(src) {
        (src.to_owned(), "volume")
    } else {
        return Err(vol_err(
            spec,
            format!("{src:?} includes invalid characters for a local volume name, only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed; use an absolute path for a bind mount"),
        ));
    };
    Ok(Mount {
        source,
        destination: dst.to_owned(),
        read_only,
        kind: kind.to_owned(),
    })
}

/// Lexically cleans an absolute path (`/a/./b/../c` is `/a/c`).
fn normalize(p: &Path) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in p.to_str().unwrap_or("/").split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    format!("/{}", out.join("/"))
}

/// `--restart no|always|unless-stopped|on-failure[:N]`.
pub fn parse_restart(s: &str) -> Result<RestartPolicy, ParseError> {
    let bad = || ParseError::Restart(s.to_owned());
    let (name, max) = match s.split_once(':') {
        Some((n, m)) => (n, Some(m.parse::<u32>().map_err(|_| bad())?)),
        None => (s, None),
    };
    match (name, max) {
        ("" | "no", None) => Ok(RestartPolicy {
            name: "no".into(),
            maximum_retry_count: 0,
        }),
        ("always" | "unless-stopped", None) => Ok(RestartPolicy {
            name: name.into(),
            maximum_retry_count: 0,
        }),
        ("on-failure", m) => Ok(RestartPolicy {
            name: name.into(),
            maximum_retry_count: m.unwrap_or(0),
        }),
        _ => Err(bad()),
    }
}

/// Docker's `RAMInBytes`: `512m`, `1.5g`, `100k`, `1024`, binary units.
pub fn parse_memory(s: &str) -> Result<i64, ParseError> {
    let bad = || ParseError::Memory(s.to_owned());
    let lower = s.trim().to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(num_end);
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    if unit.len() > 2 && unit != "kib" && unit != "mib" && unit != "gib" {
        return Err(bad());
    }
    let bytes = n * mult;
    if !(bytes.is_finite() && bytes >= 0.0 && bytes < i64::MAX as f64) {
        return Err(bad());
    }
    Ok(bytes as i64)
}

/// `--cpus 1.5` in billionths of a CPU.
pub fn parse_cpus(s: &str) -> Result<i64, ParseError> {
    let bad = || ParseError::Cpus(s.to_owned());
    let v: f64 = s.trim().parse().map_err(|_| bad())?;
    if !v.is_finite() || !(0.0..=1e9).contains(&v) {
        return Err(bad());
    }
    Ok((v * 1e9).round() as i64)
}

/// `-e KEY=VALUE`, or `-e KEY` taking the value from the client's
/// environment (dropped when unset, as docker does).
pub fn env_entry(e: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if e.contains('=') {
        Some(e.to_owned())
    } else {
        lookup(e).map(|v| format!("{e}={v}"))
    }
}

/// The entries of an `--env-file` (comments and blank lines skipped).
pub fn parse_env_file(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ParseError> {
    let text = std::fs::read_to_string(path).map_err(|source| ParseError::EnvFile {
        path: path.display().to_string(),
        source,
    })?;
    Ok(text
        .lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| env_entry(l.trim_end_matches('\r'), lookup))
        .collect())
}

/// `KEY=VALUE` into a pair (labels); `KEY` alone has an empty value.
pub fn key_value(what: &'static str, s: &str) -> Result<(String, String), ParseError> {
    match s.split_once('=') {
        Some(("", _)) => Err(ParseError::KeyValue {
            what,
            value: s.to_owned(),
        }),
        Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
        None => Ok((s.to_owned(), String::new())),
    }
}

/// A Go-style duration: `10m`, `1h30m`, `45s`, `1.5h`, `300ms`.
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, after) = rest.split_at(num_end);
        let n: f64 = num.parse().ok()?;
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let secs = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * secs;
        rest = next;
    }
    Some(std::time::Duration::from_secs_f64(total))
}

/// `--since`/`--until`: RFC 3339, a Unix timestamp (`1700000000.5`) or a
/// duration before `now_nanos`; nanoseconds since the epoch.
pub fn parse_time(s: &str, now_nanos: i64) -> Result<i64, ParseError> {
    let bad = || ParseError::Time(s.to_owned());
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt().ok_or_else(bad);
    }
    if let Ok(t) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = t.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc();
        return t.timestamp_nanos_opt().ok_or_else(bad);
    }
    if let Some((secs, frac)) = s.split_once('.').or(Some((s, ""))) {
        if !secs.is_empty()
            && secs.chars().all(|c| c.is_ascii_digit())
            && frac.chars().all(|c| c.is_ascii_digit())
            && frac.len() <= 9
        {
            let secs: i64 = secs.parse().map_err(|_| bad())?;
            let nanos: i64 = if frac.is_empty() {
                0
            } else {
                format!("{frac:0<9}").parse().map_err(|_| bad())?
            };
            return Ok(secs * 1_000_000_000 + nanos);
        }
    }
    let d = parse_duration(s).ok_or_else(bad)?;
    Ok(now_nanos - d.as_nanos() as i64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "parse_tests.rs"]
mod tests;
