//! berth-shim integration tests (root, real kernel): one binary.
#![allow(clippy::unwrap_used)]

mod containerd;
mod lifecycle;
mod pod_ns;
mod rss;
mod support;
