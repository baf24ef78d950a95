//! The library's top-level error: one variant per stage, each wrapping that
//! stage's own typed error.

/// Any failure of the runtime library.
#[derive(Debug, thiserror::Error)]
pub enum Error {}
