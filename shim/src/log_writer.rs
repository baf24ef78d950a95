//! CRI container log writer: turns a container's stdout/stderr bytes into the
//! kubelet's CRI log format (`<RFC3339Nano> <stdout|stderr> <P|F> <content>`).
//!
//! Line semantics follow what the kubelet's reader and containerd's CRI plugin
//! agree on:
//! - a line ending in `\n` is written as `F` with the `\n` removed; a `\r`
//!   directly before that `\n` is removed too (a CRLF terminator is one unit),
//!   any other `\r` is content;
//! - content longer than the maximum line size is cut into `P` chunks of
//!   exactly that size, followed by the rest as `F`; content of exactly the
//!   maximum size is a single `F`;
//! - bytes still pending when a stream reaches EOF are written as `P`: the
//!   container never finished that line, and the kubelet then prints it
//!   without a trailing newline.

mod parse;

pub use parse::{
    parse_cri_line, parse_cri_line_bytes, parse_cri_log, reassemble, CriLogLine, LogicalLine,
    ParseError, Reassembler,
};

use std::fmt;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write;
use std::num::NonZeroUsize;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

/// containerd's default `max_container_log_line_size` (16 KiB).
pub const DEFAULT_MAX_LINE_SIZE: usize = 16 * 1024;

/// Mode of a newly created log file: the kubelet and log collectors read it
/// as root or as the group, never as others.
const LOG_FILE_MODE: u32 = 0o640;
/// Mode of a log directory the writer has to create itself.
const LOG_DIR_MODE: u32 = 0o755;

/// Errors of the CRI log writer.
#[derive(Debug, thiserror::Error)]
pub enum LogWriterError {
    /// The log file's parent directory could not be created.
    #[error("cannot create log directory {path}")]
    CreateDir {
        /// Directory that could not be created.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The log file could not be opened (or created).
    #[error("cannot open container log {path}")]
    Open {
        /// Log file path.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing CRI lines to the log file failed; those lines are lost.
    #[error("cannot write {stream} lines to container log {path}")]
    Write {
        /// Log file path.
        path: PathBuf,
        /// Stream whose lines were being written.
        stream: Stream,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The log path has no parent directory (e.g. `/` or an empty path).
    #[error("container log path {path} has no file name or parent directory")]
    BadPath {
        /// The rejected path.
        path: PathBuf,
    },
}

/// Output stream of a container process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The stream's name as written in a CRI log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// Parses the CRI name of a stream (`stdout` / `stderr`).
    pub fn from_cri(name: &[u8]) -> Option<Stream> {
        match name {
            b"stdout" => Some(Stream::Stdout),
            b"stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Formats a timestamp the way CRI log lines carry it: UTC, always nine
/// fractional digits, `Z` suffix (e.g. `2016-10-06T00:17:09.669794202Z`).
pub fn format_timestamp(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Options of a [`LogWriter`].
#[derive(Debug, Clone, Copy)]
pub struct LogWriterOptions {
    /// Longest content of one CRI line; longer lines are split into `P`
    /// chunks. `None` disables splitting (a line is then buffered whole,
    /// however long: only for trusted output).
    pub max_line_size: Option<NonZeroUsize>,
    /// Clock for line timestamps; a seam so tests can pin the time.
    pub clock: fn() -> DateTime<Utc>,
}

impl Default for LogWriterOptions {
    fn default() -> Self {
        LogWriterOptions {
            max_line_size: NonZeroUsize::new(DEFAULT_MAX_LINE_SIZE),
            clock: Utc::now,
        }
    }
}

/// Writes one container's stdout and stderr into its CRI log file.
///
/// Each stream keeps its own buffer of a not yet terminated line, so bytes of
/// the two streams never mix within a line. All CRI lines produced by one
/// [`LogWriter::write_stream`] call go to the file in one `write`, so a
/// concurrent reader never sees half a batch under normal conditions.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: File,
    options: LogWriterOptions,
    /// Unterminated line per stream, indexed by [`Stream::index`].
    pending: [Vec<u8>; 2],
    /// Reused output buffer for one batch of CRI lines.
    out: Vec<u8>,
}

impl LogWriter {
    /// Opens (creating if needed) the CRI log at `path` with default options.
    pub fn open(path: impl Into<PathBuf>) -> Result<LogWriter, LogWriterError> {
        LogWriter::open_with(path, LogWriterOptions::default())
    }

    /// Opens (creating if needed) the CRI log at `path` with `options`.
    pub fn open_with(
        path: impl Into<PathBuf>,
        options: LogWriterOptions,
    ) -> Result<LogWriter, LogWriterError> {
        let path = path.into();
        let file = open_log_file(&path)?;
        Ok(LogWriter {
            path,
            file,
            options,
            pending: [Vec::new(), Vec::new()],
            out: Vec::new(),
        })
    }

    /// Path of the log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of `stream`'s current unterminated line not yet written.
    pub fn pending(&self, stream: Stream) -> &[u8] {
        &self.pending[stream.index()]
    }

    /// Feeds bytes read from `stream` and writes every CRI line they complete.
    ///
    /// On a write error the lines of this batch are lost (reported in the
    /// error); the pending partial line is kept, so later output stays
    /// well-formed.
    pub fn write_stream(&mut self, stream: Stream, data: &[u8]) -> Result<(), LogWriterError> {
        if data.is_empty() {
            return Ok(());
        }
        let ts = format_timestamp((self.options.clock)());
        let max = self.options.max_line_size.map(NonZeroUsize::get);
        let pending = &mut self.pending[stream.index()];
        let out = &mut self.out;
        out.clear();

        let mut rest = data;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let line = &rest[..nl];
            if pending.is_empty() {
                emit_complete(out, &ts, stream, strip_cr(line), max);
            } else {
                pending.extend_from_slice(line);
                emit_complete(out, &ts, stream, strip_cr(pending), max);
                pending.clear();
            }
            rest = &rest[nl + 1..];
        }
        if !rest.is_empty() {
            pending.extend_from_slice(rest);
            let consumed = emit_overflow(out, &ts, stream, pending, max);
            // One drain per call keeps a huge unterminated write linear.
            pending.drain(..consumed);
        }
        self.write_out(stream)
    }

    /// Writes `stream`'s pending unterminated line as a `P` line; called when
    /// the stream reaches EOF. Does nothing when nothing is pending.
    pub fn flush_partial(&mut self, stream: Stream) -> Result<(), LogWriterError> {
        let pending = &mut self.pending[stream.index()];
        if pending.is_empty() {
            return Ok(());
        }
        let ts = format_timestamp((self.options.clock)());
        self.out.clear();
        push_line(&mut self.out, &ts, stream, b'P', pending);
        pending.clear();
        self.write_out(stream)
    }

    /// [`LogWriter::flush_partial`] for both streams.
    pub fn flush_all(&mut self) -> Result<(), LogWriterError> {
        self.flush_partial(Stream::Stdout)?;
        self.flush_partial(Stream::Stderr)
    }

    /// Reopens the log path (ReopenContainerLog: the kubelet renamed the old
    /// file and expects new lines in a new file at the same path).
    ///
    /// The new file is opened before the old one is let go, so on failure the
    /// writer keeps writing to the old file. Pending partial lines carry over.
    pub fn reopen(&mut self) -> Result<(), LogWriterError> {
        let file = open_log_file(&self.path)?;
        self.file = file;
        tracing::debug!(path = %self.path.display(), "reopened container log");
        Ok(())
    }

    fn write_out(&mut self, stream: Stream) -> Result<(), LogWriterError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.out);
        self.out.clear();
        result.map_err(|source| LogWriterError::Write {
            path: self.path.clone(),
            stream,
            source,
        })
    }
}

/// Opens a CRI log for appending, creating it (0640) and its directory.
fn open_log_file(path: &Path) -> Result<File, LogWriterError> {
    let parent = match path.parent() {
        Some(p) if path.file_name().is_some() => p,
        _ => {
            return Err(LogWriterError::BadPath {
                path: path.to_path_buf(),
            })
        }
    };
    if !parent.as_os_str().is_empty() {
        DirBuilder::new()
            .recursive(true)
            .mode(LOG_DIR_MODE)
            .create(parent)
            .map_err(|source| LogWriterError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
    }
    // std already opens with O_CLOEXEC; asking again documents that the fd
    // must not leak into container processes the shim spawns.
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(LOG_FILE_MODE)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| LogWriterError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// Drops one `\r` that directly precedes the (already removed) `\n`.
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Emits a terminated line: `P` chunks of `max` bytes, then the rest as `F`
/// (an empty line is one empty `F`).
fn emit_complete(
    out: &mut Vec<u8>,
    ts: &str,
    stream: Stream,
    mut content: &[u8],
    max: Option<usize>,
) {
    if let Some(max) = max {
        while content.len() > max {
            push_line(out, ts, stream, b'P', &content[..max]);
            content = &content[max..];
        }
    }
    push_line(out, ts, stream, b'F', content);
}

/// Emits `P` chunks from an unterminated line while more than `max` bytes of
/// it are certain content; returns how many bytes were emitted.
///
/// A trailing `\r` is not counted: if the next byte is `\n` it belongs to the
/// terminator, so a line of exactly `max` bytes plus CRLF split across reads
/// still becomes a single `F`.
fn emit_overflow(
    out: &mut Vec<u8>,
    ts: &str,
    stream: Stream,
    pending: &[u8],
    max: Option<usize>,
) -> usize {
    let Some(max) = max else {
        return 0;
    };
    let certain = strip_cr(pending).len();
    let mut consumed = 0;
    while certain - consumed > max {
        push_line(out, ts, stream, b'P', &pending[consumed..consumed + max]);
        consumed += max;
    }
    consumed
}

/// Appends one CRI line.
fn push_line(out: &mut Vec<u8>, ts: &str, stream: Stream, tag: u8, content: &[u8]) {
    out.reserve(ts.len() + 10 + content.len());
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.push(b' ');
    out.push(tag);
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
}

#[cfg(test)]
mod tests;
