//! Start-up shared by the benchmark binaries (`bench-pods`, `bench-pull`,
//! `bench-streaming`).

/// Logs to stderr (stdout carries the result tables), `RUST_LOG` or info.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,oci_client=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Whether this process runs as root (the drivers start daemons, mount
/// snapshots and make network namespaces).
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}
