//! Concurrency (issue 4 point 8): 20 clients running RunPodSandbox →
//! CreateContainer → StartContainer at once all succeed, without deadlock,
//! and the daemon keeps answering cheap RPCs while they run.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use berth_conformance::client::{container_config, Cri};
use berth_proto::cri;
use common::*;

const CLIENTS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_clients_start_pods() {
    let (b, _) = berth();
    let mut tasks = Vec::new();
    let start = Instant::now();
    for i in 0..CLIENTS {
        // One connection per client, as separate kubelets/crictls would have.
        let c = Cri::new(&b.fp.socket);
        let pod_cfg = b.pod_config(&format!("par-{i}"));
        let image = b.busybox();
        tasks.push(tokio::spawn(async move {
            let work = async {
                let pod = c.run_pod(&pod_cfg).await?;
                let cfg = container_config("c", &image, &["sleep", "1000000"]);
                let ctr = c.create_container(&pod, &cfg, &pod_cfg).await?;
                c.start(&ctr).await?;
                Ok::<_, tonic::Status>((pod, ctr))
            };
            tokio::time::timeout(Duration::from_secs(180), work).await
        }));
    }
    // While they run, Version and ListPodSandbox must not wait behind them.
    let probe = b.client();
    let mut slowest = Duration::ZERO;
    while !tasks.iter().all(|t| t.is_finished()) && start.elapsed() < Duration::from_secs(200) {
        let t = Instant::now();
        probe.version().await.unwrap();
        probe.list_pods(None).await.unwrap();
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(Ok(ids)) => ok.push(ids),
            Ok(Err(s)) => failed.push(format!("client {i}: {:?} {}", s.code(), s.message())),
            Err(_) => failed.push(format!("client {i}: timed out (deadlock?)")),
        }
    }
    let c = b.client();
    for (pod, ctr) in &ok {
        let st = c.container_status(ctr).await.unwrap();
        assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{ctr}");
        let ps = c.pod_status(pod, false).await.unwrap().status.unwrap();
        assert_eq!(ps.state, cri::PodSandboxState::SandboxReady as i32);
    }
    let mut ips: Vec<String> = Vec::new();
    for (pod, _) in &ok {
        ips.push(pod_ip(&c, pod).await);
    }
    ips.sort();
    ips.dedup();
    let took = start.elapsed();
    // Tear down in parallel too.
    let mut teardown = Vec::new();
    for (pod, _) in ok.clone() {
        let c = Cri::new(&b.fp.socket);
        teardown.push(tokio::spawn(async move {
            c.stop_pod(&pod).await?;
            c.remove_pod(&pod).await
        }));
    }
    let mut teardown_failed = Vec::new();
    for t in teardown {
        if let Err(s) = t.await.unwrap() {
            teardown_failed.push(format!("{:?} {}", s.code(), s.message()));
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {CLIENTS} failed: {failed:#?}",
        failed.len()
    );
    assert_eq!(ips.len(), CLIENTS, "pod IPs not distinct");
    assert!(teardown_failed.is_empty(), "{teardown_failed:#?}");
    assert!(
        slowest < Duration::from_secs(5),
        "Version/ListPodSandbox took {slowest:?} during the parallel starts"
    );
    eprintln!("{CLIENTS} pods + containers started in parallel in {took:?}");
}
