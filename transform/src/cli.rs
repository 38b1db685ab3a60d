//! Command-line flags and environment variables of the `transform` binary.

use crate::config::TransformConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use wdtpipe_common::config::{ConfigError, load_file, set};
use wdtpipe_common::grpc::merge_tls;
use wdtpipe_common::telemetry::LogFormat;

/// Settings of `transform`; each flag also reads the environment variable named beside it.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "transform",
    version,
    about = "wdt-pipeline transform stage: stockout records → WDT trades"
)]
pub struct Args {
    /// TOML file with `TransformConfig` fields; environment and flags override it.
    #[arg(long, env = "TRANSFORM_CONFIG")]
    pub config: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long, env = "TRANSFORM_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// The deliver shards, comma-separated, in a fixed order (each tid always goes to the
    /// same one).
    #[arg(long, env = "DELIVER_URL", value_delimiter = ',')]
    pub deliver_url: Option<Vec<String>>,
    /// Prometheus /metrics address ("off" for none).
    #[arg(long, env = "TRANSFORM_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// Target WDT shop for every trade (default: each record's shop_no).
    #[arg(long, env = "WDT_SHOP_NO")]
    pub shop_no: Option<String>,
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
    pub fn into_config(self) -> Result<TransformConfig, ConfigError> {
        let mut config: TransformConfig = load_file(self.config.as_deref())?;
        set(&mut config.grpc_addr, self.grpc_addr);
        if let Some(urls) = self.deliver_url {
            config.deliver_urls = urls
                .into_iter()
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty())
                .collect();
        }
        if let Some(addr) = self.metrics_addr {
            config.metrics_addr =
                wdtpipe_common::config::optional_addr("TRANSFORM_METRICS_ADDR", &addr)?;
        }
        merge_tls(&mut config.tls, self.tls);
        if let Some(shop) = self.shop_no.filter(|s| !s.trim().is_empty()) {
            config.scheme.shop_no = Some(shop.trim().to_owned());
        }
        Ok(config)
    }
}
