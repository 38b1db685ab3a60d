//! Transform's errors: [`TransformError`] when it cannot start, [`ProcessError`] when a
//! request is refused, and the one table from a refusal to its gRPC status.

use crate::catalog;
use crate::pipeline::ShardFailure;
use tonic::{Code, Status};
use wdtpipe_common::grpc as rpc;
use wdtpipe_common::rejection;
use wdtpipe_proto::v1::RecordRejection;

/// Why transform could not run.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("no deliver shard configured (DELIVER_URL)")]
    NoShards,
    #[error("invalid DELIVER_URL or gRPC TLS settings: {0}")]
    Client(#[from] rpc::TlsError),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("metrics server failed: {0}")]
    Metrics(#[from] std::io::Error),
    #[error("SCHEMES_DIR: {0}")]
    Schemes(#[from] catalog::CatalogError),
    #[error(transparent)]
    Connectors(#[from] wdtpipe_common::config::ConfigError),
}

/// Why a request was not taken.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProcessError {
    /// The request holds no record.
    NoRecords,
    /// No scheme has the request's id.
    NoScheme(String),
    /// A record is invalid: nothing of the request was written.
    Invalid(RecordRejection),
    /// A shard refused or could not be reached (the first such answer).
    Deliver(ShardFailure),
    /// A shard's answer to an admin call made on the caller's behalf (`Remap`): the
    /// credential and the filter are the caller's, so deliver's refusal is too.
    DeliverAdmin(ShardFailure),
    /// A request that cannot be served as asked (e.g. a dead-letter filter that sets
    /// nothing).
    BadRequest(String),
    /// The scheme takes the other kind of input (JSON records, or kuaidi100 pushes).
    WrongSource(String),
    /// A kuaidi100 push whose sign does not verify.
    BadSign(String),
}

/// The one place a refusal becomes a gRPC status.
impl From<ProcessError> for Status {
    fn from(error: ProcessError) -> Self {
        match error {
            ProcessError::NoRecords => Status::invalid_argument("no records"),
            ProcessError::NoScheme(message) => Status::not_found(message),
            ProcessError::BadRequest(message) => Status::invalid_argument(message),
            ProcessError::WrongSource(message) => Status::failed_precondition(message),
            ProcessError::BadSign(message) => Status::unauthenticated(message),
            ProcessError::Invalid(rejection) => rejection::to_status(&rejection),
            ProcessError::Deliver(failure) => {
                let code = match Code::from(failure.code) {
                    // A bad request to deliver is transform's bug, not the sender's.
                    Code::InvalidArgument => Code::Internal,
                    code => code,
                };
                Status::new(code, format!("deliver: {}", failure.message))
            }
            ProcessError::DeliverAdmin(failure) => Status::new(
                Code::from(failure.code),
                format!("deliver: {}", failure.message),
            ),
        }
    }
}
