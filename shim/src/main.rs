//! `berth-shim`: containerd shim v2 for berth (also installed as
//! `containerd-shim-berth-v2`).

use std::ffi::OsString;
use std::process::ExitCode;

use berth_shim::{daemon, helper, sandbox};
use tracing_subscriber::filter::LevelFilter;

/// Logs to stderr (the pod's shim.log or containerd's log FIFO). Level
/// from `BERTH_SHIM_LOG` (error/warn/info/debug/trace), else `-debug`.
/// A plain level, not an env-filter: its regex engine would add resident
/// text to every shim.
fn init_logging(debug: bool) {
    let _ = subscriber(debug).with_writer(std::io::stderr).try_init();
}

/// The helper's logging goes to a private copy of stderr (above the fds
/// 3-5 that carry the container's stdio): the process it clones replaces
/// fd 2 with the container's stderr while the runtime still logs its
/// set-up, and those lines belong in the shim's log, not the container's.
fn init_helper_logging() {
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
        Err(_) => init_logging(false),
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

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // Hidden roles first, before containerd-shim parses anything.
    match argv.get(1).and_then(|a| a.to_str()) {
        Some(helper::HELPER_ARG) => {
            // What the cloned container process inherits: defaults only.
            berth_shim::signals::reset(&[nix::sys::signal::Signal::SIGPIPE]);
            init_helper_logging();
            return helper::main();
        }
        Some(sandbox::POD_INIT_ARG) => return sandbox::pod_init_main(),
        _ => {}
    }
    let flags = match containerd_shim::parse(&argv[1..]) {
        Ok(f) => f,
        Err(err) => {
            eprintln!("berth-shim: {err}");
            return ExitCode::from(2);
        }
    };
    init_logging(flags.debug);
    if flags.version {
        println!("berth-shim {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if flags.action == "start" {
        return match daemon::start(&flags) {
            Ok(address) => match daemon::print_address(&address) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("berth-shim: writing the address: {err}");
                    ExitCode::FAILURE
                }
            },
            Err(err) => {
                eprintln!("berth-shim: start: {}", helper::error_chain(&err));
                ExitCode::FAILURE
            }
        };
    }
    if flags.action.is_empty() && !flags.info {
        berth_shim::memory::tune_allocator();
        return match daemon::serve(&flags) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(err = %helper::error_chain(&err), "berth-shim server failed");
                ExitCode::FAILURE
            }
        };
    }
    // `delete` (and containerd's other one-shot actions).
    containerd_shim::run::<daemon::BerthShim>(daemon::RUNTIME_ID, Some(daemon::config()));
    ExitCode::SUCCESS
}
