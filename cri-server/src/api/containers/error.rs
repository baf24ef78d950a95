//! Errors of berth.v1 Containers, Volumes and System, and their gRPC codes.

use crate::pods::PodError;
use crate::store::StoreError;

use super::spec::SpecError;

/// What a berth.v1 request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No such container / volume / image (the message is Docker's).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed (including an ambiguous id prefix).
    #[error("{0}")]
    InvalidArgument(String),
    /// A name is taken.
    #[error("{0}")]
    Conflict(String),
    /// The object's state forbids the call; the message says what to do.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The spec cannot be translated.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The pod layer failed.
    #[error(transparent)]
    Pods(Box<PodError>),
    /// The metadata DB failed.
    #[error("metadata store")]
    Store(#[from] StoreError),
    /// A file operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was done.
        op: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A stored record could not be decoded.
    #[error("stored record of {id}: {reason}")]
    Corrupt {
        /// The container id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A blocking task failed.
    #[error("background task")]
    Task(#[from] tokio::task::JoinError),
    /// An Images service operation (image prune) failed.
    #[error(transparent)]
    Images(Box<crate::api::images::error::ImagesApiError>),
}

impl From<PodError> for ApiError {
    fn from(e: PodError) -> Self {
        ApiError::Pods(Box::new(e))
    }
}

impl ApiError {
    /// Builds an I/O error mapper.
    pub fn io(op: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ApiError {
        let path = path.to_path_buf();
        move |source| ApiError::Io { op, path, source }
    }

    /// Docker's "No such container" error.
    pub fn no_such_container(what: &str) -> ApiError {
        ApiError::NotFound(format!("No such container: {what}"))
    }
}

impl From<ApiError> for tonic::Status {
    fn from(err: ApiError) -> Self {
        let msg = crate::error::chain(&err);
        match err {
            ApiError::NotFound(_) => tonic::Status::not_found(msg),
            ApiError::InvalidArgument(_) | ApiError::Spec(_) => {
                tonic::Status::invalid_argument(msg)
            }
            ApiError::Conflict(_) => tonic::Status::already_exists(msg),
            ApiError::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            ApiError::Images(e) => tonic::Status::from(*e),
            // The CRI mapping of pod errors, message included.
            ApiError::Pods(p) => tonic::Status::from(crate::error::Error::Pods(p)),
            ApiError::Store(_)
            | ApiError::Io { .. }
            | ApiError::Corrupt { .. }
            | ApiError::Task(_) => tonic::Status::internal(msg),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes() {
        let s: tonic::Status = ApiError::no_such_container("web").into();
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "No such container: web");
        let s: tonic::Status = ApiError::from(PodError::FailedPrecondition("x".into())).into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        let s: tonic::Status = ApiError::Spec(SpecError::NoCommand).into();
        assert_eq!(s.code(), Code::InvalidArgument);
        let s: tonic::Status = ApiError::Conflict("taken".into()).into();
        assert_eq!(s.code(), Code::AlreadyExists);
    }
}
