//! UpdateContainerResources and ReopenContainerLog.

use std::collections::HashMap;

use berth_proto::cri;
use tracing::info;

use super::shim::REOPEN_LOG_ANNOTATION;
use super::{ContainerState, PodError, PodManager};
use crate::container_spec::linux_resources;

impl PodManager {
    /// UpdateContainerResources: applies the new limits to a running
    /// container through the shim and records them for status.
    pub async fn update_resources(
        &self,
        id: &str,
        resources: Option<cri::LinuxContainerResources>,
    ) -> Result<(), PodError> {
        let _guard = self.locks.write(id).await;
        let mut c = self.load_container(id).await?;
        let Some(resources) = resources else {
            return Ok(());
        };
        if c.rec.state == ContainerState::Exited {
            return Err(PodError::FailedPrecondition(format!(
                "container {id} has exited"
            )));
        }
        let (oci, _oom_score_adj) =
            linux_resources(Some(&resources), &super::container::runtime_options())?;
        if c.rec.state == ContainerState::Running {
            let json = serde_json::to_vec(&oci).map_err(|source| PodError::Json {
                id: id.to_string(),
                source,
            })?;
            let pod = self.load_pod(&c.pod_id).await?;
            let shim = self.shim_for(&pod).await?;
            shim.update(id, Some(json), HashMap::new())
                .await
                .map_err(PodError::shim(&c.pod_id))?;
        }
        c.config
            .linux
            .get_or_insert_with(Default::default)
            .resources = Some(resources);
        self.save_container(&c).await?;
        info!(container_id = %id, "container resources updated");
        Ok(())
    }

    /// ReopenContainerLog: the shim reopens the CRI log file (after the
    /// kubelet rotated it).
    pub async fn reopen_log(&self, id: &str) -> Result<(), PodError> {
        let (c, shim) = self.running_container_shim(id).await?;
        let annotations = HashMap::from([(REOPEN_LOG_ANNOTATION.to_string(), "true".to_string())]);
        shim.update(id, None, annotations)
            .await
            .map_err(PodError::shim(&c.pod_id))?;
        Ok(())
    }
}
