//! Command-line flags and environment variables of deliver, layered over an optional TOML
//! config file. [`Settings`] is taken by the `deliver` binary and by `wdtpipe up` alike.

use crate::config::DeliverConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use wdtpipe_common::cli::{ConnectorsArg, SharedArgs};
use wdtpipe_common::config::{ConfigError, Secret, load_file, optional_addr, set};
use wdtpipe_common::grpc::{GrpcTls, merge_tls};
use wdtpipe_common::service::{Binary, Shutdown};

/// Deliver's settings; each flag also reads the environment variable named beside it.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "deliver_settings")]
#[command(next_help_heading = "Deliver")]
pub struct Settings {
    /// TOML file with `DeliverConfig` fields; environment and flags override it.
    #[arg(long, env = "DELIVER_CONFIG")]
    pub deliver_config: Option<PathBuf>,
    /// Deliver's gRPC listen address [default: 127.0.0.1:50053].
    #[arg(long, env = "DELIVER_GRPC_ADDR")]
    pub deliver_grpc_addr: Option<SocketAddr>,
    /// Deliver's Prometheus /metrics address, "off" for none [default: 127.0.0.1:9103].
    #[arg(long, env = "DELIVER_METRICS_ADDR")]
    pub deliver_metrics_addr: Option<String>,
    /// This shard's name in status and stats, e.g. the pod name [default: its gRPC address].
    #[arg(long, env = "DELIVER_SHARD")]
    pub shard: Option<String>,
    /// Data directory; the outbox lives in `<DATA_DIR>/outbox` [default: ./data].
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub wdt: WdtArgs,
    /// Bearer token required by the admin RPCs (Replay, Discard, Purge). Required when the
    /// gRPC address is not loopback.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Serve the admin RPCs without a token on a non-loopback address: anyone who reaches the
    /// port can then replay, discard and purge.
    #[arg(long, env = "DELIVER_INSECURE_NO_ADMIN_TOKEN")]
    pub insecure_no_admin_token: bool,
    /// Refuse new batches (503 to senders) while this many trades wait [default: 2000000].
    #[arg(long, env = "DELIVER_HIGH_WATER_TRADES")]
    pub high_water_trades: Option<u64>,
    /// Refuse new batches while the waiting payloads take this many bytes
    /// [default: 4294967296].
    #[arg(long, env = "DELIVER_HIGH_WATER_BYTES")]
    pub high_water_bytes: Option<u64>,
    /// Refuse new batches while the outbox's disk has less than this many bytes free, so
    /// that settling and replay keep room; 0 turns the watermark off [default: 134217728].
    #[arg(long, env = "DELIVER_MIN_FREE_BYTES")]
    pub min_free_bytes: Option<u64>,
}

/// The WDT account deliver pushes to.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "WDT account")]
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
    /// trade_push `switch`: 1 strict, 0 non-strict [default: 1].
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

impl Settings {
    /// File, then environment, then flags; `tls` (given by flag or environment) over the
    /// file's. Not validated: `wdtpipe up` fills in the sandbox's account first.
    pub fn into_config(self, tls: GrpcTls) -> Result<DeliverConfig, ConfigError> {
        let mut config: DeliverConfig = load_file(self.deliver_config.as_deref())?;
        set(&mut config.grpc_addr, self.deliver_grpc_addr);
        set(&mut config.shard, self.shard);
        if let Some(addr) = self.deliver_metrics_addr {
            config.metrics_addr = optional_addr("DELIVER_METRICS_ADDR", &addr)?;
        }
        set(&mut config.data_dir, self.data_dir);
        merge_tls(&mut config.tls, tls);
        self.wdt.apply(&mut config);
        set(&mut config.admin_token, self.admin_token.map(Secret::from));
        config.insecure_no_admin_token |= self.insecure_no_admin_token;
        set(&mut config.high_water_trades, self.high_water_trades);
        set(&mut config.high_water_bytes, self.high_water_bytes);
        set(&mut config.min_free_bytes, self.min_free_bytes);
        Ok(config)
    }
}

/// The `deliver` binary's own flags: its settings and the WDT accounts file.
/// [`wdtpipe_common::service`] adds the shared ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub connectors: ConnectorsArg,
}

impl Args {
    /// The settings, with `tls` given by flag or environment, checked.
    pub fn into_config(self, tls: GrpcTls) -> Result<DeliverConfig, ConfigError> {
        let mut config = self.settings.into_config(tls)?;
        config.load_connectors(self.connectors.connectors_file.as_deref())?;
        config.validate()?;
        Ok(config)
    }
}

impl Binary for Args {
    const NAME: &'static str = "deliver";
    const ABOUT: &'static str = "wdt-pipeline deliver stage: durable outbox and WDT trade_push";
    const SHORT_NAMES: &'static [&'static str] = &["config", "grpc-addr", "metrics-addr"];

    type Config = DeliverConfig;

    fn config(self, shared: SharedArgs) -> Result<DeliverConfig, ConfigError> {
        self.into_config(shared.tls)
    }

    async fn serve(config: DeliverConfig, shutdown: Shutdown) -> anyhow::Result<()> {
        let listeners = crate::Listeners::bind(config.grpc_addr, config.metrics_addr).await?;
        Ok(crate::serve(config, listeners, shutdown).await?)
    }
}
