//! OCI image handling shared by berthd and the CLI: references, registry hosts, pull and push, safe layer unpacking
pub mod archive;
pub mod diff;
pub mod digest;
pub mod hosts;
pub mod layout;
pub mod manifest;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registry;
pub mod unpack;
