//! The daemon's error type and its one mapping onto gRPC status codes.
//!
//! The kubelet and critest branch on the code, so NotFound, InvalidArgument,
//! FailedPrecondition and Unimplemented stay distinct.

use berth_image::pull::PullError;
use berth_image::reference::ReferenceError;
use berth_image::registry::RegistryError;

use crate::pods::PodError;
use crate::store::StoreError;

/// Everything a CRI request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request lacks a required field.
    #[error("{field} is required")]
    MissingField {
        /// The field.
        field: &'static str,
    },
    /// The image reference is malformed.
    #[error("invalid image reference")]
    Reference(#[from] ReferenceError),
    /// The AuthConfig cannot be used.
    #[error("invalid auth config")]
    Auth(#[source] RegistryError),
    /// The pull failed.
    #[error("pull failed")]
    Pull(#[source] Box<PullError>),
    /// The store failed.
    #[error("image store")]
    Store(#[from] StoreError),
    /// A blocking task failed to complete.
    #[error("background task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The RPC is not implemented yet.
    #[error("{rpc} is not implemented yet in berth")]
    Unimplemented {
        /// The RPC name.
        rpc: &'static str,
    },
    /// A pod or container operation failed (boxed: it is large).
    #[error(transparent)]
    Pods(Box<PodError>),
    /// The streaming server cannot take the request.
    #[error(transparent)]
    Streaming(Box<crate::streaming::StreamingError>),
}

impl From<crate::streaming::StreamingError> for Error {
    fn from(err: crate::streaming::StreamingError) -> Self {
        match err {
            crate::streaming::StreamingError::Pods(p) => Error::Pods(Box::new(p)),
            other => Error::Streaming(Box::new(other)),
        }
    }
}

impl From<PodError> for Error {
    fn from(err: PodError) -> Self {
        Error::Pods(Box::new(err))
    }
}

fn pod_code(err: &PodError) -> tonic::Code {
    use containerd_shim_protos::ttrpc::Code as T;
    use tonic::Code;
    match err {
        PodError::NotFound { .. } => Code::NotFound,
        PodError::AlreadyExists { .. } => Code::AlreadyExists,
        PodError::InvalidArgument(_) => Code::InvalidArgument,
        PodError::FailedPrecondition(_) => Code::FailedPrecondition,
        PodError::Timeout { .. } => Code::DeadlineExceeded,
        PodError::Spec(e) if e.is_invalid_argument() => Code::InvalidArgument,
        PodError::PodFiles(e) if e.is_invalid_argument() => Code::InvalidArgument,
        PodError::Shim { source, .. } => match source.code() {
            Some(T::NOT_FOUND) => Code::NotFound,
            Some(T::ALREADY_EXISTS) => Code::AlreadyExists,
            Some(T::INVALID_ARGUMENT) => Code::InvalidArgument,
            Some(T::FAILED_PRECONDITION) => Code::FailedPrecondition,
            Some(T::UNIMPLEMENTED) => Code::Unimplemented,
            Some(T::DEADLINE_EXCEEDED) => Code::DeadlineExceeded,
            _ if source.is_unreachable() => Code::Unavailable,
            _ => Code::Unknown,
        },
        _ => Code::Internal,
    }
}

impl From<PullError> for Error {
    fn from(err: PullError) -> Self {
        Error::Pull(Box::new(err))
    }
}

/// Renders an error with its whole `source()` chain, for status messages.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        let msg = chain(&err);
        match &err {
            Error::MissingField { .. } | Error::Reference(_) | Error::Auth(_) => {
                tonic::Status::invalid_argument(msg)
            }
            Error::Unimplemented { .. } => tonic::Status::unimplemented(msg),
            Error::Pull(p) => match p.as_ref() {
                PullError::NotFound { .. } => tonic::Status::not_found(msg),
                PullError::Hosts { .. } | PullError::NoEndpoint { .. } => {
                    tonic::Status::failed_precondition(msg)
                }
                PullError::Registry { source, .. } | PullError::Fetch { source, .. }
                    if matches!(source, RegistryError::Unauthorized { .. }) =>
                {
                    tonic::Status::permission_denied(msg)
                }
                PullError::Registry { .. } | PullError::Fetch { .. } => {
                    tonic::Status::unavailable(msg)
                }
                _ => tonic::Status::unknown(msg),
            },
            Error::Store(_) | Error::Task(_) => tonic::Status::internal(msg),
            Error::Pods(p) => tonic::Status::new(pod_code(p), msg),
            Error::Streaming(s) => match s.as_ref() {
                crate::streaming::StreamingError::TooManyRequests => {
                    tonic::Status::resource_exhausted(msg)
                }
                _ => tonic::Status::internal(msg),
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes_stay_distinct() {
        let s: tonic::Status = Error::MissingField { field: "image" }.into();
        assert_eq!(s.code(), Code::InvalidArgument);
        let s: tonic::Status = Error::Unimplemented {
            rpc: "RunPodSandbox",
        }
        .into();
        assert_eq!(s.code(), Code::Unimplemented);
        assert!(s
            .message()
            .starts_with("RunPodSandbox is not implemented yet"));
        let s: tonic::Status = Error::from(PodError::NotFound {
            kind: "container",
            id: "x".into(),
        })
        .into();
        assert_eq!(s.code(), Code::NotFound);
        let s: tonic::Status = Error::from(PodError::AlreadyExists {
            kind: "pod sandbox",
            name: "n".into(),
            existing: "i".into(),
        })
        .into();
        assert_eq!(s.code(), Code::AlreadyExists);
        let s: tonic::Status = Error::from(PodError::Timeout {
            what: "ExecSync",
            id: "x".into(),
        })
        .into();
        assert_eq!(s.code(), Code::DeadlineExceeded);
        let nf = PullError::NotFound {
            reference: "r".into(),
            source: RegistryError::NotFound { url: "u".into() },
        };
        let s: tonic::Status = Error::from(nf).into();
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains("u: not found"), "{}", s.message());
        let np = PullError::NoEndpoint {
            host: "h".into(),
            capability: "pull",
        };
        let s: tonic::Status = Error::from(np).into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        let r: tonic::Status = Error::Reference(ReferenceError::Empty {
            input: String::new(),
        })
        .into();
        assert_eq!(r.code(), Code::InvalidArgument);
    }
}
