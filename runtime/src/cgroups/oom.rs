//! OOM kill counting and notification.
//!
//! cgroups-rs has `register_oom_event`, but it hides the fd inside a thread
//! and hands back a channel; the shim needs a pollable fd (`AsFd`), so the
//! eventfd (v1) and inotify (v2) plumbing is done here.

use std::cell::Cell;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use super::{read_file, write_file, CgroupError};

/// The OOM kill counter of a memory cgroup directory.
pub fn kill_count((dir, v2): (&Path, bool)) -> Result<u64, CgroupError> {
    // v1: memory.oom_control has "oom_kill N" since Linux 4.13; v2: memory.events.
    let file = dir.join(if v2 {
        "memory.events"
    } else {
        "memory.oom_control"
    });
    let text = read_file(&file)?;
    parse_oom_kill(&text).ok_or_else(|| CgroupError::Parse {
        path: file,
        reason: "no oom_kill counter".into(),
    })
}

fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

/// What woke [`OomNotifier::wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OomEvent {
    /// The cgroup went out of memory; `count` is the oom_kill counter now
    /// (it can stay unchanged when the OOM killer is disabled).
    Oom {
        /// oom_kill counter after the event.
        count: u64,
    },
    /// The cgroup was removed; no more events will come.
    CgroupRemoved,
}

enum Source {
    /// v1: eventfd registered through cgroup.event_control; the
    /// memory.oom_control fd must stay open for the registration's lifetime.
    V1 { efd: EventFd, _control: File },
    /// v2: inotify on memory.events (modified on every event counter change).
    V2 { inotify: Inotify },
}

/// Becomes readable when the cgroup hits an OOM (v1) or when memory.events
/// changes (v2); call [`OomNotifier::wait`] to consume and classify it.
pub struct OomNotifier {
    source: Source,
    dir: PathBuf,
    v2: bool,
    last: Cell<u64>,
}

impl std::fmt::Debug for OomNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OomNotifier")
            .field("dir", &self.dir)
            .field("v2", &self.v2)
            .field("last", &self.last.get())
            .finish()
    }
}

impl OomNotifier {
    /// Registers an eventfd for memory.oom_control of the v1 memory cgroup `dir`.
    pub fn v1(dir: &Path) -> Result<Self, CgroupError> {
        let sys = |op, source| CgroupError::Notify {
            op,
            path: dir.to_owned(),
            source,
        };
        let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC).map_err(|e| sys("eventfd", e))?;
        let control_path = dir.join("memory.oom_control");
        let control = File::open(&control_path).map_err(|source| CgroupError::Read {
            path: control_path,
            source,
        })?;
        let line = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
        write_file(&dir.join("cgroup.event_control"), &line)?;
        let last = kill_count((dir, false))?;
        Ok(Self {
            source: Source::V1 {
                efd,
                _control: control,
            },
            dir: dir.to_owned(),
            v2: false,
            last: Cell::new(last),
        })
    }

    /// Watches memory.events of the v2 memory cgroup `dir`.
    pub fn v2(dir: &Path) -> Result<Self, CgroupError> {
        let events = dir.join("memory.events");
        let sys = |op, source| CgroupError::Notify {
            op,
            path: events.clone(),
            source,
        };
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC).map_err(|e| sys("inotify_init1", e))?;
        inotify
            .add_watch(&events, AddWatchFlags::IN_MODIFY)
            .map_err(|e| sys("inotify_add_watch", e))?;
        let last = kill_count((dir, true))?;
        Ok(Self {
            source: Source::V2 { inotify },
            dir: dir.to_owned(),
            v2: true,
            last: Cell::new(last),
        })
    }

    /// Blocks until the next OOM (or the removal of the cgroup).
    pub fn wait(&self) -> Result<OomEvent, CgroupError> {
        loop {
            match &self.source {
                Source::V1 { efd, .. } => {
                    efd.read().map_err(|source| CgroupError::Notify {
                        op: "read eventfd",
                        path: self.dir.clone(),
                        source,
                    })?;
                    // The kernel also signals every registered eventfd when the cgroup goes away.
                    if !self.dir.join("memory.oom_control").exists() {
                        return Ok(OomEvent::CgroupRemoved);
                    }
                    // The event is raised before the victim is chosen: give
                    // the counter a moment to move.
                    let count = self.settled_count()?;
                    self.last.set(count);
                    return Ok(OomEvent::Oom { count });
                }
                Source::V2 { inotify } => {
                    let events = inotify
                        .read_events()
                        .map_err(|source| CgroupError::Notify {
                            op: "read inotify",
                            path: self.dir.clone(),
                            source,
                        })?;
                    if events
                        .iter()
                        .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED))
                    {
                        return Ok(OomEvent::CgroupRemoved);
                    }
                    let count = match kill_count((&self.dir, true)) {
                        Ok(c) => c,
                        Err(_) if !self.dir.exists() => return Ok(OomEvent::CgroupRemoved),
                        Err(e) => return Err(e),
                    };
                    if count > self.last.get() {
                        self.last.set(count);
                        return Ok(OomEvent::Oom { count });
                    }
                }
            }
        }
    }

    fn settled_count(&self) -> Result<u64, CgroupError> {
        let start = Instant::now();
        loop {
            let c = kill_count((&self.dir, self.v2))?;
            if c > self.last.get() || start.elapsed() > Duration::from_millis(200) {
                return Ok(c);
            }
            sleep(Duration::from_millis(5));
        }
    }
}

impl AsFd for OomNotifier {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.source {
            Source::V1 { efd, .. } => efd.as_fd(),
            Source::V2 { inotify } => inotify.as_fd(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_oom_kill(v1), Some(3));
        let v2 = "low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v2), Some(2));
        assert_eq!(parse_oom_kill("oom 1\n"), None);
    }
}
