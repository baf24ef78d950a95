//! berth.v1 Exec: Docker's `exec -e/-u/-w` on top of the CRI's streaming
//! exec. The user is resolved in the container's own /etc/passwd and
//! /etc/group as they are now (read through the running init's root with
//! openat2 RESOLVE_IN_ROOT), as `docker exec -u` does.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use berth_proto::berth::v1 as api;
use berth_proto::cri;
use berth_runtime::rootfs::safe_path::open_in_root;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::engine::Engine;
use super::error::ApiError;
use crate::container_spec::{resolve_user, UserDb};
use crate::pods::ContainerState;
use crate::streaming::requests::{ExecUser, ProcessOverrides};
use crate::streaming::{StreamingError, StreamingService};

/// Largest passwd/group file read.
const MAX_DB_FILE: u64 = 4 << 20;

/// Validates `r`, resolves its user and hands out the streaming URL.
pub async fn exec_url(
    engine: &Engine,
    streaming: &StreamingService,
    r: api::ExecRequest,
) -> Result<String, ApiError> {
    let overrides = overrides_of(&r)?;
    let rec = engine.resolve(&r.container).await?;
    let c = engine.pods().load_container(rec.id()).await?;
    if c.rec.state != ContainerState::Running {
        return Err(ApiError::FailedPrecondition(format!(
            "container {} is not running: start it first (berth start {})",
            rec.name(),
            rec.name()
        )));
    }
    let user = match r.user.as_str() {
        "" => None,
        spec => {
            let (pid, spec) = (c.rec.pid, spec.to_string());
            Some(tokio::task::spawn_blocking(move || resolve_exec_user(pid, &spec)).await??)
        }
    };
    let req = cri::ExecRequest {
        container_id: rec.id().to_string(),
        cmd: r.cmd,
        tty: r.tty,
        stdin: r.stdin,
        stdout: r.stdout,
        stderr: r.stderr,
    };
    streaming
        .exec_with(req, ProcessOverrides { user, ..overrides })
        .await
        .map_err(|e| match e {
            StreamingError::Pods(p) => ApiError::from(p),
            other => ApiError::FailedPrecondition(crate::error::chain(&other)),
        })
}

/// The env and working-dir changes of `r`, checked.
fn overrides_of(r: &api::ExecRequest) -> Result<ProcessOverrides, ApiError> {
    if r.cmd.is_empty() || r.cmd[0].is_empty() {
        return Err(ApiError::InvalidArgument("no command given to exec".into()));
    }
    for kv in &r.env {
        if !kv.contains('=') || kv.starts_with('=') {
            return Err(ApiError::InvalidArgument(format!(
                "environment entry {kv:?} is not KEY=VALUE"
            )));
        }
    }
    let cwd = match r.working_dir.as_str() {
        "" => None,
        d if d.starts_with('/') => Some(d.to_string()),
        d => {
            return Err(ApiError::InvalidArgument(format!(
                "the working directory {d:?} is not absolute"
            )))
        }
    };
    Ok(ProcessOverrides {
        env: r.env.clone(),
        user: None,
        cwd,
    })
}

/// Resolves `user[:group]` in the files of the container whose init is `pid`.
fn resolve_exec_user(pid: u32, spec: &str) -> Result<ExecUser, ApiError> {
    let root_path = format!("/proc/{pid}/root");
    let root = std::fs::File::open(&root_path).map_err(|source| ApiError::Io {
        op: "opening the root of",
        path: root_path.clone().into(),
        source,
    })?;
    let read = |name: &str| -> String {
        let Ok(fd) = open_in_root(
            root.as_fd(),
            Path::new(name),
            OFlag::O_RDONLY,
            Mode::empty(),
        ) else {
            return String::new();
        };
        let mut text = String::new();
        let _ = std::fs::File::from(fd)
            .take(MAX_DB_FILE)
            .read_to_string(&mut text);
        text
    };
    let db = UserDb::parse(&read("/etc/passwd"), &read("/etc/group"));
    let u = resolve_user(&db, None, spec).map_err(|e| {
        ApiError::InvalidArgument(format!(
            "unable to find user {spec}: {} (the user must exist in the container's /etc/passwd, or give a numeric uid)",
            crate::error::chain(&e)
        ))
    })?;
    Ok(ExecUser {
        uid: u.uid,
        gid: u.gid,
        additional_gids: u.additional_gids,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn req(env: &[&str], wd: &str) -> api::ExecRequest {
        api::ExecRequest {
            container: "c".into(),
            cmd: vec!["id".into()],
            env: env.iter().map(|s| s.to_string()).collect(),
            working_dir: wd.into(),
            ..Default::default()
        }
    }

    #[test]
    fn env_and_working_dir_are_checked() {
        let o = overrides_of(&req(&["A=1", "B="], "/tmp")).unwrap();
        assert_eq!(o.env, vec!["A=1", "B="]);
        assert_eq!(o.cwd.as_deref(), Some("/tmp"));
        assert!(overrides_of(&req(&["NOVALUE"], "")).is_err());
        assert!(overrides_of(&req(&["=x"], "")).is_err());
        assert!(overrides_of(&req(&[], "relative")).is_err());
        let mut empty = req(&[], "");
        empty.cmd.clear();
        assert!(overrides_of(&empty).is_err());
    }

    #[test]
    fn users_resolve_in_the_process_root() {
        // This process's own root: root exists in every passwd here.
        let pid = std::process::id();
        let u = resolve_exec_user(pid, "root").unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
        let n = resolve_exec_user(pid, "4321:4322").unwrap();
        assert_eq!((n.uid, n.gid), (4321, 4322));
        assert!(resolve_exec_user(pid, "no-such-user-berth").is_err());
    }
}
