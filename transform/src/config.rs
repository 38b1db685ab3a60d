//! Transform's settings.

use crate::scheme::Scheme;
use serde::Deserialize;
use std::net::SocketAddr;
use wdtpipe_common::grpc::GrpcTls;

/// Everything `transform` needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransformConfig {
    /// gRPC listen address (`TRANSFORM_GRPC_ADDR`).
    pub grpc_addr: SocketAddr,
    /// The deliver service (`DELIVER_URL`), e.g. `http://127.0.0.1:50053`.
    pub deliver_url: String,
    /// Mapping overrides: target shop (`WDT_SHOP_NO`) and carrier table.
    pub scheme: Scheme,
    /// Deadline of a call to deliver, in milliseconds.
    pub deliver_timeout_ms: u64,
    /// gRPC TLS: this server's certificate, the CA trusted for deliver.
    pub tls: GrpcTls,
}

impl Default for TransformConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50052)),
            deliver_url: "http://127.0.0.1:50053".to_owned(),
            scheme: Scheme::default(),
            deliver_timeout_ms: 10_000,
            tls: GrpcTls::default(),
        }
    }
}
