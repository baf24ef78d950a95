//! berth.v1 Images against a real berthd and the loopback registry: pull
//! progress, tag, history, push and pull back on a clean store, save/load
//! round trips (OCI and docker-archive), prune, login, and commit of a
//! running container whose image then runs.

use std::io::Read;
use std::time::Duration;

use berth_proto::berth::v1 as api;
use berth_proto::berth::v1::images_client::ImagesClient;
use berth_proto::cri;
use berth_test_images::Registry;
use tonic::transport::Channel;

use crate::support::*;

async fn images(socket: &std::path::Path) -> ImagesClient<Channel> {
    ImagesClient::new(connect(socket).await)
}

/// Every message of a pull, or the error that ended it.
async fn pull_all(
    c: &mut ImagesClient<Channel>,
    image: &str,
) -> Result<Vec<api::pull_progress::Event>, tonic::Status> {
    let mut s = c
        .pull(api::PullRequest {
            image: image.to_string(),
            auth: None,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await? {
        out.push(m.event.unwrap());
    }
    Ok(out)
}

async fn push_all(
    c: &mut ImagesClient<Channel>,
    image: &str,
    target: &str,
) -> Result<Vec<api::push_progress::Event>, tonic::Status> {
    let mut s = c
        .push(api::PushRequest {
            image: image.to_string(),
            target: target.to_string(),
            auth: None,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await? {
        out.push(m.event.unwrap());
    }
    Ok(out)
}

async fn save(c: &mut ImagesClient<Channel>, images: &[&str]) -> Vec<u8> {
    let mut s = c
        .save(api::SaveRequest {
            images: images.iter().map(|s| s.to_string()).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await.unwrap() {
        out.extend_from_slice(&m.data);
    }
    out
}

async fn load(c: &mut ImagesClient<Channel>, bytes: Vec<u8>) -> Result<Vec<String>, tonic::Status> {
    let chunks: Vec<api::Chunk> = bytes
        .chunks(100_000)
        .map(|d| api::Chunk { data: d.to_vec() })
        .collect();
    c.load(tokio_stream::iter(chunks))
        .await
        .map(|r| r.into_inner().loaded)
}

fn phase(l: &api::LayerProgress) -> api::layer_progress::Phase {
    api::layer_progress::Phase::try_from(l.phase).unwrap()
}

/// The file `rel` in the top snapshot that has it.
fn image_file(d: &InProc, image: &str, rel: &str) -> Option<Vec<u8>> {
    let rec = d.manager.store().find_image(image).unwrap()?;
    rec.chain_ids.iter().rev().find_map(|c| {
        let p = d.manager.store().snapshot_path(c).unwrap()?;
        std::fs::read(p.join(rel)).ok()
    })
}

fn tar_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_progress_tag_history_push_and_pull_back() {
    let reg = Registry::start().unwrap();
    let host = reg.host();
    let img = build_image(
        &[
            &[("etc/base", b"base\n")],
            &[("app/data", &[7u8; 300_000][..])],
        ],
        "",
        "amd64",
    );
    push(&host, "app", "v1", &img, None).await;
    let dirs = Dirs::new();
    let mut d = InProc::start(&dirs).await;
    let mut c = images(&dirs.socket()).await;
    let reference = format!("{host}/app:v1");

    let events = pull_all(&mut c, &reference).await.unwrap();
    let api::pull_progress::Event::Layers(list) = &events[0] else {
        panic!("first message is not the layer list: {events:?}")
    };
    assert_eq!(list.layers.len(), 2);
    assert!(list
        .layers
        .iter()
        .all(|l| phase(l) == api::layer_progress::Phase::Waiting && l.total > 0));
    let api::pull_progress::Event::Done(done) = events.last().unwrap() else {
        panic!("last message is not done: {events:?}")
    };
    assert_eq!(done.image_id, img.config_digest);
    assert_eq!(done.reference, reference);
    assert_eq!(
        done.repo_digest,
        format!("{host}/app@{}", img.manifest_digest)
    );
    for l in &list.layers {
        let complete = events.iter().any(|e| {
            matches!(e, api::pull_progress::Event::Layer(p)
                if p.digest == l.digest && phase(p) == api::layer_progress::Phase::Complete && p.current == l.total)
        });
        assert!(complete, "no COMPLETE for {}: {events:?}", l.digest);
    }
    // Stored as the CRI stores a pull.
    let st = status(&mut d.images, &reference).await.unwrap();
    assert_eq!(st.id, img.config_digest);
    assert_eq!(st.repo_digests, vec![done.repo_digest.clone()]);
    // A second pull moves nothing.
    let again = pull_all(&mut c, &reference).await.unwrap();
    let api::pull_progress::Event::Layers(list2) = &again[0] else {
        panic!("{again:?}")
    };
    assert!(list2
        .layers
        .iter()
        .all(|l| phase(l) == api::layer_progress::Phase::Exists));
    // Missing and malformed references.
    let nf = pull_all(&mut c, &format!("{host}/app:nope"))
        .await
        .unwrap_err();
    assert_eq!(nf.code(), tonic::Code::NotFound, "{nf:?}");
    let bad = pull_all(&mut c, "Bad Name").await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    // Tag by short id prefix; bad target and missing source.
    let short = &img.config_digest["sha256:".len()..][..12];
    c.tag(api::TagRequest {
        source: short.to_string(),
        target: format!("{host}/app:v2"),
    })
    .await
    .unwrap();
    let st = status(&mut d.images, &format!("{host}/app:v2"))
        .await
        .unwrap();
    assert_eq!(st.id, img.config_digest);
    let e = c
        .tag(api::TagRequest {
            source: reference.clone(),
            target: "Bad Name".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = c
        .tag(api::TagRequest {
            source: "nothere:1".into(),
            target: "x:1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(
        e.message().contains("No such image: nothere:1"),
        "{}",
        e.message()
    );

    // History: one entry per layer (the config has no history), newest first.
    let h = c
        .history(api::HistoryRequest {
            image: reference.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(h.len(), 2);
    assert!(h[0].size >= 300_000, "{h:?}");
    assert!(h[1].size > 0 && h[1].size < 300_000, "{h:?}");

    // Push under another name, then pull it back on a clean store.
    let target = format!("{host}/copy:v1");
    let events = push_all(&mut c, &reference, &target).await.unwrap();
    assert!(matches!(&events[0], api::push_progress::Event::Layers(l) if l.layers.len() == 2));
    let api::push_progress::Event::Done(pushed) = events.last().unwrap() else {
        panic!("{events:?}")
    };
    assert_eq!(pushed.reference, target);
    assert!(pushed.digest.starts_with("sha256:") && pushed.size > 0);
    let uploaded = events
        .iter()
        .filter(|e| {
            matches!(e, api::push_progress::Event::Layer(p)
                if phase(p) == api::layer_progress::Phase::Complete)
        })
        .count();
    assert_eq!(uploaded, 2, "{events:?}");
    // Pushing again finds every layer in the registry.
    let again = push_all(&mut c, &reference, &target).await.unwrap();
    let exists = again
        .iter()
        .filter(|e| {
            matches!(e, api::push_progress::Event::Layer(p)
                if phase(p) == api::layer_progress::Phase::Exists)
        })
        .count();
    assert_eq!(exists, 2, "{again:?}");
    // An id alone names no repository.
    let e = push_all(&mut c, &img.config_digest, "").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    let dirs2 = Dirs::new();
    let d2 = InProc::start(&dirs2).await;
    let mut c2 = images(&dirs2.socket()).await;
    let events = pull_all(&mut c2, &target).await.unwrap();
    let api::pull_progress::Event::Done(back) = events.last().unwrap() else {
        panic!("{events:?}")
    };
    assert_eq!(back.repo_digest, format!("{host}/copy@{}", pushed.digest));
    assert_eq!(
        image_file(&d2, &target, "app/data").unwrap(),
        vec![7u8; 300_000]
    );
    assert_eq!(image_file(&d2, &target, "etc/base").unwrap(), b"base\n");
    d2.stop().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn save_load_round_trip_docker_archive_and_prune() {
    let reg = Registry::start().unwrap();
    let host = reg.host();
    let img = build_image(&[&[("srv/index.html", b"<h1>hi</h1>\n")]], "", "amd64");
    push(&host, "web", "1", &img, None).await;
    let dirs = Dirs::new();
    let d = InProc::start(&dirs).await;
    let mut c = images(&dirs.socket()).await;
    let reference = format!("{host}/web:1");
    pull_all(&mut c, &reference).await.unwrap();

    let archive = save(&mut c, &[&reference]).await;
    let entries = tar_entries(&archive);
    let index = entries.iter().find(|(n, _)| n == "index.json").unwrap();
    let index: serde_json::Value = serde_json::from_slice(&index.1).unwrap();
    let ann = &index["manifests"][0]["annotations"];
    assert_eq!(ann["org.opencontainers.image.ref.name"], "1");
    assert_eq!(ann["io.containerd.image.name"], reference.as_str());
    assert!(entries.iter().any(|(n, _)| n == "oci-layout"));
    // A missing image is NotFound before any byte is sent.
    let e = c
        .save(api::SaveRequest {
            images: vec!["nothere:1".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // Load on a clean store; saving from there gives the same archive
    // (loaded images keep their blobs and are exported byte for byte).
    let dirs2 = Dirs::new();
    let mut d2 = InProc::start(&dirs2).await;
    let mut c2 = images(&dirs2.socket()).await;
    let loaded = load(&mut c2, archive.clone()).await.unwrap();
    assert_eq!(loaded, vec![reference.clone()]);
    assert!(status(&mut d2.images, &reference).await.is_some());
    assert_eq!(
        image_file(&d2, &reference, "srv/index.html").unwrap(),
        b"<h1>hi</h1>\n"
    );
    assert_eq!(save(&mut c2, &[&reference]).await, archive);

    // docker-archive: uncompressed layer, RepoTags, and one without tags.
    let layer = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(6);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, "docker.txt", &b"docker"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let diff = sha256(&layer);
    let mk_config = |n: &str| {
        format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["{n}"]}},"rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
        )
    };
    let (cfg_a, cfg_b) = (mk_config("a"), mk_config("b"));
    let manifest = r#"[{"Config":"a.json","RepoTags":["dock:1"],"Layers":["l/layer.tar"]},{"Config":"b.json","RepoTags":null,"Layers":["l/layer.tar"]}]"#;
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("manifest.json", manifest.as_bytes()),
        ("a.json", cfg_a.as_bytes()),
        ("b.json", cfg_b.as_bytes()),
        ("l/layer.tar", &layer[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    }
    let loaded = load(&mut c2, b.into_inner().unwrap()).await.unwrap();
    let untagged = sha256(cfg_b.as_bytes());
    assert_eq!(
        loaded,
        vec!["docker.io/library/dock:1".to_string(), untagged.clone()]
    );
    assert_eq!(
        image_file(&d2, "dock:1", "docker.txt").unwrap(),
        b"docker".to_vec()
    );
    // Not an archive.
    let e = load(&mut c2, b"garbage".repeat(100)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    // Prune: the dangling one only, then everything unused.
    let pruned = c2
        .prune(api::ImagePruneRequest { all: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pruned.deleted, vec![untagged]);
    assert!(pruned.reclaimed_bytes > 0);
    assert_eq!(list(&mut d2.images).await.len(), 2);
    let pruned = c2
        .prune(api::ImagePruneRequest { all: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pruned.deleted.len(), 2);
    assert!(list(&mut d2.images).await.is_empty());
    assert_eq!(dirs2.snapshot_dirs(), (0, 0));
    d2.stop().await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_checks_credentials() {
    let reg = Registry::start_with_htpasswd("alice", "s3cret").unwrap();
    let dirs = Dirs::new();
    let d = InProc::start(&dirs).await;
    let mut c = images(&dirs.socket()).await;
    let login = |user: &str, pass: &str| api::LoginRequest {
        registry: reg.host(),
        auth: Some(api::RegistryAuth {
            username: user.into(),
            password: pass.into(),
            identity_token: String::new(),
        }),
    };
    let ok = c
        .login(login("alice", "s3cret"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.registry, reg.host());
    let bad = c.login(login("alice", "wrong")).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::Unauthenticated, "{bad:?}");
    let anon = c
        .login(api::LoginRequest {
            registry: reg.host(),
            auth: None,
        })
        .await
        .unwrap_err();
    assert_eq!(anon.code(), tonic::Code::Unauthenticated, "{anon:?}");

    // Pull and push with the request's credentials; a push without is refused.
    let host = reg.host();
    let img = build_image(&[&[("auth/file", b"secret\n")]], "", "amd64");
    push(&host, "private", "1", &img, Some(("alice", "s3cret"))).await;
    let auth = Some(api::RegistryAuth {
        username: "alice".into(),
        password: "s3cret".into(),
        identity_token: String::new(),
    });
    let mut s = c
        .pull(api::PullRequest {
            image: format!("{host}/private:1"),
            auth: auth.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    while s.message().await.unwrap().is_some() {}
    let denied = push_all(
        &mut c,
        &format!("{host}/private:1"),
        &format!("{host}/other:1"),
    )
    .await
    .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated, "{denied:?}");
    let mut s = c
        .push(api::PushRequest {
            image: format!("{host}/private:1"),
            target: format!("{host}/other:1"),
            auth,
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(m) = s.message().await.unwrap() {
        last = m.event;
    }
    assert!(
        matches!(last, Some(api::push_progress::Event::Done(_))),
        "{last:?}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_a_container_and_run_the_new_image() {
    use crate::pods_env::*;
    let env = PodEnv::new().await;
    let mut rt = env.rt().await;
    let mut c = images(&env.dirs.socket()).await;
    let pod_cfg = env.pod_config("commit");
    let pod = run_pod(&mut rt, &pod_cfg).await.unwrap();
    let src = start_container(
        &mut rt,
        &pod,
        env.container_config(
            "src",
            &[
                "sh",
                "-c",
                "echo committed > /data.txt; mkdir -p /www; echo page > /www/index.html; rm /etc/group; exec sleep 1000",
            ],
        ),
        &pod_cfg,
    )
    .await
    .unwrap();
    // Wait for the writes.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = exec(&mut rt, &src, &["cat", "/www/index.html"]).await;
        if r.exit_code == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "container did not write"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Unknown container and bad changes.
    let e = c
        .commit(api::CommitRequest {
            container: "nothere".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = c
        .commit(api::CommitRequest {
            container: src.clone(),
            changes: vec!["RUN true".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);

    let id = c
        .commit(api::CommitRequest {
            container: src[..12].to_string(),
            reference: "committed:v2".into(),
            message: "fun".into(),
            author: "tester".into(),
            changes: vec![
                r#"CMD ["cat", "/data.txt"]"#.into(),
                "ENV MODE=committed".into(),
            ],
            pause: true,
        })
        .await
        .unwrap()
        .into_inner()
        .image_id;
    assert!(id.starts_with("sha256:"));
    // Paused for the commit, running again after it.
    let r = exec(&mut rt, &src, &["echo", "alive"]).await;
    assert_eq!(r.stdout, b"alive\n", "{r:?}");
    let st = container_status(&mut rt, &src).await.unwrap();
    assert_eq!(st.state, cri::ContainerState::ContainerRunning as i32);
    let mut cri_images =
        cri::image_service_client::ImageServiceClient::new(connect(&env.dirs.socket()).await);
    let st = cri_images
        .image_status(cri::ImageStatusRequest {
            image: spec("committed:v2"),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.image.as_ref().unwrap().id, id);
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
    let cfg = &info["imageSpec"]["config"];
    assert_eq!(cfg["Cmd"], serde_json::json!(["cat", "/data.txt"]));
    assert!(cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "MODE=committed"));
    let h = c
        .history(api::HistoryRequest {
            image: "committed:v2".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(h[0].comment, "fun");
    assert!(h[0].created_by.contains("sleep 1000"), "{h:?}");
    assert!(h[0].size > 0);

    // A container of the new image sees the files, and not the deleted one.
    let mut cfg = env.container_config("copy", &["sleep", "1000"]);
    cfg.image = spec("committed:v2");
    let copy = start_container(&mut rt, &pod, cfg, &pod_cfg).await.unwrap();
    let r = exec(&mut rt, &copy, &["cat", "/data.txt", "/www/index.html"]).await;
    assert_eq!(r.stdout, b"committed\npage\n", "{r:?}");
    let r = exec(&mut rt, &copy, &["test", "-e", "/etc/group"]).await;
    assert_eq!(r.exit_code, 1, "/etc/group came back");
    let r = exec(&mut rt, &copy, &["sh", "-c", "echo $MODE"]).await;
    assert_eq!(r.stdout, b"committed\n");
    // An image in use is not pruned, even with `all`.
    let pruned = c
        .prune(api::ImagePruneRequest { all: true })
        .await
        .unwrap()
        .into_inner();
    assert!(!pruned.deleted.contains(&id), "{pruned:?}");

    // A berth container is committed by its name.
    let mut containers = berth_proto::berth::v1::containers_client::ContainersClient::new(
        connect(&env.dirs.socket()).await,
    );
    let named = containers
        .create(api::CreateContainerRequest {
            spec: Some(api::ContainerSpec {
                image: env.image.clone(),
                name: "cm-named".into(),
                cmd: ["sh", "-c", "echo named > /named.txt; exec sleep 1000"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    containers
        .start(api::ContainerRef {
            container: "cm-named".into(),
        })
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while exec(&mut rt, &named, &["cat", "/named.txt"])
        .await
        .exit_code
        != 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "berth container did not write"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.commit(api::CommitRequest {
        container: "cm-named".into(),
        reference: "committed:named".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut cfg = env.container_config("fromnamed", &["sleep", "1000"]);
    cfg.image = spec("committed:named");
    let from_named = start_container(&mut rt, &pod, cfg, &pod_cfg).await.unwrap();
    let r = exec(&mut rt, &from_named, &["cat", "/named.txt"]).await;
    assert_eq!(r.stdout, b"named\n", "{r:?}");
    containers
        .remove(api::RemoveContainerRequest {
            container: "cm-named".into(),
            force: true,
            volumes: true,
        })
        .await
        .unwrap();

    for ctr in [&src, &copy, &from_named] {
        rt.stop_container(cri::StopContainerRequest {
            container_id: ctr.to_string(),
            timeout: 0,
        })
        .await
        .unwrap();
    }
    stop_and_remove_pod(&mut rt, &pod).await;
}
