//! ExecSync (output, exit codes, timeout, output cap), CRI log files
//! (format, long lines, both streams), ReopenContainerLog after a
//! rename, and the GetContainerEvents sequence.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use berth_conformance::client::container_config;
use berth_conformance::harness::EXEC_SYNC_MAX_OUTPUT;
use berth_proto::cri;
use common::*;
use tokio_stream::StreamExt;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_returns_output_and_exit_codes() {
    let (b, c) = berth();
    let p = sleeping_pod(&b, &c, "exec").await;
    let r = c
        .exec_sync(&p.ctr, &["sh", "-c", "echo out; echo err >&2; exit 7"], 10)
        .await
        .unwrap();
    assert_eq!(r.exit_code, 7);
    assert_eq!(r.stdout, b"out\n");
    assert_eq!(r.stderr, b"err\n");
    let r = c.exec_sync(&p.ctr, &["true"], 0).await.unwrap();
    assert_eq!((r.exit_code, r.stdout.len(), r.stderr.len()), (0, 0, 0));
    // Exec runs in the container: same root, same hostname.
    let r = c.exec_ok(&p.ctr, &["cat", "/etc/hostname"]).await.unwrap();
    assert_eq!(r.trim(), "exec");
    // A command that does not exist is an exit code (126/127) or an
    // error, not a hang.
    match c.exec_sync(&p.ctr, &["/no/such/binary"], 10).await {
        Ok(r) => assert_ne!(r.exit_code, 0),
        Err(s) => assert_ne!(s.code(), Code::Ok),
    }
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_timeout_is_deadline_exceeded() {
    let (b, c) = berth();
    let p = sleeping_pod(&b, &c, "exec-timeout").await;
    let marker = unique_seconds();
    let t = Instant::now();
    let r = c.exec_sync(&p.ctr, &["sleep", &marker], 1).await;
    let took = t.elapsed();
    assert_code(r, Code::DeadlineExceeded, "exec past its timeout");
    assert!(took < Duration::from_secs(6), "timeout of 1s took {took:?}");
    // The timed-out process is killed, not left behind.
    let gone = eventually(Duration::from_secs(5), || async {
        host_pid_with(&format!("sleep {marker}"))
            .is_none()
            .then_some(())
    })
    .await;
    assert!(gone.is_some(), "exec process survived its timeout");
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_output_is_capped() {
    let (b, c) = berth();
    let p = sleeping_pod(&b, &c, "exec-cap").await;
    let n = (EXEC_SYNC_MAX_OUTPUT * 4).to_string();
    let r = c
        .exec_sync(&p.ctr, &["head", "-c", &n, "/dev/zero"], 20)
        .await
        .unwrap();
    assert_eq!(r.exit_code, 0);
    assert_eq!(
        r.stdout.len(),
        EXEC_SYNC_MAX_OUTPUT,
        "stdout not capped at the configured size"
    );
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_negatives() {
    let (b, c) = berth();
    assert_code(
        c.exec_sync(
            "0000000000000000000000000000000000000000000000000000000000000bad",
            &["true"],
            5,
        )
        .await,
        Code::NotFound,
        "unknown container",
    );
    let p = pod_with(&b, &c, b.pod_config("exec-neg"), "done", &["true"]).await;
    c.wait_state(
        &p.ctr,
        ContainerState::ContainerExited,
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let r = c.exec_sync(&p.ctr, &["true"], 5).await;
    assert!(r.is_err(), "exec in an exited container: {r:?}");
    let s = c.exec_sync(&p.ctr, &[], 5).await.unwrap_err();
    assert!(
        matches!(s.code(), Code::InvalidArgument | Code::FailedPrecondition),
        "empty cmd: {s:?}"
    );
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_in_cri_format_with_both_streams_and_split_long_lines() {
    let (b, c) = berth();
    let script = "echo first; echo second >&2; printf 'no-newline-at-first'; sleep 0.2; echo ' then newline'; \
                  head -c 40000 /dev/zero | tr '\\0' x; echo; echo last";
    let p = pod_with(
        &b,
        &c,
        b.pod_config("logs"),
        "talker",
        &["sh", "-c", script],
    )
    .await;
    c.wait_state(
        &p.ctr,
        ContainerState::ContainerExited,
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let path = log_path(&p.config, "talker");
    let lines = parse_log(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let out = stream_lines(&lines, "stdout");
    let long = "x".repeat(40000);
    assert_eq!(
        out,
        vec![
            "first".to_string(),
            "no-newline-at-first then newline".to_string(),
            long,
            "last".to_string()
        ]
    );
    assert_eq!(stream_lines(&lines, "stderr"), vec!["second".to_string()]);
    // The 40000-byte line came in pieces: at least one P before its F.
    assert!(lines.iter().any(|l| l.tag == "P"), "no partial lines");
    let mut prev = chrono::DateTime::parse_from_rfc3339(&lines[0].time).unwrap();
    for l in &lines {
        let t = chrono::DateTime::parse_from_rfc3339(&l.time).unwrap();
        assert!(t >= prev, "timestamps go backwards: {l:?}");
        assert!(
            l.time.contains('.'),
            "timestamp without sub-second part: {}",
            l.time
        );
        prev = t;
    }
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_container_log_after_rename() {
    let (b, c) = berth();
    let script = "i=0; while :; do echo tick-$i; i=$((i+1)); sleep 0.1; done";
    let p = pod_with(
        &b,
        &c,
        b.pod_config("rotate"),
        "ticker",
        &["sh", "-c", script],
    )
    .await;
    let path = log_path(&p.config, "ticker");
    assert!(wait_log_line(&path, "stdout", "tick-3", Duration::from_secs(10)).await);
    let rotated = path.with_extension("log.1");
    std::fs::rename(&path, &rotated).unwrap();
    c.rt.clone()
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: p.ctr.clone(),
        })
        .await
        .unwrap();
    let fresh = eventually(Duration::from_secs(10), || async {
        let lines = parse_log(&path).ok()?;
        let out = stream_lines(&lines, "stdout");
        (out.len() >= 3).then_some(out)
    })
    .await
    .expect("no new log file after ReopenContainerLog");
    let first_new: u64 = fresh[0].trim_start_matches("tick-").parse().unwrap();
    let old = stream_lines(&parse_log(&rotated).unwrap(), "stdout");
    let last_old: u64 = old
        .last()
        .unwrap()
        .trim_start_matches("tick-")
        .parse()
        .unwrap();
    assert!(
        first_new > last_old,
        "new file repeats old lines: {last_old} then {first_new}"
    );

    // Unknown ids and stopped containers are refused.
    let r = c
        .rt
        .clone()
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: "0000000000000000000000000000000000000000000000000000000000000bad".into(),
        })
        .await;
    assert_code(r, Code::NotFound, "reopen unknown");
    c.stop(&p.ctr, 0).await.unwrap();
    let r =
        c.rt.clone()
            .reopen_container_log(cri::ReopenContainerLogRequest {
                container_id: p.ctr.clone(),
            })
            .await;
    assert!(r.is_err(), "reopen of a stopped container succeeded");
    c.cleanup_pod(&p.pod).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_events_come_in_lifecycle_order() {
    let (b, c) = berth();
    let mut stream =
        c.rt.clone()
            .get_container_events(cri::GetEventsRequest {})
            .await
            .unwrap()
            .into_inner();
    let pod_cfg = b.pod_config("events");
    let pod = c.run_pod(&pod_cfg).await.unwrap();
    let cfg = container_config("evented", &b.busybox(), &["sleep", "1000000"]);
    let id = c.create_started(&pod, &cfg, &pod_cfg).await.unwrap();
    c.stop(&id, 0).await.unwrap();
    c.remove(&id).await.unwrap();

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < 4 && Instant::now() < deadline {
        let next = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
        let Ok(Some(ev)) = next else { break };
        let ev = ev.unwrap();
        if ev.container_id != id {
            continue;
        }
        let status = ev
            .pod_sandbox_status
            .as_ref()
            .expect("event without pod status");
        assert_eq!(status.id, pod);
        assert!(ev.created_at > 0);
        seen.push(ev.container_event_type);
    }
    use cri::ContainerEventType as E;
    let want = [
        E::ContainerCreatedEvent,
        E::ContainerStartedEvent,
        E::ContainerStoppedEvent,
        E::ContainerDeletedEvent,
    ]
    .map(|e| e as i32)
    .to_vec();
    assert_eq!(seen, want, "events for {id}");
    c.cleanup_pod(&pod).await;
}
