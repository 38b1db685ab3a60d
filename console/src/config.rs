//! The console's settings, as a typed config: file, then environment, then flags (see
//! [`crate::cli`]).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use wdtpipe_common::config::Secret;
use wdtpipe_common::grpc::GrpcTls;

/// Everything the console needs to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Where the pages are served (`CONSOLE_ADDR`). Off loopback the console refuses to
    /// start without `token`.
    pub addr: SocketAddr,
    /// The operator token (`CONSOLE_TOKEN`): what an operator types to log in. Also
    /// required to serve on a non-loopback address.
    pub token: Secret,
    /// Deliver's admin token (`ADMIN_TOKEN`): sent with replay, discard, re-map and
    /// resume; also accepted at the login.
    pub admin_token: Secret,
    /// The transform service (`TRANSFORM_URL`).
    pub transform_url: String,
    /// Every deliver shard (`DELIVER_URL`, comma-separated).
    pub deliver_urls: Vec<String>,
    /// Ingest's HTTP base URL, whose `/healthz` the overview shows (empty: not shown).
    pub ingest_url: String,
    /// How often the services' counters are read for the live pages and the alerts.
    pub refresh_ms: u64,
    /// Where the audit log of operator actions is appended (JSON lines).
    pub audit_file: PathBuf,
    /// The console's address as operators reach it, for links in alerts (empty: the
    /// bound address).
    pub public_url: String,
    /// `ALERT_WEBHOOKS` (see [`crate::alert::parse_webhooks`]); empty: no alerts.
    pub alert_webhooks: Secret,
    /// `ALERT_OLDEST_SECS`: alert when a trade has waited longer than this.
    pub alert_oldest_secs: u64,
    /// gRPC TLS towards transform and deliver.
    pub tls: GrpcTls,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
            token: Secret::default(),
            admin_token: Secret::default(),
            transform_url: "http://127.0.0.1:50052".into(),
            deliver_urls: vec!["http://127.0.0.1:50053".into()],
            ingest_url: String::new(),
            refresh_ms: 2_000,
            audit_file: PathBuf::from("./data/console-audit.jsonl"),
            public_url: String::new(),
            alert_webhooks: Secret::default(),
            alert_oldest_secs: 600,
            tls: GrpcTls::default(),
        }
    }
}

impl ConsoleConfig {
    /// True when an operator can log in (a token is set).
    pub fn login_tokens_set(&self) -> bool {
        !self.login_tokens().is_empty()
    }

    /// The tokens an operator may log in with (blank ones left out).
    pub(crate) fn login_tokens(&self) -> Vec<&Secret> {
        [&self.token, &self.admin_token]
            .into_iter()
            .filter(|t| !t.is_empty())
            .collect()
    }
}
