//! End-to-end tests of the `berth` CLI (issue 6): the binary of this build
//! run against the harness berthd and its loopback registry, the way a
//! Docker user types it. Every test names its containers, images and
//! volumes uniquely and removes them (a [`Scope`] guard), so the tests run
//! in parallel; the few that need a daemon to themselves (system prune,
//! berthd restarts, a clean image store) start a private one.
#![allow(clippy::unwrap_used)]

mod common;

#[path = "cli/containers.rs"]
mod containers;
#[path = "cli/cp.rs"]
mod cp;
#[path = "cli/images.rs"]
mod images;
#[path = "cli/logs_exec.rs"]
mod logs_exec;
#[path = "cli/ps_inspect.rs"]
mod ps_inspect;
#[path = "cli/restart.rs"]
mod restart;
#[path = "cli/run.rs"]
mod run;
#[path = "cli/system.rs"]
mod system;
#[path = "cli/tutorial.rs"]
mod tutorial;
#[path = "cli/volumes.rs"]
mod volumes;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_conformance::harness::cli::{Cli, Output};
use berth_conformance::harness::{self, Berth};

/// The shared daemon and a CLI aimed at it (with its own HOME).
pub fn cli() -> (Arc<Berth>, Cli) {
    common::init_tracing();
    // Not common::berth(): its CRI client needs a tokio runtime and these
    // tests are plain threads driving processes.
    let b = harness::shared().unwrap_or_else(|e| panic!("{e}"));
    let c = Cli::for_berth(&b).unwrap_or_else(|e| panic!("{e}"));
    (b, c)
}

/// A unique lower-case name: `cli-<what>-<hex>`.
pub fn unique(what: &str) -> String {
    format!("cli-{what}-{}", harness::random_hex(4))
}

/// The busybox test image reference.
pub fn busybox() -> String {
    harness::images::BUSYBOX.reference()
}

/// Runs the CLI, panicking only if it could not be run at all.
#[track_caller]
pub fn berth(cli: &Cli, args: &[&str]) -> Output {
    cli.run(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs the CLI and requires exit code 0.
#[track_caller]
pub fn ok(cli: &Cli, args: &[&str]) -> Output {
    let out = berth(cli, args);
    assert!(out.success(), "{out}");
    out
}

/// `berth run -d --name NAME busybox sh -c SCRIPT`, which must succeed.
#[track_caller]
pub fn run_sh(cli: &Cli, name: &str, script: &str) -> Output {
    ok(
        cli,
        &["run", "-d", "--name", name, &busybox(), "sh", "-c", script],
    )
}

/// Requires exit `code` and `needle` in stderr.
#[track_caller]
pub fn fails(out: &Output, code: i32, needle: &str) {
    assert_eq!(out.code, Some(code), "{out}");
    assert!(
        out.stderr.contains(needle),
        "stderr should mention {needle:?}: {out}"
    );
}

/// Polls `f` every 100 ms until it gives `Some` or `timeout` passes.
pub fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `berth inspect NAME` parsed: Docker prints a JSON array of one object.
#[track_caller]
pub fn inspect(cli: &Cli, what: &str) -> serde_json::Value {
    let out = ok(cli, &["inspect", what]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("inspect output is not JSON ({e}): {out}"));
    let arr = v
        .as_array()
        .unwrap_or_else(|| panic!("inspect prints a JSON array: {out}"));
    assert_eq!(arr.len(), 1, "{out}");
    arr[0].clone()
}

/// The container's `State.Status` (`created`, `running`, `exited`).
pub fn state(cli: &Cli, name: &str) -> String {
    inspect(cli, name)["State"]["Status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until the container's state is `want`.
#[track_caller]
pub fn wait_state(cli: &Cli, name: &str, want: &str, timeout: Duration) {
    let got = eventually(timeout, || (state(cli, name) == want).then_some(()));
    assert!(
        got.is_some(),
        "{name} did not become {want} within {timeout:?}: {}",
        serde_json::to_string_pretty(&inspect(cli, name)["State"]).unwrap()
    );
}

/// `GET path` over plain HTTP/1.0 to 127.0.0.1:port; the body on 200.
pub fn http_get(port: u16, path: &str) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {text:?}"))?;
    if !head.starts_with("HTTP/1.") || !head.lines().next().unwrap_or("").contains(" 200") {
        return Err(format!("not a 200: {head:?}"));
    }
    Ok(body.to_string())
}

/// Retries [`http_get`] until it answers 200 (the server starts after `run -d` returns).
pub fn http_get_eventually(port: u16, path: &str, timeout: Duration) -> String {
    let mut last = String::new();
    eventually(timeout, || match http_get(port, path) {
        Ok(body) => Some(body),
        Err(e) => {
            last = e;
            None
        }
    })
    .unwrap_or_else(|| panic!("GET 127.0.0.1:{port}{path} never answered 200: {last}"))
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    common::free_port()
}

/// Removes what a test made, even when it fails: containers (`rm -f -v`),
/// images (`rmi -f`) and volumes (`volume rm -f`), in that order.
pub struct Scope<'a> {
    cli: &'a Cli,
    containers: RefCell<Vec<String>>,
    images: RefCell<Vec<String>>,
    volumes: RefCell<Vec<String>>,
}

impl<'a> Scope<'a> {
    /// An empty scope using `cli` for the cleanup.
    pub fn new(cli: &'a Cli) -> Self {
        Scope {
            cli,
            containers: RefCell::default(),
            images: RefCell::default(),
            volumes: RefCell::default(),
        }
    }

    /// A unique container name, removed at the end.
    pub fn container(&self, what: &str) -> String {
        let n = unique(what);
        self.containers.borrow_mut().push(n.clone());
        n
    }

    /// Registers a container name or id made another way.
    pub fn adopt_container(&self, id: &str) {
        self.containers.borrow_mut().push(id.to_string());
    }

    /// Registers an image reference or id to remove at the end.
    pub fn image(&self, reference: &str) -> String {
        self.images.borrow_mut().push(reference.to_string());
        reference.to_string()
    }

    /// A unique volume name, removed at the end.
    pub fn volume(&self, what: &str) -> String {
        let n = unique(what);
        self.volumes.borrow_mut().push(n.clone());
        n
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        for c in self.containers.borrow().iter() {
            let _ = self.cli.run(&["rm", "-f", "-v", c]);
        }
        for i in self.images.borrow().iter().rev() {
            let _ = self.cli.run(&["rmi", "-f", i]);
        }
        for v in self.volumes.borrow().iter() {
            let _ = self.cli.run(&["volume", "rm", "-f", v]);
        }
    }
}

/// Whether `s` is `n` lower-case hex digits.
pub fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether any ANSI escape is in the text (colours must be off on pipes).
pub fn has_escape(s: &str) -> bool {
    s.contains('\u{1b}')
}
