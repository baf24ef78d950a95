//! Test fixtures: OCI images built from Debian packages, hostile layers, and a loopback registry harness

pub mod registry;

pub use registry::{Registry, RegistryError};
