//! `berth-shim-helper`: the short-lived processes of a berth-shim (see
//! `helper.rs`) and the pod init. A binary of their own, so that the
//! long-lived per-pod server does not carry the container-creation code
//! (berth-runtime's create path, seccomp, the OCI spec's full parsers):
//! every page of the server's code is mapped once per pod.

use std::process::ExitCode;

use berth_shim::{helper, logging, sandbox};

fn main() -> ExitCode {
    match std::env::args_os()
        .nth(1)
        .as_deref()
        .and_then(|a| a.to_str())
    {
        Some(helper::HELPER_ARG) => {
            // What the cloned container process inherits: defaults only.
            berth_shim::signals::reset(&[nix::sys::signal::Signal::SIGPIPE]);
            logging::init_helper();
            helper::main()
        }
        Some(sandbox::POD_INIT_ARG) => sandbox::pod_init_main(),
        _ => {
            eprintln!(
                "berth-shim-helper: started by berth-shim only (first argument {} or {})",
                helper::HELPER_ARG,
                sandbox::POD_INIT_ARG
            );
            ExitCode::from(2)
        }
    }
}
