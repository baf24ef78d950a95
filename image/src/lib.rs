//! OCI image handling shared by berthd and the CLI: references, registry hosts, pull and push, safe layer unpacking
pub mod digest;
pub mod hosts;
pub mod reference;
pub mod manifest;
pub mod registry;
pub mod unpack;
pub mod pull;
pub mod layout;
pub mod push;
