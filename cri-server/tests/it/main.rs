//! End-to-end tests of berthd against Debian's docker-registry on loopback.
//! Only 127.0.0.1 is ever contacted: references to other hosts go through
//! hosts.toml files that list loopback mirrors only and no fallback server.

#![allow(clippy::unwrap_used)]

mod berth_containers;
mod berth_exec;
mod berth_images;
mod crash;
mod fixtures;
mod images;
mod mirrors;
mod network;
mod pods;
mod pods_env;
mod streaming;
mod support;
mod tls;
