//! Save (images → OCI archive stream) and Load (OCI archive or
//! docker-archive → stored images, layers unpacked into snapshots as a
//! pull unpacks them).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use berth_image::archive::{
    extract_archive, name_annotations, read_extracted, write_index, write_oci_archive, ArchiveImage,
};
use berth_image::layout::Layout;
use berth_image::pull::{chain_ids, SnapshotSink};
use berth_image::reference::Reference;
use berth_image::unpack::{unpack_layer, LayerSource, UnpackLimits};
use berth_proto::berth::v1 as api;
use serde_json::Value;
use tokio::sync::mpsc;
use tonic::Status;
use tracing::{info, warn};

use super::error::{io_err, ImagesApiError};
use super::export::export_image;
use super::maint::resolve_image;
use crate::images::ImageManager;
use crate::store::{NewImage, Store};

/// Bytes per streamed chunk.
const CHUNK: usize = 256 * 1024;

/// Sends what is written as `Chunk` messages (blocking; back-pressured by
/// the channel).
struct ChunkWriter {
    tx: mpsc::Sender<Result<api::Chunk, Status>>,
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(api::Chunk { data: buf.to_vec() }))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts writing the OCI archive of `names`; chunks (or the error) arrive
/// on the returned channel. Each image is recorded under the name it was
/// asked by (none when asked by id).
pub fn save(
    images: &ImageManager,
    names: Vec<String>,
) -> Result<mpsc::Receiver<Result<api::Chunk, Status>>, ImagesApiError> {
    if names.is_empty() {
        return Err(ImagesApiError::InvalidArgument("no image to save".into()));
    }
    let store = images.store().clone();
    let mut wanted = Vec::new();
    for n in &names {
        let rec = resolve_image(&store, n)?;
        // A name (not an id) is recorded in the archive, normalised.
        let by_id = super::maint::is_id_of(&rec, n);
        let reference = if by_id {
            None
        } else {
            Reference::parse_normalized(n)
                .ok()
                .filter(|r| r.digest().is_none())
        };
        wanted.push((rec, reference));
    }
    let tmp_dir = store.tmp_dir()?;
    let work = tempfile::Builder::new()
        .prefix("save-")
        .tempdir_in(&tmp_dir)
        .map_err(io_err("creating a directory in", &tmp_dir))?;
    let (tx, rx) = mpsc::channel(8);
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _e = span.enter();
        let result = (|| {
            let layout = Layout::create(work.path())?;
            let mut entries = Vec::new();
            for (rec, reference) in &wanted {
                let mut desc = export_image(&store, rec, &layout)?;
                if let Some(r) = reference {
                    desc.annotations = name_annotations(&r.to_string(), r.tag());
                }
                entries.push(desc);
            }
            write_index(work.path(), entries)?;
            let w = BufWriter::with_capacity(CHUNK, ChunkWriter { tx: tx.clone() });
            let mut w = write_oci_archive(work.path(), w)?;
            w.flush()
                .map_err(io_err("sending the archive of", work.path()))?;
            info!(images = wanted.len(), "saved");
            Ok::<_, ImagesApiError>(())
        })();
        if let Err(e) = result {
            warn!(error = %crate::error::chain(&e), "save failed");
            let _ = tx.blocking_send(Err(Status::from(e)));
        }
        drop(work);
    });
    Ok(rx)
}

/// Writes the uploaded archive into a file under the store's tmp dir.
pub async fn receive(
    store: &Store,
    mut chunks: tonic::Streaming<api::Chunk>,
) -> Result<(tempfile::TempDir, PathBuf), ImagesApiError> {
    use tokio::io::AsyncWriteExt;
    let tmp_dir = store.tmp_dir()?;
    let work = tempfile::Builder::new()
        .prefix("load-")
        .tempdir_in(&tmp_dir)
        .map_err(io_err("creating a directory in", &tmp_dir))?;
    let path = work.path().join("archive.tar");
    let mut f = tokio::fs::File::create(&path)
        .await
        .map_err(io_err("creating", &path))?;
    while let Some(chunk) = chunks.message().await.map_err(|s| {
        ImagesApiError::InvalidArgument(format!("receiving the archive: {}", s.message()))
    })? {
        f.write_all(&chunk.data)
            .await
            .map_err(io_err("writing", &path))?;
    }
    f.flush().await.map_err(io_err("writing", &path))?;
    Ok((work, path))
}

/// Stores the images of the archive at `archive` (inside `work`).
/// Blocking: run it on a blocking thread, holding the store's pull guard.
pub fn load(
    store: &Store,
    limits: &UnpackLimits,
    work: &Path,
    archive: &Path,
) -> Result<Vec<String>, ImagesApiError> {
    let dir = work.join("x");
    std::fs::create_dir(&dir).map_err(io_err("creating", &dir))?;
    let f = File::open(archive).map_err(io_err("opening", archive))?;
    extract_archive(std::io::BufReader::new(f), &dir)?;
    let mut loaded = Vec::new();
    for img in read_extracted(&dir)? {
        loaded.extend(load_image(store, limits, &img)?);
    }
    Ok(loaded)
}

fn load_image(
    store: &Store,
    limits: &UnpackLimits,
    img: &ArchiveImage,
) -> Result<Vec<String>, ImagesApiError> {
    let diff_ids: Vec<String> = img.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let chains = chain_ids(&diff_ids);
    let sink_err = |e: Box<dyn std::error::Error + Send + Sync>| {
        ImagesApiError::FailedPrecondition(e.to_string())
    };
    for (i, layer) in img.layers.iter().enumerate() {
        if !store.has_snapshot(&chains[i]).map_err(sink_err)? {
            let snap = store.begin_snapshot().map_err(sink_err)?;
            let src = LayerSource {
                digest: &layer.digest,
                diff_id: &layer.diff_id,
                media_type: &layer.media_type,
                size: Some(layer.size),
            };
            let f = File::open(&layer.path).map_err(io_err("opening", &layer.path))?;
            let stats = match unpack_layer(f, &src, &snap.join("fs"), limits) {
                Ok(s) => s,
                Err(source) => {
                    store.abort_snapshot(&snap);
                    return Err(ImagesApiError::Unpack {
                        digest: layer.digest.to_string(),
                        source,
                    });
                }
            };
            let parent = i.checked_sub(1).map(|p| chains[p].as_str());
            if let Err(e) = store.commit_snapshot(&snap, &chains[i], parent, &stats) {
                store.abort_snapshot(&snap);
                return Err(sink_err(e));
            }
        }
        store.import_content_file(&layer.digest.to_string(), &layer.path)?;
    }
    let manifest_digest = berth_image::digest::Digest::of_bytes(&img.manifest).to_string();
    let id = img.config_digest.to_string();
    store.write_content(&manifest_digest, &img.manifest)?;
    store.write_content(&id, &img.config)?;
    let config: Value =
        serde_json::from_slice(&img.config).map_err(|source| ImagesApiError::Json {
            what: format!("config {id}"),
            source,
        })?;
    let user = config
        .pointer("/config/User")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .map(str::to_string);
    let mut repo_tags = Vec::new();
    for n in &img.names {
        match Reference::parse_normalized(n) {
            Ok(r) => repo_tags.extend(r.repo_tag()),
            Err(e) => {
                warn!(name = %n, error = %e, "archive names an image with an invalid reference; ignored")
            }
        }
    }
    let mut content = vec![manifest_digest.clone(), id.clone()];
    content.extend(img.layers.iter().map(|l| l.digest.to_string()));
    let rec = NewImage {
        id: id.clone(),
        manifest_digest,
        size: img.layers.iter().map(|l| l.size).sum::<u64>() + img.config.len() as u64,
        user,
        config: String::from_utf8_lossy(&img.config).into_owned(),
        chain_ids: chains,
        content,
        repo_tags: repo_tags.clone(),
        repo_digests: Vec::new(),
    };
    store.record_image(&rec)?;
    info!(image_id = %id, tags = ?repo_tags, "image loaded");
    Ok(if repo_tags.is_empty() {
        vec![id]
    } else {
        repo_tags
    })
}
