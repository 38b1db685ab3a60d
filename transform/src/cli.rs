//! Command-line flags and environment variables of transform, layered over an optional TOML
//! config file. [`Settings`] is taken by the `transform` binary and by `wdtpipe up` alike.

use crate::config::TransformConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use wdtpipe_common::cli::{ConnectorsArg, SharedArgs};
use wdtpipe_common::config::{ConfigError, load_file, optional_addr, set};
use wdtpipe_common::grpc::{GrpcTls, merge_tls};
use wdtpipe_common::service::{Binary, Shutdown};

/// Transform's settings; each flag also reads the environment variable named beside it.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "transform_settings")]
#[command(next_help_heading = "Transform")]
pub struct Settings {
    /// TOML file with `TransformConfig` fields; environment and flags override it.
    #[arg(long, env = "TRANSFORM_CONFIG")]
    pub transform_config: Option<PathBuf>,
    /// Transform's gRPC listen address [default: 127.0.0.1:50052].
    #[arg(long, env = "TRANSFORM_GRPC_ADDR")]
    pub transform_grpc_addr: Option<SocketAddr>,
    /// Transform's Prometheus /metrics address, "off" for none [default: 127.0.0.1:9102].
    #[arg(long, env = "TRANSFORM_METRICS_ADDR")]
    pub transform_metrics_addr: Option<String>,
    /// Target WDT shop for every trade [default: each record's shop_no].
    #[arg(long, env = "WDT_SHOP_NO")]
    pub shop_no: Option<String>,
    /// Directory of integration scheme files (`*.toml`, SCHEMES.md) [default: none, only the
    /// built-in scheme].
    #[arg(long, env = "SCHEMES_DIR")]
    pub schemes_dir: Option<PathBuf>,
}

impl Settings {
    /// File, then environment, then flags; `tls` (given by flag or environment) over the
    /// file's.
    pub fn into_config(self, tls: GrpcTls) -> Result<TransformConfig, ConfigError> {
        let mut config: TransformConfig = load_file(self.transform_config.as_deref())?;
        set(&mut config.grpc_addr, self.transform_grpc_addr);
        if let Some(addr) = self.transform_metrics_addr {
            config.metrics_addr = optional_addr("TRANSFORM_METRICS_ADDR", &addr)?;
        }
        merge_tls(&mut config.tls, tls);
        if let Some(shop) = self.shop_no.filter(|s| !s.trim().is_empty()) {
            config.scheme.shop_no = Some(shop.trim().to_owned());
        }
        if let Some(dir) = self.schemes_dir.filter(|d| !d.as_os_str().is_empty()) {
            config.schemes_dir = Some(dir);
        }
        Ok(config)
    }
}

/// The `transform` binary's own flags: its settings, the WDT accounts file, and the deliver
/// shards (which `wdtpipe up` decides itself). [`wdtpipe_common::service`] adds the shared
/// ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub connectors: ConnectorsArg,
    /// The deliver shards, comma-separated, in a fixed order (each tid always goes to the
    /// same one) [default: http://127.0.0.1:50053].
    #[arg(long, env = "DELIVER_URL", value_delimiter = ',')]
    pub deliver_url: Option<Vec<String>>,
}

impl Args {
    /// The settings, with `tls` given by flag or environment.
    pub fn into_config(self, tls: GrpcTls) -> Result<TransformConfig, ConfigError> {
        let mut config = self.settings.into_config(tls)?;
        set(
            &mut config.connectors_file,
            self.connectors.connectors_file.map(Some),
        );
        if let Some(urls) = self.deliver_url {
            config.deliver_urls = urls
                .into_iter()
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty())
                .collect();
        }
        Ok(config)
    }
}

impl Binary for Args {
    const NAME: &'static str = "transform";
    const ABOUT: &'static str = "wdt-pipeline transform stage: stockout records → WDT trades";
    const SHORT_NAMES: &'static [&'static str] = &["config", "grpc-addr", "metrics-addr"];

    type Config = TransformConfig;

    fn config(self, shared: SharedArgs) -> Result<TransformConfig, ConfigError> {
        self.into_config(shared.tls)
    }

    async fn serve(config: TransformConfig, shutdown: Shutdown) -> anyhow::Result<()> {
        let listeners = crate::Listeners::bind(config.grpc_addr, config.metrics_addr).await?;
        Ok(crate::serve(config, listeners, shutdown).await?)
    }
}
