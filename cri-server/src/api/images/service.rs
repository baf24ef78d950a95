//! The tonic service: spans, decoding, and the calls into the modules.

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::berth::v1 as api;
use berth_proto::berth::v1::images_server::Images;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, info_span, warn, Instrument};

use super::error::ImagesApiError;
use super::{archive, commit, history, maint, pull, push};
use crate::images::ImageManager;
use crate::pods::PodManager;

/// berth.v1.Images over the image and pod managers.
#[derive(Debug, Clone)]
pub struct ImagesApi {
    images: Arc<ImageManager>,
    pods: Arc<PodManager>,
}

impl ImagesApi {
    /// The service over berthd's managers. Work files a killed daemon left
    /// (archives being loaded, layouts being saved or pushed, layers being
    /// committed) are removed: nothing runs before the service starts.
    pub fn new(images: Arc<ImageManager>, pods: Arc<PodManager>) -> Self {
        match images.store().tmp_dir() {
            Ok(dir) => remove_leftovers(&dir),
            Err(e) => {
                warn!(error = %crate::error::chain(&e), "no work directory for image operations")
            }
        }
        ImagesApi { images, pods }
    }
}

/// Empties `dir`, logging what cannot be removed.
fn remove_leftovers(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let r = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&p),
            _ => std::fs::remove_file(&p),
        };
        match r {
            Ok(()) => {
                info!(path = %p.display(), "removed a leftover of an interrupted image operation")
            }
            Err(err) => warn!(path = %p.display(), %err, "cannot remove a leftover work file"),
        }
    }
}

type Result<T> = std::result::Result<Response<T>, Status>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Images for ImagesApi {
    type PullStream = BoxStream<api::PullProgress>;

    async fn pull(&self, request: Request<api::PullRequest>) -> Result<Self::PullStream> {
        let req = request.into_inner();
        let span = info_span!("berth.v1.Images/Pull", image = %req.image);
        let _e = span.enter();
        let rx = pull::start(self.images.clone(), req)?;
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    type PushStream = BoxStream<api::PushProgress>;

    async fn push(&self, request: Request<api::PushRequest>) -> Result<Self::PushStream> {
        let req = request.into_inner();
        let span = info_span!("berth.v1.Images/Push", image = %req.image, target = %req.target);
        let _e = span.enter();
        let rx = push::start(self.images.clone(), req)?;
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    async fn tag(&self, request: Request<api::TagRequest>) -> Result<api::TagResponse> {
        let req = request.into_inner();
        let span = info_span!("berth.v1.Images/Tag", source = %req.source, target = %req.target);
        let _e = span.enter();
        maint::tag(self.images.store(), &req.source, &req.target)?;
        Ok(Response::new(api::TagResponse {}))
    }

    async fn commit(&self, request: Request<api::CommitRequest>) -> Result<api::CommitResponse> {
        let req = request.into_inner();
        let span = info_span!(
            "berth.v1.Images/Commit",
            container = %req.container,
            reference = %req.reference,
            container_id = tracing::field::Empty
        );
        let id = commit::commit(&self.images, &self.pods, &req)
            .instrument(span)
            .await?;
        Ok(Response::new(api::CommitResponse { image_id: id }))
    }

    async fn history(&self, request: Request<api::HistoryRequest>) -> Result<api::HistoryResponse> {
        let req = request.into_inner();
        let span = info_span!("berth.v1.Images/History", image = %req.image);
        let _e = span.enter();
        let store = self.images.store();
        let rec = maint::resolve_image(store, &req.image)?;
        let entries = history::history(store, &rec)?;
        Ok(Response::new(api::HistoryResponse { entries }))
    }

    type SaveStream = BoxStream<api::Chunk>;

    async fn save(&self, request: Request<api::SaveRequest>) -> Result<Self::SaveStream> {
        let req = request.into_inner();
        let span = info_span!("berth.v1.Images/Save", images = ?req.images);
        let _e = span.enter();
        let rx = archive::save(&self.images, req.images)?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn load(&self, request: Request<Streaming<api::Chunk>>) -> Result<api::LoadResponse> {
        let span = info_span!("berth.v1.Images/Load");
        let store = self.images.store().clone();
        let limits = self.images.puller().options().unpack_limits;
        let loaded = async move {
            let (work, path) = archive::receive(&store, request.into_inner()).await?;
            // GC must not collect new snapshots before their image rows exist.
            let _guard = store.pull_guard().await;
            let s = store.clone();
            let span = tracing::Span::current();
            tokio::task::spawn_blocking(move || {
                let _e = span.enter();
                let r = archive::load(&s, &limits, work.path(), &path);
                drop(work);
                r
            })
            .await?
        }
        .instrument(span)
        .await
        .map_err(|e: ImagesApiError| Status::from(e))?;
        Ok(Response::new(api::LoadResponse { loaded }))
    }

    async fn prune(
        &self,
        request: Request<api::ImagePruneRequest>,
    ) -> Result<api::ImagePruneResponse> {
        let req = request.into_inner();
        let span = info_span!("berth.v1.Images/Prune", all = req.all);
        let resp = maint::prune(&self.images, &self.pods, req.all)
            .instrument(span)
            .await?;
        Ok(Response::new(resp))
    }

    async fn login(&self, request: Request<api::LoginRequest>) -> Result<api::LoginResponse> {
        let req = request.into_inner();
        let span = info_span!("berth.v1.Images/Login", registry = %req.registry);
        let registry = maint::login(&self.images, &req).instrument(span).await?;
        Ok(Response::new(api::LoginResponse { registry }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_removed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("load-x/x/blobs")).unwrap();
        std::fs::write(d.path().join("load-x/x/blobs/a"), b"a").unwrap();
        std::fs::write(d.path().join("commit-y"), b"y").unwrap();
        remove_leftovers(d.path());
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        // A missing dir is not an error.
        remove_leftovers(&d.path().join("nope"));
    }
}
