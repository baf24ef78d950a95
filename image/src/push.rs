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
use crate::hosts::{Endpoint, Scheme};
use crate::layout::{Descriptor, Index, Layout, LayoutError, Manifest, DOCKER_LIST, OCI_INDEX};
use crate::progress::{LayerReporter, LayerStatus, Observer, Phase, ProgressEvent};

/// Size of each upload chunk read from a blob file (small enough for
/// progress to move smoothly, large enough not to cost throughput).
const CHUNK: usize = 1 << 20;

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

impl PushError {
    /// True when the registry refused the credentials (HTTP 401/403).
    pub fn is_unauthorized(&self) -> bool {
        match self {
            PushError::Registry { source, .. } => {
                matches!(
                    source,
                    OciDistributionError::AuthenticationFailure(_)
                        | OciDistributionError::UnauthorizedError { .. }
                ) || {
                    let text = source.to_string().to_ascii_lowercase();
                    text.contains("401") || text.contains("403") || text.contains("unauthorized")
                }
            }
            _ => false,
        }
    }
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
    push_layout_observed(client, layout_dir, tag_in_layout, target, auth, None)
        .await
        .map(|(d, _)| d)
}

/// [`push_layout`] reporting progress: the list of layers of each image
/// manifest, then per blob EXISTS (the registry has it) or UPLOADING byte
/// counts and COMPLETE. Returns the top-level digest and its size.
pub async fn push_layout_observed(
    client: &Client,
    layout_dir: &Path,
    tag_in_layout: &str,
    target: &Reference,
    auth: &RegistryAuth,
    progress: Option<Observer>,
) -> Result<(Digest, u64), PushError> {
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
            push_manifest_tree(client, &layout, child, &by_digest, progress.as_ref()).await?;
        }
        push_manifest_bytes(client, &layout, &top, target).await?;
    } else {
        push_manifest_tree(client, &layout, &top, target, progress.as_ref()).await?;
    }
    tracing::info!(target = %target, digest = %top.digest, "pushed image");
    Ok((top.digest, top.size))
}

/// Pushes the image tagged `tag_in_layout` in the layout at `layout_dir`
/// to `repository:tag` on `endpoint`, with berth's credentials and
/// progress; returns the pushed manifest's digest and size.
pub async fn push_to_endpoint(
    endpoint: &Endpoint,
    layout_dir: &Path,
    tag_in_layout: &str,
    repository: &str,
    tag: &str,
    credentials: &crate::registry::Credentials,
    progress: Option<Observer>,
) -> Result<(Digest, u64), PushError> {
    use crate::registry::Credentials;
    let auth = match credentials {
        Credentials::Anonymous => RegistryAuth::Anonymous,
        Credentials::Basic { username, password } => {
            RegistryAuth::Basic(username.clone(), password.clone())
        }
        Credentials::IdentityToken { token } | Credentials::RegistryToken { token } => {
            RegistryAuth::Bearer(token.clone())
        }
    };
    let target = Reference::with_tag(
        endpoint.authority.clone(),
        repository.to_string(),
        tag.to_string(),
    );
    let client = client_for_endpoint(endpoint);
    push_layout_observed(&client, layout_dir, tag_in_layout, &target, &auth, progress).await
}

/// An oci-client for pushing to `endpoint`: plain HTTP when the endpoint
/// says so, its `skip_verify` honoured.
pub fn client_for_endpoint(endpoint: &Endpoint) -> Client {
    let protocol = match endpoint.scheme {
        Scheme::Http => {
            oci_client::client::ClientProtocol::HttpsExcept(vec![endpoint.authority.clone()])
        }
        Scheme::Https => oci_client::client::ClientProtocol::Https,
    };
    Client::new(oci_client::client::ClientConfig {
        protocol,
        accept_invalid_certificates: endpoint.skip_verify,
        ..Default::default()
    })
}

/// Pushes one image manifest's blobs, then the manifest itself to `target`.
async fn push_manifest_tree(
    client: &Client,
    layout: &Layout,
    desc: &Descriptor,
    target: &Reference,
    progress: Option<&Observer>,
) -> Result<(), PushError> {
    let manifest: Manifest = layout.read_json(&desc.digest)?;
    if let Some(obs) = progress {
        obs(ProgressEvent::Layers(
            manifest
                .layers
                .iter()
                .map(|l| LayerStatus {
                    digest: l.digest.to_string(),
                    total: l.size,
                    current: 0,
                    phase: Phase::Waiting,
                })
                .collect(),
        ));
    }
    push_blob_observed(client, layout, &manifest.config, target, None).await?;
    for layer in &manifest.layers {
        let reporter =
            progress.map(|o| LayerReporter::new(o.clone(), &layer.digest.to_string(), layer.size));
        push_blob_observed(client, layout, layer, target, reporter).await?;
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
    push_blob_observed(client, layout, desc, target, None).await
}

/// [`push_blob`], reporting EXISTS, or UPLOADING bytes then COMPLETE.
pub async fn push_blob_observed(
    client: &Client,
    layout: &Layout,
    desc: &Descriptor,
    target: &Reference,
    mut reporter: Option<LayerReporter>,
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
        if let Some(r) = reporter.as_mut() {
            r.update(0, Phase::Exists);
        }
        return Ok(());
    }
    let path = layout.blob_path(&desc.digest);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|source| PushError::Io {
            path: path.clone(),
            source,
        })?;
    if let Some(r) = reporter.as_mut() {
        r.update(0, Phase::Uploading);
    }
    let counter = std::sync::Arc::new(std::sync::Mutex::new((0u64, reporter)));
    let in_stream = counter.clone();
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
    let chunks = futures_util::StreamExt::inspect(chunks, move |chunk| {
        if let Ok(b) = chunk {
            let mut c = in_stream
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            c.0 += b.len() as u64;
            let sent = c.0;
            if let Some(r) = c.1.as_mut() {
                r.update(sent, Phase::Uploading);
            }
        }
    });
    client
        .push_blob_stream(target, chunks, &digest, Some(desc.size))
        .await
        .map_err(|e| reg_err("uploading blob", e))?;
    let mut c = counter
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let sent = c.0;
    if let Some(r) = c.1.as_mut() {
        r.update(sent, Phase::Complete);
    }
    Ok(())
}
