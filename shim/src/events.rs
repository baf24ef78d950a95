//! Task events (create, start, exit, delete, exec) published to the
//! client's Events service. They are a fast path only: clients also call
//! Wait and read exit.json, so a failed publish is logged, never fatal.

use std::path::PathBuf;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::topics;
use containerd_shim_protos::ttrpc::context::Context;

/// Something that happened to a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Task created.
    Create {
        /// Task id.
        id: String,
        /// Bundle.
        bundle: PathBuf,
        /// Init pid.
        pid: i32,
    },
    /// Init or exec started.
    Start {
        /// Task id.
        id: String,
        /// Exec id ("" for the init).
        exec_id: String,
        /// Pid.
        pid: i32,
    },
    /// Exec registered.
    ExecAdded {
        /// Task id.
        id: String,
        /// Exec id.
        exec_id: String,
    },
    /// A process exited.
    Exit {
        /// Task id.
        id: String,
        /// Exec id ("" for the init).
        exec_id: String,
        /// Pid.
        pid: i32,
        /// Exit code.
        code: i32,
        /// When.
        at: DateTime<Utc>,
    },
    /// The container's cgroup recorded an OOM kill (sent with its exit).
    Oom {
        /// Task id.
        id: String,
    },
    /// Task deleted.
    Delete {
        /// Task id.
        id: String,
        /// Init pid.
        pid: i32,
        /// Exit code.
        code: i32,
        /// When it exited.
        at: DateTime<Utc>,
    },
}

/// Where events go.
pub trait EventSink: Send + Sync {
    /// Publishes one event (best effort).
    fn publish(&self, event: Event);
}

/// Drops every event (tests, the `delete` action).
pub struct NoEvents;

impl EventSink for NoEvents {
    fn publish(&self, _event: Event) {}
}

/// Publishes to the client's Events ttrpc service.
pub struct Publisher {
    remote: Mutex<RemotePublisher>,
    namespace: String,
    /// The events socket, to reconnect after the client restarted.
    address: String,
}

impl Publisher {
    /// Wraps a publisher connected to `address`.
    pub fn new(remote: RemotePublisher, namespace: &str, address: &str) -> Publisher {
        Publisher {
            remote: Mutex::new(remote),
            namespace: namespace.to_string(),
            address: address.to_string(),
        }
    }
}

fn ts(at: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
        ..Default::default()
    }
}

fn as_u32(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// The topic and protobuf message of an event.
pub fn encode(event: Event) -> (&'static str, Box<dyn MessageDyn>) {
    match event {
        Event::Create { id, bundle, pid } => (
            topics::TASK_CREATE_EVENT_TOPIC,
            Box::new(TaskCreate {
                container_id: id,
                bundle: bundle.display().to_string(),
                pid: as_u32(pid),
                ..Default::default()
            }),
        ),
        Event::Start { id, exec_id, pid } if exec_id.is_empty() => (
            topics::TASK_START_EVENT_TOPIC,
            Box::new(TaskStart {
                container_id: id,
                pid: as_u32(pid),
                ..Default::default()
            }),
        ),
        Event::Start { id, exec_id, pid } => (
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            Box::new(TaskExecStarted {
                container_id: id,
                exec_id,
                pid: as_u32(pid),
                ..Default::default()
            }),
        ),
        Event::ExecAdded { id, exec_id } => (
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            Box::new(TaskExecAdded {
                container_id: id,
                exec_id,
                ..Default::default()
            }),
        ),
        Event::Exit {
            id,
            exec_id,
            pid,
            code,
            at,
        } => (
            topics::TASK_EXIT_EVENT_TOPIC,
            Box::new(TaskExit {
                container_id: id.clone(),
                id: if exec_id.is_empty() { id } else { exec_id },
                pid: as_u32(pid),
                exit_status: as_u32(code),
                exited_at: Some(ts(at)).into(),
                ..Default::default()
            }),
        ),
        Event::Oom { id } => (
            topics::TASK_OOM_EVENT_TOPIC,
            Box::new(TaskOOM {
                container_id: id,
                ..Default::default()
            }),
        ),
        Event::Delete { id, pid, code, at } => (
            topics::TASK_DELETE_EVENT_TOPIC,
            Box::new(TaskDelete {
                container_id: id.clone(),
                id,
                pid: as_u32(pid),
                exit_status: as_u32(code),
                exited_at: Some(ts(at)).into(),
                ..Default::default()
            }),
        ),
    }
}

impl EventSink for Publisher {
    fn publish(&self, event: Event) {
        let (topic, msg) = encode(event.clone());
        let mut remote = self
            .remote
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Err(err) = remote.publish(Context::default(), topic, &self.namespace, msg) else {
            return;
        };
        // berthd restarts while shims live on: reconnect once and retry.
        match RemotePublisher::new(&self.address) {
            Ok(fresh) => {
                *remote = fresh;
                let (topic, msg) = encode(event);
                if let Err(err) = remote.publish(Context::default(), topic, &self.namespace, msg) {
                    tracing::warn!(%err, topic, "publishing a task event");
                }
            }
            Err(e) => tracing::warn!(%err, reconnect = %e, topic, "publishing a task event"),
        }
    }
}

/// Converts a time for the Task API.
pub fn timestamp(at: DateTime<Utc>) -> Timestamp {
    ts(at)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exit_event_of_an_exec_names_the_exec() {
        let at = Utc::now();
        let (topic, msg) = encode(Event::Exit {
            id: "c".into(),
            exec_id: "e".into(),
            pid: 5,
            code: 137,
            at,
        });
        assert_eq!(topic, "/tasks/exit");
        let m = msg.downcast_ref::<TaskExit>().unwrap();
        assert_eq!((m.container_id.as_str(), m.id.as_str()), ("c", "e"));
        assert_eq!(m.exit_status, 137);
        assert_eq!(m.exited_at.seconds, at.timestamp());
    }
}
