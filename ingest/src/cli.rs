//! Command-line flags and environment variables of ingest, layered over an optional TOML
//! config file. [`Settings`] is taken by the `ingest` binary and by `wdtpipe up` alike.

use crate::config::IngestConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use wdtpipe_common::cli::SharedArgs;
use wdtpipe_common::config::{ConfigError, Secret, load_file, set};
use wdtpipe_common::grpc::{GrpcTls, merge_tls};
use wdtpipe_common::service::{Binary, Shutdown};

/// Ingest's settings; each flag also reads the environment variable named beside it.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "ingest_settings")]
#[command(next_help_heading = "Ingest")]
pub struct Settings {
    /// TOML file with `IngestConfig` fields; environment and flags override it.
    #[arg(long, env = "INGEST_CONFIG")]
    pub ingest_config: Option<PathBuf>,
    /// HTTP listen address for callbacks [default: 127.0.0.1:8080].
    #[arg(long, env = "INGEST_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Ingest's gRPC listen address for internal clients [default: 127.0.0.1:50051].
    #[arg(long, env = "INGEST_GRPC_ADDR")]
    pub ingest_grpc_addr: Option<SocketAddr>,
    /// Largest callback body, in bytes [default: 4194304].
    #[arg(long, env = "INGEST_BODY_LIMIT_BYTES")]
    pub body_limit_bytes: Option<usize>,
    /// Most records in one callback [default: 1000].
    #[arg(long, env = "INGEST_MAX_RECORDS")]
    pub max_records: Option<usize>,
    /// Most callbacks handled at once, then 503 [default: 1024].
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
}

impl Settings {
    /// File, then environment, then flags; `tls` (given by flag or environment) over the
    /// file's.
    pub fn into_config(self, tls: GrpcTls) -> Result<IngestConfig, ConfigError> {
        let mut config: IngestConfig = load_file(self.ingest_config.as_deref())?;
        set(&mut config.http_addr, self.http_addr);
        set(&mut config.grpc_addr, self.ingest_grpc_addr);
        merge_tls(&mut config.tls, tls);
        set(&mut config.limits.body_bytes, self.body_limit_bytes);
        set(&mut config.limits.records, self.max_records);
        set(&mut config.limits.concurrent_requests, self.max_concurrent);
        if let Some(secrets) = self.webhook_secrets {
            config.webhook_secrets = secrets
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .map(Secret::new)
                .collect();
        }
        Ok(config)
    }
}

/// The `ingest` binary's own flags: its settings, and where transform is (which `wdtpipe up`
/// decides itself). [`wdtpipe_common::service`] adds the shared ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub settings: Settings,
    /// The transform service [default: http://127.0.0.1:50052].
    #[arg(long, env = "TRANSFORM_URL")]
    pub transform_url: Option<String>,
}

impl Args {
    /// The settings, with `tls` given by flag or environment.
    pub fn into_config(self, tls: GrpcTls) -> Result<IngestConfig, ConfigError> {
        let mut config = self.settings.into_config(tls)?;
        set(&mut config.transform_url, self.transform_url);
        Ok(config)
    }
}

impl Binary for Args {
    const NAME: &'static str = "ingest";
    const ABOUT: &'static str = "wdt-pipeline ingest stage: HTTP callbacks and gRPC Ingest";
    const SHORT_NAMES: &'static [&'static str] = &["config", "grpc-addr"];

    type Config = IngestConfig;

    fn config(self, shared: SharedArgs) -> Result<IngestConfig, ConfigError> {
        self.into_config(shared.tls)
    }

    async fn serve(config: IngestConfig, shutdown: Shutdown) -> anyhow::Result<()> {
        let http = tokio::net::TcpListener::bind(config.http_addr).await?;
        let grpc = tokio::net::TcpListener::bind(config.grpc_addr).await?;
        Ok(crate::serve(config, http, grpc, shutdown).await?)
    }
}
