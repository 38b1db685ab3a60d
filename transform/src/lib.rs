//! The transform stage: maps stockout records into WDT trades (MAPPING.md) and forwards
//! each request's trades to deliver, routing every trade to its shard by tid.
//!
//! A tour, in the order a request meets it:
//!
//! | step | where |
//! |---|---|
//! | settings (`SCHEMES_DIR`, `DELIVER_URL`, `WDT_SHOP_NO`) | [`cli`], [`config`] |
//! | start: load the schemes, serve, reload on change or SIGHUP | [`serve`], [`catalog`] |
//! | the gRPC adapter (`Process`, `Convert`, `Preview`, `Remap`, `Track`, `ListSchemes`) | `grpc` |
//! | a request: its scheme, every record mapped, all or nothing, to deliver | `pipeline` |
//! | one record: the built-in mapping, the scheme's rules, the final checks (the 422s) | [`mapping`], `builtin`, [`rules`] |
//! | scheme files: parsing, CEL expressions, tables, field paths, suggestions | [`scheme`] |
//! | which deliver shard holds a tid | [`shard`] |
//! | dead letters mapped again after a scheme fix | `remap` |
//! | kuaidi100 pushes: sign, `param`, the order, the sign-off | `track` |
//! | counters and latencies | `metrics` |
//! | why it cannot start, why a request is refused, and the gRPC status of each | `error` |

mod builtin;
pub mod catalog;
pub mod cli;
pub mod config;
mod error;
mod grpc;
pub mod mapping;
mod metrics;
mod pipeline;
mod remap;
pub mod rules;
pub mod scheme;
pub mod shard;
mod track;

use crate::config::TransformConfig;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use wdtpipe_common::grpc::{self as rpc, ClientTimeouts};
use wdtpipe_common::metrics::MetricsRegistry;
use wdtpipe_common::shutdown::Stop;
use wdtpipe_proto::v1::deliver_client::DeliverClient;
use wdtpipe_proto::v1::transform_server::TransformServer;

pub use error::TransformError;

pub use wdtpipe_common::grpc::Listeners;

/// Runs transform until `shutdown` completes: gRPC (Transform, health, reflection) and
/// metrics. It reports SERVING only while every deliver shard answers its health check.
pub async fn serve(
    config: TransformConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TransformError> {
    if config.deliver_urls.is_empty() {
        return Err(TransformError::NoShards);
    }
    let timeouts = ClientTimeouts {
        request: Duration::from_millis(config.deliver_timeout_ms),
        ..ClientTimeouts::default()
    };
    let channels = config
        .deliver_urls
        .iter()
        .map(|url| rpc::lazy_channel(url, timeouts, &config.tls))
        .collect::<Result<Vec<_>, _>>()?;
    let connectors = wdtpipe_common::connectors::names(config.connectors_file.as_deref())?;
    let catalog = Arc::new(catalog::Catalog::load(
        config.schemes_dir.clone(),
        config.scheme.clone(),
        connectors,
    )?);
    let mut registry = MetricsRegistry::default();
    let metrics = Arc::new(metrics::TransformMetrics::new(&mut registry));
    let service = grpc::TransformService::new(pipeline::Transformer::new(
        Arc::clone(&catalog),
        Box::new(grpc::GrpcShards::new(
            channels
                .iter()
                .cloned()
                .map(|channel| {
                    DeliverClient::new(channel).max_decoding_message_size(rpc::MAX_MESSAGE_BYTES)
                })
                .collect(),
        )),
        Arc::clone(&metrics),
    ));

    let stop = Stop::spawn(shutdown);
    tokio::spawn(catalog::watch_dir(
        Arc::clone(&catalog),
        Arc::clone(&metrics),
        Duration::from_millis(config.schemes_poll_ms),
        catalog::hangup_signal(),
        stop.receiver(),
    ));

    let (health_reporter, health_service) = rpc::health();
    tokio::spawn(rpc::track_readiness(
        health_reporter,
        &["", "wdtpipe.v1.Transform"],
        channels,
        Duration::from_millis(config.readiness_ms.max(10)),
        stop.receiver(),
    ));
    let metrics_task = listeners.metrics.map(|listener| {
        tokio::spawn(wdtpipe_common::metrics::serve(
            listener,
            Arc::new(registry),
            None,
            stop.stopped(),
        ))
    });
    tracing::info!(
        addr = %listeners.grpc.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        shards = ?config.deliver_urls,
        shop_override = config.scheme.shop_no.as_deref().unwrap_or("-"),
        schemes = %catalog
            .current()
            .set
            .iter()
            .map(|s| s.label())
            .collect::<Vec<_>>()
            .join(", "),
        "transform listening"
    );
    let mut server = rpc::server();
    if let Some(tls) = config.tls.server()? {
        server = server.tls_config(tls)?;
    }
    server
        .add_service(health_service)
        .add_service(rpc::reflection())
        .add_service(
            TransformServer::new(service).max_decoding_message_size(rpc::MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(rpc::incoming(listeners.grpc), stop.stopped())
        .await?;
    if let Some(task) = metrics_task {
        task.await.map_err(std::io::Error::other)??;
    }
    tracing::info!("transform stopped");
    Ok(())
}
