//! Ingest's settings.

use serde::Deserialize;
use std::net::SocketAddr;
use wdtpipe_common::config::Secret;
use wdtpipe_common::grpc::GrpcTls;

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
    /// Limits of the HTTP edge.
    pub limits: Limits,
    /// Standard Webhooks secrets (`whsec_…`) senders sign with; any of them is accepted,
    /// so a secret can be rotated. Empty: callbacks are not authenticated.
    pub webhook_secrets: Vec<Secret>,
    /// How far a `webhook-timestamp` may be from now, in seconds.
    pub webhook_tolerance_secs: u64,
    /// `Retry-After` of a 503, in seconds.
    pub retry_after_secs: u64,
    /// Deadline of a call to transform, in milliseconds.
    pub transform_timeout_ms: u64,
    /// How often ingest asks transform's health for its own (SERVING only while transform
    /// answers), in milliseconds.
    pub readiness_ms: u64,
    /// gRPC TLS: this server's certificate, the CA trusted for transform.
    pub tls: GrpcTls,
}

/// Limits that keep the public edge safe; each breach gets a clear 4xx or 503.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest callback body, in bytes (413).
    pub body_bytes: usize,
    /// Most records in one request (413).
    pub records: usize,
    /// Deepest JSON nesting (400).
    pub json_depth: usize,
    /// Longest JSON string, in bytes (400).
    pub string_bytes: usize,
    /// Longest a callback may take end to end, in milliseconds (then 503).
    pub request_timeout_ms: u64,
    /// Most callbacks handled at once; more get 503 with `Retry-After`.
    pub concurrent_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 4 * 1024 * 1024,
            records: 1000,
            json_depth: 32,
            string_bytes: 1024 * 1024,
            request_timeout_ms: 30_000,
            concurrent_requests: 1024,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            transform_url: "http://127.0.0.1:50052".to_owned(),
            limits: Limits::default(),
            webhook_secrets: Vec::new(),
            webhook_tolerance_secs: 300,
            retry_after_secs: 1,
            transform_timeout_ms: 20_000,
            readiness_ms: wdtpipe_common::grpc::READINESS_MS,
            tls: GrpcTls::default(),
        }
    }
}
