//! berth-shim: the per-pod shim that owns a pod's namespaces and containers.
//!
//! One shim process serves containerd's shim v2 Task API (ttrpc) for one
//! pod: the sandbox task (the pod's namespaces, no pause image) and its
//! containers, made with the berth-runtime library in short-lived
//! single-threaded helper processes (`helper.rs`).

pub mod attach;
pub mod bundle;
pub mod console;
pub mod daemon;
pub mod events;
pub mod exit;
pub mod helper;
pub mod log_writer;
pub mod logging;
pub mod memory;
pub mod reaper;
pub mod rootfs;
pub mod sandbox;
pub mod service;
pub mod signals;
pub mod stats;
pub mod stdio;
pub mod task_api;
