//! Unit tests of [`Network`] with fake plugins (shell scripts) that log
//! what they were called with; the real plugins run in tests/it/network.rs.

use std::os::unix::fs::PermissionsExt;

use serde_json::json;

use super::*;

#[test]
fn cni_config_defaults_and_toml() {
    let c: CniConfig = toml::from_str("").unwrap();
    assert_eq!(c, CniConfig::default());
    assert_eq!(c.conf_dir, PathBuf::from("/etc/cni/net.d"));
    assert_eq!(
        c.bin_dirs,
        vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
    );
    let c: CniConfig = toml::from_str("conf_dir = \"/x\"\nbin_dirs = [\"/b\"]").unwrap();
    assert_eq!(c.conf_dir, PathBuf::from("/x"));
    assert_eq!(c.bin_dirs, vec![PathBuf::from("/b")]);
    assert!(toml::from_str::<CniConfig>("nope = 1").is_err());
}

#[test]
fn capabilities_skip_unmapped_ports() {
    let mut req = request(Path::new("/nonexistent"));
    req.port_mappings.push(PortMapping {
        host_port: 0,
        container_port: 81,
        protocol: "tcp".into(),
        host_ip: String::new(),
    });
    let caps = capabilities(&req);
    assert_eq!(
        caps["portMappings"],
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}])
    );
    assert!(caps.get("bandwidth").is_none());
}

fn request(netns: &Path) -> PodNetworkRequest {
    PodNetworkRequest {
        pod_id: "pod1".into(),
        namespace: "default".into(),
        name: "web".into(),
        uid: "uid-1".into(),
        netns: netns.to_path_buf(),
        port_mappings: vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: "127.0.0.1".into(),
        }],
        bandwidth: None,
    }
}

/// A fake plugin: appends "<name> <command> <netns> <stdin>" to the log,
/// and on ADD prints a result with an address of its own.
fn fake(dir: &Path, name: &str, addr: &str) {
    let script = format!(
        "#!/bin/sh\nin=$(cat)\nprintf '%s %s [%s] %s\\n' {name} \"$CNI_COMMAND\" \"$CNI_NETNS\" \"$in\" >> {log}\n\
         [ \"$CNI_COMMAND\" = ADD ] && printf '{{\"cniVersion\":\"1.0.0\",\"interfaces\":[{{\"name\":\"eth0\",\"sandbox\":\"%s\"}}],\"ips\":[{{\"address\":\"{addr}\",\"interface\":0}}]}}' \"$CNI_NETNS\"\nexit 0\n",
        log = dir.join("log").display()
    );
    let p = dir.join(name);
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn log_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn setup_dirs() -> (tempfile::TempDir, Network) {
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("conf");
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    fake(&bin, "first", "10.1.0.2/24");
    fake(&bin, "second", "10.1.0.3/24");
    std::fs::write(
        conf.join("10-t.conflist"),
        r#"{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"first"},
            {"type":"second","capabilities":{"portMappings":true}}]}"#,
    )
    .unwrap();
    let net = Network::new(
        CniConfig {
            conf_dir: conf,
            bin_dirs: vec![bin],
        },
        tmp.path().join("cache"),
    );
    (tmp, net)
}

#[tokio::test]
async fn add_chains_results_and_del_runs_in_reverse_with_cached_result() {
    let (tmp, net) = setup_dirs();
    let bin = tmp.path().join("bin");
    assert!(net.status().ready(), "{:?}", net.status().reason());
    let netns = tmp.path().join("ns");
    std::fs::write(&netns, "").unwrap();
    let req = request(&netns);
    let res = net.setup(&req).await.unwrap();
    // The last plugin's result is the pod's.
    assert_eq!(res.ips, vec!["10.1.0.3".parse::<IpAddr>().unwrap()]);
    assert_eq!(res.network, "t");
    let lines = log_lines(&bin);
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("first ADD"), "{}", lines[0]);
    assert!(!lines[0].contains("prevResult"));
    assert!(!lines[0].contains("runtimeConfig"));
    assert!(lines[1].starts_with("second ADD"));
    assert!(lines[1].contains(r#""prevResult":{"#) && lines[1].contains("10.1.0.2/24"));
    assert!(lines[1].contains(r#""runtimeConfig":{"portMappings""#));

    net.check(&req).await.unwrap();
    // The conf dir is emptied: DEL still uses the cached config.
    std::fs::remove_dir_all(tmp.path().join("conf")).unwrap();
    assert!(!net.status().ready());
    std::fs::remove_file(&netns).unwrap();
    net.teardown(&req).await.unwrap();
    let lines = log_lines(&bin);
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert!(lines[4].starts_with("second DEL [] "), "{}", lines[4]);
    assert!(lines[5].starts_with("first DEL [] "), "{}", lines[5]);
    assert!(
        lines[5].contains("10.1.0.3/24"),
        "DEL gets the final result"
    );
    // Second DEL: no cache and no config left: nothing to do, success.
    net.teardown(&req).await.unwrap();
    assert!(matches!(
        net.check(&req).await,
        Err(NetworkError::NotAttached(_))
    ));
}

#[tokio::test]
async fn failed_add_is_undone() {
    let (tmp, net) = setup_dirs();
    let bin = tmp.path().join("bin");
    std::fs::write(
        bin.join("second"),
        "#!/bin/sh\ncat >/dev/null\necho \"second $CNI_COMMAND\" >> \"$(dirname \"$0\")/log\"\n\
         [ \"$CNI_COMMAND\" = ADD ] && { echo '{\"code\":5,\"msg\":\"no\"}'; exit 1; }\nexit 0\n",
    )
    .unwrap();
    let req = request(Path::new("/nonexistent"));
    let err = net.setup(&req).await.unwrap_err();
    assert!(
        matches!(&err, NetworkError::Plugin { source, .. }
            if matches!(**source, PluginError::Cni { code: 5, .. })),
        "{err:?}"
    );
    let lines = log_lines(&bin);
    let cmds: Vec<String> = lines
        .iter()
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(cmds, ["first ADD", "second ADD", "second DEL", "first DEL"]);
    assert!(!net.cache_path("pod1").exists());
}

#[test]
fn status_reports_missing_plugins_and_config() {
    let (tmp, net) = setup_dirs();
    std::fs::remove_file(tmp.path().join("bin/second")).unwrap();
    let st = net.status();
    assert!(!st.ready());
    assert!(
        st.reason().unwrap().contains("\"second\" not found"),
        "{st:?}"
    );
    let net = Network::new(
        CniConfig {
            conf_dir: tmp.path().join("none"),
            bin_dirs: vec![],
        },
        tmp.path(),
    );
    assert_eq!(
        net.status().reason(),
        Some(
            format!(
                "no network config found in {}",
                tmp.path().join("none").display()
            )
            .as_str()
        )
    );
}
