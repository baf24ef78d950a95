//! End-to-end checks and benchmark drivers that run berth beside the comparison runtimes.
//!
//! - [`harness`]: a fresh berthd per test binary (private root/state dirs,
//!   CNI bridge network with a FORWARD drop rule, loopback registry with the
//!   test images), cleaned up on drop or at process exit.
//! - [`client`]: a CRI v1 client over the Unix socket.
//! - `tests/*.rs`: the conformance suite (root; needs the workspace's
//!   binaries built first: `cargo build --workspace && cargo test -p berth-conformance`;
//!   `BERTH_BIN_DIR` points elsewhere, `BERTH_TEST_KEEP=1` keeps logs,
//!   `BERTH_TEST_LOG_LEVEL` sets berthd's log filter).
//! - [`pod_bench`] / `bench-pods`: pod lifecycle latency and idle-pod memory
//!   against containerd 1.6 + runc; [`pull_bench`] / `bench-pull`: cold pulls;
//!   [`cli_bench`] / `bench-cli`: `berth run --rm` against podman and crictl.

pub mod bench_cli;
pub mod cli_bench;
pub mod client;
pub mod harness;
pub mod interrupt;
pub mod pod_bench;
pub mod pull_bench;
pub mod streaming;
