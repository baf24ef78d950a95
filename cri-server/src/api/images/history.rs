//! Image history: the config's `history` entries, newest first, with the
//! size of the layer each non-empty entry made.

use berth_proto::berth::v1 as api;
use serde_json::Value;

use super::error::ImagesApiError;
use crate::store::{ImageRecord, Store};

/// Seconds since the epoch of an RFC 3339 time (0 when absent or invalid).
fn epoch(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_str)
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The history of `rec`, newest first.
pub fn history(store: &Store, rec: &ImageRecord) -> Result<Vec<api::HistoryEntry>, ImagesApiError> {
    let config: Value =
        serde_json::from_str(&rec.config).map_err(|source| ImagesApiError::Json {
            what: format!("config of {}", rec.id),
            source,
        })?;
    let diff_ids: Vec<String> = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let layer_size = |i: usize| -> Result<u64, ImagesApiError> {
        Ok(match rec.chain_ids.get(i) {
            Some(c) => store.snapshot_size(c)?.unwrap_or(0),
            None => 0,
        })
    };
    let entries: Vec<Value> = config
        .get("history")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    let described = entries
        .iter()
        .filter(|h| {
            !h.get("empty_layer")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        })
        .count();
    // Layers the history does not describe (images built without one, or
    // committed on top of such): they are the oldest, listed first.
    let mut layer = 0usize;
    while layer + described < diff_ids.len() {
        out.push(api::HistoryEntry {
            id: diff_ids[layer].clone(),
            created: epoch(config.get("created")),
            size: layer_size(layer)?,
            ..Default::default()
        });
        layer += 1;
    }
    for h in &entries {
        let empty = h
            .get("empty_layer")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut e = api::HistoryEntry {
            created: epoch(h.get("created")),
            created_by: text(h, "created_by"),
            comment: text(h, "comment"),
            empty_layer: empty,
            ..Default::default()
        };
        if !empty && layer < diff_ids.len() {
            e.id = diff_ids[layer].clone();
            e.size = layer_size(layer)?;
            layer += 1;
        }
        out.push(e);
    }
    out.reverse();
    Ok(out)
}
