//! Push of a stored image (under its own or another reference) from an
//! OCI layout the image is exported into, with per-layer progress.

use std::sync::Arc;

use berth_image::layout::Layout;
use berth_image::progress::{Observer, ProgressEvent};
use berth_image::push::push_to_endpoint;
use berth_proto::berth::v1 as api;
use tokio::sync::mpsc;
use tonic::Status;
use tracing::{info, Instrument};

use super::error::{io_err, ImagesApiError};
use super::maint::resolve_image;
use super::pull::{credentials, layer, parse_reference, registry_endpoints};
use crate::images::ImageManager;

/// The tag the exported image carries inside the temporary layout.
const LAYOUT_TAG: &str = "push";

/// Starts pushing `req.image` to `req.target` (or its own name).
pub fn start(
    images: Arc<ImageManager>,
    req: api::PushRequest,
) -> Result<mpsc::UnboundedReceiver<Result<api::PushProgress, Status>>, ImagesApiError> {
    let target_text = if req.target.is_empty() {
        req.image.clone()
    } else {
        req.target.clone()
    };
    let rec = resolve_image(images.store(), &req.image)?;
    if req.target.is_empty() && super::maint::is_id_of(&rec, &req.image) {
        return Err(ImagesApiError::InvalidArgument(format!(
            "{} is an image id; push needs a name: tag it first (`berth tag {} NAME[:TAG]`) or give a target",
            req.image, req.image
        )));
    }
    let target = parse_reference(&target_text)?;
    if target.digest().is_some() {
        return Err(ImagesApiError::InvalidArgument(format!(
            "cannot push to a digest reference {target_text:?}: give a tag"
        )));
    }
    let tag = target.tag().unwrap_or("latest").to_string();
    let host = target.domain().to_string();
    let endpoints = registry_endpoints(&images, &host)?;
    let endpoint = endpoints
        .into_iter()
        .find(|e| e.capabilities.push)
        .ok_or_else(|| {
            ImagesApiError::FailedPrecondition(format!(
                "no endpoint of {host} has the push capability (see its hosts.toml)"
            ))
        })?;
    let creds = credentials(req.auth.as_ref())?;
    let repository = target.path().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    let events = tx.clone();
    let observer: Observer = Arc::new(move |ev| {
        let event = match ev {
            ProgressEvent::Layers(list) => api::push_progress::Event::Layers(api::LayerList {
                layers: list.into_iter().map(layer).collect(),
            }),
            ProgressEvent::Layer(s) => api::push_progress::Event::Layer(layer(s)),
        };
        let _ = events.send(Ok(api::PushProgress { event: Some(event) }));
    });
    let reference = target.to_string();
    tokio::spawn(
        async move {
            let result = async {
                let store = images.store().clone();
                let tmp_dir = store.tmp_dir()?;
                let work = tempfile::Builder::new()
                    .prefix("push-")
                    .tempdir_in(&tmp_dir)
                    .map_err(io_err("creating a directory in", &tmp_dir))?;
                let dir = work.path().to_path_buf();
                let r = rec.clone();
                tokio::task::spawn_blocking(move || {
                    let layout = Layout::create(&dir)?;
                    let desc = super::export::export_image(&store, &r, &layout)?;
                    layout.tag(LAYOUT_TAG, &desc)?;
                    Ok::<_, ImagesApiError>(())
                })
                .await??;
                let (digest, size) = push_to_endpoint(
                    &endpoint,
                    work.path(),
                    LAYOUT_TAG,
                    &repository,
                    &tag,
                    &creds,
                    Some(observer),
                )
                .await
                .map_err(|source| ImagesApiError::Push {
                    target: reference.clone(),
                    source: Box::new(source),
                })?;
                info!(image_id = %rec.id, target = %reference, %digest, "pushed");
                Ok::<_, ImagesApiError>(api::PushDone {
                    digest: digest.to_string(),
                    reference: reference.clone(),
                    size,
                })
            }
            .await;
            let msg = result
                .map(|done| api::PushProgress {
                    event: Some(api::push_progress::Event::Done(done)),
                })
                .map_err(Status::from);
            let _ = tx.send(msg);
        }
        .instrument(tracing::Span::current()),
    );
    Ok(rx)
}
