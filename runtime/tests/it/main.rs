//! Integration tests: real containers from busybox-static bundles (root).
//!
//! Every test drives a runtime BINARY through runc's command line: by default
//! the crate's `berth-runtime`, or `$BERTH_IT_RUNTIME` (e.g. `/usr/sbin/runc`,
//! against which these tests were developed). Each test asserts from inside
//! the container what its process observes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod cgroups;
mod commands;
mod compare;
mod exec;
mod hooks;
mod idmap;
mod lifecycle;
mod mounts;
mod namespaces;
mod process;
mod security;
mod terminal;
mod tty_relay;
