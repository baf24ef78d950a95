//! Test fixtures: OCI images built from Debian packages, hostile layers, and a loopback registry harness

pub mod fixtures;
pub mod hostile;
pub mod publish;
pub mod registry;

pub use fixtures::{
    big_layout, busybox_layout, multiarch_index_layout, multilayer_whiteouts_layout,
    user_image_layout, Fixture, FixtureError,
};
pub use hostile::{hostile_layouts, Corruption, Expect, HostileFixture, HostileSet};
pub use publish::{
    auth_for, client_for, push_all, push_all_hostile, push_fixture, push_hostile, PublishError,
    Pushed,
};
pub use registry::{Registry, RegistryError};
