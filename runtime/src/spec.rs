//! TODO(owner: core helper)
