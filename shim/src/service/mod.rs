//! The shim's domain: the tasks of one pod (the sandbox and its
//! containers), their processes and exits. Knows nothing of ttrpc; the
//! Task API handlers in `task_api.rs` only translate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use berth_runtime::container::Container;
use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use oci_spec::runtime::LinuxNamespaceType;
use serde_json::value::RawValue;

use crate::bundle::BundleConfig;
use crate::console::ConsoleSocket;
use crate::events::{Event, EventSink};
use crate::exit::ExitRecord;
use crate::helper::{self, FailKind, Reply, Request};
use crate::reaper::Reaper;
use crate::rootfs::{self, RootMount};
use crate::sandbox::SandboxRequest;
use crate::stdio::{self, IoHandle};

/// Annotation naming the kind of a CRI task.
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";
/// Annotation that turns an Update into ReopenContainerLog.
pub const REOPEN_LOG_ANNOTATION: &str = "berth.io/reopen-log";
/// Default berth-runtime state root shared by all shims (ids are unique).
pub const DEFAULT_RUNTIME_ROOT: &str = "/run/berth/runtime";
/// How long an exit waits for the container's output to drain.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

mod error;
mod ops;

use error::runtime_err;
pub use error::TaskError;

/// Lifecycle of a process as the Task API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcStatus {
    /// Made, not started.
    Created,
    /// Running.
    Running,
    /// Frozen (cgroup freezer).
    Paused,
    /// Exited.
    Stopped,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit code (128+N for signal N).
    pub code: i32,
    /// When the shim saw it.
    pub at: DateTime<Utc>,
}

/// What `State` reports about a process.
#[derive(Debug, Clone)]
pub struct ProcState {
    /// Host pid (0 before start for execs).
    pub pid: i32,
    /// Status.
    pub status: ProcStatus,
    /// Exit, once stopped.
    pub exit: Option<Exit>,
    /// Bundle of the task.
    pub bundle: PathBuf,
    /// stdio as requested.
    pub stdio: [String; 3],
    /// Terminal requested.
    pub terminal: bool,
}

struct Proc {
    pid: i32,
    status: ProcStatus,
    exit: Option<Exit>,
    io: IoHandle,
    stdio: [String; 3],
    terminal: bool,
    /// Exec processes: the process spec (JSON), run on Start.
    spec: Option<Box<RawValue>>,
    /// Set while a Start is in progress.
    starting: bool,
}

impl Proc {
    fn new(pid: i32, stdio: [String; 3], terminal: bool) -> Proc {
        Proc {
            pid,
            status: ProcStatus::Created,
            exit: None,
            io: IoHandle::default(),
            stdio,
            terminal,
            spec: None,
            starting: false,
        }
    }
}

enum Kind {
    /// The pod: namespaces, and the pod init when it has a PID namespace.
    Sandbox { pod_init: bool },
    /// A container made with berth-runtime.
    Container {
        rootfs_mounted: bool,
        own_pid_ns: bool,
    },
}

struct Task {
    bundle: PathBuf,
    kind: Kind,
    init: Proc,
    execs: HashMap<String, Proc>,
}

#[derive(Default)]
struct Inner {
    tasks: HashMap<String, Task>,
    /// Ids whose Create is in progress.
    creating: Vec<String>,
}

/// The shim's tasks.
pub struct Service {
    inner: Mutex<Inner>,
    changed: Condvar,
    reaper: Reaper,
    root: PathBuf,
    events: Arc<dyn EventSink>,
    exit_requested: Box<dyn Fn() + Send + Sync>,
}

/// A create request, decoded.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// Task id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// rootfs mounts.
    pub rootfs: Vec<RootMount>,
    /// Terminal.
    pub terminal: bool,
    /// stdin, stdout, stderr.
    pub stdio: [String; 3],
}

/// A process reference: the task id and, for execs, the exec id.
#[derive(Debug, Clone, Copy)]
pub struct ProcRef<'a> {
    /// Task id.
    pub id: &'a str,
    /// Exec id ("" for the task's init).
    pub exec_id: &'a str,
}

impl Service {
    /// A service with a running reaper; `exit` is called once the shim may exit.
    pub fn new(
        reaper: Reaper,
        root: PathBuf,
        events: Arc<dyn EventSink>,
        exit: Box<dyn Fn() + Send + Sync>,
    ) -> Arc<Service> {
        Arc::new(Service {
            inner: Mutex::new(Inner::default()),
            changed: Condvar::new(),
            reaper,
            root,
            events,
            exit_requested: exit,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The berth-runtime state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates a sandbox or container task; returns its pid.
    pub fn create(self: &Arc<Self>, req: CreateRequest) -> Result<i32, TaskError> {
        let id = req.id.clone();
        if id.is_empty() {
            return Err(TaskError::Invalid("empty task id".into()));
        }
        {
            let mut inner = self.lock();
            if inner.tasks.contains_key(&id) || inner.creating.contains(&id) {
                return Err(TaskError::AlreadyExists(id));
            }
            inner.creating.push(id.clone());
        }
        let result = self.create_unlocked(&req);
        let mut inner = self.lock();
        inner.creating.retain(|c| c != &id);
        let (task, watch_since) = result?;
        let pid = task.init.pid;
        inner.tasks.insert(id.clone(), task);
        drop(inner);
        // Watched only once the task is known: an exit before that is kept
        // by the reaper and delivered now.
        if let Some(since) = watch_since {
            self.watch(&id, "", pid, since);
        }
        self.events.publish(Event::Create {
            id: id.clone(),
            bundle: req.bundle.clone(),
            pid,
        });
        crate::memory::trim_heap();
        Ok(pid)
    }

    /// Makes the task; also returns when its process was spawned, for the
    /// exit watch.
    fn create_unlocked(
        self: &Arc<Self>,
        req: &CreateRequest,
    ) -> Result<(Task, Option<Instant>), TaskError> {
        let id = &req.id;
        let config = req.bundle.join("config.json");
        let spec = BundleConfig::load(&config)
            .map_err(|e| TaskError::Invalid(format!("{id}: {}: {e}", config.display())))?;
        let is_sandbox = spec
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONTAINER_TYPE_ANNOTATION))
            .is_some_and(|t| t == "sandbox");
        if is_sandbox {
            self.create_sandbox(req, &spec)
        } else {
            self.create_container(req, &spec)
        }
    }

    fn create_sandbox(
        self: &Arc<Self>,
        req: &CreateRequest,
        spec: &BundleConfig,
    ) -> Result<(Task, Option<Instant>), TaskError> {
        let id = &req.id;
        let sreq =
            SandboxRequest::from_spec(&req.bundle, spec).map_err(|source| TaskError::Sandbox {
                id: id.clone(),
                source,
            })?;
        let mut pod_init = None;
        let mut watch_since = None;
        if sreq.needs_helper() {
            let since = Instant::now();
            let reply =
                helper::run(&self.reaper, &Request::Sandbox(sreq), None).map_err(|source| {
                    TaskError::Helper {
                        id: id.clone(),
                        source,
                    }
                })?;
            let pid = reply_pid(id, reply)?;
            if pid > 0 {
                pod_init = Some(pid);
                watch_since = Some(since);
            }
        }
        let pid = pod_init.unwrap_or_else(|| std::process::id() as i32);
        let task = Task {
            bundle: req.bundle.clone(),
            kind: Kind::Sandbox {
                pod_init: pod_init.is_some(),
            },
            init: Proc::new(pid, req.stdio.clone(), false),
            execs: HashMap::new(),
        };
        Ok((task, watch_since))
    }

    fn create_container(
        self: &Arc<Self>,
        req: &CreateRequest,
        spec: &BundleConfig,
    ) -> Result<(Task, Option<Instant>), TaskError> {
        let id = &req.id;
        let spec_terminal = spec
            .process
            .as_ref()
            .and_then(|p| p.terminal)
            .unwrap_or(false);
        if spec_terminal != req.terminal {
            return Err(TaskError::Invalid(format!(
                "{id}: request terminal={} but config.json process.terminal={spec_terminal}",
                req.terminal
            )));
        }
        let own_pid_ns = spec
            .namespaces()
            .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none());
        let mounted =
            rootfs::mount_rootfs(&req.bundle, &req.rootfs).map_err(|source| TaskError::Rootfs {
                id: id.clone(),
                source,
            })?;
        let undo = |e: TaskError| {
            if mounted {
                if let Err(err) = rootfs::unmount_rootfs(&req.bundle) {
                    tracing::warn!(%err, container_id = %id, "unmounting after a failed create");
                }
            }
            e
        };
        let [i, o, e] = &req.stdio;
        let mut io = stdio::prepare_container(i, o, e, req.terminal)
            .map_err(|source| TaskError::Stdio {
                id: id.clone(),
                source,
            })
            .map_err(undo)?;
        let console = console_socket(id, req.terminal).map_err(undo)?;
        let since = Instant::now();
        let hreq = Request::Create {
            id: id.clone(),
            bundle: req.bundle.clone(),
            root: self.root.clone(),
            console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
        };
        let reply = helper::run(&self.reaper, &hreq, Some(io.borrowed()))
            .map_err(|source| TaskError::Helper {
                id: id.clone(),
                source,
            })
            .map_err(undo)?;
        let pid = reply_pid(id, reply).map_err(undo)?;
        if let Some(c) = &console {
            attach_console(id, c, &mut io)?;
        }
        // The process holds its stdio now; the shim's copies must go so
        // that the log copier sees EOF when the container exits.
        let mut io = {
            let stdio::PreparedIo { child, handle, .. } = io;
            drop(child);
            handle
        };
        // Attach is best effort: the container runs without it.
        if let Err(err) = io.serve_attach(&req.bundle) {
            tracing::warn!(error = %err, container_id = %id, "no attach socket");
        }
        let mut init = Proc::new(pid, req.stdio.clone(), false);
        init.io = io;
        let task = Task {
            bundle: req.bundle.clone(),
            kind: Kind::Container {
                rootfs_mounted: mounted,
                own_pid_ns,
            },
            init,
            execs: HashMap::new(),
        };
        Ok((task, Some(since)))
    }

    /// Registers the exit handler of a process.
    fn watch(self: &Arc<Self>, id: &str, exec_id: &str, pid: i32, since: Instant) {
        let svc = Arc::clone(self);
        let (id, exec_id) = (id.to_string(), exec_id.to_string());
        self.reaper.on_exit(
            pid,
            since,
            Box::new(move |code| {
                let at = Utc::now();
                // Off the reaper thread: finishing may wait for output.
                let spawned = std::thread::Builder::new()
                    .name("exit".into())
                    .stack_size(256 * 1024)
                    .spawn({
                        let svc = Arc::clone(&svc);
                        let (id, exec_id) = (id.clone(), exec_id.clone());
                        move || svc.finish_exit(&id, &exec_id, pid, Exit { code, at })
                    });
                if let Err(err) = spawned {
                    tracing::error!(%err, "spawning the exit thread; finishing inline");
                    svc.finish_exit(&id, &exec_id, pid, Exit { code, at });
                }
            }),
        );
    }

    /// Records an exit: for a container init, kills what is left in its
    /// cgroup, drains its output, writes exit.json (with the OOM flag read
    /// before anything destroys the cgroup), then wakes the waiters.
    fn finish_exit(&self, id: &str, exec_id: &str, pid: i32, exit: Exit) {
        let (bundle, container) = {
            let inner = self.lock();
            match inner.tasks.get(id) {
                Some(t) => (
                    t.bundle.clone(),
                    match t.kind {
                        Kind::Container { own_pid_ns, .. } if exec_id.is_empty() => {
                            Some(own_pid_ns)
                        }
                        _ => None,
                    },
                ),
                None => (PathBuf::new(), None),
            }
        };
        if let Some(own_pid_ns) = container {
            let c = Container::load(&self.root, id).ok();
            let cg = c.as_ref().and_then(|c| c.cgroup().ok());
            if let (Some(cg), false) = (&cg, own_pid_ns) {
                // Without its own PID namespace nothing kills the rest.
                if let Err(err) = cg.kill_all(Signal::SIGKILL) {
                    tracing::debug!(%err, container_id = %id, "killing leftovers");
                }
            }
            let oom = cg
                .as_ref()
                .and_then(|cg| cg.oom_kill_count().ok())
                .is_some_and(|n| n > 0);
            self.wait_output(id);
            if let Err(err) = ExitRecord::new(exit.code, exit.at, oom).write(&bundle) {
                tracing::error!(%err, container_id = %id, "writing the exit record");
            }
            if oom {
                self.events.publish(Event::Oom { id: id.to_string() });
            }
        }
        let mut inner = self.lock();
        if let Some(p) = inner.tasks.get_mut(id).and_then(|t| proc_mut(t, exec_id)) {
            if p.pid == pid {
                p.status = ProcStatus::Stopped;
                p.exit = Some(exit);
                p.io.release();
            }
        }
        drop(inner);
        self.changed.notify_all();
        self.events.publish(Event::Exit {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            pid,
            code: exit.code,
            at: exit.at,
        });
    }

    /// Waits for a container's output copier outside the lock.
    fn wait_output(&self, id: &str) {
        let deadline = Instant::now() + OUTPUT_DRAIN;
        while Instant::now() < deadline {
            let done = {
                let inner = self.lock();
                match inner.tasks.get(id) {
                    Some(t) => t.init.io.wait_output(Duration::ZERO),
                    None => true,
                }
            };
            if done {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::warn!(container_id = %id, "output still open after the exit; not waiting longer");
    }

    /// Starts the init (container), the exec, or (sandbox) nothing; returns the pid.
    pub fn start(self: &Arc<Self>, r: ProcRef<'_>) -> Result<i32, TaskError> {
        if !r.exec_id.is_empty() {
            return self.start_exec(r);
        }
        let (is_sandbox, pid) = {
            let inner = self.lock();
            let t = task(&inner, r.id)?;
            if t.init.status != ProcStatus::Created {
                return Err(TaskError::Precondition(format!(
                    "{}: cannot start a task that is {:?}",
                    r.id, t.init.status
                )));
            }
            (matches!(t.kind, Kind::Sandbox { .. }), t.init.pid)
        };
        if !is_sandbox {
            let c = Container::load(&self.root, r.id).map_err(runtime_err(r.id))?;
            c.start().map_err(runtime_err(r.id))?;
        }
        let mut inner = self.lock();
        if let Some(t) = inner.tasks.get_mut(r.id) {
            if t.init.status == ProcStatus::Created {
                t.init.status = ProcStatus::Running;
            }
        }
        drop(inner);
        self.events.publish(Event::Start {
            id: r.id.to_string(),
            exec_id: String::new(),
            pid,
        });
        Ok(pid)
    }

    /// Registers an exec process (run on Start).
    pub fn exec(
        &self,
        id: &str,
        exec_id: &str,
        terminal: bool,
        stdio: [String; 3],
        spec: Box<RawValue>,
    ) -> Result<(), TaskError> {
        if exec_id.is_empty() {
            return Err(TaskError::Invalid(format!("{id}: empty exec id")));
        }
        let mut inner = self.lock();
        let t = task_mut(&mut inner, id)?;
        if !matches!(t.kind, Kind::Container { .. }) {
            return Err(TaskError::Precondition(format!(
                "{id}: exec in a sandbox task is not supported"
            )));
        }
        if t.init.status == ProcStatus::Stopped {
            return Err(TaskError::Precondition(format!(
                "{id}: container is stopped"
            )));
        }
        if t.execs.contains_key(exec_id) {
            return Err(TaskError::AlreadyExists(format!("{id}/{exec_id}")));
        }
        let mut p = Proc::new(0, stdio, terminal);
        p.spec = Some(spec);
        t.execs.insert(exec_id.to_string(), p);
        drop(inner);
        self.events.publish(Event::ExecAdded {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
        });
        Ok(())
    }

    fn start_exec(self: &Arc<Self>, r: ProcRef<'_>) -> Result<i32, TaskError> {
        let (spec, stdio, terminal) = {
            let mut inner = self.lock();
            let t = task_mut(&mut inner, r.id)?;
            let p = t
                .execs
                .get_mut(r.exec_id)
                .ok_or_else(|| TaskError::NotFound(format!("{}/{}", r.id, r.exec_id)))?;
            if p.status != ProcStatus::Created || p.starting {
                return Err(TaskError::Precondition(format!(
                    "{}/{}: already started",
                    r.id, r.exec_id
                )));
            }
            p.starting = true;
            (p.spec.clone(), p.stdio.clone(), p.terminal)
        };
        let result = (|| {
            let spec = spec.ok_or_else(|| TaskError::Invalid("exec without a spec".into()))?;
            let [i, o, e] = &stdio;
            let mut io = stdio::prepare(i, o, e, terminal).map_err(|source| TaskError::Stdio {
                id: r.id.to_string(),
                source,
            })?;
            let console = console_socket(r.id, terminal)?;
            let since = Instant::now();
            let hreq = Request::Exec {
                id: r.id.to_string(),
                root: self.root.clone(),
                process: spec,
                terminal,
                console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
            };
            let reply =
                helper::run(&self.reaper, &hreq, Some(io.borrowed())).map_err(|source| {
                    TaskError::Helper {
                        id: r.id.to_string(),
                        source,
                    }
                })?;
            let pid = reply_pid(r.id, reply)?;
            if let Some(c) = &console {
                attach_console(r.id, c, &mut io)?;
            }
            let stdio::PreparedIo { child, handle, .. } = io;
            drop(child);
            Ok((pid, handle, since))
        })();
        let mut inner = self.lock();
        let p = inner
            .tasks
            .get_mut(r.id)
            .and_then(|t| t.execs.get_mut(r.exec_id));
        let Some(p) = p else {
            return Err(TaskError::NotFound(format!("{}/{}", r.id, r.exec_id)));
        };
        p.starting = false;
        let (pid, handle, since) = result?;
        p.pid = pid;
        p.io = handle;
        p.status = ProcStatus::Running;
        drop(inner);
        // Registered after the pid is stored: an early exit is kept by the
        // reaper and delivered here.
        self.watch(r.id, r.exec_id, pid, since);
        self.events.publish(Event::Start {
            id: r.id.to_string(),
            exec_id: r.exec_id.to_string(),
            pid,
        });
        Ok(pid)
    }
}

fn console_socket(id: &str, terminal: bool) -> Result<Option<ConsoleSocket>, TaskError> {
    if !terminal {
        return Ok(None);
    }
    ConsoleSocket::new()
        .map(Some)
        .map_err(|source| TaskError::Console {
            id: id.to_string(),
            source,
        })
}

fn attach_console(
    id: &str,
    c: &ConsoleSocket,
    io: &mut stdio::PreparedIo,
) -> Result<(), TaskError> {
    let master = c
        .receive(Duration::from_secs(5))
        .map_err(|source| TaskError::Console {
            id: id.to_string(),
            source,
        })?;
    io.attach_console(master)
        .map_err(|source| TaskError::Stdio {
            id: id.to_string(),
            source,
        })
}

fn reply_pid(id: &str, reply: Reply) -> Result<i32, TaskError> {
    match reply {
        Reply::Pid(pid) => Ok(pid),
        Reply::Failed { kind, message } => Err(match kind {
            FailKind::Invalid => TaskError::Invalid(format!("{id}: {message}")),
            FailKind::Precondition => TaskError::Precondition(format!("{id}: {message}")),
            FailKind::Internal => TaskError::Failed {
                id: id.to_string(),
                message,
            },
        }),
    }
}

fn task<'a>(inner: &'a Inner, id: &str) -> Result<&'a Task, TaskError> {
    inner
        .tasks
        .get(id)
        .ok_or_else(|| TaskError::NotFound(format!("task {id}")))
}

fn task_mut<'a>(inner: &'a mut Inner, id: &str) -> Result<&'a mut Task, TaskError> {
    inner
        .tasks
        .get_mut(id)
        .ok_or_else(|| TaskError::NotFound(format!("task {id}")))
}

fn proc_of<'a>(t: &'a Task, r: ProcRef<'_>) -> Result<&'a Proc, TaskError> {
    if r.exec_id.is_empty() {
        return Ok(&t.init);
    }
    t.execs
        .get(r.exec_id)
        .ok_or_else(|| TaskError::NotFound(format!("exec {} of task {}", r.exec_id, r.id)))
}

fn proc_mut<'a>(t: &'a mut Task, exec_id: &str) -> Option<&'a mut Proc> {
    if exec_id.is_empty() {
        Some(&mut t.init)
    } else {
        t.execs.get_mut(exec_id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::events::NoEvents;

    fn service() -> Arc<Service> {
        Service::new(
            Reaper::default(),
            PathBuf::from("/nonexistent"),
            Arc::new(NoEvents),
            Box::new(|| {}),
        )
    }

    fn host_sandbox(dir: &Path) -> CreateRequest {
        let spec = r#"{"ociVersion":"1.2.0","annotations":
            {"io.kubernetes.cri.container-type":"sandbox"},"linux":{"namespaces":[]}}"#;
        std::fs::write(dir.join("config.json"), spec).unwrap();
        CreateRequest {
            id: "pod".into(),
            bundle: dir.to_path_buf(),
            ..Default::default()
        }
    }

    #[test]
    fn host_namespace_sandbox_lives_until_killed() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service();
        let pid = svc.create(host_sandbox(dir.path())).unwrap();
        assert_eq!(pid, std::process::id() as i32);
        let r = ProcRef {
            id: "pod",
            exec_id: "",
        };
        assert!(matches!(
            svc.create(host_sandbox(dir.path())),
            Err(TaskError::AlreadyExists(_))
        ));
        assert_eq!(svc.start(r).unwrap(), pid);
        assert!(matches!(svc.delete(r), Err(TaskError::Precondition(_))));
        let waiter = {
            let svc = svc.clone();
            std::thread::spawn(move || {
                svc.wait(ProcRef {
                    id: "pod",
                    exec_id: "",
                })
                .unwrap()
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        svc.kill(r, 15, false).unwrap();
        assert_eq!(waiter.join().unwrap().code, 0);
        assert_eq!(svc.state(r).unwrap().status, ProcStatus::Stopped);
        assert!(matches!(svc.stats("pod"), Err(TaskError::Precondition(_))));
        svc.delete(r).unwrap();
        assert!(matches!(svc.state(r), Err(TaskError::NotFound(_))));
        assert!(svc.shutdown(false));
    }

    #[test]
    fn bad_requests_are_refused_with_their_codes() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service();
        let missing = CreateRequest {
            id: "x".into(),
            bundle: dir.path().to_path_buf(),
            ..Default::default()
        };
        assert!(matches!(svc.create(missing), Err(TaskError::Invalid(_))));
        let empty = CreateRequest::default();
        assert!(matches!(svc.create(empty), Err(TaskError::Invalid(_))));
        let r = ProcRef {
            id: "nope",
            exec_id: "",
        };
        assert!(matches!(svc.kill(r, 9, false), Err(TaskError::NotFound(_))));
        assert!(matches!(
            svc.kill(r, 999, false),
            Err(TaskError::Invalid(_))
        ));
        assert!(matches!(svc.wait(r), Err(TaskError::NotFound(_))));
    }
}
