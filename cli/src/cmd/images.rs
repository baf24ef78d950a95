//! `images`, `rmi`, `tag`, `history`, `image prune`.

use berth_proto::berth::v1::{HistoryRequest, ImagePruneRequest, TagRequest};
use berth_proto::cri;
use clap::Args;

use super::Ctx;
use crate::client::Daemon;
use crate::error::{CliError, DaemonResult};
use crate::format::{self, ellipsis, render_rows, short_id, units, Row};

/// `berth images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show all images (berth stores no intermediate images: same as the default)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Format output using a template ('table', 'json', '{{.ID}}'...)
    #[arg(long)]
    pub format: Option<String>,
    /// Filter output (dangling=true|false, reference=PATTERN)
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Only images of this repository (REPOSITORY[:TAG])
    pub repository: Option<String>,
}

/// `berth rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Images (reference or id)
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// `berth tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// SOURCE_IMAGE[:TAG]
    pub source: String,
    /// TARGET_IMAGE[:TAG]
    pub target: String,
}

/// `berth history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Print sizes and dates in human readable format
    #[arg(long = "human", default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    /// Format output using a template
    #[arg(long)]
    pub format: Option<String>,
    /// Image (reference or id)
    pub image: String,
}

/// `berth image prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
}

/// `name:tag` split as docker shows it (`127.0.0.1:5000/app:1`).
pub fn split_tag(reference: &str) -> (String, String) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), tag.to_owned()),
        _ => (reference.to_owned(), "latest".to_owned()),
    }
}

/// Docker's short name for a normalised reference (`docker.io/library/x` is `x`).
pub fn familiar(reference: &str) -> String {
    let r = reference.strip_prefix("docker.io/").unwrap_or(reference);
    r.strip_prefix("library/").unwrap_or(r).to_owned()
}

/// Rows of `images`: one per tag (or one `<none>` row for an untagged image).
pub fn image_rows(img: &cri::Image, created: i64, trunc: bool, now: i64) -> Vec<Row> {
    // Each repository has its own digest (`repo@sha256:...`).
    let digest_of = |repo: &str| {
        img.repo_digests
            .iter()
            .filter_map(|d| d.rsplit_once('@'))
            .find(|(r, _)| familiar(r) == repo)
            .map(|(_, d)| d.to_owned())
            .unwrap_or_else(|| "<none>".into())
    };
    let base = |repo: String, tag: String| {
        let mut r = Row::new();
        r.insert(
            "ID".into(),
            if trunc {
                short_id(&img.id)
            } else {
                img.id.clone()
            },
        );
        r.insert("Digest".into(), digest_of(&repo));
        r.insert("Repository".into(), repo);
        r.insert("Tag".into(), tag);
        r.insert(
            "CreatedSince".into(),
            if created > 0 {
                units::ago(created, now)
            } else {
                "N/A".into()
            },
        );
        r.insert("CreatedAt".into(), units::created_at(created));
        r.insert("Size".into(), units::human_size(img.size));
        r
    };
    if img.repo_tags.is_empty() {
        return vec![base("<none>".into(), "<none>".into())];
    }
    img.repo_tags
        .iter()
        .map(|t| {
            let (repo, tag) = split_tag(&familiar(t));
            base(repo, tag)
        })
        .collect()
}

fn header(f: &str) -> String {
    match f {
        "ID" => "IMAGE ID".into(),
        "CreatedSince" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        "CreatedBy" => "CREATED BY".into(),
        _ => format::default_header(f),
    }
}

async fn created_of(d: &Daemon, id: &str) -> i64 {
    match super::inspect::image_json(d, id).await {
        Ok(v) => v
            .get("Created")
            .and_then(|c| c.as_str())
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map(|t| t.timestamp())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// `berth images`.
pub async fn images(ctx: &Ctx, a: ImagesArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let list = d
        .img
        .clone()
        .list_images(cri::ListImagesRequest { filter: None })
        .await
        .daemon()?
        .images;
    let dangling = a
        .filter
        .iter()
        .find_map(|f| f.strip_prefix("dangling="))
        .map(|v| v == "true");
    let mut entries = Vec::new();
    for img in list {
        if let Some(dg) = dangling {
            if img.repo_tags.is_empty() != dg {
                continue;
            }
        }
        let created = created_of(&d, &img.id).await;
        entries.push((created, img));
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e.0));
    let now = units::now_secs();
    let mut rows: Vec<Row> = entries
        .iter()
        .flat_map(|(c, img)| image_rows(img, *c, !a.no_trunc, now))
        .collect();
    let wanted = a.repository.clone().or_else(|| {
        a.filter
            .iter()
            .find_map(|f| f.strip_prefix("reference=").map(str::to_owned))
    });
    if let Some(w) = wanted {
        let (wr, wt) = match w.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r.to_owned(), Some(t.to_owned())),
            _ => (w.clone(), None),
        };
        rows.retain(|r| r["Repository"] == wr && wt.as_ref().is_none_or(|t| &r["Tag"] == t));
    }
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for r in &rows {
            if seen.insert(r["ID"].clone()) {
                println!("{}", r["ID"]);
            }
        }
        return Ok(());
    }
    let default = if a.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let out = render_rows(&rows, a.format.as_deref(), default, &header)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    print!("{out}");
    Ok(())
}

/// `berth rmi`: "Untagged: x" / "Deleted: sha256:...".
pub async fn rmi(ctx: &Ctx, a: RmiArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let mut failed = false;
    for name in &a.images {
        let r: Result<(), CliError> = async {
            let st = d
                .img
                .clone()
                .image_status(cri::ImageStatusRequest {
                    image: Some(cri::ImageSpec {
                        image: name.clone(),
                        ..Default::default()
                    }),
                    verbose: false,
                })
                .await
                .daemon()?;
            let Some(img) = st.image else {
                return Err(CliError::Daemon {
                    code: tonic::Code::NotFound,
                    message: format!("No such image: {name}"),
                });
            };
            d.img
                .clone()
                .remove_image(cri::RemoveImageRequest {
                    image: Some(cri::ImageSpec {
                        image: name.clone(),
                        ..Default::default()
                    }),
                })
                .await
                .no_such("image", name)?;
            let by_id = img
                .id
                .trim_start_matches("sha256:")
                .starts_with(name.trim_start_matches("sha256:"));
            if !by_id {
                println!("Untagged: {name}");
            }
            // Another tag may keep the image: only report what went.
            let still = d
                .img
                .clone()
                .image_status(cri::ImageStatusRequest {
                    image: Some(cri::ImageSpec {
                        image: img.id.clone(),
                        ..Default::default()
                    }),
                    verbose: false,
                })
                .await
                .daemon()?;
            if still.image.is_none() {
                if by_id {
                    for t in &img.repo_tags {
                        println!("Untagged: {}", familiar(t));
                    }
                }
                println!("Deleted: {}", img.id);
            }
            Ok(())
        }
        .await;
        if let Err(e) = r {
            eprintln!("{e}");
            failed = true;
        }
    }
    if failed {
        return Err(CliError::Exit(1).into());
    }
    Ok(())
}

/// `berth tag`.
pub async fn tag(ctx: &Ctx, a: TagArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    d.images
        .clone()
        .tag(TagRequest {
            source: a.source.clone(),
            target: a.target,
        })
        .await
        .no_such("image", &a.source)?;
    Ok(())
}

/// `berth history`.
pub async fn history(ctx: &Ctx, a: HistoryArgs) -> anyhow::Result<()> {
    let d = ctx.daemon().await?;
    let r = d
        .images
        .clone()
        .history(HistoryRequest {
            image: a.image.clone(),
        })
        .await
        .no_such("image", &a.image)?;
    let now = units::now_secs();
    let trunc = !a.no_trunc;
    let rows: Vec<Row> = r
        .entries
        .iter()
        .map(|e| {
            let mut row = Row::new();
            let id = if e.id.is_empty() {
                "<missing>".to_owned()
            } else if trunc {
                short_id(&e.id)
            } else {
                e.id.clone()
            };
            row.insert("ID".into(), id);
            row.insert(
                "CreatedSince".into(),
                if a.human {
                    units::ago(e.created, now)
                } else {
                    units::created_at(e.created)
                },
            );
            row.insert("CreatedAt".into(), units::created_at(e.created));
            let by = e.created_by.replace(['\n', '\t'], " ");
            row.insert(
                "CreatedBy".into(),
                if trunc { ellipsis(&by, 45) } else { by },
            );
            row.insert(
                "Size".into(),
                if a.human {
                    units::human_size(e.size)
                } else {
                    e.size.to_string()
                },
            );
            row.insert("Comment".into(), e.comment.clone());
            row
        })
        .collect();
    if a.quiet {
        for r in &rows {
            println!("{}", r["ID"]);
        }
        return Ok(());
    }
    let default = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}";
    let hdr = |f: &str| {
        if f == "ID" {
            "IMAGE".to_owned()
        } else {
            header(f)
        }
    };
    let out = render_rows(&rows, a.format.as_deref(), default, &hdr)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    print!("{out}");
    Ok(())
}

/// Asks "Are you sure you want to continue? [y/N]" on the terminal.
pub fn confirm(warning: &str) -> bool {
    use std::io::{BufRead, Write};
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}

/// What a prune removed, as docker prints it: per kind a title, one line
/// per item (after the kind's prefix) and a blank line, then the space.
pub fn print_pruned(sections: &[(&str, &str, &[String])], reclaimed_bytes: u64) {
    for (title, prefix, items) in sections {
        if items.is_empty() {
            continue;
        }
        println!("{title}");
        for x in *items {
            println!("{prefix}{x}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        units::human_size(reclaimed_bytes)
    );
}

/// `berth image prune`.
pub async fn prune(ctx: &Ctx, a: PruneArgs) -> anyhow::Result<()> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !confirm(warning) {
        return Ok(());
    }
    let d = ctx.daemon().await?;
    let r = d
        .images
        .clone()
        .prune(ImagePruneRequest { all: a.all })
        .await
        .daemon()?;
    print_pruned(
        &[("Deleted Images:", "deleted: ", &r.deleted)],
        r.reclaimed_bytes,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_rows() {
        assert_eq!(
            split_tag("127.0.0.1:5000/app:1"),
            ("127.0.0.1:5000/app".into(), "1".into())
        );
        assert_eq!(
            split_tag("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app".into(), "latest".into())
        );
        assert_eq!(
            familiar("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        let img = cri::Image {
            id: "sha256:0123456789abcdef".into(),
            repo_tags: vec!["docker.io/library/busybox:latest".into(), "web:v2".into()],
            repo_digests: vec!["docker.io/library/busybox@sha256:feed".into()],
            // web:v2 was never pushed or pulled: no digest of its own.
            size: 4_261_234,
            ..Default::default()
        };
        let rows = image_rows(&img, 1000, true, 1120);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["Repository"], "busybox");
        assert_eq!(rows[1]["Tag"], "v2");
        assert_eq!(rows[0]["ID"], "0123456789ab");
        assert_eq!(rows[0]["Size"], "4.26MB");
        assert_eq!(rows[0]["Digest"], "sha256:feed");
        assert_eq!(rows[1]["Digest"], "<none>");
        assert_eq!(rows[0]["CreatedSince"], "2 minutes ago");
        let none = image_rows(
            &cri::Image {
                id: "sha256:ab".into(),
                ..Default::default()
            },
            0,
            true,
            1,
        );
        assert_eq!(none[0]["Repository"], "<none>");
        let out = render_rows(
            &rows,
            None,
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}",
            &header,
        )
        .unwrap();
        assert!(
            out.starts_with("REPOSITORY   TAG       IMAGE ID       CREATED         SIZE\n"),
            "{out}"
        );
    }
}
