//! The project's own test images, built as OCI layouts from Debian's
//! `busybox-static` and hand-written files. Deterministic: building twice
//! gives the same digests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_image::layout::{
    BuiltLayer, Content, Descriptor, Format, ImageSpec, LayerCompression, Layout, LayoutError,
    Platform, TreeBuilder,
};

/// The busybox binary the fixtures package.
pub const BUSYBOX_BIN: &str = "/bin/busybox";

/// Applets linked next to busybox (only those the host binary provides).
pub const APPLETS: &[&str] = &[
    "[",
    "awk",
    "basename",
    "cat",
    "chmod",
    "chown",
    "cp",
    "cut",
    "date",
    "dd",
    "df",
    "dirname",
    "du",
    "echo",
    "env",
    "expr",
    "false",
    "find",
    "free",
    "grep",
    "head",
    "hostname",
    "httpd",
    "id",
    "ip",
    "kill",
    "ln",
    "ls",
    "md5sum",
    "mkdir",
    "mkfifo",
    "mknod",
    "mount",
    "mv",
    "nc",
    "nproc",
    "nslookup",
    "ping",
    "printf",
    "ps",
    "pwd",
    "readlink",
    "realpath",
    "rm",
    "rmdir",
    "sed",
    "seq",
    "sh",
    "sha256sum",
    "sleep",
    "sort",
    "stat",
    "tail",
    "tee",
    "test",
    "timeout",
    "top",
    "touch",
    "tr",
    "true",
    "umount",
    "uname",
    "uniq",
    "vi",
    "watch",
    "wc",
    "wget",
    "which",
    "whoami",
    "xargs",
    "yes",
];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
bin:x:2:2:bin:/bin:/bin/false\n\
sys:x:3:3:sys:/dev:/bin/false\n\
sync:x:4:100:sync:/bin:/bin/sync\n\
mail:x:8:8:mail:/var/spool/mail:/bin/false\n\
www-data:x:33:33:www-data:/var/www:/bin/false\n\
operator:x:37:37:Operator:/var:/bin/false\n\
nobody:x:65534:65534:nobody:/home:/bin/false\n";

const GROUP: &str = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\n\
disk:x:6:\nlp:x:7:\nmail:x:8:\nkmem:x:9:\nwheel:x:10:root\ncdrom:x:11:\ndialout:x:18:\n\
floppy:x:19:\nvideo:x:28:\naudio:x:29:\ntape:x:32:\nwww-data:x:33:\noperator:x:37:\n\
utmp:x:43:\nplugdev:x:46:\nstaff:x:50:\nlock:x:54:\nnetdev:x:82:\nusers:x:100:\n\
nogroup:x:65534:\n";

/// `PATH` of every fixture image.
pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Errors building fixtures.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// Writing the layout failed.
    #[error("building fixture {name}")]
    Layout {
        /// The fixture.
        name: &'static str,
        /// The layout error.
        #[source]
        source: LayoutError,
    },
    /// `busybox --list` could not be run.
    #[error("listing applets of {BUSYBOX_BIN} (is busybox-static installed?)")]
    Busybox(#[source] std::io::Error),
}

/// A built fixture image: a layout directory and the tag inside it.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Short name (`busybox`, `multilayer`, ...).
    pub name: &'static str,
    /// The layout directory.
    pub layout: PathBuf,
    /// The tag in the layout's `index.json`.
    pub tag: String,
    /// The top-level manifest (or index) descriptor.
    pub descriptor: Descriptor,
}

fn ctx(name: &'static str) -> impl Fn(LayoutError) -> FixtureError {
    move |source| FixtureError::Layout { name, source }
}

fn host_applets() -> Result<Vec<&'static str>, FixtureError> {
    let out = Command::new(BUSYBOX_BIN)
        .arg("--list")
        .output()
        .map_err(FixtureError::Busybox)?;
    let list = String::from_utf8_lossy(&out.stdout);
    let have: Vec<&str> = list.lines().collect();
    Ok(APPLETS
        .iter()
        .copied()
        .filter(|a| have.contains(a))
        .collect())
}

/// The busybox root filesystem tree (shared base layer of most fixtures).
pub fn busybox_tree() -> Result<TreeBuilder, FixtureError> {
    let mut t = TreeBuilder::new();
    for d in [
        "bin", "dev", "etc", "home", "lib", "usr", "usr/bin", "usr/sbin", "var",
    ] {
        t.dir(d, 0o755);
    }
    t.dir("root", 0o700)
        .dir("tmp", 0o1777)
        .dir("var/spool", 0o755)
        .dir("var/spool/mail", 0o755)
        .dir("var/www", 0o755)
        .file(
            "bin/busybox",
            Content::HostFile(PathBuf::from(BUSYBOX_BIN)),
            0o755,
        )
        .bytes("etc/passwd", PASSWD, 0o644)
        .bytes("etc/group", GROUP, 0o644);
    for a in host_applets()? {
        t.hardlink(&format!("bin/{a}"), "bin/busybox");
    }
    Ok(t)
}

fn busybox_layer(layout: &Layout) -> Result<BuiltLayer, FixtureError> {
    let mut w = layout
        .layer(LayerCompression::Gzip)
        .map_err(ctx("busybox"))?;
    busybox_tree()?.write_to(&mut w).map_err(ctx("busybox"))?;
    w.finish().map_err(ctx("busybox"))
}

fn tree_layer(
    layout: &Layout,
    name: &'static str,
    compression: LayerCompression,
    tree: &TreeBuilder,
) -> Result<BuiltLayer, FixtureError> {
    let mut w = layout.layer(compression).map_err(ctx(name))?;
    tree.write_to(&mut w).map_err(ctx(name))?;
    w.finish().map_err(ctx(name))
}

fn base_spec() -> ImageSpec {
    ImageSpec {
        env: vec![PATH_ENV.to_string()],
        cmd: Some(vec!["sh".to_string()]),
        ..Default::default()
    }
}

fn finish(
    name: &'static str,
    layout: &Layout,
    tag: &str,
    descriptor: Descriptor,
) -> Result<Fixture, FixtureError> {
    layout.tag(tag, &descriptor).map_err(ctx(name))?;
    Ok(Fixture {
        name,
        layout: layout.dir().to_path_buf(),
        tag: tag.to_string(),
        descriptor,
    })
}

/// busybox like the official image: `/bin/busybox` with hard-linked
/// applets, `/etc/passwd` and `/etc/group`, `Cmd ["sh"]`. Docker schema 2
/// media types (what Docker Hub serves for it).
pub fn busybox_layout(dir: &Path) -> Result<Fixture, FixtureError> {
    let layout = Layout::create(dir).map_err(ctx("busybox"))?;
    let layer = busybox_layer(&layout)?;
    let m = layout
        .write_image(&[layer], &base_spec(), Format::Docker)
        .map_err(ctx("busybox"))?;
    finish("busybox", &layout, "latest", m)
}

/// Three layers over busybox: layer 2 whites out `/data/gone` and makes
/// `/opaque` opaque (hiding `old1`, `old2`) while adding `opaque/new`;
/// layer 3 (zstd) adds `/data/added`. OCI media types.
///
/// Expected merged view: `/data/kept`, `/data/added`, `/opaque/new` exist;
/// `/data/gone`, `/opaque/old1`, `/opaque/old2` do not.
pub fn multilayer_whiteouts_layout(dir: &Path) -> Result<Fixture, FixtureError> {
    const N: &str = "multilayer";
    let layout = Layout::create(dir).map_err(ctx(N))?;
    let base = busybox_layer(&layout)?;
    let mut t1 = TreeBuilder::new();
    t1.dir("data", 0o755)
        .bytes("data/gone", "to be deleted\n", 0o644)
        .bytes("data/kept", "kept\n", 0o644)
        .dir("opaque", 0o755)
        .bytes("opaque/old1", "old\n", 0o644)
        .bytes("opaque/old2", "old\n", 0o644);
    let l1 = tree_layer(&layout, N, LayerCompression::Gzip, &t1)?;
    let mut t2 = TreeBuilder::new();
    t2.dir("data", 0o755)
        .bytes("data/.wh.gone", "", 0o644)
        .dir("opaque", 0o755)
        .bytes("opaque/.wh..wh..opq", "", 0o644)
        .bytes("opaque/new", "new\n", 0o644);
    let l2 = tree_layer(&layout, N, LayerCompression::Gzip, &t2)?;
    let mut t3 = TreeBuilder::new();
    t3.dir("data", 0o755).bytes("data/added", "added\n", 0o644);
    let l3 = tree_layer(&layout, N, LayerCompression::Zstd, &t3)?;
    let m = layout
        .write_image(&[base, l1, l2, l3], &base_spec(), Format::Oci)
        .map_err(ctx(N))?;
    finish(N, &layout, "latest", m)
}

/// Uid/gid of the `app` user in [`user_image_layout`].
pub const APP_UID: u32 = 1001;

/// busybox plus its own `/etc/passwd` and `/etc/group` with user `app`
/// (uid/gid 1001, home `/home/app` owned by it), `USER app`,
/// `WorkingDir /home/app`.
pub fn user_image_layout(dir: &Path) -> Result<Fixture, FixtureError> {
    const N: &str = "user";
    let layout = Layout::create(dir).map_err(ctx(N))?;
    let base = busybox_layer(&layout)?;
    let mut t = TreeBuilder::new();
    t.dir("etc", 0o755)
        .bytes(
            "etc/passwd",
            format!("{PASSWD}app:x:{APP_UID}:{APP_UID}:app:/home/app:/bin/sh\n"),
            0o644,
        )
        .bytes("etc/group", format!("{GROUP}app:x:{APP_UID}:\n"), 0o644)
        .dir("home", 0o755)
        .dir("home/app", 0o750)
        .owner("home/app", u64::from(APP_UID), u64::from(APP_UID))
        .bytes("home/app/.profile", "export APP=1\n", 0o644)
        .owner("home/app/.profile", u64::from(APP_UID), u64::from(APP_UID));
    let l = tree_layer(&layout, N, LayerCompression::Gzip, &t)?;
    let spec = ImageSpec {
        user: Some("app".to_string()),
        working_dir: Some("/home/app".to_string()),
        labels: BTreeMap::from([("org.berth.fixture".to_string(), "user".to_string())]),
        stop_signal: Some("SIGTERM".to_string()),
        exposed_ports: vec!["8080/tcp".to_string()],
        volumes: vec!["/data".to_string()],
        entrypoint: Some(vec!["/bin/sh".to_string(), "-c".to_string()]),
        cmd: Some(vec!["id".to_string()]),
        ..base_spec()
    };
    let m = layout
        .write_image(&[base, l], &spec, Format::Oci)
        .map_err(ctx(N))?;
    finish(N, &layout, "latest", m)
}

/// The platforms of [`multiarch_index_layout`], in index order.
pub const MULTIARCH_PLATFORMS: &[(&str, Option<&str>)] =
    &[("arm64", Some("v8")), ("arm", Some("v7")), ("amd64", None)];

/// An OCI index over linux/arm64/v8, linux/arm/v7 and linux/amd64 (amd64
/// deliberately last). Each image has busybox plus a layer with `/arch`
/// holding its architecture name, and the config label
/// `org.berth.arch=<arch>`, so configs (image ids) differ per platform.
pub fn multiarch_index_layout(dir: &Path) -> Result<Fixture, FixtureError> {
    const N: &str = "multiarch";
    let layout = Layout::create(dir).map_err(ctx(N))?;
    let base = busybox_layer(&layout)?;
    let mut children = Vec::new();
    for (arch, variant) in MULTIARCH_PLATFORMS {
        let mut t = TreeBuilder::new();
        t.bytes("arch", format!("{arch}\n"), 0o644);
        let l = tree_layer(&layout, N, LayerCompression::Gzip, &t)?;
        let spec = ImageSpec {
            architecture: Some(arch.to_string()),
            variant: variant.map(str::to_string),
            labels: BTreeMap::from([("org.berth.arch".to_string(), arch.to_string())]),
            ..base_spec()
        };
        let mut m = layout
            .write_image(&[base.clone(), l], &spec, Format::Oci)
            .map_err(ctx(N))?;
        m.platform = Some(Platform::linux(arch, *variant));
        children.push(m);
    }
    let idx = layout
        .write_index_blob(&children, Format::Oci)
        .map_err(ctx(N))?;
    finish(N, &layout, "latest", idx)
}

/// A 5-layer image of about `total_mib` MiB (half zeros, half noise) over
/// busybox, for pull benchmarks.
pub fn big_layout(dir: &Path, total_mib: u64) -> Result<Fixture, FixtureError> {
    const N: &str = "big";
    let layout = Layout::create(dir).map_err(ctx(N))?;
    let mut layers = vec![busybox_layer(&layout)?];
    let per = (total_mib << 20) / 4;
    for i in 0..4u64 {
        let mut t = TreeBuilder::new();
        t.dir("data", 0o755)
            .file(
                &format!("data/noise{i}"),
                Content::Generated {
                    len: per / 2,
                    seed: i + 1,
                    compressible: false,
                },
                0o644,
            )
            .file(
                &format!("data/zeros{i}"),
                Content::Generated {
                    len: per / 2,
                    seed: 0,
                    compressible: true,
                },
                0o644,
            );
        layers.push(tree_layer(&layout, N, LayerCompression::Gzip, &t)?);
    }
    let m = layout
        .write_image(&layers, &base_spec(), Format::Oci)
        .map_err(ctx(N))?;
    finish(N, &layout, "latest", m)
}
