//! `berth-shim`: containerd shim v2 for berth (also installed as
//! `containerd-shim-berth-v2`). It runs `berth-shim-helper`, installed
//! beside it, to create containers and processes.

use std::ffi::OsString;
use std::process::ExitCode;

use berth_shim::{daemon, helper, logging};

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let flags = match containerd_shim::parse(&argv[1..]) {
        Ok(f) => f,
        Err(err) => {
            eprintln!("berth-shim: {err}");
            return ExitCode::from(2);
        }
    };
    logging::init(flags.debug);
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
