use super::*;
use chrono::TimeZone;
use std::os::unix::fs::PermissionsExt;

const TS: &str = "2016-10-06T00:17:09.669794202Z";

fn fixed_clock() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2016, 10, 6, 0, 17, 9).unwrap()
        + chrono::Duration::nanoseconds(669_794_202)
}

fn whole_second_clock() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 59).unwrap()
}

fn writer(dir: &tempfile::TempDir, max: usize) -> LogWriter {
    LogWriter::open_with(
        dir.path().join("c.log"),
        LogWriterOptions {
            max_line_size: NonZeroUsize::new(max),
            clock: fixed_clock,
        },
    )
    .unwrap()
}

fn contents(w: &LogWriter) -> String {
    String::from_utf8(std::fs::read(w.path()).unwrap()).unwrap()
}

/// Expected CRI lines for the fixed clock: `(stream, tag, content)`.
fn expect(lines: &[(&str, char, &str)]) -> String {
    lines
        .iter()
        .map(|(s, t, c)| format!("{TS} {s} {t} {c}\n"))
        .collect()
}

#[test]
fn writes_the_exact_cri_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(&dir, DEFAULT_MAX_LINE_SIZE);
    w.write_stream(Stream::Stdout, b"hello world\n").unwrap();
    w.write_stream(Stream::Stderr, b"oops\n").unwrap();
    assert_eq!(
        contents(&w),
        "2016-10-06T00:17:09.669794202Z stdout F hello world\n\
         2016-10-06T00:17:09.669794202Z stderr F oops\n"
    );
}

#[test]
fn timestamp_always_has_nine_digits_and_z() {
    assert_eq!(
        format_timestamp(whole_second_clock()),
        "2024-02-29T23:59:59.000000000Z"
    );
    // The real clock, checked by shape.
    let dir = tempfile::tempdir().unwrap();
    let mut w = LogWriter::open(dir.path().join("c.log")).unwrap();
    w.write_stream(Stream::Stdout, b"x\n").unwrap();
    let text = contents(&w);
    let ts = text.split(' ').next().unwrap();
    assert_eq!(ts.len(), TS.len(), "{ts}");
    let b = ts.as_bytes();
    for (i, c) in b.iter().enumerate() {
        match i {
            4 | 7 => assert_eq!(*c, b'-', "{ts}"),
            10 => assert_eq!(*c, b'T', "{ts}"),
            13 | 16 => assert_eq!(*c, b':', "{ts}"),
            19 => assert_eq!(*c, b'.', "{ts}"),
            29 => assert_eq!(*c, b'Z', "{ts}"),
            _ => assert!(c.is_ascii_digit(), "{ts}"),
        }
    }
    let parsed = parse_cri_line(text.trim_end_matches('\n')).unwrap();
    let age = Utc::now() - parsed.timestamp;
    assert!(age >= chrono::Duration::zero() && age < chrono::Duration::seconds(60));
}

#[test]
fn splits_long_lines_at_exact_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(&dir, 8);
    w.write_stream(Stream::Stdout, b"abcdefgh\n").unwrap(); // exactly max
    w.write_stream(Stream::Stdout, b"abcdefghi\n").unwrap(); // max + 1
    w.write_stream(Stream::Stdout, b"0123456701234567\n")
        .unwrap(); // 2 * max
    w.write_stream(Stream::Stdout, b"01234567012345678\n")
        .unwrap(); // 2 * max + 1
    assert_eq!(
        contents(&w),
        expect(&[
            ("stdout", 'F', "abcdefgh"),
            ("stdout", 'P', "abcdefgh"),
            ("stdout", 'F', "i"),
            ("stdout", 'P', "01234567"),
            ("stdout", 'F', "01234567"),
            ("stdout", 'P', "01234567"),
            ("stdout", 'P', "01234567"),
            ("stdout", 'F', "8"),
        ])
    );
}

#[test]
fn unterminated_line_is_split_as_soon_as_it_exceeds_max() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(&dir, 8);
    w.write_stream(Stream::Stdout, b"abcde").unwrap();
    w.write_stream(Stream::Stdout, b"fgh").unwrap(); // exactly max: still pending
    assert_eq!(contents(&w), "");
    assert_eq!(w.pending(Stream::Stdout), b"abcdefgh");
    w.write_stream(Stream::Stdout, b"ij").unwrap(); // max + 2
    assert_eq!(contents(&w), expect(&[("stdout", 'P', "abcdefgh")]));
    assert_eq!(w.pending(Stream::Stdout), b"ij");
    // A large unterminated write is cut into max-size chunks at once.
    w.write_stream(Stream::Stdout, &[b'z'; 20]).unwrap();
    w.write_stream(Stream::Stdout, b"\n").unwrap();
    assert_eq!(
        contents(&w),
        expect(&[
            ("stdout", 'P', "abcdefgh"),
            ("stdout", 'P', "ijzzzzzz"),
            ("stdout", 'P', "zzzzzzzz"),
            ("stdout", 'F', "zzzzzz"),
        ])
    );
}

#[test]
fn writes_several_lines_of_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(&dir, DEFAULT_MAX_LINE_SIZE);
    w.write_stream(Stream::Stdout, b"one\ntwo\nthree\nfour")
        .unwrap();
    assert_eq!(
        contents(&w),
        expect(&[
            ("stdout", 'F', "one"),
            ("stdout", 'F', "two"),
            ("stdout", 'F', "three"),
        ])
    );
    assert_eq!(w.pending(Stream::Stdout), b"four");
}

#[test]
fn joins_a_partial_line_across_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(&dir, DEFAULT_MAX_LINE_SIZE);
    w.write_stream(Stream::Stdout, b"hel").unwrap();
    assert_eq!(contents(&w), "");
    w.write_stream(Stream::Stdout, b"lo\nwor").unwrap();
    w.write_stream(Stream::Stdout, b"").unwrap();
    w.write_stream(Stream::Stdout, b"ld\n").unwrap();
    assert_eq!(
        contents(&w),
        expect(&[("stdout", 'F', "hello"), ("stdout", 'F', "world")])
    );
}

#[test]
fn streams_keep_separate_partial_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(&dir, DEFAULT_MAX_LINE_SIZE);
    w.write_stream(Stream::Stdout, b"a").unwrap();
    w.write_stream(Stream::Stderr, b"1").unwrap();
    w.write_stream(Stream::Stdout, b"b\n").unwrap();
    w.write_stream(Stream::Stderr, b"2").unwrap();
    w.write_stream(Stream::Stdout, b"c\n").unwrap();
    w.write_stream(Stream::Stderr, b"3\n").unwrap();
    assert_eq!(
        contents(&w),
        expect(&[
            ("stdout", 'F', "ab"),
            ("stdout", 'F', "c"),
            ("stderr", 'F', "123"),
        ])
    );
}

#[test]
fn crlf_terminator_is_stripped_and_other_cr_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(&dir, DEFAULT_MAX_LINE_SIZE);
    w.write_stream(Stream::Stdout, b"dos\r\n").unwrap();
    w.write_stream(Stream::Stdout, b"split\r").unwrap();
    w.write_stream(Stream::Stdout, b"\n").unwrap();
    w.write_stream(Stream::Stdout, b"mid\rdle\n").unwrap();
    w.write_stream(Stream::Stdout, b"two\r\r\n").unwrap();
    w.write_stream(Stream::Stdout, b"\r\n").unwrap();
    assert_eq!(
        contents(&w),
        expect(&[
            ("stdout", 'F', "dos"),
            ("stdout", 'F', "split"),
            ("stdout", 'F', "mid\rdle"),
            ("stdout", 'F', "two\r"),
            ("stdout", 'F', ""),
        ])
    );
}

#[test]
fn cr_before_split_point_waits_for_the_next_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(&dir, 4);
    // max bytes + CR: the CR may be half of a CRLF, so no P yet.
    w.write_stream(Stream::Stdout, b"abcd\r").unwrap();
    assert_eq!(contents(&w), "");
    w.write_stream(Stream::Stdout, b"\n").unwrap();
    // Same, but the CR turns out to be content.
    w.write_stream(Stream::Stdout, b"efgh\r").unwrap();
    w.write_stream(Stream::Stdout, b"x\n").unwrap();
    assert_eq!(
        contents(&w),
        expect(&[
            ("stdout", 'F', "abcd"),
            ("stdout", 'P', "efgh"),
            ("stdout", 'F', "\rx"),
        ])
    );
}

#[test]
fn empty_lines_are_empty_full_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(&dir, DEFAULT_MAX_LINE_SIZE);
    w.write_stream(Stream::Stdout, b"\n\n").unwrap();
    w.write_stream(Stream::Stderr, b"\n").unwrap();
    assert_eq!(
        contents(&w),
        expect(&[
            ("stdout", 'F', ""),
            ("stdout", 'F', ""),
            ("stderr", 'F', "")
        ])
    );
}

#[test]
fn flush_partial_writes_pending_as_p_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(&dir, DEFAULT_MAX_LINE_SIZE);
    w.write_stream(Stream::Stdout, b"no newline").unwrap();
    w.write_stream(Stream::Stderr, b"err tail").unwrap();
    w.flush_partial(Stream::Stdout).unwrap();
    w.flush_partial(Stream::Stdout).unwrap();
    assert_eq!(contents(&w), expect(&[("stdout", 'P', "no newline")]));
    assert_eq!(w.pending(Stream::Stderr), b"err tail");
    w.flush_all().unwrap();
    assert_eq!(
        contents(&w),
        expect(&[("stdout", 'P', "no newline"), ("stderr", 'P', "err tail")])
    );
}

#[test]
fn creates_parent_dirs_with_mode_0640_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pod/ctr/0.log");
    {
        let mut w = LogWriter::open(&path).unwrap();
        w.write_stream(Stream::Stdout, b"first\n").unwrap();
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    // The process umask can only remove bits.
    assert_eq!(mode & !0o640, 0, "mode {mode:o}");
    assert_ne!(mode & 0o600, 0, "mode {mode:o}");
    let mut w = LogWriter::open(&path).unwrap();
    w.write_stream(Stream::Stdout, b"second\n").unwrap();
    let lines = parse_cri_log(&std::fs::read(&path).unwrap()).unwrap();
    let contents: Vec<&[u8]> = lines.iter().map(|l| l.content.as_slice()).collect();
    assert_eq!(contents, vec![&b"first"[..], &b"second"[..]]);
}

#[test]
fn log_fd_is_close_on_exec() {
    let dir = tempfile::tempdir().unwrap();
    let w = writer(&dir, 8);
    let fd = std::os::fd::AsRawFd::as_raw_fd(&w.file);
    let flags = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("flags:").map(|v| v.trim().to_string()))
        .unwrap();
    let flags = u32::from_str_radix(&flags, 8).unwrap();
    assert_ne!(flags & libc::O_CLOEXEC as u32, 0, "flags {flags:o}");
    assert_ne!(flags & libc::O_APPEND as u32, 0, "flags {flags:o}");
}

#[test]
fn rejects_a_path_without_file_name() {
    assert!(matches!(
        LogWriter::open("/"),
        Err(LogWriterError::BadPath { .. })
    ));
}

#[test]
fn open_error_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the log file should be.
    let path = dir.path().join("is-a-dir");
    std::fs::create_dir(&path).unwrap();
    let err = LogWriter::open(&path).unwrap_err();
    assert!(matches!(err, LogWriterError::Open { .. }));
    assert!(err.to_string().contains("is-a-dir"), "{err}");
}

#[test]
fn reopen_after_rename_writes_to_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(&dir, DEFAULT_MAX_LINE_SIZE);
    w.write_stream(Stream::Stdout, b"old\npart").unwrap();
    let rotated = dir.path().join("c.log.20161006-001709");
    std::fs::rename(w.path(), &rotated).unwrap();
    // Before the reopen, lines still go to the renamed file, as with the
    // kubelet's rename-then-reopen sequence.
    w.write_stream(Stream::Stderr, b"late\n").unwrap();
    w.reopen().unwrap();
    w.write_stream(Stream::Stdout, b"ial\nnew\n").unwrap();
    assert_eq!(
        String::from_utf8(std::fs::read(&rotated).unwrap()).unwrap(),
        expect(&[("stdout", 'F', "old"), ("stderr", 'F', "late")])
    );
    assert_eq!(
        contents(&w),
        expect(&[("stdout", 'F', "partial"), ("stdout", 'F', "new")])
    );
}

#[test]
fn failed_reopen_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(&dir, DEFAULT_MAX_LINE_SIZE);
    let rotated = dir.path().join("rotated.log");
    std::fs::rename(w.path(), &rotated).unwrap();
    std::fs::create_dir(w.path()).unwrap(); // the path cannot be a file now
    assert!(matches!(w.reopen(), Err(LogWriterError::Open { .. })));
    w.write_stream(Stream::Stdout, b"kept\n").unwrap();
    assert_eq!(
        String::from_utf8(std::fs::read(&rotated).unwrap()).unwrap(),
        expect(&[("stdout", 'F', "kept")])
    );
}

/// xorshift64*: a tiny seeded PRNG so the round trip is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A byte biased towards what makes line handling interesting.
    fn byte(&mut self) -> u8 {
        match self.below(100) {
            0..=1 => b'\n',
            2 => b'\r',
            3 => b' ',
            4..=6 => self.below(256) as u8,
            _ => b'a' + self.below(26) as u8,
        }
    }
}

/// What the kubelet reconstructs from the container's raw bytes: every CRLF
/// terminator becomes LF, everything else is kept.
fn normalize_crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for &b in raw {
        if b == b'\n' && out.last() == Some(&b'\r') {
            out.pop();
        }
        out.push(b);
    }
    out
}

#[test]
fn ten_megabytes_round_trip_byte_for_byte() {
    const TOTAL: usize = 10 * 1024 * 1024;
    const MAX: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let mut w = LogWriter::open_with(
        dir.path().join("c.log"),
        LogWriterOptions {
            max_line_size: NonZeroUsize::new(MAX),
            clock: Utc::now,
        },
    )
    .unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut raw: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut written = 0;
    while written < TOTAL {
        let stream = if rng.below(3) == 0 {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        // Mostly pipe-sized reads, sometimes tiny ones, sometimes a run
        // without any newline far longer than MAX.
        let len = match rng.below(10) {
            0 => 1 + rng.below(4) as usize,
            1 => 3 * MAX + rng.below(5000) as usize,
            _ => 1 + rng.below(4096) as usize,
        };
        let no_newline = rng.below(10) == 0;
        let chunk: Vec<u8> = (0..len)
            .map(|_| match rng.byte() {
                b'\n' if no_newline => b'x',
                b => b,
            })
            .collect();
        w.write_stream(stream, &chunk).unwrap();
        raw[stream.index()].extend_from_slice(&chunk);
        written += len;
    }
    w.flush_all().unwrap();

    let lines = parse_cri_log(&std::fs::read(w.path()).unwrap()).unwrap();
    assert!(lines.iter().all(|l| l.content.len() <= MAX));
    assert!(lines.iter().any(|l| l.partial && l.content.len() == MAX));
    assert!(lines.windows(2).all(|p| p[0].timestamp <= p[1].timestamp));
    let mut rebuilt: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    for line in reassemble(lines) {
        let out = &mut rebuilt[line.stream.index()];
        out.extend_from_slice(&line.content);
        if line.complete {
            out.push(b'\n');
        }
    }
    for s in [Stream::Stdout, Stream::Stderr] {
        let want = normalize_crlf(&raw[s.index()]);
        let got = &rebuilt[s.index()];
        assert_eq!(got.len(), want.len(), "{s} length");
        assert!(*got == want, "{s} bytes differ");
    }
}
