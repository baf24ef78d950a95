//! `list`.

use std::path::Path;

use berth_runtime::container::Container;

/// `list` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// table or json.
    #[arg(short = 'f', long, default_value = "table")]
    pub format: String,
    /// Only print ids.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// Runs `list`.
pub fn run(root: &Path, a: &Args) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for id in Container::list(root)? {
        match Container::load(root, &id) {
            Ok(c) => reports.push(c.report()),
            Err(err) => tracing::warn!(%id, %err, "skipping unreadable container"),
        }
    }
    if a.quiet {
        for r in &reports {
            println!("{}", r.id);
        }
        return Ok(());
    }
    match a.format.as_str() {
        "json" => println!("{}", serde_json::to_string(&reports)?),
        "table" => {
            println!(
                "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for r in &reports {
                let owner = if r.owner.is_empty() { "root" } else { &r.owner };
                println!(
                    "{:<20} {:<8} {:<10} {:<40} {:<32} {}",
                    r.id,
                    r.pid,
                    r.status,
                    r.bundle.display(),
                    r.created
                        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                    owner
                );
            }
        }
        other => anyhow::bail!("invalid format {other:?} (table or json)"),
    }
    Ok(())
}
