//! Interface counters of a pod's network namespace (`PodSandboxStats`
//! network usage), read from `/proc/thread-self/net/dev` by a short-lived
//! thread that has joined the namespace.

use std::io;
use std::path::{Path, PathBuf};

/// Errors reading a namespace's counters.
#[derive(Debug, thiserror::Error)]
pub enum NetdevError {
    /// The namespace file could not be opened or joined.
    #[error("joining network namespace {path}")]
    Join {
        /// The pinned namespace.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The counters file could not be read.
    #[error("reading /proc/thread-self/net/dev in {path}")]
    Read {
        /// The pinned namespace.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The reading thread could not be started or died.
    #[error("the namespace reader thread failed")]
    Thread(#[source] io::Error),
}

/// One interface's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Transmit errors.
    pub tx_errors: u64,
}

/// Parses `/proc/net/dev`: two header lines, then
/// `name: rx_bytes rx_packets rx_errs ... (8 rx fields) tx_bytes tx_packets tx_errs ...`.
/// Malformed lines are skipped.
pub fn parse(text: &str) -> Vec<InterfaceCounters> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if f.len() < 16 {
                return None;
            }
            Some(InterfaceCounters {
                name: name.trim().to_string(),
                rx_bytes: f[0],
                rx_errors: f[2],
                tx_bytes: f[8],
                tx_errors: f[10],
            })
        })
        .collect()
}

/// Counters of every interface in the namespace pinned at `netns`.
///
/// Blocking. A fresh thread joins the namespace so no pooled thread is
/// ever left in a pod's namespace; the thread ends with the read.
pub fn read_in(netns: &Path) -> Result<Vec<InterfaceCounters>, NetdevError> {
    let path = netns.to_path_buf();
    let handle = std::thread::Builder::new()
        .name("netdev".into())
        .spawn(move || -> Result<Vec<InterfaceCounters>, NetdevError> {
            let join = |source| NetdevError::Join {
                path: path.clone(),
                source,
            };
            let ns = std::fs::File::open(&path).map_err(join)?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| join(io::Error::from(e)))?;
            let text = std::fs::read_to_string("/proc/thread-self/net/dev").map_err(|source| {
                NetdevError::Read {
                    path: path.clone(),
                    source,
                }
            })?;
            Ok(parse(&text))
        })
        .map_err(NetdevError::Thread)?;
    handle
        .join()
        .map_err(|_| NetdevError::Thread(io::Error::other("netdev reader panicked")))?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0:    5212      41    3    0    0     0          0         0     1046      11    7    0    0     0       0          0
 bad: 1 2 3
";

    #[test]
    fn parses_every_interface_and_skips_broken_lines() {
        let got = parse(SAMPLE);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            InterfaceCounters {
                name: "eth0".into(),
                rx_bytes: 5212,
                rx_errors: 3,
                tx_bytes: 1046,
                tx_errors: 7,
            }
        );
        assert_eq!(got[0].name, "lo");
    }

    #[test]
    fn reads_the_namespace_it_is_given() {
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        // This process's own namespace: its interfaces are the host's.
        let got = read_in(Path::new("/proc/self/ns/net")).unwrap();
        assert!(got.iter().any(|i| i.name == "lo"), "{got:?}");
        let err = read_in(Path::new("/nonexistent/netns")).unwrap_err();
        assert!(matches!(err, NetdevError::Join { .. }), "{err:?}");
    }
}
