//! Running one CNI plugin binary: environment, stdin config, timeout, and
//! the spec's error object on failure.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use super::result::parse_error;

/// Errors running a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin binary is in none of the bin dirs.
    #[error("CNI plugin {plugin:?} not found in {dirs:?}")]
    NotFound {
        /// The plugin type.
        plugin: String,
        /// The dirs searched.
        dirs: Vec<PathBuf>,
    },
    /// The plugin could not be started or talked to.
    #[error("running CNI plugin {path}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The plugin did not finish in time (it is killed).
    #[error("CNI plugin {path} {command} timed out after {timeout:?}")]
    Timeout {
        /// The binary.
        path: PathBuf,
        /// ADD, DEL or CHECK.
        command: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// The plugin failed with a CNI error object.
    #[error("CNI plugin {plugin} {command} failed: code {code}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
    Cni {
        /// The plugin type.
        plugin: String,
        /// ADD, DEL or CHECK.
        command: &'static str,
        /// The spec's error code.
        code: u32,
        /// The message.
        msg: String,
        /// The details.
        details: String,
    },
    /// The plugin failed without a parseable error object.
    #[error("CNI plugin {plugin} {command} exited with {status}: {output}")]
    Failed {
        /// The plugin type.
        plugin: String,
        /// ADD, DEL or CHECK.
        command: &'static str,
        /// The exit status.
        status: std::process::ExitStatus,
        /// Its stdout and stderr, trimmed.
        output: String,
    },
}

/// The CNI operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach the container to the network.
    Add,
    /// Detach it.
    Del,
    /// Verify the attachment.
    Check,
}

impl Command {
    /// The value of `CNI_COMMAND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
        }
    }
}

/// Everything a plugin call needs besides the config.
#[derive(Debug, Clone)]
pub struct Invocation<'a> {
    /// The operation.
    pub command: Command,
    /// `CNI_CONTAINERID`: the pod sandbox id.
    pub container_id: &'a str,
    /// `CNI_NETNS`: empty on a DEL whose netns is gone (allowed by the spec).
    pub netns: &'a str,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
    /// `CNI_ARGS`.
    pub args: &'a str,
    /// The dirs searched for plugins, also passed as `CNI_PATH`.
    pub bin_dirs: &'a [PathBuf],
    /// Kill the plugin after this long.
    pub timeout: Duration,
}

/// Finds plugin `ty` in the first bin dir that has it.
pub fn find_plugin(bin_dirs: &[PathBuf], ty: &str) -> Result<PathBuf, PluginError> {
    bin_dirs
        .iter()
        .map(|d| d.join(ty))
        .find(|p| p.is_file())
        .ok_or_else(|| PluginError::NotFound {
            plugin: ty.to_string(),
            dirs: bin_dirs.to_vec(),
        })
}

/// Builds the `CNI_ARGS` value the kubelet's runtimes pass.
///
/// `IgnoreUnknown=1` comes first so plugins that do not know the K8S_ keys
/// do not fail. Values containing `;` or `=` would corrupt the list; pod names
/// and namespaces are DNS labels and ids are hex, so such values are dropped.
pub fn build_cni_args(namespace: &str, name: &str, infra_id: &str, uid: &str) -> String {
    let mut out = String::from("IgnoreUnknown=1");
    for (k, v) in [
        ("K8S_POD_NAMESPACE", namespace),
        ("K8S_POD_NAME", name),
        ("K8S_POD_INFRA_CONTAINER_ID", infra_id),
        ("K8S_POD_UID", uid),
    ] {
        if v.contains([';', '=']) {
            tracing::warn!(key = k, value = v, "CNI_ARGS value with ; or = dropped");
            continue;
        }
        out.push(';');
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Builds a plugin's stdin: its own config plus the list's `name` and
/// `cniVersion`, the previous result, and `runtimeConfig` holding only the
/// capabilities the plugin declares (as the spec's conventions require).
pub fn plugin_config(
    name: &str,
    cni_version: &str,
    plugin: &Map<String, Value>,
    prev_result: Option<&Value>,
    capabilities: &Map<String, Value>,
) -> Value {
    let mut conf = plugin.clone();
    conf.insert("name".into(), Value::String(name.into()));
    conf.insert("cniVersion".into(), Value::String(cni_version.into()));
    conf.remove("runtimeConfig");
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    let declared = plugin.get("capabilities").and_then(Value::as_object);
    let mut runtime = Map::new();
    if let Some(declared) = declared {
        for (cap, value) in capabilities {
            if declared.get(cap).and_then(Value::as_bool) == Some(true) {
                runtime.insert(cap.clone(), value.clone());
            }
        }
    }
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    Value::Object(conf)
}

/// Runs plugin `ty` once and returns its stdout on success.
pub async fn exec(inv: &Invocation<'_>, ty: &str, config: &Value) -> Result<Vec<u8>, PluginError> {
    let path = find_plugin(inv.bin_dirs, ty)?;
    let spawn_err = |source| PluginError::Spawn {
        path: path.clone(),
        source,
    };
    let cni_path = std::env::join_paths(inv.bin_dirs).map_err(|e| {
        spawn_err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            e.to_string(),
        ))
    })?;
    let stdin_bytes = serde_json::to_vec(config).map_err(|e| spawn_err(e.into()))?;
    let mut child = tokio::process::Command::new(&path)
        .env("CNI_COMMAND", inv.command.as_str())
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", cni_path)
        .current_dir(Path::new("/"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| spawn_err(std::io::ErrorKind::BrokenPipe.into()))?;
    let run = async move {
        // A plugin may exit without reading stdin; the write error is then
        // irrelevant, its exit status tells what happened.
        let _ = stdin.write_all(&stdin_bytes).await;
        drop(stdin);
        child.wait_with_output().await
    };
    let out = match tokio::time::timeout(inv.timeout, run).await {
        Ok(out) => out.map_err(spawn_err)?,
        Err(_) => {
            return Err(PluginError::Timeout {
                path,
                command: inv.command.as_str(),
                timeout: inv.timeout,
            })
        }
    };
    if out.status.success() {
        return Ok(out.stdout);
    }
    if let Some(err) = parse_error(&out.stdout) {
        return Err(PluginError::Cni {
            plugin: ty.to_string(),
            command: inv.command.as_str(),
            code: err.code,
            msg: err.msg,
            details: err.details,
        });
    }
    let output = format!(
        "{} {}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Err(PluginError::Failed {
        plugin: ty.to_string(),
        command: inv.command.as_str(),
        status: out.status,
        output: output.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn cni_args_are_built_in_order() {
        assert_eq!(
            build_cni_args("default", "web", "abc123", "u-1"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;\
             K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=u-1"
        );
        assert_eq!(
            build_cni_args("ns", "a;b=c", "id", "u"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_INFRA_CONTAINER_ID=id;K8S_POD_UID=u"
        );
    }

    #[test]
    fn plugin_config_injects_name_version_prev_and_declared_capabilities() {
        let plugin = json!({"type": "portmap", "capabilities": {"portMappings": true},
            "runtimeConfig": {"stale": 1}});
        let caps = json!({"portMappings": [{"hostPort": 80}], "bandwidth": {"ingressRate": 1}});
        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let conf = plugin_config(
            "net",
            "1.0.0",
            plugin.as_object().unwrap(),
            Some(&prev),
            caps.as_object().unwrap(),
        );
        assert_eq!(conf["name"], "net");
        assert_eq!(conf["cniVersion"], "1.0.0");
        assert_eq!(conf["prevResult"], prev);
        assert_eq!(
            conf["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 80}]})
        );
        let bridge = json!({"type": "bridge"});
        let conf = plugin_config(
            "net",
            "1.0.0",
            bridge.as_object().unwrap(),
            None,
            caps.as_object().unwrap(),
        );
        assert!(conf.get("runtimeConfig").is_none());
        assert!(conf.get("prevResult").is_none());
    }

    fn fake_plugin(dir: &Path, name: &str, script: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn inv(bin_dirs: &[PathBuf], timeout: Duration) -> Invocation<'_> {
        Invocation {
            command: Command::Add,
            container_id: "c1",
            netns: "/nonexistent",
            ifname: "eth0",
            args: "IgnoreUnknown=1",
            bin_dirs,
            timeout,
        }
    }

    #[tokio::test]
    async fn exec_passes_env_and_stdin_and_parses_errors() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = vec![dir.path().join("missing"), dir.path().to_path_buf()];
        fake_plugin(
            dir.path(),
            "echo",
            r#"read -r line; printf '{"cmd":"%s","id":"%s","if":"%s","path":"%s","in":%s}' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_IFNAME" "$CNI_PATH" "$line""#,
        );
        fake_plugin(
            dir.path(),
            "fail",
            r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"try again","details":"busy"}'; exit 1"#,
        );
        fake_plugin(dir.path(), "crash", "echo boom >&2; exit 2");
        fake_plugin(dir.path(), "slow", "exec sleep 10");
        let i = inv(&dirs, Duration::from_secs(5));
        let out = exec(&i, "echo", &json!({"k": 1})).await.unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["cmd"], "ADD");
        assert_eq!(v["id"], "c1");
        assert_eq!(v["if"], "eth0");
        assert_eq!(v["in"], json!({"k": 1}));
        assert_eq!(
            v["path"],
            format!("{}:{}", dirs[0].display(), dirs[1].display())
        );
        match exec(&i, "fail", &json!({})).await.unwrap_err() {
            PluginError::Cni {
                code, msg, details, ..
            } => assert_eq!(
                (code, msg.as_str(), details.as_str()),
                (11, "try again", "busy")
            ),
            e => panic!("unexpected {e}"),
        }
        let e = exec(&i, "crash", &json!({})).await.unwrap_err();
        assert!(e.to_string().contains("boom"), "{e}");
        assert!(matches!(
            exec(&i, "nope", &json!({})).await.unwrap_err(),
            PluginError::NotFound { .. }
        ));
        let i = inv(&dirs, Duration::from_millis(300));
        assert!(matches!(
            exec(&i, "slow", &json!({})).await.unwrap_err(),
            PluginError::Timeout { .. }
        ));
    }
}
