//! Test support: small images built in memory and pushed over the
//! distribution API, berthd in-process or as a child, CRI clients.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_cri_server::config::Config;
use berth_cri_server::images::ImageManager;
use berth_cri_server::server::Daemon;
use berth_proto::cri;
use berth_proto::cri::image_service_client::ImageServiceClient;
use hyper_util::rt::TokioIo;
use sha2::{Digest as _, Sha256};
use tonic::transport::{Channel, Endpoint, Uri};

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// One layer: (path, contents) regular files.
pub type Files<'a> = &'a [(&'a str, &'a [u8])];

/// An image held in memory.
#[derive(Clone)]
pub struct TestImage {
    pub media_type: &'static str,
    pub blobs: Vec<(String, Vec<u8>)>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

fn layer_tar(files: Files<'_>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Builds an OCI image (gzip layers) with the given layers and `USER`.
pub fn build_image(layers: &[Files<'_>], user: &str, arch: &str) -> TestImage {
    build_image_as(layers, user, arch, false)
}

/// Like [`build_image`], as a Docker schema2 image when `docker` is set.
pub fn build_image_as(layers: &[Files<'_>], user: &str, arch: &str, docker: bool) -> TestImage {
    let (manifest_type, config_type, layer_type) = if docker {
        (
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    };
    let mut blobs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for files in layers {
        let tar = layer_tar(files);
        diff_ids.push(sha256(&tar));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let d = sha256(&gz);
        descs.push(serde_json::json!({
            "mediaType": layer_type, "digest": d, "size": gz.len()
        }));
        blobs.push((d, gz));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"User": user, "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config_digest, "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let manifest_digest = sha256(&manifest);
    blobs.push((config_digest.clone(), config.clone()));
    TestImage {
        media_type: manifest_type,
        blobs,
        config_digest,
        manifest_digest,
        manifest,
    }
}

/// Pushes blobs and the manifest under `repo:tag` (monolithic uploads).
pub async fn push(host: &str, repo: &str, tag: &str, img: &TestImage, auth: Option<(&str, &str)>) {
    let http = reqwest::Client::new();
    let with_auth = |r: reqwest::RequestBuilder| match auth {
        Some((u, p)) => r.basic_auth(u, Some(p)),
        None => r,
    };
    for (digest, data) in &img.blobs {
        let resp = with_auth(http.post(format!("http://{host}/v2/{repo}/blobs/uploads/")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202, "start upload of {digest}");
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        let loc = if loc.starts_with('/') {
            format!("http://{host}{loc}")
        } else {
            loc
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let resp = with_auth(http.put(format!("{loc}{sep}digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201, "finish upload of {digest}");
    }
    put_manifest(host, repo, tag, &img.manifest, img.media_type, auth).await;
}

pub async fn put_manifest(
    host: &str,
    repo: &str,
    reference: &str,
    body: &[u8],
    media_type: &str,
    auth: Option<(&str, &str)>,
) {
    let http = reqwest::Client::new();
    let mut req = http
        .put(format!("http://{host}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body.to_vec());
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    let resp = req.send().await.unwrap();
    assert_eq!(
        resp.status().as_u16(),
        201,
        "push manifest {repo}:{reference}"
    );
}

/// A temp root/state/hosts layout for one daemon.
pub struct Dirs {
    pub tmp: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Dirs {
        Dirs {
            tmp: tempfile::Builder::new()
                .prefix("berth-it-")
                .tempdir()
                .unwrap(),
        }
    }
    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }
    pub fn state(&self) -> PathBuf {
        self.tmp.path().join("state")
    }
    pub fn hosts(&self) -> PathBuf {
        self.tmp.path().join("certs.d")
    }
    pub fn socket(&self) -> PathBuf {
        self.state().join("berth.sock")
    }
    /// Writes `<hosts>/<host>/hosts.toml`.
    pub fn hosts_toml(&self, host: &str, text: &str) {
        let d = self.hosts().join(host);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("hosts.toml"), text).unwrap();
    }
    pub fn config(&self) -> Config {
        let mut c = Config {
            root: self.root(),
            state: self.state(),
            ..Default::default()
        };
        c.registry.config_path = self.hosts();
        c
    }
    /// Numbered snapshot dirs and tmp dirs currently on disk.
    pub fn snapshot_dirs(&self) -> (usize, usize) {
        let mut n = (0, 0);
        for e in std::fs::read_dir(self.root().join("snapshots")).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            if name.starts_with("tmp-") {
                n.1 += 1;
            } else {
                n.0 += 1;
            }
        }
        n
    }
    pub fn content_files(&self) -> usize {
        std::fs::read_dir(self.root().join("content/sha256"))
            .unwrap()
            .count()
    }
}

pub async fn connect(socket: &Path) -> Channel {
    let path = socket.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .unwrap()
}

/// berthd running inside the test process.
pub struct InProc {
    pub images: ImageServiceClient<Channel>,
    pub manager: Arc<ImageManager>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<()>>,
}

impl InProc {
    pub async fn start(dirs: &Dirs) -> InProc {
        Self::start_with(dirs, dirs.config()).await
    }

    pub async fn start_with(dirs: &Dirs, config: Config) -> InProc {
        let daemon = Daemon::bind(&config).await.unwrap();
        let manager = daemon.images().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let join = tokio::spawn(async move {
            daemon
                .serve(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        let ch = connect(&dirs.socket()).await;
        InProc {
            images: ImageServiceClient::new(ch),
            manager,
            stop: Some(tx),
            join: Some(join),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            j.await.unwrap();
        }
    }
}

/// berthd as a child process (for kill -9 and side-by-side tests).
pub struct ChildDaemon {
    pub child: Child,
}

impl ChildDaemon {
    pub fn start(dirs: &Dirs) -> ChildDaemon {
        let child = Command::new(env!("CARGO_BIN_EXE_berthd"))
            .arg("--config")
            .arg(write_config(dirs))
            .arg("--root")
            .arg(dirs.root())
            .arg("--state")
            .arg(dirs.state())
            .arg("--log-level")
            .arg("warn")
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(dirs.socket()).is_err() {
            assert!(Instant::now() < deadline, "berthd did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        ChildDaemon { child }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn term(&mut self) -> std::process::ExitStatus {
        let st = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(st.success());
        self.child.wait().unwrap()
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dirs: &Dirs) -> PathBuf {
    std::fs::create_dir_all(dirs.tmp.path()).unwrap();
    let p = dirs.tmp.path().join("config.toml");
    std::fs::write(
        &p,
        format!(
            "[registry]\nconfig_path = {:?}\nmax_concurrent_downloads = 2\n",
            dirs.hosts().display().to_string()
        ),
    )
    .unwrap();
    p
}

/// StopPodSandbox then RemovePodSandbox, both expected to succeed.
pub async fn stop_and_remove_pod(
    rt: &mut cri::runtime_service_client::RuntimeServiceClient<Channel>,
    pod_id: &str,
) {
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod_id.to_string(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod_id.to_string(),
    })
    .await
    .unwrap();
}

pub fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

pub async fn pull(
    c: &mut ImageServiceClient<Channel>,
    image: &str,
) -> Result<String, tonic::Status> {
    pull_auth(c, image, None).await
}

pub async fn pull_auth(
    c: &mut ImageServiceClient<Channel>,
    image: &str,
    auth: Option<cri::AuthConfig>,
) -> Result<String, tonic::Status> {
    c.pull_image(cri::PullImageRequest {
        image: spec(image),
        auth,
        sandbox_config: None,
    })
    .await
    .map(|r| r.into_inner().image_ref)
}

pub async fn status(c: &mut ImageServiceClient<Channel>, image: &str) -> Option<cri::Image> {
    c.image_status(cri::ImageStatusRequest {
        image: spec(image),
        verbose: false,
    })
    .await
    .unwrap()
    .into_inner()
    .image
}

pub async fn remove(c: &mut ImageServiceClient<Channel>, image: &str) {
    c.remove_image(cri::RemoveImageRequest { image: spec(image) })
        .await
        .unwrap();
}

pub async fn list(c: &mut ImageServiceClient<Channel>) -> Vec<cri::Image> {
    c.list_images(cri::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images
}

/// A well-mixed random number for unique names (bridges, subnets, ids):
/// time, pid and a counter, so parallel tests in one process differ too.
pub fn random() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut x =
        nanos ^ (u64::from(std::process::id()) << 32) ^ c.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 33)
}

/// Runs a command to completion, capturing its output.
pub fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd).args(args).output().unwrap()
}

/// A loopback port nothing listens on (bound then released).
pub fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
