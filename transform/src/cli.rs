//! Command-line flags and environment variables of transform, layered over an optional TOML
//! config file. [`Settings`] is taken by the `transform` binary and by `wdtpipe up` alike.

use crate::config::TransformConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use wdtpipe_common::cli::{ConnectorsArg, SharedArgs};
use wdtpipe_common::config::{ConfigError, load_file, optional_addr, set};
use wdtpipe_common::grpc::{GrpcTls, merge_tls};

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

/// The `transform` binary's command line: its settings, the shared ones, and the deliver
/// shards (which `wdtpipe up` decides itself).
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "transform",
    version,
    about = "wdt-pipeline transform stage: stockout records → WDT trades"
)]
pub struct Args {
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub shared: SharedArgs,
    #[command(flatten)]
    pub connectors: ConnectorsArg,
    /// The deliver shards, comma-separated, in a fixed order (each tid always goes to the
    /// same one) [default: http://127.0.0.1:50053].
    #[arg(long, env = "DELIVER_URL", value_delimiter = ',')]
    pub deliver_url: Option<Vec<String>>,
}

impl Args {
    /// The short names the binary takes besides the prefixed ones.
    pub const ALIASES: &'static [(&'static str, &'static str)] = &[
        ("transform_config", "config"),
        ("transform_grpc_addr", "grpc-addr"),
        ("transform_metrics_addr", "metrics-addr"),
    ];

    /// Parses the process's arguments.
    pub fn parse_process() -> Self {
        wdtpipe_common::cli::parse_with_aliases(Self::ALIASES)
    }

    pub fn into_config(self) -> Result<TransformConfig, ConfigError> {
        let mut config = self.settings.into_config(self.shared.tls)?;
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
