//! The CLI's error type and how errors become exit codes and messages.

use std::sync::OnceLock;

use tonic::Code;

/// The daemon address, for messages about losing it mid-command.
static HOST: OnceLock<String> = OnceLock::new();

/// Remembers which daemon address this run talks to.
pub fn set_host(host: &str) {
    let _ = HOST.set(host.to_owned());
}

fn host() -> String {
    HOST.get().cloned().unwrap_or_default()
}

/// Errors with a meaning for the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The daemon could not be reached.
    #[error("Cannot connect to berthd at {host}: {reason}. Is berthd running? (start it with ./scripts/setup.sh or berthd)")]
    Connect {
        /// The address tried.
        host: String,
        /// Why it failed.
        reason: String,
    },
    /// The daemon refused or failed a request.
    #[error("Error response from daemon: {message}")]
    Daemon {
        /// The gRPC status code.
        code: Code,
        /// What the daemon said.
        message: String,
    },
    /// A bad flag or argument (exit 125).
    #[error("{0}")]
    Usage(String),
    /// The command could not be invoked (exit 126) or found (exit 127).
    #[error("{message}")]
    Invoke {
        /// 126 or 127.
        code: i32,
        /// What the daemon said.
        message: String,
    },
    /// End with this exit code and print nothing (a container's own code).
    #[error("exit status {0}")]
    Exit(i32),
}

impl CliError {
    /// From a gRPC status, with NotFound worded as docker words it when
    /// `what` names the object (`("container", "web")`).
    pub fn from_status(status: tonic::Status, what: Option<(&str, &str)>) -> CliError {
        match status.code() {
            Code::Unavailable | Code::Unknown if is_transport(&status) => CliError::Connect {
                host: host(),
                reason: transport_reason(&status),
            },
            Code::NotFound => CliError::Daemon {
                code: Code::NotFound,
                message: match what {
                    Some((kind, name)) if !status.message().contains("No such") => {
                        format!("No such {kind}: {name}")
                    }
                    _ => status.message().to_owned(),
                },
            },
            Code::Unimplemented => CliError::Daemon {
                code: Code::Unimplemented,
                message: format!(
                    "{} (this berthd does not implement it yet; upgrade berthd)",
                    status.message()
                ),
            },
            code => {
                let message = clean_message(status.message());
                match invoke_code(&message) {
                    Some(c) => CliError::Invoke {
                        code: c,
                        message: format!("Error response from daemon: {message}"),
                    },
                    None => CliError::Daemon { code, message },
                }
            }
        }
    }
}

/// 127 for a command that was not found, 126 for one that could not be
/// run (the daemon's start or exec failure says which).
pub fn invoke_code(message: &str) -> Option<i32> {
    let m = message.to_ascii_lowercase();
    let exec = m.contains("exec");
    if m.contains("executable file not found") || (exec && m.contains("no such file or directory"))
    {
        Some(127)
    } else if (exec && (m.contains("permission denied") || m.contains("eacces")))
        || m.contains("unable to find user")
    {
        Some(126)
    } else {
        None
    }
}

/// A daemon message without an embedded debug dump of a nested gRPC
/// status (`... rpc status: Status { code: INTERNAL, message: "x", ... }`
/// becomes `... x`).
pub fn clean_message(message: &str) -> String {
    let Some(start) = message.find("Status { code: ") else {
        return message.to_owned();
    };
    let rest = &message[start..];
    let Some(m) = rest.find("message: \"") else {
        return message.to_owned();
    };
    let body = &rest[m + "message: \"".len()..];
    let mut inner = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    inner.push(n);
                }
            }
            '"' => break,
            c => inner.push(c),
        }
    }
    let prefix = message[..start]
        .trim_end()
        .trim_end_matches("rpc status:")
        .trim_end();
    let prefix = prefix.trim_end_matches(':').trim_end();
    if prefix.is_empty() {
        inner
    } else {
        format!("{prefix}: {inner}")
    }
}

/// A failure of the connection itself (tonic attaches the transport
/// error as the source); a status the daemon sent has none.
fn is_transport(status: &tonic::Status) -> bool {
    use std::error::Error;
    status.source().is_some()
}

fn transport_reason(status: &tonic::Status) -> String {
    use std::error::Error;
    let mut reason = status.message().to_owned();
    let mut cur: Option<&dyn Error> = status.source();
    while let Some(e) = cur {
        reason = e.to_string();
        cur = e.source();
    }
    reason
}

/// Maps tonic results to [`CliError`].
pub trait DaemonResult<T> {
    /// Any failure as the daemon's.
    fn daemon(self) -> Result<T, CliError>;
    /// NotFound named after `kind`/`name` (docker's "No such container: x").
    fn no_such(self, kind: &str, name: &str) -> Result<T, CliError>;
}

impl<T> DaemonResult<T> for Result<tonic::Response<T>, tonic::Status> {
    fn daemon(self) -> Result<T, CliError> {
        self.map(tonic::Response::into_inner)
            .map_err(|s| CliError::from_status(s, None))
    }
    fn no_such(self, kind: &str, name: &str) -> Result<T, CliError> {
        self.map(tonic::Response::into_inner)
            .map_err(|s| CliError::from_status(s, Some((kind, name))))
    }
}

/// The exit code and message for an error of a command. `run_like`:
/// `run`/`create`, where every daemon or flag failure is 125.
pub fn exit_for(err: &anyhow::Error, run_like: bool) -> (i32, Option<String>) {
    let cli = err.chain().find_map(|e| e.downcast_ref::<CliError>());
    match cli {
        Some(CliError::Exit(code)) => (*code, None),
        Some(CliError::Invoke { code, message }) => (*code, Some(message.clone())),
        Some(CliError::Usage(m)) => (125, Some(format!("{m}\nSee 'berth --help'."))),
        Some(e @ CliError::Connect { .. }) => (if run_like { 125 } else { 1 }, Some(e.to_string())),
        Some(e @ CliError::Daemon { .. }) => {
            // Context added on top of a daemon error goes after it.
            let outer = err.to_string();
            let msg = if outer == e.to_string() {
                outer
            } else {
                format!("{e}\n({outer})")
            };
            (if run_like { 125 } else { 1 }, Some(msg))
        }
        None => (
            if run_like { 125 } else { 1 },
            Some(format!("Error: {err:#}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_is_worded_like_docker() {
        let e = CliError::from_status(
            tonic::Status::not_found("container web"),
            Some(("container", "web")),
        );
        assert_eq!(
            e.to_string(),
            "Error response from daemon: No such container: web"
        );
    }

    #[test]
    fn start_failures_map_to_126_and_127() {
        let e = CliError::from_status(
            tonic::Status::failed_precondition(
                "exec: \"nope\": executable file not found in $PATH",
            ),
            None,
        );
        assert!(matches!(e, CliError::Invoke { code: 127, .. }));
        let e = CliError::from_status(
            tonic::Status::failed_precondition("exec /etc: permission denied"),
            None,
        );
        assert!(matches!(e, CliError::Invoke { code: 126, .. }));
        let e = CliError::from_status(tonic::Status::internal("mount /x: permission denied"), None);
        assert!(matches!(e, CliError::Daemon { .. }));
        let e = CliError::from_status(
            tonic::Status::internal("init: exec /etc/passwd: EACCES: Permission denied"),
            None,
        );
        assert!(matches!(e, CliError::Invoke { code: 126, .. }));
        let e = CliError::from_status(tonic::Status::internal("boom"), None);
        assert!(matches!(e, CliError::Daemon { .. }));
    }

    #[test]
    fn nested_status_dumps_are_cleaned() {
        let m = r#"shim Create 57: rpc status: Status { code: INTERNAL, message: "57: exec: \"nope\": executable file not found in $PATH", details: [] }"#;
        assert_eq!(
            clean_message(m),
            "shim Create 57: 57: exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(clean_message("plain"), "plain");
        let e = CliError::from_status(tonic::Status::internal(m), None);
        assert!(matches!(e, CliError::Invoke { code: 127, .. }));
    }

    #[test]
    fn a_daemon_sent_unavailable_is_not_a_lost_connection() {
        let e = CliError::from_status(tonic::Status::unavailable("registry down"), None);
        assert!(matches!(e, CliError::Daemon { .. }), "{e}");
    }

    #[test]
    fn exit_codes() {
        let usage = anyhow::Error::new(CliError::Usage("bad -p".into()));
        assert_eq!(exit_for(&usage, false).0, 125);
        let daemon = anyhow::Error::new(CliError::Daemon {
            code: Code::Internal,
            message: "x".into(),
        });
        assert_eq!(exit_for(&daemon, true).0, 125);
        assert_eq!(exit_for(&daemon, false).0, 1);
        let exit = anyhow::Error::new(CliError::Exit(3));
        assert_eq!(exit_for(&exit, true), (3, None));
        let other = anyhow::anyhow!("local failure");
        assert_eq!(
            exit_for(&other, false),
            (1, Some("Error: local failure".into()))
        );
    }
}
