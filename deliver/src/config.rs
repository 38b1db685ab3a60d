//! Deliver's settings: where it listens, where the outbox lives, how it reaches WDT and
//! how it retries.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use wdtpipe_common::config::Secret;
use wdtpipe_common::grpc::GrpcTls;

/// Everything `deliver` needs. `Default` is a usable local setup (WDT URL aside).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverConfig {
    /// gRPC listen address (`DELIVER_GRPC_ADDR`).
    pub grpc_addr: SocketAddr,
    /// Prometheus `/metrics` address (`DELIVER_METRICS_ADDR`); `None` serves no metrics.
    pub metrics_addr: Option<SocketAddr>,
    /// This shard's name in status and stats (`DELIVER_SHARD`); empty: its gRPC address.
    pub shard: String,
    /// Data directory (`DATA_DIR`); the outbox lives in `<data_dir>/outbox`.
    pub data_dir: PathBuf,
    /// Memory sled may use for its page cache, in bytes.
    pub cache_bytes: u64,
    /// How to reach WDT: the `default` account.
    pub wdt: WdtConfig,
    /// The other WDT accounts, by connector name, read from `CONNECTORS_FILE` (secrets
    /// from the environment variables it names) by [`DeliverConfig::load_connectors`].
    #[serde(skip)]
    pub connectors: BTreeMap<String, WdtConfig>,
    /// Trades per `trade_push` call (WDT advises at most 50).
    pub batch_size: usize,
    /// `trade_push` calls one shop may have in flight at once (1–16). Calls never share a
    /// tid, so each trade's versions still reach WDT in order.
    pub calls_per_shop: usize,
    /// Retry and give-up policy.
    pub retry: RetryPolicy,
    /// How long dedupe records and finished trades' status are kept.
    pub retention: Retention,
    /// WDT answer codes that mean "try again later" (besides throttling messages).
    pub retryable_codes: Vec<i64>,
    /// WDT answer codes that mean "our configuration is wrong" (besides sign, timestamp,
    /// sid and appkey messages): the shop is paused and its trades stay queued.
    pub config_codes: Vec<i64>,
    /// How long in-flight pushes may take to finish at shutdown, in milliseconds.
    pub drain_timeout_ms: u64,
    /// Enqueue is refused (RESOURCE_EXHAUSTED, so senders get 503) while this many trades
    /// wait in the outbox.
    pub high_water_trades: u64,
    /// ... or while their payloads take this many bytes.
    pub high_water_bytes: u64,
    /// ... or while the outbox's disk has fewer bytes free than this (0 = no watermark).
    /// The writer keeps a quarter of it (at least 4 MiB) as a reserve it never writes into,
    /// for settling, replay and the sweep (`DELIVER_MIN_FREE_BYTES`).
    pub min_free_bytes: u64,
    /// Bearer token required by the mutating admin RPCs (Replay, Discard, Purge); empty:
    /// none required (`ADMIN_TOKEN`). Required when `grpc_addr` is not loopback, unless
    /// `insecure_no_admin_token` says otherwise.
    pub admin_token: Secret,
    /// Let a deliver on a non-loopback address serve the admin RPCs without a token
    /// (`DELIVER_INSECURE_NO_ADMIN_TOKEN`, `--insecure-no-admin-token`).
    pub insecure_no_admin_token: bool,
    /// gRPC TLS: this server's certificate.
    pub tls: GrpcTls,
}

impl Default for DeliverConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50053)),
            metrics_addr: Some(SocketAddr::from(([127, 0, 0, 1], 9103))),
            shard: String::new(),
            data_dir: PathBuf::from("./data"),
            cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
            wdt: WdtConfig::default(),
            connectors: BTreeMap::new(),
            batch_size: 50,
            calls_per_shop: 4,
            retry: RetryPolicy::default(),
            retention: Retention::default(),
            retryable_codes: vec![1012, 1013, 1020, 1030, 1040, 1200, 1610],
            config_codes: Vec::new(),
            drain_timeout_ms: 20_000,
            high_water_trades: 2_000_000,
            high_water_bytes: 4 * 1024 * 1024 * 1024,
            min_free_bytes: 128 * 1024 * 1024,
            admin_token: Secret::default(),
            insecure_no_admin_token: false,
            tls: GrpcTls::default(),
        }
    }
}

/// The WDT account and endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WdtConfig {
    /// Base URL (`WDT_URL`), e.g. `https://api.wangdian.cn/openapi2`.
    pub url: String,
    /// Seller account (`WDT_SID`).
    pub sid: String,
    /// Interface account (`WDT_APPKEY`).
    pub appkey: String,
    /// Interface secret (`WDT_APPSECRET`); signs requests, never sent or logged.
    pub appsecret: Secret,
    /// `switch` of `trade_push`: 1 strict (default), 0 non-strict.
    pub switch: u8,
    /// Timeout of one call, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for WdtConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            sid: String::new(),
            appkey: String::new(),
            appsecret: Secret::default(),
            switch: 1,
            timeout_ms: 15_000,
        }
    }
}

/// Exponential backoff with full jitter, and when to give up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// First backoff ceiling, in milliseconds.
    pub base_ms: u64,
    /// Largest backoff, in milliseconds.
    pub cap_ms: u64,
    /// Throttling answers multiply the backoff ceiling by this.
    pub throttle_factor: u64,
    /// A trade failing for longer than this (seconds) goes to the dead-letter store.
    pub max_age_secs: u64,
    /// How often a paused shop is probed again, in milliseconds.
    pub pause_probe_ms: u64,
    /// How often an unreachable WDT account is probed, in milliseconds (jittered by ±25 %,
    /// never sooner than a `Retry-After`).
    pub probe_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_ms: 1_000,
            cap_ms: 300_000,
            throttle_factor: 4,
            max_age_secs: 24 * 3600,
            pause_probe_ms: 30_000,
            probe_ms: 2_000,
        }
    }
}

/// How long deliver remembers what it no longer needs to deliver.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// A record id (or idempotency key) seen within this window is a duplicate (seconds).
    pub dedupe_secs: u64,
    /// A delivered or dead trade's status is kept this long (seconds); its dead letter stays
    /// until replayed or discarded.
    pub status_secs: u64,
    /// Pause between two steps of the retention sweep, in milliseconds. Each step looks at
    /// a bounded number of keys, so the sweep never holds the writer for long.
    pub sweep_step_ms: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            dedupe_secs: 7 * 24 * 3600,
            status_secs: 7 * 24 * 3600,
            sweep_step_ms: 1_000,
        }
    }
}

impl Retention {
    pub fn dedupe_ms(&self) -> i64 {
        (self.dedupe_secs as i64).saturating_mul(1000)
    }

    pub fn status_ms(&self) -> i64 {
        (self.status_secs as i64).saturating_mul(1000)
    }
}

impl WdtConfig {
    /// The first thing wrong with an account: the `WDT_*` setting it would be, and why.
    fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self.url.is_empty() {
            return Some(("WDT_URL", "must be set"));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Some(("WDT_URL", "must start with http:// or https://"));
        }
        if self.sid.is_empty() {
            return Some(("WDT_SID", "must be set"));
        }
        if self.appkey.is_empty() {
            return Some(("WDT_APPKEY", "must be set"));
        }
        if self.appsecret.is_empty() {
            return Some(("WDT_APPSECRET", "must be set"));
        }
        if self.switch > 1 {
            return Some(("WDT_SWITCH", "must be 0 or 1"));
        }
        None
    }
}

impl DeliverConfig {
    /// Reads the WDT accounts of `CONNECTORS_FILE` into `connectors`, each appsecret from
    /// the environment variable the file names. A table named `default` replaces the
    /// `WDT_*` account.
    pub fn load_connectors(
        &mut self,
        path: Option<&std::path::Path>,
    ) -> Result<(), wdtpipe_common::config::ConfigError> {
        self.load_connectors_with(path, |name, entry| {
            let secret = std::env::var(&entry.appsecret_env).unwrap_or_default();
            if secret.trim().is_empty() {
                return Err(wdtpipe_common::config::ConfigError::Invalid {
                    name: "CONNECTORS_FILE",
                    reason: format!(
                        "connector {name:?}: the environment variable {} (its appsecret_env) is not set",
                        entry.appsecret_env
                    ),
                });
            }
            Ok(secret.trim().to_owned())
        })
    }

    /// [`DeliverConfig::load_connectors`] with each account's secret from `secret` (the
    /// sandbox of `wdtpipe up` makes one up where the variable is unset).
    pub fn load_connectors_with(
        &mut self,
        path: Option<&std::path::Path>,
        secret: impl Fn(
            &str,
            &wdtpipe_common::connectors::ConnectorEntry,
        ) -> Result<String, wdtpipe_common::config::ConfigError>,
    ) -> Result<(), wdtpipe_common::config::ConfigError> {
        let Some(path) = path else {
            return Ok(());
        };
        for (name, entry) in wdtpipe_common::connectors::load(path)? {
            let secret = secret(&name, &entry)?;
            let account = WdtConfig {
                url: entry.url,
                sid: entry.sid,
                appkey: entry.appkey,
                appsecret: Secret::new(secret),
                switch: entry.switch,
                timeout_ms: entry.timeout_ms.unwrap_or(self.wdt.timeout_ms),
            };
            if name == wdtpipe_common::connectors::DEFAULT {
                self.wdt = account;
            } else {
                self.connectors.insert(name, account);
            }
        }
        Ok(())
    }

    /// Every account by connector name, `default` first.
    pub fn accounts(&self) -> impl Iterator<Item = (&str, &WdtConfig)> {
        std::iter::once((wdtpipe_common::connectors::DEFAULT, &self.wdt))
            .chain(self.connectors.iter().map(|(n, c)| (n.as_str(), c)))
    }

    /// Checks the settings that have no usable default.
    pub fn validate(&self) -> Result<(), wdtpipe_common::config::ConfigError> {
        use wdtpipe_common::config::ConfigError::Invalid;
        if let Some((name, reason)) = self.wdt.problem() {
            return Err(Invalid {
                name,
                reason: reason.into(),
            });
        }
        for (connector, account) in &self.connectors {
            if let Some((field, reason)) = account.problem() {
                let field = field.trim_start_matches("WDT_").to_lowercase();
                return Err(Invalid {
                    name: "CONNECTORS_FILE",
                    reason: format!("connector {connector:?}: {field} {reason}"),
                });
            }
        }
        if !(1..=50).contains(&self.batch_size) {
            return Err(Invalid {
                name: "batch_size",
                reason: "must be between 1 and 50".into(),
            });
        }
        self.check_admin_token(self.grpc_addr)?;
        if !(1..=16).contains(&self.calls_per_shop) {
            return Err(Invalid {
                name: "calls_per_shop",
                reason: "must be between 1 and 16".into(),
            });
        }
        Ok(())
    }

    /// Refuses to serve the admin RPCs without a token on `addr` when it is not loopback
    /// (unless `insecure_no_admin_token` says so). `serve` checks the address it actually
    /// listens on, too.
    pub fn check_admin_token(
        &self,
        addr: SocketAddr,
    ) -> Result<(), wdtpipe_common::config::ConfigError> {
        if self.admin_token.is_empty() && !addr.ip().is_loopback() && !self.insecure_no_admin_token
        {
            return Err(wdtpipe_common::config::ConfigError::Invalid {
                name: "ADMIN_TOKEN",
                reason: format!(
                    "must be set because deliver's gRPC address {addr} is not loopback: \
                     without it anyone who reaches that port can replay, discard and purge. \
                     Set ADMIN_TOKEN, listen on loopback, or pass --insecure-no-admin-token \
                     (DELIVER_INSECURE_NO_ADMIN_TOKEN=true) to accept that"
                ),
            });
        }
        Ok(())
    }
}
