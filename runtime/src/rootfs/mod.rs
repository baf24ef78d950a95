//! TODO(owner: rootfs helper)
