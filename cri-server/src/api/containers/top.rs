//! Top: the processes of a container's cgroup, read from /proc, in
//! `ps -ef` columns. `ps_args` are not interpreted (berthd runs no `ps`);
//! the columns are always UID PID PPID C STIME TTY TIME CMD.

use std::path::{Path, PathBuf};

use berth_proto::berth::v1 as api;

use super::engine::Engine;
use super::error::ApiError;
use crate::pods::ContainerState;

/// The `ps -ef` titles.
pub const TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

/// What /proc/<pid>/stat gives top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// The command name.
    pub comm: String,
    /// Parent pid.
    pub ppid: u32,
    /// Controlling terminal (dev_t).
    pub tty_nr: u64,
    /// User + system time, clock ticks.
    pub cpu_ticks: u64,
    /// Start time after boot, clock ticks.
    pub start_ticks: u64,
}

/// Parses /proc/<pid>/stat (the comm may hold spaces and parentheses).
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 2..)?.split_whitespace().collect();
    // rest[0] is field 3 (state).
    let num = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        comm,
        ppid: u32::try_from(num(1)?).ok()?,
        tty_nr: num(4)?,
        cpu_ticks: num(11)? + num(12)?,
        start_ticks: num(19)?,
    })
}

/// `ps`'s TTY column.
pub fn tty_name(tty_nr: u64) -> String {
    if tty_nr == 0 {
        return "?".into();
    }
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 => format!("tty{minor}"),
        _ => "?".into(),
    }
}

/// `HH:MM:SS` of a number of seconds.
pub fn cpu_time(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

/// The cgroup v1 directory of `pid` for `controller` (or the v2 one).
fn cgroup_dir(pid: u32, controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        if ctrls.split(',').any(|c| c == controller) {
            return Some(
                Path::new("/sys/fs/cgroup")
                    .join(controller)
                    .join(path.trim_start_matches('/')),
            );
        }
        if ctrls.is_empty() && Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            return Some(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')));
        }
    }
    None
}

fn row(pid: u32, ticks: u64, boot: u64, uptime: f64) -> Option<Vec<String>> {
    let st = parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = if cmdline.is_empty() {
        format!("[{}]", st.comm)
    } else {
        cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let started = st.start_ticks as f64 / ticks as f64;
    let elapsed = (uptime - started).max(0.0);
    let cpu_secs = st.cpu_ticks as f64 / ticks as f64;
    let c = if elapsed > 0.0 {
        (cpu_secs * 100.0 / elapsed) as u64
    } else {
        0
    };
    let stime = chrono::DateTime::from_timestamp(i64::try_from(boot).ok()? + started as i64, 0)
        .map(|t| t.with_timezone(&chrono::Local).format("%H:%M").to_string())
        .unwrap_or_default();
    Some(vec![
        user_name(uid),
        pid.to_string(),
        st.ppid.to_string(),
        c.to_string(),
        stime,
        tty_name(st.tty_nr),
        cpu_time(cpu_secs as u64),
        cmd,
    ])
}

/// The rows of every process in `pid`'s cgroup.
pub fn processes(pid: u32) -> Result<Vec<Vec<String>>, ApiError> {
    let dir = ["pids", "memory", "cpu"]
        .iter()
        .find_map(|c| cgroup_dir(pid, c).filter(|d| d.join("cgroup.procs").exists()))
        .ok_or_else(|| ApiError::FailedPrecondition(format!("no cgroup found for pid {pid}")))?;
    let procs = dir.join("cgroup.procs");
    let text = std::fs::read_to_string(&procs).map_err(ApiError::io("reading", &procs))?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let boot = now.saturating_sub(uptime as u64);
    let mut pids: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    pids.sort_unstable();
    Ok(pids
        .into_iter()
        .filter_map(|p| row(p, ticks, boot, uptime))
        .collect())
}

impl Engine {
    /// Processes of a running container.
    pub async fn top(&self, reference: &str) -> Result<api::TopResponse, ApiError> {
        let rec = self.resolve(reference).await?;
        let c = self.pods.load_container(rec.id()).await?;
        if c.rec.state != ContainerState::Running || c.rec.pid == 0 {
            return Err(ApiError::FailedPrecondition(format!(
                "container {} is not running",
                rec.name()
            )));
        }
        let pid = c.rec.pid;
        let rows = tokio::task::spawn_blocking(move || processes(pid)).await??;
        Ok(api::TopResponse {
            titles: TITLES.iter().map(|t| t.to_string()).collect(),
            processes: rows
                .into_iter()
                .map(|columns| api::TopRow { columns })
                .collect(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse() {
        let s = "42 (my (odd) cmd) S 7 42 42 34816 42 4194560 100 0 0 0 150 50 0 0 20 0 1 0 12345 1000 10";
        let st = parse_stat(s).unwrap();
        assert_eq!(st.comm, "my (odd) cmd");
        assert_eq!(st.ppid, 7);
        assert_eq!(st.tty_nr, 34816);
        assert_eq!(st.cpu_ticks, 200);
        assert_eq!(st.start_ticks, 12345);
        assert_eq!(tty_name(34816), "pts/0");
        assert_eq!(tty_name(0), "?");
        assert_eq!(cpu_time(3723), "01:02:03");
    }

    #[test]
    fn own_process_is_listed() {
        let rows = processes(std::process::id()).unwrap();
        let me = std::process::id().to_string();
        assert!(rows.iter().any(|r| r[1] == me), "{rows:?}");
        assert!(rows.iter().all(|r| r.len() == TITLES.len()));
    }
}
