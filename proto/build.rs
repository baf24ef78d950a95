//! Generates berth.v1 (messages, servers, clients) from `proto/berth/v1`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/berth/v1/common.proto",
        "proto/berth/v1/images.proto",
        "proto/berth/v1/containers.proto",
        "proto/berth/v1/volumes.proto",
        "proto/berth/v1/system.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    tonic_prost_build::configure().compile_protos(&files, &["proto"])?;
    Ok(())
}
