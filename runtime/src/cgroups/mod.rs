//! TODO(owner: cgroups helper)
