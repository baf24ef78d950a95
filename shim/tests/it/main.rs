//! berth-shim integration tests (root, real kernel): one binary.
#![allow(clippy::unwrap_used)]

mod containerd;
mod lifecycle;
mod rss;
mod support;
