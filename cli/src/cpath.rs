//! `cp`: Docker's path rules (trailing `/.`, existing directory or file,
//! new name) and the client's side of the tar streams: building one from
//! local files and extracting one safely (no `..`, no absolute names, no
//! writing through symlinks the archive made).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// A copy that cannot be done.
#[derive(Debug, thiserror::Error)]
pub enum CpError {
    /// `cp` needs exactly one side in a container.
    #[error("copying between containers or between local paths is not supported: one of SRC or DEST must be CONTAINER:PATH")]
    Sides,
    /// A directory onto a file.
    #[error("cannot copy a directory to a file: {0}")]
    DirToFile(String),
    /// A `/.` source that is not a directory.
    #[error("source path {0} is not a directory (a trailing /. copies a directory's contents)")]
    NotADir(String),
    /// A destination ending in `/` that does not exist.
    #[error("destination directory {0} does not exist (create it first)")]
    NoDestDir(String),
    /// A local path that does not exist.
    #[error("no such file or directory: {0}")]
    NoLocal(String),
    /// An archive entry that would land outside the destination.
    #[error("refusing archive entry {0:?}: it is absolute, climbs out with .., or goes through a symlink")]
    UnsafeEntry(String),
    /// Local I/O.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CpError {
    let path = path.to_owned();
    move |source| CpError::Io { what, path, source }
}

/// One side of `cp`: a local path or `CONTAINER:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Side {
    /// Local path (`-` is a tar stream on stdin/stdout).
    Local(String),
    /// Path inside a container.
    Container {
        /// Name or id.
        container: String,
        /// The path inside.
        path: String,
    },
}

/// Splits `web:/www` into a container side; local paths with a `:` need
/// a `/` or `.` before it (docker's rule: `./a:b` is local).
pub fn parse_side(arg: &str) -> Side {
    if arg.starts_with('/') || arg.starts_with('.') {
        return Side::Local(arg.to_owned());
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() => Side::Container {
            container: c.to_owned(),
            path: if p.is_empty() {
                "/".into()
            } else {
                p.to_owned()
            },
        },
        _ => Side::Local(arg.to_owned()),
    }
}

/// What the destination path is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    /// Missing.
    Missing,
    /// An existing directory.
    Dir,
    /// An existing non-directory.
    File,
}

/// Where and how an archive is unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Directory the archive is extracted into.
    pub dir: String,
    /// Name the archive's root gets in `dir` (`None`: its contents go into `dir`).
    pub root_name: Option<String>,
}

/// The base name of a path as docker takes it (`/a/b/` is `b`, `/a/b/.` is `.`).
pub fn base_name(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return "/".into();
    }
    t.rsplit('/').next().unwrap_or(t).to_owned()
}

fn parent_of(p: &str) -> String {
    let t = p.trim_end_matches('/');
    match t.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => t[..i].to_owned(),
        None => ".".into(),
    }
}

/// Whether `src` asks for a directory's contents (`dir/.`).
pub fn wants_contents(src: &str) -> bool {
    src.ends_with("/.") || src == "."
}

/// Docker's rules: copying `src` (a directory or not) to `dest`.
pub fn plan(
    src: &str,
    src_is_dir: bool,
    dest: &str,
    dest_kind: DestKind,
) -> Result<Placement, CpError> {
    let contents = wants_contents(src);
    if contents && !src_is_dir {
        return Err(CpError::NotADir(src.to_owned()));
    }
    match dest_kind {
        DestKind::Dir => Ok(Placement {
            dir: dest.to_owned(),
            root_name: (!contents).then(|| base_name(src)),
        }),
        DestKind::File if src_is_dir => Err(CpError::DirToFile(dest.to_owned())),
        DestKind::Missing if !src_is_dir && dest.ends_with('/') => {
            Err(CpError::NoDestDir(dest.to_owned()))
        }
        DestKind::File | DestKind::Missing => Ok(Placement {
            dir: parent_of(dest),
            root_name: Some(base_name(dest)),
        }),
    }
}

/// Writes a tar of local `src` to `out`, its root entry named `root_name`
/// (`None`: the directory's contents at the top). Symlinks are archived
/// as links, not followed.
pub fn build_tar<W: std::io::Write>(
    src: &Path,
    root_name: Option<&str>,
    out: W,
) -> Result<W, CpError> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let meta = std::fs::symlink_metadata(src).map_err(io_err("reading", src))?;
    let add = |b: &mut tar::Builder<W>, name: &str| -> Result<(), CpError> {
        if meta.is_dir() {
            b.append_dir_all(name, src)
                .map_err(io_err("archiving", src))
        } else {
            b.append_path_with_name(src, name)
                .map_err(io_err("archiving", src))
        }
    };
    match root_name {
        Some(n) => add(&mut b, n)?,
        None => {
            let entries = std::fs::read_dir(src).map_err(io_err("listing", src))?;
            for e in entries {
                let e = e.map_err(io_err("listing", src))?;
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                let m = std::fs::symlink_metadata(&p).map_err(io_err("reading", &p))?;
                if m.is_dir() {
                    b.append_dir_all(&name, &p)
                        .map_err(io_err("archiving", &p))?;
                } else {
                    b.append_path_with_name(&p, &name)
                        .map_err(io_err("archiving", &p))?;
                }
            }
        }
    }
    b.into_inner()
        .map_err(io_err("finishing the archive of", src))
}

/// The path an entry named `name` takes under `dest_dir`, its first
/// component replaced per `placement_root` (`None`: dropped). `None` when
/// the entry is the dropped root itself.
fn mapped(name: &Path, root_name: Option<&str>) -> Result<Option<PathBuf>, CpError> {
    let shown = || name.display().to_string();
    let mut parts = Vec::new();
    for c in name.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_owned()),
            Component::CurDir => {}
            _ => return Err(CpError::UnsafeEntry(shown())),
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    let mut out = PathBuf::new();
    match root_name {
        Some(r) => out.push(r),
        None if parts.len() == 1 => return Ok(None),
        None => {}
    }
    for p in &parts[1..] {
        out.push(p);
    }
    Ok(Some(out))
}

/// Refuses a path whose parents (below `base`) include a symlink, which a
/// hostile archive could have planted to write outside `base`.
fn check_no_symlink_parents(base: &Path, rel: &Path, name: &str) -> Result<(), CpError> {
    let mut cur = base.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(CpError::UnsafeEntry(name.to_owned()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Extracts a tar stream into local `dir`, renaming its root to
/// `root_name` (`None`: its contents go into `dir`).
pub fn extract_tar<R: Read>(input: R, dir: &Path, root_name: Option<&str>) -> Result<u64, CpError> {
    let mut ar = tar::Archive::new(input);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    let mut count = 0;
    for entry in ar
        .entries()
        .map_err(io_err("reading the archive for", dir))?
    {
        let mut entry = entry.map_err(io_err("reading the archive for", dir))?;
        let name = entry
            .path()
            .map_err(io_err("reading an entry name for", dir))?
            .into_owned();
        let Some(rel) = mapped(&name, root_name)? else {
            continue;
        };
        let shown = name.display().to_string();
        check_no_symlink_parents(dir, &rel, &shown)?;
        if let Some(link) = entry
            .link_name()
            .map_err(io_err("reading a link in", dir))?
        {
            // Hard links point at other entries: they must stay inside too.
            if entry.header().entry_type().is_hard_link() {
                let target =
                    mapped(&link, root_name)?.ok_or_else(|| CpError::UnsafeEntry(shown.clone()))?;
                let dst = dir.join(&rel);
                let _ = std::fs::remove_file(&dst);
                std::fs::hard_link(dir.join(target), &dst).map_err(io_err("linking", &dst))?;
                count += 1;
                continue;
            }
        }
        let dst = dir.join(&rel);
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).map_err(io_err("creating", p))?;
        }
        entry.unpack(&dst).map_err(io_err("writing", &dst))?;
        count += 1;
    }
    Ok(count)
}

/// What a local destination is now.
pub fn local_kind(p: &Path) -> DestKind {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => DestKind::Dir,
        Ok(_) => DestKind::File,
        Err(_) => DestKind::Missing,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "cpath_tests.rs"]
mod tests;
