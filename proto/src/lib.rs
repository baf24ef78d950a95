//! CRI v1 types (re-exported from k8s-cri) and berth's own gRPC extension API.
//!
//! The rest of berth names CRI messages and services through [`cri`] so the
//! generated code comes from one place (k8s-cri, built from upstream's
//! `api.proto`) and can be swapped without touching callers.

/// CRI v1 (`runtime.v1`): messages, `runtime_service_server`, `image_service_server`
/// and the matching clients.
pub mod cri {
    pub use k8s_cri::v1::*;
}

/// berth's extension API (`berth.v1`): what a Docker-like client needs and
/// the CRI lacks. Served on the same socket as the CRI.
pub mod berth {
    /// Images, Containers, Volumes and System services.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("berth.v1");
    }
}

pub use prost;
pub use tonic;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::cri;

    #[test]
    fn cri_messages_round_trip_through_prost() {
        use prost::Message;
        let req = cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = req.encode_to_vec();
        let back = cri::PullImageRequest::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.image.unwrap().image, "busybox");
    }
}
