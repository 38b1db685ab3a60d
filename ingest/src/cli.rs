//! Command-line flags and environment variables of the `ingest` binary.

use crate::config::IngestConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use wdtpipe_common::config::{ConfigError, Secret, load_file, set};
use wdtpipe_common::grpc::merge_tls;
use wdtpipe_common::telemetry::LogFormat;

/// Settings of `ingest`; each flag also reads the environment variable named beside it.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "ingest",
    version,
    about = "wdt-pipeline ingest stage: HTTP callbacks and gRPC Ingest"
)]
pub struct Args {
    /// TOML file with `IngestConfig` fields; environment and flags override it.
    #[arg(long, env = "INGEST_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP listen address for callbacks.
    #[arg(long, env = "INGEST_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// gRPC listen address for internal clients.
    #[arg(long, env = "INGEST_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// The transform service.
    #[arg(long, env = "TRANSFORM_URL")]
    pub transform_url: Option<String>,
    /// Largest callback body, in bytes.
    #[arg(long, env = "INGEST_BODY_LIMIT_BYTES")]
    pub body_limit_bytes: Option<usize>,
    /// Most records in one callback.
    #[arg(long, env = "INGEST_MAX_RECORDS")]
    pub max_records: Option<usize>,
    /// Most callbacks handled at once.
    #[arg(long, env = "INGEST_MAX_CONCURRENT")]
    pub max_concurrent: Option<usize>,
    /// Standard Webhooks secrets (whsec_…), comma-separated; signatures are required when set.
    #[arg(
        long,
        env = "INGEST_WEBHOOK_SECRETS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub webhook_secrets: Option<Vec<String>>,
    #[command(flatten)]
    pub tls: wdtpipe_common::grpc::GrpcTls,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl Args {
    pub fn log_format(&self) -> LogFormat {
        LogFormat::from_name(&self.log_format).unwrap_or_default()
    }

    /// File, then environment, then flags.
    pub fn into_config(self) -> Result<IngestConfig, ConfigError> {
        let mut config: IngestConfig = load_file(self.config.as_deref())?;
        set(&mut config.http_addr, self.http_addr);
        set(&mut config.grpc_addr, self.grpc_addr);
        set(&mut config.transform_url, self.transform_url);
        merge_tls(&mut config.tls, self.tls);
        set(&mut config.limits.body_bytes, self.body_limit_bytes);
        set(&mut config.limits.records, self.max_records);
        set(&mut config.limits.concurrent_requests, self.max_concurrent);
        if let Some(secrets) = self.webhook_secrets {
            config.webhook_secrets = secrets
                .into_iter()
                .filter(|s| !s.trim().is_empty())
                .map(Secret::new)
                .collect();
        }
        Ok(config)
    }
}
