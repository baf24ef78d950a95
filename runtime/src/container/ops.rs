//! Operations on a live container's cgroup: ps, stats/events, update,
//! pause and resume.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::LinuxResources;

use super::{Container, ContainerError};
use crate::cgroups::{CgroupStats, OomEvent};
use crate::state::Status;

/// One item of the `events` stream.
#[derive(Debug, Clone)]
pub enum Event {
    /// Periodic statistics.
    Stats(Box<CgroupStats>),
    /// The container's cgroup hit its memory limit.
    Oom,
}

impl Event {
    /// runc's JSON line shape: `{"type":"stats","id":..,"data":{..}}` / `{"type":"oom","id":..}`.
    pub fn to_json(&self, id: &str) -> serde_json::Value {
        match self {
            Event::Stats(s) => serde_json::json!({"type": "stats", "id": id, "data": s}),
            Event::Oom => serde_json::json!({"type": "oom", "id": id}),
        }
    }
}

impl Container {
    /// Pids of every process in the container's cgroup.
    pub fn ps(&self) -> Result<Vec<i32>, ContainerError> {
        let cg = self.cgroup()?;
        cg.pids().map_err(|e| self.cg_err(e))
    }

    /// Current cgroup statistics.
    pub fn stats(&self) -> Result<CgroupStats, ContainerError> {
        let cg = self.cgroup()?;
        cg.stats().map_err(|e| self.cg_err(e))
    }

    /// Streams events to `sink` until the container stops or `sink` returns
    /// false: stats every `interval`, OOM events as they happen.
    pub fn events(
        &self,
        interval: Duration,
        sink: &mut dyn FnMut(&Event) -> bool,
    ) -> Result<(), ContainerError> {
        let cg = self.cgroup()?;
        let notifier = match cg.oom_notifier() {
            Ok(n) => Some(n),
            Err(err) => {
                tracing::warn!(container_id = %self.id(), %err, "no OOM notifications");
                None
            }
        };
        let mut next_stats = Instant::now();
        loop {
            if self.status() == Status::Stopped {
                return Ok(());
            }
            let now = Instant::now();
            if now >= next_stats {
                let stats = cg.stats().map_err(|e| self.cg_err(e))?;
                if !sink(&Event::Stats(Box::new(stats))) {
                    return Ok(());
                }
                next_stats = now + interval;
            }
            // Wake at least every second to notice a stopped container.
            let wait = next_stats
                .saturating_duration_since(Instant::now())
                .min(Duration::from_secs(1));
            let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
            let Some(n) = &notifier else {
                std::thread::sleep(wait);
                continue;
            };
            let mut fds = [PollFd::new(n.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) | Err(nix::Error::EINTR) => {}
                Ok(_) => match n.wait().map_err(|e| self.cg_err(e))? {
                    OomEvent::Oom { .. } => {
                        if !sink(&Event::Oom) {
                            return Ok(());
                        }
                    }
                    OomEvent::CgroupRemoved => return Ok(()),
                },
                Err(source) => return Err(ContainerError::Sys { op: "poll", source }),
            }
        }
    }

    /// Applies new resource limits and records them in the state.
    pub fn update(&mut self, resources: &LinuxResources) -> Result<(), ContainerError> {
        let status = self.status();
        if status == Status::Stopped {
            return Err(self.bad_status(status, "update"));
        }
        let cg = self.cgroup()?;
        cg.update(resources).map_err(|e| self.cg_err(e))?;
        let stored = self.state.spec.resources().map_err(|e| self.spec_err(e))?;
        let merged = merge_resources(stored.unwrap_or_default(), resources);
        self.state.spec = self
            .state
            .spec
            .with_resources(&merged)
            .map_err(|e| self.spec_err(e))?;
        self.state.save(&self.dir)?;
        Ok(())
    }

    /// Freezes every process of the container.
    pub fn pause(&mut self) -> Result<(), ContainerError> {
        let status = self.status();
        if status != Status::Running && status != Status::Created {
            return Err(self.bad_status(status, "pause"));
        }
        self.cgroup()?.freeze().map_err(|e| self.cg_err(e))?;
        self.state.paused = true;
        self.state.save(&self.dir)?;
        Ok(())
    }

    /// Thaws a paused container.
    pub fn resume(&mut self) -> Result<(), ContainerError> {
        let status = self.status();
        if status != Status::Paused {
            return Err(self.bad_status(status, "resume"));
        }
        self.cgroup()?.thaw().map_err(|e| self.cg_err(e))?;
        self.state.paused = false;
        self.state.save(&self.dir)?;
        Ok(())
    }
}

/// Overlays the sections present in `new` onto `old`.
fn merge_resources(mut old: LinuxResources, new: &LinuxResources) -> LinuxResources {
    if new.memory().is_some() {
        old.set_memory(*new.memory());
    }
    if new.cpu().is_some() {
        old.set_cpu(new.cpu().clone());
    }
    if new.pids().is_some() {
        old.set_pids(*new.pids());
    }
    if new.block_io().is_some() {
        old.set_block_io(new.block_io().clone());
    }
    if new.hugepage_limits().is_some() {
        old.set_hugepage_limits(new.hugepage_limits().clone());
    }
    if new.unified().is_some() {
        old.set_unified(new.unified().clone());
    }
    if new.devices().is_some() {
        old.set_devices(new.devices().clone());
    }
    old
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_unset_sections() {
        let old: LinuxResources =
            serde_json::from_str(r#"{"memory":{"limit":100},"pids":{"limit":5}}"#).unwrap();
        let new: LinuxResources = serde_json::from_str(r#"{"pids":{"limit":9}}"#).unwrap();
        let m = merge_resources(old, &new);
        assert_eq!(m.memory().as_ref().unwrap().limit(), Some(100));
        assert_eq!(m.pids().as_ref().unwrap().limit(), 9);
    }

    #[test]
    fn event_json_shape() {
        let v = Event::Oom.to_json("c1");
        assert_eq!(v.to_string(), r#"{"id":"c1","type":"oom"}"#);
    }
}
