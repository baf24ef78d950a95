//! The Exec/Attach/PortForward RPCs' domain side: validate the request as
//! the kubelet's streaming server does, then hand out a URL.

use berth_proto::cri;

use super::{StreamingError, StreamingService};
use crate::pods::{PodError, PodState};

/// What an exec changes in the container's process spec beyond the
/// command (Docker's `exec -e/-u/-w`; the CRI's Exec changes nothing else).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessOverrides {
    /// `KEY=VALUE`, replacing the same keys of the container's environment.
    pub env: Vec<String>,
    /// The user, resolved in the container's own files.
    pub user: Option<ExecUser>,
    /// Absolute working directory.
    pub cwd: Option<String>,
}

/// A resolved exec user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
}

/// A validated request waiting for its client.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamRequest {
    /// `/exec/<token>`
    Exec(cri::ExecRequest, ProcessOverrides),
    /// `/attach/<token>`
    Attach(cri::AttachRequest),
    /// `/portforward/<token>`
    PortForward(cri::PortForwardRequest),
}

impl StreamRequest {
    /// The URL path segment of this kind of request.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamRequest::Exec(..) => "exec",
            StreamRequest::Attach(_) => "attach",
            StreamRequest::PortForward(_) => "portforward",
        }
    }
}

/// The stream flags of an exec or attach: at least one stream, and no
/// stderr with a tty (a terminal has one output).
pub fn check_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<(), PodError> {
    if tty && stderr {
        return Err(PodError::InvalidArgument(
            "tty and stderr cannot both be true".into(),
        ));
    }
    if !stdin && !stdout && !stderr {
        return Err(PodError::InvalidArgument(
            "one of stdin, stdout, or stderr must be set".into(),
        ));
    }
    Ok(())
}

fn require(value: &str, field: &str) -> Result<(), PodError> {
    if value.is_empty() {
        return Err(PodError::InvalidArgument(format!("{field} is required")));
    }
    Ok(())
}

impl StreamingService {
    /// Exec: the URL of a streaming exec in a running container.
    pub async fn exec(&self, req: cri::ExecRequest) -> Result<String, StreamingError> {
        self.exec_with(req, ProcessOverrides::default()).await
    }

    /// Exec with process-spec changes (berth.v1 Exec).
    pub async fn exec_with(
        &self,
        req: cri::ExecRequest,
        overrides: ProcessOverrides,
    ) -> Result<String, StreamingError> {
        require(&req.container_id, "container_id")?;
        if req.cmd.is_empty() || req.cmd.iter().all(String::is_empty) {
            return Err(PodError::InvalidArgument("cmd is required".into()).into());
        }
        check_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
        self.pods.running_container_shim(&req.container_id).await?;
        self.url_for(StreamRequest::Exec(req, overrides))
    }

    /// Attach: the URL joining a running container's stdio.
    pub async fn attach(&self, req: cri::AttachRequest) -> Result<String, StreamingError> {
        require(&req.container_id, "container_id")?;
        check_streams(req.stdin, req.stdout, req.stderr, req.tty)?;
        let (c, _) = self.pods.running_container_shim(&req.container_id).await?;
        // The kubelet asks for the container's own tty setting; a mismatch
        // would mix up the framing of the output.
        let container_tty = c.config.tty;
        if req.tty && !container_tty {
            return Err(PodError::InvalidArgument(format!(
                "container {} has no tty; attach with tty=false",
                req.container_id
            ))
            .into());
        }
        self.url_for(StreamRequest::Attach(req))
    }

    /// PortForward: the URL forwarding into a ready pod's network namespace.
    pub async fn port_forward(
        &self,
        req: cri::PortForwardRequest,
    ) -> Result<String, StreamingError> {
        require(&req.pod_sandbox_id, "pod_sandbox_id")?;
        for p in &req.port {
            if !(1..=65535).contains(p) {
                return Err(PodError::InvalidArgument(format!("invalid port {p}")).into());
            }
        }
        let pod = self.pods.load_pod(&req.pod_sandbox_id).await?;
        if pod.rec.state != PodState::Ready {
            return Err(PodError::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                req.pod_sandbox_id
            ))
            .into());
        }
        self.url_for(StreamRequest::PortForward(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_flags_as_the_kubelet_checks_them() {
        assert!(check_streams(false, true, true, false).is_ok());
        assert!(check_streams(true, true, false, true).is_ok());
        assert!(matches!(
            check_streams(true, true, true, true),
            Err(PodError::InvalidArgument(m)) if m.contains("tty and stderr")
        ));
        assert!(matches!(
            check_streams(false, false, false, false),
            Err(PodError::InvalidArgument(_))
        ));
    }
}
