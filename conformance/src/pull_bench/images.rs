//! The benchmark's images: the busybox fixture and a generated 5-layer image
//! of mixed compressible and incompressible data, pushed to a loopback
//! registry with berth's own push code, plus the `hosts.toml` mirror files
//! that make an upstream-looking name resolve to that registry.

use std::path::{Path, PathBuf};

use berth_image::layout::{Format, ImageSpec, LayerCompression, Layout, LayoutError, TreeBuilder};
use berth_test_images::fixtures::{busybox_tree, PATH_ENV};
use berth_test_images::{busybox_layout, push_fixture, Registry};

/// The registry host both runtimes are told to mirror.
pub const MIRRORED_HOST: &str = "bench.local";

/// Errors building, pushing or describing the benchmark images.
#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    /// Building an OCI layout failed.
    #[error("building the {image} layout in {dir}")]
    Layout {
        /// Which image.
        image: &'static str,
        /// The layout directory.
        dir: PathBuf,
        /// The layout error.
        #[source]
        source: Box<LayoutError>,
    },
    /// Building a standard fixture failed.
    #[error("building fixture {image}")]
    Fixture {
        /// Which image.
        image: &'static str,
        /// The fixture error.
        #[source]
        source: Box<berth_test_images::FixtureError>,
    },
    /// Pushing to the loopback registry failed.
    #[error("pushing {reference} to the loopback registry")]
    Push {
        /// The registry-side reference.
        reference: String,
        /// The publish error.
        #[source]
        source: Box<berth_test_images::PublishError>,
    },
    /// Writing the hosts.toml directory failed.
    #[error("writing {path}")]
    Hosts {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One image as the benchmark pulls it.
#[derive(Debug, Clone)]
pub struct BenchImage {
    /// Short label for the table (`busybox`, `big-5l`).
    pub label: &'static str,
    /// The name the runtimes pull (`bench.local/...`), served by the mirror.
    pub reference: String,
    /// Sum of the compressed layer blob sizes (bytes on the wire).
    pub compressed_bytes: u64,
    /// Number of layers.
    pub layers: usize,
}

/// Parameters of the generated big image.
#[derive(Debug, Clone, Copy)]
pub struct BigImageParams {
    /// Number of layers (the first also carries the busybox tree).
    pub layers: usize,
    /// File data per layer in MiB (the total is `layers * layer_mib`).
    pub layer_mib: u64,
}

impl Default for BigImageParams {
    fn default() -> Self {
        BigImageParams {
            layers: 5,
            layer_mib: 60,
        }
    }
}

/// splitmix64: tiny, deterministic and good enough to defeat gzip.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Incompressible bytes.
fn noise(rng: &mut Prng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(&mut v);
    v
}

const WORDS: &[&str] = &[
    "request",
    "handler",
    "upstream",
    "cache",
    "miss",
    "hit",
    "session",
    "tenant",
    "volume",
    "snapshot",
    "layer",
    "manifest",
    "digest",
    "timeout",
    "retry",
    "backoff",
    "kubelet",
    "pod",
    "container",
    "network",
    "policy",
    "ingress",
    "metrics",
    "latency",
];

/// Log-like text: repetitive structure with varying numbers and words
/// (compresses roughly 4-6x with gzip, like real logs).
fn log_text(rng: &mut Prng, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 256);
    let mut ts: u64 = 1_763_788_800_000;
    while v.len() < len {
        ts += rng.below(250);
        let level = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"][rng.below(6) as usize];
        let w1 = WORDS[rng.below(WORDS.len() as u64) as usize];
        let w2 = WORDS[rng.below(WORDS.len() as u64) as usize];
        let line = format!(
            "{}.{:03} {level} {w1}/{w2} id={:016x} path=/api/v1/namespaces/ns-{}/{w2}s/{} status={} bytes={} dur_ms={}\n",
            ts / 1000,
            ts % 1000,
            rng.next(),
            rng.below(40),
            rng.below(100_000),
            [200, 200, 200, 201, 304, 404, 500][rng.below(7) as usize],
            rng.below(1 << 20),
            rng.below(5000),
        );
        v.extend_from_slice(line.as_bytes());
    }
    v.truncate(len);
    v
}

/// Mostly zeros with a random 4 KiB block every 256 KiB (a disk-image-like
/// sparse file).
fn sparse(rng: &mut Prng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut off = 0;
    while off + 4096 <= len {
        rng.fill(&mut v[off..off + 4096]);
        off += 256 << 10;
    }
    v
}

/// A 1 KiB random pattern repeated (compresses extremely well).
fn pattern(rng: &mut Prng, len: usize) -> Vec<u8> {
    let unit = noise(rng, 1024);
    unit.iter().copied().cycle().take(len).collect()
}

/// The tree of layer `index`: `layer_mib` MiB of file data split as
/// ~45% random, ~25% log text, ~15% sparse zeros, ~5% repeated pattern and
/// ~10% many small text files (4 KiB source-like files).
fn big_layer_tree(index: usize, layer_mib: u64) -> TreeBuilder {
    let total = (layer_mib << 20) as usize;
    let mut rng = Prng(0xB17_0000 + index as u64);
    let mut t = TreeBuilder::new();
    let base = format!("opt/bench/l{index}");
    t.dir("opt", 0o755)
        .dir("opt/bench", 0o755)
        .dir(&base, 0o755);
    let pct = |p: usize| total / 100 * p;
    t.bytes(
        &format!("{base}/random.bin"),
        noise(&mut rng, pct(45)),
        0o644,
    );
    t.bytes(
        &format!("{base}/app.log"),
        log_text(&mut rng, pct(25)),
        0o644,
    );
    t.bytes(
        &format!("{base}/disk.img"),
        sparse(&mut rng, pct(15)),
        0o644,
    );
    t.bytes(
        &format!("{base}/pattern.bin"),
        pattern(&mut rng, pct(5)),
        0o644,
    );
    let small_dir = format!("{base}/src");
    t.dir(&small_dir, 0o755);
    let small_total = total - pct(45) - pct(25) - pct(15) - pct(5);
    let files = small_total / 4096;
    for f in 0..files {
        let sub = format!("{small_dir}/m{:02}", f % 32);
        if f < 32 {
            t.dir(&sub, 0o755);
        }
        t.bytes(
            &format!("{sub}/f{f:05}.txt"),
            log_text(&mut rng, 4096),
            0o644,
        );
    }
    t
}

/// Builds the big image as an OCI layout under `dir` (tag `latest`).
/// Deterministic: same parameters, same digests.
pub fn big_layout(dir: &Path, params: BigImageParams) -> Result<PathBuf, ImagesError> {
    let ctx = |source| ImagesError::Layout {
        image: "big",
        dir: dir.to_path_buf(),
        source: Box::new(source),
    };
    let layout = Layout::create(dir).map_err(ctx)?;
    let mut layers = Vec::with_capacity(params.layers);
    for i in 0..params.layers {
        let t = big_layer_tree(i, params.layer_mib);
        if i == 0 {
            // A real root filesystem at the bottom, like most app images.
            let bb = busybox_tree().map_err(|source| ImagesError::Fixture {
                image: "busybox",
                source: Box::new(source),
            })?;
            let mut w = layout.layer(LayerCompression::Gzip).map_err(ctx)?;
            bb.write_to(&mut w).map_err(ctx)?;
            t.write_to(&mut w).map_err(ctx)?;
            layers.push(w.finish().map_err(ctx)?);
        } else {
            let mut w = layout.layer(LayerCompression::Gzip).map_err(ctx)?;
            t.write_to(&mut w).map_err(ctx)?;
            layers.push(w.finish().map_err(ctx)?);
        }
        tracing::info!(
            layer = i,
            size = layers[i].descriptor.size,
            "built big-image layer"
        );
    }
    let spec = ImageSpec {
        env: vec![PATH_ENV.to_string()],
        cmd: Some(vec!["sh".to_string()]),
        ..Default::default()
    };
    let m = layout
        .write_image(&layers, &spec, Format::Oci)
        .map_err(ctx)?;
    layout.tag("latest", &m).map_err(ctx)?;
    Ok(dir.to_path_buf())
}

fn compressed_size(layout_dir: &Path, image: &'static str) -> Result<(u64, usize), ImagesError> {
    let ctx = |source| ImagesError::Layout {
        image,
        dir: layout_dir.to_path_buf(),
        source: Box::new(source),
    };
    let layout = Layout::open(layout_dir).map_err(ctx)?;
    let top = layout.resolve("latest").map_err(ctx)?;
    let m: berth_image::layout::Manifest = layout.read_json(&top.digest).map_err(ctx)?;
    Ok((m.layers.iter().map(|l| l.size).sum(), m.layers.len()))
}

/// Builds both images under `work` and pushes them to `registry` as
/// `busybox:1` and `bench/big:1`; returns them named through
/// [`MIRRORED_HOST`].
pub async fn publish(
    registry: &Registry,
    work: &Path,
    big: BigImageParams,
) -> Result<Vec<BenchImage>, ImagesError> {
    let bb = busybox_layout(&work.join("busybox")).map_err(|source| ImagesError::Fixture {
        image: "busybox",
        source: Box::new(source),
    })?;
    let big_dir = work.join("big");
    let started = std::time::Instant::now();
    let big_path = tokio::task::block_in_place(|| big_layout(&big_dir, big))?;
    tracing::info!(elapsed = ?started.elapsed(), "built big image layout");

    let mut out = Vec::new();
    for (label, layout, tag, repo) in [
        ("busybox", bb.layout.clone(), bb.tag.clone(), "busybox:1"),
        ("big-5l", big_path, "latest".to_string(), "bench/big:1"),
    ] {
        push_fixture(registry, &layout, &tag, repo)
            .await
            .map_err(|source| ImagesError::Push {
                reference: format!("{}/{repo}", registry.host()),
                source: Box::new(source),
            })?;
        let (compressed_bytes, layers) = compressed_size(&layout, "pushed")?;
        out.push(BenchImage {
            label,
            reference: format!("{MIRRORED_HOST}/{repo}"),
            compressed_bytes,
            layers,
        });
    }
    Ok(out)
}

/// Writes `<certs_d>/<MIRRORED_HOST>/hosts.toml` sending pulls of
/// [`MIRRORED_HOST`] to the plain-HTTP registry at `registry_host`. The
/// `server` is the registry too, so nothing ever leaves loopback; the
/// explicit `[host]` table is what containerd 1.6 needs to use a mirror.
pub fn write_hosts_dir(certs_d: &Path, registry_host: &str) -> Result<(), ImagesError> {
    let dir = certs_d.join(MIRRORED_HOST);
    std::fs::create_dir_all(&dir).map_err(|source| ImagesError::Hosts {
        path: dir.clone(),
        source,
    })?;
    let text = format!(
        "# generated by bench-pull: {MIRRORED_HOST} is served by the loopback registry\n\
         server = \"http://{registry_host}\"\n\
         \n\
         [host.\"http://{registry_host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    );
    let path = dir.join("hosts.toml");
    std::fs::write(&path, text).map_err(|source| ImagesError::Hosts { path, source })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generators_are_deterministic_and_sized() {
        let a = log_text(&mut Prng(7), 10_000);
        let b = log_text(&mut Prng(7), 10_000);
        assert_eq!(a, b);
        assert_eq!(a.len(), 10_000);
        assert_ne!(noise(&mut Prng(1), 64), noise(&mut Prng(2), 64));
        let s = sparse(&mut Prng(3), 1 << 20);
        assert_eq!(s.len(), 1 << 20);
        assert!(s.iter().filter(|&&b| b == 0).count() > (1 << 20) * 9 / 10);
        assert_eq!(pattern(&mut Prng(4), 5000).len(), 5000);
    }

    #[test]
    fn big_layout_has_the_requested_layers() {
        let dir = tempfile::tempdir().unwrap();
        let params = BigImageParams {
            layers: 2,
            layer_mib: 1,
        };
        big_layout(&dir.path().join("l"), params).unwrap();
        let (size, layers) = compressed_size(&dir.path().join("l"), "big").unwrap();
        assert_eq!(layers, 2);
        // ~45% noise cannot compress: at least 0.4 MiB per layer on the wire.
        assert!(size > 2 * 400 * 1024, "{size}");
        let again = tempfile::tempdir().unwrap();
        big_layout(&again.path().join("l"), params).unwrap();
        let a = Layout::open(&dir.path().join("l"))
            .unwrap()
            .resolve("latest")
            .unwrap();
        let b = Layout::open(&again.path().join("l"))
            .unwrap()
            .resolve("latest")
            .unwrap();
        assert_eq!(a.digest, b.digest);
    }

    #[test]
    fn hosts_toml_points_at_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        write_hosts_dir(dir.path(), "127.0.0.1:5999").unwrap();
        let text = std::fs::read_to_string(dir.path().join("bench.local/hosts.toml")).unwrap();
        assert!(text.contains("server = \"http://127.0.0.1:5999\""));
        assert!(text.contains("[host.\"http://127.0.0.1:5999\"]"));
    }
}
