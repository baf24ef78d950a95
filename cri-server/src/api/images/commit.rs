//! Commit: a container's writable layer (the overlay upper dir) as a new
//! image layer on top of its image.
//!
//! The layer is archived from the upper dir (whiteouts and opaque dirs
//! converted, see `berth_image::diff`), gzip'd into the content store, then
//! unpacked into a snapshot over the parent's chain exactly as a pulled
//! layer is, so containers run from the new image like from any other.

use std::fs::File;

use berth_image::diff::{build_gzip_layer, TempBlob, GZIP_LAYER};
use berth_image::layout::{canonical_json, Descriptor, Manifest, OCI_CONFIG, OCI_MANIFEST};
use berth_image::pull::{chain_ids, SnapshotSink};
use berth_image::unpack::{unpack_layer, LayerSource};
use berth_proto::berth::v1 as api;
use serde_json::{json, Map, Value};
use tracing::{info, warn};

use super::changes::apply_changes;
use super::error::{io_err, ImagesApiError};
use super::export::{oci_layer_media_type, stored_manifest};
use super::pull::parse_reference;
use crate::images::ImageManager;
use crate::pods::{Container, PodManager};
use crate::store::NewImage;

/// The label berthd's Docker-style containers carry their name in.
const NAME_LABEL: &str = "io.berth.name";

/// Finds the container `reference` names: first as the Containers API
/// resolves it (berth name, full id, unique id prefix among berth's
/// Docker-style containers: `api::containers::engine::resolve_in`), then
/// among all CRI containers (full id, unique id prefix, name label), so a
/// kubelet-made container can be committed too.
pub async fn resolve_container(
    pods: &PodManager,
    reference: &str,
) -> Result<Container, ImagesApiError> {
    use crate::api::containers::{engine::resolve_in, ApiError};
    let r = reference.strip_prefix('/').unwrap_or(reference);
    if r.is_empty() {
        return Err(ImagesApiError::InvalidArgument(
            "a container name or id is required".into(),
        ));
    }
    let rows = pods.store().list_docker()?;
    match resolve_in(&rows, r) {
        Ok(row) => return Ok(pods.load_container(&row.id).await?),
        Err(ApiError::InvalidArgument(m)) => return Err(ImagesApiError::InvalidArgument(m)),
        Err(_) => {}
    }
    let all = pods.all_containers().await?;
    if let Some(i) = all.iter().position(|c| c.id == r) {
        return Ok(all.into_iter().nth(i).unwrap_or_else(|| unreachable!()));
    }
    let named: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, c)| c.config.labels.get(NAME_LABEL).map(String::as_str) == Some(r))
        .map(|(i, _)| i)
        .collect();
    if let [i] = named[..] {
        return Ok(all.into_iter().nth(i).unwrap_or_else(|| unreachable!()));
    }
    let prefixed: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, c)| c.id.starts_with(r))
        .map(|(i, _)| i)
        .collect();
    match prefixed[..] {
        [i] => Ok(all.into_iter().nth(i).unwrap_or_else(|| unreachable!())),
        [] => Err(ImagesApiError::NoSuchContainer(reference.to_string())),
        _ => Err(ImagesApiError::InvalidArgument(format!(
            "{reference} matches {} containers, use more characters",
            prefixed.len()
        ))),
    }
}

/// The container's command as Docker shows it in `created_by`.
fn created_by(c: &Container) -> String {
    c.config
        .command
        .iter()
        .chain(c.config.args.iter())
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

fn rfc3339_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Commits the container `req.container`; returns the new image id.
pub async fn commit(
    images: &ImageManager,
    pods: &PodManager,
    req: &api::CommitRequest,
) -> Result<String, ImagesApiError> {
    let tag = match req.reference.as_str() {
        "" => None,
        r => {
            let reference = parse_reference(r)?;
            if reference.digest().is_some() {
                return Err(ImagesApiError::InvalidArgument(format!(
                    "cannot commit to a digest reference {r:?}: give NAME[:TAG]"
                )));
            }
            reference.repo_tag()
        }
    };
    let container = resolve_container(pods, &req.container).await?;
    tracing::Span::current().record("container_id", container.id.as_str());
    let store = images.store().clone();
    let parent = store.find_image(&container.rec.image_id)?.ok_or_else(|| {
        ImagesApiError::FailedPrecondition(format!(
            "the image {} of container {} was removed; its config is needed to commit",
            container.rec.image_id, container.id
        ))
    })?;
    // Refuse bad changes before the (long) layer build.
    let mut probe: Value =
        serde_json::from_str(&parent.config).map_err(|source| ImagesApiError::Json {
            what: format!("config of {}", parent.id),
            source,
        })?;
    apply_changes(&mut probe, &req.changes)
        .map_err(|e| ImagesApiError::InvalidArgument(e.to_string()))?;
    let upper = container.rec.data_dir.join("upper");
    if !upper.is_dir() {
        return Err(ImagesApiError::FailedPrecondition(format!(
            "container {} has no writable layer yet (never started?)",
            container.id
        )));
    }
    // Docker freezes the container while its layer is read; only a running
    // one can be (and needs to be) frozen.
    let frozen = if req.pause {
        match pods.running_container_shim(&container.id).await {
            Ok((_, shim)) => {
                shim.set_paused(&container.id, true)
                    .await
                    .map_err(|e| crate::pods::PodError::shim(&container.pod_id)(e))?;
                Some(shim)
            }
            Err(crate::pods::PodError::FailedPrecondition(_)) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let result = build_and_record(images, &container, &parent, req, tag, upper).await;
    if let Some(shim) = frozen {
        if let Err(e) = shim.set_paused(&container.id, false).await {
            warn!(container_id = %container.id, error = %crate::error::chain(&e), "cannot resume the container after commit");
        }
    }
    result
}

/// Archives `upper`, stores the layer and snapshot, and records the image.
async fn build_and_record(
    images: &ImageManager,
    container: &Container,
    parent: &crate::store::ImageRecord,
    req: &api::CommitRequest,
    tag: Option<String>,
    upper: std::path::PathBuf,
) -> Result<String, ImagesApiError> {
    let parent = parent.clone();
    let store = images.store().clone();
    let limits = images.puller().options().unpack_limits;
    let tmp_dir = store.tmp_dir()?;
    // GC must not collect the new snapshot before the image row exists.
    let _guard = store.pull_guard().await;
    let s = store.clone();
    let cid = container.id.clone();
    let parent_id = parent.id.clone();
    let (_, parent_manifest) = stored_manifest(&store, &parent)?;
    let image = tokio::task::spawn_blocking(move || {
        let blob =
            TempBlob::new(&tmp_dir, "commit-").map_err(io_err("creating a file in", &tmp_dir))?;
        let built =
            build_gzip_layer(&upper, blob.path()).map_err(|source| ImagesApiError::Diff {
                what: format!("container {cid}"),
                source,
            })?;
        let mut diff_ids: Vec<String> = parent_diff_ids(&parent.config)?;
        diff_ids.push(built.diff_id.to_string());
        let chains = chain_ids(&diff_ids);
        let chain_id = chains.last().cloned().unwrap_or_default();
        if !s
            .has_snapshot(&chain_id)
            .map_err(|e| ImagesApiError::FailedPrecondition(e.to_string()))?
        {
            let snap = s
                .begin_snapshot()
                .map_err(|e| ImagesApiError::FailedPrecondition(e.to_string()))?;
            let src = LayerSource {
                digest: &built.digest,
                diff_id: &built.diff_id,
                media_type: GZIP_LAYER,
                size: Some(built.size),
            };
            let file = File::open(blob.path()).map_err(io_err("opening", blob.path()))?;
            let stats = match unpack_layer(file, &src, &snap.join("fs"), &limits) {
                Ok(st) => st,
                Err(source) => {
                    s.abort_snapshot(&snap);
                    return Err(ImagesApiError::Unpack {
                        digest: built.digest.to_string(),
                        source,
                    });
                }
            };
            let parent_chain = parent.chain_ids.last().map(String::as_str);
            if let Err(e) = s.commit_snapshot(&snap, &chain_id, parent_chain, &stats) {
                s.abort_snapshot(&snap);
                return Err(ImagesApiError::FailedPrecondition(e.to_string()));
            }
        }
        s.import_content_file(&built.digest.to_string(), blob.path())?;

        let config: Value =
            serde_json::from_str(&parent.config).map_err(|source| ImagesApiError::Json {
                what: format!("config of {}", parent.id),
                source,
            })?;
        Ok::<_, ImagesApiError>((built, diff_ids, chains, config))
    })
    .await??;
    let (built, diff_ids, chains, mut config) = image;

    apply_changes(&mut config, &req.changes)
        .map_err(|e| ImagesApiError::InvalidArgument(e.to_string()))?;
    let now = rfc3339_now();
    let obj = config.as_object_mut().ok_or_else(|| {
        ImagesApiError::FailedPrecondition(format!("config of {parent_id} is not an object"))
    })?;
    let parent_created = obj.get("created").cloned();
    obj.insert("created".into(), Value::String(now.clone()));
    if !req.author.is_empty() {
        obj.insert("author".into(), Value::String(req.author.clone()));
    }
    let rootfs = obj
        .entry("rootfs".to_string())
        .or_insert_with(|| json!({"type": "layers"}));
    if let Some(r) = rootfs.as_object_mut() {
        r.insert(
            "diff_ids".into(),
            Value::Array(diff_ids.iter().cloned().map(Value::String).collect()),
        );
    }
    let mut entry = Map::new();
    entry.insert("created".into(), Value::String(now));
    entry.insert("created_by".into(), Value::String(created_by(container)));
    if !req.author.is_empty() {
        entry.insert("author".into(), Value::String(req.author.clone()));
    }
    if !req.message.is_empty() {
        entry.insert("comment".into(), Value::String(req.message.clone()));
    }
    let history = obj
        .entry("history".to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(h) = history.as_array_mut() {
        // One non-empty entry per layer, as readers pair them up: parent
        // layers without an entry get a blank one first.
        let described = h
            .iter()
            .filter(|e| {
                !e.get("empty_layer")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            })
            .count();
        let missing = (diff_ids.len() - 1).saturating_sub(described);
        let blank = match parent_created {
            Some(t) => json!({ "created": t }),
            None => json!({}),
        };
        let mut padded: Vec<Value> = std::iter::repeat_n(blank, missing).collect();
        padded.append(h);
        padded.push(Value::Object(entry));
        *h = padded;
    }
    let config_bytes = canonical_json(&config).map_err(|source| ImagesApiError::Json {
        what: "new config".into(),
        source,
    })?;
    let config_digest = berth_image::digest::Digest::of_bytes(&config_bytes);

    let mut layers: Vec<Descriptor> = parent_manifest.layers.clone();
    for l in &mut layers {
        l.media_type = oci_layer_media_type(&l.media_type);
    }
    layers.push(Descriptor::new(
        GZIP_LAYER,
        built.digest.clone(),
        built.size,
    ));
    let manifest = Manifest::new(
        OCI_MANIFEST,
        Descriptor::new(OCI_CONFIG, config_digest.clone(), config_bytes.len() as u64),
        layers,
    );
    let manifest_bytes = canonical_json(&manifest).map_err(|source| ImagesApiError::Json {
        what: "new manifest".into(),
        source,
    })?;
    let manifest_digest = berth_image::digest::Digest::of_bytes(&manifest_bytes);
    store.write_content(&config_digest.to_string(), &config_bytes)?;
    store.write_content(&manifest_digest.to_string(), &manifest_bytes)?;

    // Parent layer blobs this store has (loaded or committed parents) stay
    // with the new image, so it saves and pushes byte for byte.
    let mut content = vec![
        manifest_digest.to_string(),
        config_digest.to_string(),
        built.digest.to_string(),
    ];
    for l in &parent_manifest.layers {
        let d = l.digest.to_string();
        if store.has_content(&d) {
            content.push(d);
        }
    }
    let size = manifest.layers.iter().map(|l| l.size).sum::<u64>() + config_bytes.len() as u64;
    let user = config
        .pointer("/config/User")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .map(str::to_string);
    let id = config_digest.to_string();
    let rec = NewImage {
        id: id.clone(),
        manifest_digest: manifest_digest.to_string(),
        size,
        user,
        config: String::from_utf8_lossy(&config_bytes).into_owned(),
        chain_ids: chains,
        content,
        repo_tags: tag.iter().cloned().collect(),
        repo_digests: Vec::new(),
    };
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.record_image(&rec)).await??;
    info!(container_id = %container.id, image_id = %id, tag = ?tag, layer = %built.digest, "container committed");
    Ok(id)
}

fn parent_diff_ids(config: &str) -> Result<Vec<String>, ImagesApiError> {
    let v: Value = serde_json::from_str(config).map_err(|source| ImagesApiError::Json {
        what: "parent config".into(),
        source,
    })?;
    Ok(v.pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}
