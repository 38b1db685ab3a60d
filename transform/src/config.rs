//! Transform's settings.

use crate::scheme::BuiltinOptions;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use wdtpipe_common::grpc::GrpcTls;

/// Everything `transform` needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransformConfig {
    /// gRPC listen address (`TRANSFORM_GRPC_ADDR`).
    pub grpc_addr: SocketAddr,
    /// Prometheus `/metrics` address (`TRANSFORM_METRICS_ADDR`); `None` serves no metrics.
    pub metrics_addr: Option<SocketAddr>,
    /// The deliver shards (`DELIVER_URL`, comma-separated), in a fixed order: each trade goes
    /// to `shards[hash(tid) mod N]`, so one tid always lands on one shard.
    pub deliver_urls: Vec<String>,
    /// The built-in mapping's settings, shared by every scheme: target shop (`WDT_SHOP_NO`)
    /// and carrier table.
    pub scheme: BuiltinOptions,
    /// The directory of scheme files (`SCHEMES_DIR`); `None`: only the built-in scheme.
    pub schemes_dir: Option<PathBuf>,
    /// How often the directory is checked for changes, in milliseconds (SIGHUP reloads at
    /// once).
    pub schemes_poll_ms: u64,
    /// The WDT accounts file (`CONNECTORS_FILE`): the connectors a scheme may name.
    pub connectors_file: Option<PathBuf>,
    /// Deadline of a call to deliver, in milliseconds.
    pub deliver_timeout_ms: u64,
    /// How often transform asks every deliver shard's health for its own (SERVING only
    /// while all answer), in milliseconds.
    pub readiness_ms: u64,
    /// gRPC TLS: this server's certificate, the CA trusted for deliver.
    pub tls: GrpcTls,
}

impl Default for TransformConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50052)),
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9102))),
            deliver_urls: vec!["http://127.0.0.1:50053".to_owned()],
            scheme: BuiltinOptions::default(),
            schemes_dir: None,
            schemes_poll_ms: 1_000,
            connectors_file: None,
            deliver_timeout_ms: 10_000,
            readiness_ms: wdtpipe_common::grpc::READINESS_MS,
            tls: GrpcTls::default(),
        }
    }
}
