//! Processes seen through `/proc`: finding a daemon's shims (by the
//! socket path on their command line), their descendants, killing them by
//! pid, and memory accounting (VmRSS from `status`, Pss from `smaps_rollup`).

use std::path::{Path, PathBuf};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Errors reading process information.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// A /proc file could not be read (the process may have exited).
    #[error("reading {path}")]
    Read {
        /// The /proc path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file has no such field.
    #[error("{path} has no {field} line")]
    NoField {
        /// The /proc path.
        path: PathBuf,
        /// The field looked for.
        field: &'static str,
    },
}

/// One process: pid, parent, command line (NUL-separated args joined by spaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// Its pid.
    pub pid: u32,
    /// Its parent's pid.
    pub ppid: u32,
    /// argv joined by single spaces.
    pub cmdline: String,
    /// argv[0]'s file name (`berth-shim`, `containerd-shim-runc-v2`, ...).
    pub comm: String,
}

fn read(path: &Path) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The parent pid from `/proc/<pid>/stat` (the field after the `)` that
/// closes the command name, which may itself contain spaces or parens).
fn parse_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Reads one process; `None` when it vanished or is a kernel thread.
pub fn proc_info(pid: u32) -> Option<ProcInfo> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let comm = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(ProcInfo {
        pid,
        ppid: parse_ppid(&stat)?,
        cmdline: args.join(" "),
        comm,
    })
}

/// Every user-space process on the machine.
pub fn all_processes() -> Vec<ProcInfo> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_info)
        .collect()
}

/// Processes whose command line contains `needle` (a daemon's socket path
/// identifies its shims: they are started with `-address <socket>`),
/// excluding the caller.
pub fn processes_with_arg(needle: &str) -> Vec<ProcInfo> {
    let me = std::process::id();
    all_processes()
        .into_iter()
        .filter(|p| p.pid != me && p.cmdline.contains(needle))
        .collect()
}

/// All descendants of `roots` (children, grandchildren...), roots excluded.
pub fn descendants(roots: &[u32]) -> Vec<u32> {
    let procs = all_processes();
    let mut out = Vec::new();
    let mut frontier: Vec<u32> = roots.to_vec();
    while let Some(parent) = frontier.pop() {
        for p in procs.iter().filter(|p| p.ppid == parent) {
            if !out.contains(&p.pid) && !roots.contains(&p.pid) {
                out.push(p.pid);
                frontier.push(p.pid);
            }
        }
    }
    out
}

/// SIGKILLs `pids` (already-gone ones are ignored).
pub fn kill_all(pids: &[u32]) {
    for pid in pids {
        let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
    }
}

/// Whether `pid` still exists (zombies count as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next());
            state != Some("Z")
        }
        Err(_) => false,
    }
}

/// Waits up to `timeout` for every pid in `pids` to disappear; returns
/// the ones still alive.
pub fn wait_gone(pids: &[u32], timeout: std::time::Duration) -> Vec<u32> {
    let start = std::time::Instant::now();
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || start.elapsed() > timeout {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn kib_field(text: &str, field: &'static str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l[field.len()..].split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Resident set size of `pid` in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Result<u64, ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = read(&path)?;
    kib_field(&text, "VmRSS:")
        .map(|k| k * 1024)
        .ok_or(ProcError::NoField {
            path,
            field: "VmRSS",
        })
}

/// Proportional set size of `pid` in bytes (`Pss` of `smaps_rollup`):
/// shared pages (the same binary in 100 shims) are split between sharers.
pub fn pss_bytes(pid: u32) -> Result<u64, ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/smaps_rollup"));
    let text = read(&path)?;
    kib_field(&text, "Pss:")
        .map(|k| k * 1024)
        .ok_or(ProcError::NoField { path, field: "Pss" })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ppid_survives_odd_command_names() {
        assert_eq!(parse_ppid("12 (a) b) S 7 12 12 0"), Some(7));
        assert_eq!(parse_ppid("1 (init) S 0 1 1"), Some(0));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn own_process_is_found_with_memory() {
        let me = proc_info(std::process::id()).unwrap();
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert!(rss_bytes(me.pid).unwrap() > 100 * 1024);
        assert!(pss_bytes(me.pid).unwrap() > 0);
        assert!(alive(me.pid));
        assert!(rss_bytes(u32::MAX / 2).is_err());
    }

    #[test]
    fn children_are_descendants_and_die_by_pid() {
        let marker = format!("conformance-procs-{}", std::process::id());
        let mut child = std::process::Command::new("/bin/busybox")
            .args(["sh", "-c", &format!("sleep 30; echo {marker}")])
            .spawn()
            .unwrap();
        let pid = child.id();
        // The shell's own fork for `sleep` carries the marker until it
        // execs, and a cmdline read during an exec comes back empty: poll
        // for the shell itself rather than expecting exactly one match.
        let start = std::time::Instant::now();
        let mut found = processes_with_arg(&marker);
        while !found.iter().any(|p| p.pid == pid) && start.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            found = processes_with_arg(&marker);
        }
        assert!(found.iter().any(|p| p.pid == pid), "{pid} not in {found:?}");
        // `sleep` under the shell.
        let mut kids = descendants(&[pid]);
        while kids.is_empty() && start.elapsed().as_secs() < 5 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            kids = descendants(&[pid]);
        }
        assert_eq!(kids.len(), 1);
        kill_all(&kids);
        kill_all(&[pid]);
        child.wait().unwrap();
        assert!(wait_gone(&kids, std::time::Duration::from_secs(5)).is_empty());
    }
}
