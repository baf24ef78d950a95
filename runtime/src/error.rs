//! The library's top-level error: one variant per stage, each wrapping that
//! stage's own typed error.

/// Any failure of the runtime library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A lifecycle operation (create, start, kill, delete, exec, ...).
    #[error(transparent)]
    Container(#[from] crate::container::ContainerError),
    /// Bundle configuration.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// State directory.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// Namespaces.
    #[error(transparent)]
    Namespace(#[from] crate::namespaces::NamespaceError),
    /// Cgroups.
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    /// Inside the container init or an exec child.
    #[error(transparent)]
    Init(#[from] crate::process::InitError),
}
