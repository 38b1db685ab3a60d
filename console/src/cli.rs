//! Command-line flags and environment variables of the console, over an optional TOML
//! config file. [`Settings`] is taken by the `console` binary and by `wdtpipe up` alike;
//! where transform and deliver are, and deliver's admin token, `up` decides itself.

use crate::config::ConsoleConfig;
use std::path::PathBuf;
use wdtpipe_common::cli::SharedArgs;
use wdtpipe_common::config::{ConfigError, Secret, load_file, optional_addr, set};
use wdtpipe_common::grpc::{GrpcTls, merge_tls};
use wdtpipe_common::service::{Binary, Shutdown};

/// The console's settings; each flag also reads the environment variable named beside it.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "console_settings")]
#[command(next_help_heading = "Console")]
pub struct Settings {
    /// TOML file with `ConsoleConfig` fields; environment and flags override it.
    #[arg(long, env = "CONSOLE_CONFIG")]
    pub console_config: Option<PathBuf>,
    /// Address of the web console [default: 127.0.0.1:8081]; `off` runs none (in `up`).
    #[arg(long, env = "CONSOLE_ADDR")]
    pub console_addr: Option<String>,
    /// Operator token for the console's actions; required off loopback.
    #[arg(long, env = "CONSOLE_TOKEN", hide_env_values = true)]
    pub console_token: Option<String>,
    /// File the console appends its audit log to [default: ./data/console-audit.jsonl].
    #[arg(long, env = "CONSOLE_AUDIT_FILE")]
    pub console_audit_file: Option<PathBuf>,
    /// The console's URL as operators reach it, for links in alerts [default: its address].
    #[arg(long, env = "CONSOLE_PUBLIC_URL")]
    pub console_public_url: Option<String>,
    /// How often the console reads the services' counters, in milliseconds [default: 2000].
    #[arg(long, env = "CONSOLE_REFRESH_MS")]
    pub console_refresh_ms: Option<u64>,
    /// Alert webhooks: comma-separated `KIND=URL` (wecom, dingtalk, feishu, json); a
    /// signing secret goes in the URL's fragment (`#SEC…`).
    #[arg(long, env = "ALERT_WEBHOOKS", hide_env_values = true)]
    pub alert_webhooks: Option<String>,
    /// Alert when a trade has waited longer than this many seconds [default: 600].
    #[arg(long, env = "ALERT_OLDEST_SECS")]
    pub alert_oldest_secs: Option<u64>,
}

impl Settings {
    /// File, then environment, then flags; `tls` over the file's. `None` when the address
    /// is `off`.
    pub fn into_config(self, tls: GrpcTls) -> Result<Option<ConsoleConfig>, ConfigError> {
        let mut config: ConsoleConfig = load_file(self.console_config.as_deref())?;
        if let Some(addr) = self.console_addr {
            match optional_addr("CONSOLE_ADDR", &addr)? {
                Some(addr) => config.addr = addr,
                None => return Ok(None),
            }
        }
        merge_tls(&mut config.tls, tls);
        set(&mut config.token, self.console_token.map(Secret::from));
        set(&mut config.audit_file, self.console_audit_file);
        set(&mut config.public_url, self.console_public_url);
        set(&mut config.refresh_ms, self.console_refresh_ms);
        set(
            &mut config.alert_webhooks,
            self.alert_webhooks.map(Secret::from),
        );
        set(&mut config.alert_oldest_secs, self.alert_oldest_secs);
        Ok(Some(config))
    }
}

/// The `console` binary's own flags: its settings and where the services are (which
/// `wdtpipe up` decides itself). [`wdtpipe_common::service`] adds the shared ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub settings: Settings,
    /// The transform service [default: http://127.0.0.1:50052].
    #[arg(long, env = "TRANSFORM_URL")]
    pub transform_url: Option<String>,
    /// Every deliver shard, comma-separated [default: http://127.0.0.1:50053].
    #[arg(long, env = "DELIVER_URL", value_delimiter = ',')]
    pub deliver_url: Option<Vec<String>>,
    /// Ingest's HTTP base URL, for its health on the overview [default: not shown].
    #[arg(long, env = "INGEST_URL")]
    pub ingest_url: Option<String>,
    /// Deliver's admin token, sent with the actions; also accepted at the login.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

impl Args {
    /// The config, or `None` when `CONSOLE_ADDR` is `off`; `tls` given by flag or environment.
    pub fn into_config(self, tls: GrpcTls) -> Result<Option<ConsoleConfig>, ConfigError> {
        let Some(mut config) = self.settings.into_config(tls)? else {
            return Ok(None);
        };
        set(&mut config.transform_url, self.transform_url);
        set(&mut config.deliver_urls, self.deliver_url);
        set(&mut config.ingest_url, self.ingest_url);
        set(&mut config.admin_token, self.admin_token.map(Secret::from));
        Ok(Some(config))
    }
}

impl Binary for Args {
    const NAME: &'static str = "console";
    const ABOUT: &'static str =
        "wdt-pipeline operator console: web pages over transform and deliver, and alerts";
    const SHORT_NAMES: &'static [&'static str] = &["config", "addr", "token"];

    /// `None` when `CONSOLE_ADDR` is `off`, which the binary refuses.
    type Config = Option<ConsoleConfig>;

    fn config(self, shared: SharedArgs) -> Result<Option<ConsoleConfig>, ConfigError> {
        self.into_config(shared.tls)
    }

    async fn serve(config: Option<ConsoleConfig>, shutdown: Shutdown) -> anyhow::Result<()> {
        let Some(config) = config else {
            anyhow::bail!("CONSOLE_ADDR is off: nothing to serve");
        };
        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        Ok(crate::serve(config, listener, shutdown).await?)
    }
}
