//! Image rows: id (config digest), repo tags and digests, layers, content.

use berth_image::pull::PulledImage;
use berth_image::reference::{is_valid_digest, Reference};
use rusqlite::{params, OptionalExtension, Transaction};

use super::{db_err, now_secs, Store, StoreError};

/// An image as the CRI reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// `sha256:` config digest.
    pub id: String,
    /// `name:tag` references.
    pub repo_tags: Vec<String>,
    /// `name@digest` references.
    pub repo_digests: Vec<String>,
    /// Compressed size of layers plus config.
    pub size: u64,
    /// `USER` of the config, if any.
    pub user: Option<String>,
    /// The config JSON.
    pub config: String,
    /// Chain ids of the layers, base first.
    pub chain_ids: Vec<String>,
}

/// An image made by berthd itself (load, commit), ready to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewImage {
    /// `sha256:` config digest.
    pub id: String,
    /// Digest of its manifest (in the content store).
    pub manifest_digest: String,
    /// Compressed size of layers plus config.
    pub size: u64,
    /// `USER` of the config, if any.
    pub user: Option<String>,
    /// The config JSON.
    pub config: String,
    /// Chain ids of the layers, base first (their snapshots exist).
    pub chain_ids: Vec<String>,
    /// Content digests the image keeps alive (manifest, config, layer blobs).
    pub content: Vec<String>,
    /// Normalised `name:tag` references.
    pub repo_tags: Vec<String>,
    /// Normalised `name@digest` references.
    pub repo_digests: Vec<String>,
}

/// What a removal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoveOutcome {
    /// Nothing matched (the CRI treats this as success).
    NotFound,
    /// Only the given tag was removed; the image keeps its other tags.
    Untagged,
    /// The image and all its references were removed.
    Removed {
        /// The image id.
        id: String,
    },
}

impl Store {
    /// Records a pulled image: one transaction, the last step of a pull, so
    /// the image is either fully visible or not at all. The tag moves to this
    /// image if another had it.
    pub fn commit_image(&self, img: &PulledImage) -> Result<(), StoreError> {
        let mut content = vec![img.manifest_digest.clone(), img.config_digest.clone()];
        content.extend(img.index_digest.clone());
        let repo_digest = img
            .reference
            .repo_digest(img.index_digest.as_deref().unwrap_or(&img.manifest_digest));
        // A tag moved away may leave an image with no reference at all; it
        // stays (like containerd) and is listed by id until removed.
        self.record_image(&NewImage {
            id: img.config_digest.clone(),
            manifest_digest: img.manifest_digest.clone(),
            size: img.size,
            user: img.user.clone(),
            config: String::from_utf8_lossy(&img.config).into_owned(),
            chain_ids: img.chain_ids.clone(),
            content,
            repo_tags: img.reference.repo_tag().into_iter().collect(),
            repo_digests: vec![repo_digest],
        })
    }

    /// Records an image: one transaction, so it is either fully visible or
    /// not at all; each tag in `repo_tags` moves to it.
    pub fn record_image(&self, img: &NewImage) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err("begin image record"))?;
        tx.execute(
            "INSERT INTO images (id, manifest_digest, size, user, config, created) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT(id) DO UPDATE SET manifest_digest = ?2, size = ?3, user = ?4, config = ?5",
            params![
                img.id,
                img.manifest_digest,
                i64::try_from(img.size).unwrap_or(i64::MAX),
                img.user,
                img.config,
                now_secs()
            ],
        )
        .map_err(db_err("insert image"))?;
        tx.execute(
            "DELETE FROM image_layers WHERE image_id = ?1",
            params![img.id],
        )
        .map_err(db_err("replace image layers"))?;
        for (i, chain_id) in img.chain_ids.iter().enumerate() {
            tx.execute(
                "INSERT INTO image_layers (image_id, idx, chain_id) VALUES (?1, ?2, ?3)",
                params![img.id, i64::try_from(i).unwrap_or(i64::MAX), chain_id],
            )
            .map_err(db_err("insert image layer"))?;
        }
        for digest in &img.content {
            tx.execute(
                "INSERT OR IGNORE INTO image_content (image_id, digest) VALUES (?1, ?2)",
                params![img.id, digest],
            )
            .map_err(db_err("insert image content"))?;
        }
        for tag in &img.repo_tags {
            set_ref(&tx, tag, &img.id, "tag")?;
        }
        for digest in &img.repo_digests {
            set_ref(&tx, digest, &img.id, "digest")?;
        }
        tx.commit().map_err(db_err("commit image"))
    }

    /// Points the tag `name` (normalised `domain/path:tag`) at image `id`.
    pub fn tag_image(&self, id: &str, name: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err("begin tag"))?;
        set_ref(&tx, name, id, "tag")?;
        tx.commit().map_err(db_err("commit tag"))
    }

    /// The manifest digest and creation time (seconds) of image `id`.
    pub fn image_manifest(&self, id: &str) -> Result<Option<(String, i64)>, StoreError> {
        self.conn()
            .query_row(
                "SELECT manifest_digest, created FROM images WHERE id = ?1",
                params![id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()
            .map_err(db_err("read image manifest"))
    }

    /// All images.
    pub fn list_images(&self) -> Result<Vec<ImageRecord>, StoreError> {
        let ids: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare("SELECT id FROM images ORDER BY created, id")
                .map_err(db_err("list images"))?;
            let rows = stmt
                .query_map(params![], |r| r.get::<_, String>(0))
                .map_err(db_err("list images"))?;
            rows.collect::<Result<_, _>>()
                .map_err(db_err("list images"))?
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(rec) = self.image_by_id(&id)? {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Finds an image by id (`sha256:<hex>` or bare hex), `name:tag` or
    /// `name@digest` (names normalised like the kubelet does).
    pub fn find_image(&self, image: &str) -> Result<Option<ImageRecord>, StoreError> {
        match self.resolve(image)? {
            Some((id, _)) => self.image_by_id(&id),
            None => Ok(None),
        }
    }

    /// Removes the image `image` names. A tag of an image that has other tags
    /// only loses that tag; an id, a digest or the last tag removes the image.
    /// Unused snapshots and content are collected by [`Store::gc`] afterwards.
    pub fn remove_image(&self, image: &str) -> Result<RemoveOutcome, StoreError> {
        let Some((id, via_tag)) = self.resolve(image)? else {
            return Ok(RemoveOutcome::NotFound);
        };
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err("begin image removal"))?;
        if let Some(tag) = via_tag {
            let tags: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM image_refs WHERE image_id = ?1 AND kind = 'tag'",
                    params![id],
                    |r| r.get(0),
                )
                .map_err(db_err("count tags"))?;
            if tags > 1 {
                tx.execute("DELETE FROM image_refs WHERE name = ?1", params![tag])
                    .map_err(db_err("remove tag"))?;
                tx.commit().map_err(db_err("commit untag"))?;
                return Ok(RemoveOutcome::Untagged);
            }
        }
        tx.execute("DELETE FROM images WHERE id = ?1", params![id])
            .map_err(db_err("remove image"))?;
        tx.commit().map_err(db_err("commit image removal"))?;
        Ok(RemoveOutcome::Removed { id })
    }

    /// Resolves a user string to an image id, plus the tag ref when it was a tag.
    fn resolve(&self, image: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
        let conn = self.conn();
        let id_candidate = if is_valid_digest(image) {
            Some(image.to_string())
        } else if image.len() == 64 && is_valid_digest(&format!("sha256:{image}")) {
            Some(format!("sha256:{image}"))
        } else {
            None
        };
        if let Some(id) = id_candidate {
            let found: Option<String> = conn
                .query_row("SELECT id FROM images WHERE id = ?1", params![id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db_err("look up image id"))?;
            return Ok(found.map(|id| (id, None)));
        }
        let Ok(reference) = Reference::parse_normalized(image) else {
            return Ok(None);
        };
        let (key, is_tag) = match reference.digest() {
            Some(d) => (reference.repo_digest(d), false),
            None => match reference.repo_tag() {
                Some(t) => (t, true),
                None => return Ok(None),
            },
        };
        let found: Option<String> = conn
            .query_row(
                "SELECT image_id FROM image_refs WHERE name = ?1",
                params![key],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err("look up image reference"))?;
        Ok(found.map(|id| (id, is_tag.then_some(key))))
    }

    fn image_by_id(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT size, user, config FROM images WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(db_err("read image"))?;
        let Some((size, user, config)) = row else {
            return Ok(None);
        };
        let refs = |kind: &str| -> Result<Vec<String>, StoreError> {
            let mut stmt = conn
                .prepare(
                    "SELECT name FROM image_refs WHERE image_id = ?1 AND kind = ?2 ORDER BY name",
                )
                .map_err(db_err("read image refs"))?;
            let rows = stmt
                .query_map(params![id, kind], |r| r.get::<_, String>(0))
                .map_err(db_err("read image refs"))?;
            rows.collect::<Result<_, _>>()
                .map_err(db_err("read image refs"))
        };
        let repo_tags = refs("tag")?;
        let repo_digests = refs("digest")?;
        let mut stmt = conn
            .prepare("SELECT chain_id FROM image_layers WHERE image_id = ?1 ORDER BY idx")
            .map_err(db_err("read image layers"))?;
        let chain_ids = stmt
            .query_map(params![id], |r| r.get::<_, String>(0))
            .map_err(db_err("read image layers"))?
            .collect::<Result<_, _>>()
            .map_err(db_err("read image layers"))?;
        Ok(Some(ImageRecord {
            id: id.to_string(),
            repo_tags,
            repo_digests,
            size: u64::try_from(size).unwrap_or(0),
            user,
            config,
            chain_ids,
        }))
    }
}

fn set_ref(tx: &Transaction<'_>, name: &str, image_id: &str, kind: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO image_refs (name, image_id, kind) VALUES (?1, ?2, ?3) \
         ON CONFLICT(name) DO UPDATE SET image_id = ?2, kind = ?3",
        params![name, image_id, kind],
    )
    .map_err(db_err("set image reference"))?;
    Ok(())
}
