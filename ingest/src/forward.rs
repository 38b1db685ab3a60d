//! Hands parsed records to transform as one batch and returns the receipts: the part of
//! ingest shared by the HTTP and gRPC edges.

use crate::error::IngestError;
use crate::record::record_id;
use tonic::transport::Channel;
use wdtpipe_common::now_ms;
use wdtpipe_proto::v1::transform_client::TransformClient;
use wdtpipe_proto::v1::{ProcessRequest, Receipt, RecordEnvelope, StockoutRecord};

/// The client side of the transform hop. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Forwarder {
    transform: TransformClient<Channel>,
}

impl Forwarder {
    pub fn new(channel: Channel) -> Self {
        Self {
            transform: TransformClient::new(channel),
        }
    }

    /// Forwards one request's records; answers once deliver has them on disk.
    pub async fn submit(
        &self,
        records: Vec<StockoutRecord>,
        source: &str,
        idempotency_key: &str,
    ) -> Result<Vec<Receipt>, IngestError> {
        if records.is_empty() {
            return Err(IngestError::NoRecords("request: no records"));
        }
        let received_at_ms = now_ms();
        let records = records
            .into_iter()
            .enumerate()
            .map(|(i, record)| RecordEnvelope {
                record_id: record_id(&record),
                received_at_ms,
                source: source.to_owned(),
                position: u32::try_from(i + 1).unwrap_or(u32::MAX),
                record: Some(record),
            })
            .collect();
        let response = self
            .transform
            .clone()
            .process(ProcessRequest {
                records,
                idempotency_key: idempotency_key.to_owned(),
            })
            .await
            .map_err(IngestError::from_downstream)?;
        Ok(response.into_inner().receipts)
    }
}
