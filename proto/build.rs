//! Generates the `wdtpipe.v1` messages and services with a vendored `protoc`, so a fresh
//! machine needs nothing but the Rust toolchain.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/wdtpipe/v1/records.proto",
    "proto/wdtpipe/v1/trade.proto",
    "proto/wdtpipe/v1/ingest.proto",
    "proto/wdtpipe/v1/transform.proto",
    "proto/wdtpipe/v1/deliver.proto",
    "proto/wdtpipe/v1/outbox.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("wdtpipe_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
