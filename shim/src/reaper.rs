//! The shim's only `waitpid(-1)` caller: one thread reaps every child
//! (helpers, reparented container inits and exec processes, orphans) and
//! hands each exit to whoever registered for that pid.
//!
//! Children reach the shim in two ways: helpers it spawns itself, and
//! processes a helper created that were reparented to the shim (it is a
//! child subreaper) when the helper exited. A reparented process can exit
//! before the shim learns its pid from the helper, so exits nobody asked
//! for yet are kept for a while and claimed by a later registration that
//! started before the exit happened.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// How long an unclaimed exit is kept for a late registration.
const KEEP_UNCLAIMED: Duration = Duration::from_secs(60);

/// Called once with the exit code (128+N for a signal) of the pid it was
/// registered for.
pub type ExitCallback = Box<dyn FnOnce(i32) + Send>;

#[derive(Default)]
struct State {
    /// Exits nobody registered for yet: pid -> (code, when reaped).
    unclaimed: HashMap<i32, (i32, Instant)>,
    /// Registered callbacks.
    callbacks: HashMap<i32, ExitCallback>,
    /// Bumped whenever a child may have appeared (wakes an idle reaper).
    generation: u64,
}

/// Shared handle to the reaper.
#[derive(Clone, Default)]
pub struct Reaper {
    inner: Arc<(Mutex<State>, Condvar)>,
}

impl Reaper {
    /// Starts the reaping thread.
    pub fn start() -> std::io::Result<Reaper> {
        let reaper = Reaper::default();
        let r = reaper.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || r.run())?;
        Ok(reaper)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the reaper after spawning a child (it idles when it has none).
    pub fn child_spawned(&self) {
        self.lock().generation += 1;
        self.inner.1.notify_all();
    }

    /// Runs `cb` when `pid` exits; immediately when it already exited after
    /// `since` and nobody took that exit yet.
    pub fn on_exit(&self, pid: i32, since: Instant, cb: ExitCallback) {
        let mut st = self.lock();
        if let Some(&(code, at)) = st.unclaimed.get(&pid) {
            if at >= since {
                st.unclaimed.remove(&pid);
                drop(st);
                cb(code);
                return;
            }
            // An older process with the same pid: not ours.
            st.unclaimed.remove(&pid);
        }
        st.callbacks.insert(pid, cb);
    }

    /// Blocks until `pid` (a child spawned after `since`) exits.
    pub fn wait(&self, pid: i32, since: Instant) -> i32 {
        let (tx, rx) = std::sync::mpsc::channel();
        self.on_exit(
            pid,
            since,
            Box::new(move |code| {
                let _ = tx.send(code);
            }),
        );
        // The sender lives in the callback map until the exit arrives.
        rx.recv().unwrap_or(-1)
    }

    fn run(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), None) {
                Ok(status) => {
                    if let Some((pid, code)) = exit_of(status) {
                        self.dispatch(pid, code);
                    }
                }
                Err(nix::Error::EINTR) => {}
                Err(nix::Error::ECHILD) => {
                    // No child at all: sleep until one is spawned.
                    let st = self.lock();
                    let gen = st.generation;
                    let _ = self
                        .inner
                        .1
                        .wait_timeout_while(st, Duration::from_secs(5), |s| s.generation == gen);
                }
                Err(err) => {
                    tracing::error!(%err, "waitpid");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn dispatch(&self, pid: i32, code: i32) {
        let mut st = self.lock();
        if let Some(cb) = st.callbacks.remove(&pid) {
            drop(st);
            cb(code);
            return;
        }
        let now = Instant::now();
        st.unclaimed
            .retain(|_, (_, at)| now.duration_since(*at) < KEEP_UNCLAIMED);
        st.unclaimed.insert(pid, (code, now));
        tracing::debug!(pid, code, "reaped a process nobody waits for (yet)");
    }
}

/// (pid, exit code) of a terminated child; 128+N for signal N.
pub fn exit_of(status: WaitStatus) -> Option<(i32, i32)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as i32)),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_of_signals_are_128_plus_n() {
        let pid = Pid::from_raw(42);
        assert_eq!(exit_of(WaitStatus::Exited(pid, 3)), Some((42, 3)));
        assert_eq!(
            exit_of(WaitStatus::Signaled(
                pid,
                nix::sys::signal::Signal::SIGKILL,
                false
            )),
            Some((42, 137))
        );
        assert_eq!(exit_of(WaitStatus::StillAlive), None);
    }

    #[test]
    fn early_exit_is_claimed_by_a_later_registration_only_if_newer() {
        let r = Reaper::default();
        let before = Instant::now();
        r.dispatch(7, 1);
        let (tx, rx) = std::sync::mpsc::channel();
        let tx2 = tx.clone();
        r.on_exit(7, before, Box::new(move |c| tx.send(c).unwrap()));
        assert_eq!(rx.recv().unwrap(), 1);
        // An exit older than the registration belongs to a previous process.
        r.dispatch(8, 2);
        std::thread::sleep(Duration::from_millis(2));
        r.on_exit(8, Instant::now(), Box::new(move |c| tx2.send(c).unwrap()));
        assert!(rx.try_recv().is_err());
        r.dispatch(8, 3);
        assert_eq!(rx.recv().unwrap(), 3);
    }
}
