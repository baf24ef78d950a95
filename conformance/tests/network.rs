//! CNI networking: pod IPs from the test subnet, pods reaching each other
//! by IP, hostPort reachable on 127.0.0.1, loopback up in every pod, and
//! the network torn down with the pod.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use berth_conformance::client::container_config;
use berth_proto::cri;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_get_distinct_ips_and_ping_each_other() {
    let (b, c) = berth();
    let one = sleeping_pod(&b, &c, "ping-a").await;
    let two = sleeping_pod(&b, &c, "ping-b").await;
    let ip1 = pod_ip(&c, &one.pod).await;
    let ip2 = pod_ip(&c, &two.pod).await;
    assert!(!ip1.is_empty() && !ip2.is_empty(), "{ip1:?} {ip2:?}");
    assert_ne!(ip1, ip2);
    // The pod sees its own address on eth0.
    let addr = c.exec_ok(&one.ctr, &["ip", "-4", "addr"]).await.unwrap();
    assert!(addr.contains(&format!("{ip1}/")), "{addr}");
    for (from, to) in [(&one.ctr, &ip2), (&two.ctr, &ip1)] {
        let r = c
            .exec_sync(from, &["ping", "-c", "1", "-W", "3", to], 20)
            .await
            .unwrap();
        assert_eq!(
            r.exit_code,
            0,
            "ping {to}: {} {}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
    }
    c.cleanup_pod(&one.pod).await;
    c.cleanup_pod(&two.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_up_in_the_pod() {
    let (b, c) = berth();
    let p = sleeping_pod(&b, &c, "loopback").await;
    let r = c
        .exec_sync(&p.ctr, &["ping", "-c", "1", "-W", "2", "127.0.0.1"], 10)
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0, "{}", String::from_utf8_lossy(&r.stdout));
    c.cleanup_pod(&p.pod).await;
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// hostPort on 127.0.0.1 reaches the pod's server; a second pod reaches
/// it by pod IP; after the pod is removed the port is closed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_port_reaches_the_pod_from_127_0_0_1() {
    let (b, c) = berth();
    let port = free_port();
    let mut config = b.pod_config("hostport");
    config.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: i32::from(port),
        host_ip: String::new(),
    }];
    let token = format!("hello-{}", config.metadata.as_ref().unwrap().uid);
    let script =
        format!("mkdir -p /www && echo {token} > /www/index.html && exec httpd -f -p 8080 -h /www");
    let p = pod_with(&b, &c, config, "web", &["sh", "-c", &script]).await;
    let body = eventually(Duration::from_secs(15), || async {
        http_get(port).ok().filter(|b| b.contains(&token))
    })
    .await;
    assert!(body.is_some(), "no answer with {token} on 127.0.0.1:{port}");

    let ip = pod_ip(&c, &p.pod).await;
    let client = sleeping_pod(&b, &c, "hostport-client").await;
    let url = format!("http://{ip}:8080/index.html");
    let got = c
        .exec_ok(&client.ctr, &["wget", "-q", "-O", "-", &url])
        .await
        .unwrap();
    assert_eq!(got.trim(), token);

    c.cleanup_pod(&p.pod).await;
    c.cleanup_pod(&client.pod).await;
    let closed = eventually(Duration::from_secs(5), || async {
        http_get(port).is_err().then_some(())
    })
    .await;
    assert!(
        closed.is_some(),
        "127.0.0.1:{port} still answers after the pod is gone"
    );
}

/// Removing the pod releases its address (host-local lease gone) and its
/// veth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_pod_releases_its_ip() {
    let (b, c) = berth();
    let config = b.pod_config("release");
    let id = c.run_pod(&config).await.unwrap();
    let ip = pod_ip(&c, &id).await;
    let lease = b.net.ipam_dir.join(&b.net.bridge).join(&ip);
    assert!(lease.exists(), "no host-local lease {}", lease.display());
    c.stop_pod(&id).await.unwrap();
    assert!(
        !lease.exists(),
        "lease {} kept after StopPodSandbox",
        lease.display()
    );
    c.remove_pod(&id).await.unwrap();
}

/// A container with its own process but the pod's network: two
/// containers of one pod talk over localhost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_pod_share_localhost() {
    let (b, c) = berth();
    let p = pod_with(
        &b,
        &c,
        b.pod_config("localhost"),
        "server",
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo shared > /www/index.html && exec httpd -f -p 9090 -h /www",
        ],
    )
    .await;
    let client = c
        .create_started(
            &p.pod,
            &container_config("client", &b.busybox(), &["sleep", "1000000"]),
            &p.config,
        )
        .await
        .unwrap();
    let got = eventually(Duration::from_secs(10), || async {
        c.exec_ok(
            &client,
            &["wget", "-q", "-O", "-", "http://127.0.0.1:9090/index.html"],
        )
        .await
        .ok()
    })
    .await;
    assert_eq!(got.as_deref().map(str::trim), Some("shared"));
    c.cleanup_pod(&p.pod).await;
}
