//! The process's argv, environment and working directory from the CRI
//! config and the image config, with the kubelet's precedence rules.

use berth_proto::cri::KeyValue;

use super::SpecBuildError;

/// PATH used when the image sets none (the value containerd and Docker use).
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// argv as the kubelet defines it: a CRI `command` replaces the image's
/// Entrypoint and drops its Cmd (unless `args` are given); `args` replace the
/// image's Cmd. An empty result is an error.
pub fn process_args(
    command: &[String],
    args: &[String],
    image_entrypoint: &[String],
    image_cmd: &[String],
) -> Result<Vec<String>, SpecBuildError> {
    let mut argv: Vec<String> = if command.is_empty() {
        image_entrypoint.to_vec()
    } else {
        command.to_vec()
    };
    if !args.is_empty() {
        argv.extend_from_slice(args);
    } else if command.is_empty() {
        argv.extend_from_slice(image_cmd);
    }
    if argv.is_empty() {
        return Err(SpecBuildError::NoCommand);
    }
    Ok(argv)
}

/// Sets `key=value` in `env`, replacing an earlier entry of the same key in
/// place so that the order stays stable.
fn set_env(env: &mut Vec<String>, entry: String) {
    let key = entry.split('=').next().unwrap_or("");
    match env
        .iter_mut()
        .find(|e| e.split('=').next().unwrap_or("") == key)
    {
        Some(slot) => *slot = entry,
        None => env.push(entry),
    }
}

/// The environment: a default PATH, HOSTNAME, the image's Env, TERM=xterm
/// for a tty, then the CRI envs, each later one overriding an earlier one
/// with the same key (containerd's order).
pub fn process_env(
    image_env: &[String],
    cri_envs: &[KeyValue],
    hostname: &str,
    tty: bool,
) -> Result<Vec<String>, SpecBuildError> {
    let mut env = vec![DEFAULT_PATH_ENV.to_string()];
    if !hostname.is_empty() {
        set_env(&mut env, format!("HOSTNAME={hostname}"));
    }
    for e in image_env {
        set_env(&mut env, e.clone());
    }
    if tty {
        set_env(&mut env, "TERM=xterm".to_string());
    }
    for kv in cri_envs {
        if kv.key.is_empty() || kv.key.contains('=') || kv.key.contains('\0') {
            return Err(SpecBuildError::InvalidEnv {
                key: kv.key.clone(),
            });
        }
        set_env(&mut env, format!("{}={}", kv.key, kv.value));
    }
    Ok(env)
}

/// The working directory: the CRI's, else the image's, else `/`. It must be
/// absolute, since it is resolved inside the rootfs.
pub fn working_dir(cri: &str, image: Option<&str>) -> Result<String, SpecBuildError> {
    let dir = [Some(cri), image]
        .into_iter()
        .flatten()
        .find(|d| !d.is_empty())
        .unwrap_or("/");
    if !dir.starts_with('/') {
        return Err(SpecBuildError::RelativeWorkingDir {
            dir: dir.to_string(),
        });
    }
    Ok(dir.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kubelet_command_args_table() {
        let ep = v(&["/ep"]);
        let cmd = v(&["cmd-a", "cmd-b"]);
        // (command, args, expected)
        let cases: &[(&[&str], &[&str], &[&str])] = &[
            (&[], &[], &["/ep", "cmd-a", "cmd-b"]),
            (&["/c"], &[], &["/c"]),
            (&[], &["x", "y"], &["/ep", "x", "y"]),
            (&["/c"], &["x"], &["/c", "x"]),
        ];
        for (command, args, want) in cases {
            let got = process_args(&v(command), &v(args), &ep, &cmd).unwrap();
            assert_eq!(got, v(want), "command={command:?} args={args:?}");
        }
        // No entrypoint: Cmd alone, or args alone.
        assert_eq!(process_args(&[], &[], &[], &cmd).unwrap(), cmd);
        assert_eq!(
            process_args(&[], &v(&["sh"]), &[], &cmd).unwrap(),
            v(&["sh"])
        );
    }

    #[test]
    fn nothing_to_run_is_an_error() {
        assert!(matches!(
            process_args(&[], &[], &[], &[]).unwrap_err(),
            SpecBuildError::NoCommand
        ));
    }

    #[test]
    fn env_override_order() {
        let image = v(&["PATH=/img/bin", "A=image", "B=keep"]);
        let cri = vec![
            KeyValue {
                key: "A".into(),
                value: "cri=with=equals".into(),
            },
            KeyValue {
                key: "C".into(),
                value: "".into(),
            },
        ];
        let env = process_env(&image, &cri, "pod-host", true).unwrap();
        assert_eq!(
            env,
            v(&[
                "PATH=/img/bin",
                "HOSTNAME=pod-host",
                "A=cri=with=equals",
                "B=keep",
                "TERM=xterm",
                "C="
            ])
        );
        let env = process_env(&[], &[], "", false).unwrap();
        assert_eq!(env, v(&[DEFAULT_PATH_ENV]));
        let bad = vec![KeyValue {
            key: "A=B".into(),
            value: "x".into(),
        }];
        assert!(process_env(&[], &bad, "", false).is_err());
    }

    #[test]
    fn working_dir_precedence() {
        assert_eq!(working_dir("/cri", Some("/img")).unwrap(), "/cri");
        assert_eq!(working_dir("", Some("/img")).unwrap(), "/img");
        assert_eq!(working_dir("", Some("")).unwrap(), "/");
        assert_eq!(working_dir("", None).unwrap(), "/");
        assert!(working_dir("rel", None).is_err());
    }
}
