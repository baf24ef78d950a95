//! `--change` instructions of a commit (`CMD ["x"]`, `ENV A=b`, ...)
//! applied to an image config, as Docker applies them.

use serde_json::{Map, Value};

/// A change that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// An instruction commit does not support.
    #[error("unknown instruction {0:?} in a change: supported are CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, VOLUME, STOPSIGNAL")]
    Unknown(String),
    /// The instruction's arguments are malformed.
    #[error("{instruction}: {reason}")]
    Syntax {
        /// The instruction.
        instruction: String,
        /// What is wrong.
        reason: String,
    },
}

fn syntax(instruction: &str, reason: impl Into<String>) -> ChangeError {
    ChangeError::Syntax {
        instruction: instruction.to_string(),
        reason: reason.into(),
    }
}

/// Splits on whitespace, honouring double and single quotes and
/// backslash escapes (Dockerfile word rules for ENV and LABEL).
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => match chars.next() {
                Some(n) => {
                    cur.push(n);
                    in_word = true;
                }
                None => return Err("trailing backslash".into()),
            },
            (Some(_), c) => cur.push(c),
            (None, '"') | (None, '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `KEY=value ...` pairs, or the legacy `KEY value with spaces` form.
fn pairs(instruction: &str, rest: &str) -> Result<Vec<(String, String)>, ChangeError> {
    let ws = words(rest).map_err(|r| syntax(instruction, r))?;
    let Some(first) = ws.first() else {
        return Err(syntax(instruction, "needs at least one KEY=value"));
    };
    if !first.contains('=') {
        let value = rest.trim_start()[first.len()..].trim().to_string();
        let value = words(&value).map_err(|r| syntax(instruction, r))?.join(" ");
        return Ok(vec![(first.clone(), value)]);
    }
    ws.into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(syntax(instruction, format!("{w:?} is not KEY=value"))),
        })
        .collect()
}

/// JSON form (`["a", "b"]`) or shell form (wrapped in `/bin/sh -c`).
fn command(instruction: &str, rest: &str) -> Result<Vec<String>, ChangeError> {
    let t = rest.trim();
    if t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Vec<String>>(t) {
            return Ok(v);
        }
    }
    if t.is_empty() {
        return Err(syntax(instruction, "needs a command"));
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), t.to_string()])
}

fn set_map_key(cfg: &mut Map<String, Value>, field: &str, key: String, value: Value) {
    let entry = cfg
        .entry(field.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Some(m) = entry.as_object_mut() {
        m.insert(key, value);
    }
}

/// The instructions a commit applies.
const INSTRUCTIONS: &[&str] = &[
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "WORKDIR",
    "USER",
    "EXPOSE",
    "LABEL",
    "VOLUME",
    "STOPSIGNAL",
];

/// Applies one instruction to the `config` object of an image config.
pub fn apply_change(cfg: &mut Map<String, Value>, change: &str) -> Result<(), ChangeError> {
    let change = change.trim();
    let (mut word, mut rest) = change
        .split_once(|c: char| c.is_whitespace())
        .unwrap_or((change, ""));
    // `CMD=["x"]` (as `-c CMD=...` is often written) means `CMD ["x"]`.
    if let Some((head, tail)) = change.split_once('=') {
        if INSTRUCTIONS.contains(&head.to_ascii_uppercase().as_str()) {
            (word, rest) = (head, tail);
        }
    }
    let instruction = word.to_ascii_uppercase();
    let rest = rest.trim();
    let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    match instruction.as_str() {
        "CMD" => {
            cfg.insert("Cmd".into(), strings(command(&instruction, rest)?));
        }
        "ENTRYPOINT" => {
            cfg.insert("Entrypoint".into(), strings(command(&instruction, rest)?));
        }
        "ENV" => {
            let mut env: Vec<String> = cfg
                .get("Env")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            for (k, v) in pairs(&instruction, rest)? {
                let prefix = format!("{k}=");
                env.retain(|e| !e.starts_with(&prefix) && e != &k);
                env.push(format!("{k}={v}"));
            }
            cfg.insert("Env".into(), strings(env));
        }
        "LABEL" => {
            for (k, v) in pairs(&instruction, rest)? {
                set_map_key(cfg, "Labels", k, Value::String(v));
            }
        }
        "WORKDIR" => {
            let dir = words(rest).map_err(|r| syntax(&instruction, r))?.join(" ");
            if dir.is_empty() {
                return Err(syntax(&instruction, "needs a directory"));
            }
            let dir = if dir.starts_with('/') {
                dir
            } else {
                let base = cfg.get("WorkingDir").and_then(Value::as_str).unwrap_or("/");
                format!("{}/{dir}", base.trim_end_matches('/'))
            };
            cfg.insert("WorkingDir".into(), Value::String(dir));
        }
        "USER" | "STOPSIGNAL" => {
            if rest.is_empty() || rest.split_whitespace().count() != 1 {
                return Err(syntax(&instruction, "needs exactly one value"));
            }
            let key = if instruction == "USER" {
                "User"
            } else {
                "StopSignal"
            };
            cfg.insert(key.into(), Value::String(rest.to_string()));
        }
        "EXPOSE" => {
            let ports: Vec<&str> = rest.split_whitespace().collect();
            if ports.is_empty() {
                return Err(syntax(&instruction, "needs at least one port"));
            }
            for p in ports {
                let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                let proto = proto.to_ascii_lowercase();
                let valid_port = num.parse::<u16>().is_ok_and(|n| n > 0);
                if !valid_port || !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                    return Err(syntax(&instruction, format!("invalid port {p:?}")));
                }
                set_map_key(
                    cfg,
                    "ExposedPorts",
                    format!("{num}/{proto}"),
                    Value::Object(Map::new()),
                );
            }
        }
        "VOLUME" => {
            let t = rest.trim();
            let vols: Vec<String> = if t.starts_with('[') {
                serde_json::from_str(t).map_err(|e| syntax(&instruction, e.to_string()))?
            } else {
                t.split_whitespace().map(str::to_string).collect()
            };
            if vols.is_empty() {
                return Err(syntax(&instruction, "needs at least one path"));
            }
            for v in vols {
                set_map_key(cfg, "Volumes", v, Value::Object(Map::new()));
            }
        }
        _ => return Err(ChangeError::Unknown(word.to_string())),
    }
    Ok(())
}

/// Applies every change, in order, to `config.config` of `image_config`.
pub fn apply_changes(image_config: &mut Value, changes: &[String]) -> Result<(), ChangeError> {
    let Some(root) = image_config.as_object_mut() else {
        return Err(syntax("config", "the image config is not a JSON object"));
    };
    let cfg = root
        .entry("config".to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !cfg.is_object() {
        *cfg = Value::Object(Map::new());
    }
    let Some(cfg) = cfg.as_object_mut() else {
        return Err(syntax("config", "the image config is not a JSON object"));
    };
    for c in changes {
        apply_change(cfg, c)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn applied(changes: &[&str]) -> Value {
        let mut c = json!({"config": {"Env": ["PATH=/bin", "A=old"], "WorkingDir": "/srv"}});
        let changes: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        apply_changes(&mut c, &changes).unwrap();
        c["config"].clone()
    }

    #[test]
    fn json_and_shell_forms() {
        let c = applied(&[r#"CMD ["httpd", "-f"]"#, "ENTRYPOINT /init --x"]);
        assert_eq!(c["Cmd"], json!(["httpd", "-f"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/init --x"]));
        let c = applied(&["cmd echo hi"]);
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo hi"]));
        // The `-c CMD=...` spelling.
        let c = applied(&[r#"CMD=["httpd", "-f"]"#, "env=A=b"]);
        assert_eq!(c["Cmd"], json!(["httpd", "-f"]));
        assert_eq!(c["Env"], json!(["PATH=/bin", "A=b"]));
        // `=` inside the arguments of the spaced form is left alone.
        let c = applied(&["CMD echo a=b"]);
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "echo a=b"]));
    }

    #[test]
    fn env_label_workdir_user_expose_volume_stopsignal() {
        let c = applied(&[
            r#"ENV A=new B="two words" C=x\ y"#,
            "ENV LEGACY some value",
            r#"LABEL maintainer="me <m@x>" version=2"#,
            "WORKDIR app",
            "USER 1000:1000",
            "EXPOSE 80 53/udp",
            r#"VOLUME ["/data", "/logs"]"#,
            "VOLUME /cache",
            "STOPSIGNAL SIGINT",
        ]);
        assert_eq!(
            c["Env"],
            json!([
                "PATH=/bin",
                "A=new",
                "B=two words",
                "C=x y",
                "LEGACY=some value"
            ])
        );
        assert_eq!(c["Labels"]["maintainer"], "me <m@x>");
        assert_eq!(c["Labels"]["version"], "2");
        assert_eq!(c["WorkingDir"], "/srv/app");
        assert_eq!(c["User"], "1000:1000");
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(
            c["Volumes"],
            json!({"/data": {}, "/logs": {}, "/cache": {}})
        );
        assert_eq!(c["StopSignal"], "SIGINT");
    }

    #[test]
    fn bad_changes_are_refused() {
        let mut c = json!({});
        for bad in [
            "RUN rm -rf /",
            "EXPOSE http",
            "EXPOSE 70000",
            "EXPOSE 80/foo",
            "ENV",
            "ENV A=\"unterminated",
            "USER a b",
            "CMD",
            "LABEL =x",
        ] {
            assert!(
                apply_changes(&mut c, &[bad.to_string()]).is_err(),
                "{bad} accepted"
            );
        }
        // A config without a `config` object gets one.
        apply_changes(&mut c, &["USER nobody".to_string()]).unwrap();
        assert_eq!(c["config"]["User"], "nobody");
    }
}
