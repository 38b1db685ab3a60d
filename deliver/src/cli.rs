//! Command-line flags and environment variables of the `deliver` binary, layered over an
//! optional TOML config file.

use crate::config::DeliverConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use wdtpipe_common::config::{ConfigError, Secret, load_file, set};
use wdtpipe_common::telemetry::LogFormat;

/// Settings of `deliver`; each flag also reads the environment variable named beside it.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "deliver",
    version,
    about = "wdt-pipeline deliver stage: durable outbox and WDT trade_push"
)]
pub struct Args {
    /// TOML file with `DeliverConfig` fields; environment and flags override it.
    #[arg(long, env = "DELIVER_CONFIG")]
    pub config: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long, env = "DELIVER_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Prometheus /metrics address ("off" for none).
    #[arg(long, env = "DELIVER_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// This shard's name in status and stats (e.g. the pod name).
    #[arg(long, env = "DELIVER_SHARD")]
    pub shard: Option<String>,
    /// Data directory; the outbox lives in `<DATA_DIR>/outbox`.
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub wdt: WdtArgs,
    /// Bearer token required by Replay, Discard and Purge.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Refuse new batches (503 to senders) while this many trades wait.
    #[arg(long, env = "DELIVER_HIGH_WATER_TRADES")]
    pub high_water_trades: Option<u64>,
    /// Refuse new batches while the waiting payloads take this many bytes.
    #[arg(long, env = "DELIVER_HIGH_WATER_BYTES")]
    pub high_water_bytes: Option<u64>,
    #[command(flatten)]
    pub tls: wdtpipe_common::grpc::GrpcTls,
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

/// WDT account settings, shared with `wdtpipe up`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WdtArgs {
    /// WDT base URL, e.g. `https://api.wangdian.cn/openapi2`.
    #[arg(long = "wdt-url", env = "WDT_URL")]
    pub url: Option<String>,
    /// WDT seller account (sid).
    #[arg(long = "wdt-sid", env = "WDT_SID")]
    pub sid: Option<String>,
    /// WDT interface account (appkey).
    #[arg(long = "wdt-appkey", env = "WDT_APPKEY")]
    pub appkey: Option<String>,
    /// WDT interface secret (appsecret); never logged.
    #[arg(long = "wdt-appsecret", env = "WDT_APPSECRET", hide_env_values = true)]
    pub appsecret: Option<String>,
    /// trade_push `switch`: 1 strict (default), 0 non-strict.
    #[arg(long = "wdt-switch", env = "WDT_SWITCH")]
    pub switch: Option<u8>,
}

impl WdtArgs {
    /// Applies the given values over `config`.
    pub fn apply(self, config: &mut DeliverConfig) {
        set(&mut config.wdt.url, self.url);
        set(&mut config.wdt.sid, self.sid);
        set(&mut config.wdt.appkey, self.appkey);
        set(&mut config.wdt.appsecret, self.appsecret.map(Secret::from));
        set(&mut config.wdt.switch, self.switch);
    }
}

impl Args {
    pub fn log_format(&self) -> LogFormat {
        LogFormat::from_name(&self.log_format).unwrap_or_default()
    }

    /// File, then environment, then flags.
    pub fn into_config(self) -> Result<DeliverConfig, ConfigError> {
        let mut config: DeliverConfig = load_file(self.config.as_deref())?;
        set(&mut config.grpc_addr, self.grpc_addr);
        set(&mut config.shard, self.shard);
        if let Some(addr) = self.metrics_addr {
            config.metrics_addr =
                wdtpipe_common::config::optional_addr("DELIVER_METRICS_ADDR", &addr)?;
        }
        set(&mut config.data_dir, self.data_dir);
        wdtpipe_common::grpc::merge_tls(&mut config.tls, self.tls);
        self.wdt.apply(&mut config);
        set(&mut config.admin_token, self.admin_token.map(Secret::from));
        set(&mut config.high_water_trades, self.high_water_trades);
        set(&mut config.high_water_bytes, self.high_water_bytes);
        config.validate()?;
        Ok(config)
    }
}
