//! Pushing fixtures into a test [`Registry`] with berth's own push code.

use std::path::Path;

use berth_image::digest::Digest;
use berth_image::push::{push_layout, PushError};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::fixtures::{
    busybox_layout, multiarch_index_layout, multilayer_whiteouts_layout, user_image_layout,
    FixtureError,
};
use crate::hostile::{hostile_layouts, registry_blob_path, HostileSet};
use crate::registry::Registry;

/// Errors publishing fixtures.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// `repo:tag` did not make a valid reference.
    #[error("invalid reference {0:?}")]
    Reference(String),
    /// Building a fixture failed.
    #[error(transparent)]
    Fixture(#[from] FixtureError),
    /// Pushing failed.
    #[error("pushing {reference}")]
    Push {
        /// The target.
        reference: String,
        /// The push error.
        #[source]
        source: PushError,
    },
    /// Corrupting a blob in the registry's storage failed.
    #[error("corrupting blob {digest} in the registry storage")]
    Corrupt {
        /// The blob.
        digest: Digest,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// An oci-client speaking plain HTTP to the test registry only.
pub fn client_for(registry: &Registry) -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.host()]),
        ..Default::default()
    })
}

/// The credentials the registry wants (anonymous when it has none).
pub fn auth_for(registry: &Registry) -> RegistryAuth {
    match registry.credentials() {
        Some((u, p)) => RegistryAuth::Basic(u.to_string(), p.to_string()),
        None => RegistryAuth::Anonymous,
    }
}

/// Pushes the image tagged `tag_in_layout` in `layout` to
/// `<registry>/<repo_tag>` (e.g. `busybox:latest`); returns its digest.
pub async fn push_fixture(
    registry: &Registry,
    layout: &Path,
    tag_in_layout: &str,
    repo_tag: &str,
) -> Result<Digest, PublishError> {
    let full = format!("{}/{repo_tag}", registry.host());
    let target: Reference = full
        .parse()
        .map_err(|_| PublishError::Reference(full.clone()))?;
    push_layout(
        &client_for(registry),
        layout,
        tag_in_layout,
        &target,
        &auth_for(registry),
    )
    .await
    .map_err(|source| PublishError::Push {
        reference: full,
        source,
    })
}

/// Pushes every hostile image as `<repo>:<tag>` and then damages the
/// blobs of the `tampered` and `truncated` images in the registry storage.
pub async fn push_hostile(
    registry: &Registry,
    set: &HostileSet,
    repo: &str,
) -> Result<(), PublishError> {
    for f in &set.fixtures {
        push_fixture(registry, &set.layout, f.tag, &format!("{repo}:{}", f.tag)).await?;
    }
    for f in &set.fixtures {
        if let Some(c) = f.corruption {
            let path = registry_blob_path(&registry.storage_dir(), &f.layer.digest);
            c.apply(&path).map_err(|source| PublishError::Corrupt {
                digest: f.layer.digest.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// Digests of the standard fixtures pushed by [`push_all`].
#[derive(Debug, Clone)]
pub struct Pushed {
    /// `busybox:latest` (also pushed as `library/busybox:latest`).
    pub busybox: Digest,
    /// `multilayer:latest`.
    pub multilayer: Digest,
    /// `user:latest`.
    pub user: Digest,
    /// `multiarch:latest` (the index digest).
    pub multiarch: Digest,
}

/// Builds the standard fixtures under `work` and pushes them as
/// `busybox:latest`, `library/busybox:latest`, `multilayer:latest`,
/// `user:latest` and `multiarch:latest`. Hostile images are separate
/// ([`push_hostile`]) because they leave probes to check.
pub async fn push_all(registry: &Registry, work: &Path) -> Result<Pushed, PublishError> {
    let bb = busybox_layout(&work.join("busybox"))?;
    let busybox = push_fixture(registry, &bb.layout, &bb.tag, "busybox:latest").await?;
    push_fixture(registry, &bb.layout, &bb.tag, "library/busybox:latest").await?;
    let ml = multilayer_whiteouts_layout(&work.join("multilayer"))?;
    let multilayer = push_fixture(registry, &ml.layout, &ml.tag, "multilayer:latest").await?;
    let us = user_image_layout(&work.join("user"))?;
    let user = push_fixture(registry, &us.layout, &us.tag, "user:latest").await?;
    let ma = multiarch_index_layout(&work.join("multiarch"))?;
    let multiarch = push_fixture(registry, &ma.layout, &ma.tag, "multiarch:latest").await?;
    Ok(Pushed {
        busybox,
        multilayer,
        user,
        multiarch,
    })
}

/// Builds the hostile set under `work` and pushes it as `<repo>:<tag>`.
pub async fn push_all_hostile(
    registry: &Registry,
    work: &Path,
    repo: &str,
) -> Result<HostileSet, PublishError> {
    let set = hostile_layouts(&work.join("hostile"))?;
    push_hostile(registry, &set, repo).await?;
    Ok(set)
}
