//! Errors of the Images API and their gRPC codes.

use std::path::PathBuf;

use berth_image::archive::ArchiveError;
use berth_image::diff::DiffError;
use berth_image::hosts::HostsError;
use berth_image::layout::LayoutError;
use berth_image::push::PushError;
use berth_image::reference::ReferenceError;
use berth_image::registry::RegistryError;
use berth_image::unpack::UnpackError;

use crate::error::chain;
use crate::store::StoreError;

/// Why an Images request failed.
#[derive(Debug, thiserror::Error)]
pub enum ImagesApiError {
    /// No stored image matches.
    #[error(
        "No such image: {0} (pull it with `berth pull {0}`, or list images with `berth images`)"
    )]
    NoSuchImage(String),
    /// No container matches.
    #[error("No such container: {0} (list containers with `berth ps -a`)")]
    NoSuchContainer(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request cannot be served in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The registry refused the credentials.
    #[error("{registry}: unauthorized: incorrect username or password")]
    Unauthenticated {
        /// The registry.
        registry: String,
        /// The registry's answer.
        #[source]
        source: Box<RegistryError>,
    },
    /// A reference that does not parse.
    #[error("invalid reference format {input:?}")]
    Reference {
        /// What was given.
        input: String,
        /// The parse error.
        #[source]
        source: ReferenceError,
    },
    /// A daemon-level failure (pull, pods).
    #[error(transparent)]
    Daemon(#[from] crate::error::Error),
    /// The store failed.
    #[error("image store")]
    Store(#[from] StoreError),
    /// Archiving a container's or snapshot's files failed.
    #[error("archiving the files of {what}")]
    Diff {
        /// The container or layer.
        what: String,
        /// The cause.
        #[source]
        source: DiffError,
    },
    /// Unpacking a layer into a snapshot failed.
    #[error("unpacking layer {digest}")]
    Unpack {
        /// The layer.
        digest: String,
        /// The cause.
        #[source]
        source: UnpackError,
    },
    /// An archive could not be read or written.
    #[error("image archive")]
    Archive(#[from] ArchiveError),
    /// Writing an OCI layout failed.
    #[error("image layout")]
    Layout(#[from] LayoutError),
    /// Pushing failed.
    #[error("pushing {target}")]
    Push {
        /// The target reference.
        target: String,
        /// The cause.
        #[source]
        source: Box<PushError>,
    },
    /// Talking to a registry failed.
    #[error("registry {registry}")]
    Registry {
        /// The registry.
        registry: String,
        /// The cause.
        #[source]
        source: Box<RegistryError>,
    },
    /// hosts.toml of a registry is unusable.
    #[error("registry configuration of {host}")]
    Hosts {
        /// The registry host.
        host: String,
        /// The cause.
        #[source]
        source: HostsError,
    },
    /// A stored document is not valid JSON.
    #[error("invalid {what}")]
    Json {
        /// The document.
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A file operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task panicked.
    #[error("background task failed")]
    Task(#[from] tokio::task::JoinError),
}

impl From<crate::pods::PodError> for ImagesApiError {
    fn from(e: crate::pods::PodError) -> Self {
        ImagesApiError::Daemon(e.into())
    }
}

/// `|e| Io { op, path, e }` for `map_err`.
pub(crate) fn io_err(
    op: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> ImagesApiError {
    let path = path.to_path_buf();
    move |source| ImagesApiError::Io { op, path, source }
}

impl From<ImagesApiError> for tonic::Status {
    fn from(err: ImagesApiError) -> Self {
        use tonic::Status;
        let msg = chain(&err);
        match err {
            ImagesApiError::NoSuchImage(_) | ImagesApiError::NoSuchContainer(_) => {
                Status::not_found(msg)
            }
            ImagesApiError::InvalidArgument(_) | ImagesApiError::Reference { .. } => {
                Status::invalid_argument(msg)
            }
            ImagesApiError::FailedPrecondition(_) | ImagesApiError::Hosts { .. } => {
                Status::failed_precondition(msg)
            }
            ImagesApiError::Unauthenticated { .. } => Status::unauthenticated(msg),
            ImagesApiError::Daemon(e) => {
                let s = Status::from(e);
                Status::new(s.code(), msg)
            }
            ImagesApiError::Archive(ArchiveError::Format)
            | ImagesApiError::Archive(ArchiveError::Entry { .. })
            | ImagesApiError::Archive(ArchiveError::Json { .. })
            | ImagesApiError::Archive(ArchiveError::Invalid(_))
            | ImagesApiError::Archive(ArchiveError::Tar(_)) => Status::invalid_argument(msg),
            ImagesApiError::Unpack { .. } => Status::invalid_argument(msg),
            ImagesApiError::Registry { source, .. } => match *source {
                RegistryError::Unauthorized { .. } => Status::unauthenticated(msg),
                RegistryError::NotFound { .. } => Status::not_found(msg),
                _ => Status::unavailable(msg),
            },
            ImagesApiError::Push { source, .. } => match *source {
                ref e if e.is_unauthorized() => Status::unauthenticated(msg),
                PushError::Registry { .. } => Status::unavailable(msg),
                _ => Status::internal(msg),
            },
            _ => Status::internal(msg),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes_and_messages() {
        let s: tonic::Status = ImagesApiError::NoSuchImage("x".into()).into();
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().starts_with("No such image: x"));
        let s: tonic::Status = ImagesApiError::NoSuchContainer("c".into()).into();
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains("berth ps -a"));
        let s: tonic::Status = ImagesApiError::Unauthenticated {
            registry: "r".into(),
            source: Box::new(RegistryError::Unauthorized {
                url: "u".into(),
                status: 401,
            }),
        }
        .into();
        assert_eq!(s.code(), Code::Unauthenticated);
        let s: tonic::Status = ImagesApiError::Archive(ArchiveError::Format).into();
        assert_eq!(s.code(), Code::InvalidArgument);
    }
}
