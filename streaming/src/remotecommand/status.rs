//! What the error stream carries at the end of a session: nothing or a
//! text message before v4, a `metav1.Status` JSON object from v4 on (exit
//! codes travel as a `NonZeroExitCode` failure with an `ExitCode` cause).

use serde_json::json;

use super::Version;

/// How the command ended, as the backend saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandResult {
    /// Exited with code 0 (or attach ended normally).
    Success,
    /// Exited with a non-zero code.
    ExitCode(i32),
    /// The command could not run or the session failed.
    Error(String),
}

/// The error-stream payload for `result` (empty: write nothing).
pub fn encode(version: Version, result: &CommandResult) -> Vec<u8> {
    let code = match result {
        CommandResult::ExitCode(0) => None,
        CommandResult::ExitCode(c) => Some(*c),
        _ => None,
    };
    if !version.has_status() {
        return match (result, code) {
            (CommandResult::Error(msg), _) => msg.clone().into_bytes(),
            (_, Some(c)) => {
                format!("command terminated with non-zero exit code: exit status {c}").into_bytes()
            }
            _ => Vec::new(),
        };
    }
    let status = match (result, code) {
        (CommandResult::Error(msg), _) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("Internal error occurred: {msg}"),
            "reason": "InternalError",
            "details": {"causes": [{"message": msg}]},
            "code": 500,
        }),
        (_, Some(c)) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {c}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": c.to_string()}]},
        }),
        _ => json!({"metadata": {}, "status": "Success"}),
    };
    status.to_string().into_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(v: Vec<u8>) -> serde_json::Value {
        serde_json::from_slice(&v).unwrap()
    }

    #[test]
    fn v4_status_objects() {
        let ok = parse(encode(Version::V4, &CommandResult::Success));
        assert_eq!(ok["status"], "Success");
        let zero = parse(encode(Version::V5, &CommandResult::ExitCode(0)));
        assert_eq!(zero["status"], "Success");
        let failed = parse(encode(Version::V4, &CommandResult::ExitCode(42)));
        assert_eq!(failed["status"], "Failure");
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "42");
        let err = parse(encode(Version::V4, &CommandResult::Error("boom".into())));
        assert_eq!(err["status"], "Failure");
        assert_eq!(err["reason"], "InternalError");
        assert!(err["message"].as_str().unwrap().contains("boom"));
    }

    #[test]
    fn pre_v4_text() {
        assert!(encode(Version::V2, &CommandResult::Success).is_empty());
        assert!(encode(Version::V3, &CommandResult::ExitCode(0)).is_empty());
        let t = String::from_utf8(encode(Version::V1, &CommandResult::ExitCode(3))).unwrap();
        assert!(t.contains("exit status 3"), "{t}");
        assert_eq!(
            encode(Version::V2, &CommandResult::Error("no".into())),
            b"no".to_vec()
        );
    }
}
