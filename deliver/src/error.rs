//! Deliver's errors and the one place they become gRPC statuses.

use crate::store::StoreError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Config(#[from] wdtpipe_common::config::ConfigError),
    #[error("cannot build the WDT client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("cannot open the outbox: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl From<DeliverError> for Status {
    fn from(error: DeliverError) -> Self {
        match &error {
            DeliverError::InvalidRequest(_) => Status::invalid_argument(error.to_string()),
            DeliverError::Store(StoreError::Closed) => {
                Status::unavailable("deliver is shutting down")
            }
            DeliverError::Store(_) => Status::unavailable(format!("outbox unavailable: {error}")),
            _ => Status::internal(error.to_string()),
        }
    }
}
