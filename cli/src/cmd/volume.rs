//! `volume create|ls|rm|inspect|prune`.

use std::collections::HashMap;

use berth_proto::berth::v1::{
    CreateVolumeRequest, ListVolumesRequest, PruneVolumesRequest, RemoveVolumeRequest, Volume,
};
use clap::{Args, Subcommand};

use super::{for_each, inspect, Ctx};
use crate::error::{CliError, DaemonResult};
use crate::format::{self, render_rows, units, Row};
use crate::parse;

/// `berth volume ...`.
#[derive(Debug, Subcommand)]
pub enum VolumeCmd {
    /// Create a volume
    Create(CreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Display detailed information on one or more volumes
    Inspect(InspectArgs),
    /// Remove unused volumes
    Prune(PruneArgs),
}

/// `volume create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Set metadata for a volume
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Volume driver name (only "local")
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Volume name
    pub name: Option<String>,
}

/// `volume ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display volume names
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Provide filter values (name=, label=, dangling=true|false)
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a template ('table', 'json', '{{.Name}}'...)
    #[arg(long)]
    pub format: Option<String>,
}

/// `volume rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of one or more volumes
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Volumes
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `volume inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a Go-like template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Volumes
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// `volume prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused volumes, not just anonymous ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// A volume as templates see it.
pub fn row(v: &Volume) -> Row {
    let mut r = Row::new();
    let mut labels: Vec<String> = v.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    r.insert("Name".into(), v.name.clone());
    r.insert(
        "Driver".into(),
        if v.driver.is_empty() {
            "local".into()
        } else {
            v.driver.clone()
        },
    );
    r.insert("Mountpoint".into(), v.mountpoint.clone());
    r.insert("Labels".into(), labels.join(","));
    r.insert("Scope".into(), "local".into());
    r.insert("Links".into(), v.used_by.len().to_string());
    r.insert(
        "Size".into(),
        if v.size >= 0 {
            units::human_size(v.size as u64)
        } else {
            "N/A".into()
        },
    );
    r
}

fn header(f: &str) -> String {
    match f {
        "Name" => "VOLUME NAME".into(),
        _ => format::default_header(f),
    }
}

/// Runs a volume command.
pub async fn volume(ctx: &Ctx, cmd: VolumeCmd) -> anyhow::Result<()> {
    match cmd {
        VolumeCmd::Create(a) => {
            if a.driver != "local" {
                return Err(CliError::Usage(format!(
                    "volume driver {:?} is not available: berth has \"local\"",
                    a.driver
                ))
                .into());
            }
            let mut labels = HashMap::new();
            for l in &a.label {
                let (k, v) =
                    parse::key_value("label", l).map_err(|e| CliError::Usage(e.to_string()))?;
                labels.insert(k, v);
            }
            let d = ctx.daemon().await?;
            let v = d
                .volumes
                .clone()
                .create(CreateVolumeRequest {
                    name: a.name.unwrap_or_default(),
                    labels,
                })
                .await
                .daemon()?;
            println!("{}", v.name);
            Ok(())
        }
        VolumeCmd::Ls(a) => {
            let d = ctx.daemon().await?;
            let mut vols = d
                .volumes
                .clone()
                .list(ListVolumesRequest { filters: a.filter })
                .await
                .daemon()?
                .volumes;
            vols.sort_by(|x, y| x.name.cmp(&y.name));
            if a.quiet {
                for v in &vols {
                    println!("{}", v.name);
                }
                return Ok(());
            }
            let rows: Vec<Row> = vols.iter().map(row).collect();
            let out = render_rows(
                &rows,
                a.format.as_deref(),
                "table {{.Driver}}\t{{.Name}}",
                &header,
            )
            .map_err(|e| CliError::Usage(e.to_string()))?;
            print!("{out}");
            Ok(())
        }
        VolumeCmd::Rm(a) => {
            let d = ctx.daemon().await?;
            for_each(&a.names, |n| {
                let mut c = d.volumes.clone();
                async move {
                    c.remove(RemoveVolumeRequest {
                        name: n.clone(),
                        force: a.force,
                    })
                    .await
                    .no_such("volume", &n)
                    .map(|_| Some(n))
                }
            })
            .await
        }
        VolumeCmd::Inspect(a) => {
            let targs = inspect::TypedInspectArgs {
                format: a.format,
                names: a.names,
            };
            inspect::inspect_typed(ctx, targs, inspect::Kind::Volume).await
        }
        VolumeCmd::Prune(a) => {
            let warning = if a.all {
                "WARNING! This will remove all local volumes not used by at least one container."
            } else {
                "WARNING! This will remove anonymous local volumes not used by at least one container."
            };
            if !a.force && !super::images::confirm(warning) {
                return Ok(());
            }
            let d = ctx.daemon().await?;
            let r = d
                .volumes
                .clone()
                .prune(PruneVolumesRequest { all: a.all })
                .await
                .daemon()?;
            super::images::print_pruned(&[("Deleted Volumes:", "", &r.deleted)], r.reclaimed_bytes);
            Ok(())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn volume_table() {
        let v = Volume {
            name: "data".into(),
            driver: "local".into(),
            mountpoint: "/var/lib/berth/volumes/data/_data".into(),
            size: -1,
            ..Default::default()
        };
        let out = render_rows(&[row(&v)], None, "table {{.Driver}}\t{{.Name}}", &header).unwrap();
        assert_eq!(out, "DRIVER    VOLUME NAME\nlocal     data\n");
        let out = render_rows(&[row(&v)], Some("{{.Name}} {{.Mountpoint}}"), "", &header).unwrap();
        assert_eq!(out, "data /var/lib/berth/volumes/data/_data\n");
    }
}
