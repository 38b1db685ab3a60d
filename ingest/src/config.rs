//! Ingest's settings.

use serde::Deserialize;
use std::net::SocketAddr;

/// Everything `ingest` needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// HTTP listen address for callbacks (`INGEST_HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// gRPC listen address for internal clients (`INGEST_GRPC_ADDR`).
    pub grpc_addr: SocketAddr,
    /// The transform service (`TRANSFORM_URL`), e.g. `http://127.0.0.1:50052`.
    pub transform_url: String,
    /// Largest callback body, in bytes.
    pub body_limit_bytes: usize,
    /// Longest a callback may take end to end, in milliseconds (then 503).
    pub request_timeout_ms: u64,
    /// Deadline of a call to transform, in milliseconds.
    pub transform_timeout_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            transform_url: "http://127.0.0.1:50052".to_owned(),
            body_limit_bytes: 4 * 1024 * 1024,
            request_timeout_ms: 30_000,
            transform_timeout_ms: 20_000,
        }
    }
}
