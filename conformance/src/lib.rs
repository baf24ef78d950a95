//! End-to-end checks and benchmark drivers that run berth beside the comparison runtimes.

pub mod client;
pub mod harness;
pub mod pod_bench;
pub mod pull_bench;
