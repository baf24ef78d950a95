//! berthd: the CRI v1 server (ImageService and RuntimeService).
//!
//! [`server::Daemon`] opens the store under the root dir, reconciles pods
//! and containers with their shims, binds the Unix socket and serves
//! [`image_service::CriImageService`] and
//! [`runtime_service::CriRuntimeService`]; handlers translate between gRPC
//! and [`images::ImageManager`] / [`pods::PodManager`], which know nothing
//! of tonic.

pub mod api;
pub mod config;
pub mod container_spec;
pub mod error;
pub mod image_service;
pub mod images;
pub mod network;
pub mod pod_files;
pub mod pods;
pub mod runtime_service;
pub mod server;
pub mod store;
pub mod streaming;
