//! Pull with per-layer progress: the same pull and the same image row as
//! the CRI PullImage, with an observer turning layer events into stream
//! messages.

use std::sync::Arc;

use berth_image::hosts;
use berth_image::progress::{LayerStatus, Observer, Phase, ProgressEvent};
use berth_image::reference::Reference;
use berth_image::registry::Credentials;
use berth_proto::berth::v1 as api;
use tokio::sync::mpsc;
use tonic::Status;
use tracing::{info, Instrument};

use super::error::ImagesApiError;
use crate::images::ImageManager;

/// The proto phase of a layer phase.
pub fn phase(p: Phase) -> api::layer_progress::Phase {
    use api::layer_progress::Phase as P;
    match p {
        Phase::Waiting => P::Waiting,
        Phase::Downloading => P::Downloading,
        Phase::Extracting => P::Extracting,
        Phase::Complete => P::Complete,
        Phase::Exists => P::Exists,
        Phase::Uploading => P::Uploading,
    }
}

/// The proto message of a layer status.
pub fn layer(s: LayerStatus) -> api::LayerProgress {
    api::LayerProgress {
        digest: s.digest,
        total: s.total,
        current: s.current,
        phase: phase(s.phase) as i32,
    }
}

/// The endpoints berthd's hosts.toml configuration gives registry `host`.
pub fn registry_endpoints(
    images: &ImageManager,
    host: &str,
) -> Result<Vec<hosts::Endpoint>, ImagesApiError> {
    hosts::endpoints_for(&images.puller().options().hosts_dir, host).map_err(|source| {
        ImagesApiError::Hosts {
            host: host.to_string(),
            source,
        }
    })
}

/// Credentials of a berth.v1 request.
pub fn credentials(auth: Option<&api::RegistryAuth>) -> Result<Credentials, ImagesApiError> {
    match auth {
        None => Ok(Credentials::Anonymous),
        Some(a) => Credentials::from_cri(&a.username, &a.password, "", &a.identity_token, "")
            .map_err(|e| ImagesApiError::InvalidArgument(e.to_string())),
    }
}

/// Parses a reference as typed (`busybox`, `host:5000/x:1`, `x@sha256:..`).
pub fn parse_reference(input: &str) -> Result<Reference, ImagesApiError> {
    if input.is_empty() {
        return Err(ImagesApiError::InvalidArgument(
            "an image reference is required".into(),
        ));
    }
    Reference::parse_normalized(input).map_err(|source| ImagesApiError::Reference {
        input: input.to_string(),
        source,
    })
}

/// Starts the pull of `req.image`; progress and the final `done` (or the
/// error) arrive on the returned channel. The pull runs in its own task: a
/// client that goes away does not abort it (like the CRI pull).
pub fn start(
    images: Arc<ImageManager>,
    req: api::PullRequest,
) -> Result<mpsc::UnboundedReceiver<Result<api::PullProgress, Status>>, ImagesApiError> {
    let reference = parse_reference(&req.image)?;
    let creds = credentials(req.auth.as_ref())?;
    let (tx, rx) = mpsc::unbounded_channel();
    let events = tx.clone();
    let observer: Observer = Arc::new(move |ev| {
        let event = match ev {
            ProgressEvent::Layers(list) => api::pull_progress::Event::Layers(api::LayerList {
                layers: list.into_iter().map(layer).collect(),
            }),
            ProgressEvent::Layer(s) => api::pull_progress::Event::Layer(layer(s)),
        };
        // A gone client only stops the messages, not the pull.
        let _ = events.send(Ok(api::PullProgress { event: Some(event) }));
    });
    tokio::spawn(
        async move {
            let result = pull(&images, &reference, &creds, observer).await;
            let msg = result
                .map(|done| api::PullProgress {
                    event: Some(api::pull_progress::Event::Done(done)),
                })
                .map_err(Status::from);
            let _ = tx.send(msg);
        }
        .instrument(tracing::Span::current()),
    );
    Ok(rx)
}

async fn pull(
    images: &ImageManager,
    reference: &Reference,
    creds: &Credentials,
    observer: Observer,
) -> Result<api::PullDone, ImagesApiError> {
    let store = images.store().clone();
    // Held until the image row is committed: GC waits for us.
    let _guard = store.pull_guard().await;
    let pulled = images
        .puller()
        .pull_observed(reference, creds, store.clone(), Some(observer))
        .await
        .map_err(crate::error::Error::from)?;
    let done = api::PullDone {
        image_id: pulled.config_digest.clone(),
        reference: reference.to_string(),
        repo_digest: reference.repo_digest(
            pulled
                .index_digest
                .as_deref()
                .unwrap_or(&pulled.manifest_digest),
        ),
    };
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.commit_image(&pulled)).await??;
    info!(image = %reference, image_id = %done.image_id, "image committed");
    Ok(done)
}
