//! Starting an exited container again in place (same id, same bundle, same
//! writable layer) and signalling a running one: what berth.v1's Docker-style
//! Start, Restart and Kill need beyond the CRI.
//!
//! The shim keeps an exited task (and its rootfs mount) until `Delete`;
//! starting again deletes that task and creates a new one on the same
//! bundle, whose rootfs the shim mounts again from the same upper dir.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::info;

use super::container::overlay_options;
use super::shim::CreateTask;
use super::{ContainerState, PodError, PodManager, PodState};
use crate::container_spec::pod_user_namespace;

impl PodManager {
    /// Starts an exited container again on its own bundle and writable
    /// layer. FailedPrecondition unless it is exited and its pod ready.
    pub async fn restart_in_place(self: &Arc<Self>, id: &str) -> Result<u32, PodError> {
        let _guard = self.locks.write(id).await;
        let mut c = self.load_container(id).await?;
        if c.rec.state != ContainerState::Exited {
            return Err(PodError::FailedPrecondition(format!(
                "container {id} is {:?}, not exited",
                c.rec.state
            )));
        }
        let pod = self.load_pod(&c.pod_id).await?;
        if pod.rec.state != PodState::Ready {
            return Err(PodError::FailedPrecondition(format!(
                "pod sandbox {} of container {id} is not ready (its shim is gone); \
                 remove the container and create it again",
                c.pod_id
            )));
        }
        let shim = self.shim_for(&pod).await?;
        match shim.delete(id, "").await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(PodError::shim(&pod.id)(e)),
        }
        let exit_file = c.rec.bundle.join("exit.json");
        match std::fs::remove_file(&exit_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PodError::io("removing", &exit_file)(e)),
        }
        let mut lowers = Vec::new();
        for chain in c.rec.chain_ids.iter().rev() {
            let key = chain.clone();
            let path: Option<PathBuf> = self.db(move |s| s.snapshot_path(&key)).await?;
            lowers.push(path.ok_or_else(|| {
                PodError::FailedPrecondition(format!(
                    "image layer snapshot {chain} of container {id} is gone"
                ))
            })?);
        }
        let data = c.rec.data_dir.clone();
        let userns = pod_user_namespace(&pod.config)?;
        let out = if c.rec.log_path.is_empty() {
            String::new()
        } else {
            format!("cri://{}", c.rec.log_path)
        };
        let stdin = if c.config.stdin {
            self.cfg
                .container_state_dir(id)
                .join("stdin")
                .to_string_lossy()
                .into_owned()
        } else {
            String::new()
        };
        shim.create(&CreateTask {
            id: id.to_string(),
            bundle: c.rec.bundle.clone(),
            overlay: Some(overlay_options(
                &lowers,
                &data.join("upper"),
                &data.join("work"),
                !super::berth::is_managed(&c.config),
                userns.as_ref(),
            )),
            terminal: c.config.tty,
            stdin,
            stdout: out.clone(),
            stderr: out,
        })
        .await
        .map_err(PodError::shim(&pod.id))?;
        // A fresh run: nothing of the previous exit stays.
        c.rec.finished_at = 0;
        c.rec.exit_code = 0;
        c.rec.reason.clear();
        c.rec.message.clear();
        let pid = self.start_task_recorded(&mut c, &pod, shim).await?;
        info!(container_id = %id, pid, "container started again in place");
        Ok(pid)
    }

    /// Sends `signal` to a running container's init.
    pub async fn signal_container(&self, id: &str, signal: u32) -> Result<(), PodError> {
        let (c, shim) = self.running_container_shim(id).await?;
        shim.kill(&c.id, "", signal, false)
            .await
            .map_err(PodError::shim(&c.pod_id))
    }
}
