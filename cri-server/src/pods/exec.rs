//! ExecSync: run a command in a running container through the shim's
//! `Exec`, collecting stdout and stderr from FIFOs up to a cap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::cri;
use tokio::io::AsyncReadExt;
use tracing::{debug, warn};

use super::sandbox::SIGKILL;
use super::{new_id, PodError, PodManager};

/// Output of one exec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    /// Collected stdout (at most the cap).
    pub stdout: Vec<u8>,
    /// Collected stderr (at most the cap).
    pub stderr: Vec<u8>,
    /// Exit code.
    pub exit_code: i32,
}

/// Reads `pipe` to EOF, keeping at most `cap` bytes (the rest is drained
/// so the writer never blocks).
async fn drain(mut pipe: tokio::net::unix::pipe::Receiver, cap: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                let room = cap.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    out
}

/// Makes an output FIFO, opened read-write until the shim holds its end.
fn fifo(path: &Path) -> Result<tokio::net::unix::pipe::Receiver, PodError> {
    super::fifo::create_placeholder_reader(path).map_err(PodError::io("creating exec FIFO", path))
}

/// The real read end of an output FIFO.
fn reader(path: &Path) -> Result<tokio::net::unix::pipe::Receiver, PodError> {
    super::fifo::reader(path).map_err(PodError::io("opening exec FIFO", path))
}

impl PodManager {
    /// ExecSync: runs `cmd` in container `id`; `timeout_secs` 0 = no limit.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_secs: i64,
    ) -> Result<ExecOutput, PodError> {
        if cmd.is_empty() {
            return Err(PodError::InvalidArgument("exec command is required".into()));
        }
        let (c, shim) = self.running_container_shim(id).await?;
        let mut process = c.rec.process.clone();
        if let Some(obj) = process.as_object_mut() {
            obj.insert("args".into(), serde_json::json!(cmd));
            obj.insert("terminal".into(), serde_json::Value::Bool(false));
            obj.remove("consoleSize");
        }
        let process_json = serde_json::to_vec(&process).map_err(|source| PodError::Json {
            id: id.to_string(),
            source,
        })?;
        let exec_id = new_id()?[..32].to_string();
        let dir: PathBuf = self
            .cfg
            .container_state_dir(id)
            .join(format!("exec-{exec_id}"));
        std::fs::create_dir_all(&dir).map_err(PodError::io("creating", &dir))?;
        let result = self
            .exec_in(
                &shim,
                &c.pod_id,
                id,
                &exec_id,
                &dir,
                process_json,
                timeout_secs,
            )
            .await;
        if let Err(e) = shim.delete(id, &exec_id).await {
            if !e.is_not_found() {
                debug!(container_id = %id, exec_id = %exec_id, error = %crate::error::chain(&e), "exec delete failed");
            }
        }
        if let Err(err) = std::fs::remove_dir_all(&dir) {
            warn!(?err, dir = %dir.display(), "cannot remove exec dir");
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn exec_in(
        &self,
        shim: &super::ShimClient,
        pod_id: &str,
        id: &str,
        exec_id: &str,
        dir: &Path,
        process_json: Vec<u8>,
        timeout_secs: i64,
    ) -> Result<ExecOutput, PodError> {
        let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
        let keep_out = fifo(&out_path)?;
        let keep_err = fifo(&err_path)?;
        let (out_s, err_s) = (
            out_path.to_string_lossy().into_owned(),
            err_path.to_string_lossy().into_owned(),
        );
        shim.exec(id, exec_id, process_json, &out_s, &err_s)
            .await
            .map_err(PodError::shim(pod_id))?;
        shim.start_task(id, exec_id)
            .await
            .map_err(PodError::shim(pod_id))?;
        // The shim holds the write ends now: readers see EOF when it closes.
        let cap = self.cfg.exec_sync_max_output;
        let out_task = tokio::spawn(drain(reader(&out_path)?, cap));
        let err_task = tokio::spawn(drain(reader(&err_path)?, cap));
        drop((keep_out, keep_err));
        let wait = shim.wait(
            id,
            exec_id,
            (timeout_secs > 0)
                .then(|| Duration::from_secs(u64::try_from(timeout_secs).unwrap_or(0))),
        );
        let exit = match wait.await {
            Ok(e) => e,
            Err(e) => {
                let _ = shim.kill(id, exec_id, SIGKILL, false).await;
                out_task.abort();
                err_task.abort();
                if timeout_secs > 0 {
                    debug!(container_id = %id, error = %crate::error::chain(&e), "exec timed out");
                    return Err(PodError::Timeout {
                        what: "ExecSync",
                        id: id.to_string(),
                    });
                }
                return Err(PodError::shim(pod_id)(e));
            }
        };
        // Output still in flight after the exit (a child kept the pipe):
        // give it a moment, then return what arrived.
        let grace = Duration::from_secs(2);
        let stdout = tokio::time::timeout(grace, out_task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let stderr = tokio::time::timeout(grace, err_task)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code: i32::try_from(exit.exit_status).unwrap_or(255),
        })
    }
}

impl From<ExecOutput> for cri::ExecSyncResponse {
    fn from(o: ExecOutput) -> Self {
        cri::ExecSyncResponse {
            stdout: o.stdout,
            stderr: o.stderr,
            exit_code: o.exit_code,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn output_is_capped_and_drained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let keep = fifo(&path).unwrap();
        let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let r = reader(&path).unwrap();
        drop(keep);
        let task = tokio::spawn(drain(r, 10));
        // More than a pipe buffer: the writer must not block on a full pipe.
        let big = vec![b'x'; 200_000];
        tokio::task::spawn_blocking(move || w.write_all(&big).unwrap())
            .await
            .unwrap();
        let out = task.await.unwrap();
        assert_eq!(out, vec![b'x'; 10]);
    }
}
