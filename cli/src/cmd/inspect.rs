//! `inspect`: Docker-like JSON for containers, images and volumes, as a
//! JSON array (or rendered through `-f`).

use berth_proto::berth::v1::{ContainerRef, Volume, VolumeRef};
use berth_proto::cri;
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use super::Ctx;
use crate::client::Daemon;
use crate::error::{CliError, DaemonResult};
use crate::format::inspect as tpl;

/// What an inspected name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A container.
    Container,
    /// An image.
    Image,
    /// A volume.
    Volume,
}

/// `berth inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a Go-like template ({{.State.Status}}, {{json .Config}})
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Only inspect objects of the given type
    #[arg(long = "type", value_enum)]
    pub kind: Option<Kind>,
    /// Names or ids of containers, images or volumes
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `berth image inspect` / `container inspect`.
#[derive(Debug, Args)]
pub struct TypedInspectArgs {
    /// Format output using a Go-like template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Names or ids
    #[arg(required = true)]
    pub names: Vec<String>,
}

async fn container_json(d: &Daemon, name: &str) -> Result<Value, CliError> {
    let r = d
        .containers
        .clone()
        .inspect(ContainerRef {
            container: name.to_owned(),
        })
        .await
        .no_such("container", name)?;
    serde_json::from_str(&r.json).map_err(|e| CliError::Daemon {
        code: tonic::Code::Internal,
        message: format!("inspect of {name} returned invalid JSON: {e}"),
    })
}

/// Docker-shaped image JSON from CRI ImageStatus (verbose).
pub async fn image_json(d: &Daemon, name: &str) -> Result<Value, CliError> {
    let r = d
        .img
        .clone()
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: name.to_owned(),
                ..Default::default()
            }),
            verbose: true,
        })
        .await
        .daemon()?;
    let Some(img) = r.image else {
        return Err(CliError::Daemon {
            code: tonic::Code::NotFound,
            message: format!("No such image: {name}"),
        });
    };
    let info: Value = r
        .info
        .get("info")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let spec = info.get("imageSpec").cloned().unwrap_or(Value::Null);
    Ok(image_value(&img, &spec))
}

/// Builds docker's image object from the CRI image and its OCI config.
pub fn image_value(img: &cri::Image, spec: &Value) -> Value {
    let layers = spec
        .pointer("/rootfs/diff_ids")
        .cloned()
        .unwrap_or(json!([]));
    json!({
        "Id": img.id,
        "RepoTags": img.repo_tags,
        "RepoDigests": img.repo_digests,
        "Created": spec.get("created").cloned().unwrap_or(Value::Null),
        "Author": spec.get("author").cloned().unwrap_or(json!("")),
        "Config": spec.get("config").cloned().unwrap_or(Value::Null),
        "Architecture": spec.get("architecture").cloned().unwrap_or(json!("")),
        "Os": spec.get("os").cloned().unwrap_or(json!("")),
        "Size": img.size,
        "RootFS": { "Type": "layers", "Layers": layers },
        "Metadata": { "Pinned": img.pinned },
    })
}

/// Docker's volume object.
pub fn volume_value(v: &Volume) -> Value {
    json!({
        "CreatedAt": chrono::DateTime::from_timestamp(v.created, 0).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default(),
        "Driver": v.driver,
        "Labels": v.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": Value::Null,
        "Scope": "local",
        "UsageData": if v.size >= 0 { json!({"Size": v.size, "RefCount": v.used_by.len()}) } else { Value::Null },
    })
}

async fn volume_json(d: &Daemon, name: &str) -> Result<Value, CliError> {
    let v = d
        .volumes
        .clone()
        .inspect(VolumeRef {
            name: name.to_owned(),
        })
        .await
        .no_such("volume", name)?;
    Ok(volume_value(&v))
}

async fn one(d: &Daemon, name: &str, kind: Option<Kind>) -> Result<Value, CliError> {
    let not_found = |e: &CliError| {
        matches!(
            e,
            CliError::Daemon {
                code: tonic::Code::NotFound,
                ..
            }
        )
    };
    match kind {
        Some(Kind::Container) => container_json(d, name).await,
        Some(Kind::Image) => image_json(d, name).await,
        Some(Kind::Volume) => volume_json(d, name).await,
        None => {
            for k in [Kind::Container, Kind::Image, Kind::Volume] {
                match Box::pin(one(d, name, Some(k))).await {
                    Err(e) if not_found(&e) => continue,
                    other => return other,
                }
            }
            Err(CliError::Daemon {
                code: tonic::Code::NotFound,
                message: format!("No such object: {name}"),
            })
        }
    }
}

/// Pretty JSON with docker's four-space indent.
pub fn pretty(v: &Value) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if v.serialize(&mut ser).is_err() {
        return v.to_string();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

async fn run(
    ctx: &Ctx,
    names: &[String],
    format: Option<&str>,
    kind: Option<Kind>,
) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let mut found = Vec::new();
    let mut failed = false;
    for n in names {
        match one(&d, n, kind).await {
            Ok(v) => found.push(v),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    match format {
        Some(f) if f != "json" => {
            for v in &found {
                println!(
                    "{}",
                    tpl::render(f, v).map_err(|e| CliError::Usage(e.to_string()))?
                );
            }
        }
        _ => println!("{}", pretty(&Value::Array(found))),
    }
    if failed {
        return Err(CliError::Exit(1).into());
    }
    Ok(())
}

/// `berth inspect`.
pub async fn inspect(ctx: &Ctx, a: InspectArgs) -> anyhow::Result<()> {
    run(ctx, &a.names, a.format.as_deref(), a.kind).await
}

/// `berth image inspect` / `berth container inspect`.
pub async fn inspect_typed(ctx: &Ctx, a: TypedInspectArgs, kind: Kind) -> anyhow::Result<()> {
    run(ctx, &a.names, a.format.as_deref(), Some(kind)).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn image_object_from_oci_config() {
        let img = cri::Image {
            id: "sha256:abc".into(),
            repo_tags: vec!["busybox:latest".into()],
            size: 4_261_234,
            ..Default::default()
        };
        let spec = json!({"created": "2024-01-02T03:04:05Z", "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": ["sha256:d1"]}});
        let v = image_value(&img, &spec);
        assert_eq!(v["Id"], "sha256:abc");
        assert_eq!(v["Config"]["Cmd"][0], "sh");
        assert_eq!(v["RootFS"]["Layers"][0], "sha256:d1");
        assert!(pretty(&json!([1])).contains("\n    1\n"));
    }
}
