//! Terminal decisions (TTY, colour, progress style) and the raw mode
//! `-t` sessions need, restored when the guard drops.

use std::io::IsTerminal;
use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::termios::{self, SetArg, Termios};

/// Terminal failures.
#[derive(Debug, thiserror::Error)]
pub enum TermError {
    /// tcgetattr/tcsetattr failed.
    #[error("{what} the terminal")]
    Termios {
        /// What was being done.
        what: &'static str,
        /// The errno.
        #[source]
        source: nix::Error,
    },
}

/// Whether colour may be used: only on a terminal, never with `NO_COLOR`
/// set (to anything non-empty, as no-color.org says).
pub fn use_color(is_tty: bool, no_color: Option<&str>) -> bool {
    is_tty && no_color.is_none_or(str::is_empty)
}

/// Colour for stdout, from the real environment.
pub fn stdout_color() -> bool {
    use_color(
        std::io::stdout().is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
    )
}

/// Colour for stderr, from the real environment.
pub fn stderr_color() -> bool {
    use_color(
        std::io::stderr().is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
    )
}

/// Whether stdin is a terminal.
pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// Whether stdout is a terminal.
pub fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// Whether stderr is a terminal.
pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// The terminal's size (columns, rows) on `fd`, if it is one.
pub fn window_size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: TIOCGWINSZ writes one `winsize` into the valid, exclusively
    // borrowed struct; the fd is borrowed for the call's duration.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

/// Puts stdin's terminal in raw mode until dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Enters raw mode on stdin (a no-op error if stdin is not a terminal).
    pub fn enter() -> Result<RawMode, TermError> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        let saved = termios::tcgetattr(fd).map_err(|source| TermError::Termios {
            what: "reading the mode of",
            source,
        })?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).map_err(|source| TermError::Termios {
            what: "setting raw mode on",
            source,
        })?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let stdin = std::io::stdin();
        if let Err(e) = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &self.saved) {
            tracing::warn!(error = %e, "restoring the terminal mode");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_tty_without_no_color() {
        assert!(use_color(true, None));
        assert!(!use_color(false, None));
        assert!(!use_color(true, Some("1")));
        assert!(use_color(true, Some("")));
        assert!(!use_color(false, Some("1")));
    }
}
