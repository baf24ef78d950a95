//! berth-runtime: a Linux OCI runtime (runtime-spec 1.2) as a library.
//!
//! The library is synchronous and must be driven from a single-threaded
//! process: container set-up runs in a child created with `clone(2)` from
//! the calling process, and that child allocates, logs and takes locks.
//! Multi-threaded callers (the shim, berthd) call it from a single-threaded
//! fork server or from the `berth-runtime` binary.

pub mod caps;
pub mod cgroups;
pub mod container;
pub mod default_spec;
pub mod error;
pub mod features;
pub mod hooks;
pub mod lsm;
pub mod namespaces;
pub mod personality;
pub mod process;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod stored_spec;
pub mod sysctl;

pub use error::Error;
