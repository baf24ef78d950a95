//! Per-layer progress of a pull or push, reported to an optional observer.
//!
//! Byte counts change on every chunk; [`LayerReporter`] forwards a change
//! only when the phase changes or [`MIN_INTERVAL`] has passed, so a client
//! drawing progress bars gets a few events a second per layer at most.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Minimum time between two byte-count events of one layer.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Where a layer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started yet.
    Waiting,
    /// Bytes are arriving.
    Downloading,
    /// Downloaded; the last entries are being written.
    Extracting,
    /// Finished in this operation.
    Complete,
    /// Already present: nothing to move.
    Exists,
    /// Bytes are being sent.
    Uploading,
}

/// The state of one layer (or blob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerStatus {
    /// Blob digest (`sha256:...`).
    pub digest: String,
    /// Total bytes (compressed), 0 when unknown.
    pub total: u64,
    /// Bytes moved so far.
    pub current: u64,
    /// Phase.
    pub phase: Phase,
}

/// What an observer receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// Every layer of the image, in order, once the manifest is known.
    Layers(Vec<LayerStatus>),
    /// One layer changed.
    Layer(LayerStatus),
}

/// Receives progress events; called from download tasks, so it must be quick.
pub type Observer = Arc<dyn Fn(ProgressEvent) + Send + Sync>;

/// Throttles the events of one layer.
pub struct LayerReporter {
    observer: Observer,
    digest: String,
    total: u64,
    last: Option<(Instant, Phase)>,
}

impl std::fmt::Debug for LayerReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerReporter")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl LayerReporter {
    /// A reporter for the blob `digest` of `total` bytes (0: unknown).
    pub fn new(observer: Observer, digest: &str, total: u64) -> Self {
        LayerReporter {
            observer,
            digest: digest.to_string(),
            total,
            last: None,
        }
    }

    /// Reports `current` bytes in `phase`: sent at once on a phase change,
    /// otherwise only when [`MIN_INTERVAL`] passed since the last event.
    pub fn update(&mut self, current: u64, phase: Phase) {
        let now = Instant::now();
        let due = match self.last {
            None => true,
            Some((at, p)) => p != phase || now.duration_since(at) >= MIN_INTERVAL,
        };
        if due {
            self.last = Some((now, phase));
            (self.observer)(ProgressEvent::Layer(LayerStatus {
                digest: self.digest.clone(),
                total: self.total,
                current,
                phase,
            }));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn byte_updates_are_throttled_and_phase_changes_are_not() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let obs: Observer = Arc::new(move |e| s.lock().unwrap().push(e));
        let mut r = LayerReporter::new(obs, "sha256:x", 100);
        r.update(0, Phase::Downloading);
        for i in 1..50 {
            r.update(i, Phase::Downloading);
        }
        r.update(100, Phase::Extracting);
        r.update(100, Phase::Complete);
        let seen = seen.lock().unwrap();
        // First event, then (within 100 ms) only the two phase changes.
        assert_eq!(seen.len(), 3, "{seen:?}");
        let ProgressEvent::Layer(last) = &seen[2] else {
            panic!("not a layer event")
        };
        assert_eq!(last.phase, Phase::Complete);
        assert_eq!(last.total, 100);
    }
}
