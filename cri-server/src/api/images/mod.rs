//! berth.v1 Images: what the CRI ImageService lacks (pull progress, push,
//! tag, commit, history, save/load, prune, login).
//!
//! Images made here are stored exactly like pulled ones (image rows,
//! content files, snapshots keyed by chain id), so the CRI services list
//! them and run containers from them. Pulled images keep no layer blobs;
//! when one is saved or pushed, its layers are archived again from their
//! snapshots (see [`export`]).

pub mod archive;
pub mod changes;
pub mod commit;
pub mod error;
pub mod export;
pub mod history;
pub mod maint;
pub mod pull;
pub mod push;
pub mod service;

use std::sync::Arc;

pub use error::ImagesApiError;
pub use service::ImagesApi;

use crate::images::ImageManager;
use crate::pods::PodManager;

/// The Images gRPC service of a daemon.
pub fn server(
    pods: &Arc<PodManager>,
    images: &Arc<ImageManager>,
) -> berth_proto::berth::v1::images_server::ImagesServer<ImagesApi> {
    berth_proto::berth::v1::images_server::ImagesServer::new(ImagesApi::new(
        images.clone(),
        pods.clone(),
    ))
}
