//! Reading CRI log lines back: a parser for one line, a whole-file parser and
//! a reassembler that joins `P` chunks with their closing `F`.
//!
//! Accepts what the kubelet accepts: an RFC 3339 timestamp with any number of
//! fractional digits and any offset, the stream, a tag field whose first
//! `:`-separated tag is `P` or `F` (later tags are ignored for forward
//! compatibility), one space, then the content up to the end of the line.

use chrono::{DateTime, Utc};

use super::Stream;

/// Errors parsing CRI log lines.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// A field separator was missing.
    #[error("CRI log line {line}: {field} is not found")]
    MissingField {
        /// 1-based line number (1 for a single-line parse).
        line: usize,
        /// The field that has no terminating space.
        field: &'static str,
    },
    /// The timestamp is not RFC 3339.
    #[error("CRI log line {line}: bad timestamp {value:?}")]
    Timestamp {
        /// 1-based line number.
        line: usize,
        /// The rejected timestamp text.
        value: String,
        /// Parser error.
        #[source]
        source: chrono::ParseError,
    },
    /// The stream is neither `stdout` nor `stderr`.
    #[error("CRI log line {line}: unexpected stream {value:?}")]
    Stream {
        /// 1-based line number.
        line: usize,
        /// The rejected stream text.
        value: String,
    },
    /// The first tag is neither `P` nor `F`.
    #[error("CRI log line {line}: unexpected tag {value:?}")]
    Tag {
        /// 1-based line number.
        line: usize,
        /// The rejected tag field.
        value: String,
    },
}

/// One parsed CRI log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLogLine {
    /// When the runtime read the bytes (converted to UTC).
    pub timestamp: DateTime<Utc>,
    /// Stream the bytes came from.
    pub stream: Stream,
    /// `true` for a `P` chunk: the logical line continues in a later line.
    pub partial: bool,
    /// Content without the file's line terminator.
    pub content: Vec<u8>,
}

/// Parses one CRI log line given as text (a trailing `\n` is allowed).
pub fn parse_cri_line(line: &str) -> Result<CriLogLine, ParseError> {
    parse_line_at(line.as_bytes(), 1)
}

/// Parses one CRI log line given as bytes: container output need not be UTF-8.
pub fn parse_cri_line_bytes(line: &[u8]) -> Result<CriLogLine, ParseError> {
    parse_line_at(line, 1)
}

/// Parses a whole CRI log file's contents; a final line without `\n` (a
/// writer caught mid-write) is parsed too.
pub fn parse_cri_log(data: &[u8]) -> Result<Vec<CriLogLine>, ParseError> {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    if body.is_empty() && data.is_empty() {
        return Ok(Vec::new());
    }
    body.split(|&b| b == b'\n')
        .enumerate()
        .map(|(i, line)| parse_line_at(line, i + 1))
        .collect()
}

fn parse_line_at(line: &[u8], lineno: usize) -> Result<CriLogLine, ParseError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let (ts, rest) = split_field(line, lineno, "timestamp")?;
    let (stream, rest) = split_field(rest, lineno, "stream type")?;
    let (tags, content) = split_field(rest, lineno, "log tag")?;

    let ts_text = String::from_utf8_lossy(ts);
    let timestamp = DateTime::parse_from_rfc3339(&ts_text)
        .map_err(|source| ParseError::Timestamp {
            line: lineno,
            value: ts_text.to_string(),
            source,
        })?
        .with_timezone(&Utc);
    let stream = Stream::from_cri(stream).ok_or_else(|| ParseError::Stream {
        line: lineno,
        value: String::from_utf8_lossy(stream).into_owned(),
    })?;
    let first_tag = tags.split(|&b| b == b':').next().unwrap_or(tags);
    let partial = match first_tag {
        b"P" => true,
        b"F" => false,
        _ => {
            return Err(ParseError::Tag {
                line: lineno,
                value: String::from_utf8_lossy(tags).into_owned(),
            })
        }
    };
    Ok(CriLogLine {
        timestamp,
        stream,
        partial,
        content: content.to_vec(),
    })
}

/// Splits at the first space: (field, rest after the space).
fn split_field<'a>(
    data: &'a [u8],
    line: usize,
    field: &'static str,
) -> Result<(&'a [u8], &'a [u8]), ParseError> {
    let idx = memchr::memchr(b' ', data).ok_or(ParseError::MissingField { line, field })?;
    Ok((&data[..idx], &data[idx + 1..]))
}

/// A logical line: the `P` chunks of one stream joined with their `F`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    /// Timestamp of the first chunk.
    pub timestamp: DateTime<Utc>,
    /// Stream of the line.
    pub stream: Stream,
    /// Joined content, without a terminator.
    pub content: Vec<u8>,
    /// `false` when the log ended before the closing `F` (the container's
    /// output ended without a newline, or the log is still being written).
    pub complete: bool,
}

/// Joins `P` chunks with their `F`, keeping a separate pending line per
/// stream (stdout and stderr chunks interleave in one file).
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: [Option<LogicalLine>; 2],
}

impl Reassembler {
    /// A reassembler with nothing pending.
    pub fn new() -> Reassembler {
        Reassembler::default()
    }

    /// Feeds one parsed line; returns the logical line it completes, if any.
    pub fn push(&mut self, line: CriLogLine) -> Option<LogicalLine> {
        let slot = &mut self.pending[stream_slot(line.stream)];
        let mut acc = match slot.take() {
            Some(mut acc) => {
                acc.content.extend_from_slice(&line.content);
                acc
            }
            None => LogicalLine {
                timestamp: line.timestamp,
                stream: line.stream,
                content: line.content,
                complete: false,
            },
        };
        if line.partial {
            *slot = Some(acc);
            None
        } else {
            acc.complete = true;
            Some(acc)
        }
    }

    /// Ends the input: returns the still-open lines (stdout first) as
    /// incomplete logical lines.
    pub fn finish(self) -> Vec<LogicalLine> {
        self.pending.into_iter().flatten().collect()
    }
}

fn stream_slot(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

/// Reassembles all `lines`, in order of completion, then the open ones.
pub fn reassemble(lines: impl IntoIterator<Item = CriLogLine>) -> Vec<LogicalLine> {
    let mut r = Reassembler::new();
    let mut out: Vec<LogicalLine> = lines.into_iter().filter_map(|l| r.push(l)).collect();
    out.extend(r.finish());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn parses_the_kubelet_examples() {
        let l = parse_cri_line("2016-10-06T00:17:09.669794202Z stdout P log content 1").unwrap();
        assert_eq!(
            l.timestamp,
            Utc.with_ymd_and_hms(2016, 10, 6, 0, 17, 9).unwrap()
                + chrono::Duration::nanoseconds(669_794_202)
        );
        assert_eq!(l.stream, Stream::Stdout);
        assert!(l.partial);
        assert_eq!(l.content, b"log content 1");

        let l = parse_cri_line("2016-10-06T00:17:09.669794203Z stderr F log content 2\n").unwrap();
        assert_eq!(l.stream, Stream::Stderr);
        assert!(!l.partial);
        assert_eq!(l.content, b"log content 2");
    }

    #[test]
    fn keeps_spaces_and_empty_content() {
        let l = parse_cri_line("2016-10-06T00:17:09Z stdout F  a  b ").unwrap();
        assert_eq!(l.content, b" a  b ");
        let l = parse_cri_line("2016-10-06T00:17:09Z stdout F \n").unwrap();
        assert_eq!(l.content, b"");
    }

    #[test]
    fn accepts_offsets_and_extra_tags() {
        let l = parse_cri_line("2016-10-06T02:17:09.5+02:00 stdout F:x:y hi").unwrap();
        assert_eq!(
            l.timestamp,
            Utc.with_ymd_and_hms(2016, 10, 6, 0, 17, 9).unwrap()
                + chrono::Duration::milliseconds(500)
        );
        assert!(!l.partial);
        assert_eq!(l.content, b"hi");
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(matches!(
            parse_cri_line("2016-10-06T00:17:09Z"),
            Err(ParseError::MissingField {
                field: "timestamp",
                ..
            })
        ));
        assert!(matches!(
            parse_cri_line("2016-10-06T00:17:09Z stdout"),
            Err(ParseError::MissingField {
                field: "stream type",
                ..
            })
        ));
        assert!(matches!(
            parse_cri_line("2016-10-06T00:17:09Z stdout F"),
            Err(ParseError::MissingField {
                field: "log tag",
                ..
            })
        ));
        assert!(matches!(
            parse_cri_line("yesterday stdout F x"),
            Err(ParseError::Timestamp { .. })
        ));
        assert!(matches!(
            parse_cri_line("2016-10-06T00:17:09Z stdin F x"),
            Err(ParseError::Stream { .. })
        ));
        assert!(matches!(
            parse_cri_line("2016-10-06T00:17:09Z stdout X x"),
            Err(ParseError::Tag { .. })
        ));
    }

    #[test]
    fn parses_non_utf8_content() {
        let l = parse_cri_line_bytes(b"2016-10-06T00:17:09Z stdout F \xff\xfe\r").unwrap();
        assert_eq!(l.content, b"\xff\xfe\r");
    }

    #[test]
    fn whole_log_reports_the_bad_line_number() {
        let data = b"2016-10-06T00:17:09Z stdout F a\nbad\n";
        match parse_cri_log(data) {
            Err(ParseError::MissingField { line, .. }) => assert_eq!(line, 2),
            other => panic!("unexpected {other:?}"),
        }
        assert!(parse_cri_log(b"").unwrap().is_empty());
        let lines = parse_cri_log(b"2016-10-06T00:17:09Z stdout F \n").unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].content, b"");
        // A torn last line (no terminator) still parses.
        let lines =
            parse_cri_log(b"2016-10-06T00:17:09Z stdout F a\n2016-10-06T00:17:09Z stderr P b")
                .unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].content, b"b");
    }

    #[test]
    fn reassembles_interleaved_streams() {
        let log = b"2016-10-06T00:17:01Z stdout P ab\n\
                    2016-10-06T00:17:02Z stderr P 12\n\
                    2016-10-06T00:17:03Z stdout F cd\n\
                    2016-10-06T00:17:04Z stderr P 34\n\
                    2016-10-06T00:17:05Z stdout F \n";
        let lines = reassemble(parse_cri_log(log).unwrap());
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].content, b"abcd");
        assert_eq!(lines[0].stream, Stream::Stdout);
        assert_eq!(
            lines[0].timestamp,
            Utc.with_ymd_and_hms(2016, 10, 6, 0, 17, 1).unwrap()
        );
        assert!(lines[0].complete);
        assert_eq!(lines[1].content, b"");
        assert!(lines[1].complete);
        assert_eq!(lines[2].content, b"1234");
        assert_eq!(lines[2].stream, Stream::Stderr);
        assert!(!lines[2].complete);
    }
}
