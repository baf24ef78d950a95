//! berth.v1 Exec (Docker's `exec -u/-e/-w`) and Stop with a signal
//! (`stop -s`) against a real berthd.

use std::time::{Duration, Instant};

use berth_proto::berth::v1 as api;
use berth_proto::berth::v1::containers_client::ContainersClient;
use berth_streaming::client::exec::{exec, ExecIo};
use berth_streaming::client::Transport;
use tokio::io::AsyncReadExt;
use tonic::transport::Channel;

use crate::pods_env::PodEnv;
use crate::support::connect;

async fn run_exec(
    c: &mut ContainersClient<Channel>,
    req: api::ExecRequest,
    transport: Transport,
) -> (i32, String) {
    let url = c.exec(req).await.unwrap().into_inner().url;
    let (w, mut r) = tokio::io::duplex(1 << 16);
    let reader = tokio::spawn(async move {
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        out
    });
    let status = exec(
        &url,
        transport,
        ExecIo {
            stdout: Some(Box::pin(w)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    (status.0, reader.await.unwrap())
}

fn req(container: &str, cmd: &[&str]) -> api::ExecRequest {
    api::ExecRequest {
        container: container.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdout: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_with_user_env_and_workdir_and_stop_with_a_signal() {
    let env = PodEnv::new().await;
    let mut c = ContainersClient::new(connect(&env.dirs.socket()).await);
    // A user that exists only in the container's /etc/passwd, written
    // after it started: exec resolves users in the container as it is now.
    let script = "echo 'tester:x:4242:4343::/tmp:/bin/sh' >> /etc/passwd; \
                  echo 'testers:x:4343:' >> /etc/group; \
                  echo 'extra:x:5000:tester' >> /etc/group; \
                  trap 'echo got-int; exit 3' INT; \
                  while true; do sleep 0.1; done";
    let created = c
        .create(api::CreateContainerRequest {
            spec: Some(api::ContainerSpec {
                image: env.image.clone(),
                name: "execer".into(),
                cmd: vec!["sh".into(), "-c".into(), script.into()],
                env: vec!["KEEP=1".into(), "A=old".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    c.start(api::ContainerRef {
        container: "execer".into(),
    })
    .await
    .unwrap();

    // The passwd line lands shortly after the start.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (code, out) = loop {
        let mut r = req(
            "execer",
            &["sh", "-c", "id -u; id -g; id -G; echo $A $KEEP $NEW; pwd"],
        );
        r.user = "tester".into();
        r.env = vec!["A=new".into(), "NEW=2".into()];
        r.working_dir = "/tmp".into();
        match c.exec(r.clone()).await {
            Ok(_) => break run_exec(&mut c, r, Transport::Spdy).await,
            Err(e) if e.code() == tonic::Code::InvalidArgument && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("exec: {e:?}"),
        }
    };
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "4242", "{out}");
    assert_eq!(lines[1], "4343", "{out}");
    assert!(lines[2].split(' ').any(|g| g == "5000"), "{out}");
    assert_eq!(lines[3], "new 1 2", "{out}");
    assert_eq!(lines[4], "/tmp", "{out}");

    // Numeric user:group need no passwd entry; WebSocket works the same.
    let mut r = req("execer", &["sh", "-c", "id -u; id -g; exit 7"]);
    r.user = "1234:5678".into();
    let (code, out) = run_exec(&mut c, r, Transport::WebSocket).await;
    assert_eq!((code, out.as_str()), (7, "1234\n5678\n"));

    // Bad requests say what is wrong.
    let mut r = req("execer", &["id"]);
    r.user = "nobody-here".into();
    let e = c.exec(r).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("nobody-here"), "{e:?}");
    let mut r = req("execer", &["id"]);
    r.env = vec!["NOEQUALS".into()];
    assert_eq!(
        c.exec(r).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
    let e = c.exec(req("no-such-container", &["id"])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);

    // stop -s INT: the trap answers, long before the 30 s timeout.
    let started = Instant::now();
    c.stop(api::StopContainerRequest {
        container: "execer".into(),
        timeout: 30,
        signal: "SIGINT".into(),
    })
    .await
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    let exit = c
        .wait(api::ContainerRef {
            container: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .exit_code;
    assert_eq!(exit, 3);
    let e = c
        .stop(api::StopContainerRequest {
            container: "execer".into(),
            timeout: 1,
            signal: "NOTASIGNAL".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // A stopped container cannot exec.
    let e = c.exec(req("execer", &["id"])).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    c.remove(api::RemoveContainerRequest {
        container: created.id,
        force: true,
        volumes: true,
    })
    .await
    .unwrap();
}
