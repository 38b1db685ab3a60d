//! The gRPC edge for internal clients: `Ingest.Submit`, the same semantics as the callback.

use crate::error::IngestError;
use crate::forward::{Forwarder, Origin};
use tonic::{Request, Response, Status};
use wdtpipe_common::request::{accept_request_id, new_request_id, valid_traceparent};
use wdtpipe_proto::v1::ingest_server::Ingest;
use wdtpipe_proto::v1::{SubmitRequest, SubmitResponse};

impl std::fmt::Debug for IngestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestService").finish_non_exhaustive()
    }
}

pub(crate) struct IngestService {
    forwarder: Forwarder,
    max_records: usize,
}

impl IngestService {
    pub(crate) fn new(forwarder: Forwarder, max_records: usize) -> Self {
        Self {
            forwarder,
            max_records,
        }
    }
}

#[tonic::async_trait]
impl Ingest for IngestService {
    #[tracing::instrument(skip_all, fields(records = request.get_ref().records.len(), request_id))]
    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let headers = request.metadata().clone();
        let metadata = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
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
        let origin = Origin {
            source,
            idempotency_key: request.idempotency_key,
            request_id: metadata("x-request-id")
                .and_then(|id| accept_request_id(&id))
                .unwrap_or_else(new_request_id),
            traceparent: metadata("traceparent")
                .filter(|t| valid_traceparent(t))
                .unwrap_or_default(),
            scheme: request.scheme,
        };
        tracing::Span::current().record("request_id", origin.request_id.as_str());
        let receipts = self.forwarder.submit(request.records, &origin).await?;
        Ok(Response::new(SubmitResponse { receipts }))
    }
}
