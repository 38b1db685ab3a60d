//! Deliver's errors: [`StartError`] when it cannot start or its server fails,
//! [`DeliverError`] when a call is refused, and the one table from a refusal to its gRPC
//! status.

use crate::store::StoreError;
use tonic::Status;

/// Why deliver could not start, or why its server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] wdtpipe_common::config::ConfigError),
    #[error("cannot open the outbox: {0}")]
    Outbox(#[from] StoreError),
    #[error("cannot open the outbox: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("cannot build the WDT client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("gRPC TLS settings: {0}")]
    Tls(#[from] wdtpipe_common::grpc::TlsError),
    #[error("cannot read the gRPC listener's address: {0}")]
    Listener(std::io::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Why a call was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The outbox is above its high-water mark: senders should retry later.
    #[error("outbox above its high-water mark ({0}); retry later")]
    Overloaded(String),
    /// The outbox's disk is below `DELIVER_MIN_FREE_BYTES`: senders should retry later.
    #[error("outbox disk low ({0}); retry later")]
    DiskLow(String),
    #[error("admin token missing or wrong")]
    Unauthenticated,
}

impl From<DeliverError> for Status {
    fn from(error: DeliverError) -> Self {
        match &error {
            DeliverError::InvalidRequest(_) | DeliverError::Store(StoreError::BadRequest(_)) => {
                Status::invalid_argument(error.to_string())
            }
            DeliverError::Overloaded(_) | DeliverError::DiskLow(_) => {
                Status::resource_exhausted(error.to_string())
            }
            DeliverError::Unauthenticated => Status::unauthenticated(error.to_string()),
            DeliverError::Store(StoreError::Closed) => {
                Status::unavailable("deliver is shutting down")
            }
            DeliverError::Store(_) => Status::unavailable(format!("outbox unavailable: {error}")),
        }
    }
}
