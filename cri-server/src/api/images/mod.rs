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

/// Largest message accepted (a Load chunk).
const MAX_MESSAGE: usize = 64 << 20;

/// The Images gRPC service of a daemon.
pub fn server(
    pods: &Arc<PodManager>,
    images: &Arc<ImageManager>,
) -> berth_proto::berth::v1::images_server::ImagesServer<ImagesApi> {
    // Load receives archive chunks: allow more than tonic's 4 MiB default
    // per message, as the CLI's client does for answers.
    berth_proto::berth::v1::images_server::ImagesServer::new(ImagesApi::new(
        images.clone(),
        pods.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE)
}
