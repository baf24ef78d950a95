//! hosts.toml TLS settings against a TLS registry on loopback: a private CA
//! (`ca`), `skip_verify`, and client certificates (`client`) for mutual TLS.
//! The TLS registry serves the storage of a plain harness registry the
//! images were pushed to.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_test_images::Registry;

use crate::support::*;

fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl {args:?}");
}

/// CA, server cert for IP 127.0.0.1, client cert; all EC P-256.
fn make_pki(dir: &Path) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=berth-test-ca",
    ]);
    openssl(dir, &ca);
    for who in ["server", "client"] {
        let (key, csr, crt, ext) = (
            format!("{who}.key"),
            format!("{who}.csr"),
            format!("{who}.crt"),
            format!("{who}.ext"),
        );
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

struct TlsRegistry {
    child: Child,
    port: u16,
}

impl Drop for TlsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_tls_registry(dir: &Path, storage: &Path, mtls: bool) -> TlsRegistry {
    let port = dead_port();
    let mut yaml = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: berth-tls-test\n  tls:\n    certificate: {}\n    key: {}\n",
        storage.display(),
        dir.join("server.crt").display(),
        dir.join("server.key").display(),
    );
    if mtls {
        yaml.push_str(&format!(
            "    clientcas:\n      - {}\n",
            dir.join("ca.crt").display()
        ));
    }
    let cfg = dir.join(format!("registry-{port}.yml"));
    std::fs::write(&cfg, yaml).unwrap();
    let child = Command::new(berth_test_images::registry::REGISTRY_BIN)
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "TLS registry did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    TlsRegistry { child, port }
}

fn path(p: PathBuf) -> String {
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn ca_skip_verify_and_client_certificates() {
    let plain = Registry::start().unwrap();
    let img = build_image(&[&[("tls", b"tls")]], "", "amd64");
    push(&plain.host(), "sec/app", "v1", &img, None).await;
    let pki = tempfile::tempdir().unwrap();
    make_pki(pki.path());
    let tls = start_tls_registry(pki.path(), &plain.storage_dir(), false);
    let mtls = start_tls_registry(pki.path(), &plain.storage_dir(), true);
    let url = format!("https://127.0.0.1:{}", tls.port);
    let murl = format!("https://127.0.0.1:{}", mtls.port);
    let dirs = Dirs::new();
    // Unknown CA: refused.
    dirs.hosts_toml("untrusted.invalid", &format!("[host.\"{url}\"]\n"));
    // Unknown CA but skip_verify.
    dirs.hosts_toml(
        "skip.invalid",
        &format!("[host.\"{url}\"]\n  skip_verify = true\n"),
    );
    // The private CA (relative path: next to hosts.toml).
    std::fs::create_dir_all(dirs.hosts().join("ca.invalid")).unwrap();
    std::fs::copy(
        pki.path().join("ca.crt"),
        dirs.hosts().join("ca.invalid/ca.crt"),
    )
    .unwrap();
    dirs.hosts_toml(
        "ca.invalid",
        &format!("[host.\"{url}\"]\n  ca = \"ca.crt\"\n"),
    );
    // Mutual TLS without and with a client certificate.
    let ca = path(pki.path().join("ca.crt"));
    dirs.hosts_toml(
        "nocert.invalid",
        &format!("[host.\"{murl}\"]\n  ca = {ca:?}\n"),
    );
    dirs.hosts_toml(
        "mtls.invalid",
        &format!(
            "[host.\"{murl}\"]\n  ca = [{ca:?}]\n  client = [[{:?}, {:?}]]\n",
            path(pki.path().join("client.crt")),
            path(pki.path().join("client.key"))
        ),
    );
    let mut d = InProc::start(&dirs).await;
    let c = &mut d.images;
    let e = pull(c, "untrusted.invalid/sec/app:v1").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert_eq!(
        pull(c, "skip.invalid/sec/app:v1").await.unwrap(),
        img.config_digest
    );
    assert_eq!(
        pull(c, "ca.invalid/sec/app:v1").await.unwrap(),
        img.config_digest
    );
    assert!(pull(c, "nocert.invalid/sec/app:v1").await.is_err());
    assert_eq!(
        pull(c, "mtls.invalid/sec/app:v1").await.unwrap(),
        img.config_digest
    );
    let st = status(c, &img.config_digest).await.unwrap();
    assert_eq!(st.repo_tags.len(), 3);
    d.stop().await;
}
