//! `ps`: the container table, `-q`, `--filter`, `--format`.

use berth_proto::berth::v1::{ContainerRef, ContainerSummary, ListContainersRequest, PortMapping};
use clap::Args;

use super::Ctx;
use crate::client::Daemon;
use crate::error::{CliError, DaemonResult};
use crate::format::{self, ellipsis, render_rows, short_id, units, Row};

/// `berth ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Filter output based on conditions provided (name=, id=, label=, status=, ancestor=, exited=)
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a template ('table', 'json', '{{.ID}}'...)
    #[arg(long)]
    pub format: Option<String>,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Display total file sizes
    #[arg(short = 's', long)]
    pub size: bool,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last", default_value_t = -1, allow_hyphen_values = true)]
    pub last: i64,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    pub latest: bool,
}

const DEFAULT: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

/// Docker's Ports column: `0.0.0.0:8080->80/tcp, 443/tcp`.
pub fn ports_text(ports: &[PortMapping]) -> String {
    ports
        .iter()
        .map(|p| {
            let proto = if p.protocol.is_empty() {
                "tcp"
            } else {
                &p.protocol
            };
            if p.host_port == 0 {
                format!("{}/{proto}", p.container_port)
            } else {
                let ip = if p.host_ip.is_empty() {
                    "0.0.0.0"
                } else {
                    &p.host_ip
                };
                let ip = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.to_owned()
                };
                format!("{ip}:{}->{}/{proto}", p.host_port, p.container_port)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One container as templates see it.
pub fn row(s: &ContainerSummary, trunc: bool, now: i64) -> Row {
    let mut r = Row::new();
    let id = if trunc { short_id(&s.id) } else { s.id.clone() };
    let command = if trunc {
        ellipsis(&s.command, 20)
    } else {
        s.command.clone()
    };
    let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    r.insert("ID".into(), id);
    r.insert("Image".into(), s.image.clone());
    r.insert("Command".into(), format!("\"{command}\""));
    r.insert("CreatedAt".into(), units::created_at(s.created));
    r.insert("RunningFor".into(), units::ago(s.created, now));
    r.insert("Ports".into(), ports_text(&s.ports));
    r.insert("Status".into(), s.status.clone());
    r.insert("State".into(), s.state.clone());
    r.insert("Names".into(), s.name.clone());
    r.insert("Labels".into(), labels.join(","));
    r.insert(
        "Mounts".into(),
        s.mounts
            .iter()
            .map(|m| {
                if trunc {
                    ellipsis(&m.source, 15)
                } else {
                    m.source.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(","),
    );
    r.insert(
        "Size".into(),
        if s.size_rw >= 0 {
            units::human_size(s.size_rw as u64)
        } else {
            String::new()
        },
    );
    r.insert("RestartCount".into(), s.restart_count.to_string());
    r
}

fn header(f: &str) -> String {
    match f {
        "ID" => "CONTAINER ID".into(),
        "RunningFor" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        _ => format::default_header(f),
    }
}

/// The summary of one container (by name, id or prefix).
pub async fn summary_of(d: &Daemon, c: &str) -> Result<ContainerSummary, CliError> {
    let id = d
        .containers
        .clone()
        .resolve(ContainerRef {
            container: c.to_owned(),
        })
        .await
        .no_such("container", c)?
        .container_id;
    let list = d
        .containers
        .clone()
        .list(ListContainersRequest {
            all: true,
            filters: vec![format!("id={id}")],
            include_cri: false,
        })
        .await
        .daemon()?;
    list.containers
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| CliError::Daemon {
            code: tonic::Code::NotFound,
            message: format!("No such container: {c}"),
        })
}

/// `berth ps`.
pub async fn ps(ctx: &Ctx, a: PsArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let mut list = d
        .containers
        .clone()
        .list(ListContainersRequest {
            all: a.all || a.latest || a.last > 0,
            filters: a.filter.clone(),
            include_cri: false,
        })
        .await
        .daemon()?
        .containers;
    // Newest first, as docker lists them.
    list.sort_by(|x, y| y.created.cmp(&x.created).then_with(|| x.name.cmp(&y.name)));
    if a.latest {
        list.truncate(1);
    } else if a.last > 0 {
        list.truncate(a.last as usize);
    }
    if a.quiet {
        for s in &list {
            println!(
                "{}",
                if a.no_trunc {
                    s.id.clone()
                } else {
                    short_id(&s.id)
                }
            );
        }
        return Ok(());
    }
    let now = units::now_secs();
    let rows: Vec<Row> = list.iter().map(|s| row(s, !a.no_trunc, now)).collect();
    let default = if a.size {
        format!("{DEFAULT}\t{{{{.Size}}}}")
    } else {
        DEFAULT.to_owned()
    };
    let out = render_rows(&rows, a.format.as_deref(), &default, &header)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    print!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn ps_row_fields_like_docker() {
        let s = ContainerSummary {
            id: "0123456789abcdef0123".into(),
            name: "web".into(),
            image: "busybox".into(),
            command: "httpd -f -p 80 -h /www".into(),
            created: 1000,
            state: "running".into(),
            status: "Up 2 minutes".into(),
            ports: vec![
                PortMapping {
                    host_ip: String::new(),
                    host_port: 8080,
                    container_port: 80,
                    protocol: "tcp".into(),
                },
                PortMapping {
                    host_ip: String::new(),
                    host_port: 0,
                    container_port: 443,
                    protocol: String::new(),
                },
            ],
            labels: HashMap::from([("b".into(), "2".into()), ("a".into(), "1".into())]),
            size_rw: 1234,
            ..Default::default()
        };
        let r = row(&s, true, 1120);
        assert_eq!(r["ID"], "0123456789ab");
        assert_eq!(r["Command"], "\"httpd -f -p 80 -h /…\"");
        assert_eq!(r["RunningFor"], "2 minutes ago");
        assert_eq!(r["Ports"], "0.0.0.0:8080->80/tcp, 443/tcp");
        assert_eq!(r["Labels"], "a=1,b=2");
        assert_eq!(r["Size"], "1.23kB");
        let full = row(&s, false, 1120);
        assert_eq!(full["ID"], s.id);
        assert_eq!(full["Command"], "\"httpd -f -p 80 -h /www\"");
        let out = render_rows(&[r], None, DEFAULT, &header).unwrap();
        let head = out.lines().next().unwrap();
        assert!(
            head.starts_with("CONTAINER ID   IMAGE     COMMAND "),
            "{head}"
        );
        assert!(
            head.ends_with("PORTS                           NAMES"),
            "{head}"
        );
    }
}
