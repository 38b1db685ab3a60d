//! The gRPC `Transform` service: map the batch, forward it to deliver, relay the receipts.

use crate::mapping::map_records;
use crate::scheme::Scheme;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use wdtpipe_common::rejection;
use wdtpipe_proto::v1::deliver_client::DeliverClient;
use wdtpipe_proto::v1::transform_server::Transform;
use wdtpipe_proto::v1::{
    ConvertRequest, ConvertResponse, ConvertedRecord, EnqueueRecord, EnqueueRequest,
    ProcessRequest, ProcessResponse, Receipt,
};

pub struct TransformService {
    scheme: Scheme,
    deliver: DeliverClient<Channel>,
}

impl TransformService {
    pub fn new(scheme: Scheme, deliver: DeliverClient<Channel>) -> Self {
        Self { scheme, deliver }
    }
}

/// The 1-based position of a record: as ingest numbered it, else its index in the batch.
fn position_of(index: usize, given: u32) -> u32 {
    if given == 0 {
        u32::try_from(index + 1).unwrap_or(u32::MAX)
    } else {
        given
    }
}

/// A deliver failure as seen by transform's caller: the same code, the message prefixed.
fn downstream(status: Status) -> Status {
    let code = match status.code() {
        // A bad request to deliver is transform's bug, not the sender's.
        Code::InvalidArgument => Code::Internal,
        code => code,
    };
    Status::new(code, format!("deliver: {}", status.message()))
}

#[tonic::async_trait]
impl Transform for TransformService {
    #[tracing::instrument(skip_all, fields(records = request.get_ref().records.len()))]
    async fn process(
        &self,
        request: Request<ProcessRequest>,
    ) -> Result<Response<ProcessResponse>, Status> {
        let request = request.into_inner();
        if request.records.is_empty() {
            return Err(Status::invalid_argument("no records"));
        }
        let mut positioned = Vec::with_capacity(request.records.len());
        for (i, envelope) in request.records.iter().enumerate() {
            let position = position_of(i, envelope.position);
            let record = envelope.record.as_ref().ok_or_else(|| {
                rejection::to_status(&rejection::rejection(position, "", "record", "missing"))
            })?;
            positioned.push((position, record));
        }
        let mapped = map_records(positioned, &self.scheme).map_err(|r| rejection::to_status(&r))?;
        let mut receipts = Vec::with_capacity(mapped.len());
        let mut records = Vec::with_capacity(mapped.len());
        for (i, (envelope, trades)) in request.records.into_iter().zip(mapped).enumerate() {
            receipts.push(Receipt {
                position: position_of(i, envelope.position),
                record_id: envelope.record_id.clone(),
                tids: trades.iter().map(|t| t.tid.clone()).collect(),
                duplicate: false,
            });
            records.push(EnqueueRecord {
                record_id: envelope.record_id,
                received_at_ms: envelope.received_at_ms,
                source: envelope.source,
                trades,
            });
        }
        let answer = self
            .deliver
            .clone()
            .enqueue(EnqueueRequest {
                records,
                idempotency_key: request.idempotency_key,
            })
            .await
            .map_err(downstream)?
            .into_inner();
        for (receipt, result) in receipts.iter_mut().zip(answer.results) {
            receipt.duplicate = result.duplicate;
        }
        Ok(Response::new(ProcessResponse { receipts }))
    }

    #[tracing::instrument(skip_all, fields(records = request.get_ref().records.len()))]
    async fn convert(
        &self,
        request: Request<ConvertRequest>,
    ) -> Result<Response<ConvertResponse>, Status> {
        let request = request.into_inner();
        let positioned = request
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u32 + 1, r));
        let mapped = map_records(positioned, &self.scheme).map_err(|r| rejection::to_status(&r))?;
        Ok(Response::new(ConvertResponse {
            records: mapped
                .into_iter()
                .map(|trades| ConvertedRecord { trades })
                .collect(),
        }))
    }
}
