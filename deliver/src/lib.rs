//! The deliver stage: keeps the sled outbox and pushes trades to WDT's `trade_push.php`,
//! batching per shop, retrying, dead-lettering and reporting status over gRPC.

pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod grpc;
pub mod keys;
pub mod store;
pub mod wdt;
pub mod worker;

use crate::classify::Classifier;
use crate::config::DeliverConfig;
use crate::error::DeliverError;
use crate::store::Outbox;
use crate::wdt::WdtClient;
use crate::worker::Delivery;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use wdtpipe_common::grpc::{self as rpc, ServingStatus};
use wdtpipe_proto::v1::deliver_server::DeliverServer;

/// Runs deliver on `listener` until `shutdown` completes: opens the outbox, starts the
/// delivery engine, serves gRPC (Deliver, health, reflection); on shutdown stops accepting,
/// lets pushes in flight finish and flushes the outbox.
pub async fn serve(
    config: DeliverConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DeliverError> {
    config.validate()?;
    let dir = config.data_dir.join("outbox");
    std::fs::create_dir_all(&dir)
        .map_err(|e| DeliverError::Store(store::StoreError::Sled(e.into())))?;
    let retention = config.retention;
    let outbox =
        Arc::new(tokio::task::spawn_blocking(move || Outbox::open_with(&dir, retention)).await??);
    let client = WdtClient::new(config.wdt.clone())?;
    tracing::info!(endpoint = client.endpoint(), sid = %config.wdt.sid, "delivering to WDT");
    let client: Arc<dyn wdt::WdtApi> = Arc::new(client);
    let classifier = Classifier {
        retryable_codes: config.retryable_codes.clone(),
        config_codes: config.config_codes.clone(),
    };
    let delivery = Delivery::start(
        Arc::clone(&outbox),
        client,
        clock::Clock::new(),
        worker::DeliverySettings {
            classifier,
            retry: config.retry.clone(),
            batch_size: config.batch_size,
            sweep_interval: Duration::from_secs(config.retention.sweep_interval_secs.max(1)),
        },
    )?;

    let (health_reporter, health_service) = rpc::health();
    health_reporter
        .set_service_status("wdtpipe.v1.Deliver", ServingStatus::Serving)
        .await;
    health_reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    let admission = grpc::Admission {
        high_water_trades: config.high_water_trades,
        high_water_bytes: config.high_water_bytes,
        admin_token: config.admin_token.clone(),
    };
    let service = DeliverServer::new(grpc::DeliverService::new(
        Arc::clone(&outbox),
        Arc::clone(&delivery),
        admission,
    ));
    tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "deliver listening");
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = config.tls.server()? {
        server = server.tls_config(tls)?;
    }
    let result = server
        .add_service(health_service)
        .add_service(rpc::reflection())
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    delivery
        .stop(Duration::from_millis(config.drain_timeout_ms))
        .await;
    let closing = Arc::clone(&outbox);
    tokio::task::spawn_blocking(move || closing.close()).await??;
    tracing::info!("deliver stopped");
    result.map_err(DeliverError::from)
}
