//! `create` and the container flags `run` shares with it.

use std::collections::HashMap;
use std::path::PathBuf;

use berth_proto::berth::v1::{ContainerSpec, CreateContainerRequest};
use berth_proto::cri;
use clap::{ArgAction, Args};

use super::Ctx;
use crate::client::Daemon;
use crate::error::{CliError, DaemonResult};
use crate::parse;

/// The flags that describe a container (`run` and `create`).
#[derive(Debug, Args, Default, Clone)]
pub struct ContainerOpts {
    /// Print usage
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Publish a container's port(s) to the host ([ip:]host:container[/proto])
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Bind mount a volume (host:container[:ro], name:container, container)
    #[arg(short = 'v', long = "volume")]
    pub volume: Vec<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Restart policy to apply when a container exits (no, always, unless-stopped, on-failure[:N])
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Memory limit (e.g. 512m, 1g)
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Number of CPUs
    #[arg(long, allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// Tune container pids limit (-1 for unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Connect a container to a network (bridge, host, none)
    #[arg(long, default_value = "bridge")]
    pub network: String,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    pub label: Vec<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<i32>,
    /// Pull image before running (always, missing, never)
    #[arg(long, default_value = "missing")]
    pub pull: String,
}

/// `berth create`.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Container flags.
    #[command(flatten)]
    pub opts: ContainerOpts,
    /// The image to create the container from
    pub image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

fn usage<E: std::fmt::Display>(e: E) -> CliError {
    CliError::Usage(format!("invalid argument: {e}"))
}

/// Builds the berth.v1 spec from the flags (all parsing errors are 125).
pub fn build_spec(
    o: &ContainerOpts,
    image: &str,
    command: &[String],
    auto_remove: bool,
) -> Result<ContainerSpec, CliError> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let lookup = |k: &str| std::env::var(k).ok();
    let mut ports = Vec::new();
    for p in &o.publish {
        ports.extend(parse::parse_port(p).map_err(usage)?);
    }
    let mounts = o
        .volume
        .iter()
        .map(|v| parse::parse_volume(v, &cwd))
        .collect::<Result<Vec<_>, _>>()
        .map_err(usage)?;
    let mut env = Vec::new();
    for f in &o.env_file {
        env.extend(parse::parse_env_file(f, &lookup).map_err(usage)?);
    }
    env.extend(o.env.iter().filter_map(|e| parse::env_entry(e, &lookup)));
    let mut labels = HashMap::new();
    for l in &o.label {
        let (k, v) = parse::key_value("label", l).map_err(usage)?;
        labels.insert(k, v);
    }
    if !matches!(o.network.as_str(), "bridge" | "host" | "none" | "default") {
        return Err(CliError::Usage(format!(
            "invalid argument: network {:?} not found: berth has bridge, host and none",
            o.network
        )));
    }
    let restart = parse::parse_restart(&o.restart).map_err(usage)?;
    if auto_remove && restart.name != "no" {
        return Err(CliError::Usage(
            "conflicting options: cannot combine --restart and --rm".into(),
        ));
    }
    let (entrypoint, entrypoint_set) = match &o.entrypoint {
        // docker: one word, or empty to clear the image's.
        Some(e) if e.is_empty() => (Vec::new(), true),
        Some(e) => (vec![e.clone()], true),
        None => (Vec::new(), false),
    };
    Ok(ContainerSpec {
        image: image.to_owned(),
        name: o.name.clone().unwrap_or_default(),
        entrypoint,
        entrypoint_set,
        cmd: command.to_vec(),
        env,
        working_dir: o.workdir.clone().unwrap_or_default(),
        user: o.user.clone().unwrap_or_default(),
        hostname: o.hostname.clone().unwrap_or_default(),
        tty: o.tty,
        open_stdin: o.interactive,
        stdin_once: o.interactive,
        ports,
        publish_all: o.publish_all,
        mounts,
        restart: Some(restart),
        auto_remove,
        memory_limit: o
            .memory
            .as_deref()
            .map(parse::parse_memory)
            .transpose()
            .map_err(usage)?
            .unwrap_or(0),
        nano_cpus: o
            .cpus
            .as_deref()
            .map(parse::parse_cpus)
            .transpose()
            .map_err(usage)?
            .unwrap_or(0),
        pids_limit: o.pids_limit.filter(|p| *p > 0).unwrap_or(0),
        network: if o.network == "default" {
            "bridge".into()
        } else {
            o.network.clone()
        },
        privileged: o.privileged,
        cap_add: o.cap_add.clone(),
        cap_drop: o.cap_drop.clone(),
        read_only_rootfs: o.read_only,
        init: o.init,
        labels,
        stop_signal: o.stop_signal.clone().unwrap_or_default(),
        stop_timeout: o.stop_timeout.unwrap_or(0),
    })
}

/// Whether the image is in berthd's store.
pub async fn image_present(d: &Daemon, image: &str) -> Result<bool, CliError> {
    let r = d
        .img
        .clone()
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .daemon()?;
    Ok(r.image.is_some())
}

/// Pulls the image first if `--pull` asks for it, then creates the
/// container; returns (id, name).
pub async fn create_container(
    d: &Daemon,
    spec: ContainerSpec,
    pull_policy: &str,
) -> anyhow::Result<(String, String)> {
    let need_pull = match pull_policy {
        "always" => true,
        "never" => false,
        "missing" => !image_present(d, &spec.image).await?,
        other => {
            return Err(CliError::Usage(format!(
                "invalid pull option {other:?}: must be one of \"always\", \"missing\" or \"never\""
            ))
            .into())
        }
    };
    if need_pull {
        if pull_policy == "missing" {
            eprintln!("Unable to find image '{}' locally", spec.image);
        }
        super::pull::pull_image(d, &spec.image, true, false).await?;
    }
    let image = spec.image.clone();
    let r = d
        .containers
        .clone()
        .create(CreateContainerRequest { spec: Some(spec) })
        .await
        .no_such("image", &image)?;
    for w in &r.warnings {
        eprintln!("WARNING: {w}");
    }
    Ok((r.id, r.name))
}

/// `berth create`: prints the new container's id.
pub async fn create(ctx: &Ctx, a: CreateArgs) -> anyhow::Result<()> {
    let spec = build_spec(&a.opts, &a.image, &a.command, false)?;
    let d = ctx.daemon().await?;
    let (id, _) = create_container(&d, spec, &a.opts.pull).await?;
    println!("{id}");
    Ok(())
}
