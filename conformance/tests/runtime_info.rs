//! Version, Status, RuntimeConfig, UpdateRuntimeConfig, and the streaming
//! RPCs (Exec/Attach/PortForward) answering before the streaming issue.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use berth_proto::cri;
use common::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_names_berth_and_cri_v1() {
    let (_b, c) = berth();
    let v = c.version().await.unwrap();
    assert_eq!(v.runtime_name, "berth");
    assert_eq!(v.runtime_api_version, "v1");
    assert!(!v.runtime_version.is_empty());
    assert!(!v.version.is_empty());
}

fn condition<'a>(st: &'a cri::StatusResponse, kind: &str) -> &'a cri::RuntimeCondition {
    st.status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.r#type == kind)
        .unwrap_or_else(|| panic!("no {kind} condition in {st:?}"))
}

/// RuntimeReady and NetworkReady with a conflist; NetworkReady false with a
/// reason while the CNI directory is empty, back to ready when it returns.
/// One test on purpose: it moves the conflist away, nothing else in this
/// binary runs pods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_runtime_and_network_readiness() {
    let (b, c) = berth();
    let st = c.status(false).await.unwrap();
    assert!(condition(&st, "RuntimeReady").status, "{st:?}");
    assert!(condition(&st, "NetworkReady").status, "{st:?}");

    let conflist = b.cni_dir.join(format!("10-{}.conflist", b.net.bridge));
    let aside = b.fp.root.join("conflist.aside");
    std::fs::rename(&conflist, &aside).unwrap();
    let not_ready = eventually(Duration::from_secs(10), || async {
        let st = c.status(false).await.ok()?;
        let n = condition(&st, "NetworkReady").clone();
        (!n.status).then_some(n)
    })
    .await;
    std::fs::rename(&aside, &conflist).unwrap();
    let n = not_ready.expect("NetworkReady stayed true without a CNI config");
    assert!(
        !n.reason.is_empty(),
        "NetworkReady=false needs a reason: {n:?}"
    );
    assert!(condition(&c.status(false).await.unwrap(), "RuntimeReady").status);

    let back = eventually(Duration::from_secs(10), || async {
        let st = c.status(false).await.ok()?;
        condition(&st, "NetworkReady").status.then_some(())
    })
    .await;
    assert!(
        back.is_some(),
        "NetworkReady did not come back with the conflist"
    );
}

/// Features containerd 1.6 lacks and critest checks are advertised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_advertises_handler_features() {
    let (_b, c) = berth();
    let st = c.status(true).await.unwrap();
    assert!(!st.info.is_empty(), "verbose Status has no info");
    let default = st
        .runtime_handlers
        .iter()
        .find(|h| h.name.is_empty())
        .unwrap_or_else(|| panic!("no default runtime handler in {:?}", st.runtime_handlers));
    let f = default.features.unwrap();
    assert!(f.user_namespaces, "user namespaces not advertised");
    assert!(f.recursive_read_only_mounts, "rro mounts not advertised");
    assert!(
        st.features.unwrap().supplemental_groups_policy,
        "SupplementalGroupsPolicy not advertised"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_config_answers_the_cgroupfs_driver() {
    let (_b, c) = berth();
    let r =
        c.rt.clone()
            .runtime_config(cri::RuntimeConfigRequest {})
            .await
            .unwrap()
            .into_inner();
    let driver = r.linux.unwrap().cgroup_driver;
    assert_eq!(driver, cri::CgroupDriver::Cgroupfs as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_runtime_config_accepts_a_pod_cidr() {
    let (_b, c) = berth();
    let req = cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig {
                pod_cidr: "10.250.0.0/16".into(),
            }),
        }),
    };
    c.rt.clone().update_runtime_config(req).await.unwrap();
}

/// Exec/Attach/PortForward on unknown ids: `Unimplemented` before the
/// streaming issue, `NotFound` after it — never a URL or another error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_rpcs_refuse_unknown_ids() {
    let (_b, c) = berth();
    let mut rt = c.rt.clone();
    let check = |r: Result<String, tonic::Status>, what: &str| match r {
        Ok(url) => panic!("{what} on an unknown id answered {url:?}"),
        Err(s) => assert!(
            matches!(s.code(), Code::Unimplemented | Code::NotFound),
            "{what}: {s:?}"
        ),
    };
    let r = rt
        .exec(cri::ExecRequest {
            container_id: "nope".into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().url);
    check(r, "Exec");
    let r = rt
        .attach(cri::AttachRequest {
            container_id: "nope".into(),
            stdout: true,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().url);
    check(r, "Attach");
    let r = rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: "nope".into(),
            port: vec![80],
        })
        .await
        .map(|r| r.into_inner().url);
    check(r, "PortForward");
}
