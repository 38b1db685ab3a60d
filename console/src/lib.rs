//! The operator console: web pages over transform and every deliver shard, and alerts to
//! work chat. A client of the services over gRPC like `wdtpipe`; no stage links it.
//!
//! A tour, in the order a request meets it:
//!
//! | step | where |
//! |---|---|
//! | settings (`CONSOLE_ADDR`, `CONSOLE_TOKEN`, `ALERT_WEBHOOKS`, …) | [`cli`], [`config`] |
//! | start: refuse a non-loopback address without a token, start the sampler and alerts | [`serve`] |
//! | every `refresh_ms`: `Deliver.Stats` of every shard, `Transform.ListSchemes`, health → one numbered snapshot; an hour of history | `sampler`, `history` |
//! | alerts from each snapshot: grouped, signed, rate-limited, retried | [`alert`] |
//! | routes, security headers, logins | `http` (`views` pages, `live` events, `act` actions) |
//! | HTML of each page, in Chinese or English | `pages`, `html`, `i18n` |
//! | dry runs (a frozen set) and the actions behind the buttons | `actions` |
//! | sessions, the same-origin check on POSTs | `session` |
//! | who did what | `audit` |
//! | the services as clients | `upstream` |

mod actions;
pub mod alert;
mod audit;
pub mod cli;
pub mod config;
pub mod error;
mod history;
mod html;
mod http;
mod i18n;
mod pages;
mod sampler;
mod session;
mod upstream;

use crate::alert::{AlertSettings, Alerter};
use crate::config::ConsoleConfig;
use crate::error::StartError;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use wdtpipe_common::shutdown::Stop;

/// Serves the console on `listener` until `shutdown` completes.
pub async fn serve(
    config: ConsoleConfig,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StartError> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() && config.token.is_empty() {
        return Err(StartError::TokenRequired(addr));
    }
    if config.deliver_urls.iter().all(|u| u.trim().is_empty()) {
        return Err(StartError::NoShards);
    }
    let webhooks = alert::parse_webhooks(config.alert_webhooks.expose())?;
    let public_url = match config.public_url.trim_end_matches('/') {
        "" => format!("http://{addr}"),
        url => url.to_owned(),
    };
    let mut registry = wdtpipe_common::metrics::MetricsRegistry::default();
    let mut settings = AlertSettings::new(webhooks, public_url.clone());
    settings.oldest_secs = config.alert_oldest_secs;
    let alerter = Alerter::start(settings, &mut registry);
    let upstream = upstream::Upstream::new(&config)?;
    let stop = Stop::spawn(shutdown);
    let snapshot = sampler::start(
        upstream.clone(),
        alerter.clone(),
        Duration::from_millis(config.refresh_ms),
        stop.clone(),
    );
    let state = http::AppState {
        upstream,
        snapshot,
        sessions: Arc::default(),
        plans: Arc::default(),
        audit: Arc::new(audit::AuditLog::new(&config.audit_file)),
        alerter: alerter.clone(),
        registry: Arc::new(registry),
        logins: Arc::new(config.login_tokens().into_iter().cloned().collect()),
        refresh_ms: config.refresh_ms,
        secure_cookies: public_url.starts_with("https://"),
    };
    tracing::info!(
        %addr,
        url = %public_url,
        shards = config.deliver_urls.len(),
        alerts = alerter.status().webhooks.len(),
        actions = !state.logins.is_empty(),
        "console serving"
    );
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(stop.stopped())
        .await?;
    alerter.stop().await;
    Ok(())
}
