//! CRI ImageService over gRPC: decode, call [`ImageManager`], encode.

use std::collections::HashMap;
use std::sync::Arc;

use berth_image::registry::Credentials;
use berth_proto::cri;
use berth_proto::cri::image_service_server::ImageService;
use tonic::{Request, Response, Status};
use tracing::{info_span, Instrument};

use crate::error::Error;
use crate::images::ImageManager;
use crate::store::ImageRecord;

/// The tonic service.
#[derive(Debug, Clone)]
pub struct CriImageService {
    images: Arc<ImageManager>,
}

impl CriImageService {
    /// Wraps the image manager.
    pub fn new(images: Arc<ImageManager>) -> Self {
        CriImageService { images }
    }
}

fn spec_image(spec: Option<&cri::ImageSpec>) -> &str {
    spec.map(|s| s.image.as_str()).unwrap_or("")
}

/// CRI `Image` from a record: uid when `USER` is numeric (`1000` or
/// `1000:1000`), username otherwise, neither when unset (the kubelet then
/// assumes root).
fn to_cri(rec: &ImageRecord) -> cri::Image {
    let user_part = rec
        .user
        .as_deref()
        .map(|u| u.split(':').next().unwrap_or(""))
        .unwrap_or("");
    let (uid, username) = match user_part.parse::<i64>() {
        Ok(uid) => (Some(cri::Int64Value { value: uid }), String::new()),
        Err(_) => (None, user_part.to_string()),
    };
    cri::Image {
        id: rec.id.clone(),
        repo_tags: rec.repo_tags.clone(),
        repo_digests: rec.repo_digests.clone(),
        size: rec.size,
        uid,
        username,
        spec: Some(cri::ImageSpec {
            image: rec.id.clone(),
            ..Default::default()
        }),
        pinned: false,
    }
}

fn credentials(auth: Option<&cri::AuthConfig>) -> Result<Credentials, Error> {
    match auth {
        None => Ok(Credentials::Anonymous),
        Some(a) => Credentials::from_cri(
            &a.username,
            &a.password,
            &a.auth,
            &a.identity_token,
            &a.registry_token,
        )
        .map_err(Error::Auth),
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[tonic::async_trait]
impl ImageService for CriImageService {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let req = request.into_inner();
        let filter = req
            .filter
            .as_ref()
            .and_then(|f| f.image.as_ref())
            .map(|s| s.image.clone());
        let span = info_span!("ListImages", filter = filter.as_deref().unwrap_or(""));
        let _e = span.enter();
        let images = self.images.list(filter.as_deref())?;
        Ok(Response::new(cri::ListImagesResponse {
            images: images.iter().map(to_cri).collect(),
        }))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let req = request.into_inner();
        let image = spec_image(req.image.as_ref());
        let span = info_span!("ImageStatus", image = %image);
        let _e = span.enter();
        // CRI: a missing image is an empty response, not an error.
        let Some(rec) = self.images.status(image)? else {
            return Ok(Response::new(cri::ImageStatusResponse::default()));
        };
        let mut info = HashMap::new();
        if req.verbose {
            let value = serde_json::json!({
                "id": rec.id,
                "chainIDs": rec.chain_ids,
                "imageSpec": serde_json::from_str::<serde_json::Value>(&rec.config)
                    .unwrap_or(serde_json::Value::String(rec.config.clone())),
            });
            info.insert("info".to_string(), value.to_string());
        }
        Ok(Response::new(cri::ImageStatusResponse {
            image: Some(to_cri(&rec)),
            info,
        }))
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let req = request.into_inner();
        let image = spec_image(req.image.as_ref()).to_string();
        let span = info_span!("PullImage", image = %image);
        async {
            let creds = credentials(req.auth.as_ref())?;
            let id = self.images.pull(&image, &creds).await?;
            Ok::<_, Error>(Response::new(cri::PullImageResponse { image_ref: id }))
        }
        .instrument(span)
        .await
        .map_err(Status::from)
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let req = request.into_inner();
        let image = spec_image(req.image.as_ref()).to_string();
        let span = info_span!("RemoveImage", image = %image);
        self.images
            .remove(&image)
            .instrument(span)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _request: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let span = info_span!("ImageFsInfo");
        let (usage, dir) = self.images.fs_usage().instrument(span).await?;
        let fs = cri::FilesystemUsage {
            timestamp: now_nanos(),
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: dir.display().to_string(),
            }),
            used_bytes: Some(cri::UInt64Value {
                value: usage.used_bytes,
            }),
            inodes_used: Some(cri::UInt64Value {
                value: usage.inodes_used,
            }),
        };
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![fs],
            // No containers exist before the pods work; nothing to report.
            container_filesystems: Vec::new(),
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(user: Option<&str>) -> ImageRecord {
        ImageRecord {
            id: "sha256:x".into(),
            repo_tags: vec![],
            repo_digests: vec![],
            size: 1,
            user: user.map(str::to_string),
            config: "{}".into(),
            chain_ids: vec![],
        }
    }

    #[test]
    fn uid_and_username_from_user() {
        let i = to_cri(&rec(Some("1000:1000")));
        assert_eq!(i.uid.unwrap().value, 1000);
        assert_eq!(i.username, "");
        let i = to_cri(&rec(Some("nobody:nogroup")));
        assert!(i.uid.is_none());
        assert_eq!(i.username, "nobody");
        let i = to_cri(&rec(None));
        assert!(i.uid.is_none());
        assert_eq!(i.username, "");
        assert_eq!(i.spec.unwrap().image, "sha256:x");
    }
}
