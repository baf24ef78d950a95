//! CRI v1 types (re-exported from k8s-cri) and berth's own gRPC extension API
