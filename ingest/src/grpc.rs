//! The gRPC edge for internal clients: `Ingest.Submit`, the same semantics as the callback.

use crate::error::IngestError;
use crate::forward::Forwarder;
use tonic::{Request, Response, Status};
use wdtpipe_proto::v1::ingest_server::Ingest;
use wdtpipe_proto::v1::{SubmitRequest, SubmitResponse};

pub struct IngestService {
    forwarder: Forwarder,
    max_records: usize,
}

impl IngestService {
    pub fn new(forwarder: Forwarder, max_records: usize) -> Self {
        Self {
            forwarder,
            max_records,
        }
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    #[tracing::instrument(skip_all, fields(records = request.get_ref().records.len()))]
    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let request = request.into_inner();
        if request.records.len() > self.max_records {
            return Err(IngestError::TooManyRecords {
                count: request.records.len(),
                max: self.max_records,
            }
            .into());
        }
        let source = if request.source.is_empty() {
            "grpc".to_owned()
        } else {
            format!("grpc:{}", request.source)
        };
        let receipts = self
            .forwarder
            .submit(request.records, &source, &request.idempotency_key)
            .await?;
        Ok(Response::new(SubmitResponse { receipts }))
    }
}
