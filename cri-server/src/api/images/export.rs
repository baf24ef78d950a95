//! A stored image written into an OCI image layout (for save and push).
//!
//! Images loaded or committed here keep their layer blobs in the content
//! store and are exported byte for byte. Pulled images do not (layers are
//! unpacked while downloading), so their missing layers are archived again
//! from their snapshots: the tar is deterministic, but it is not the
//! registry's original, so such an export gets new diff_ids, a new config
//! and therefore a new image id and manifest digest.

use std::path::Path;
use std::str::FromStr;

use berth_image::diff::{build_gzip_layer, TempBlob, GZIP_LAYER};
use berth_image::digest::Digest;
use berth_image::layout::{Descriptor, Layout, Manifest, OCI_CONFIG, OCI_MANIFEST};
use serde_json::Value;
use tracing::debug;

use super::error::{io_err, ImagesApiError};
use crate::store::{ImageRecord, Store};

/// The OCI media type for a (possibly Docker) layer media type.
pub fn oci_layer_media_type(media_type: &str) -> String {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => GZIP_LAYER.to_string(),
        "application/vnd.docker.image.rootfs.diff.tar" => {
            "application/vnd.oci.image.layer.v1.tar".to_string()
        }
        other => other.to_string(),
    }
}

/// The stored manifest of image `rec`.
pub fn stored_manifest(
    store: &Store,
    rec: &ImageRecord,
) -> Result<(String, Manifest), ImagesApiError> {
    let (digest, _) = store
        .image_manifest(&rec.id)?
        .ok_or_else(|| ImagesApiError::NoSuchImage(rec.id.clone()))?;
    let bytes = store.read_content(&digest)?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|source| ImagesApiError::Json {
            what: format!("manifest {digest}"),
            source,
        })?;
    Ok((digest, manifest))
}

fn place_blob(src: &Path, dest: &Path) -> Result<(), ImagesApiError> {
    if dest.exists() {
        return Ok(());
    }
    if std::fs::hard_link(src, dest).is_err() {
        std::fs::copy(src, dest).map_err(io_err("copying into", dest))?;
    }
    Ok(())
}

fn parse_digest(d: &str) -> Result<Digest, ImagesApiError> {
    Digest::from_str(d).map_err(|_| {
        ImagesApiError::FailedPrecondition(format!("invalid digest {d:?} in a stored image"))
    })
}

/// Writes image `rec` into `layout` and returns the descriptor of its
/// manifest there. Blocking: run it on a blocking thread.
pub fn export_image(
    store: &Store,
    rec: &ImageRecord,
    layout: &Layout,
) -> Result<Descriptor, ImagesApiError> {
    let (manifest_digest, manifest) = stored_manifest(store, rec)?;
    if manifest.layers.len() != rec.chain_ids.len() {
        return Err(ImagesApiError::FailedPrecondition(format!(
            "image {} has {} layers in its manifest and {} snapshots",
            rec.id,
            manifest.layers.len(),
            rec.chain_ids.len()
        )));
    }
    let mut config: Value =
        serde_json::from_str(&rec.config).map_err(|source| ImagesApiError::Json {
            what: format!("config of {}", rec.id),
            source,
        })?;
    let mut layers = Vec::with_capacity(manifest.layers.len());
    let mut diff_ids: Vec<Value> = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut rebuilt = false;
    let tmp_dir = store.tmp_dir()?;
    for (i, layer) in manifest.layers.iter().enumerate() {
        let digest = layer.digest.to_string();
        if let Some(src) = store.content_file(&digest) {
            place_blob(&src, &layout.blob_path(&layer.digest))?;
            layers.push(layer.clone());
            continue;
        }
        let chain_id = &rec.chain_ids[i];
        let snapshot = store.snapshot_path(chain_id)?.ok_or_else(|| {
            ImagesApiError::FailedPrecondition(format!(
                "the snapshot of layer {digest} of image {} is missing; pull the image again",
                rec.id
            ))
        })?;
        let blob =
            TempBlob::new(&tmp_dir, "export-").map_err(io_err("creating a file in", &tmp_dir))?;
        let built =
            build_gzip_layer(&snapshot, blob.path()).map_err(|source| ImagesApiError::Diff {
                what: format!("layer {digest}"),
                source,
            })?;
        let dest = layout.blob_path(&built.digest);
        std::fs::rename(blob.path(), &dest).map_err(io_err("moving into", &dest))?;
        let _ = blob.keep();
        debug!(layer = %digest, rebuilt = %built.digest, "layer archived again from its snapshot");
        if i < diff_ids.len() {
            diff_ids[i] = Value::String(built.diff_id.to_string());
        }
        rebuilt = true;
        layers.push(Descriptor::new(GZIP_LAYER, built.digest, built.size));
    }
    if !rebuilt {
        let config_bytes = store.read_content(&rec.id)?;
        layout.write_blob(OCI_CONFIG, &config_bytes)?;
        let bytes = store.read_content(&manifest_digest)?;
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        return Ok(layout.write_blob(&media_type, &bytes)?);
    }
    if let Some(rootfs) = config.get_mut("rootfs").and_then(Value::as_object_mut) {
        rootfs.insert("diff_ids".into(), Value::Array(diff_ids));
    }
    let config_bytes = serde_json::to_vec(&config).map_err(|source| ImagesApiError::Json {
        what: format!("config of {}", rec.id),
        source,
    })?;
    let config_desc = layout.write_blob(OCI_CONFIG, &config_bytes)?;
    for l in &mut layers {
        l.media_type = oci_layer_media_type(&l.media_type);
    }
    let m = Manifest::new(OCI_MANIFEST, config_desc, layers);
    Ok(layout.write_json(OCI_MANIFEST, &m)?)
}

/// `parse_digest` for callers that hold digests as text.
pub fn digest(d: &str) -> Result<Digest, ImagesApiError> {
    parse_digest(d)
}
