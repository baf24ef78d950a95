//! Pushing an image from an OCI layout to a registry (test fixtures now,
//! `berth push` later).
//!
//! Order follows the distribution spec's rule that a manifest may only be
//! pushed once everything it references exists: blobs first (skipped when
//! the registry already has them), then child manifests by digest, then the
//! top-level manifest or index under the target tag.

use std::path::{Path, PathBuf};

use futures_util::stream;
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::io::AsyncReadExt;

use crate::digest::Digest;
use crate::layout::{Descriptor, Index, Layout, LayoutError, Manifest, DOCKER_LIST, OCI_INDEX};

/// Size of each upload chunk read from a blob file.
const CHUNK: usize = 8 << 20;

/// Errors pushing a layout.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Reading the layout failed.
    #[error("reading the layout")]
    Layout(#[from] LayoutError),
    /// A registry request failed.
    #[error("{op} {what} to {target}")]
    Registry {
        /// The operation (`checking blob`, `uploading blob`, `pushing manifest`).
        op: &'static str,
        /// Blob or manifest digest.
        what: String,
        /// The target reference.
        target: String,
        /// The client error.
        #[source]
        source: OciDistributionError,
    },
    /// A blob file could not be read.
    #[error("reading blob {path}")]
    Io {
        /// The blob file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A manifest's content type is not a valid header value.
    #[error("invalid media type {0:?}")]
    MediaType(String),
}

/// Pushes the image tagged `tag_in_layout` in the layout at `layout_dir` to
/// `target` (its tag names the pushed tag) and returns the digest of the
/// top-level manifest or index, which is byte-identical to the layout's.
pub async fn push_layout(
    client: &Client,
    layout_dir: &Path,
    tag_in_layout: &str,
    target: &Reference,
    auth: &RegistryAuth,
) -> Result<Digest, PushError> {
    let layout = Layout::open(layout_dir)?;
    let top = layout.resolve(tag_in_layout)?;
    client
        .store_auth_if_needed(target.resolve_registry(), auth)
        .await;
    if top.media_type == OCI_INDEX || top.media_type == DOCKER_LIST {
        let index: Index = layout.read_json(&top.digest)?;
        for child in &index.manifests {
            let by_digest = Reference::with_digest(
                target.registry().to_string(),
                target.repository().to_string(),
                child.digest.to_string(),
            );
            push_manifest_tree(client, &layout, child, &by_digest).await?;
        }
        push_manifest_bytes(client, &layout, &top, target).await?;
    } else {
        push_manifest_tree(client, &layout, &top, target).await?;
    }
    tracing::info!(target = %target, digest = %top.digest, "pushed image");
    Ok(top.digest)
}

/// Pushes one image manifest's blobs, then the manifest itself to `target`.
async fn push_manifest_tree(
    client: &Client,
    layout: &Layout,
    desc: &Descriptor,
    target: &Reference,
) -> Result<(), PushError> {
    let manifest: Manifest = layout.read_json(&desc.digest)?;
    push_blob(client, layout, &manifest.config, target).await?;
    for layer in &manifest.layers {
        push_blob(client, layout, layer, target).await?;
    }
    push_manifest_bytes(client, layout, desc, target).await
}

async fn push_manifest_bytes(
    client: &Client,
    layout: &Layout,
    desc: &Descriptor,
    target: &Reference,
) -> Result<(), PushError> {
    // The exact bytes from the layout, so the registry's digest is ours.
    let body = layout.read_blob(&desc.digest)?;
    let content_type = desc
        .media_type
        .parse()
        .map_err(|_| PushError::MediaType(desc.media_type.clone()))?;
    client
        .push_manifest_raw(target, body, content_type)
        .await
        .map_err(|source| PushError::Registry {
            op: "pushing manifest",
            what: desc.digest.to_string(),
            target: target.to_string(),
            source,
        })?;
    Ok(())
}

/// Uploads a blob unless the registry already has it.
pub async fn push_blob(
    client: &Client,
    layout: &Layout,
    desc: &Descriptor,
    target: &Reference,
) -> Result<(), PushError> {
    let digest = desc.digest.to_string();
    let reg_err = |op, source| PushError::Registry {
        op,
        what: digest.clone(),
        target: target.to_string(),
        source,
    };
    if client
        .blob_exists(target, &digest)
        .await
        .map_err(|e| reg_err("checking blob", e))?
    {
        tracing::debug!(%digest, "blob already present");
        return Ok(());
    }
    let path = layout.blob_path(&desc.digest);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|source| PushError::Io {
            path: path.clone(),
            source,
        })?;
    let chunks = stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            let n = file.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(None);
        }
        buf.truncate(filled);
        Ok::<_, OciDistributionError>(Some((bytes::Bytes::from(buf), file)))
    });
    client
        .push_blob_stream(target, chunks, &digest, Some(desc.size))
        .await
        .map_err(|e| reg_err("uploading blob", e))?;
    Ok(())
}
