//! berth-shim: the per-pod shim that owns a pod's namespaces and containers (being built: the pods issue).

pub mod log_writer;
