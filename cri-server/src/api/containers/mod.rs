//! berth.v1 Containers: Docker-style containers, each a CRI pod sandbox
//! with one container made by berthd from a `ContainerSpec`.
//!
//! [`engine::Engine`] holds the domain logic (records in
//! `store::docker`, name/id resolution, per-container locks) and is shared
//! with the Volumes and System services; [`service::ContainersApi`] only
//! translates gRPC. Restart policies run in [`supervisor`].

pub mod copy;
pub mod diff;
pub mod engine;
pub mod error;
pub mod exec;
pub mod lifecycle;
pub mod logs;
pub mod names;
pub mod query;
pub mod service;
pub mod spec;
pub mod supervisor;
pub mod top;

pub use engine::Engine;
pub use error::ApiError;
pub use service::ContainersApi;

/// The Containers gRPC service of a daemon (its engine shared with
/// Volumes and System).
pub fn server(
    pods: &std::sync::Arc<crate::pods::PodManager>,
    images: &std::sync::Arc<crate::images::ImageManager>,
    streaming: &std::sync::Arc<crate::streaming::StreamingService>,
) -> berth_proto::berth::v1::containers_server::ContainersServer<ContainersApi> {
    berth_proto::berth::v1::containers_server::ContainersServer::new(ContainersApi::new(
        Engine::shared(pods, images),
        streaming.clone(),
    ))
}
