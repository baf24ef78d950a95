//! Task errors, by the ttrpc status code they map to.

use berth_runtime::container::ContainerError;

use crate::console::ConsoleError;
use crate::helper::HelperError;
use crate::rootfs::RootfsError;
use crate::sandbox::SandboxError;
use crate::stdio::StdioError;

/// Errors of task operations, by the status code they map to.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Unknown task or exec id.
    #[error("{0}: not found")]
    NotFound(String),
    /// Id already used.
    #[error("{0}: already exists")]
    AlreadyExists(String),
    /// Wrong state for the operation.
    #[error("{0}")]
    Precondition(String),
    /// Malformed request.
    #[error("{0}")]
    Invalid(String),
    /// A feature berth-shim does not have.
    #[error("{0}")]
    Unimplemented(String),
    /// A helper process could not be run.
    #[error("{id}: {source}")]
    Helper {
        /// Task id.
        id: String,
        /// Cause.
        #[source]
        source: HelperError,
    },
    /// The helper reported an internal failure.
    #[error("{id}: {message}")]
    Failed {
        /// Task id.
        id: String,
        /// Error chain from the helper.
        message: String,
    },
    /// stdio set-up.
    #[error("{id}: stdio: {source}")]
    Stdio {
        /// Task id.
        id: String,
        /// Cause.
        #[source]
        source: StdioError,
    },
    /// rootfs mount.
    #[error("{id}: {source}")]
    Rootfs {
        /// Task id.
        id: String,
        /// Cause.
        #[source]
        source: RootfsError,
    },
    /// The terminal of a process.
    #[error("{id}: {source}")]
    Console {
        /// Task id.
        id: String,
        /// Cause.
        #[source]
        source: ConsoleError,
    },
    /// The pod's namespaces.
    #[error("{id}: {source}")]
    Sandbox {
        /// Task id.
        id: String,
        /// Cause.
        #[source]
        source: SandboxError,
    },
    /// A berth-runtime operation.
    #[error("{id}: {source}")]
    Runtime {
        /// Task id.
        id: String,
        /// Cause.
        #[source]
        source: ContainerError,
    },
}

pub(crate) fn runtime_err(id: &str) -> impl FnOnce(ContainerError) -> TaskError + '_ {
    move |source| match source {
        ContainerError::NotRunning { .. } => {
            TaskError::NotFound(format!("{id}: process already finished"))
        }
        ContainerError::BadStatus { .. } => TaskError::Precondition(source.to_string()),
        ContainerError::Invalid(_) => TaskError::Invalid(source.to_string()),
        source => TaskError::Runtime {
            id: id.to_string(),
            source,
        },
    }
}
