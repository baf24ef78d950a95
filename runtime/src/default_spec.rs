//! TODO(owner: security helper)
