//! Logs: the container's CRI log file (`<time> <stream> <P|F> <text>`
//! lines), partial lines joined, tail/since/until, and follow until the
//! container has exited and the file is read to its end.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::berth::v1 as api;
use tokio::sync::mpsc;
use tracing::debug;

use super::engine::Engine;
use super::error::ApiError;
use crate::pods::ContainerState;

/// How often a followed log is polled for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Joins CRI log lines into whole lines, per stream.
#[derive(Debug, Default)]
pub struct LogParser {
    partial: HashMap<String, (i64, Vec<u8>)>,
}

impl LogParser {
    /// Feeds one line (without its `\n`); returns a whole line when one ends.
    pub fn feed(&mut self, line: &[u8]) -> Option<api::LogEntry> {
        let mut parts = line.splitn(4, |b| *b == b' ');
        let time = std::str::from_utf8(parts.next()?).ok()?;
        let stream = std::str::from_utf8(parts.next()?).ok()?.to_string();
        let tag = parts.next()?;
        let text = parts.next().unwrap_or(&[]);
        let ts = chrono::DateTime::parse_from_rfc3339(time)
            .ok()?
            .timestamp_nanos_opt()?;
        let entry = self
            .partial
            .entry(stream.clone())
            .or_insert((ts, Vec::new()));
        entry.1.extend_from_slice(text);
        if tag.first() == Some(&b'P') {
            return None;
        }
        let (first_ts, mut data) = self.partial.remove(&stream)?;
        data.push(b'\n');
        Some(api::LogEntry {
            stream,
            timestamp: first_ts,
            data,
        })
    }
}

/// Whether an entry passes `since`/`until`.
fn in_window(e: &api::LogEntry, since: i64, until: i64) -> bool {
    (since == 0 || e.timestamp >= since) && (until == 0 || e.timestamp < until)
}

/// Parses whole lines of `buf`; returns the entries and how many bytes
/// were consumed (an unfinished last line is left).
pub fn parse_chunk(parser: &mut LogParser, buf: &[u8]) -> (Vec<api::LogEntry>, usize) {
    let mut out = Vec::new();
    let mut used = 0;
    while let Some(nl) = buf[used..].iter().position(|b| *b == b'\n') {
        if let Some(e) = parser.feed(&buf[used..used + nl]) {
            out.push(e);
        }
        used += nl + 1;
    }
    (out, used)
}

/// Keeps the last `tail` entries (negative: all).
pub fn apply_tail(mut entries: Vec<api::LogEntry>, tail: i64) -> Vec<api::LogEntry> {
    if let Ok(n) = usize::try_from(tail) {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    entries
}

fn read_from(path: &PathBuf, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

impl Engine {
    /// Streams the log of a container.
    pub async fn logs(
        self: &Arc<Self>,
        req: api::LogsRequest,
    ) -> Result<mpsc::Receiver<Result<api::LogEntry, tonic::Status>>, ApiError> {
        let rec = self.resolve(&req.container).await?;
        let c = self.pods.load_container(rec.id()).await?;
        if c.rec.log_path.is_empty() {
            return Err(ApiError::FailedPrecondition(format!(
                "container {} has no log file",
                rec.name()
            )));
        }
        let path = PathBuf::from(&c.rec.log_path);
        let p = path.clone();
        let buf = tokio::task::spawn_blocking(move || read_from(&p, 0))
            .await?
            .map_err(ApiError::io("reading log", &path))?;
        let mut parser = LogParser::default();
        let (entries, mut offset) = parse_chunk(&mut parser, &buf);
        let entries: Vec<_> = entries
            .into_iter()
            .filter(|e| in_window(e, req.since, req.until))
            .collect();
        let entries = apply_tail(entries, req.tail);
        let (tx, rx) = mpsc::channel(64);
        let engine = self.clone();
        let id = rec.id().to_string();
        tokio::spawn(async move {
            for e in entries {
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            if !req.follow {
                return;
            }
            loop {
                // Looked at before reading: lines written before the exit
                // are all in the file once it is recorded.
                let running = matches!(
                    engine.pods.load_container(&id).await.map(|c| c.rec.state),
                    Ok(ContainerState::Running)
                );
                let p = path.clone();
                let off = offset as u64;
                let chunk = match tokio::task::spawn_blocking(move || read_from(&p, off)).await {
                    Ok(Ok(b)) => b,
                    Ok(Err(err)) => {
                        debug!(?err, "log follow stopped");
                        return;
                    }
                    Err(_) => return,
                };
                let (new, used) = parse_chunk(&mut parser, &chunk);
                offset += used;
                for e in new
                    .into_iter()
                    .filter(|e| in_window(e, req.since, req.until))
                {
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
                if !running {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(FOLLOW_POLL) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn partial_lines_join_and_tail_applies() {
        let log = b"2024-01-01T00:00:00.000000001Z stdout P hel\n\
2024-01-01T00:00:01Z stderr F oops\n\
2024-01-01T00:00:02Z stdout F lo\n\
2024-01-01T00:00:03Z stdout F bye\n\
2024-01-01T00:00:04Z stdout F unfinish";
        let mut p = LogParser::default();
        let (entries, used) = parse_chunk(&mut p, log);
        assert_eq!(
            used,
            log.len() - "2024-01-01T00:00:04Z stdout F unfinish".len()
        );
        let texts: Vec<_> = entries
            .iter()
            .map(|e| {
                (
                    e.stream.as_str(),
                    String::from_utf8_lossy(&e.data).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            texts,
            vec![
                ("stderr", "oops\n".to_string()),
                ("stdout", "hello\n".to_string()),
                ("stdout", "bye\n".to_string())
            ]
        );
        // A joined line carries the time of its first part.
        assert_eq!(entries[1].timestamp, 1_704_067_200_000_000_001);
        let t = apply_tail(entries.clone(), 1);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].data, b"bye\n");
        assert_eq!(apply_tail(entries.clone(), -1).len(), 3);
        assert_eq!(apply_tail(entries.clone(), 0).len(), 0);
        let since = 1_704_067_202_000_000_000;
        assert_eq!(entries.iter().filter(|e| in_window(e, since, 0)).count(), 1);
        assert_eq!(entries.iter().filter(|e| in_window(e, 0, since)).count(), 2);
    }
}
