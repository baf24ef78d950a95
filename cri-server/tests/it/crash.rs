//! berthd as a process: kill -9 during a pull, restart cleanup, two daemons
//! side by side, SIGTERM.

use berth_proto::cri;
use berth_proto::cri::image_service_client::ImageServiceClient;
use berth_proto::cri::runtime_service_client::RuntimeServiceClient;
use berth_test_images::Registry;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_pull_leaves_no_partial_image() {
    let reg = Registry::start().unwrap();
    let host = reg.host();
    // A large incompressible layer keeps the pull busy long enough to be
    // caught in the middle; a small one is committed first.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: Vec<u8> = (0..48_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let img = build_image(&[&[("small", b"s")], &[("big", &big)]], "", "amd64");
    push(&host, "heavy", "v1", &img, None).await;
    let dirs = Dirs::new();
    let mut daemon = ChildDaemon::start(&dirs);
    let mut c = ImageServiceClient::new(connect(&dirs.socket()).await);
    let r = format!("{host}/heavy:v1");
    let pulling = tokio::spawn(async move { pull(&mut c, &r).await });
    // Wait until a snapshot is being written, then kill.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if dirs.snapshot_dirs().1 > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pull never started writing"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    daemon.kill9();
    assert!(
        pulling.await.unwrap().is_err(),
        "the pull must not have completed"
    );
    assert!(
        dirs.snapshot_dirs().1 > 0,
        "leftover tmp dir expected after kill -9"
    );

    // Restart: leftovers are gone and no image is visible.
    let _daemon = ChildDaemon::start(&dirs);
    let mut c = ImageServiceClient::new(connect(&dirs.socket()).await);
    assert!(list(&mut c).await.is_empty());
    assert_eq!(dirs.snapshot_dirs(), (0, 0));
    assert_eq!(dirs.content_files(), 0);
    // And the pull now completes.
    assert_eq!(
        pull(&mut c, &format!("{host}/heavy:v1")).await.unwrap(),
        img.config_digest
    );
    assert_eq!(dirs.snapshot_dirs(), (2, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_daemons_side_by_side_and_sigterm() {
    let reg = Registry::start().unwrap();
    let host = reg.host();
    let img = build_image(&[&[("one", b"1")]], "", "amd64");
    push(&host, "solo", "v1", &img, None).await;
    let (d1, d2) = (Dirs::new(), Dirs::new());
    let mut a = ChildDaemon::start(&d1);
    let mut b = ChildDaemon::start(&d2);
    for dirs in [&d1, &d2] {
        let mut rt = RuntimeServiceClient::new(connect(&dirs.socket()).await);
        let v = rt
            .version(cri::VersionRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(v.runtime_name, "berth");
        assert_eq!(v.runtime_api_version, "v1");
        // Each daemon has its own (empty) pod and container tables.
        let listed = rt
            .list_containers(cri::ListContainersRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(listed.containers.is_empty());
    }
    let mut c1 = ImageServiceClient::new(connect(&d1.socket()).await);
    let mut c2 = ImageServiceClient::new(connect(&d2.socket()).await);
    pull(&mut c1, &format!("{host}/solo:v1")).await.unwrap();
    assert_eq!(list(&mut c1).await.len(), 1);
    assert!(list(&mut c2).await.is_empty());
    // Graceful stop removes the socket; the other keeps serving.
    assert!(a.term().success());
    assert!(!d1.socket().exists());
    assert!(list(&mut c2).await.is_empty());
    assert!(b.term().success());
}
