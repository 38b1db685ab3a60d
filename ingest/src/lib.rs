//! The ingest stage: accepts callbacks over HTTP (`POST /v1/callback`) and internal clients
//! over gRPC (`Ingest.Submit`), turns them into protobuf records and hands each request to
//! transform as one batch. It answers only after deliver has the batch on disk.
//!
//! A tour, in the order a callback meets it:
//!
//! | step | where |
//! |---|---|
//! | settings (`INGEST_HTTP_ADDR`, limits, sender secrets) | [`cli`], [`config`] |
//! | start: bind, health, serve until shutdown | [`serve`] |
//! | the HTTP edge: size, content type, concurrency, timeout; off the runtime over 256 KiB | `http` |
//! | the sender's signature (Standard Webhooks, one MAC per secret) | [`auth`] |
//! | the body into records: fast path, else limits and the full parser | [`parse`] |
//! | each record's id (md5 of its canonical JSON) | [`record`] |
//! | kuaidi100 form pushes on `/v1/callback/{scheme}` | `kuaidi100` |
//! | to transform, coalesced under load | `forward` |
//! | the same for gRPC clients | `grpc` |
//! | every error and its HTTP status and gRPC code, in one table | `error` |
//! | counters and latencies | `metrics` |

pub mod auth;
pub mod cli;
pub mod config;
mod error;
mod forward;
mod grpc;
mod http;
mod kuaidi100;
mod metrics;
pub mod parse;
pub mod record;

use crate::config::IngestConfig;
use crate::forward::Forwarder;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use wdtpipe_common::grpc::{self as rpc, ClientTimeouts};
use wdtpipe_common::shutdown::Stop;
use wdtpipe_proto::v1::ingest_server::IngestServer;

/// Why ingest could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("invalid TRANSFORM_URL or gRPC TLS settings: {0}")]
    Client(#[from] rpc::TlsError),
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
    #[error("invalid INGEST_WEBHOOK_SECRETS: {0}")]
    Secret(#[from] auth::BadSecret),
}

/// Runs ingest's HTTP and gRPC edges until `shutdown` completes; both stop accepting and
/// finish the requests in flight.
pub async fn serve(
    config: IngestConfig,
    http_listener: TcpListener,
    grpc_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let timeouts = ClientTimeouts {
        request: Duration::from_millis(config.transform_timeout_ms),
        ..ClientTimeouts::default()
    };
    let channel = rpc::lazy_channel(&config.transform_url, timeouts, &config.tls)?;
    let mut registry = wdtpipe_common::metrics::MetricsRegistry::default();
    let metrics = std::sync::Arc::new(metrics::IngestMetrics::new(&mut registry));
    let forwarder = Forwarder::new(channel.clone(), std::sync::Arc::clone(&metrics));

    // The addresses actually bound (port 0 resolved), for the logs.
    let grpc_addr = grpc_listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let stop = Stop::spawn(shutdown);

    let (health_reporter, health_service) = rpc::health();
    tokio::spawn(rpc::track_readiness(
        health_reporter,
        &["", "wdtpipe.v1.Ingest"],
        vec![channel],
        Duration::from_millis(config.readiness_ms.max(10)),
        stop.receiver(),
    ));
    let mut server = rpc::server();
    if let Some(tls) = config.tls.server()? {
        server = server.tls_config(tls)?;
    }
    let grpc = server
        .add_service(health_service)
        .add_service(rpc::reflection())
        .add_service(IngestServer::new(grpc::IngestService::new(
            forwarder.clone(),
            config.limits.records,
        )))
        .serve_with_incoming_shutdown(rpc::incoming(grpc_listener), stop.stopped());

    let verifier = auth::WebhookVerifier::new(
        &config.webhook_secrets,
        Duration::from_secs(config.webhook_tolerance_secs),
    )?
    .map(|verifier| verifier.with_mac_counter(metrics.signature_macs.clone()));
    let edge = http::Edge {
        limits: config.limits,
        verifier,
        retry_after_secs: config.retry_after_secs,
    };
    tracing::info!(
        http = %http_listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        grpc = %grpc_addr,
        transform = %config.transform_url,
        sender_signatures = edge.verifier.is_some(),
        "ingest listening"
    );
    let http_listener = axum::serve::ListenerExt::tap_io(http_listener, |tcp| {
        // Answers go out at once, not held back for the next ACK.
        let _ = tcp.set_nodelay(true);
    });
    let http = axum::serve(
        http_listener,
        http::router(forwarder, edge, std::sync::Arc::new(registry)),
    )
    .with_graceful_shutdown(stop.stopped())
    .into_future();
    let (grpc_result, http_result) = tokio::join!(grpc, http);
    tracing::info!("ingest stopped");
    grpc_result?;
    http_result?;
    Ok(())
}
