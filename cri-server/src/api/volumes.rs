//! berth.v1 Volumes: named and anonymous volumes under
//! `<root>/volumes/<name>/_data`, recorded in `store::docker`; which
//! containers use one comes from their stored specs.

use std::collections::HashMap;
use std::sync::Arc;

use berth_proto::berth::v1 as api;
use berth_proto::berth::v1::volumes_server::Volumes;
use tonic::{Request, Response, Status};
use tracing::{info, info_span, Instrument};

use crate::api::containers::names::validate_volume_name;
use crate::api::containers::spec::volume_data_dir;
use crate::api::containers::{ApiError, Engine};
use crate::pods::new_id;
use crate::store::VolumeRow;

/// berth.v1.Volumes over the shared [`Engine`].
#[derive(Debug, Clone)]
pub struct VolumesApi {
    engine: Arc<Engine>,
}

impl VolumesApi {
    /// A service over `engine`.
    pub fn new(engine: Arc<Engine>) -> VolumesApi {
        VolumesApi { engine }
    }
}

fn no_such_volume(name: &str) -> ApiError {
    ApiError::NotFound(format!("No such volume: {name}"))
}

/// A volume message from its row.
pub fn volume_message(
    engine: &Engine,
    row: &VolumeRow,
    used: &HashMap<String, Vec<String>>,
    size: i64,
) -> api::Volume {
    api::Volume {
        name: row.name.clone(),
        driver: "local".into(),
        mountpoint: volume_data_dir(&engine.volumes_dir(), &row.name)
            .to_string_lossy()
            .into_owned(),
        created: row.created,
        labels: serde_json::from_str(&row.labels).unwrap_or_default(),
        anonymous: row.anonymous,
        used_by: used.get(&row.name).cloned().unwrap_or_default(),
        size,
    }
}

/// Docker's volume filters: `name=` (substring), `label=k[=v]`, `dangling=`.
pub fn volume_matches(filters: &[String], v: &api::Volume) -> Result<bool, ApiError> {
    for f in filters {
        let (k, val) = f.split_once('=').ok_or_else(|| {
            ApiError::InvalidArgument(format!("bad filter {f:?}: expected key=value"))
        })?;
        let ok = match k {
            "name" => v.name.contains(val),
            "label" => match val.split_once('=') {
                Some((lk, lv)) => v.labels.get(lk).is_some_and(|x| x == lv),
                None => v.labels.contains_key(val),
            },
            "dangling" => {
                let want = matches!(val, "true" | "1");
                v.used_by.is_empty() == want
            }
            _ => {
                return Err(ApiError::InvalidArgument(format!(
                    "invalid filter {k:?}: berth supports name, label, dangling"
                )))
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Engine {
    /// Creates a named volume (an existing one is returned as is).
    pub async fn create_volume(
        &self,
        name: &str,
        labels: &HashMap<String, String>,
    ) -> Result<api::Volume, ApiError> {
        let name = if name.is_empty() {
            new_id()?
        } else {
            validate_volume_name(name)?;
            name.to_string()
        };
        if self.ensure_volume(&name, false, labels).await? {
            info!(volume = %name, "volume created");
        }
        self.inspect_volume(&name, false).await
    }

    /// One volume (with its size when `size`).
    pub async fn inspect_volume(&self, name: &str, size: bool) -> Result<api::Volume, ApiError> {
        let key = name.to_string();
        let row = self
            .db(move |s| s.get_volume(&key))
            .await?
            .ok_or_else(|| no_such_volume(name))?;
        let used = self.volumes_in_use().await?;
        let bytes = if size {
            let dir = self.volumes_dir().join(name);
            tokio::task::spawn_blocking(move || crate::images::dir_usage(&dir).used_bytes as i64)
                .await?
        } else {
            -1
        };
        Ok(volume_message(self, &row, &used, bytes))
    }

    /// Every volume passing the filters.
    pub async fn list_volumes(&self, filters: &[String]) -> Result<Vec<api::Volume>, ApiError> {
        let rows = self.db(|s| s.list_volumes()).await?;
        let used = self.volumes_in_use().await?;
        let mut out = Vec::new();
        for r in &rows {
            let v = volume_message(self, r, &used, -1);
            if volume_matches(filters, &v)? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Removes a volume; one in use only with `force`.
    pub async fn remove_volume(&self, name: &str, force: bool) -> Result<u64, ApiError> {
        let v = self.inspect_volume(name, false).await?;
        if !v.used_by.is_empty() && !force {
            return Err(ApiError::FailedPrecondition(format!(
                "volume {name} is in use by container(s) {}: remove them first or use --force",
                v.used_by.join(", ")
            )));
        }
        let bytes = self.delete_volume_files(name).await?;
        info!(volume = %name, "volume removed");
        Ok(bytes)
    }

    /// Removes unused volumes (anonymous ones only unless `all`).
    pub async fn prune_volumes(&self, all: bool) -> Result<(Vec<String>, u64), ApiError> {
        let mut deleted = Vec::new();
        let mut bytes = 0;
        for v in self.list_volumes(&[]).await? {
            if v.used_by.is_empty() && (all || v.anonymous) {
                bytes += self.delete_volume_files(&v.name).await?;
                deleted.push(v.name);
            }
        }
        Ok((deleted, bytes))
    }
}

fn reply<T>(r: Result<T, ApiError>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl Volumes for VolumesApi {
    async fn create(
        &self,
        request: Request<api::CreateVolumeRequest>,
    ) -> Result<Response<api::Volume>, Status> {
        let r = request.into_inner();
        let span = info_span!("berth.VolumeCreate", volume = %r.name);
        reply(
            self.engine
                .create_volume(&r.name, &r.labels)
                .instrument(span)
                .await,
        )
    }

    async fn list(
        &self,
        request: Request<api::ListVolumesRequest>,
    ) -> Result<Response<api::ListVolumesResponse>, Status> {
        let r = request.into_inner();
        reply(
            self.engine
                .list_volumes(&r.filters)
                .await
                .map(|volumes| api::ListVolumesResponse { volumes }),
        )
    }

    async fn inspect(
        &self,
        request: Request<api::VolumeRef>,
    ) -> Result<Response<api::Volume>, Status> {
        reply(
            self.engine
                .inspect_volume(&request.into_inner().name, true)
                .await,
        )
    }

    async fn remove(
        &self,
        request: Request<api::RemoveVolumeRequest>,
    ) -> Result<Response<api::RemoveVolumeResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("berth.VolumeRemove", volume = %r.name, force = r.force);
        reply(
            self.engine
                .remove_volume(&r.name, r.force)
                .instrument(span)
                .await
                .map(|_| api::RemoveVolumeResponse {}),
        )
    }

    async fn prune(
        &self,
        request: Request<api::PruneVolumesRequest>,
    ) -> Result<Response<api::PruneVolumesResponse>, Status> {
        let r = request.into_inner();
        reply(
            self.engine
                .prune_volumes(r.all)
                .await
                .map(|(deleted, reclaimed_bytes)| api::PruneVolumesResponse {
                    deleted,
                    reclaimed_bytes,
                }),
        )
    }
}

/// The Volumes gRPC service of a daemon.
pub fn server(
    pods: &Arc<crate::pods::PodManager>,
    images: &Arc<crate::images::ImageManager>,
) -> berth_proto::berth::v1::volumes_server::VolumesServer<VolumesApi> {
    berth_proto::berth::v1::volumes_server::VolumesServer::new(VolumesApi::new(Engine::shared(
        pods, images,
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let v = api::Volume {
            name: "data1".into(),
            labels: [("k".to_string(), "v".to_string())].into(),
            used_by: vec![],
            ..Default::default()
        };
        let f = |x: &[&str]| {
            volume_matches(&x.iter().map(|s| s.to_string()).collect::<Vec<_>>(), &v).unwrap()
        };
        assert!(f(&["name=data"]));
        assert!(!f(&["name=other"]));
        assert!(f(&["label=k", "label=k=v"]));
        assert!(!f(&["label=k=w"]));
        assert!(f(&["dangling=true"]));
        assert!(!f(&["dangling=false"]));
        assert!(volume_matches(&["x=1".into()], &v).is_err());
    }
}
