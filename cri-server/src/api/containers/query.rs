//! List (Docker filters, status text) and Inspect (Docker-like JSON).

use std::collections::HashMap;
use std::time::Duration;

use berth_proto::berth::v1 as api;
use serde_json::{json, Value};

use super::engine::{Engine, Record};
use super::error::ApiError;
use super::lifecycle::state_name;
use crate::pods::berth::MANAGED_LABEL;
use crate::pods::{now_nanos, Container, ContainerState};

/// Docker's human duration ("Less than a second", "5 seconds", "3 minutes",
/// "About an hour", "2 days"...).
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    match s {
        0 => "Less than a second".into(),
        1..=59 => plural(s, "second"),
        60..=119 => "About a minute".into(),
        120..=3599 => plural(s / 60, "minute"),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => plural(s / 3600, "hour"),
        172_800..=1_209_599 => plural(s / 86_400, "day"),
        1_209_600..=5_183_999 => plural(s / 604_800, "week"),
        5_184_000..=63_071_999 => plural(s / 2_592_000, "month"),
        _ => plural(s / 31_536_000, "year"),
    }
}

fn since(ns: i64, now: i64) -> Duration {
    Duration::from_nanos(u64::try_from(now.saturating_sub(ns)).unwrap_or(0))
}

/// Docker's status column.
pub fn status_text(
    state: ContainerState,
    restarting: bool,
    exit_code: i32,
    started: i64,
    finished: i64,
    now: i64,
) -> String {
    match state {
        ContainerState::Running => format!("Up {}", human_duration(since(started, now))),
        _ if restarting => format!(
            "Restarting ({exit_code}) {} ago",
            human_duration(since(finished, now))
        ),
        ContainerState::Created => "Created".into(),
        ContainerState::Exited if started == 0 => "Created".into(),
        ContainerState::Exited => format!(
            "Exited ({exit_code}) {} ago",
            human_duration(since(finished, now))
        ),
        ContainerState::Unknown => "Dead".into(),
    }
}

/// One parsed filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    key: String,
    value: String,
}

/// Parses `key=value` filters (known keys only).
pub fn parse_filters(filters: &[String]) -> Result<Vec<Filter>, ApiError> {
    filters
        .iter()
        .map(|f| {
            let (k, v) = f.split_once('=').ok_or_else(|| {
                ApiError::InvalidArgument(format!("bad filter {f:?}: expected key=value"))
            })?;
            if !matches!(
                k,
                "name" | "id" | "label" | "status" | "ancestor" | "exited"
            ) {
                return Err(ApiError::InvalidArgument(format!(
                    "invalid filter {k:?}: berth supports name, id, label, status, ancestor, exited"
                )));
            }
            Ok(Filter {
                key: k.to_string(),
                value: v.to_string(),
            })
        })
        .collect()
}

/// Docker semantics: filters of one key are OR-ed, different keys AND-ed.
pub fn matches(filters: &[Filter], s: &api::ContainerSummary) -> bool {
    let mut by_key: HashMap<&str, Vec<&str>> = HashMap::new();
    for f in filters {
        by_key.entry(&f.key).or_default().push(&f.value);
    }
    by_key.iter().all(|(k, values)| {
        values.iter().any(|v| match *k {
            "name" => s.name.contains(v.trim_start_matches('/')),
            "id" => s.id.starts_with(v),
            "label" => match v.split_once('=') {
                Some((lk, lv)) => s.labels.get(lk).is_some_and(|x| x == lv),
                None => s.labels.contains_key(*v),
            },
            "status" => s.state == *v,
            "ancestor" => {
                s.image == *v
                    || s.image_id == *v
                    || s.image_id
                        .trim_start_matches("sha256:")
                        .starts_with(v.trim_start_matches("sha256:"))
                    || (!v.contains(':') && s.image == format!("{v}:latest"))
                    || s.image.rsplit('/').next() == Some(v)
            }
            "exited" => s.state == "exited" && v.parse::<i32>().ok() == Some(s.exit_code),
            _ => false,
        })
    })
}

fn summary(rec: &Record, c: Option<&Container>, now: i64) -> api::ContainerSummary {
    let (state, exit_code, started, finished, pod) = match c {
        Some(c) => (
            c.rec.state,
            c.rec.exit_code,
            c.rec.started_at,
            c.rec.finished_at,
            c.pod_id.clone(),
        ),
        None => (ContainerState::Unknown, 0, 0, 0, rec.row.pod_id.clone()),
    };
    let command = rec.state.process().cloned().collect::<Vec<_>>().join(" ");
    let state_s = if state == ContainerState::Exited && started == 0 {
        "created"
    } else {
        state_name(state, rec.state.restarting)
    };
    api::ContainerSummary {
        id: rec.id().to_string(),
        name: rec.name().to_string(),
        image: rec.spec.image.clone(),
        image_id: rec.state.image_id.clone(),
        command,
        created: rec.row.created,
        state: state_s.to_string(),
        status: status_text(
            state,
            rec.state.restarting,
            exit_code,
            started,
            finished,
            now,
        ),
        exit_code,
        started_at: started,
        finished_at: finished,
        ports: rec.spec.ports.clone(),
        labels: rec.spec.labels.clone(),
        pod_id: pod,
        restart_count: rec.state.restart_count,
        mounts: rec.spec.mounts.clone(),
        size_rw: -1,
    }
}

fn cri_summary(c: &Container, now: i64) -> api::ContainerSummary {
    let m = c.metadata();
    api::ContainerSummary {
        id: c.id.clone(),
        name: m.name,
        image: c.rec.image.clone(),
        image_id: c.rec.image_id.clone(),
        command: c
            .config
            .command
            .iter()
            .chain(c.config.args.iter())
            .cloned()
            .collect::<Vec<_>>()
            .join(" "),
        created: c.rec.created_at / 1_000_000_000,
        state: state_name(c.rec.state, false).to_string(),
        status: status_text(
            c.rec.state,
            false,
            c.rec.exit_code,
            c.rec.started_at,
            c.rec.finished_at,
            now,
        ),
        exit_code: c.rec.exit_code,
        started_at: c.rec.started_at,
        finished_at: c.rec.finished_at,
        ports: Vec::new(),
        labels: c.config.labels.clone(),
        pod_id: c.pod_id.clone(),
        restart_count: 0,
        mounts: Vec::new(),
        size_rw: -1,
    }
}

fn rfc3339(ns: i64) -> String {
    if ns <= 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl Engine {
    /// Docker's `ps`.
    pub async fn list(
        &self,
        req: &api::ListContainersRequest,
    ) -> Result<Vec<api::ContainerSummary>, ApiError> {
        let filters = parse_filters(&req.filters)?;
        let now = now_nanos();
        let containers: HashMap<String, Container> = self
            .pods
            .all_containers()
            .await?
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let mut out = Vec::new();
        for rec in self.records().await? {
            out.push(summary(&rec, containers.get(rec.id()), now));
        }
        if req.include_cri {
            for c in containers.values() {
                if c.config
                    .labels
                    .get(MANAGED_LABEL)
                    .is_none_or(|v| v != "true")
                {
                    out.push(cri_summary(c, now));
                }
            }
        }
        let has_status_filter = filters
            .iter()
            .any(|f| f.key == "status" || f.key == "exited");
        out.retain(|s| {
            (req.all || has_status_filter || s.state == "running" || s.state == "restarting")
                && matches(&filters, s)
        });
        out.sort_by(|a, b| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    /// Docker-like inspect JSON.
    pub async fn inspect(&self, reference: &str) -> Result<Value, ApiError> {
        let rec = self.resolve(reference).await?;
        let c = self.pods.load_container(rec.id()).await?;
        let pod = self.pods.load_pod(&c.pod_id).await.ok();
        let s = &rec.spec;
        let process: Vec<String> = rec.state.process().cloned().collect();
        let running = c.rec.state == ContainerState::Running;
        let status = if c.rec.state == ContainerState::Exited && c.rec.started_at == 0 {
            "created"
        } else {
            state_name(c.rec.state, rec.state.restarting)
        };
        let mut port_bindings = serde_json::Map::new();
        let mut ports = serde_json::Map::new();
        let mut exposed = serde_json::Map::new();
        for p in &s.ports {
            let key = format!("{}/{}", p.container_port, p.protocol);
            let binding = json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()});
            for map in [&mut port_bindings, &mut ports] {
                if let Some(Value::Array(a)) = map.get_mut(&key) {
                    a.push(binding.clone());
                } else {
                    map.insert(key.clone(), json!([binding.clone()]));
                }
            }
            exposed.insert(key, json!({}));
        }
        let binds: Vec<String> = s
            .mounts
            .iter()
            .filter(|m| m.kind == "bind" || !m.source.is_empty())
            .map(|m| {
                format!(
                    "{}:{}{}",
                    m.source,
                    m.destination,
                    if m.read_only { ":ro" } else { "" }
                )
            })
            .collect();
        let volumes_dir = self.volumes_dir();
        let mounts: Vec<Value> = s
            .mounts
            .iter()
            .map(|m| {
                let volume = m.kind == "volume";
                json!({
                    "Type": if volume { "volume" } else { "bind" },
                    "Name": if volume { m.source.clone() } else { String::new() },
                    "Source": if volume {
                        super::spec::volume_data_dir(&volumes_dir, &m.source).to_string_lossy().into_owned()
                    } else { m.source.clone() },
                    "Destination": m.destination,
                    "Driver": if volume { "local" } else { "" },
                    "Mode": if m.read_only { "ro" } else { "" },
                    "RW": !m.read_only,
                    "Propagation": if volume { "" } else { "rprivate" },
                })
            })
            .collect();
        let (policy, max) = rec.policy();
        let env: Vec<String> = c
            .rec
            .process
            .get("env")
            .and_then(|e| e.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_else(|| s.env.clone());
        let hostname = pod
            .as_ref()
            .map(|p| p.config.hostname.clone())
            .unwrap_or_default();
        let ip = pod
            .as_ref()
            .and_then(|p| p.rec.ips.first().cloned())
            .unwrap_or_default();
        let network = if s.network.is_empty() {
            "bridge"
        } else {
            s.network.as_str()
        };
        let error = if c.rec.reason == "StartError" {
            c.rec.message.clone()
        } else {
            String::new()
        };
        Ok(json!({
            "Id": rec.id(),
            "Name": format!("/{}", rec.name()),
            "Created": rfc3339(rec.state.created_at),
            "Path": process.first().cloned().unwrap_or_default(),
            "Args": process.iter().skip(1).cloned().collect::<Vec<_>>(),
            "State": {
                "Status": status,
                "Running": running,
                "Paused": false,
                "Restarting": rec.state.restarting && !running,
                "OOMKilled": c.rec.reason == "OOMKilled",
                "Dead": c.rec.state == ContainerState::Unknown,
                "Pid": if running { c.rec.pid } else { 0 },
                "ExitCode": c.rec.exit_code,
                "Error": error,
                "StartedAt": rfc3339(c.rec.started_at),
                "FinishedAt": rfc3339(c.rec.finished_at),
            },
            "Image": rec.state.image_id,
            "ResolvConfPath": pod.as_ref().map(|p| p.rec.dir.join("resolv.conf").to_string_lossy().into_owned()).unwrap_or_default(),
            "HostnamePath": pod.as_ref().map(|p| p.rec.dir.join("hostname").to_string_lossy().into_owned()).unwrap_or_default(),
            "LogPath": c.rec.log_path,
            "RestartCount": rec.state.restart_count,
            "Driver": "overlay",
            "Platform": "linux",
            "Config": {
                "Hostname": hostname,
                "User": s.user,
                "Tty": s.tty,
                "OpenStdin": s.open_stdin,
                "StdinOnce": s.stdin_once,
                "Env": env,
                "Cmd": rec.state.cmd,
                "Entrypoint": rec.state.entrypoint,
                "Image": s.image,
                "WorkingDir": c.rec.process.get("cwd").and_then(|v| v.as_str()).unwrap_or(&s.working_dir),
                "Labels": s.labels,
                "ExposedPorts": exposed,
                "StopSignal": c.rec.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
                "StopTimeout": if s.stop_timeout > 0 { s.stop_timeout } else { 10 },
            },
            "HostConfig": {
                "Binds": binds,
                "NetworkMode": network,
                "PortBindings": port_bindings,
                "PublishAllPorts": s.publish_all,
                "RestartPolicy": {"Name": policy, "MaximumRetryCount": max},
                "AutoRemove": s.auto_remove,
                "Memory": s.memory_limit,
                "NanoCpus": s.nano_cpus,
                "PidsLimit": s.pids_limit,
                "Privileged": s.privileged,
                "CapAdd": s.cap_add,
                "CapDrop": s.cap_drop,
                "ReadonlyRootfs": s.read_only_rootfs,
                "Init": s.init,
            },
            "Mounts": mounts,
            "NetworkSettings": {
                "IPAddress": ip,
                "Ports": ports,
                "SandboxID": c.pod_id,
            },
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_docker() {
        assert_eq!(
            human_duration(Duration::from_millis(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(Duration::from_secs(1)), "1 second");
        assert_eq!(human_duration(Duration::from_secs(5)), "5 seconds");
        assert_eq!(human_duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(180)), "3 minutes");
        assert_eq!(human_duration(Duration::from_secs(3700)), "About an hour");
        assert_eq!(human_duration(Duration::from_secs(3 * 86_400)), "3 days");
    }

    #[test]
    fn status_texts() {
        let s = 1_000_000_000_000i64;
        let now = s + 180 * 1_000_000_000;
        assert_eq!(
            status_text(ContainerState::Running, false, 0, s, 0, now),
            "Up 3 minutes"
        );
        assert_eq!(
            status_text(
                ContainerState::Exited,
                false,
                0,
                s,
                now - 5_000_000_000,
                now
            ),
            "Exited (0) 5 seconds ago"
        );
        assert_eq!(
            status_text(ContainerState::Created, false, 0, 0, 0, now),
            "Created"
        );
        assert_eq!(
            status_text(ContainerState::Exited, true, 1, s, now, now),
            "Restarting (1) Less than a second ago"
        );
    }

    #[test]
    fn filters() {
        let s = api::ContainerSummary {
            id: "abcdef".into(),
            name: "web".into(),
            image: "busybox:latest".into(),
            image_id: "sha256:1234".into(),
            state: "exited".into(),
            exit_code: 3,
            labels: [("tier".to_string(), "front".to_string())].into(),
            ..Default::default()
        };
        let f = |v: &[&str]| {
            parse_filters(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
        };
        assert!(matches(&f(&["name=we"]), &s));
        assert!(matches(&f(&["id=abc", "label=tier"]), &s));
        assert!(matches(&f(&["label=tier=front"]), &s));
        assert!(!matches(&f(&["label=tier=back"]), &s));
        assert!(matches(&f(&["status=running", "status=exited"]), &s));
        assert!(!matches(&f(&["status=running"]), &s));
        assert!(matches(&f(&["ancestor=busybox"]), &s));
        assert!(matches(&f(&["ancestor=1234"]), &s));
        assert!(matches(&f(&["exited=3"]), &s));
        assert!(!matches(&f(&["exited=0"]), &s));
        assert!(parse_filters(&["bogus=1".into()]).is_err());
        assert!(parse_filters(&["name".into()]).is_err());
    }
}
