//! berth-shim integration tests (root, real kernel): one binary.
#![allow(clippy::unwrap_used)]

mod lifecycle;
mod support;
