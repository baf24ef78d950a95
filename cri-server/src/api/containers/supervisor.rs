//! Restart policies and auto-remove, enforced by berthd: a task watches
//! container exits (the pod manager's event stream, with a periodic scan
//! as a safety net for lost events) and restarts per policy with Docker's
//! backoff, or removes `--rm` containers. At start-up, `always` and
//! `unless-stopped` containers found exited are started again.

use std::sync::{Arc, Weak};
use std::time::Duration;

use berth_proto::cri;
use tokio::sync::broadcast::error::RecvError;
use tracing::{info, info_span, warn, Instrument};

use super::engine::{Engine, Record};
use crate::pods::{now_nanos, ContainerState};

/// Docker's first restart delay.
pub const INITIAL_DELAY_MS: u64 = 100;
/// Docker's cap on the restart delay.
pub const MAX_DELAY_MS: u64 = 60_000;
/// A run at least this long resets the delay.
pub const RESET_AFTER: Duration = Duration::from_secs(10);
/// How often exited containers are looked at even without an event.
const SCAN_EVERY: Duration = Duration::from_secs(5);

/// Whether a policy restarts a container that exited with `exit_code`
/// after `restart_count` restarts. `daemon_start`: berthd is starting
/// (Docker restarts `always` containers then, even stopped ones).
pub fn should_restart(
    policy: (&str, u32),
    exit_code: i32,
    restart_count: u32,
    manually_stopped: bool,
    daemon_start: bool,
) -> bool {
    match policy.0 {
        "always" => daemon_start || !manually_stopped,
        "unless-stopped" => !manually_stopped,
        "on-failure" => {
            !manually_stopped && exit_code != 0 && (policy.1 == 0 || restart_count < policy.1)
        }
        _ => false,
    }
}

/// The next delay: doubled after a short run, back to the start after a
/// run of [`RESET_AFTER`] or more, capped.
pub fn next_delay_ms(previous_ms: u64, ran_for: Duration) -> u64 {
    if previous_ms == 0 || ran_for >= RESET_AFTER {
        INITIAL_DELAY_MS
    } else {
        previous_ms.saturating_mul(2).min(MAX_DELAY_MS)
    }
}

/// Starts the supervisor of `engine` (holding it weakly: it ends with it).
pub fn start(engine: &Arc<Engine>) {
    let weak = Arc::downgrade(engine);
    let events = engine.pods().subscribe_events();
    tokio::spawn(
        async move {
            if let Some(e) = weak.upgrade() {
                e.scan(true).await;
            }
            run(weak, events).await;
        }
        .instrument(info_span!("restart_supervisor")),
    );
}

async fn run(
    weak: Weak<Engine>,
    mut events: tokio::sync::broadcast::Receiver<cri::ContainerEventResponse>,
) {
    loop {
        let next = tokio::time::timeout(SCAN_EVERY, events.recv()).await;
        let Some(engine) = weak.upgrade() else {
            return;
        };
        match next {
            Ok(Ok(ev)) => {
                if ev.container_event_type == cri::ContainerEventType::ContainerStoppedEvent as i32
                {
                    let e = engine.clone();
                    tokio::spawn(async move { e.handle_exit(&ev.container_id, false).await });
                }
            }
            Ok(Err(RecvError::Lagged(_))) | Err(_) => engine.scan(false).await,
            Ok(Err(RecvError::Closed)) => return,
        }
    }
}

impl Engine {
    /// Looks at every exited container.
    async fn scan(self: &Arc<Self>, daemon_start: bool) {
        let records = match self.records().await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %crate::error::chain(&e), "restart supervisor cannot list containers");
                return;
            }
        };
        for r in records {
            if r.state.restarting && !daemon_start {
                continue;
            }
            let e = self.clone();
            let id = r.id().to_string();
            tokio::spawn(async move { e.handle_exit(&id, daemon_start).await });
        }
    }

    /// Applies the policy to `id` if it is exited.
    async fn handle_exit(self: &Arc<Self>, id: &str, daemon_start: bool) {
        let delay = {
            let _g = self.lock(id).await;
            let Some((mut rec, exit_code, finished_at, started_at)) = self.exited(id).await else {
                return;
            };
            if rec.spec.auto_remove {
                self.last_exit
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(id.to_string(), exit_code);
                match self.remove_locked(rec, true, true).await {
                    Ok(_) => info!(container_id = %id, "auto-removed after exit"),
                    Err(e) => {
                        warn!(container_id = %id, error = %crate::error::chain(&e), "auto-remove failed")
                    }
                }
                return;
            }
            if !should_restart(
                rec.policy(),
                exit_code,
                rec.state.restart_count,
                rec.state.manually_stopped,
                daemon_start,
            ) {
                return;
            }
            let ran = Duration::from_nanos(
                u64::try_from(finished_at.saturating_sub(started_at)).unwrap_or(0),
            );
            let delay = if daemon_start {
                0
            } else {
                next_delay_ms(rec.state.restart_delay_ms, ran)
            };
            rec.state.restart_delay_ms = delay.max(INITIAL_DELAY_MS);
            rec.state.restarting = true;
            if daemon_start {
                rec.state.manually_stopped = false;
            }
            if let Err(e) = self.save(&rec).await {
                warn!(container_id = %id, error = %crate::error::chain(&e), "cannot record restart");
                return;
            }
            (delay, finished_at)
        };
        tokio::time::sleep(Duration::from_millis(delay.0)).await;
        let _g = self.lock(id).await;
        // Re-checked: a Stop, Start or Remove may have come meanwhile.
        let Some((mut rec, _, finished_at, _)) = self.exited(id).await else {
            return;
        };
        if !rec.state.restarting || finished_at != delay.1 || rec.state.manually_stopped {
            return;
        }
        rec.state.restart_count += 1;
        let count = rec.state.restart_count;
        match self.start_locked(rec.clone(), false).await {
            Ok(mut r) => {
                r.state.restarting = false;
                r.state.restart_count = count;
                if let Err(e) = self.save(&r).await {
                    warn!(container_id = %id, error = %crate::error::chain(&e), "cannot record restart");
                }
                info!(container_id = %id, restart_count = count, "restarted by its policy");
            }
            Err(e) => {
                rec.state.restarting = false;
                let _ = self.save(&rec).await;
                warn!(container_id = %id, error = %crate::error::chain(&e), "restart by policy failed");
            }
        }
    }

    /// The record and (exit code, finished_at, started_at) of an exited container.
    async fn exited(&self, id: &str) -> Option<(Record, i32, i64, i64)> {
        let rec = self.reload(id).await.ok()?;
        let c = self.pods.load_container(id).await.ok()?;
        if c.rec.state != ContainerState::Exited {
            return None;
        }
        let finished = if c.rec.finished_at > 0 {
            c.rec.finished_at
        } else {
            now_nanos()
        };
        Some((rec, c.rec.exit_code, finished, c.rec.started_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        assert!(!should_restart(("no", 0), 1, 0, false, false));
        assert!(should_restart(("always", 0), 0, 9, false, false));
        assert!(!should_restart(("always", 0), 0, 0, true, false));
        assert!(should_restart(("always", 0), 0, 0, true, true));
        assert!(should_restart(("unless-stopped", 0), 0, 0, false, true));
        assert!(!should_restart(("unless-stopped", 0), 0, 0, true, true));
        assert!(!should_restart(("on-failure", 2), 0, 0, false, false));
        assert!(should_restart(("on-failure", 2), 1, 1, false, false));
        assert!(!should_restart(("on-failure", 2), 1, 2, false, false));
        assert!(should_restart(("on-failure", 0), 3, 100, false, false));
    }

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let short = Duration::from_millis(50);
        let mut d = next_delay_ms(0, short);
        assert_eq!(d, 100);
        d = next_delay_ms(d, short);
        assert_eq!(d, 200);
        for _ in 0..20 {
            d = next_delay_ms(d, short);
        }
        assert_eq!(d, MAX_DELAY_MS);
        assert_eq!(next_delay_ms(d, Duration::from_secs(11)), INITIAL_DELAY_MS);
    }
}
