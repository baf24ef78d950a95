//! Image lookup, tag, prune and registry login.

use std::collections::HashSet;

use berth_image::registry::{RegistryClient, RegistryError};
use berth_proto::berth::v1 as api;
use tracing::info;

use super::error::ImagesApiError;
use super::pull::{credentials, parse_reference, registry_endpoints};
use crate::images::ImageManager;
use crate::pods::PodManager;
use crate::store::{ImageRecord, RemoveOutcome, Store};

/// The host `docker login` without a registry means.
const DEFAULT_REGISTRY: &str = "docker.io";

/// The image `image` names: an id (`sha256:<hex>` or hex), a unique id
/// prefix, or a reference (`name[:tag]`, `name@digest`).
pub fn resolve_image(store: &Store, image: &str) -> Result<ImageRecord, ImagesApiError> {
    if image.is_empty() {
        return Err(ImagesApiError::InvalidArgument(
            "an image name or id is required".into(),
        ));
    }
    if let Some(rec) = store.find_image(image)? {
        return Ok(rec);
    }
    let hex = image.strip_prefix("sha256:").unwrap_or(image);
    if !hex.is_empty() && hex.len() < 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let hex = hex.to_ascii_lowercase();
        let mut matches: Vec<ImageRecord> = store
            .list_images()?
            .into_iter()
            .filter(|r| {
                r.id.strip_prefix("sha256:")
                    .is_some_and(|h| h.starts_with(&hex))
            })
            .collect();
        match matches.len() {
            0 => {}
            1 => return Ok(matches.remove(0)),
            n => {
                return Err(ImagesApiError::InvalidArgument(format!(
                    "{image} matches {n} images, use more characters"
                )))
            }
        }
    }
    Err(ImagesApiError::NoSuchImage(image.to_string()))
}

/// True when `given` designates `rec` by its id (full, bare hex or a
/// prefix) rather than by a name.
pub fn is_id_of(rec: &ImageRecord, given: &str) -> bool {
    let hex = given.strip_prefix("sha256:").unwrap_or(given);
    !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && rec
            .id
            .strip_prefix("sha256:")
            .is_some_and(|h| h.starts_with(&hex.to_ascii_lowercase()))
}

/// Adds the tag `target` to the image `source` names; returns (id, tag).
pub fn tag(store: &Store, source: &str, target: &str) -> Result<(String, String), ImagesApiError> {
    let rec = resolve_image(store, source)?;
    let reference = parse_reference(target)?;
    if reference.digest().is_some() {
        return Err(ImagesApiError::InvalidArgument(format!(
            "cannot tag with a digest reference {target:?}: give NAME[:TAG]"
        )));
    }
    let name = reference
        .repo_tag()
        .ok_or_else(|| ImagesApiError::InvalidArgument(format!("{target:?} has no tag")))?;
    store.tag_image(&rec.id, &name)?;
    info!(image_id = %rec.id, tag = %name, "image tagged");
    Ok((rec.id, name))
}

/// Removes dangling images (no tag), or with `all` every image no
/// container uses; then collects unused snapshots and content.
pub async fn prune(
    images: &ImageManager,
    pods: &PodManager,
    all: bool,
) -> Result<api::ImagePruneResponse, ImagesApiError> {
    let used: HashSet<String> = pods
        .all_containers()
        .await?
        .into_iter()
        .map(|c| c.rec.image_id)
        .collect();
    let store = images.store().clone();
    let list = store.list_images()?;
    let mut resp = api::ImagePruneResponse::default();
    for rec in list {
        if used.contains(&rec.id) || (!all && !rec.repo_tags.is_empty()) {
            continue;
        }
        if let RemoveOutcome::Removed { id } = store.remove_image(&rec.id)? {
            info!(image_id = %id, "image pruned");
            resp.reclaimed_bytes += rec.size;
            resp.deleted.push(id);
        }
    }
    if !resp.deleted.is_empty() {
        let report = store.gc().await?;
        info!(?report, "garbage collected after prune");
    }
    Ok(resp)
}

/// Checks credentials against `registry` (`GET /v2/` on its first
/// endpoint in hosts.toml order); returns the host credentials are keyed by.
pub async fn login(
    images: &ImageManager,
    req: &api::LoginRequest,
) -> Result<String, ImagesApiError> {
    let host = match req.registry.trim() {
        "" | "index.docker.io" | "registry-1.docker.io" | "https://index.docker.io/v1/" => {
            DEFAULT_REGISTRY.to_string()
        }
        r => r
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string(),
    };
    if host.contains('/') || host.is_empty() {
        return Err(ImagesApiError::InvalidArgument(format!(
            "invalid registry {:?}: give a host[:port]",
            req.registry
        )));
    }
    let creds = credentials(req.auth.as_ref())?;
    let endpoints = registry_endpoints(images, &host)?;
    let endpoint = endpoints.first().ok_or_else(|| {
        ImagesApiError::FailedPrecondition(format!("no endpoint configured for {host}"))
    })?;
    let registry_err = |source: RegistryError| match source {
        RegistryError::Unauthorized { .. } => ImagesApiError::Unauthenticated {
            registry: host.clone(),
            source: Box::new(source),
        },
        other => ImagesApiError::Registry {
            registry: host.clone(),
            source: Box::new(other),
        },
    };
    let client = RegistryClient::new(endpoint, "", creds).map_err(registry_err)?;
    client.ping().await.map_err(registry_err)?;
    info!(registry = %host, endpoint = %endpoint.base_url(), "login succeeded");
    Ok(host)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names_are_told_apart() {
        let rec = ImageRecord {
            id: format!("sha256:abc123{}", "0".repeat(58)),
            repo_tags: vec![],
            repo_digests: vec![],
            size: 0,
            user: None,
            config: "{}".into(),
            chain_ids: vec![],
        };
        assert!(is_id_of(&rec, "abc1"));
        assert!(is_id_of(&rec, "sha256:ABC123"));
        assert!(is_id_of(&rec, &rec.id));
        assert!(!is_id_of(&rec, "abc1:latest"));
        assert!(!is_id_of(&rec, "busybox"));
        assert!(!is_id_of(&rec, ""));
    }
}
