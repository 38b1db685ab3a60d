//! The gRPC `Transform` service: map the batch, forward each deliver shard its trades, relay
//! the receipts.

use crate::mapping::map_records;
use crate::metrics::TransformMetrics;
use crate::scheme::Scheme;
use crate::shard::shard_of;
use std::sync::Arc;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use wdtpipe_common::{now_ms, rejection};
use wdtpipe_proto::v1::deliver_client::DeliverClient;
use wdtpipe_proto::v1::transform_server::Transform;
use wdtpipe_proto::v1::{
    ConvertRequest, ConvertResponse, ConvertedRecord, EnqueueRecord, EnqueueRequest,
    EnqueueResponse, ProcessRequest, ProcessResponse, Receipt, TradeOrder,
};

pub struct TransformService {
    scheme: Scheme,
    /// One client per deliver shard, in shard order.
    shards: Vec<DeliverClient<Channel>>,
    metrics: Arc<TransformMetrics>,
}

impl TransformService {
    pub fn new(
        scheme: Scheme,
        shards: Vec<DeliverClient<Channel>>,
        metrics: Arc<TransformMetrics>,
    ) -> Self {
        assert!(!shards.is_empty(), "at least one deliver shard");
        Self {
            scheme,
            shards,
            metrics,
        }
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

/// Splits each record's trades by shard. A record whose trades span shards appears on
/// each of them with its part; every shard dedupes it by record id, so a retry after a
/// partial failure converges.
fn split_by_shard(records: Vec<EnqueueRecord>, shards: usize) -> Vec<Vec<EnqueueRecord>> {
    let mut per_shard: Vec<Vec<EnqueueRecord>> = (0..shards).map(|_| Vec::new()).collect();
    for record in records {
        let mut parts: Vec<Vec<TradeOrder>> = (0..shards).map(|_| Vec::new()).collect();
        for trade in &record.trades {
            parts[shard_of(&trade.tid, shards)].push(trade.clone());
        }
        for (shard, trades) in parts.into_iter().enumerate() {
            if !trades.is_empty() {
                per_shard[shard].push(EnqueueRecord {
                    trades,
                    ..record.clone()
                });
            }
        }
    }
    per_shard
}

#[tonic::async_trait]
impl Transform for TransformService {
    #[tracing::instrument(skip_all, fields(request_id = %request.get_ref().request_id, records = request.get_ref().records.len()))]
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
        let mapped = map_records(positioned, &self.scheme).map_err(|r| {
            self.metrics.outcome("invalid");
            tracing::info!(rejection = %rejection::message(&r), "request rejected");
            rejection::to_status(&r)
        })?;
        let transformed_at_ms = now_ms();
        let mut receipts = Vec::with_capacity(mapped.len());
        let mut records = Vec::with_capacity(mapped.len());
        let mut trade_count = 0;
        for (i, (envelope, trades)) in request.records.into_iter().zip(mapped).enumerate() {
            trade_count += trades.len();
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
                transformed_at_ms,
                traceparent: envelope.traceparent,
            });
        }

        let started = Instant::now();
        let mut calls = tokio::task::JoinSet::new();
        for (shard, records) in split_by_shard(records, self.shards.len())
            .into_iter()
            .enumerate()
        {
            if records.is_empty() {
                continue;
            }
            let mut client = self.shards[shard].clone();
            let enqueue = EnqueueRequest {
                records,
                idempotency_key: request.idempotency_key.clone(),
                request_id: request.request_id.clone(),
            };
            calls.spawn(async move {
                (
                    shard,
                    client.enqueue(enqueue).await.map(Response::into_inner),
                )
            });
        }
        let mut answers: Vec<(usize, EnqueueResponse)> = Vec::new();
        let mut failure: Option<Status> = None;
        while let Some(joined) = calls.join_next().await {
            match joined {
                Ok((shard, Ok(answer))) => answers.push((shard, answer)),
                Ok((shard, Err(status))) => {
                    tracing::warn!(shard, code = ?status.code(), message = status.message(), "deliver shard refused the batch");
                    failure.get_or_insert(status);
                }
                Err(error) => {
                    failure
                        .get_or_insert(Status::internal(format!("enqueue task failed: {error}")));
                }
            }
        }
        self.metrics
            .deliver_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Some(status) = failure {
            self.metrics
                .outcome(&format!("{:?}", status.code()).to_lowercase());
            return Err(downstream(status));
        }
        // A record is a duplicate when every shard holding part of it says so.
        for receipt in &mut receipts {
            let mut seen = answers
                .iter()
                .flat_map(|(_, a)| a.results.iter())
                .filter(|r| r.record_id == receipt.record_id)
                .peekable();
            receipt.duplicate = seen.peek().is_some() && seen.all(|r| r.duplicate);
        }
        self.metrics.outcome("ok");
        self.metrics.trades.inc_by(trade_count as u64);
        tracing::debug!(trades = trade_count, shards = answers.len(), "forwarded");
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
