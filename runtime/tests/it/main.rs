//! Integration tests: real containers from busybox-static bundles (root).
