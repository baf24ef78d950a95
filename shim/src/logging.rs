//! Logging set-up of the shim's processes (the server and its helpers).

use tracing_subscriber::filter::LevelFilter;

/// Logs to stderr (the pod's shim.log or containerd's log FIFO). Level
/// from `BERTH_SHIM_LOG` (error/warn/info/debug/trace), else `-debug`.
/// A plain level, not an env-filter: its regex engine would add resident
/// text to every shim.
pub fn init(debug: bool) {
    let _ = subscriber(debug).with_writer(std::io::stderr).try_init();
}

/// The helper's logging goes to a private copy of stderr (above the fds
/// 3-5 that carry the container's stdio): the process it clones replaces
/// fd 2 with the container's stderr while the runtime still logs its
/// set-up, and those lines belong in the shim's log, not the container's.
pub fn init_helper() {
    use std::os::fd::{AsFd, FromRawFd};
    let copy = nix::fcntl::fcntl(
        std::io::stderr().as_fd(),
        nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10),
    );
    match copy {
        Ok(fd) => {
            // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor we own.
            let file = unsafe { std::fs::File::from_raw_fd(fd) };
            let _ = subscriber(false)
                .with_writer(std::sync::Mutex::new(file))
                .try_init();
        }
        Err(_) => init(false),
    }
}

fn subscriber(
    debug: bool,
) -> tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format,
    LevelFilter,
> {
    let default = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let level = std::env::var("BERTH_SHIM_LOG")
        .ok()
        .and_then(|v| v.parse::<LevelFilter>().ok())
        .unwrap_or(default);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
}
