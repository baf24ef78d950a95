//! The spec a container was created with, as kept in its `state.json`.
//!
//! It is stored as JSON text and parsed on demand, whole or in part: the
//! commands that run after `create` (start, kill, delete, update, pause)
//! need at most the hooks, the version or the resources. A long-lived
//! caller that only runs those commands (berth-shim: one per pod, every
//! page of its code counts once per pod) then never runs, nor links, the
//! full spec parser with its validators.

use oci_spec::runtime::{Hooks, LinuxResources, Spec};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A spec kept as JSON text (see the module documentation).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoredSpec(Box<RawValue>);

/// The parts of a spec the lifecycle hooks need.
#[derive(Debug, Default, Deserialize)]
pub struct HookParts {
    /// `ociVersion`, reported in the hooks' state.
    #[serde(rename = "ociVersion", default)]
    pub version: String,
    /// The hooks, if any.
    #[serde(default)]
    pub hooks: Option<Hooks>,
}

#[derive(Deserialize)]
struct ResourceParts {
    #[serde(default)]
    linux: Option<LinuxResourceParts>,
}

#[derive(Deserialize)]
struct LinuxResourceParts {
    #[serde(default)]
    resources: Option<LinuxResources>,
}

impl StoredSpec {
    /// Keeps `spec`.
    pub fn new(spec: &Spec) -> Result<StoredSpec, serde_json::Error> {
        serde_json::value::to_raw_value(spec).map(StoredSpec)
    }

    /// The whole spec.
    pub fn parse(&self) -> Result<Spec, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// The version and hooks only.
    pub fn hook_parts(&self) -> Result<HookParts, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// `linux.resources`, if present.
    pub fn resources(&self) -> Result<Option<LinuxResources>, serde_json::Error> {
        let parts: ResourceParts = serde_json::from_str(self.0.get())?;
        Ok(parts.linux.and_then(|l| l.resources))
    }

    /// The same spec with `linux.resources` replaced (the rest of the text
    /// is kept as it is, unknown fields included). A spec without a `linux`
    /// object gets one.
    pub fn with_resources(
        &self,
        resources: &LinuxResources,
    ) -> Result<StoredSpec, serde_json::Error> {
        let mut value: serde_json::Value = serde_json::from_str(self.0.get())?;
        let resources = serde_json::to_value(resources)?;
        if let Some(obj) = value.as_object_mut() {
            let linux = obj
                .entry("linux")
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if let Some(linux) = linux.as_object_mut() {
                linux.insert("resources".into(), resources);
            }
        }
        serde_json::value::to_raw_value(&value).map(StoredSpec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(json: &str) -> StoredSpec {
        StoredSpec(RawValue::from_string(json.to_string()).unwrap())
    }

    #[test]
    fn hook_parts_read_version_and_hooks_only() {
        let s = stored(
            r#"{"ociVersion":"1.2.0","hooks":{"poststop":[{"path":"/bin/true","args":["true"]}]},
                "process":{"cwd":"/","args":["sh"],"execCPUAffinity":{"initial":"not a cpu list"}}}"#,
        );
        let parts = s.hook_parts().unwrap();
        assert_eq!(parts.version, "1.2.0");
        let poststop = parts.hooks.unwrap().poststop().clone().unwrap();
        assert_eq!(poststop[0].path(), std::path::Path::new("/bin/true"));
        // The whole-spec parser validates what the partial one skips.
        assert!(s.parse().is_err());
    }

    fn pids_limit(s: &StoredSpec) -> i64 {
        s.resources()
            .unwrap()
            .unwrap()
            .pids()
            .as_ref()
            .unwrap()
            .limit()
    }

    #[test]
    fn with_resources_replaces_only_the_resources() {
        let s = stored(
            r#"{"ociVersion":"1.2.0","x-unknown":1,"linux":{"cgroupsPath":"/a","resources":{"pids":{"limit":5}}}}"#,
        );
        assert_eq!(pids_limit(&s), 5);
        let new: LinuxResources = serde_json::from_str(r#"{"pids":{"limit":9}}"#).unwrap();
        let s2 = s.with_resources(&new).unwrap();
        let v: serde_json::Value = serde_json::from_str(s2.0.get()).unwrap();
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], 9);
        assert_eq!(v["linux"]["cgroupsPath"], "/a");
        assert_eq!(v["x-unknown"], 1);
        let bare = stored(r#"{"ociVersion":"1.2.0"}"#)
            .with_resources(&new)
            .unwrap();
        assert_eq!(pids_limit(&bare), 9);
    }

    #[test]
    fn round_trips_through_state_json() {
        let spec: Spec = serde_json::from_str(r#"{"ociVersion":"1.0.2","hostname":"h"}"#).unwrap();
        let s = StoredSpec::new(&spec).unwrap();
        let text = serde_json::to_string(&s).unwrap();
        let back: StoredSpec = serde_json::from_str(&text).unwrap();
        assert_eq!(back.parse().unwrap().hostname().as_deref(), Some("h"));
    }
}
