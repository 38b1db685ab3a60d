//! The transform stage: maps stockout records into WDT trades (MAPPING.md) and forwards
//! each request's trades to deliver as one batch.

pub mod cli;
pub mod config;
pub mod grpc;
pub mod mapping;
pub mod scheme;

use crate::config::TransformConfig;
use std::future::Future;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use wdtpipe_common::grpc::{self as rpc, ClientTimeouts, ServingStatus};
use wdtpipe_proto::v1::deliver_client::DeliverClient;
use wdtpipe_proto::v1::transform_server::TransformServer;

/// Why transform could not run.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("invalid DELIVER_URL or gRPC TLS settings: {0}")]
    Client(#[from] rpc::TlsError),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Runs transform on `listener` until `shutdown` completes.
pub async fn serve(
    config: TransformConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TransformError> {
    let timeouts = ClientTimeouts {
        request: Duration::from_millis(config.deliver_timeout_ms),
        ..ClientTimeouts::default()
    };
    let channel = rpc::lazy_channel(&config.deliver_url, timeouts, &config.tls)?;
    let service = grpc::TransformService::new(config.scheme.clone(), DeliverClient::new(channel));
    let (health_reporter, health_service) = rpc::health();
    health_reporter
        .set_service_status("wdtpipe.v1.Transform", ServingStatus::Serving)
        .await;
    health_reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        deliver = %config.deliver_url,
        shop_override = config.scheme.shop_no.as_deref().unwrap_or("-"),
        "transform listening"
    );
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = config.tls.server()? {
        server = server.tls_config(tls)?;
    }
    server
        .add_service(health_service)
        .add_service(rpc::reflection())
        .add_service(TransformServer::new(service))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    tracing::info!("transform stopped");
    Ok(())
}
