//! Finding and validating the CNI network configuration in the conf dir.
//!
//! As the kubelet's other runtimes do, the first file in lexical order whose
//! name ends in `.conflist`, `.conf` or `.json` is the pod network; a single
//! plugin `.conf` is wrapped into a one-plugin list.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Errors loading a network configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConflistError {
    /// The conf dir could not be listed.
    #[error("listing CNI conf dir {dir}")]
    ReadDir {
        /// The conf dir.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// No candidate file exists.
    #[error("no network config found in {}", dir.display())]
    NotFound {
        /// The conf dir.
        dir: PathBuf,
    },
    /// A config file could not be read.
    #[error("reading CNI config {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A config file is not JSON.
    #[error("parsing CNI config {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A config file is JSON but not a valid network config.
    #[error("invalid CNI config {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A validated network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// The file it came from.
    pub path: PathBuf,
    /// The network name (`name`).
    pub name: String,
    /// The CNI spec version every plugin is called with.
    pub cni_version: String,
    /// The plugin configurations in call order, each with a string `type`.
    pub plugins: Vec<Map<String, Value>>,
}

impl NetworkConfigList {
    /// The plugin type (binary name) of plugin `index`.
    pub fn plugin_type(&self, index: usize) -> &str {
        self.plugins
            .get(index)
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// Lists the candidate config files of `dir` in lexical order.
pub fn candidate_files(dir: &Path) -> Result<Vec<PathBuf>, ConflistError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ConflistError::ReadDir {
                dir: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConflistError::ReadDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "conflist" | "conf" | "json") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads the first config of `dir` (lexical order).
///
/// The first file decides: if it is invalid, that is an error rather than a
/// silent fall-through to the next file, so a typo never swaps networks.
pub fn load_first(dir: &Path) -> Result<NetworkConfigList, ConflistError> {
    let files = candidate_files(dir)?;
    let first = files.first().ok_or_else(|| ConflistError::NotFound {
        dir: dir.to_path_buf(),
    })?;
    load_file(first)
}

/// Loads and validates one config file.
pub fn load_file(path: &Path) -> Result<NetworkConfigList, ConflistError> {
    let bytes = std::fs::read(path).map_err(|source| ConflistError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|source| ConflistError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let is_list = path.extension().and_then(|e| e.to_str()) == Some("conflist")
        || value.get("plugins").is_some();
    parse(path, value, is_list)
}

fn parse(path: &Path, value: Value, is_list: bool) -> Result<NetworkConfigList, ConflistError> {
    let invalid = |reason: &str| ConflistError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let Value::Object(obj) = value else {
        return Err(invalid("not a JSON object"));
    };
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| invalid("missing string \"name\""))?
        .to_string();
    let cni_version = obj
        .get("cniVersion")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid("missing string \"cniVersion\""))?
        .to_string();
    let plugins: Vec<Map<String, Value>> = if is_list {
        let list = obj
            .get("plugins")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("missing array \"plugins\""))?;
        if list.is_empty() {
            return Err(invalid("\"plugins\" is empty"));
        }
        list.iter()
            .map(|p| p.as_object().cloned())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("a plugin is not a JSON object"))?
    } else {
        vec![obj.clone()]
    };
    for (i, p) in plugins.iter().enumerate() {
        let ty = p.get("type").and_then(Value::as_str).unwrap_or("");
        // The type is looked up as a file name in the bin dirs: no paths.
        if ty.is_empty() || ty.contains('/') || ty == "." || ty == ".." {
            return Err(invalid(&format!("plugin {i} has no valid \"type\"")));
        }
    }
    Ok(NetworkConfigList {
        path: path.to_path_buf(),
        name,
        cni_version,
        plugins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).unwrap();
    }

    const LIST: &str = r#"{"cniVersion":"1.0.0","name":"a","plugins":[
        {"type":"bridge","bridge":"x"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;

    #[test]
    fn missing_or_empty_dir_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_first(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(err, ConflistError::NotFound { .. }));
        let err = load_first(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no network config found in {}", dir.path().display())
        );
    }

    #[test]
    fn first_file_in_lexical_order_wins_and_others_ignored() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "20-b.conflist", &LIST.replace("\"a\"", "\"b\""));
        write(dir.path(), "10-a.conflist", LIST);
        write(dir.path(), "05-readme.txt", "not a config");
        let files = candidate_files(dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        let list = load_first(dir.path()).unwrap();
        assert_eq!(list.name, "a");
        assert_eq!(list.cni_version, "1.0.0");
        assert_eq!(list.plugins.len(), 2);
        assert_eq!(list.plugin_type(0), "bridge");
        assert_eq!(list.plugin_type(1), "portmap");
    }

    #[test]
    fn single_conf_is_wrapped() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "99-loop.conf",
            r#"{"cniVersion":"0.4.0","name":"lo","type":"loopback"}"#,
        );
        let list = load_first(dir.path()).unwrap();
        assert_eq!(list.name, "lo");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugin_type(0), "loopback");
    }

    #[test]
    fn invalid_configs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("a.conflist", "{not json"),
            (
                "b.conflist",
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#,
            ),
            ("c.conflist", r#"{"name":"n","plugins":[{"type":"x"}]}"#),
            ("d.conflist", r#"{"name":"n","cniVersion":"1.0.0"}"#),
            (
                "e.conflist",
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[]}"#,
            ),
            (
                "f.conflist",
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[{"a":1}]}"#,
            ),
            (
                "g.conflist",
                r#"{"name":"n","cniVersion":"1.0.0","plugins":[{"type":"../x"}]}"#,
            ),
            ("h.conf", r#"{"name":"n","cniVersion":"1.0.0"}"#),
        ];
        for (file, body) in cases {
            write(dir.path(), file, body);
            let err = load_file(&dir.path().join(file));
            assert!(err.is_err(), "{file} accepted");
        }
        // The first file is broken: that is reported, not skipped.
        assert!(matches!(
            load_first(dir.path()).unwrap_err(),
            ConflistError::Parse { .. }
        ));
    }
}
