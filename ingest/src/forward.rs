//! Hands parsed records to transform as one batch and returns the receipts: the part of
//! ingest shared by the HTTP and gRPC edges.

use crate::error::IngestError;
use crate::metrics::IngestMetrics;
use crate::record::record_id;
use std::sync::Arc;
use tonic::transport::Channel;
use wdtpipe_common::grpc::{Coalescer, batch_results};
use wdtpipe_common::now_ms;
use wdtpipe_proto::v1::transform_client::TransformClient;
use wdtpipe_proto::v1::{
    ProcessBatchRequest, ProcessRequest, ProcessResponse, Receipt, RecordEnvelope, StockoutRecord,
};

/// The client side of the transform hop. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    /// Process calls, coalesced under load into `ProcessBatch` calls.
    transform: Coalescer<ProcessRequest, ProcessResponse>,
    /// kuaidi100 pushes (`Track`), one call each.
    client: TransformClient<Channel>,
    metrics: Arc<IngestMetrics>,
}

/// Who sent a request and how to find it again in logs and status.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    /// `http` or `grpc:<client>`.
    pub source: String,
    pub idempotency_key: String,
    pub request_id: String,
    pub traceparent: String,
    /// The integration scheme that maps the records; empty is `default`.
    pub scheme: String,
}

impl Forwarder {
    /// Must be called inside a tokio runtime (it starts the batching task).
    pub(crate) fn new(channel: Channel, metrics: Arc<IngestMetrics>) -> Self {
        let client = TransformClient::new(channel);
        let batching = client.clone();
        let transform = Coalescer::new(32, 16, move |requests: Vec<ProcessRequest>| {
            let mut client = batching.clone();
            async move {
                let answer = client
                    .process_batch(ProcessBatchRequest { requests })
                    .await?
                    .into_inner();
                Ok(batch_results(answer.outcomes))
            }
        });
        Self {
            transform,
            client,
            metrics,
        }
    }

    /// Hands a kuaidi100 push to transform; answers once deliver has it on disk.
    pub(crate) async fn track(
        &self,
        request: wdtpipe_proto::v1::TrackRequest,
    ) -> Result<wdtpipe_proto::v1::TrackResponse, tonic::Status> {
        let mut client = self.client.clone();
        client.track(request).await.map(tonic::Response::into_inner)
    }

    pub(crate) fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// Forwards one request's records; answers once deliver has them on disk.
    pub(crate) async fn submit(
        &self,
        records: Vec<StockoutRecord>,
        origin: &Origin,
    ) -> Result<Vec<Receipt>, IngestError> {
        self.submit_envelopes(envelopes(records, origin)?, origin)
            .await
    }

    /// Forwards records already wrapped in their envelopes (record ids computed), e.g. on a
    /// blocking thread for a big body.
    pub(crate) async fn submit_envelopes(
        &self,
        records: Vec<RecordEnvelope>,
        origin: &Origin,
    ) -> Result<Vec<Receipt>, IngestError> {
        let started = tokio::time::Instant::now();
        let response = self
            .transform
            .call(ProcessRequest {
                records,
                idempotency_key: origin.idempotency_key.clone(),
                request_id: origin.request_id.clone(),
                scheme: origin.scheme.clone(),
            })
            .await;
        self.metrics
            .transform_seconds
            .observe(started.elapsed().as_secs_f64());
        let receipts = response.map_err(IngestError::from_downstream)?.receipts;
        self.metrics.records.inc_by(receipts.len() as u64);
        self.metrics
            .duplicates
            .inc_by(receipts.iter().filter(|r| r.duplicate).count() as u64);
        Ok(receipts)
    }
}

/// Wraps a request's records in their envelopes: each with its `record_id` (md5 of its
/// canonical JSON), position and origin.
pub(crate) fn envelopes(
    records: Vec<StockoutRecord>,
    origin: &Origin,
) -> Result<Vec<RecordEnvelope>, IngestError> {
    if records.is_empty() {
        return Err(IngestError::NoRecords("request: no records"));
    }
    let received_at_ms = now_ms();
    Ok(records
        .into_iter()
        .enumerate()
        .map(|(i, record)| RecordEnvelope {
            record_id: record_id(&record),
            received_at_ms,
            source: origin.source.clone(),
            position: u32::try_from(i + 1).unwrap_or(u32::MAX),
            record: Some(record),
            request_id: origin.request_id.clone(),
            traceparent: origin.traceparent.clone(),
        })
        .collect())
}
