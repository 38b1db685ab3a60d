//! The gRPC `Transform` service: map the batch, forward each deliver shard its trades, relay
//! the receipts. Concurrent requests reach each shard coalesced into `EnqueueBatch` calls.

use crate::catalog::Catalog;
use crate::mapping::{Mapped, map_records};
use crate::metrics::TransformMetrics;
use crate::scheme::Scheme;
use crate::shard::shard_of;
use std::sync::Arc;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};
use tracing::Instrument as _;
use wdtpipe_common::grpc::{Coalescer, failure_of, status_of};
use wdtpipe_common::{now_ms, rejection};
use wdtpipe_proto::v1::deliver_client::DeliverClient;
use wdtpipe_proto::v1::transform_server::Transform;
use wdtpipe_proto::v1::{
    ConvertRequest, ConvertResponse, ConvertedRecord, EnqueueBatchRequest, EnqueueRecord,
    EnqueueRequest, EnqueueResponse, ListSchemesRequest, ListSchemesResponse, ProcessBatchRequest,
    ProcessBatchResponse, ProcessOutcome, ProcessRequest, ProcessResponse, Receipt, SchemeInfo,
    TradeOrder, enqueue_outcome, process_outcome,
};

/// Sends an enqueue to one deliver shard, coalesced with concurrent ones.
pub type ShardSender = Coalescer<EnqueueRequest, EnqueueResponse>;

/// A coalescing sender for a deliver shard: concurrent enqueues travel as one
/// `EnqueueBatch` call.
pub fn shard_sender(client: DeliverClient<Channel>) -> ShardSender {
    Coalescer::new(32, 16, move |requests: Vec<EnqueueRequest>| {
        let mut client = client.clone();
        async move {
            let answer = client
                .enqueue_batch(EnqueueBatchRequest { requests })
                .await?
                .into_inner();
            Ok(answer
                .outcomes
                .into_iter()
                .map(|o| match o.outcome {
                    Some(enqueue_outcome::Outcome::Ok(response)) => Ok(response),
                    Some(enqueue_outcome::Outcome::Failure(failure)) => Err(status_of(failure)),
                    None => Err(Status::internal("deliver answered an empty outcome")),
                })
                .collect())
        }
    })
}

pub struct TransformService {
    catalog: Arc<Catalog>,
    /// One sender per deliver shard, in shard order.
    shards: Vec<ShardSender>,
    metrics: Arc<TransformMetrics>,
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
    for mut record in records {
        if record.skipped {
            // No trades: the shard of the tid it would have had remembers the skip.
            per_shard[shard_of(&record.skipped_tid, shards)].push(record);
            continue;
        }
        let mut parts: Vec<Vec<TradeOrder>> = (0..shards).map(|_| Vec::new()).collect();
        for trade in std::mem::take(&mut record.trades) {
            parts[shard_of(&trade.tid, shards)].push(trade);
        }
        for (shard, trades) in parts.into_iter().enumerate() {
            if !trades.is_empty() {
                // `record` holds no trades now: each part copies only its header.
                per_shard[shard].push(EnqueueRecord {
                    trades,
                    ..record.clone()
                });
            }
        }
    }
    per_shard
}

/// The scheme of a request: `NOT_FOUND` when no scheme has that id.
fn scheme_of(catalog: &Catalog, id: &str) -> Result<Arc<Scheme>, Status> {
    catalog
        .current()
        .set
        .get(id)
        .cloned()
        .ok_or_else(|| Status::not_found(format!("no scheme {id:?}")))
}

impl TransformService {
    pub fn new(
        catalog: Arc<Catalog>,
        shards: Vec<ShardSender>,
        metrics: Arc<TransformMetrics>,
    ) -> Self {
        assert!(!shards.is_empty(), "at least one deliver shard");
        Self {
            catalog,
            shards,
            metrics,
        }
    }

    /// One request: map every record, forward each shard its part, relay the receipts.
    async fn process_one(&self, request: ProcessRequest) -> Result<ProcessResponse, Status> {
        if request.records.is_empty() {
            return Err(Status::invalid_argument("no records"));
        }
        // One scheme for the whole request, whatever reloads meanwhile.
        let scheme = scheme_of(&self.catalog, &request.scheme)?;
        let label = scheme.label();
        let mut positioned = Vec::with_capacity(request.records.len());
        for (i, envelope) in request.records.iter().enumerate() {
            let position = position_of(i, envelope.position);
            let record = envelope.record.as_ref().ok_or_else(|| {
                rejection::to_status(&rejection::rejection(position, "", "record", "missing"))
            })?;
            positioned.push((position, record));
        }
        let mapped = map_records(positioned, &scheme).map_err(|r| {
            self.metrics.outcome("invalid");
            self.metrics.records(&scheme.id, "rejected", 1);
            tracing::info!(rejection = %rejection::message(&r), "request rejected");
            rejection::to_status(&r)
        })?;
        let transformed_at_ms = now_ms();
        let mut receipts = Vec::with_capacity(mapped.len());
        let mut records = Vec::with_capacity(mapped.len());
        let mut trade_count = 0;
        let connector = if scheme.connector == wdtpipe_common::connectors::DEFAULT {
            ""
        } else {
            scheme.connector.as_str()
        };
        for (i, (envelope, mapped)) in request.records.into_iter().zip(mapped).enumerate() {
            let skipped_tid = match &mapped {
                Mapped::Skipped { tid } => Some(tid.clone()),
                Mapped::Trades(_) => None,
            };
            let skipped = skipped_tid.is_some();
            let mut trades = mapped.into_trades();
            for trade in &mut trades {
                trade.connector = connector.to_owned();
            }
            trade_count += trades.len();
            receipts.push(Receipt {
                position: position_of(i, envelope.position),
                record_id: envelope.record_id.clone(),
                tids: trades.iter().map(|t| t.tid.clone()).collect(),
                duplicate: false,
                skipped,
                scheme: label.clone(),
            });
            self.metrics
                .records(&scheme.id, if skipped { "skipped" } else { "accepted" }, 1);
            records.push(EnqueueRecord {
                skipped,
                skipped_tid: skipped_tid.unwrap_or_default(),
                record_id: envelope.record_id,
                received_at_ms: envelope.received_at_ms,
                source: envelope.source,
                trades,
                transformed_at_ms,
                traceparent: envelope.traceparent,
                scheme: label.clone(),
            });
        }

        let started = Instant::now();
        let calls = split_by_shard(records, self.shards.len())
            .into_iter()
            .enumerate()
            .filter(|(_, records)| !records.is_empty())
            .map(|(shard, records)| {
                let enqueue = EnqueueRequest {
                    records,
                    idempotency_key: request.idempotency_key.clone(),
                    request_id: request.request_id.clone(),
                };
                let sender = &self.shards[shard];
                async move { (shard, sender.call(enqueue).await) }
            });
        let mut answers: Vec<(usize, EnqueueResponse)> = Vec::new();
        let mut failure: Option<Status> = None;
        for (shard, result) in futures_util::future::join_all(calls).await {
            match result {
                Ok(answer) => answers.push((shard, answer)),
                Err(status) => {
                    tracing::warn!(shard, code = ?status.code(), message = status.message(), "deliver shard refused the batch");
                    failure.get_or_insert(status);
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
        Ok(ProcessResponse { receipts })
    }
}

#[tonic::async_trait]
impl Transform for TransformService {
    #[tracing::instrument(skip_all, fields(request_id = %request.get_ref().request_id, records = request.get_ref().records.len()))]
    async fn process(
        &self,
        request: Request<ProcessRequest>,
    ) -> Result<Response<ProcessResponse>, Status> {
        Ok(Response::new(self.process_one(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(requests = request.get_ref().requests.len()))]
    async fn process_batch(
        &self,
        request: Request<ProcessBatchRequest>,
    ) -> Result<Response<ProcessBatchResponse>, Status> {
        let outcomes = futures_util::future::join_all(request.into_inner().requests.into_iter().map(|r| {
            let span = tracing::info_span!("process", request_id = %r.request_id, records = r.records.len());
            self.process_one(r).instrument(span)
        }))
        .await
        .into_iter()
        .map(|result| ProcessOutcome {
            outcome: Some(match result {
                Ok(response) => process_outcome::Outcome::Ok(response),
                Err(status) => process_outcome::Outcome::Failure(failure_of(&status)),
            }),
        })
        .collect();
        Ok(Response::new(ProcessBatchResponse { outcomes }))
    }

    #[tracing::instrument(skip_all, fields(records = request.get_ref().records.len()))]
    async fn convert(
        &self,
        request: Request<ConvertRequest>,
    ) -> Result<Response<ConvertResponse>, Status> {
        let request = request.into_inner();
        let scheme = scheme_of(&self.catalog, &request.scheme)?;
        let positioned = request
            .records
            .iter()
            .enumerate()
            .map(|(i, r)| (i as u32 + 1, r));
        let mapped = map_records(positioned, &scheme).map_err(|r| rejection::to_status(&r))?;
        Ok(Response::new(ConvertResponse {
            records: mapped
                .into_iter()
                .map(|mapped| ConvertedRecord {
                    skipped: mapped.is_skipped(),
                    trades: mapped.into_trades(),
                })
                .collect(),
        }))
    }

    async fn list_schemes(
        &self,
        _request: Request<ListSchemesRequest>,
    ) -> Result<Response<ListSchemesResponse>, Status> {
        let loaded = self.catalog.current();
        let schemes = loaded
            .set
            .iter()
            .map(|s| SchemeInfo {
                id: s.id.clone(),
                version: s.version.clone(),
                source: s.source.name().to_owned(),
                connector: s.connector.clone(),
                loaded_at_ms: loaded.loaded_at_ms,
                path: s
                    .path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                description: s.description.clone(),
                trade_rules: s.trade_rules.len() as u32,
                line_rules: s.line_rules.len() as u32,
                skip: s.skip.is_some(),
            })
            .collect();
        let (last_reload_error_at_ms, last_reload_error) =
            self.catalog.last_error().unwrap_or_default();
        Ok(Response::new(ListSchemesResponse {
            schemes,
            last_reload_error,
            last_reload_error_at_ms,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(tid: &str) -> TradeOrder {
        TradeOrder {
            tid: tid.into(),
            ..TradeOrder::default()
        }
    }

    /// Each shard gets the trades whose tid hashes to it, under a copy of the record's
    /// header; a shard with none of a record's trades does not get the record.
    #[test]
    fn records_split_by_the_shard_of_each_tid() {
        let tids: Vec<String> = (0..40).map(|n| format!("T{n}")).collect();
        let record = EnqueueRecord {
            record_id: "r1".into(),
            source: "s".into(),
            trades: tids.iter().map(|t| trade(t)).collect(),
            ..EnqueueRecord::default()
        };
        let single = EnqueueRecord {
            record_id: "r2".into(),
            trades: vec![trade("T0")],
            ..EnqueueRecord::default()
        };
        let split = split_by_shard(vec![record, single], 3);
        assert_eq!(split.len(), 3);
        let mut seen = Vec::new();
        for (shard, records) in split.iter().enumerate() {
            for record in records {
                assert!(record.record_id == "r1" || record.record_id == "r2");
                if record.record_id == "r1" {
                    assert_eq!(record.source, "s");
                }
                for trade in &record.trades {
                    assert_eq!(shard_of(&trade.tid, 3), shard);
                    seen.push((record.record_id.clone(), trade.tid.clone()));
                }
            }
        }
        seen.sort();
        let mut expected: Vec<(String, String)> =
            tids.iter().map(|t| ("r1".to_owned(), t.clone())).collect();
        expected.push(("r2".into(), "T0".into()));
        expected.sort();
        assert_eq!(seen, expected);
        let r2_parts = split
            .iter()
            .flatten()
            .filter(|r| r.record_id == "r2")
            .count();
        assert_eq!(r2_parts, 1);
        assert_eq!(
            split_by_shard(vec![EnqueueRecord::default()], 2),
            vec![Vec::<EnqueueRecord>::new(), Vec::new()],
            "a record without trades goes nowhere"
        );
    }
}
