//! `inspect -f`: Go-template paths over arbitrary JSON (`{{.State.Status}}`,
//! `{{json .Config}}`, `{{index .Config.Labels "k"}}`).

use serde_json::Value;

use super::TemplateError;

/// Renders `format` against one inspected object.
pub fn render(format: &str, value: &Value) -> Result<String, TemplateError> {
    let s = format.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::Unclosed(format.to_owned()))?;
        let action = after[..end].trim();
        out.push_str(&action_value(action, value)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn action_value(action: &str, root: &Value) -> Result<String, TemplateError> {
    let words: Vec<&str> = action.split_whitespace().collect();
    let unsupported = || TemplateError::Unsupported(action.to_owned());
    match words.as_slice() {
        ["json", path] => Ok(lookup(root, path)?.to_string()),
        ["index", path, key] => {
            let obj = lookup(root, path)?;
            let key = key.trim_matches('"');
            Ok(obj
                .get(key)
                .map(go_print)
                .unwrap_or_else(|| "<no value>".into()))
        }
        [path] if path.starts_with('.') => Ok(go_print(lookup(root, path)?)),
        _ => Err(unsupported()),
    }
}

fn lookup<'a>(root: &'a Value, path: &str) -> Result<&'a Value, TemplateError> {
    if path == "." {
        return Ok(root);
    }
    let Some(p) = path.strip_prefix('.') else {
        return Err(TemplateError::Unsupported(path.to_owned()));
    };
    let mut cur = root;
    for part in p.split('.') {
        cur = cur.get(part).ok_or_else(|| TemplateError::UnknownField {
            field: part.to_owned(),
            known: cur
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
        })?;
    }
    Ok(cur)
}

/// How Go's template prints a value: strings bare, maps as `map[k:v]`,
/// lists as `[a b]`, null as `<nil>`.
fn go_print(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => format!(
            "map[{}]",
            o.iter()
                .map(|(k, v)| format!("{k}:{}", go_print(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nested_paths_json_and_index() {
        let v = serde_json::json!({
            "State": {"Status": "running", "Pid": 42},
            "Config": {"Labels": {"a": "b"}, "Cmd": ["sh", "-c"]}
        });
        assert_eq!(render("{{.State.Status}}", &v).unwrap(), "running");
        assert_eq!(render("{{.State.Pid}}", &v).unwrap(), "42");
        assert_eq!(
            render("{{json .Config.Labels}}", &v).unwrap(),
            r#"{"a":"b"}"#
        );
        assert_eq!(render("{{index .Config.Labels \"a\"}}", &v).unwrap(), "b");
        assert_eq!(render("{{.Config.Cmd}}", &v).unwrap(), "[sh -c]");
        assert!(render("{{.Nope.X}}", &v).is_err());
    }
}
