//! The FIFOs berthd hands to shims for exec stdio (ExecSync and streaming
//! exec): made 0600 in a root-only state dir, opened without blocking on
//! the shim's end.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use tokio::net::unix::pipe;

/// Makes a FIFO at `path` (mode 0600).
pub fn create(path: &Path) -> std::io::Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(std::io::Error::from)
}

/// Makes the FIFO and opens it for reading before the shim opens it for
/// writing: read-write, so EOF cannot arrive before the writer shows up.
/// Drop it once [`reader`] holds the real read end.
pub fn create_placeholder_reader(path: &Path) -> std::io::Result<pipe::Receiver> {
    create(path)?;
    pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
}

/// Opens the read end (EOF once every writer closed it).
pub fn reader(path: &Path) -> std::io::Result<pipe::Receiver> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    pipe::Receiver::from_file(f)
}

/// Opens the write end without waiting for a reader. The descriptor is
/// read-write (Linux allows it on FIFOs) so the open never fails with
/// ENXIO; berthd never reads from it.
pub fn writer(path: &Path) -> std::io::Result<pipe::Sender> {
    pipe::OpenOptions::new().read_write(true).open_sender(path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writer_before_reader_then_eof() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in");
        let keep = create_placeholder_reader(&path).unwrap();
        let mut w = writer(&path).unwrap();
        let mut r = reader(&path).unwrap();
        drop(keep);
        w.write_all(b"abc").await.unwrap();
        drop(w);
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"abc");
    }
}
