//! Task events (create, start, exit, delete, exec) published to the
//! client's Events service. They are a fast path only: clients also call
//! Wait and read exit.json, so a failed publish is logged, never fatal.

use std::path::PathBuf;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use containerd_shim_protos::api::ForwardRequest;
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim_sync::EventsClient;
use containerd_shim_protos::topics;
use containerd_shim_protos::ttrpc;
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

/// Why the events service could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Connecting to the client's socket failed.
    #[error("connecting to the events service at {address}: {source}")]
    Connect {
        /// The socket.
        address: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The ttrpc client could not be set up on the connection.
    #[error("ttrpc client for {address}: {source}")]
    Client {
        /// The socket.
        address: String,
        /// The ttrpc error.
        #[source]
        source: ttrpc::Error,
    },
    /// The Forward call failed.
    #[error("forwarding {topic}: {source}")]
    Forward {
        /// The event topic.
        topic: &'static str,
        /// The ttrpc error.
        #[source]
        source: ttrpc::Error,
    },
}

/// Publishes to the client's Events ttrpc service.
///
/// The envelope is built by hand rather than with containerd-shim's
/// `RemotePublisher`: that one names the event through protobuf
/// reflection, which builds the descriptors of every proto file the event
/// depends on, and those stay in the heap (and their code resident) of
/// every idle shim.
pub struct Publisher {
    client: Mutex<EventsClient>,
    namespace: String,
    /// The events socket, to reconnect after the client restarted.
    address: String,
}

fn connect(address: &str) -> Result<EventsClient, PublishError> {
    use std::os::fd::IntoRawFd;
    let path = address.strip_prefix("unix://").unwrap_or(address);
    let stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| PublishError::Connect {
            address: address.to_string(),
            source,
        })?;
    let client =
        ttrpc::Client::new(stream.into_raw_fd()).map_err(|source| PublishError::Client {
            address: address.to_string(),
            source,
        })?;
    Ok(EventsClient::new(client))
}

impl Publisher {
    /// Connects to the Events service at `address` (`unix://` optional).
    pub fn connect(address: &str, namespace: &str) -> Result<Publisher, PublishError> {
        Ok(Publisher {
            client: Mutex::new(connect(address)?),
            namespace: namespace.to_string(),
            address: address.to_string(),
        })
    }

    fn forward(
        &self,
        client: &EventsClient,
        topic: &'static str,
        event: &Any,
    ) -> Result<(), PublishError> {
        let req = ForwardRequest {
            envelope: Some(Envelope {
                timestamp: Some(ts(Utc::now())).into(),
                namespace: self.namespace.clone(),
                topic: topic.to_string(),
                event: Some(event.clone()).into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        client
            .forward(Context::default(), &req)
            .map(drop)
            .map_err(|source| PublishError::Forward { topic, source })
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

/// An event message as the envelope carries it: the type URL is the
/// message's full protobuf name (what containerd's `typeurl` registers and
/// containerd-shim's publisher sends), the value its encoding.
fn any<M: Message>(full_name: &str, msg: &M) -> Any {
    Any {
        type_url: full_name.to_string(),
        // Encoding to a Vec only fails past 2 GiB.
        value: msg.write_to_bytes().unwrap_or_default(),
        ..Default::default()
    }
}

/// The topic and the packed protobuf message of an event.
pub fn encode(event: Event) -> (&'static str, Any) {
    match event {
        Event::Create { id, bundle, pid } => (
            topics::TASK_CREATE_EVENT_TOPIC,
            any(
                "containerd.events.TaskCreate",
                &TaskCreate {
                    container_id: id,
                    bundle: bundle.display().to_string(),
                    pid: as_u32(pid),
                    ..Default::default()
                },
            ),
        ),
        Event::Start { id, exec_id, pid } if exec_id.is_empty() => (
            topics::TASK_START_EVENT_TOPIC,
            any(
                "containerd.events.TaskStart",
                &TaskStart {
                    container_id: id,
                    pid: as_u32(pid),
                    ..Default::default()
                },
            ),
        ),
        Event::Start { id, exec_id, pid } => (
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            any(
                "containerd.events.TaskExecStarted",
                &TaskExecStarted {
                    container_id: id,
                    exec_id,
                    pid: as_u32(pid),
                    ..Default::default()
                },
            ),
        ),
        Event::ExecAdded { id, exec_id } => (
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            any(
                "containerd.events.TaskExecAdded",
                &TaskExecAdded {
                    container_id: id,
                    exec_id,
                    ..Default::default()
                },
            ),
        ),
        Event::Exit {
            id,
            exec_id,
            pid,
            code,
            at,
        } => (
            topics::TASK_EXIT_EVENT_TOPIC,
            any(
                "containerd.events.TaskExit",
                &TaskExit {
                    container_id: id.clone(),
                    id: if exec_id.is_empty() { id } else { exec_id },
                    pid: as_u32(pid),
                    exit_status: as_u32(code),
                    exited_at: Some(ts(at)).into(),
                    ..Default::default()
                },
            ),
        ),
        Event::Oom { id } => (
            topics::TASK_OOM_EVENT_TOPIC,
            any(
                "containerd.events.TaskOOM",
                &TaskOOM {
                    container_id: id,
                    ..Default::default()
                },
            ),
        ),
        Event::Delete { id, pid, code, at } => (
            topics::TASK_DELETE_EVENT_TOPIC,
            any(
                "containerd.events.TaskDelete",
                &TaskDelete {
                    container_id: id.clone(),
                    id,
                    pid: as_u32(pid),
                    exit_status: as_u32(code),
                    exited_at: Some(ts(at)).into(),
                    ..Default::default()
                },
            ),
        ),
    }
}

impl EventSink for Publisher {
    fn publish(&self, event: Event) {
        let (topic, packed) = encode(event);
        let mut client = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Err(err) = self.forward(&client, topic, &packed) else {
            return;
        };
        // berthd restarts while shims live on: reconnect once and retry.
        match connect(&self.address) {
            Ok(fresh) => {
                *client = fresh;
                if let Err(err) = self.forward(&client, topic, &packed) {
                    tracing::warn!(%err, "publishing a task event");
                }
            }
            Err(e) => tracing::warn!(%err, reconnect = %e, "publishing a task event"),
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
        assert_eq!(msg.type_url, "containerd.events.TaskExit");
        let m = TaskExit::parse_from_bytes(&msg.value).unwrap();
        assert_eq!((m.container_id.as_str(), m.id.as_str()), ("c", "e"));
        assert_eq!(m.exit_status, 137);
        assert_eq!(m.exited_at.seconds, at.timestamp());
    }

    /// The hand-written type URLs are the messages' protobuf full names,
    /// which is what containerd's registry looks events up by.
    #[test]
    fn type_urls_are_the_full_names() {
        use containerd_shim_protos::protobuf::MessageFull;
        let at = Utc::now();
        let all = [
            (
                Event::Create {
                    id: "c".into(),
                    bundle: "/b".into(),
                    pid: 1,
                },
                TaskCreate::descriptor(),
            ),
            (
                Event::Start {
                    id: "c".into(),
                    exec_id: String::new(),
                    pid: 1,
                },
                TaskStart::descriptor(),
            ),
            (
                Event::Start {
                    id: "c".into(),
                    exec_id: "e".into(),
                    pid: 1,
                },
                TaskExecStarted::descriptor(),
            ),
            (
                Event::ExecAdded {
                    id: "c".into(),
                    exec_id: "e".into(),
                },
                TaskExecAdded::descriptor(),
            ),
            (
                Event::Exit {
                    id: "c".into(),
                    exec_id: String::new(),
                    pid: 1,
                    code: 0,
                    at,
                },
                TaskExit::descriptor(),
            ),
            (Event::Oom { id: "c".into() }, TaskOOM::descriptor()),
            (
                Event::Delete {
                    id: "c".into(),
                    pid: 1,
                    code: 0,
                    at,
                },
                TaskDelete::descriptor(),
            ),
        ];
        for (event, descriptor) in all {
            let (_, packed) = encode(event);
            assert_eq!(packed.type_url, descriptor.full_name());
        }
    }
}
