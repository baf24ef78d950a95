//! The images the conformance tests and the pod benchmark use, built from
//! the busybox fixture tree, pushed to a loopback registry and named
//! through a mirrored host (`hosts.toml`), so runtimes pull them exactly as
//! they would pull from an upstream registry.

use std::path::{Path, PathBuf};

use berth_image::layout::{Format, ImageSpec, LayerCompression, Layout, LayoutError};
use berth_test_images::fixtures::{busybox_tree, PATH_ENV};
use berth_test_images::{push_fixture, Registry};

/// The host name the images are pulled as; hosts.toml maps it to the registry.
pub const TEST_HOST: &str = "berth-test.local";

/// Errors building or publishing the test images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Building an OCI layout failed.
    #[error("building image {name} in {dir}")]
    Layout {
        /// The image.
        name: &'static str,
        /// The layout directory.
        dir: PathBuf,
        /// The layout error.
        #[source]
        source: Box<LayoutError>,
    },
    /// The busybox tree could not be assembled.
    #[error("building the busybox tree")]
    Fixture(#[source] Box<berth_test_images::FixtureError>),
    /// Pushing failed.
    #[error("pushing {reference}")]
    Push {
        /// Registry-side reference.
        reference: String,
        /// The push error.
        #[source]
        source: Box<berth_test_images::PublishError>,
    },
    /// hosts.toml could not be written.
    #[error("writing {path}")]
    Hosts {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// One test image.
#[derive(Debug, Clone, Copy)]
pub struct TestImage {
    /// Repository and tag in the registry (`busybox:1`).
    pub repo_tag: &'static str,
    /// `Entrypoint`.
    pub entrypoint: Option<&'static [&'static str]>,
    /// `Cmd`.
    pub cmd: &'static [&'static str],
    /// `StopSignal`.
    pub stop_signal: Option<&'static str>,
    /// Extra files over the busybox tree: (path, contents), mode 0644
    /// (parent directories 0755).
    pub files: &'static [(&'static str, &'static str)],
    /// `ExposedPorts` (`"80/tcp"`).
    pub exposed_ports: &'static [&'static str],
}

impl TestImage {
    /// The name runtimes pull: `<TEST_HOST>/<repo_tag>`.
    pub fn reference(&self) -> String {
        format!("{TEST_HOST}/{}", self.repo_tag)
    }
}

/// busybox with `Cmd ["sh"]`.
pub const BUSYBOX: TestImage = TestImage {
    repo_tag: "busybox:1",
    entrypoint: None,
    cmd: &["sh"],
    stop_signal: None,
    files: &[],
    exposed_ports: &[],
};

/// busybox whose image config says `StopSignal SIGUSR1`.
pub const BUSYBOX_STOPSIGNAL: TestImage = TestImage {
    repo_tag: "busybox-stopsignal:1",
    entrypoint: None,
    cmd: &["sh"],
    stop_signal: Some("SIGUSR1"),
    files: &[],
    exposed_ports: &[],
};

/// A pause-like sandbox image for containerd: busybox sleeping forever.
pub const PAUSE: TestImage = TestImage {
    repo_tag: "pause:1",
    entrypoint: Some(&["/bin/busybox", "sleep", "2147483647"]),
    cmd: &[],
    stop_signal: None,
    files: &[],
    exposed_ports: &[],
};

/// The page [`HTTPD`] serves at `/`.
pub const HTTPD_INDEX: &str = "<h1>berth httpd test page</h1>\n";

/// A web server for the CLI tutorial: busybox `httpd` serving `/www` on
/// port 80 in the foreground (not pulled at start-up: the tests pull it).
pub const HTTPD: TestImage = TestImage {
    repo_tag: "httpd:1",
    entrypoint: None,
    cmd: &["busybox", "httpd", "-f", "-p", "80", "-h", "/www"],
    stop_signal: None,
    files: &[("www/index.html", HTTPD_INDEX)],
    exposed_ports: &["80/tcp"],
};

/// Every image [`publish`] pushes.
pub const ALL: [TestImage; 4] = [BUSYBOX, BUSYBOX_STOPSIGNAL, PAUSE, HTTPD];

fn build(image: &TestImage, dir: &Path) -> Result<(), ImageError> {
    let name = image.repo_tag;
    let ctx = |source| ImageError::Layout {
        name,
        dir: dir.to_path_buf(),
        source: Box::new(source),
    };
    let layout = Layout::create(dir).map_err(ctx)?;
    let mut tree = busybox_tree().map_err(|e| ImageError::Fixture(Box::new(e)))?;
    for (path, text) in image.files {
        let mut parent = std::path::Path::new(path).parent();
        let mut parents = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            parents.push(p.to_string_lossy().into_owned());
            parent = p.parent();
        }
        for p in parents.iter().rev() {
            tree.dir(p, 0o755);
        }
        tree.bytes(path, *text, 0o644);
    }
    let mut w = layout.layer(LayerCompression::Gzip).map_err(ctx)?;
    tree.write_to(&mut w).map_err(ctx)?;
    let layer = w.finish().map_err(ctx)?;
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let spec = ImageSpec {
        env: vec![PATH_ENV.to_string()],
        entrypoint: image.entrypoint.map(strings),
        cmd: (!image.cmd.is_empty()).then(|| strings(image.cmd)),
        stop_signal: image.stop_signal.map(str::to_string),
        exposed_ports: strings(image.exposed_ports),
        ..Default::default()
    };
    let m = layout
        .write_image(&[layer], &spec, Format::Oci)
        .map_err(ctx)?;
    layout.tag("latest", &m).map_err(ctx)?;
    Ok(())
}

/// Builds every image of [`ALL`] under `work` and pushes it to `registry`.
pub async fn publish(registry: &Registry, work: &Path) -> Result<(), ImageError> {
    for (i, image) in ALL.iter().enumerate() {
        let dir = work.join(format!("image-{i}"));
        build(image, &dir)?;
        push_fixture(registry, &dir, "latest", image.repo_tag)
            .await
            .map_err(|source| ImageError::Push {
                reference: format!("{}/{}", registry.host(), image.repo_tag),
                source: Box::new(source),
            })?;
    }
    Ok(())
}

/// Writes `<certs_d>/<TEST_HOST>/hosts.toml` resolving and pulling
/// [`TEST_HOST`] from the plain-HTTP loopback registry at `registry_host`.
pub fn write_hosts_dir(certs_d: &Path, registry_host: &str) -> Result<(), ImageError> {
    let dir = certs_d.join(TEST_HOST);
    std::fs::create_dir_all(&dir).map_err(|source| ImageError::Hosts {
        path: dir.clone(),
        source,
    })?;
    let text = format!(
        "# generated by the berth conformance harness\n\
         server = \"http://{registry_host}\"\n\n\
         [host.\"http://{registry_host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
    );
    let path = dir.join("hosts.toml");
    std::fs::write(&path, text).map_err(|source| ImageError::Hosts { path, source })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stopsignal_image_config_carries_the_signal() {
        let dir = tempfile::tempdir().unwrap();
        build(&BUSYBOX_STOPSIGNAL, dir.path()).unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let top = layout.resolve("latest").unwrap();
        let m: berth_image::layout::Manifest = layout.read_json(&top.digest).unwrap();
        let config = std::fs::read_to_string(
            dir.path()
                .join("blobs/sha256")
                .join(m.config.digest.to_string().trim_start_matches("sha256:")),
        )
        .unwrap();
        assert!(config.contains("SIGUSR1"), "{config}");
    }

    #[test]
    fn references_use_the_mirrored_host() {
        assert_eq!(BUSYBOX.reference(), "berth-test.local/busybox:1");
        let dir = tempfile::tempdir().unwrap();
        write_hosts_dir(dir.path(), "127.0.0.1:5000").unwrap();
        let t = std::fs::read_to_string(dir.path().join("berth-test.local/hosts.toml")).unwrap();
        assert!(t.contains("server = \"http://127.0.0.1:5000\""));
    }
}
