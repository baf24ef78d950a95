//! Start (in place), Stop, Restart, Kill, Remove, Rename and Wait.

use std::time::Duration;

use tracing::{info, warn};

use super::engine::{Engine, Record};
use super::error::ApiError;
use super::names::validate_container_name;
use crate::pods::container::parse_signal;
use crate::pods::{ContainerState, PodError};

/// Docker's default stop timeout, seconds.
pub const DEFAULT_STOP_TIMEOUT: i64 = 10;

/// Turns a start failure into what the CLI maps to exit 127 / 126.
pub(crate) fn start_error(name: &str, process: &[String], err: PodError) -> ApiError {
    let chain = crate::error::chain(&err);
    let exe = process.first().map(String::as_str).unwrap_or("");
    let lower = chain.to_ascii_lowercase();
    if lower.contains("no such file or directory") || lower.contains("enoent") {
        ApiError::FailedPrecondition(format!(
            "cannot start container {name}: exec: \"{exe}\": executable file not found in $PATH \
             or the container ({chain})"
        ))
    } else if lower.contains("permission denied") || lower.contains("eacces") {
        ApiError::FailedPrecondition(format!(
            "cannot start container {name}: exec: \"{exe}\": permission denied ({chain})"
        ))
    } else {
        err.into()
    }
}

/// The Docker state name of a CRI state.
pub fn state_name(state: ContainerState, restarting: bool) -> &'static str {
    match state {
        _ if restarting && state != ContainerState::Running => "restarting",
        ContainerState::Created => "created",
        ContainerState::Running => "running",
        ContainerState::Exited => "exited",
        ContainerState::Unknown => "dead",
    }
}

impl Engine {
    /// Starts a created container, or an exited one again in place.
    /// Starting a running container does nothing.
    pub async fn start(&self, reference: &str) -> Result<Record, ApiError> {
        let rec = self.resolve(reference).await?;
        let _g = self.lock(rec.id()).await;
        self.start_locked(rec, true).await
    }

    /// Start with the operation lock held; `by_user` clears the
    /// "manually stopped" mark.
    pub(crate) async fn start_locked(
        &self,
        mut rec: Record,
        by_user: bool,
    ) -> Result<Record, ApiError> {
        let id = rec.id().to_string();
        let c = self.pods.load_container(&id).await?;
        let process: Vec<String> = rec.state.process().cloned().collect();
        let result = match c.rec.state {
            ContainerState::Running => return Ok(rec),
            ContainerState::Created => self.pods.start_container(&id).await.map(|_| ()),
            ContainerState::Exited => self.pods.restart_in_place(&id).await.map(|_| ()),
            ContainerState::Unknown => {
                return Err(ApiError::FailedPrecondition(format!(
                    "container {} is in an unknown state (its creation was interrupted): \
                     remove it with `berth rm {}`",
                    rec.name(),
                    rec.name()
                )))
            }
        };
        if by_user {
            rec.state.manually_stopped = false;
            rec.state.restarting = false;
        }
        self.save(&rec).await?;
        result.map_err(|e| start_error(rec.name(), &process, e))?;
        info!(container_id = %id, name = %rec.name(), "berth container started");
        Ok(rec)
    }

    /// Stops with the stop signal, SIGKILL after `timeout` seconds
    /// (negative: the container's own stop timeout).
    /// `signal` (name or number) replaces the stop signal when not empty.
    pub async fn stop(
        &self,
        reference: &str,
        timeout: i32,
        signal: &str,
    ) -> Result<Record, ApiError> {
        let sig = match signal {
            "" => None,
            s => Some(
                parse_signal(s)
                    .ok_or_else(|| ApiError::InvalidArgument(format!("invalid signal: {s}")))?,
            ),
        };
        let mut rec = self.resolve(reference).await?;
        let _g = self.lock(rec.id()).await;
        rec.state.manually_stopped = true;
        rec.state.restarting = false;
        self.save(&rec).await?;
        let t = effective_timeout(timeout, rec.spec.stop_timeout);
        match sig {
            Some(sig) => {
                self.pods
                    .stop_container_with_signal(rec.id(), t, sig)
                    .await?
            }
            None => self.pods.stop_container(rec.id(), t).await?,
        }
        info!(container_id = %rec.id(), name = %rec.name(), "berth container stopped");
        Ok(rec)
    }

    /// Stop then start, in place.
    pub async fn restart(&self, reference: &str, timeout: i32) -> Result<Record, ApiError> {
        let mut rec = self.resolve(reference).await?;
        let _g = self.lock(rec.id()).await;
        rec.state.manually_stopped = true;
        self.save(&rec).await?;
        let t = effective_timeout(timeout, rec.spec.stop_timeout);
        self.pods.stop_container(rec.id(), t).await?;
        self.start_locked(rec, true).await
    }

    /// Sends a signal (name or number; empty: SIGKILL).
    pub async fn kill(&self, reference: &str, signal: &str) -> Result<Record, ApiError> {
        let rec = self.resolve(reference).await?;
        let sig = if signal.is_empty() {
            9
        } else {
            parse_signal(signal)
                .ok_or_else(|| ApiError::InvalidArgument(format!("invalid signal: {signal}")))?
        };
        let c = self.pods.load_container(rec.id()).await?;
        if c.rec.state != ContainerState::Running {
            return Err(ApiError::FailedPrecondition(format!(
                "container {} is not running",
                rec.name()
            )));
        }
        self.pods.signal_container(rec.id(), sig).await?;
        Ok(rec)
    }

    /// Removes the container, its pod, its log and (with `volumes`) its
    /// anonymous volumes.
    pub async fn remove(
        &self,
        reference: &str,
        force: bool,
        volumes: bool,
    ) -> Result<Record, ApiError> {
        let rec = self.resolve(reference).await?;
        let _g = self.lock(rec.id()).await;
        self.remove_locked(rec, force, volumes).await
    }

    pub(crate) async fn remove_locked(
        &self,
        rec: Record,
        force: bool,
        volumes: bool,
    ) -> Result<Record, ApiError> {
        let id = rec.id().to_string();
        match self.pods.load_container(&id).await {
            Ok(c) if c.rec.state == ContainerState::Running && !force => {
                return Err(ApiError::FailedPrecondition(format!(
                    "container {} is running: stop it first or use --force",
                    rec.name()
                )));
            }
            Ok(_) | Err(PodError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.pods.remove_container(&id).await?;
        self.remove_pod(&rec.row.pod_id).await;
        let key = id.clone();
        self.db(move |s| s.delete_docker(&key)).await?;
        if let Err(err) = std::fs::remove_dir_all(&rec.state.log_dir) {
            if err.kind() != std::io::ErrorKind::NotFound {
                warn!(?err, dir = %rec.state.log_dir.display(), "cannot remove log dir");
            }
        }
        if volumes {
            let used = self.volumes_in_use().await?;
            for m in rec.spec.mounts.iter().filter(|m| m.kind == "volume") {
                let key = m.source.clone();
                let anonymous = self
                    .db(move |s| s.get_volume(&key))
                    .await?
                    .is_some_and(|v| v.anonymous);
                if anonymous && !used.contains_key(&m.source) {
                    if let Err(e) = self.delete_volume_files(&m.source).await {
                        warn!(volume = %m.source, error = %crate::error::chain(&e), "cannot remove volume");
                    }
                }
            }
        }
        self.forget_lock(&id);
        info!(container_id = %id, name = %rec.name(), "berth container removed");
        Ok(rec)
    }

    /// Renames; the new name must be free.
    pub async fn rename(&self, reference: &str, new_name: &str) -> Result<Record, ApiError> {
        let rec = self.resolve(reference).await?;
        let name = validate_container_name(new_name)?;
        let (id, n) = (rec.id().to_string(), name.clone());
        if !self.db(move |s| s.rename_docker(&id, &n)).await? {
            return Err(ApiError::Conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use"
            )));
        }
        self.reload(rec.id()).await
    }

    /// Blocks until the container is not running; its exit code.
    pub async fn wait(&self, reference: &str) -> Result<i32, ApiError> {
        let rec = match self.resolve(reference).await {
            Ok(rec) => rec,
            // Auto-removed before the Wait came (`run --rm` of a short
            // command): its exit code is remembered by id.
            Err(ApiError::NotFound(msg)) => {
                return self
                    .removed_exit_code(reference)
                    .ok_or(ApiError::NotFound(msg));
            }
            Err(e) => return Err(e),
        };
        let id = rec.id().to_string();
        let mut events = self.pods.subscribe_events();
        loop {
            match self.pods.load_container(&id).await {
                Ok(c) if c.rec.state != ContainerState::Running => {
                    let restarting = self
                        .reload(&id)
                        .await
                        .map(|r| r.state.restarting)
                        .unwrap_or(false);
                    if !restarting {
                        return Ok(c.rec.exit_code);
                    }
                }
                Ok(_) => {}
                Err(PodError::NotFound { .. }) => {
                    let code = self
                        .last_exit
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get(&id)
                        .copied();
                    return code.ok_or_else(|| ApiError::no_such_container(reference));
                }
                Err(e) => return Err(e.into()),
            }
            // Any event (or a second) is a reason to look again; events are
            // a fast path, the record is the truth.
            let _ = tokio::time::timeout(Duration::from_secs(1), events.recv()).await;
        }
    }

    /// The exit code of an auto-removed container named by full id or
    /// unique id prefix.
    fn removed_exit_code(&self, reference: &str) -> Option<i32> {
        let map = self
            .last_exit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found = map.iter().filter(|(id, _)| id.starts_with(reference));
        match (found.next(), found.next()) {
            (Some((_, code)), None) if !reference.is_empty() => Some(*code),
            _ => None,
        }
    }

    /// Volume name → names of the containers whose mounts use it.
    pub async fn volumes_in_use(
        &self,
    ) -> Result<std::collections::HashMap<String, Vec<String>>, ApiError> {
        let mut used: std::collections::HashMap<String, Vec<String>> = Default::default();
        for r in self.records().await? {
            for m in r.spec.mounts.iter().filter(|m| m.kind == "volume") {
                used.entry(m.source.clone())
                    .or_default()
                    .push(r.name().to_string());
            }
        }
        Ok(used)
    }

    /// Removes a volume's directory and record.
    pub async fn delete_volume_files(&self, name: &str) -> Result<u64, ApiError> {
        let dir = self.volumes_dir().join(name);
        let d = dir.clone();
        let size = tokio::task::spawn_blocking(move || {
            let size = crate::images::dir_usage(&d).used_bytes;
            std::fs::remove_dir_all(&d).map(|_| size)
        })
        .await?;
        let size = match size {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(ApiError::io("removing volume", &dir)(e)),
        };
        let key = name.to_string();
        self.db(move |s| s.delete_volume(&key)).await?;
        Ok(size)
    }
}

/// The stop timeout in seconds: the request's, else the container's, else 10.
pub fn effective_timeout(requested: i32, own: i32) -> i64 {
    if requested >= 0 {
        i64::from(requested)
    } else if own > 0 {
        i64::from(own)
    } else {
        DEFAULT_STOP_TIMEOUT
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        assert_eq!(effective_timeout(3, 20), 3);
        assert_eq!(effective_timeout(0, 20), 0);
        assert_eq!(effective_timeout(-1, 20), 20);
        assert_eq!(effective_timeout(-1, 0), 10);
    }

    #[test]
    fn start_errors_name_the_cause() {
        let e = start_error(
            "web",
            &["nope".into()],
            PodError::FailedPrecondition("exec nope: No such file or directory".into()),
        );
        assert!(e.to_string().contains("executable file not found"), "{e}");
        let e = start_error(
            "web",
            &["/etc".into()],
            PodError::FailedPrecondition("exec: Permission denied".into()),
        );
        assert!(e.to_string().contains("permission denied"), "{e}");
        assert_eq!(state_name(ContainerState::Exited, true), "restarting");
        assert_eq!(state_name(ContainerState::Running, true), "running");
    }
}
