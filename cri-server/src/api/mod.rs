//! berth's own gRPC API (`berth.v1`), served on the CRI socket next to the
//! CRI services: what a Docker-like client needs and the CRI lacks.

pub mod containers;
pub mod images;
pub mod system;
pub mod volumes;
